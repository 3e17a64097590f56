//! The project's binaries the story runs: built (a no-op when fresh) so a test never runs a
//! stale one. `AKV_ENV_E2E_WEBHOOK_BIN` / `AKV_ENV_E2E_INJECTOR_BIN` (and `_ARM64_BIN`) point at
//! prebuilt ones.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};
use crate::image::run;

/// The workspace root (this crate lives in `tests/e2e`).
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
