//! The webhook binary behind an egress proxy set in its environment, as the chart's `proxy`
//! values set it: `inject --image-lookup` reads a container's entrypoint from an HTTPS registry
//! whose name resolves nowhere on this machine, so only the test proxy's host map reaches it.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use akv_test_support::proxy::{Behaviour, Config, TestProxy};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use registry_harness::stand_in::{self, MANIFEST_TYPE, ServedImage, TestCa};

const REGISTRY: &str = "registry.corp.example";

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  containers:
    - name: app
      image: registry.corp.example/team/app:v1
      env:
        - name: TOKEN
          value: api-token@azurekeyvault?vault=shop-kv
";

/// `inject --image-lookup -f -` with exactly `env` as the proxy environment.
fn inject(ca_file: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"));
    command
        .arg("inject")
        .args(["--injector-image", "registry.example/akv-env:1.0"])
        .args(["--log-format", "text", "--image-lookup", "-f", "-"])
        .arg(format!("--registry-ca-file={}", ca_file.display()))
        .args(flags)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(POD.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_lookups_go_through_the_proxy_from_the_environment() {
    let ca = TestCa::new("akv-env webhook proxy test CA");
    let image = Arc::new(ServedImage::with_entrypoint(&["/srv/app", "--serve"]));
    let (manifest, config) = (image.clone(), image.clone());
    let router = axum::Router::new()
        .route(
            "/v2/team/app/manifests/{reference}",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, MANIFEST_TYPE)],
                    manifest.manifest.clone(),
                )
                    .into_response()
            }),
        )
        .route(
            "/v2/team/app/blobs/{digest}",
            get(move || async move { config.config.clone().into_response() }),
        );
    let registry = stand_in::serve(router, Some(ca.server_config_for(&[REGISTRY]))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let hosts = || [(REGISTRY.to_owned(), registry.addr)].into();
    let proxy = TestProxy::start(Config {
        hosts: hosts(),
        credentials: Some(("webhook".into(), "w3bh00k-pr0xy".into())),
        ..Default::default()
    });
    let refusing = TestProxy::start(Config {
        hosts: hosts(),
        behaviour: Behaviour::Refuse,
        ..Default::default()
    });
    let with_password = proxy.url_with("webhook", "w3bh00k-pr0xy");

    // HTTPS_PROXY from the environment: the entrypoint comes through the tunnel.
    let out = tokio::task::block_in_place(|| {
        inject(&ca_file, &[], &[("HTTPS_PROXY", with_password.as_str())])
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("/srv/app") && stdout.contains("--serve"),
        "{stdout}"
    );
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.status),
            ("CONNECT", "registry.corp.example:443", 200),
            "{}",
            proxy.log()
        );
    }
    assert!(!stderr.contains("w3bh00k-pr0xy") && !stdout.contains("w3bh00k-pr0xy"));

    // An https:// proxy: TLS to the proxy (trusted through the same roots), the registry's
    // own TLS inside the tunnel.
    let tls_proxy = TestProxy::start(Config {
        hosts: hosts(),
        credentials: Some(("webhook".into(), "w3bh00k-pr0xy".into())),
        tls: Some(ca.server_config_for(&["localhost"])),
        ..Default::default()
    });
    let https_url = tls_proxy.url_with("webhook", "w3bh00k-pr0xy");
    assert!(https_url.starts_with("https://"), "{https_url}");
    let out = tokio::task::block_in_place(|| {
        inject(&ca_file, &[], &[("HTTPS_PROXY", https_url.as_str())])
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("/srv/app"), "{stdout}");
    assert!(
        tls_proxy
            .log()
            .contains("CONNECT registry.corp.example:443 200"),
        "{}",
        tls_proxy.log()
    );
    assert!(!stderr.contains("w3bh00k-pr0xy") && !stdout.contains("w3bh00k-pr0xy"));

    // NO_PROXY lists the registry: it is looked up directly (and resolves nowhere here).
    let before = proxy.requests().len();
    let out = tokio::task::block_in_place(|| {
        inject(
            &ca_file,
            &[],
            &[
                ("HTTPS_PROXY", with_password.as_str()),
                ("no_proxy", ".corp.example"),
            ],
        )
    });
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());

    // --registry-proxy overrides HTTPS_PROXY for registries: here a proxy that refuses.
    let flag = format!("--registry-proxy={}", refusing.url());
    let out = tokio::task::block_in_place(|| {
        inject(
            &ca_file,
            &[&flag],
            &[("HTTPS_PROXY", with_password.as_str())],
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be reached")
            && stderr.contains("tunnel error: unsuccessful (through the webhook's egress proxy)"),
        "{stderr}"
    );
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
    assert!(
        refusing
            .log()
            .contains("CONNECT registry.corp.example:443 403"),
        "{}",
        refusing.log()
    );
    assert!(!stderr.contains("w3bh00k-pr0xy"), "{stderr}");

    // A proxy that takes the CONNECT and never answers: --registry-timeout ends the lookup.
    let hanging = TestProxy::start(Config {
        hosts: hosts(),
        behaviour: Behaviour::Hang,
        ..Default::default()
    });
    let flags = [
        format!("--registry-proxy={}", hanging.url()),
        "--registry-timeout=1s".to_owned(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = tokio::task::block_in_place(|| {
        inject(&ca_file, &flags, &[("HTTPS_PROXY", with_password.as_str())])
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("took longer than 1s (through the webhook's egress proxy)"),
        "{stderr}"
    );
    assert!(
        hanging.log().contains("CONNECT registry.corp.example:443"),
        "{}",
        hanging.log()
    );
    assert!(!stderr.contains("w3bh00k-pr0xy"), "{stderr}");
}
