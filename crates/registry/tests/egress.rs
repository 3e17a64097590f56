//! The egress policy against real listeners: a registry whose token realm or redirect points
//! at an internal address, one that redirects from HTTPS to plain HTTP, one that answers with a
//! large body. The forbidden target is a listener counting the connections it accepts: zero
//! means no request reached it. Each refusal is also checked against a control run with the
//! switch on (or the hop made legitimate), which does reach the target, so the count can fail.

use std::sync::Arc;
use std::time::Duration;

use akv_registry::{DockerConfig, ImageResolver, LookupError, Platform, RegistryOptions};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use registry_harness::stand_in::{self, Listener, MANIFEST_TYPE, ServedImage, TestCa};

const MARKER: &str = "REGISTRY-BODY-MARKER";

/// How the registry double behaves under `/v2/`.
#[derive(Clone)]
enum Mode {
    /// Every request without a bearer token gets a challenge naming this realm.
    Realm(String),
    /// Serves the manifest; the config blob is a redirect to this URL (path appended).
    RedirectBlob(String),
    /// Every manifest request is answered with this status and a large body.
    LargeBody(u16, usize),
}

#[derive(Clone)]
struct Double {
    mode: Mode,
    image: ServedImage,
}

async fn manifest(State(d): State<Arc<Double>>, headers: HeaderMap) -> Response {
    match &d.mode {
        Mode::Realm(realm) if !headers.contains_key(header::AUTHORIZATION) => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="{realm}",service="double""#),
            )],
            format!(r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{MARKER}"}}]}}"#),
        )
            .into_response(),
        Mode::LargeBody(status, len) => {
            (StatusCode::from_u16(*status).unwrap(), large_body(*len)).into_response()
        }
        _ => (
            [(header::CONTENT_TYPE, MANIFEST_TYPE)],
            d.image.manifest.clone(),
        )
            .into_response(),
    }
}

async fn blob(State(d): State<Arc<Double>>, Path(digest): Path<String>) -> Response {
    match &d.mode {
        Mode::RedirectBlob(to) => (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, format!("{to}/cdn/{digest}"))],
        )
            .into_response(),
        _ => d.image.config.clone().into_response(),
    }
}

fn large_body(len: usize) -> String {
    let mut body = String::with_capacity(len);
    while body.len() < len {
        body.push_str(MARKER);
        body.push(' ');
    }
    body
}

async fn registry(mode: Mode, tls: Option<&TestCa>) -> Listener {
    let double = Arc::new(Double {
        mode,
        image: ServedImage::with_entrypoint(&["/app"]),
    });
    let router = Router::new()
        .route("/v2/team/app/manifests/{reference}", get(manifest))
        .route("/v2/team/app/blobs/{digest}", get(blob))
        .with_state(double);
    stand_in::serve(router, tls.map(TestCa::server_config)).await
}

/// Where a hop must not go: answers anything with the image config and a token, so a request
/// that got there would succeed.
async fn target(tls: Option<&TestCa>) -> Listener {
    let config = ServedImage::with_entrypoint(&["/app"]).config;
    let router = Router::new()
        .route(
            "/token",
            get(|| async { axum::Json(serde_json::json!({ "token": "t" })) }),
        )
        .fallback(get(move |headers: HeaderMap| {
            let config = config.clone();
            async move {
                // A redirect must not carry the registry's credentials to another host.
                assert!(!headers.contains_key(header::AUTHORIZATION));
                config
            }
        }));
    stand_in::serve(router, tls.map(TestCa::server_config)).await
}

fn options(registry: &Listener, allow_internal: bool, ca: Option<&TestCa>) -> RegistryOptions {
    let _ = rustls::crypto::ring::default_provider().install_default();
    RegistryOptions {
        timeout: Duration::from_secs(5),
        // Plain-HTTP doubles are named by the operator, and so reachable as named.
        insecure_registries: if ca.is_some() {
            vec![]
        } else {
            vec![registry.host()]
        },
        extra_roots: ca
            .map(|ca| akv_registry::pem_certificates(ca.pem().as_bytes()).unwrap())
            .unwrap_or_default(),
        allow_internal_addresses: allow_internal,
        ..Default::default()
    }
}

async fn lookup(
    opts: RegistryOptions,
    registry: &Listener,
    secrets: &[DockerConfig],
) -> Result<Vec<String>, LookupError> {
    ImageResolver::new(opts)
        .entrypoint(
            &format!("{}/team/app:v1", registry.host()),
            &Platform::linux("amd64"),
            secrets,
        )
        .await
        .map(|e| e.entrypoint)
}

