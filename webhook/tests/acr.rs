//! ACR tokens from the webhook's own Entra identity: workload identity against the local Entra
//! stand-in (fake-keyvault's token service) over real HTTPS, with the real Azure SDK.

use std::path::PathBuf;

use akv_env_webhook::acr::{AcrIdentity, AcrSettings, acr_auth, http_client};
use fake_keyvault::{FakeKeyVault, IdentitySeed, Options, Seed};

fn settings(identity: AcrIdentity, token_file: Option<PathBuf>, tenant: &str) -> AcrSettings {
    AcrSettings {
        identity,
        client_id: Some("webhook-identity".to_owned()),
        tenant_id: Some(tenant.to_owned()),
        federated_token_file: token_file,
        authority_host: Some("https://login.microsoftonline.com".to_owned()),
        scope: "https://containerregistry.azure.net/.default".to_owned(),
        extra_hosts: vec!["registry.example.com".to_owned()],
    }
}

/// The local Entra (the fake's token service) knowing the webhook's workload identity.
async fn entra_with_the_webhooks_identity() -> FakeKeyVault {
    let seed = Seed {
        identities: vec![IdentitySeed {
            client_id: "webhook-identity".to_owned(),
            client_secret: None,
            federated_token: Some("projected-sa-token".to_owned()),
            managed: false,
        }],
        ..Seed::default()
    };
    FakeKeyVault::start(Options {
        seed,
        ..Options::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn workload_identity_tokens_for_acr() {
    let fake = entra_with_the_webhooks_identity().await;
    let http = || {
        http_client(Some(fake.ca_pem().as_bytes()), None)
            .unwrap()
            .resolve("login.microsoftonline.com", fake.https_addr())
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "projected-sa-token").unwrap();

    let auth = acr_auth(
        &settings(AcrIdentity::Auto, Some(token_file.clone()), fake.tenant()),
        http(),
    )
    .unwrap()
    .expect("auto picks workload identity when the token file is set");
    assert!(auth.serves("myacr.azurecr.io"));
    assert!(auth.serves("registry.example.com"));
    assert!(!auth.serves("ghcr.io"));
    let token = auth.tokens.access_token("myacr.azurecr.io").await.unwrap();
    assert!(!token.is_empty());
    let grants = fake.token_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].identity, "webhook-identity");
    assert!(
        grants[0].scope.contains("containerregistry.azure.net"),
        "{grants:?}"
    );

    // A token file the token service does not accept: the error reaches the caller.
    std::fs::write(&token_file, "someone-else").unwrap();
    let auth = acr_auth(
        &settings(
            AcrIdentity::WorkloadIdentity,
            Some(token_file),
            fake.tenant(),
        ),
        http(),
    )
    .unwrap()
    .unwrap();
    let err = auth
        .tokens
        .access_token("myacr.azurecr.io")
        .await
        .unwrap_err();
    // The error never carries the presented assertion (a credential).
    let text = format!("{err} {err:?}");
    assert!(!text.contains("someone-else"), "{text}");
}

#[test]
fn identity_choice() {
    let http = || http_client(None, None).unwrap().build().unwrap();
    let none = |s: AcrSettings| acr_auth(&s, http()).unwrap().is_none();
    assert!(none(settings(AcrIdentity::Off, Some("/t".into()), "t")));
    assert!(
        none(settings(AcrIdentity::Auto, None, "t")),
        "auto without a token file: none"
    );
    let mut missing = settings(AcrIdentity::WorkloadIdentity, Some("/t".into()), "t");
    missing.client_id = None;
    let err = acr_auth(&missing, http()).unwrap_err().to_string();
    assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
    let err = acr_auth(&settings(AcrIdentity::WorkloadIdentity, None, "t"), http())
        .unwrap_err()
        .to_string();
    assert!(err.contains("AZURE_FEDERATED_TOKEN_FILE"), "{err}");
    let err = http_client(Some(b"not a pem"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PEM certificate"), "{err}");
}

#[tokio::test]
async fn entra_tokens_for_acr_through_a_connect_proxy() {
    use akv_test_support::leak::find_in_bytes;
    use akv_test_support::proxy::{Config, TestProxy};

    let fake = entra_with_the_webhooks_identity().await;
    // Entra's real host, reachable only through the proxy's host map (no `resolve` here).
    let proxy = TestProxy::start(Config {
        hosts: [("login.microsoftonline.com".to_owned(), fake.https_addr())].into(),
        ..Default::default()
    });
    let proxy_settings = akv_proxy::ProxySettings::from_vars(
        &akv_proxy::ProxyVars::from_lookup(|name| {
            (name == "HTTPS_PROXY").then(|| proxy.url_with("webhook", "pr0xy-pass"))
        }),
        akv_proxy::PlainHttp::Direct,
    )
    .unwrap()
    .map(std::sync::Arc::new);
    let http = http_client(Some(fake.ca_pem().as_bytes()), proxy_settings.as_ref())
        .unwrap()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "projected-sa-token").unwrap();
    let auth = acr_auth(
        &settings(
            AcrIdentity::WorkloadIdentity,
            Some(token_file),
            fake.tenant(),
        ),
        http,
    )
    .unwrap()
    .unwrap();
    let token = auth.tokens.access_token("myacr.azurecr.io").await.unwrap();
    assert!(!token.is_empty());
    assert_eq!(fake.token_grants().len(), 1);
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.with_credentials),
            ("CONNECT", "login.microsoftonline.com:443", true),
            "{}",
            proxy.log()
        );
    }
    // The federated assertion and the access token crossed only inside TLS.
    let leaks = find_in_bytes("relayed", &proxy.relayed(), &["projected-sa-token", &token]);
    assert!(leaks.is_empty(), "{leaks:?}");
}
