//! The injector's trust flags, derived from the admitted pod spec only (issue 13).
//!
//! Settings that decide where a pod's token goes reach the injector as flags in the wrapped
//! container's `args`, never through its environment, which ConfigMaps can feed:
//! - `--auth` from the pod annotation `akv-env.io/auth`; `managed-identity` (on AKS the node's
//!   identity, shared by every pod on the node) only where the namespace
//!   (`akv-env.io/allow-managed-identity: "true"`) or the webhook (`--allow-managed-identity`)
//!   allows it, otherwise the pod is refused;
//! - `--ca-file`, `--resolve`, `--authority-host` from literal `env[].value`s of
//!   `AKV_ENV_CA_FILE`, `AKV_ENV_RESOLVE` and `AZURE_AUTHORITY_HOST` in the container (the last
//!   definition of a name, as the kubelet uses it); a definition through `valueFrom` or
//!   `envFrom` never becomes a flag;
//! - `--vault-host-suffix` for each suffix the operator added;
//! - `--ca-file=<injector dir>/ca-bundle.pem` for the operator's CA bundle, which the added init
//!   container writes into the injector's own volume: the pod cannot replace it (that volume,
//!   its mount path and the init container's name are refused in a pod), only add a CA file of
//!   its own (a second `--ca-file`);
//! - `--cloud` for the cloud pinned by the operator (`--cloud`) or chosen by the namespace
//!   (`akv-env.io/cloud`, among the clouds the operator lets namespaces choose): bare vault
//!   names take its suffix, and a vault URL of another cloud is refused at admission.

use std::collections::BTreeMap;

use akv_placeholder::{ObjectKind, Vault};
use akv_trust::{Cloud, VaultHosts};
use k8s_openapi::api::core::v1::EnvVar;

use crate::{ContainerRef, Problem};

/// Pod annotation: the identity the injector uses (`workload-identity`, `client-secret`,
/// `managed-identity`).
pub const ANNOTATION_AUTH: &str = "akv-env.io/auth";
/// Namespace annotation: `"true"` lets pods in the namespace choose managed identity.
pub const ANNOTATION_ALLOW_MANAGED_IDENTITY: &str = "akv-env.io/allow-managed-identity";
/// Namespace annotation: the namespace's cloud (`AzureChinaCloud`, ...), one of those the
/// operator lets namespaces choose (`--namespace-cloud`).
pub const ANNOTATION_CLOUD: &str = "akv-env.io/cloud";

const AUTH_MODES: &[&str] = &["workload-identity", "client-secret", "managed-identity"];

/// Env vars whose literal value in the container becomes an injector flag.
pub const LITERAL_FLAGS: &[(&str, &str)] = &[
    ("AKV_ENV_CA_FILE", "--ca-file"),
    ("AKV_ENV_RESOLVE", "--resolve"),
    ("AZURE_AUTHORITY_HOST", "--authority-host"),
];

/// The operator's identity and vault host policy (webhook flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustPolicy {
    /// `--allow-managed-identity`: every namespace may choose managed identity.
    pub allow_managed_identity: bool,
    /// Key Vault's and Managed HSM's domains plus `--vault-host-suffix`.
    pub vault_hosts: VaultHosts,
    /// `--cloud`: the cloud pinned for every namespace (bare names take its suffix, vault URLs
    /// of other clouds are refused). None: not pinned, bare names in the public cloud.
    pub cloud: Option<Cloud>,
    /// `--namespace-cloud`: clouds a namespace may choose with `akv-env.io/cloud` (namespace
    /// admins may be able to edit it, so it picks among these and never widens them).
    pub namespace_clouds: Vec<Cloud>,
    /// `--ca-bundle-file`'s PEM: the cluster's extra CAs, which the added init container writes
    /// next to the injector (read-only for wrapped containers) and every wrapped container
    /// trusts through `--ca-file`, before any CA file of the pod's own.
    pub ca_bundle: Option<String>,
}

/// What the webhook knows of the pod's namespace (its `akv-env.io/*` annotations).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    /// `akv-env.io/vault`.
    pub vault: Option<String>,
    /// `akv-env.io/allow-managed-identity: "true"`.
    pub allow_managed_identity: bool,
    /// `akv-env.io/cloud`.
    pub cloud: Option<String>,
}