fn refusal(result: Result<Vec<String>, LookupError>) -> String {
    match result {
        Err(e @ LookupError::Refused { .. }) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_realm_at_a_loopback_address_is_not_contacted() {
    let forbidden = target(None).await;
    let double = registry(
        Mode::Realm(format!("http://{}/token", forbidden.host())),
        None,
    )
    .await;
    let secret = DockerConfig::from_dockerconfigjson(
        format!(
            r#"{{"auths":{{"{}":{{"username":"u","password":"pull-secret-password"}}}}}}"#,
            double.host()
        )
        .as_bytes(),
    )
    .unwrap();
    let text = refusal(
        lookup(
            options(&double, false, None),
            &double,
            std::slice::from_ref(&secret),
        )
        .await,
    );
    assert_eq!(forbidden.connections(), 0, "{text}");
    let want = format!(
        "image {}/team/app:v1 was not read from registry {}: its token service is at 127.0.0.1, \
         a loopback address, which the webhook does not contact on a pod's behalf (an operator \
         can allow it: --registry-allow-internal-addresses)",
        double.host(),
        double.host()
    );
    assert_eq!(text, want);
    assert!(!text.contains(MARKER) && !text.contains("pull-secret-password"));

    // Control: with the operator's switch on, the same realm is contacted.
    let answer = lookup(options(&double, true, None), &double, &[secret]).await;
    assert!(forbidden.connections() >= 1, "{answer:?}");
}

#[tokio::test]
async fn a_token_realm_named_localhost_is_refused_after_resolution() {
    let forbidden = target(None).await;
    let double = registry(
        Mode::Realm(format!("http://localhost:{}/token", forbidden.addr.port())),
        None,
    )
    .await;
    let text = refusal(lookup(options(&double, false, None), &double, &[]).await);
    assert_eq!(forbidden.connections(), 0, "{text}");
    assert!(
        text.contains("its token service is at 127.0.0.1, a loopback address")
            || text.contains("its token service is at ::1, a loopback address"),
        "{text}"
    );
}

#[tokio::test]
async fn token_realms_at_the_metadata_service_and_wireserver_are_refused() {
    for (realm, want) in [
        (
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "its token service is at 169.254.169.254, the cloud metadata service (IMDS)",
        ),
        (
            "http://168.63.129.16/machine",
            "its token service is at 168.63.129.16, Azure's wireserver",
        ),
        (
            "http://[fe80::1]/token",
            "its token service is at fe80::1, a link-local address (fe80::/10)",
        ),
    ] {
        let double = registry(Mode::Realm(realm.into()), None).await;
        let text = refusal(lookup(options(&double, false, None), &double, &[]).await);
        assert!(text.contains(want), "{realm}: {text}");
    }
}

#[tokio::test]
async fn a_redirect_to_a_loopback_address_is_not_followed() {
    let forbidden = target(None).await;
    for to in [
        format!("http://{}", forbidden.host()),
        format!("http://localhost:{}", forbidden.addr.port()),
    ] {
        let double = registry(Mode::RedirectBlob(to.clone()), None).await;
        let text = refusal(lookup(options(&double, false, None), &double, &[]).await);
        assert_eq!(forbidden.connections(), 0, "{to}: {text}");
        assert!(
            text.contains("a redirect from the registry is at 127.0.0.1, a loopback address")
                || text.contains("a redirect from the registry is at ::1, a loopback address"),
            "{to}: {text}"
        );
    }
}

#[tokio::test]
async fn a_redirect_from_https_to_plain_http_is_not_followed() {
    let ca = TestCa::new("egress test CA");
    let plain_origin = target(None).await;
    let double = registry(
        Mode::RedirectBlob(format!("http://{}", plain_origin.host())),
        Some(&ca),
    )
    .await;
    // Internal addresses allowed: only the downgrade stops it.
    let text = refusal(lookup(options(&double, true, Some(&ca)), &double, &[]).await);
    assert_eq!(plain_origin.connections(), 0, "{text}");
    assert!(
        text.ends_with(&format!(
            "was not read from registry {}: a redirect from the registry is plain HTTP after \
             HTTPS, which the webhook does not follow",
            double.host()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_blob_redirect_to_an_https_cdn_is_followed_without_credentials() {
    let ca = TestCa::new("egress test CA");
    let cdn = target(Some(&ca)).await;
    let double = registry(
        Mode::RedirectBlob(format!("https://{}", cdn.host())),
        Some(&ca),
    )
    .await;
    let entrypoint = lookup(options(&double, true, Some(&ca)), &double, &[])
        .await
        .expect("the blob comes from the CDN");
    assert_eq!(entrypoint, ["/app"]);
    assert_eq!(cdn.connections(), 1);
}

#[tokio::test]
async fn large_bodies_are_neither_echoed_nor_read_whole() {
    for (status, len, want) in [
        (
            500,
            8 << 20,
            "registry {host} failed to serve image {host}/team/app:v1: the manifest request \
             was answered with HTTP 500 Internal Server Error",
        ),
        (
            200,
            5 << 20,
            "registry {host} failed to serve image {host}/team/app:v1: its manifest is larger \
             than 4194304 bytes",
        ),
        (
            400,
            1 << 20,
            "registry {host} failed to serve image {host}/team/app:v1: the manifest request \
             was answered with HTTP 400 Bad Request",
        ),
    ] {
        let double = registry(Mode::LargeBody(status, len), None).await;
        let err = lookup(options(&double, false, None), &double, &[])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert_eq!(text, want.replace("{host}", &double.host()), "{status}");
        assert!(!text.contains(MARKER));
    }
}
