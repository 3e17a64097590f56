//! Connections: TLS on the HTTPS port, dispatch by Host to the vault or the token service, and
//! the vault data plane's checks in Key Vault's order (auth, throttling, policy, object).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::store::{KvError, Paging, Route};
use crate::{Access, Connection, Shared, entra, lock, now_unix};

/// The service's answer to a request it chose to drop: hyper closes the connection unanswered.
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the drop_rate knob")
    }
}

impl std::error::Error for Dropped {}

/// Accepts TLS connections until shutdown.
pub(crate) async fn serve_https(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let login = entra::login_router(shared.clone());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
        };
        // Like Key Vault's front ends: no Nagle, or small responses wait for delayed ACKs
        // (~40 ms) and benchmarks measure the kernel instead of the client.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let login = login.clone();
        let mut shutdown = shutdown.clone();
        let conn_id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        lock(&shared.connections).push(Connection {
            id: conn_id,
            server_name: None,
            protocol: None,
            tls: false,
            requests: 0,
            in_flight: 0,
            max_in_flight: 0,
        });
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            {
                let (_, session) = tls.get_ref();
                with_connection(&shared, conn_id, |c| {
                    c.tls = true;
                    c.server_name = session.server_name().map(str::to_owned);
                    c.protocol = session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                });
            }
            let service = hyper::service::service_fn(move |req| {
                with_connection(&shared, conn_id, |c| {
                    c.requests += 1;
                    c.in_flight += 1;
                    c.max_in_flight = c.max_in_flight.max(c.in_flight);
                });
                let shared = shared.clone();
                let answer = dispatch(shared.clone(), login.clone(), req);
                async move {
                    let answer = answer.await;
                    with_connection(&shared, conn_id, |c| {
                        c.in_flight = c.in_flight.saturating_sub(1)
                    });
                    answer
                }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// Runs `f` on the log entry of connection `id`, unless the records were cleared since.
fn with_connection(shared: &Shared, id: u64, f: impl FnOnce(&mut Connection)) {
    if let Some(c) = lock(&shared.connections)
        .iter_mut()
        .rev()
        .find(|c| c.id == id)
    {
        f(c);
    }
}

/// Serves the managed-identity endpoints over plain HTTP until shutdown.
pub(crate) async fn serve_http(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = entra::managed_identity_router(shared);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
}

/// The host a request addressed, lower-cased, without port.
fn request_host<B>(req: &Request<B>) -> String {
    let raw = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let host = match raw.rsplit_once(':') {
        // `host:port`, but not a bare IPv6 address such as `[::1]`.
        Some((h, port))
            if !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
                && !port.contains(']') =>
        {
            h
        }
        _ => raw.as_str(),
    };
    host.to_ascii_lowercase()
}

/// Vault host suffixes and, for each, the resource (token audience) and authority.
const CLOUDS: &[(&str, &str, &str)] = &[
    (
        ".vault.azure.net",
        "https://vault.azure.net",
        "https://login.microsoftonline.com",
    ),
    (
        ".vault.azure.cn",
        "https://vault.azure.cn",
        "https://login.chinacloudapi.cn",
    ),
    (
        ".vault.usgovcloudapi.net",
        "https://vault.usgovcloudapi.net",
        "https://login.microsoftonline.us",
    ),
    (
        ".managedhsm.azure.net",
        "https://managedhsm.azure.net",
        "https://login.microsoftonline.com",
    ),
    (
        ".managedhsm.azure.cn",
        "https://managedhsm.azure.cn",
        "https://login.chinacloudapi.cn",
    ),
    (
        ".managedhsm.usgovcloudapi.net",
        "https://managedhsm.usgovcloudapi.net",
        "https://login.microsoftonline.us",
    ),
    // Not Azure's: a test rig's own vault domain, which an operator must allow explicitly
    // (the webhook's --vault-host-suffix).
    (".vault.test", "https://vault.test", "https://login.test"),
];

/// For a vault host: (vault name, resource, authority).
pub(crate) fn vault_host(host: &str) -> Option<(&str, &'static str, &'static str)> {
    CLOUDS.iter().find_map(|(suffix, resource, authority)| {
        let vault = host.strip_suffix(suffix)?;
        (!vault.is_empty() && !vault.contains('.')).then_some((vault, *resource, *authority))
    })
}

async fn dispatch(
    shared: Arc<Shared>,
    login: axum::Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let host = request_host(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match vault_host(&host) {
        Some((vault, resource, authority)) => {
            let (parts, _body) = req.into_parts();
            vault_request(&shared, &parts, &host, vault, resource, authority).await
        }
        None => Some(
            login
                .oneshot(req)
                .await
                .unwrap_or_else(|e: Infallible| match e {}),
        ),
    };
    match response {
        Some(r) => {
            // Paths and statuses only: query strings and bodies may carry credentials.
            tracing::info!(%host, %method, %path, status = r.status().as_u16(), "request");
            Ok(r)
        }
        None => {
            tracing::info!(%host, %method, %path, "dropped connection");
            Err(Dropped)
        }
    }
}

/// One vault data-plane request; `None` means drop the connection.
async fn vault_request(
    shared: &Shared,
    parts: &http::request::Parts,
    host: &str,
    vault: &str,
    resource: &str,
    authority: &str,
) -> Option<Response<Body>> {
    let knobs = lock(&shared.knobs).clone();
    if !knobs.latency.is_zero() {
        tokio::time::sleep(knobs.latency).await;
    }
    let route = Route::parse(parts.uri.path());
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let claims = bearer.map(|t| shared.signer.verify(t, now_unix()));
    let identity = match &claims {
        Some(Ok(c)) => Some(c.appid.clone()),
        _ => None,
    };
    let record = |status: u16| {
        if let Some(route) = &route {
            let (kind, name, version) = route.target();
            lock(&shared.accesses).push(Access {
                identity: identity.clone(),
                vault: vault.to_string(),
                kind,
                name: name.to_string(),
                version: version.map(str::to_string),
                status,
            });
        }
    };
    if knobs.drop_rate > 0.0 && rand::random::<f64>() < knobs.drop_rate {
        record(0);
        return None;
    }
    if knobs.error_rate > 0.0 && rand::random::<f64>() < knobs.error_rate {
        record(500);
        let e = KvError::new(
            500,
            "InternalServerError",
            "injected failure (error_rate knob)",
        );
        return Some(kv_response(Err(e), None, None));
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // A vault (or an impostor) may name another resource in its challenge: the knob lets
    // tests check that clients then send no token.
    let resource = knobs.challenge_resource.as_deref().unwrap_or(resource);
    let challenge = format!(
        r#"Bearer authorization="{authority}/{}", resource="{resource}""#,
        shared.tenant
    );
    let unauthorized = |message: String| KvError::new(401, "Unauthorized", message);

    let decided: Result<Value, (KvError, Option<u64>)> = (|| {
        if parts.method != http::Method::GET {
            return Err((
                KvError::new(
                    405,
                    "MethodNotAllowed",
                    format!(
                        "this fake Key Vault serves reads (GET) only, not {}",
                        parts.method
                    ),
                ),
                None,
            ));
        }
        if !lock(&shared.store).has_vault(vault) {
            return Err((
                KvError::new(
                    404,
                    "VaultNotFound",
                    format!("vault `{vault}` is not in this fake's seed"),
                ),
                None,
            ));
        }
        let Some(api_version) = param("api-version").filter(|v| !v.is_empty()) else {
            return Err((
                KvError::new(
                    400,
                    "BadParameter",
                    "The api-version query parameter is missing.",
                ),
                None,
            ));
        };
        let claims = match claims {
            None => {
                return Err((
                    unauthorized("AKV10000: Request is missing a Bearer or PoP token.".into()),
                    None,
                ));
            }
            Some(Err(e)) => {
                return Err((unauthorized(format!("AKV10013: Invalid token: {e}.")), None));
            }
            Some(Ok(c)) => c,
        };
        if claims.aud.trim_end_matches('/') != resource {
            return Err((
                unauthorized(format!(
                    "AKV10022: Invalid audience. Expected {resource}, found: {}.",
                    claims.aud
                )),
                None,
            ));
        }
        if claims.tid != shared.tenant {
            return Err((
                unauthorized(format!(
                    "AKV10032: Invalid issuer. Expected tenant {}, found: {}.",
                    shared.tenant, claims.tid
                )),
                None,
            ));
        }
        if let Some(t) = knobs.throttle
            && let Err(retry) = lock(&shared.windows).take(vault, Instant::now(), t)
        {
            let e = KvError::new(
                429,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
            );
            return Err((e, Some(retry)));
        }
        let Some(route) = &route else {
            return Err((
                KvError::new(
                    400,
                    "BadParameter",
                    format!(
                        "`{}` is not a Key Vault read this fake serves",
                        parts.uri.path()
                    ),
                ),
                None,
            ));
        };
        let (kind, name, _) = route.target();
        let store = lock(&shared.store);
        if !store.allowed(vault, &claims.appid, name) {
            let action = match kind {
                crate::ObjectKind::Secret => "secrets/getSecret",
                crate::ObjectKind::Certificate => "certificates/read",
                crate::ObjectKind::Key => "keys/read",
            };
            let e = KvError::new(
                403,
                "Forbidden",
                format!(
                    "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: appid={0};oid={0};iss=https://sts.windows.net/{1}/\r\nAction: 'Microsoft.KeyVault/vaults/{action}/action'\r\nResource: '{2}/{3}/{name}'\r\nAssignment: (not found)\r\nVault: {2};location=local",
                    claims.appid,
                    shared.tenant,
                    vault,
                    kind.segment()
                ),
            );
            return Err((
                KvError {
                    inner: Some("ForbiddenByRbac"),
                    ..e
                },
                None,
            ));
        }
        let maxresults = match param("maxresults") {
            None => 25,
            Some(m) => match m.parse::<usize>() {
                Ok(n) if (1..=25).contains(&n) => n,
                _ => {
                    return Err((
                        KvError::new(
                            400,
                            "BadParameter",
                            format!("maxresults `{m}` must be a whole number from 1 to 25"),
                        ),
                        None,
                    ));
                }
            },
        };
        let skip = match param("$skiptoken") {
            None => 0,
            Some(s) => s.parse::<usize>().map_err(|_| {
                (
                    KvError::new(
                        400,
                        "BadParameter",
                        format!("$skiptoken `{s}` is not one this vault issued"),
                    ),
                    None,
                )
            })?,
        };
        let paging = Paging {
            maxresults,
            skip,
            api_version: api_version.to_string(),
        };
        store
            .read(vault, route, &format!("https://{host}"), &paging)
            .map_err(|e| (e, None))
    })();

    let status = match &decided {
        Ok(_) => 200,
        Err((e, _)) => e.status,
    };
    record(status);
    Some(match decided {
        Ok(body) => kv_response(Ok(body), None, None),
        Err((e, retry)) => {
            let challenge = (e.status == 401).then_some(challenge.as_str());
            kv_response(Err(e), challenge, retry)
        }
    })
}

/// Key Vault's JSON response with its usual headers.
fn kv_response(
    result: Result<Value, KvError>,
    challenge: Option<&str>,
    retry_after: Option<u64>,
) -> Response<Body> {
    let (status, body) = match result {
        Ok(body) => (200, body),
        Err(e) => (e.status, e.body()),
    };
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("x-ms-keyvault-service-version", "1.9.2557.1")
        .header("x-ms-request-id", crate::store::new_version())
        .header("x-ms-keyvault-region", "local");
    if let Some(c) = challenge
        && let Ok(v) = HeaderValue::from_str(c)
    {
        builder = builder.header(header::WWW_AUTHENTICATE, v);
    }
    if let Some(secs) = retry_after {
        builder = builder.header(header::RETRY_AFTER, secs.to_string());
    }
    builder
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_hosts_map_to_cloud() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "myvault.vault.azure.net",
                Some(("myvault", "https://vault.azure.net")),
            ),
            (
                "myvault.vault.azure.cn",
                Some(("myvault", "https://vault.azure.cn")),
            ),
            (
                "gov.vault.usgovcloudapi.net",
                Some(("gov", "https://vault.usgovcloudapi.net")),
            ),
            ("vault.azure.net", None),
            ("a.b.vault.azure.net", None),
            ("login.microsoftonline.com", None),
            ("myvault.vault.azure.net.evil", None),
        ];
        for (host, want) in cases {
            let got = vault_host(host).map(|(v, r, _)| (v, r));
            assert_eq!(got, *want, "host {host}");
        }
    }

    #[test]
    fn host_loses_port_and_case() {
        let cases = [
            (
                "https://MyVault.vault.azure.net:8443/secrets/x",
                "myvault.vault.azure.net",
            ),
            ("/secrets/x", "login.test"),
        ];
        for (uri, want) in cases {
            let req = Request::builder()
                .uri(uri)
                .header(header::HOST, "login.test:443")
                .body(())
                .unwrap();
            assert_eq!(request_host(&req), want, "uri {uri}");
        }
    }
}