impl NamespaceFacts {
    /// Reads the facts from a namespace's annotations.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        NamespaceFacts {
            vault: annotations.get(crate::ANNOTATION_VAULT).cloned(),
            allow_managed_identity: annotations
                .get(ANNOTATION_ALLOW_MANAGED_IDENTITY)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            cloud: annotations.get(ANNOTATION_CLOUD).cloned(),
        }
    }
}

/// The pod's cloud: the namespace's `akv-env.io/cloud` where the operator lets namespaces
/// choose (`--namespace-cloud`), else the operator's `--cloud`, else none (not pinned). Where
/// namespaces may choose, an annotation naming another cloud refuses the pod rather than be
/// ignored (its author expects it); where they may not, the annotation is not read.
pub(crate) fn effective_cloud(
    namespace: &NamespaceFacts,
    policy: &TrustPolicy,
) -> Result<Option<Cloud>, Problem> {
    let value = namespace.cloud.as_deref().filter(|v| !v.trim().is_empty());
    let Some(value) = value.filter(|_| !policy.namespace_clouds.is_empty()) else {
        return Ok(policy.cloud.clone());
    };
    let cloud = Cloud::parse(value).map_err(|e| Problem::BadCloudAnnotation {
        error: e.to_string(),
    })?;
    if policy.cloud.as_ref() == Some(&cloud) || policy.namespace_clouds.contains(&cloud) {
        return Ok(Some(cloud));
    }
    let mut allowed: Vec<String> = policy.cloud.iter().map(ToString::to_string).collect();
    for c in &policy.namespace_clouds {
        if !allowed.contains(&c.to_string()) {
            allowed.push(c.to_string());
        }
    }
    Err(Problem::CloudNotAllowed {
        cloud: cloud.to_string(),
        allowed: allowed.join(", "),
    })
}

/// `--cloud=NAME` for a pinned cloud.
pub(crate) fn cloud_flag(cloud: Option<&Cloud>) -> Option<String> {
    cloud.map(|c| format!("--cloud={}", c.name()))
}

/// Whether the namespace's `akv-env.io/cloud` must be read for this pod: the operator lets
/// namespaces choose a cloud and the pod is one [`crate::plan`] wraps or checks.
pub fn needs_namespace_cloud(pod: &serde_json::Value, policy: &TrustPolicy) -> bool {
    !policy.namespace_clouds.is_empty() && crate::plan::in_scope_with_placeholders(pod)
}

/// Whether the pod asks for managed identity, so that the namespace must be read.
pub fn asks_for_managed_identity(pod: &serde_json::Value) -> bool {
    crate::plan::at(pod, &["metadata", "annotations", ANNOTATION_AUTH])
        .and_then(serde_json::Value::as_str)
        .is_some_and(|v| v.trim() == "managed-identity")
}

/// `--auth=MODE` from the pod annotation, or why the pod is refused.
pub(crate) fn auth_flag(
    annotations: &BTreeMap<String, String>,
    namespace: &NamespaceFacts,
    policy: &TrustPolicy,
) -> Result<Option<String>, Problem> {
    let Some(value) = annotations.get(ANNOTATION_AUTH) else {
        return Ok(None);
    };
    let mode = value.trim();
    if !AUTH_MODES.contains(&mode) {
        return Err(Problem::BadAuthAnnotation {
            value: value.clone(),
        });
    }
    if mode == "managed-identity"
        && !(policy.allow_managed_identity || namespace.allow_managed_identity)
    {
        return Err(Problem::ManagedIdentityNotAllowed);
    }
    Ok(Some(format!("--auth={mode}")))
}

