//! ACR through the webhook's identity over HTTPS, as in production, with no system CA store at
//! all (SSL_CERT_FILE an empty file, SSL_CERT_DIR an empty directory, as in the `FROM scratch`
//! image): the token exchange, the token endpoint, the manifest and the config blob all verify
//! against the built-in roots plus the test CA given as `extra_roots` (`--registry-ca-file`).
//! nextest runs each test in its own process, so the environment set here stays here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use akv_registry::{
    ACR_USERNAME, AcrAuth, AcrTokenSource, ImageResolver, LookupError, Platform, RegistryOptions,
    TokenFuture,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use registry_harness::stand_in::{self, MANIFEST_TYPE, ServedImage, TestCa};

const ENTRA_TOKEN: &str = "entra-access-token";
const REFRESH_TOKEN: &str = "acr-refresh-token";
const ACCESS_TOKEN: &str = "acr-access-token";

#[derive(Default)]
struct Acr {
    host: OnceLock<String>,
    image: OnceLock<ServedImage>,
    exchanges: AtomicUsize,
    tokens: AtomicUsize,
}

async fn exchange(State(acr): State<Arc<Acr>>, body: String) -> Response {
    acr.exchanges.fetch_add(1, Ordering::SeqCst);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if !form.contains(&("access_token".into(), ENTRA_TOKEN.into())) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(serde_json::json!({ "refresh_token": REFRESH_TOKEN })).into_response()
}

async fn token(State(acr): State<Arc<Acr>>, headers: HeaderMap) -> Response {
    acr.tokens.fetch_add(1, Ordering::SeqCst);
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACR_USERNAME}:{REFRESH_TOKEN}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&want)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(serde_json::json!({ "access_token": ACCESS_TOKEN })).into_response()
}

/// The challenge to answer with, unless the request carries the access token.
fn challenge(acr: &Acr, headers: &HeaderMap) -> Option<Response> {
    let want = format!("Bearer {ACCESS_TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&want)
    {
        return None;
    }
    let host = acr.host.get().unwrap();
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="https://{host}/oauth2/token",service="{host}""#),
            )],
        )
            .into_response(),
    )
}

async fn manifest(State(acr): State<Arc<Acr>>, headers: HeaderMap) -> Response {
    if let Some(challenge) = challenge(&acr, &headers) {
        return challenge;
    }
    let image = acr.image.get().unwrap();
    (
        [(header::CONTENT_TYPE, MANIFEST_TYPE)],
        image.manifest.clone(),
    )
        .into_response()
}

async fn blob(State(acr): State<Arc<Acr>>, headers: HeaderMap, Path(_): Path<String>) -> Response {
    if let Some(challenge) = challenge(&acr, &headers) {
        return challenge;
    }
    acr.image.get().unwrap().config.clone().into_response()
}

struct Entra;

impl AcrTokenSource for Entra {
    fn access_token<'a>(&'a self, _registry: &'a str) -> TokenFuture<'a> {
        Box::pin(async { Ok(ENTRA_TOKEN.to_string()) })
    }
}

fn resolver(host: &str, ca: Option<&TestCa>) -> ImageResolver {
    ImageResolver::new(RegistryOptions {
        timeout: Duration::from_secs(10),
        acr: Some(AcrAuth {
            tokens: Arc::new(Entra),
            // The double lives on loopback, not under *.azurecr.io.
            extra_hosts: vec![host.to_string()],
        }),
        extra_roots: ca
            .map(|ca| akv_registry::pem_certificates(ca.pem().as_bytes()).unwrap())
            .unwrap_or_default(),
        // HTTPS on loopback: not a named (insecure) registry.
        allow_internal_addresses: true,
        ..Default::default()
    })
}

#[tokio::test]
async fn acr_exchange_and_lookup_over_https_with_no_system_ca_store() {
    let empty = tempfile::tempdir().unwrap();
    let empty_file = empty.path().join("ca-certificates.crt");
    std::fs::write(&empty_file, "").unwrap();
    // SAFETY: set before any other thread of this test reads the environment.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", &empty_file);
        std::env::set_var("SSL_CERT_DIR", empty.path());
    }
    let ca = TestCa::new("akv-env ACR test CA");
    let acr = Arc::new(Acr::default());
    acr.image
        .set(ServedImage::with_entrypoint(&["/acr-app"]))
        .unwrap();
    let router = axum::Router::new()
        .route("/oauth2/exchange", post(exchange))
        .route("/oauth2/token", get(token))
        .route("/v2/team/app/manifests/{reference}", get(manifest))
        .route("/v2/team/app/blobs/{digest}", get(blob))
        .with_state(acr.clone());
    let listener = stand_in::serve(router, Some(ca.server_config())).await;
    let host = listener.host();
    acr.host.set(host.clone()).unwrap();
    let image = format!("{host}/team/app:v1");

    // Without the test CA, nothing is trusted: the exchange fails on the certificate.
    let err = resolver(&host, None)
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LookupError::Acr { reason, .. } if reason.contains("untrusted TLS certificate")),
        "{err:?}"
    );
    assert_eq!(acr.exchanges.load(Ordering::SeqCst), 0);

    // With it: exchange, token, manifest and blob, all over HTTPS.
    let answer = resolver(&host, Some(&ca))
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap();
    assert_eq!(answer.entrypoint, ["/acr-app"]);
    assert_eq!(
        answer.digest,
        acr.image.get().unwrap().manifest_digest.as_str()
    );
    assert_eq!(acr.exchanges.load(Ordering::SeqCst), 1);
    assert_eq!(acr.tokens.load(Ordering::SeqCst), 1);
}

