//! Builds the project's binaries (a no-op when fresh) so a test never runs a stale one.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (this crate, like every test crate, lives two levels below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where cargo puts build output: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `cargo`, without the calling test crate's own `CARGO_PKG_*` / `CARGO_MANIFEST_*` variables
/// (set by cargo test and nextest): build scripts that watch them (ring's does) would otherwise
/// rebuild the binary and half its dependencies whenever another test crate asked last, as
/// scripts/build-static.sh also avoids.
pub fn cargo_command() -> Command {
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

/// Builds `bin` of `package` (debug profile: it runs on this host) and returns its path.
/// The error says which command failed and carries cargo's stderr.
pub fn build(package: &str, bin: &str) -> std::io::Result<PathBuf> {
    let what = format!("cargo build -p {package} --bin {bin}");
    let out = cargo_command()
        .current_dir(workspace_root())
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .output()
        .map_err(|e| std::io::Error::new(e.kind(), format!("`{what}`: {e}")))?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(target_dir().join("debug").join(bin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"), "{manifest}");
    }

    #[test]
    fn cargo_command_drops_the_calling_crates_variables() {
        // cargo test sets CARGO_PKG_NAME and CARGO_MANIFEST_DIR for this crate.
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some());
        let command = cargo_command();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        for name in ["CARGO_PKG_NAME", "CARGO_MANIFEST_DIR"] {
            assert!(
                removed.iter().any(|r| r == name),
                "{name} kept: {removed:?}"
            );
        }
    }
}
