//! `inject -f`: every pod template in the input through the admission pipeline.

use std::collections::HashMap;

use akv_mutation::{Config, NamespaceFacts, plan_in};
use serde_json::Value;

use super::documents::{describe, push_changed, split_documents, strip_marker};
use super::{flatten_lists, string_map, template_pointer};
use crate::lookup::EntrypointSource;
use crate::pipeline;

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

/// Mutates every pod template in `input` as admission would. A namespace's `akv-env.io/*`
/// annotations come from its `Namespace` document in the input (it is what will be applied);
/// for a namespace without one, `namespace_vault` stands for its `akv-env.io/vault`.
pub async fn inject(
    input: &str,
    config: &Config,
    namespace_vault: Option<&str>,
    source: &dyn EntrypointSource,
) -> Result<Injected, InjectError> {
    let namespaces = namespace_documents(input);
    let mut out = String::with_capacity(input.len() * 2);
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut mutated = 0;
    for (index, doc) in split_documents(input).into_iter().enumerate() {
        let number = index + 1;
        let (marker, body) = strip_marker(doc);
        let mut value: Value = match serde_yaml_ng::from_str::<Option<Value>>(body) {
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
            namespaces: &namespaces,
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
        if let Err(e) = push_changed(&mut out, index, marker, &value) {
            problems.push(format!("{label}: cannot print it as YAML: {e}"));
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

/// The facts of every namespace that has a `Namespace` document in the input, by name.
fn namespace_documents(input: &str) -> HashMap<String, NamespaceFacts> {
    let mut facts = HashMap::new();
    for doc in split_documents(input) {
        // Documents that do not parse are reported by the mutating pass.
        let Ok(Some(value)) = serde_yaml_ng::from_str::<Option<Value>>(strip_marker(doc).1) else {
            continue;
        };
        for object in flatten_lists(&value) {
            if object.get("kind").and_then(Value::as_str) != Some("Namespace") {
                continue;
            }
            let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) else {
                continue;
            };
            let annotations = string_map(object, "annotations");
            facts.insert(
                name.to_owned(),
                NamespaceFacts::from_annotations(&annotations),
            );
        }
    }
    facts
}

struct Context<'a> {
    config: &'a Config,
    namespaces: &'a HashMap<String, NamespaceFacts>,
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
        let facts = match self.namespaces.get(namespace) {
            Some(documented) => documented.clone(),
            None => NamespaceFacts {
                vault: self.namespace_vault.map(str::to_owned),
                ..Default::default()
            },
        };
        let plan = match plan_in(template, &facts, self.config) {
            Ok(plan) => plan,
            Err(denial) => {
                self.problems.push(format!("{}: {denial}", self.label));
                return;
            }
        };
        let mutation =
            match pipeline::mutate(&plan, namespace, self.source, || async { Ok(()) }).await {
                Ok(pipeline::Outcome::Mutated(mutation)) => mutation,
                Ok(pipeline::Outcome::Skipped(_, warnings)) => {
                    self.warn(&warnings);
                    return;
                }
                Err(refusal) => {
                    self.problems.push(format!("{}: {refusal}", self.label));
                    return;
                }
            };
        self.warn(&mutation.warnings);
        if let Err(e) = json_patch::patch(template, &mutation.patch.0) {
            self.problems
                .push(format!("{}: the patch does not apply: {e}", self.label));
            return;
        }
        *self.changed += 1;
    }

    /// Admission warnings, prefixed with the document they concern.
    fn warn(&mut self, warnings: &[String]) {
        self.warnings
            .extend(warnings.iter().map(|w| format!("{}: {w}", self.label)));
    }
}
