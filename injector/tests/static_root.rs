//! The static musl binary runs in a root holding nothing but itself and a CA file: no /etc, no
//! CA bundle, no shell, no libc, as an unprivileged uid, and still resolves over HTTPS.

mod common;

use common::*;
use std::{os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command};

/// The static binary: `AKV_ENV_STATIC_BIN`, else what `scripts/build-static.sh` builds (a few
/// minutes the first time, then a no-op); the script prints the binary's path last.
fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("AKV_ENV_STATIC_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("scripts/build-static.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/build-static.sh runs");
    assert!(out.status.success(), "scripts/build-static.sh failed");
    let path = String::from_utf8(out.stdout).expect("a UTF-8 path");
    PathBuf::from(
        path.lines()
            .last()
            .expect("the script prints the binary's path")
            .trim(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_binary_resolves_in_an_empty_root_as_nobody() {
    let bin = static_binary();
    let file = Command::new("file")
        .arg("-b")
        .arg(&bin)
        .output()
        .expect("file(1) is installed");
    let desc = String::from_utf8_lossy(&file.stdout).into_owned();
    assert!(
        desc.contains("static-pie linked") || desc.contains("statically linked"),
        "{desc}"
    );

    let h = Harness::start().await;
    h.kv.upsert_secret("myvault", "path", "/bin", Default::default());
    let root = h.dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy(&bin, root.join("bin/akv-env")).unwrap();
    std::fs::copy(&h.ca_file, root.join("ca.pem")).unwrap();
    for (p, mode) in [
        (h.dir.path().to_path_buf(), 0o755),
        (root.clone(), 0o755),
        (root.join("bin"), 0o755),
        (root.join("ca.pem"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    assert!(!root.join("etc").exists() && !root.join("lib").exists());

    let run_in_root = |extra: &[(&str, &str)]| {
        // Absolute paths: the child's PATH below is a placeholder, and Command searches it.
        let mut c = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("/usr/sbin/chroot");
            c.arg("--userspec=65534:65534").arg(&root);
            c
        } else {
            let mut c = Command::new("/usr/bin/unshare");
            c.args(["--user", "--map-root-user", "--mount"])
                .arg(format!("--root={}", root.display()));
            c
        };
        // The program is found on the PATH that the placeholder resolves to: it only runs if
        // the value arrived.
        c.arg("/bin/akv-env")
            .arg("--ca-file=/ca.pem")
            .arg(format!("--resolve={}", h.resolve_map()))
            .arg(format!("--authority-host={}", h.kv.test_authority_host()))
            .args(["--", "akv-env", "version"])
            .env_clear()
            .env("PATH", "path@azurekeyvault")
            .env("AKV_ENV_DEFAULT_VAULT", "myvault")
            .env("AKV_ENV_TIMEOUT", "20s")
            .env("AZURE_TENANT_ID", h.kv.tenant())
            .env("AZURE_CLIENT_ID", "app-a")
            .env("AZURE_CLIENT_SECRET", "s3cret-a");
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    // Async waits: the fake Key Vault serves from this test's runtime meanwhile.
    let ok = tokio::process::Command::from(run_in_root(&[]))
        .output()
        .await
        .unwrap();
    let bad = tokio::process::Command::from(run_in_root(&[("DB", "no-such@azurekeyvault")]))
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        format!("akv-env {}", env!("CARGO_PKG_VERSION"))
    );
    let reads: Vec<_> =
        h.kv.accesses()
            .into_iter()
            .filter(|a| a.name == "path" && a.status == 200)
            .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0].identity.as_deref(), Some("app-a"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("DB: secret no-such in vault myvault: not found"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
