//! Azure Container Registry through the webhook's identity, against a stand-in that speaks
//! ACR's auth (token exchange, Bearer challenge, token endpoint taking the refresh token as
//! Basic password) in front of a real `docker-registry` holding the images.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use akv_registry::{
    ACR_USERNAME, AcrAuth, AcrTokenSource, ImageResolver, LookupError, Platform, RegistryOptions,
    TokenFuture,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use registry_harness::{ImageSpec, TestRegistry};

const ENTRA_TOKEN: &str = "entra-access-token-for-acr";
const REFRESH_TOKEN: &str = "acr-refresh-token-1";
const ACCESS_TOKEN: &str = "acr-access-token-1";

struct StandIn {
    host: String,
    backend: String,
    exchanges: AtomicUsize,
    token_requests: AtomicUsize,
    http: reqwest::Client,
}

fn challenge(host: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!(r#"Bearer realm="http://{host}/oauth2/token",service="{host}""#),
        )],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
    )
        .into_response()
}

/// `POST /oauth2/exchange`: Entra access token in, ACR refresh token out.
async fn exchange(State(s): State<Arc<StandIn>>, body: String) -> Response {
    s.exchanges.fetch_add(1, Ordering::SeqCst);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    if get("grant_type") != Some("access_token") || get("service") != Some(s.host.as_str()) {
        return (StatusCode::BAD_REQUEST, "bad grant_type or service").into_response();
    }
    if get("access_token") != Some(ENTRA_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid AAD token"}]}"#,
        )
            .into_response();
    }
    axum::Json(serde_json::json!({ "refresh_token": REFRESH_TOKEN })).into_response()
}

/// `GET /oauth2/token`: the refresh token as Basic password buys a registry access token.
async fn token(State(s): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACR_USERNAME}:{REFRESH_TOKEN}"))
    );
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(want.as_str())
    {
        return (StatusCode::UNAUTHORIZED, "bad refresh token").into_response();
    }
    axum::Json(serde_json::json!({ "access_token": ACCESS_TOKEN })).into_response()
}

/// Everything under `/v2/`: needs the access token, then is served by the real registry.
async fn registry_api(
    State(s): State<Arc<StandIn>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let bearer = format!("Bearer {ACCESS_TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(bearer.as_str())
    {
        return challenge(&s.host);
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut request = s
        .http
        .request(method, format!("http://{}{path}", s.backend));
    if let Some(accept) = headers.get(header::ACCEPT) {
        request = request.header(header::ACCEPT, accept);
    }
    let upstream = request.send().await.expect("backend registry answers");
    let mut response = Response::builder().status(upstream.status());
    for name in [
        header::CONTENT_TYPE,
        "docker-content-digest".parse().unwrap(),
    ] {
        if let Some(v) = upstream.headers().get(&name) {
            response = response.header(name, v);
        }
    }
    let body = upstream.bytes().await.expect("backend body");
    response.body(Body::from(body)).unwrap()
}

async fn start_stand_in(backend: String) -> Arc<StandIn> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let state = Arc::new(StandIn {
        host,
        backend,
        exchanges: AtomicUsize::new(0),
        token_requests: AtomicUsize::new(0),
        http: reqwest::Client::builder().build().unwrap(),
    });
    let app = axum::Router::new()
        .route("/oauth2/exchange", axum::routing::post(exchange))
        .route("/oauth2/token", axum::routing::get(token))
        .fallback(registry_api)
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    state
}

/// Stands in for the webhook's azure_identity credential.
struct FakeEntra {
    token: Result<&'static str, &'static str>,
    calls: AtomicUsize,
}

impl AcrTokenSource for FakeEntra {
    fn access_token<'a>(&'a self, _registry: &'a str) -> TokenFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            self.token
                .map(String::from)
                .map_err(|e| e.to_string().into())
        })
    }
}

struct Setup {
    _registry: TestRegistry,
    stand_in: Arc<StandIn>,
    entra: Arc<FakeEntra>,
}

async fn setup(token: Result<&'static str, &'static str>) -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = TestRegistry::start().unwrap();
    registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/one"]),
            "team/one:v1",
        )
        .unwrap();
    registry
        .push(&ImageSpec::linux("amd64").cmd(&["/two"]), "team/two:v1")
        .unwrap();
    let stand_in = start_stand_in(registry.host()).await;
    let entra = Arc::new(FakeEntra {
        token,
        calls: AtomicUsize::new(0),
    });
    Setup {
        _registry: registry,
        stand_in,
        entra,
    }
}

fn resolver(setup: &Setup, with_acr: bool) -> ImageResolver {
    let acr = with_acr.then(|| AcrAuth {
        tokens: setup.entra.clone(),
        // The stand-in lives on loopback, not under *.azurecr.io.
        extra_hosts: vec![setup.stand_in.host.clone()],
    });
    ImageResolver::new(RegistryOptions {
        timeout: Duration::from_secs(10),
        insecure_registries: vec![setup.stand_in.host.clone()],
        acr,
        ..Default::default()
    })
}

/// Looks up the stand-in's private image, expecting a failure: (the image, the error).
async fn failed_lookup(setup: &Setup, with_acr: bool) -> (String, LookupError) {
    let image = format!("{}/team/one:v1", setup.stand_in.host);
    let err = resolver(setup, with_acr)
        .entrypoint(&image, &Platform::linux("amd64"), &[])
        .await
        .unwrap_err();
    (image, err)
}

#[tokio::test]
async fn the_webhooks_identity_reads_a_private_acr_image() {
    let setup = setup(Ok(ENTRA_TOKEN)).await;
    let resolver = resolver(&setup, true);
    let node = Platform::linux("amd64");
    let host = &setup.stand_in.host;

    let one = resolver
        .entrypoint(&format!("{host}/team/one:v1"), &node, &[])
        .await
        .unwrap();
    assert_eq!(one.entrypoint, vec!["/one".to_string()]);
    let two = resolver
        .entrypoint(&format!("{host}/team/two:v1"), &node, &[])
        .await
        .unwrap();
    assert_eq!(two.cmd, vec!["/two".to_string()]);

    // One Entra token and one exchange serve both images: the refresh token is cached.
    assert_eq!(setup.entra.calls.load(Ordering::SeqCst), 1);
    assert_eq!(setup.stand_in.exchanges.load(Ordering::SeqCst), 1);
    assert!(setup.stand_in.token_requests.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn without_acr_configured_the_registry_refuses_an_anonymous_pull() {
    let setup = setup(Ok(ENTRA_TOKEN)).await;
    let (_, err) = failed_lookup(&setup, false).await;
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("anonymously"), "{err}");
    assert_eq!(setup.entra.calls.load(Ordering::SeqCst), 0);
    assert_eq!(setup.stand_in.exchanges.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_entra_failure_is_reported_with_its_reason() {
    let setup = setup(Err("workload identity token file is missing")).await;
    let (image, err) = failed_lookup(&setup, true).await;
    assert!(matches!(err, LookupError::Acr { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&image) && text.contains("workload identity token file is missing"),
        "{text}"
    );
    assert_eq!(setup.stand_in.exchanges.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_exchange_is_reported_without_the_token() {
    let setup = setup(Ok("an-entra-token-acr-does-not-accept")).await;
    let (_, err) = failed_lookup(&setup, true).await;
    assert!(matches!(err, LookupError::Acr { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("/oauth2/exchange"),
        "{text}"
    );
    assert!(!text.contains("an-entra-token"), "{text}");
    assert_eq!(setup.stand_in.exchanges.load(Ordering::SeqCst), 1);
}
