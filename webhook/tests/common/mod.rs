//! Test harness: an in-process webhook and an HTTPS client speaking HTTP/1.1 or HTTP/2 (hyper
//! over tokio-rustls) that reports the certificate the server presented. The test CA, the
//! webhook binary as a child process and the review fixtures come from `akv-test-support`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use akv_env_webhook::admission::Admitter;
use akv_env_webhook::lookup::EntrypointSource;
use akv_env_webhook::metrics::Metrics;
use akv_env_webhook::namespaces::NamespaceSource;
use akv_env_webhook::server::{Server, Settings};
use akv_env_webhook::tls::CertStore;
use axum::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[allow(unused_imports)]
pub use akv_test_support::pki::TestCa;
#[allow(unused_imports)]
pub use akv_test_support::webhook::{
    Answer, INJECTOR, SecretDir, WebhookProcess, fixture, read_answer, silent_registry,
};

/// The webhook binary with image lookups on and `registry` trusted over plain HTTP, `args`
/// appended.
pub fn spawn_process(
    bin: &Path,
    ca: &TestCa,
    registry: SocketAddr,
    args: &[&str],
) -> WebhookProcess {
    let mut all = akv_test_support::webhook::lookups_via(registry);
    all.extend(args.iter().map(|a| a.to_string()));
    WebhookProcess::spawn(bin, ca, &all, &[]).expect("the webhook starts")
}

pub struct Options {
    pub entrypoints: Arc<dyn EntrypointSource>,
    pub namespaces: Arc<dyn NamespaceSource>,
    pub timeout: Duration,
    pub body_limit: usize,
    pub default_vault: Option<&'static str>,
    pub limits: akv_env_webhook::limits::Limits,
    pub trust: akv_mutation::TrustPolicy,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            entrypoints: Arc::new(akv_env_webhook::lookup::Table::default()),
            namespaces: Arc::new(akv_env_webhook::namespaces::NoNamespaces),
            timeout: Duration::from_secs(5),
            body_limit: 3 * 1024 * 1024,
            default_vault: None,
            limits: akv_env_webhook::limits::Limits::default(),
            trust: akv_mutation::TrustPolicy::default(),
        }
    }
}

pub struct Running {
    pub server: Server,
    pub ca: TestCa,
    pub secret: SecretDir,
    pub admitter: Arc<Admitter>,
}

/// Starts the webhook in-process on loopback, with a fresh CA and leaf.
pub async fn start(options: Options) -> Running {
    let ca = TestCa::new("akv-env test CA");
    let mut secret = SecretDir::new();
    let (cert, key) = ca.leaf();
    secret.write(&cert, &key);
    start_with(options, ca, secret).await
}

pub async fn start_with(options: Options, ca: TestCa, secret: SecretDir) -> Running {
    let (certs, _first) = CertStore::new(secret.cert_path(), secret.key_path());
    let mut config = akv_mutation::Config::new(INJECTOR);
    config.default_vault = options
        .default_vault
        .map(|v| akv_placeholder::Vault::parse(v).unwrap());
    config.trust = options.trust.clone();
    let admitter = Arc::new(Admitter {
        config,
        entrypoints: options.entrypoints.clone(),
        namespaces: options.namespaces,
        metrics: Arc::new(Metrics::new(options.entrypoints)),
        timeout: options.timeout,
    });
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        health_listen: "127.0.0.1:0".parse().unwrap(),
        body_limit: options.body_limit,
        cert_reload_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(10),
        limits: options.limits.clone(),
    };
    let server = Server::start(settings, admitter.clone(), certs)
        .await
        .unwrap();
    Running {
        server,
        ca,
        secret,
        admitter,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// One HTTPS connection to the webhook, HTTP/1.1 or HTTP/2 as negotiated by ALPN.
pub struct Connection {
    http1: Option<hyper::client::conn::http1::SendRequest<axum::body::Body>>,
    http2: Option<hyper::client::conn::http2::SendRequest<axum::body::Body>>,
    /// The leaf certificate the server presented.
    pub peer_certificate: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr, ca: &TestCa, protocol: Protocol) -> Self {
        let alpn: &[u8] = match protocol {
            Protocol::Http1 => b"http/1.1",
            Protocol::Http2 => b"h2",
        };
        let connector = TlsConnector::from(ca.client_config(&[alpn]));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let (_, session) = tls.get_ref();
        let peer_certificate = session.peer_certificates().unwrap()[0].clone().into_owned();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let io = TokioIo::new(tls);
        let (mut http1, mut http2) = (None, None);
        match protocol {
            Protocol::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                http1 = Some(sender);
            }
            Protocol::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                http2 = Some(sender);
            }
        }
        Connection {
            http1,
            http2,
            peer_certificate,
            alpn,
        }
    }

    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .header("host", "localhost")
            .body(axum::body::Body::from(body.into()))
            .unwrap();
        let response = match (&mut self.http1, &mut self.http2) {
            (Some(sender), _) => sender.send_request(request).await.unwrap(),
            (_, Some(sender)) => sender.send_request(request).await.unwrap(),
            _ => unreachable!(),
        };
        let status = response.status();
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
            .await
            .unwrap();
        (status, body)
    }

    /// Posts `review` to `/mutate` and reads the answer as the API server would.
    pub async fn review(&mut self, review: &serde_json::Value) -> Answer {
        let (status, body) = self
            .post("/mutate", serde_json::to_vec(review).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        read_answer(review, &body)
    }
}

/// A plain HTTP/1.1 GET: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}
