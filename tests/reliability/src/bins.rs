//! The project's binaries, built first (a no-op when fresh) so a test never runs a stale one.
//! `AKV_ENV_BIN` / `AKV_ENV_WEBHOOK_BIN` point at prebuilt ones (e.g. a release build).

use std::path::PathBuf;
use std::process::Command;

use crate::{Error, Result};

/// The workspace root (this crate lives in `tests/reliability`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let command = format!("cargo build -p {package} --bin {bin}");
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .output()
        .map_err(|e| Error::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command,
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(target_dir().join("debug").join(bin))
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
