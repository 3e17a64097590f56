//! The project's binaries the story runs: built (a no-op when fresh) so a test never runs a
//! stale one. `AKV_ENV_E2E_WEBHOOK_BIN` / `AKV_ENV_E2E_INJECTOR_BIN` (and `_ARM64_BIN`) point at
//! prebuilt ones.

use std::path::PathBuf;
use std::process::Command;

pub use akv_test_support::cargo::workspace_root;
use akv_test_support::cargo::{cargo_command, target_dir};

use crate::error::{Error, Result};
use crate::image::run;

/// `akv-env-webhook` (debug build: it runs on this host).
pub fn webhook_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("AKV_ENV_E2E_WEBHOOK_BIN") {
        return Ok(path.into());
    }
    run(cargo_command().current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "-p",
        "akv-env-webhook",
        "--bin",
        "akv-env-webhook",
    ]))?;
    Ok(target_dir().join("debug/akv-env-webhook"))
}

/// The static `akv-env` for `arch` (`amd64`, `arm64`) from `scripts/build-static.sh`: what the
/// injector image's index lists (static: the image is `FROM scratch`, and it runs inside the
/// busybox app image too).
/// `AKV_ENV_E2E_INJECTOR_BIN` (amd64) / `AKV_ENV_E2E_INJECTOR_ARM64_BIN` point at prebuilt ones.
pub fn static_injector_for(arch: &str) -> Result<PathBuf> {
    let var = match arch {
        "amd64" => "AKV_ENV_E2E_INJECTOR_BIN",
        _ => "AKV_ENV_E2E_INJECTOR_ARM64_BIN",
    };
    if let Some(path) = std::env::var_os(var) {
        return Ok(path.into());
    }
    let out = run(
        Command::new(workspace_root().join("scripts/build-static.sh"))
            .arg(arch)
            .current_dir(workspace_root()),
    )?;
    let text = String::from_utf8_lossy(&out);
    let path = text
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Error::Other("scripts/build-static.sh printed no path".into()))?;
    Ok(PathBuf::from(path))
}
