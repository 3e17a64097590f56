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

/// `cargo`, without the calling test crate's own `CARGO_PKG_*` / `CARGO_MANIFEST_*` variables
/// (set by cargo test and nextest): build scripts that watch them (ring's does) would otherwise
/// rebuild the binary and half its dependencies whenever another test crate asked last, as
/// scripts/build-static.sh also avoids.
fn cargo_command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        let per_crate = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CFG_"]
            .iter()
            .any(|prefix| text.starts_with(prefix))
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_BIN_NAME",
                "OUT_DIR",
            ]
            .contains(&text.as_ref());
        if per_crate {
            command.env_remove(&name);
        }
    }
    command
}

fn cargo_build(package: &str, bin: &str) -> Result<PathBuf> {
    let command = format!("cargo build -p {package} --bin {bin}");
    let out = cargo_command()
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
