//! `inject --check`: the containers holding placeholders that the webhook would leave alone.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use akv_mutation::{ANNOTATION_INJECT, ANNOTATION_STATUS, Skip};
use serde_json::Value;

use super::documents::{split_documents, strip_marker};
use super::{flatten_lists, string_map, template_pointer};
use crate::selector::NamespaceSelector;

/// What `inject --check` knows about the cluster.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `command[0]` of a wrapped container (`/akv-env/bin/akv-env`).
    pub injector_path: String,
    /// `--enabled-namespace`: the namespaces labelled in the cluster, when known.
    pub enabled_namespaces: Option<Vec<String>>,
    /// The chart's `webhook.namespaceSelector`, applied to Namespace documents in the input.
    pub namespace_selector: NamespaceSelector,
}

/// Why the webhook would not wrap a container that holds a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwrapped {
    /// A `Namespace` document in the input is not selected by the namespace selector.
    NamespaceNotLabelled { namespace: String, selector: String },
    /// `--enabled-namespace` was given and does not list the namespace.
    NamespaceNotListed(String),
    /// `akv-env.io/inject: "false"`.
    OptedOut,
    /// `akv-env.io/status` is set, so admission leaves the pod alone.
    MarkedInjected,
    /// Ephemeral containers are never wrapped.
    Ephemeral,
}

impl fmt::Display for Unwrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unwrapped::NamespaceNotLabelled {
                namespace,
                selector,
            } => write!(
                f,
                "its Namespace document {namespace:?} is not selected by {selector}"
            ),
            Unwrapped::NamespaceNotListed(ns) => {
                write!(f, "namespace {ns:?} is not in --enabled-namespace")
            }
            Unwrapped::OptedOut => write!(f, "the pod opts out ({ANNOTATION_INJECT}: \"false\")"),
            Unwrapped::MarkedInjected => write!(
                f,
                "the pod carries {ANNOTATION_STATUS}, so admission leaves it as it is"
            ),
            Unwrapped::Ephemeral => write!(f, "ephemeral containers are never wrapped"),
        }
    }
}

/// One container that would start with raw placeholders in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnwrappedContainer {
    /// 1-based document number in the input.
    pub document: usize,
    /// `Deployment/web`.
    pub workload: String,
    pub namespace: String,
    /// `container "app"`, `init container "migrate"`, `ephemeral container "debug"`.
    pub container: String,
    /// Names of the env vars holding placeholders.
    pub env: Vec<String>,
    pub reason: Unwrapped,
}

impl fmt::Display for UnwrappedContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "document {} {} (namespace {}): {} would start with unwrapped placeholders in {}: {}",
            self.document,
            self.workload,
            self.namespace,
            self.container,
            self.env.join(", "),
            self.reason
        )
    }
}

/// What `inject --check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub unwrapped: Vec<UnwrappedContainer>,
    /// Documents that could not be checked and pods the webhook would refuse, one line each.
    pub problems: Vec<String>,
    /// Pod templates read.
    pub templates: usize,
    /// Containers holding at least one placeholder.
    pub with_placeholders: usize,
    /// Namespaces with placeholders whose label is unknown offline (no `Namespace` document,
    /// no `--enabled-namespace`): assumed enabled.
    pub assumed_enabled: BTreeSet<String>,
}

/// Whether admission would reach a namespace's pods, as far as the input and flags tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Enabled,
    Assumed,
    NotLabelled,
    NotListed,
}

/// A `Namespace` document in the input decides for its namespace (it is what will be
/// applied); otherwise `--enabled-namespace`, when given; otherwise it cannot be known.
fn scope(namespace: &str, documents: &HashMap<String, bool>, enabled: Option<&[String]>) -> Scope {
    match (documents.get(namespace), enabled) {
        (Some(true), _) => Scope::Enabled,
        (Some(false), _) => Scope::NotLabelled,
        (None, Some(list)) if list.iter().any(|n| n == namespace) => Scope::Enabled,
        (None, Some(_)) => Scope::NotListed,
        (None, None) => Scope::Assumed,
    }
}

