//! Shared set-up for the fidelity tests: a seeded fake and clients that trust it.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use fake_keyvault::{FakeKeyVault, Options, Seed};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub const TENANT: &str = "72f988bf-0000-0000-0000-00000000abcd";
pub const VAULT: &str = "myvault";
pub const PINNED: &str = "0123456789abcdef0123456789abcdef";

/// Identities of every kind, a policy that limits `app-b`, and secrets in every state.
pub const SEED: &str = r#"
tenant: 72f988bf-0000-0000-0000-00000000abcd
identities:
  - { client_id: app-a, client_secret: s3cret }
  - { client_id: app-b, federated_token: federated-assertion-for-app-b }
  - { client_id: app-c, managed: true }
  - { client_id: system, managed: true }
vaults:
  myvault:
    access:
      app-a: ["*"]
      app-b: ["db-password"]
      app-c: ["*"]
      system: ["*"]
    secrets:
      db-password: { value: hunter2, content_type: text/plain }
      api-config:
        versions:
          - { value: '{"user":"u","pass":"p"}', version: 0123456789abcdef0123456789abcdef, content_type: application/json }
          - { value: '{"user":"u2","pass":"p2"}', exp: 2999-01-01T00:00:00Z, nbf: 2020-01-01T00:00:00Z }
      off: { value: disabled-value, enabled: false }
      expired: { value: still-here, exp: 2001-01-01T00:00:00Z }
    certificates:
      web-pem: { subject: "CN=web.example.com", dns_names: [web.example.com], content_type: application/x-pem-file }
      web-pfx: { subject: "CN=pfx.example.com", content_type: application/x-pkcs12 }
    keys:
      signing: { kty: EC, crv: P-256 }
  othervault:
    secrets:
      db-password: { value: other-hunter2 }
"#;

pub async fn start() -> FakeKeyVault {
    start_with(Options::default()).await
}

/// Starts the fake with [`SEED`] and the given knobs.
pub async fn start_with(mut opts: Options) -> FakeKeyVault {
    opts.seed = Seed::from_yaml(SEED).expect("test seed parses");
    FakeKeyVault::start(opts)
        .await
        .expect("fake Key Vault starts")
}

/// A reqwest client that trusts only the fake's CA and resolves the vault and login hosts to it.
pub fn http_client(kv: &FakeKeyVault) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(kv.ca_pem().as_bytes()) {
        roots
            .add(cert.expect("CA PEM parses"))
            .expect("CA is a valid trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let addr = kv.https_addr();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve("myvault.vault.azure.net", addr)
        .resolve("othervault.vault.azure.net", addr)
        .resolve("myvault.vault.azure.cn", addr)
        .resolve("login.microsoftonline.com", addr)
        .build()
        .expect("reqwest client builds")
}

/// A token for `client_id` (client-secret flow) with the given scope, via plain HTTP.
pub async fn token(
    kv: &FakeKeyVault,
    client: &reqwest::Client,
    client_id: &str,
    secret: &str,
    scope: &str,
) -> String {
    let resp = client
        .post(kv.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", scope),
        ]))
        .send()
        .await
        .expect("token request sent");
    assert_eq!(resp.status(), 200, "token request for {client_id}");
    let body: serde_json::Value = resp.json().await.expect("token response is JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}
