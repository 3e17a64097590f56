//! Microsoft's Python clients (azure-identity, azure-keyvault-*) against the fake. The venv comes
//! from scripts/setup.sh; without it this test fails, telling how to create it.

mod common;

use std::path::PathBuf;

use common::{PINNED, TENANT, VAULT};
use fake_keyvault::GrantMethod;
use serde_json::Value;

/// `$AKV_ENV_TEST_PYTHON`, else the project venv's python.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AKV_ENV_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python venv at {}: run scripts/setup.sh (it installs azure-identity and azure-keyvault-* from \
         tests/fake-keyvault/python/requirements.txt), or set AKV_ENV_TEST_PYTHON",
        venv.display()
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_reads_secrets_certificates_and_keys() {
    let kv = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, kv.ca_pem()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/fidelity.py");
    let python = python();
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .env("FAKE_KV_PORT", kv.https_addr().port().to_string())
        .env("FAKE_KV_CA", &ca)
        .env("FAKE_KV_TENANT", TENANT)
        .env("FAKE_KV_VAULT", VAULT)
        .env("FAKE_KV_CLIENT_ID", "app-a")
        .env("FAKE_KV_CLIENT_SECRET", "s3cret")
        .env("FAKE_KV_PINNED", PINNED)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup.sh", python.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "fidelity.py failed ({}):\n{stderr}",
        output.status
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "fidelity.py printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    // (JSON pointer, expected)
    let cases: Vec<(&str, Value)> = vec![
        ("/latest/value", "hunter2".into()),
        ("/latest/content_type", "text/plain".into()),
        ("/pinned/value", r#"{"user":"u","pass":"p"}"#.into()),
        ("/pinned/version", PINNED.into()),
        ("/not_found/status", 404.into()),
        ("/not_found/code", "SecretNotFound".into()),
        ("/disabled/status", 403.into()),
        ("/disabled/code", "Forbidden".into()),
        ("/certificate/name", "web-pfx".into()),
        ("/certificate/subject", "CN=pfx.example.com".into()),
        ("/certificate/thumbprint_matches", true.into()),
        (
            "/certificate/policy_content_type",
            "application/x-pkcs12".into(),
        ),
        ("/pfx/content_type", "application/x-pkcs12".into()),
        ("/pfx/has_key", true.into()),
        ("/pfx/leaf_matches_cer", true.into()),
        ("/pfx/key_matches_cert", true.into()),
        ("/pfx/managed", true.into()),
        ("/pem/content_type", "application/x-pem-file".into()),
        ("/pem/subject", "CN=web.example.com".into()),
        ("/pem/key_matches_cert", true.into()),
        ("/key/name", "signing".into()),
        ("/key/kty", "EC".into()),
        ("/key/crv", "P-256".into()),
        ("/key/x_len", 32.into()),
        ("/key/y_len", 32.into()),
    ];
    for (pointer, want) in cases {
        assert_eq!(out.pointer(pointer), Some(&want), "{pointer} in {out}");
    }
    let versions = out["versions"].as_array().expect("versions list");
    assert_eq!(versions.len(), 2, "{out}");
    assert!(versions.contains(&Value::from(PINNED)), "{out}");
    let secret_id = out["certificate"]["secret_id"].as_str().unwrap();
    assert!(
        secret_id.starts_with("https://myvault.vault.azure.net/secrets/web-pfx/"),
        "{secret_id}"
    );

    // Python asked for tokens as app-a with its client secret, for the vault scope only.
    let grants = kv.token_grants();
    assert!(!grants.is_empty());
    assert!(
        grants.iter().all(|g| g.identity == "app-a"
            && g.method == GrantMethod::ClientSecret
            && g.scope == "https://vault.azure.net/.default"),
        "{grants:?}"
    );
    assert!(
        kv.accesses()
            .iter()
            .filter(|a| a.status == 200)
            .all(|a| a.identity.as_deref() == Some("app-a"))
    );
}
