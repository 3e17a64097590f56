//! The namespace selector the API server applies (chart value `webhook.namespaceSelector`),
//! evaluated by the webhook too: `/mutate` answers whoever reaches it, so before reading any
//! Secret the webhook checks the namespace itself, with the same selector the chart gave the
//! API server (one source, so a migration label such as `akv-env.io/injection` works for both).
//! Pure: Kubernetes' label-selector semantics over a label map, tested as a table.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// akv2k8s' label, the chart's default selector.
pub const DEFAULT_NAMESPACE_SELECTOR: &str =
    r#"{"matchLabels":{"azure-key-vault-env-injection":"enabled"}}"#;

/// A validated `LabelSelector` (`matchLabels` and `matchExpressions`, ANDed).
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceSelector(LabelSelector);

impl NamespaceSelector {
    /// Parses a `LabelSelector` as JSON (what the chart renders), rejecting what the API server
    /// would reject: unknown operators, `In`/`NotIn` without values, `Exists`/`DoesNotExist` with.
    pub fn parse(text: &str) -> Result<Self, String> {
        let selector: LabelSelector = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a label selector ({e}); write JSON such as \
                 {DEFAULT_NAMESPACE_SELECTOR}"
            )
        })?;
        for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
            let values = requirement.values.as_deref().unwrap_or_default();
            let fault = match requirement.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => Some("needs at least one value"),
                "Exists" | "DoesNotExist" if !values.is_empty() => Some("takes no values"),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => None,
                _ => Some("has an unknown operator (use In, NotIn, Exists or DoesNotExist)"),
            };
            if let Some(fault) = fault {
                return Err(format!(
                    "matchExpressions[{index}] (key {:?}, operator {:?}) {fault}",
                    requirement.key, requirement.operator
                ));
            }
        }
        Ok(NamespaceSelector(selector))
    }

    /// Whether a namespace with these labels is selected. An empty selector selects all.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let labels_match = self
            .0
            .match_labels
            .iter()
            .flatten()
            .all(|(key, value)| labels.get(key) == Some(value));
        labels_match
            && self
                .0
                .match_expressions
                .iter()
                .flatten()
                .all(|r| requirement_matches(r, labels))
    }
}

impl Default for NamespaceSelector {
    fn default() -> Self {
        NamespaceSelector::parse(DEFAULT_NAMESPACE_SELECTOR).expect("the default parses")
    }
}

fn requirement_matches(r: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let value = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// kubectl's selector syntax (`a=b,c in (d,e),!f`), for messages.
impl fmt::Display for NamespaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .0
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in self.0.match_expressions.iter().flatten() {
            let values = r.values.as_deref().unwrap_or_default().join(",");
            parts.push(match r.operator.as_str() {
                "In" => format!("{} in ({values})", r.key),
                "NotIn" => format!("{} notin ({values})", r.key),
                "Exists" => r.key.clone(),
                _ => format!("!{}", r.key),
            });
        }
        if parts.is_empty() {
            f.write_str("(every namespace)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// (selector, the namespace's labels, selected)
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

    #[test]
    fn kubernetes_label_selector_semantics() {
        const LEGACY: &[(&str, &str)] = &[("azure-key-vault-env-injection", "enabled")];
        const MIGRATED: &[(&str, &str)] = &[("akv-env.io/injection", "enabled")];
        let cases: &[Case] = &[
            (DEFAULT_NAMESPACE_SELECTOR, LEGACY, true),
            (DEFAULT_NAMESPACE_SELECTOR, MIGRATED, false),
            (
                DEFAULT_NAMESPACE_SELECTOR,
                &[("azure-key-vault-env-injection", "disabled")],
                false,
            ),
            (
                r#"{"matchLabels":{"akv-env.io/injection":"enabled"}}"#,
                MIGRATED,
                true,
            ),
            (
                r#"{"matchLabels":{"akv-env.io/injection":"enabled"}}"#,
                LEGACY,
                false,
            ),
            (r#"{}"#, &[], true),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"In","values":["a","b"]}]}"#,
                &[("team", "b")],
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"In","values":["a","b"]}]}"#,
                &[],
                false,
            ),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"NotIn","values":["a"]}]}"#,
                &[],
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"NotIn","values":["a"]}]}"#,
                &[("team", "a")],
                false,
            ),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"Exists"}]}"#,
                &[("team", "")],
                true,
            ),
            (
                r#"{"matchExpressions":[{"key":"team","operator":"DoesNotExist"}]}"#,
                &[("team", "a")],
                false,
            ),
            (
                r#"{"matchLabels":{"x":"1"},"matchExpressions":[{"key":"y","operator":"Exists"}]}"#,
                &[("x", "1")],
                false,
            ),
        ];
        for (selector, labels_of_ns, expected) in cases {
            let parsed = NamespaceSelector::parse(selector).unwrap();
            assert_eq!(
                parsed.matches(&labels(labels_of_ns)),
                *expected,
                "{selector} on {labels_of_ns:?}"
            );
        }
    }

    #[test]
    fn malformed_selectors_are_refused_naming_the_fault() {
        for (text, says) in [
            ("matchLabels: x", "not a label selector"),
            (
                r#"{"matchExpressions":[{"key":"t","operator":"In"}]}"#,
                "matchExpressions[0] (key \"t\", operator \"In\") needs at least one value",
            ),
            (
                r#"{"matchExpressions":[{"key":"t","operator":"Exists","values":["a"]}]}"#,
                "takes no values",
            ),
            (
                r#"{"matchExpressions":[{"key":"t","operator":"Gt","values":["1"]}]}"#,
                "unknown operator",
            ),
        ] {
            let err = NamespaceSelector::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn messages_use_kubectl_syntax() {
        assert_eq!(
            NamespaceSelector::default().to_string(),
            "azure-key-vault-env-injection=enabled"
        );
        let s = NamespaceSelector::parse(
            r#"{"matchLabels":{"a":"b"},"matchExpressions":[{"key":"c","operator":"NotIn","values":["d","e"]},{"key":"f","operator":"DoesNotExist"}]}"#,
        )
        .unwrap();
        assert_eq!(s.to_string(), "a=b,c notin (d,e),!f");
    }
}