/// Finds every container that would start with an unwrapped placeholder (what the chart's
/// placeholder guard refuses in a cluster), for CI pipelines of GitOps repositories.
pub fn check(input: &str, options: &CheckOptions) -> CheckReport {
    let mut report = CheckReport::default();
    let mut objects = Vec::new();
    for (index, doc) in split_documents(input).into_iter().enumerate() {
        let (_, body) = strip_marker(doc);
        match serde_yaml_ng::from_str::<Option<Value>>(body) {
            Ok(Some(value)) => objects.push((index + 1, value)),
            Ok(None) => {}
            Err(e) => report
                .problems
                .push(format!("document {}: not valid YAML: {e}", index + 1)),
        }
    }
    let mut namespaces = HashMap::new();
    for (_, value) in &objects {
        for object in flatten_lists(value) {
            if object.get("kind").and_then(Value::as_str) != Some("Namespace") {
                continue;
            }
            if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
                let mut labels = string_map(object, "labels");
                // The API server sets this label on every namespace.
                labels
                    .entry("kubernetes.io/metadata.name".to_owned())
                    .or_insert_with(|| name.to_owned());
                let selected = options.namespace_selector.matches(&labels);
                namespaces.insert(name.to_owned(), selected);
            }
        }
    }
    // ConfigMaps in the input, by (namespace, name): their placeholders reach containers too.
    let mut config_maps = HashMap::new();
    for (_, value) in &objects {
        for object in flatten_lists(value) {
            if object.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
                continue;
            }
            let namespace = object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default");
            if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
                let data = object.get("data").cloned().unwrap_or(Value::Null);
                config_maps.insert((namespace.to_owned(), name.to_owned()), data);
            }
        }
    }
    let known = Known {
        namespaces: &namespaces,
        config_maps: &config_maps,
    };
    for (number, value) in &objects {
        for object in flatten_lists(value) {
            check_object(*number, object, options, &known, &mut report);
        }
    }
    report
}

/// What the input itself says about the cluster.
struct Known<'a> {
    /// Namespace name -> labelled.
    namespaces: &'a HashMap<String, bool>,
    /// (namespace, name) -> `data`.
    config_maps: &'a HashMap<(String, String), Value>,
}

/// Env var names of a container whose value is a placeholder: literal, or from a ConfigMap of
/// the input (`configMapKeyRef`, `envFrom.configMapRef` with its prefix).
fn placeholder_env<'c>(
    container: &'c Value,
    namespace: &str,
    config_maps: &HashMap<(String, String), Value>,
) -> Vec<(String, Option<&'c str>)> {
    let data = |name: Option<&str>| {
        name.and_then(|n| config_maps.get(&(namespace.to_owned(), n.to_owned())))
    };
    let mut out = Vec::new();
    for f in container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = f.pointer("/configMapRef/name").and_then(Value::as_str);
        let prefix = f.get("prefix").and_then(Value::as_str).unwrap_or_default();
        if let Some(Value::Object(map)) = data(name) {
            for (key, value) in map {
                if value.as_str().is_some_and(akv_placeholder::is_placeholder) {
                    out.push((
                        format!("{prefix}{key} (from ConfigMap {})", name.unwrap_or("?")),
                        None,
                    ));
                }
            }
        }
    }
    for e in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = e.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(value) = e.get("value").and_then(Value::as_str) {
            if akv_placeholder::is_placeholder(value) {
                out.push((name.to_owned(), Some(value)));
            }
        } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
            let map = r.get("name").and_then(Value::as_str);
            let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
            if data(map)
                .and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .is_some_and(akv_placeholder::is_placeholder)
            {
                out.push((
                    format!("{name} (from ConfigMap {})", map.unwrap_or("?")),
                    None,
                ));
            }
        }
    }
    out
}

