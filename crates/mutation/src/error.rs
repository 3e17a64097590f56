//! Why a pod is refused: every message names the container, the env var or annotation, and what
//! to do, because it is printed by `kubectl` to whoever applied the manifest.

use std::fmt;

use crate::ContainerRef;

/// One thing wrong with a pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the object is not a valid Pod: {0}")]
    InvalidPod(String),

    #[error("{container}: env var {env}: invalid Key Vault placeholder: {error}")]
    BadPlaceholder {
        container: ContainerRef,
        env: String,
        error: String,
    },

    #[error(
        "{container}: env var {env}: the placeholder names no vault and there is no default; add \
         `?vault=NAME`, or annotate the pod or its namespace with `akv-env.io/vault`"
    )]
    NoVault {
        container: ContainerRef,
        env: String,
    },

    #[error(
        "{container}: env var {env}: names starting with AKV_ENV_REF_ are reserved for akv-env's \
         `$(VAR)` captures; rename it"
    )]
    ReservedName {
        container: ContainerRef,
        env: String,
    },

    #[error("{container}: env var AKV_ENV_DEFAULT_VAULT: {error}")]
    BadDefaultVaultEnv {
        container: ContainerRef,
        error: String,
    },

    #[error("{origin} annotation `akv-env.io/vault`: {error}")]
    BadVaultAnnotation { origin: &'static str, error: String },

    /// `akv-env.io/restart-on-change` or `akv-env.io/cert-expiry-margin` cannot be used.
    #[error("{0}")]
    BadRotationAnnotation(String),

    #[error(
        "{container} (image \"{}\") has no `command` and its image's ENTRYPOINT/CMD could not \
         be read: {reason}; set `command` on the container",
        Abbreviated(.image)
    )]
    EntrypointUnknown {
        container: ContainerRef,
        image: String,
        reason: String,
    },

    #[error(
        "{container} (image \"{}\") has no `command` and its image has neither ENTRYPOINT \
         nor CMD, so there is no program to run; set `command` on the container",
        Abbreviated(.image)
    )]
    NoProgram {
        container: ContainerRef,
        image: String,
    },

    #[error(
        "the pod runs on {os} nodes (spec.os.name), but the akv-env injector runs on Linux only; \
         take the placeholders out or annotate the pod with akv-env.io/inject: \"false\""
    )]
    UnsupportedOs { os: String },

    #[error(
        "the pod already has {what} named \"{name}\", which akv-env needs for its own; rename it"
    )]
    NameClash { what: &'static str, name: String },

    #[error(
        "container \"{container}\" already mounts volume \"{volume}\" at {path}, where akv-env \
         mounts its injector; mount it elsewhere"
    )]
    MountClash {
        container: String,
        volume: String,
        path: String,
    },

    #[error("{container}: env var {env}: {error}")]
    VaultHost {
        container: ContainerRef,
        env: String,
        error: String,
    },

    #[error("{container}: env var {env}: {error}")]
    TrustSetting {
        container: ContainerRef,
        env: String,
        error: String,
    },

    #[error("namespace annotation `akv-env.io/cloud`: {error}")]
    BadCloudAnnotation { error: String },

    #[error(
        "namespace annotation `akv-env.io/cloud: {cloud}`: the operator does not let namespaces \
         choose this cloud (allowed: {allowed}); remove the annotation or ask an operator to add \
         the cloud to the webhook's --namespace-cloud (chart value cloud.namespaceChoices)"
    )]
    CloudNotAllowed { cloud: String, allowed: String },

    #[error(
        "pod annotation `akv-env.io/auth`: unknown value {value:?}; use workload-identity, \
         client-secret or managed-identity"
    )]
    BadAuthAnnotation { value: String },

    #[error(
        "pod annotation `akv-env.io/auth: managed-identity`: managed identity is not allowed \
         here; on AKS it is the node's identity, shared by every pod on the node. Give the pod \
         its own identity (Microsoft Entra Workload ID: label the pod \
         azure.workload.identity/use: \"true\" and use a service account annotated with \
         azure.workload.identity/client-id; or a service principal), or ask an operator to \
         allow managed identity for this namespace (namespace annotation \
         `akv-env.io/allow-managed-identity: \"true\"`) or the cluster (chart value \
         identity.allowManagedIdentity)"
    )]
    ManagedIdentityNotAllowed,
}

/// Text from the pod quoted in a message, cut to its start when long: a hostile pod can carry a
/// megabyte-long image name, and `kubectl` prints the whole refusal.
struct Abbreviated<'a>(&'a str);

impl Abbreviated<'_> {
    const MAX: usize = 256;
}

impl fmt::Display for Abbreviated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= Self::MAX {
            return f.write_str(text);
        }
        let mut end = Self::MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}... ({} bytes)", &text[..end], text.len())
    }
}

/// The refusal of a pod: all its problems at once, so one `kubectl apply` shows every typo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub problems: Vec<Problem>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("akv-env: ")?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Denial {}

impl From<Problem> for Denial {
    fn from(problem: Problem) -> Self {
        Denial {
            problems: vec![problem],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_how_long_it_was() {
        let cases = [
            ("short", "short".to_string()),
            (&*"x".repeat(256), "x".repeat(256)),
            (
                &*"x".repeat(300),
                format!("{}... (300 bytes)", "x".repeat(256)),
            ),
            // 255 ASCII bytes then a 2-byte character straddling the limit.
            (
                &*format!("{}é{}", "x".repeat(255), "y".repeat(100)),
                format!("{}... (357 bytes)", "x".repeat(255)),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Abbreviated(text).to_string(), want);
        }
    }
}