/// The container's flags from literal env values, and warnings for definitions that cannot
/// become flags. The last definition of a name counts, as for the kubelet.
pub(crate) fn container_flags(
    container: &ContainerRef,
    env: &[EnvVar],
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Vec<String> {
    let mut flags = Vec::new();
    for (name, flag) in LITERAL_FLAGS {
        let Some(var) = env.iter().rev().find(|e| e.name == *name) else {
            continue;
        };
        let Some(value) = var.value.as_deref().filter(|_| var.value_from.is_none()) else {
            if var.value_from.is_some() {
                warnings.push(format!(
                    "akv-env: {container}: env var {name} comes from valueFrom, so akv-env does \
                     not use it (a ConfigMap must not decide where the pod's token goes); write \
                     it as a literal value"
                ));
            }
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let bad = |error: String| Problem::TrustSetting {
            container: container.clone(),
            env: (*name).to_owned(),
            error,
        };
        if value.contains('$') {
            problems.push(bad(
                "must be a literal without `$`: a `$(VAR)` reference could take its value from a \
                 ConfigMap"
                    .to_owned(),
            ));
            continue;
        }
        let checked = match *name {
            "AKV_ENV_RESOLVE" => akv_trust::parse_resolve(value)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            "AZURE_AUTHORITY_HOST" => akv_trust::authority::choose(Some(value), None)
                .map(|_| ())
                .map_err(|e| e.to_string().replace("--authority-host: ", "")),
            _ if !value.starts_with('/') => Err("must be an absolute path".to_owned()),
            _ => Ok(()),
        };
        match checked {
            Ok(()) => flags.push(format!("{flag}={value}")),
            Err(error) => problems.push(bad(error)),
        }
    }
    if env.iter().any(|e| e.name == "AKV_ENV_AUTH") {
        warnings.push(format!(
            "akv-env: {container}: env var AKV_ENV_AUTH is not read; choose the identity with \
             the pod annotation {ANNOTATION_AUTH}"
        ));
    }
    flags
}

/// `--vault-host-suffix=S` for each suffix the operator added (and an operator's own suffix
/// given as the cloud).
pub(crate) fn suffix_flags(hosts: &VaultHosts) -> impl Iterator<Item = String> + '_ {
    hosts
        .extra_suffixes()
        .iter()
        .map(|s| format!("--vault-host-suffix={s}"))
}

/// Checks a placeholder's vault against the policy (pinned to the pod's cloud).
pub(crate) fn check_vault(
    hosts: &VaultHosts,
    container: &ContainerRef,
    env: &str,
    vault: &Vault,
    kind: ObjectKind,
) -> Result<(), Problem> {
    hosts.check(vault, kind).map_err(|e| Problem::VaultHost {
        container: container.clone(),
        env: env.to_owned(),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ContainerKind;
    use k8s_openapi::api::core::v1::{ConfigMapKeySelector, EnvVarSource};

    fn container() -> ContainerRef {
        ContainerRef {
            kind: ContainerKind::Container,
            index: 0,
            name: "app".into(),
        }
    }

    fn literal(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from_config_map(name: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "cm".into(),
                    key: "k".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn literal_values_become_flags_and_nothing_else_does() {
        // (case, env, flags, problems' fragments, warnings' fragments)
        type Case = (
            &'static str,
            Vec<EnvVar>,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![], vec![], vec![]),
            (
                "all three",
                vec![
                    literal("AKV_ENV_RESOLVE", "kv.vault.azure.net=10.0.0.4:443"),
                    literal("AKV_ENV_CA_FILE", "/etc/ca/ca.pem"),
                    literal("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/"),
                ],
                vec![
                    "--ca-file=/etc/ca/ca.pem",
                    "--resolve=kv.vault.azure.net=10.0.0.4:443",
                    "--authority-host=https://login.microsoftonline.us/",
                ],
                vec![],
                vec![],
            ),
            (
                "from a ConfigMap: no flag, a warning",
                vec![from_config_map("AKV_ENV_RESOLVE")],
                vec![],
                vec![],
                vec!["env var AKV_ENV_RESOLVE comes from valueFrom"],
            ),
            (
                "a later valueFrom overrides the literal",
                vec![
                    literal("AKV_ENV_CA_FILE", "/etc/ca.pem"),
                    from_config_map("AKV_ENV_CA_FILE"),
                ],
                vec![],
                vec![],
                vec!["AKV_ENV_CA_FILE comes from valueFrom"],
            ),
            (
                "the last literal counts",
                vec![
                    literal("AKV_ENV_CA_FILE", "/a.pem"),
                    literal("AKV_ENV_CA_FILE", "/b.pem"),
                ],
                vec!["--ca-file=/b.pem"],
                vec![],
                vec![],
            ),
            (
                "a map covering Entra",
                vec![literal(
                    "AKV_ENV_RESOLVE",
                    "login.microsoftonline.com=10.0.0.4:443",
                )],
                vec![],
                vec![
                    "container \"app\": env var AKV_ENV_RESOLVE: entry 1",
                    "Entra",
                ],
                vec![],
            ),
            (
                "a $(VAR) reference",
                vec![literal("AKV_ENV_CA_FILE", "/etc/$(CA_DIR)/ca.pem")],
                vec![],
                vec!["env var AKV_ENV_CA_FILE: must be a literal without `$`"],
                vec![],
            ),
            (
                "a relative CA path",
                vec![literal("AKV_ENV_CA_FILE", "ca.pem")],
                vec![],
                vec!["AKV_ENV_CA_FILE: must be an absolute path"],
                vec![],
            ),
            (
                "a plain-http authority",
                vec![literal("AZURE_AUTHORITY_HOST", "http://login.test")],
                vec![],
                vec!["AZURE_AUTHORITY_HOST: \"http://login.test\" is not an authority URL"],
                vec![],
            ),
            (
                "AKV_ENV_AUTH",
                vec![literal("AKV_ENV_AUTH", "managed-identity")],
                vec![],
                vec![],
                vec![
                    "AKV_ENV_AUTH is not read; choose the identity with the pod annotation akv-env.io/auth",
                ],
            ),
        ];
        for (case, env, want_flags, want_problems, want_warnings) in cases {
            let (mut problems, mut warnings) = (Vec::new(), Vec::new());
            let flags = container_flags(&container(), &env, &mut problems, &mut warnings);
            assert_eq!(flags, want_flags, "{case}");
            assert_eq!(
                problems.len(),
                usize::from(!want_problems.is_empty()),
                "{case}: {problems:?}"
            );
            for fragment in want_problems {
                assert!(
                    problems[0].to_string().contains(fragment),
                    "{case}: {}",
                    problems[0]
                );
            }
            assert_eq!(warnings.len(), want_warnings.len(), "{case}: {warnings:?}");
            for (w, fragment) in warnings.iter().zip(want_warnings) {
                assert!(w.contains(fragment), "{case}: {w}");
            }
        }
    }

    #[test]
    fn managed_identity_only_where_allowed() {
        let annotations = |v: &str| BTreeMap::from([(ANNOTATION_AUTH.to_owned(), v.to_owned())]);
        let closed = TrustPolicy::default();
        let open = TrustPolicy {
            allow_managed_identity: true,
            ..Default::default()
        };
        let ns_allows = NamespaceFacts::from_annotations(&BTreeMap::from([(
            ANNOTATION_ALLOW_MANAGED_IDENTITY.to_owned(),
            "true".to_owned(),
        )]));
        let ns = NamespaceFacts::default();
        // (case, annotation, namespace, policy, Ok(flag) or a fragment of the refusal)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a NamespaceFacts,
            &'a TrustPolicy,
            Result<Option<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            ("no annotation", None, &ns, &closed, Ok(None)),
            (
                "workload identity",
                Some("workload-identity"),
                &ns,
                &closed,
                Ok(Some("--auth=workload-identity")),
            ),
            (
                "client secret",
                Some(" client-secret "),
                &ns,
                &closed,
                Ok(Some("--auth=client-secret")),
            ),
            (
                "managed identity, not allowed",
                Some("managed-identity"),
                &ns,
                &closed,
                Err("akv-env.io/allow-managed-identity"),
            ),
            (
                "managed identity, namespace allows",
                Some("managed-identity"),
                &ns_allows,
                &closed,
                Ok(Some("--auth=managed-identity")),
            ),
            (
                "managed identity, webhook allows",
                Some("managed-identity"),
                &ns,
                &open,
                Ok(Some("--auth=managed-identity")),
            ),
            (
                "typo",
                Some("managed"),
                &ns_allows,
                &open,
                Err("unknown value \"managed\""),
            ),
        ];
        for (case, value, ns, policy, want) in cases {
            let a = value.map(annotations).unwrap_or_default();
            match (auth_flag(&a, ns, policy), want) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), want, "{case}"),
                (Err(p), Err(fragment)) => assert!(p.to_string().contains(fragment), "{case}: {p}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
        let not_true = NamespaceFacts::from_annotations(&BTreeMap::from([(
            ANNOTATION_ALLOW_MANAGED_IDENTITY.to_owned(),
            "yes".to_owned(),
        )]));
        assert!(!not_true.allow_managed_identity);
    }
}
