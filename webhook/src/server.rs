//! The two listeners: HTTPS for `/mutate` (HTTP/1.1 and HTTP/2), plain HTTP for health and
//! metrics. Both stop gracefully: no new connections, in-flight reviews are answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{Admitter, Reply};
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
    /// A client that does not finish its TLS handshake in this time is dropped.
    pub handshake_timeout: Duration,
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
        let app = Router::new()
            .route("/mutate", post(mutate))
            .layer(DefaultBodyLimit::max(settings.body_limit))
            .with_state(admitter.clone());
        let (stop, stopped) = watch::channel(false);
        let health_app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics))
            .with_state(HealthState {
                admitter,
                certs: certs.clone(),
                stopped: stopped.clone(),
            });
        Self::serve(settings, app, health_app, certs, stop, stopped).await
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
            .layer(DefaultBodyLimit::max(settings.body_limit));
        let health_app = Router::new().route("/healthz", get(|| async { "ok" }));
        let (stop, stopped) = watch::channel(false);
        Self::serve(settings, app, health_app, certs, stop, stopped).await
    }

    async fn serve(
        settings: Settings,
        app: Router,
        health_app: Router,
        certs: Arc<CertStore>,
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

        let mut health_stop = stopped.clone();
        let health_task = tokio::spawn(async move {
            let serve = axum::serve(health, health_app).with_graceful_shutdown(async move {
                let _ = health_stop.wait_for(|s| *s).await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "health listener failed");
            }
        });
        let https_task = tokio::spawn(serve_https(
            https,
            TlsAcceptor::from(Arc::new(server_config(certs))),
            app,
            stopped,
            settings.clone(),
            reloader,
        ));
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

async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    mut stopped: watch::Receiver<bool>,
    settings: Settings,
    reloader: tokio::task::JoinHandle<()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        let watcher = graceful.watcher();
        let handshake_timeout = settings.handshake_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.oneshot(request).await.into_response()) }
            });
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(conn).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    reloader.abort();
    tracing::info!("shutting down: waiting for in-flight reviews");
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?settings.shutdown_grace, "connections still open after the grace period; closing them");
    }
}

async fn mutate(State(admitter): State<Arc<Admitter>>, body: Bytes) -> Response {
    match admitter.review(&body).await {
        Reply::Review(review) => Json(review).into_response(),
        Reply::BadRequest(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
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

async fn metrics(State(state): State<HealthState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.admitter.metrics.encode(),
    )
        .into_response()
}