fn check_object(
    document: usize,
    object: &Value,
    options: &CheckOptions,
    known: &Known<'_>,
    report: &mut CheckReport,
) {
    let namespaces = known.namespaces;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("?");
    let Some(pointer) = template_pointer(kind) else {
        return;
    };
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    let workload = format!("{kind}/{name}");
    let Some(template) = object.pointer(pointer) else {
        report.problems.push(format!(
            "document {document} ({kind} {name}): it has no pod template at {pointer}"
        ));
        return;
    };
    report.templates += 1;
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let annotation = |key: &str| {
        template
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    let pod_reason = match scope(namespace, namespaces, options.enabled_namespaces.as_deref()) {
        Scope::NotLabelled => Some(Unwrapped::NamespaceNotLabelled {
            namespace: namespace.to_owned(),
            selector: options.namespace_selector.to_string(),
        }),
        Scope::NotListed => Some(Unwrapped::NamespaceNotListed(namespace.to_owned())),
        Scope::Enabled | Scope::Assumed => {
            Skip::by_annotations(annotation).map(|skip| match skip {
                Skip::OptedOut => Unwrapped::OptedOut,
                _ => Unwrapped::MarkedInjected,
            })
        }
    };
    let lists = [
        ("containers", "container"),
        ("initContainers", "init container"),
        ("ephemeralContainers", "ephemeral container"),
    ];
    for (field, what) in lists {
        let containers = template
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for container in containers {
            let env = placeholder_env(container, namespace, known.config_maps);
            if env.is_empty() {
                continue;
            }
            report.with_placeholders += 1;
            let container_name = container.get("name").and_then(Value::as_str).unwrap_or("?");
            let sidecar = field == "initContainers"
                && container.get("restartPolicy").and_then(Value::as_str) == Some("Always");
            let label = format!(
                "{what} {container_name:?}{}",
                if sidecar { " (sidecar)" } else { "" }
            );
            let wrapped = container
                .pointer("/command/0")
                .and_then(Value::as_str)
                .is_some_and(|c| c == options.injector_path);
            let reason = if field == "ephemeralContainers" {
                Some(Unwrapped::Ephemeral)
            } else {
                pod_reason.clone()
            };
            match reason {
                Some(reason) if !wrapped => report.unwrapped.push(UnwrappedContainer {
                    document,
                    workload: workload.clone(),
                    namespace: namespace.to_owned(),
                    container: label,
                    env: env.iter().map(|(n, _)| n.clone()).collect(),
                    reason,
                }),
                Some(_) => {}
                None => {
                    // Admission wraps it, or refuses the pod if a placeholder is malformed.
                    for (env_name, value) in &env {
                        let Some(value) = value else { continue };
                        if let Err(e) = akv_placeholder::parse(value) {
                            report.problems.push(format!(
                                "document {document} ({kind} {name}): {label}, env var \
                                 {env_name}: {e}; admission would refuse this pod"
                            ));
                        }
                    }
                    if scope(namespace, namespaces, options.enabled_namespaces.as_deref())
                        == Scope::Assumed
                    {
                        report.assumed_enabled.insert(namespace.to_owned());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_scope_table() {
        let documents: HashMap<String, bool> =
            [("on".to_owned(), true), ("off".to_owned(), false)].into();
        let listed = ["on".to_owned(), "off".to_owned(), "ci".to_owned()];
        let cases = [
            ("on", None, Scope::Enabled),
            ("off", None, Scope::NotLabelled),
            ("other", None, Scope::Assumed),
            ("ci", Some(&listed[..]), Scope::Enabled),
            ("other", Some(&listed[..]), Scope::NotListed),
            // The document in the input wins over the list: it is what gets applied.
            ("off", Some(&listed[..]), Scope::NotLabelled),
            ("on", Some(&[][..]), Scope::Enabled),
        ];
        for (namespace, enabled, want) in cases {
            assert_eq!(
                scope(namespace, &documents, enabled),
                want,
                "{namespace} with {enabled:?}"
            );
        }
    }
}
