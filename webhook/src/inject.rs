//! `inject`: manifests in, manifests as admission would leave them out, for GitOps review.
//!
//! Documents are split on `---` lines so those this command does not change are printed
//! byte for byte (comments and formatting kept); changed documents are re-serialised with
//! their keys in the original order.

use akv_mutation::{Config, Entrypoints, Skip, plan};
use serde_json::Value;

use crate::lookup::{EntrypointSource, LookupRequest};

/// The result of a successful run.
#[derive(Debug)]
pub struct Injected {
    pub yaml: String,
    /// Admission warnings, prefixed with the document they concern.
    pub warnings: Vec<String>,
    /// Pod templates changed.
    pub mutated: usize,
}

/// Every problem found, one line each, naming the document.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct InjectError {
    pub problems: Vec<String>,
}

/// Where a kind keeps its pod template.
fn template_pointer(kind: &str) -> Option<&'static str> {
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

/// Splits multi-document YAML at `---` lines, keeping each document's text.
fn split_documents(input: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") {
            docs.push(&input[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    docs.push(&input[start..]);
    docs
}

/// Strips a leading `---` line (kept separately so the output can put it back).
fn strip_marker(doc: &str) -> (&str, &str) {
    let first_end = doc.find('\n').map_or(doc.len(), |i| i + 1);
    let first = doc[..first_end].trim_end();
    if first == "---" || first.starts_with("--- ") {
        (&doc[..first_end], &doc[first_end..])
    } else {
        ("", doc)
    }
}

pub async fn inject(
    input: &str,
    config: &Config,
    namespace_vault: Option<&str>,
    source: &dyn EntrypointSource,
) -> Result<Injected, InjectError> {
    let mut out = String::with_capacity(input.len() * 2);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut mutated = 0;
    for (index, doc) in split_documents(input).into_iter().enumerate() {
        let number = index + 1;
        let (marker, body) = strip_marker(doc);
        let mut value: Value = match serde_yaml::from_str::<Option<Value>>(body) {
            Ok(Some(v)) => v,
            Ok(None) => {
                out.push_str(doc);
                continue;
            }
            Err(e) => {
                problems.push(format!("document {number}: not valid YAML: {e}"));
                continue;
            }
        };
        let label = describe(&value, number);
        let mut changed = 0;
        let mut context = Context {
            config,
            namespace_vault,
            source,
            label: &label,
            problems: &mut problems,
            warnings: &mut warnings,
            changed: &mut changed,
        };
        context.mutate_object(&mut value).await;
        if changed == 0 {
            out.push_str(doc);
            continue;
        }
        mutated += changed;
        out.push_str(if marker.is_empty() && index > 0 {
            "---\n"
        } else {
            marker
        });
        match serde_yaml::to_string(&value) {
            Ok(yaml) => out.push_str(&yaml),
            Err(e) => problems.push(format!("{label}: cannot print it as YAML: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(Injected {
            yaml: out,
            warnings,
            mutated,
        })
    } else {
        Err(InjectError { problems })
    }
}

/// `document 2 (Deployment web)`.
fn describe(value: &Value, number: usize) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("document {number} ({kind} {name})")
}

struct Context<'a> {
    config: &'a Config,
    namespace_vault: Option<&'a str>,
    source: &'a dyn EntrypointSource,
    label: &'a str,
    problems: &'a mut Vec<String>,
    warnings: &'a mut Vec<String>,
    changed: &'a mut usize,
}

impl Context<'_> {
    async fn mutate_object(&mut self, value: &mut Value) {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "List" {
            if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
                for item in items {
                    Box::pin(self.mutate_object(item)).await;
                }
            }
            return;
        }
        let Some(pointer) = template_pointer(kind) else {
            return;
        };
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let Some(template) = value.pointer_mut(pointer) else {
            self.problems.push(format!(
                "{}: it has no pod template at {pointer}",
                self.label
            ));
            return;
        };
        self.mutate_template(template, &namespace).await;
    }

    async fn mutate_template(&mut self, template: &mut Value, namespace: &str) {
        let plan = match plan(template, self.namespace_vault, self.config) {
            Ok(plan) => plan,
            Err(denial) => {
                self.problems.push(format!("{}: {denial}", self.label));
                return;
            }
        };
        let lookups = plan.images_to_look_up();
        let entrypoints = if lookups.is_empty() {
            Entrypoints::new()
        } else {
            let request = LookupRequest {
                namespace,
                images: &lookups,
                arch: plan.arch(),
                pull_secrets: plan.image_pull_secrets(),
                service_account: plan.service_account(),
            };
            self.source.entrypoints(request).await
        };
        let mutation = match plan.patch(&entrypoints) {
            Ok(m) => m,
            Err(denial) => {
                self.problems.push(format!("{}: {denial}", self.label));
                return;
            }
        };
        self.warnings.extend(
            mutation
                .warnings
                .iter()
                .map(|w| format!("{}: {w}", self.label)),
        );
        if matches!(
            plan.skipped(),
            Some(Skip::NoPlaceholders | Skip::OptedOut | Skip::AlreadyMutated)
        ) {
            return;
        }
        if let Err(e) = json_patch::patch(template, &mutation.patch.0) {
            self.problems
                .push(format!("{}: the patch does not apply: {e}", self.label));
            return;
        }
        *self.changed += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_at_marker_lines_only() {
        let cases: [(&str, Vec<&str>); 4] = [
            ("a: 1\n", vec!["a: 1\n"]),
            ("a: 1\n---\nb: 2\n", vec!["a: 1\n", "---\nb: 2\n"]),
            (
                "---\na: '---'\n--- # c\nb: 2",
                vec!["", "---\na: '---'\n", "--- # c\nb: 2"],
            ),
            ("a: |\n  ---x\n", vec!["a: |\n  ---x\n"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_documents(input), want, "input {input:?}");
            assert_eq!(split_documents(input).concat(), input);
        }
    }

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
