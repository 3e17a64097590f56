//! The official Azure SDK for Rust against the fake: if the SDK disagrees, the fake is wrong.

mod common;

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, StatusCode, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use azure_security_keyvault_secrets::models::SecretClientGetSecretOptions;
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use base64::Engine;
use common::{PINNED, TENANT, VAULT};
use fake_keyvault::{Access, FakeKeyVault, GrantMethod, ObjectKind};
use futures::TryStreamExt;

fn options(kv: &FakeKeyVault) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(common::http_client(kv)))),
        ..Default::default()
    }
}

fn credential(kv: &FakeKeyVault, client_id: &str, secret: &str) -> Arc<dyn TokenCredential> {
    ClientSecretCredential::new(
        TENANT,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(ClientSecretCredentialOptions {
            client_options: options(kv),
        }),
    )
    .expect("credential builds")
}

fn secret_client(kv: &FakeKeyVault, vault: &str, client_id: &str, secret: &str) -> SecretClient {
    SecretClient::new(
        &kv.vault_url(vault),
        credential(kv, client_id, secret),
        Some(SecretClientOptions {
            client_options: options(kv),
            ..Default::default()
        }),
    )
    .expect("secret client builds")
}

async fn get(
    client: &SecretClient,
    name: &str,
    version: Option<&str>,
) -> azure_core::Result<azure_security_keyvault_secrets::models::Secret> {
    let opts = SecretClientGetSecretOptions {
        secret_version: version.map(str::to_string),
        ..Default::default()
    };
    client.get_secret(name, Some(opts)).await?.into_model()
}

/// (status, error code) of an SDK error, walking to the HTTP response.
fn status_and_code(err: &azure_core::Error) -> (StatusCode, String) {
    match err.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => (*status, error_code.clone().unwrap_or_default()),
        other => panic!("expected an HTTP error, got {other:?}: {err}"),
    }
}

#[tokio::test]
async fn sdk_reads_latest_and_pinned_versions() {
    let kv = common::start().await;
    let client = secret_client(&kv, VAULT, "app-a", "s3cret");

    // (case, name, version, value, content type)
    let cases = [
        ("latest", "db-password", None, "hunter2", Some("text/plain")),
        (
            "latest of two",
            "api-config",
            None,
            r#"{"user":"u2","pass":"p2"}"#,
            None,
        ),
        (
            "pinned",
            "api-config",
            Some(PINNED),
            r#"{"user":"u","pass":"p"}"#,
            Some("application/json"),
        ),
        (
            "expired is still served",
            "expired",
            None,
            "still-here",
            None,
        ),
    ];
    for (case, name, version, value, content_type) in cases {
        let secret = get(&client, name, version)
            .await
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(secret.value.as_deref(), Some(value), "case {case}");
        assert_eq!(secret.content_type.as_deref(), content_type, "case {case}");
        let id = secret.id.expect("id");
        assert!(
            id.starts_with(&format!("https://myvault.vault.azure.net/secrets/{name}/")),
            "case {case}: {id}"
        );
        if let Some(v) = version {
            assert!(id.ends_with(v), "case {case}: {id}");
        }
        assert_eq!(
            secret.attributes.and_then(|a| a.enabled),
            Some(true),
            "case {case}"
        );
    }

    // The client followed the challenge once, then used one token for every read.
    let grants = kv.token_grants();
    assert_eq!(grants.len(), 1, "one token for all reads: {grants:?}");
    assert_eq!(grants[0].identity, "app-a");
    assert_eq!(grants[0].method, GrantMethod::ClientSecret);
    assert_eq!(grants[0].scope, "https://vault.azure.net/.default");
    let accesses = kv.accesses();
    assert_eq!(
        accesses[0].status, 401,
        "first request is the unauthenticated challenge probe"
    );
    assert_eq!(accesses[0].identity, None);
    let served: Vec<&Access> = accesses.iter().filter(|a| a.status == 200).collect();
    assert_eq!(served.len(), 4);
    assert!(
        served
            .iter()
            .all(|a| a.identity.as_deref() == Some("app-a") && a.vault == VAULT)
    );
    assert_eq!(served[2].version.as_deref(), Some(PINNED));
}

#[tokio::test]
async fn sdk_lists_versions_across_pages() {
    let kv = common::start().await;
    for i in 0..3 {
        kv.upsert_secret(VAULT, "api-config", &format!("v{i}"), Default::default());
    }
    let client = secret_client(&kv, VAULT, "app-a", "s3cret");
    let opts =
        azure_security_keyvault_secrets::models::SecretClientListSecretPropertiesVersionsOptions {
            maxresults: Some(2),
            ..Default::default()
        };
    let pager = client
        .list_secret_properties_versions("api-config", Some(opts))
        .expect("pager");
    let items: Vec<_> = pager.try_collect().await.expect("all pages");
    let ids: Vec<String> = items.iter().map(|p| p.id.clone().expect("id")).collect();
    assert_eq!(ids.len(), 5, "2 seeded + 3 upserted versions: {ids:?}");
    assert!(ids[0].ends_with(PINNED), "oldest first: {ids:?}");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 5, "pages do not repeat items");
    let pages = kv
        .accesses()
        .iter()
        .filter(|a| a.status == 200 && a.name == "api-config")
        .count();
    assert_eq!(pages, 3, "5 items at 2 per page");
}