/// The resolver behind an egress proxy, as the webhook builds it from its environment.
fn proxied_resolver(ca: &TestCa, env: &[(&str, &str)]) -> ImageResolver {
    let vars = akv_proxy::ProxyVars::from_lookup(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    });
    let proxy = akv_proxy::ProxySettings::from_vars(&vars, akv_proxy::PlainHttp::Proxied)
        .unwrap()
        .map(Arc::new);
    ImageResolver::new(RegistryOptions {
        timeout: Duration::from_secs(10),
        acr: Some(AcrAuth {
            tokens: Arc::new(Entra),
            extra_hosts: Vec::new(),
        }),
        extra_roots: akv_registry::pem_certificates(ca.pem().as_bytes()).unwrap(),
        // The production default: internal addresses refused (only literal ones can be
        // checked behind a proxy; the proxy resolves names).
        allow_internal_addresses: false,
        proxy,
        ..Default::default()
    })
}

#[tokio::test]
async fn acr_exchange_and_lookup_through_a_connect_proxy() {
    use akv_test_support::leak::find_in_bytes;
    use akv_test_support::proxy::{Config, TestProxy};

    // `myacr.azurecr.io` resolves nowhere here: only the proxy's host map reaches the stand-in.
    const ACR_HOST: &str = "myacr.azurecr.io";
    let ca = TestCa::new("akv-env ACR proxy test CA");
    let acr = Arc::new(Acr::default());
    acr.host.set(ACR_HOST.to_owned()).unwrap();
    acr.image
        .set(ServedImage::with_entrypoint(&["/acr-app"]))
        .unwrap();
    let router = axum::Router::new()
        .route("/oauth2/exchange", post(exchange))
        .route("/oauth2/token", get(token))
        .route("/v2/team/app/manifests/{reference}", get(manifest))
        .route("/v2/team/app/blobs/{digest}", get(blob))
        .with_state(acr.clone());
    let listener = stand_in::serve(router, Some(ca.server_config_for(&[ACR_HOST]))).await;
    let proxy = TestProxy::start(Config {
        hosts: [(ACR_HOST.to_owned(), listener.addr)].into(),
        ..Default::default()
    });
    let image = format!("{ACR_HOST}/team/app:v1");

    // Lower case, as some platforms write it.
    let answer = proxied_resolver(&ca, &[("https_proxy", &proxy.url())])
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap();
    assert_eq!(answer.entrypoint, ["/acr-app"]);
    assert_eq!(acr.exchanges.load(Ordering::SeqCst), 1);
    assert_eq!(acr.tokens.load(Ordering::SeqCst), 1);
    let requests = proxy.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.target.as_str(), r.status),
            ("CONNECT", "myacr.azurecr.io:443", 200),
            "{}",
            proxy.log()
        );
    }
    // Entra's token, ACR's refresh and access tokens crossed only inside TLS.
    let tokens = [ENTRA_TOKEN, REFRESH_TOKEN, ACCESS_TOKEN];
    for (place, bytes) in [("relayed", proxy.relayed()), ("heads", proxy.heads())] {
        let leaks = find_in_bytes(place, &bytes, &tokens);
        assert!(leaks.is_empty(), "{leaks:?}");
    }

    // NO_PROXY lists the registry: it goes direct, through the guarded resolver (which finds
    // no address for it here), and the proxy sees nothing.
    let before = proxy.requests().len();
    let err = proxied_resolver(
        &ca,
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", ".azurecr.io")],
    )
    .entrypoint(&image, &Platform::linux("amd64"), &[])
    .await
    .unwrap_err();
    assert_eq!(proxy.requests().len(), before, "{}", proxy.log());
    assert_eq!(acr.exchanges.load(Ordering::SeqCst), 1, "{err:?}");
}
