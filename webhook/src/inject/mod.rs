//! `inject`: manifests in, manifests as admission would leave them out, for GitOps review;
//! `inject --check`: which containers holding placeholders the webhook would not wrap, and why.
//!
//! Documents are split on `---` lines so those a command does not change are printed byte for
//! byte (comments and formatting kept); changed documents are re-serialised with their keys in
//! the original order.

mod check;
mod documents;
mod mutate;

pub use check::{CheckOptions, CheckReport, Unwrapped, UnwrappedContainer, check};
pub(crate) use documents::{describe, push_changed, split_documents, strip_marker};
pub use mutate::{InjectError, Injected, inject};

use std::collections::BTreeMap;

use serde_json::Value;

/// The objects of a document: a `List`'s items (nested lists too), or the document itself.
pub(super) fn flatten_lists(value: &Value) -> Vec<&Value> {
    if value.get("kind").and_then(Value::as_str) == Some("List") {
        value
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(flatten_lists)
            .collect()
    } else {
        vec![value]
    }
}

/// An object's `metadata.labels` or `metadata.annotations` (`field`), string values only.
pub(super) fn string_map(object: &Value, field: &str) -> BTreeMap<String, String> {
    object
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// Where a kind keeps its pod template.
pub(super) fn template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_pointers() {
        for (kind, want) in [
            ("Pod", Some("")),
            ("Deployment", Some("/spec/template")),
            ("Job", Some("/spec/template")),
            ("CronJob", Some("/spec/jobTemplate/spec/template")),
            ("ConfigMap", None),
            ("PodTemplate", None),
        ] {
            assert_eq!(template_pointer(kind), want, "{kind}");
        }
    }
}