#[tokio::test]
async fn sdk_reads_certificate_backing_secrets() {
    let kv = common::start().await;
    let client = secret_client(&kv, VAULT, "app-a", "s3cret");

    let pem = get(&client, "web-pem", None)
        .await
        .expect("PEM backing secret");
    assert_eq!(pem.content_type.as_deref(), Some("application/x-pem-file"));
    assert_eq!(pem.managed, Some(true));
    let version = pem
        .id
        .as_deref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        pem.kid.as_deref(),
        Some(format!("https://myvault.vault.azure.net/keys/web-pem/{version}").as_str())
    );
    let value = pem.value.expect("value");
    assert!(
        value.starts_with("-----BEGIN PRIVATE KEY-----"),
        "key first"
    );
    assert!(
        value.contains("-----BEGIN CERTIFICATE-----"),
        "then the certificate"
    );

    let pfx = get(&client, "web-pfx", None)
        .await
        .expect("PKCS#12 backing secret");
    assert_eq!(pfx.content_type.as_deref(), Some("application/x-pkcs12"));
    let der = base64::engine::general_purpose::STANDARD
        .decode(pfx.value.expect("value"))
        .expect("base64");
    let store =
        p12_keystore::KeyStore::from_pkcs12(&der, "", p12_keystore::Pkcs12ImportPolicy::Strict)
            .expect("password-less PKCS#12");
    let (_, chain) = store
        .private_key_chain()
        .expect("private key with its certificate");
    assert_eq!(chain.certs().len(), 1);
    assert!(
        chain.certs()[0].subject().contains("pfx.example.com"),
        "subject {}",
        chain.certs()[0].subject()
    );
}

#[tokio::test]
async fn sdk_surfaces_key_vault_errors() {
    let kv = common::start().await;
    let a = secret_client(&kv, VAULT, "app-a", "s3cret");

    // (case, name, version, status, code)
    let cases = [
        (
            "not found",
            "nope",
            None,
            StatusCode::NotFound,
            "SecretNotFound",
        ),
        (
            "unknown version",
            "api-config",
            Some("ffffffffffffffffffffffffffffffff"),
            StatusCode::NotFound,
            "SecretNotFound",
        ),
        ("disabled", "off", None, StatusCode::Forbidden, "Forbidden"),
    ];
    for (case, name, version, status, code) in cases {
        let err = get(&a, name, version).await.expect_err(case);
        assert_eq!(
            status_and_code(&err),
            (status, code.to_string()),
            "case {case}: {err}"
        );
        assert!(
            !format!("{err:?}").contains("disabled-value"),
            "case {case}: no value in errors"
        );
    }
}

#[tokio::test]
async fn policy_denies_and_records_the_caller() {
    let kv = common::start().await;
    // app-b is a workload identity: it presents its federated token file's content.
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "federated-assertion-for-app-b").unwrap();
    let cred = azure_identity::WorkloadIdentityCredential::new(Some(
        azure_identity::WorkloadIdentityCredentialOptions {
            credential_options: azure_identity::ClientAssertionCredentialOptions {
                client_options: options(&kv),
            },
            client_id: Some("app-b".into()),
            tenant_id: Some(TENANT.into()),
            token_file_path: Some(token_file.path().to_path_buf()),
        },
    ))
    .expect("workload identity credential");
    let client = SecretClient::new(
        &kv.vault_url(VAULT),
        cred,
        Some(SecretClientOptions {
            client_options: options(&kv),
            ..Default::default()
        }),
    )
    .unwrap();
    let allowed = get(&client, "db-password", None)
        .await
        .expect("app-b may read db-password");
    assert_eq!(allowed.value.as_deref(), Some("hunter2"));
    let err = get(&client, "api-config", None)
        .await
        .expect_err("app-b may not read api-config");
    // Key Vault's RBAC message holds escaped line breaks, which the SDK's borrowed-string error
    // parser cannot read: it reports the status ("403") as the code, as it does against Azure.
    let ErrorKind::HttpResponse {
        status,
        raw_response: Some(raw),
        ..
    } = err.kind()
    else {
        panic!("expected an HTTP error: {err}");
    };
    assert_eq!(*status, StatusCode::Forbidden);
    let body: serde_json::Value = serde_json::from_slice(raw.body()).expect("JSON error body");
    assert_eq!(body["error"]["code"], "Forbidden", "{body}");
    assert_eq!(
        body["error"]["innererror"]["code"], "ForbiddenByRbac",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("appid=app-b"),
        "{body}"
    );

    let grants = kv.token_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(
        (grants[0].identity.as_str(), grants[0].method),
        ("app-b", GrantMethod::ClientAssertion)
    );
    let last = kv.accesses().pop().unwrap();
    assert_eq!(
        last,
        Access {
            identity: Some("app-b".into()),
            vault: VAULT.into(),
            kind: ObjectKind::Secret,
            name: "api-config".into(),
            version: None,
            status: 403,
        }
    );
}

#[tokio::test]
async fn wrong_client_secret_gets_no_token() {
    let kv = common::start().await;
    let client = secret_client(&kv, VAULT, "app-a", "not-the-secret");
    let err = get(&client, "db-password", None)
        .await
        .expect_err("bad secret");
    let text = format!("{err}");
    assert!(
        text.contains("AADSTS7000215") || format!("{err:?}").contains("7000215"),
        "{text}"
    );
    assert!(kv.token_grants().is_empty());
}
