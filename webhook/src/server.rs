//! The two listeners: HTTPS for `/mutate` (HTTP/1.1 and HTTP/2), plain HTTP for health and
//! metrics. Both stop gracefully: no new connections, in-flight reviews are answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{Admitter, Reply};
use crate::limits::{Gate, Limits, Refusal};
use crate::metrics::{Metrics, OpenGuard};
use crate::tls::{CertStore, server_config};

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub health_listen: SocketAddr,
    /// Largest accepted review body; larger ones get 413.
    pub body_limit: usize,
    /// How often the certificate files are re-read.
    pub cert_reload_interval: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Timeouts and caps on what clients can hold.
    pub limits: Limits,
}

/// A running server.
pub struct Server {
    pub https_addr: SocketAddr,
    pub health_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds both listeners and starts serving.
    pub async fn start(
        settings: Settings,
        admitter: Arc<Admitter>,
        certs: Arc<CertStore>,
    ) -> anyhow::Result<Server> {
        let metrics = admitter.metrics.clone();
        let app = Router::new()
            .route("/mutate", post(mutate))
            .with_state(MutateState {
                admitter: admitter.clone(),
                gate: Gate::new(&settings.limits, settings.body_limit),
            });
        let (stop, stopped) = watch::channel(false);
        let health_app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics_page))
            .with_state(HealthState {
                admitter,
                certs: certs.clone(),
                stopped: stopped.clone(),
            });
        Self::serve(settings, app, health_app, certs, metrics, stop, stopped).await
    }

    /// The benchmark floor: the same TLS and HTTP stack answering every review with a fixed
    /// "allowed" response, without reading it.
    pub async fn floor(settings: Settings, certs: Arc<CertStore>) -> anyhow::Result<Server> {
        const ALLOWED: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;
        let app = Router::new()
            .route(
                "/mutate",
                post(|_body: Bytes| async {
                    ([(header::CONTENT_TYPE, "application/json")], ALLOWED)
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(settings.body_limit));
        let health_app = Router::new().route("/healthz", get(|| async { "ok" }));
        let (stop, stopped) = watch::channel(false);
        let metrics = Arc::new(Metrics::new(Arc::new(crate::lookup::Disabled {
            reason: String::new(),
        })));
        Self::serve(settings, app, health_app, certs, metrics, stop, stopped).await
    }

    async fn serve(
        settings: Settings,
        app: Router,
        health_app: Router,
        certs: Arc<CertStore>,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Server> {
        use anyhow::Context as _;
        let https = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let health = TcpListener::bind(settings.health_listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.health_listen))?;
        let https_addr = https.local_addr()?;
        let health_addr = health.local_addr()?;
        let reloader = certs.spawn_reloader(settings.cert_reload_interval);

        let health_task = tokio::spawn(serve_port(
            Port {
                name: "health",
                listener: health,
                tls: None,
                app: health_app,
                max_connections: settings.limits.health_max_connections,
            },
            settings.limits.clone(),
            metrics.clone(),
            stopped.clone(),
            settings.shutdown_grace,
        ));
        let https_port = Port {
            name: "https",
            listener: https,
            tls: Some(TlsAcceptor::from(Arc::new(server_config(certs)))),
            app,
            max_connections: settings.limits.max_connections,
        };
        let https_task = tokio::spawn(async move {
            serve_port(
                https_port,
                settings.limits.clone(),
                metrics,
                stopped,
                settings.shutdown_grace,
            )
            .await;
            reloader.abort();
        });
        tracing::info!(%https_addr, %health_addr, "listening");
        Ok(Server {
            https_addr,
            health_addr,
            stop,
            tasks: vec![https_task, health_task],
        })
    }

    /// Starts a graceful shutdown: readiness fails, listeners close, in-flight requests finish.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until both listeners have finished.
    pub async fn wait(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One listening port: its connection cap and, for HTTPS, its TLS acceptor.
struct Port {
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    max_connections: usize,
}

/// Accepts connections up to the port's cap (more are closed at once: a client that cannot get
/// in retries elsewhere instead of waiting), serves each until it ends, is idle too long or the
/// server stops, then waits up to the grace period for the open ones to finish.
async fn serve_port(
    port: Port,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stopped: watch::Receiver<bool>,
    shutdown_grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(port.max_connections));
    let (h1, h2) = builders(&limits);
    loop {
        let accepted = tokio::select! {
            accepted = port.listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, port = port.name, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.error(match port.name {
                "https" => "shed_connection",
                _ => "shed_health_connection",
            });
            tracing::debug!(%peer, port = port.name, "connection refused: too many open");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            peer,
            app: port.app.clone(),
            limits: limits.clone(),
            stopped: stopped.clone(),
            open: metrics.open_connections(port.name),
        };
        let (tls, h1, h2) = (port.tls.clone(), h1.clone(), h2.clone());
        tokio::spawn(async move {
            let _slot = slot;
            conn.serve(tcp, tls, &h1, &h2).await;
        });
    }
    drop(port.listener);
    tracing::info!(port = port.name, "shutting down: waiting for open requests");
    let all = u32::try_from(port.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(grace = ?shutdown_grace, port = port.name, "connections still open after the grace period; closing them");
    }
}

fn builders(limits: &Limits) -> (Arc<http1::Builder>, Arc<http2::Builder<TokioExecutor>>) {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        // Also bounds the wait for the next request on a kept-alive connection.
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.header_timeout)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS);
    (Arc::new(h1), Arc::new(h2))
}

