//! The `fake-keyvault` binary as scripts use it: ready lines on stdout, a token and a secret
//! over real HTTPS, a clean exit on SIGTERM.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[tokio::test]
async fn binary_prints_ready_lines_serves_a_secret_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/secrets.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-keyvault"))
        .args(["--listen", "127.0.0.1:0", "--secrets", seed, "--ca-out"])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut ready = HashMap::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        ready.insert(k.to_string(), v.to_string());
        if k == "ca" {
            break;
        }
    }
    for key in ["vault_url", "https_addr", "http_addr", "token_url", "ca"] {
        assert!(ready.contains_key(key), "missing {key} in {ready:?}");
    }
    assert_eq!(ready["vault_url"], "https://myvault.vault.azure.net");
    let addr: std::net::SocketAddr = ready["https_addr"].parse().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca).expect("CA file written") {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("myvault.vault.azure.net", addr)
        .resolve("login.microsoftonline.com", addr)
        .build()
        .unwrap();
    let resp = client
        .post(&ready["token_url"])
        .header("content-type", "application/x-www-form-urlencoded")
        .body(common::form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-a"),
            ("client_secret", "s3cret"),
            ("scope", "https://vault.azure.net/.default"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: serde_json::Value = resp.json().await.unwrap();
    let secret: serde_json::Value = client
        .get(format!(
            "{}/secrets/db-password?api-version=7.5",
            ready["vault_url"]
        ))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secret["value"], "hunter2");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    assert!(
        logs.contains("/secrets/db-password"),
        "requests are logged: {logs}"
    );
    assert!(
        !logs.contains("hunter2") && !logs.contains("s3cret"),
        "no secret values in logs: {logs}"
    );
}
