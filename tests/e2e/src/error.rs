//! The harness's errors: each names the step, the command or file, and what went wrong.

use crate::process::PlanError;

#[derive(thiserror::Error)]
pub enum Error {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("pod {pod}: {reason}")]
    Pod { pod: String, reason: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Harness(#[from] registry_harness::HarnessError),
    #[error(
        "the kubelet stand-in runs containers with runc, which needs root; run the tests as root (uid is {uid})"
    )]
    NotRoot { uid: u32 },
    #[error("{0}")]
    Other(String),
}

/// Tests `.unwrap()` these: show the message (e.g. "needs root"), not fields. Every variant's
/// message already includes its cause.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` helper for I/O errors that says what was being done.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