/// Request heads are small (reviews travel in the body).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Streams per HTTP/2 connection; reviews in flight are capped server-wide anyway.
const MAX_STREAMS: u32 = 256;

/// One accepted connection.
struct Conn {
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stopped: watch::Receiver<bool>,
    open: OpenGuard,
}

impl Conn {
    async fn serve(
        self,
        tcp: TcpStream,
        tls: Option<TlsAcceptor>,
        h1: &http1::Builder,
        h2: &http2::Builder<TokioExecutor>,
    ) {
        let activity = Arc::new(Activity::new());
        let service = {
            let (app, activity) = (self.app.clone(), activity.clone());
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let (app, busy) = (app.clone(), activity.begin());
                async move {
                    let response = app.oneshot(request).await.into_response();
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let Some(acceptor) = tls else {
            let conn = h1.serve_connection(TokioIo::new(tcp), service);
            return self.drive(conn, &activity).await;
        };
        let tls = match tokio::time::timeout(self.limits.header_timeout, acceptor.accept(tcp)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(peer = %self.peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        // The protocol is the one ALPN chose, so no bytes are read before hyper's own
        // deadlines apply.
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let conn = h2.serve_connection(TokioIo::new(tls), service);
            self.drive(conn, &activity).await
        } else {
            let conn = h1.serve_connection(TokioIo::new(tls), service);
            self.drive(conn, &activity).await
        }
    }

    /// Runs the connection until it ends; on stop, or after `idle_timeout` without a request in
    /// flight, closes it gracefully (in-flight requests are answered), and for good after one
    /// more header timeout if the peer does not let it close.
    async fn drive<C>(mut self, conn: C, activity: &Activity)
    where
        C: GracefulConnection,
        C::Error: std::fmt::Display,
    {
        let _open = &self.open;
        let mut conn = std::pin::pin!(conn);
        let mut closing_since: Option<tokio::time::Instant> = None;
        loop {
            let idle_at = activity.idle_deadline(self.limits.idle_timeout);
            let hard_at = closing_since.map(|t| t + self.limits.header_timeout);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %self.peer, %error, "connection ended with an error");
                    }
                    return;
                }
                _ = self.stopped.wait_for(|s| *s), if closing_since.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing_since = Some(far_future());
                }
                _ = tokio::time::sleep_until(idle_at), if closing_since.is_none() => {
                    if activity.is_idle_for(self.limits.idle_timeout) {
                        tracing::debug!(peer = %self.peer, "closing an idle connection");
                        conn.as_mut().graceful_shutdown();
                        closing_since = Some(tokio::time::Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(hard_at.unwrap_or_else(far_future)), if hard_at.is_some() => {
                    tracing::debug!(peer = %self.peer, "idle connection did not close; dropping it");
                    return;
                }
            }
        }
    }
}

/// On stop the grace period (not the connection) bounds how long a connection may finish.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: std::sync::Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> BusyOwned {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        BusyOwned(self.clone())
    }

    fn is_idle_for(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && self.idle_since.lock().expect("not poisoned").elapsed() >= idle
    }

    /// When the connection would become idle for too long if nothing happens.
    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::Instant::now() + idle
        } else {
            *self.idle_since.lock().expect("not poisoned") + idle
        }
    }
}

/// Marks one request in flight until dropped.
struct BusyOwned(Arc<Activity>);

impl Drop for BusyOwned {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("not poisoned") = tokio::time::Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct MutateState {
    admitter: Arc<Admitter>,
    gate: Gate,
}

/// Reads the body within the limits, then decides. Refusals are plain HTTP errors, never
/// reviews: the API server applies the failure policy, and the client's controller retries.
async fn mutate(State(state): State<MutateState>, request: axum::extract::Request) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let metrics = &state.admitter.metrics;
    let (body, held) = match state.gate.admit(declared, request.into_body()).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(metrics, refusal),
    };
    let _in_flight = metrics.review_started();
    let reply = state.admitter.review(&body).await;
    drop((body, held));
    match reply {
        Reply::Review(review) => {
            ([(header::CONTENT_TYPE, "application/json")], review).into_response()
        }
        Reply::BadRequest(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

fn refuse(metrics: &Metrics, refusal: Refusal) -> Response {
    let (status, kind, text) = match refusal {
        Refusal::TooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the review is larger than {limit} bytes (--body-limit)"),
        ),
        Refusal::TooSlow => (
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the review did not arrive within --body-timeout".to_owned(),
        ),
        Refusal::Broken(error) => (
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("cannot read the review: {error}"),
        ),
        Refusal::Overloaded { what } => (
            StatusCode::SERVICE_UNAVAILABLE,
            match what {
                "reviews in flight" => "shed_review",
                _ => "shed_body_memory",
            },
            format!("overloaded: too many {what}; retry"),
        ),
    };
    metrics.error(kind);
    let mut response = (status, text).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

#[derive(Clone)]
struct HealthState {
    admitter: Arc<Admitter>,
    certs: Arc<CertStore>,
    stopped: watch::Receiver<bool>,
}

async fn ready(State(state): State<HealthState>) -> Response {
    if *state.stopped.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.certs.is_loaded() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded yet",
        )
            .into_response()
    }
}

async fn metrics_page(State(state): State<HealthState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.admitter.metrics.encode(),
    )
        .into_response()
}
