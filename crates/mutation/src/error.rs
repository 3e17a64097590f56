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

    #[error("{container}: env var AKV_ENV_DEFAULT_VAULT: {error}")]
    BadDefaultVaultEnv {
        container: ContainerRef,
        error: String,
    },

    #[error("{origin} annotation `akv-env.io/vault`: {error}")]
    BadVaultAnnotation { origin: &'static str, error: String },

    #[error(
        "{container} (image \"{image}\") has no `command` and its image's ENTRYPOINT/CMD could not \
         be read: {reason}; set `command` on the container"
    )]
    EntrypointUnknown {
        container: ContainerRef,
        image: String,
        reason: String,
    },

    #[error(
        "{container} (image \"{image}\") has no `command` and its image has neither ENTRYPOINT \
         nor CMD, so there is no program to run; set `command` on the container"
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
