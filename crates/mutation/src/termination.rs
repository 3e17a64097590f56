//! The injector flag that sends its failure lines to where `kubectl describe pod` shows them.
//!
//! The kubelet bind-mounts a file at each container's `terminationMessagePath` and reports its
//! contents as `lastState.terminated.message`. The injector writes its failure lines to
//! `/dev/termination-log` (Kubernetes' default) when that file exists; a container whose pod
//! chose another path gets `--termination-message-path`. Nothing of the user's choices
//! (path, `terminationMessagePolicy`) is changed, and the default case adds no argument.

use crate::entrypoint::escape_for_kubelet;

/// Kubernetes' default `terminationMessagePath`, which the injector writes without a flag.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// The injector flags for a container with this `terminationMessagePath` (`None`: unset, which
/// the API server defaults). Escaped for the kubelet's `$(VAR)` expansion, like image words.
pub(crate) fn injector_flags(path: Option<&str>) -> Vec<String> {
    match path.filter(|p| !p.is_empty() && *p != DEFAULT_TERMINATION_MESSAGE_PATH) {
        Some(path) => vec![format!(
            "--termination-message-path={}",
            escape_for_kubelet(path)
        )],
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_default_path_becomes_a_flag() {
        for (path, want) in [
            (None, vec![]),
            (Some(""), vec![]),
            (Some("/dev/termination-log"), vec![]),
            (
                Some("/tmp/why"),
                vec!["--termination-message-path=/tmp/why".to_owned()],
            ),
            (
                Some("/var/$(X)/log"),
                vec!["--termination-message-path=/var/$$(X)/log".to_owned()],
            ),
        ] {
            assert_eq!(injector_flags(path), want, "{path:?}");
        }
    }
}
