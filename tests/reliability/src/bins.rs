//! The project's binaries, built first (a no-op when fresh) so a test never runs a stale one.
//! `AKV_ENV_BIN` / `AKV_ENV_WEBHOOK_BIN` point at prebuilt ones (e.g. a release build).

use std::path::PathBuf;

use crate::{Error, Result};

fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    akv_test_support::cargo::build(package, bin).map_err(|e| Error::Command {
        command: format!("cargo build -p {package} --bin {bin}"),
        detail: e.to_string(),
    })
}

/// The injector, `akv-env` (debug build unless `AKV_ENV_BIN` is set).
pub fn injector() -> Result<PathBuf> {
    match std::env::var_os("AKV_ENV_BIN") {
        Some(path) => Ok(path.into()),
        None => cargo_build("akv-env", "akv-env"),
    }
}

/// The webhook, `akv-env-webhook` (debug build unless `AKV_ENV_WEBHOOK_BIN` is set).
pub fn webhook() -> Result<PathBuf> {
    match std::env::var_os("AKV_ENV_WEBHOOK_BIN") {
        Some(path) => Ok(path.into()),
        None => cargo_build("akv-env-webhook", "akv-env-webhook"),
    }
}
