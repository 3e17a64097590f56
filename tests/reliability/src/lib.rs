//! Load, fault and leak checks for akv-env, against the local Key Vault (`fake-keyvault`).
//!
//! The pieces the tests and the `akv-env-herd` driver share: finding (and building) the real
//! binaries, starting `akv-env` with one pod's identity, the herd itself, and the pure parts
//! (summarising a herd) that are tested as tables. The leak scan is `akv_test_support::leak`.

pub mod bins;
pub mod herd;
pub mod pod;

/// Errors of the harness; the tests and the driver report them and stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("the fake Key Vault did not start: {0}")]
    FakeKeyVault(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
