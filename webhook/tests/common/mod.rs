//! Test harness: a test CA (`akv_test_support::pki`), an HTTPS client speaking HTTP/1.1
//! or HTTP/2 (hyper over tokio-rustls) that reports the certificate the server presented, and
//! an in-process webhook, and the webhook binary as a child process.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A "registry" that accepts connections and never says a word: reviews of pods without
/// `command` stay in flight until the registry deadline.
pub fn silent_registry() -> SocketAddr {
    let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = registry.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in registry.incoming() {
            held.push(conn);
        }
    });
    addr
}

/// `akv-env-webhook serve` as a child process with JSON logs, for what only the binary shows:
/// signals, exit status, log lines.
pub struct WebhookProcess {
    child: Child,
    pub https_addr: SocketAddr,
    logs: Option<std::thread::JoinHandle<Vec<String>>>,
    _secret: SecretDir,
}

impl WebhookProcess {
    /// Starts `bin` with a leaf of `ca`, image lookups on, `registry` trusted over plain HTTP,
    /// and `args` appended; returns once it logs that it listens.
    pub fn spawn(bin: &Path, ca: &TestCa, registry: SocketAddr, args: &[&str]) -> Self {
        let mut secret = SecretDir::new();
        let (cert, key) = ca.leaf();
        secret.write(&cert, &key);
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--health-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(secret.cert_path())
            .arg("--tls-key")
            .arg(secret.key_path())
            .args(["--injector-image", INJECTOR, "--image-lookup", "true"])
            .args(["--insecure-registry", &registry.to_string()])
            .args(["--log-format", "json"])
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // Learn the bound address from the JSON log line.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let https_addr: SocketAddr = loop {
            let line = lines
                .next()
                .expect("the webhook exited before listening")
                .unwrap();
            let log: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log lines are JSON ({e}): {line}"));
            if log["message"] == "listening" {
                break log["https_addr"].as_str().unwrap().parse().unwrap();
            }
        };
        let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        WebhookProcess {
            child,
            https_addr,
            logs: Some(logs),
            _secret: secret,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmRSS, VmHWM) of the process in MiB, from /proc.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| -> f64 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            kib / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn sigterm(&self) {
        use nix::sys::signal::{Signal, kill};
        kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits for the process to exit on its own; panics after `within`.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the webhook did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every log line, once the process has exited.
    pub fn logs(&mut self) -> Vec<String> {
        self.logs
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const INJECTOR: &str = "registry.example/akv-env:1.0";

pub use akv_test_support::pki::TestCa;

/// Certificate files laid out like a mounted Kubernetes Secret: `tls.crt` and `tls.key` are
/// symlinks into `..data`, itself a symlink to a timestamped directory swapped on update.
pub struct SecretDir {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl SecretDir {
    pub fn new() -> Self {
        SecretDir {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        }
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// Writes a new generation and swaps `..data` atomically, as the kubelet does.
    pub fn write(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let root = self.dir.path();
        let generation = format!("..2026_{:04}", self.generation);
        std::fs::create_dir(root.join(&generation)).unwrap();
        std::fs::write(root.join(&generation).join("tls.crt"), cert).unwrap();
        std::fs::write(root.join(&generation).join("tls.key"), key).unwrap();
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        for name in ["tls.crt", "tls.key"] {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
    }
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

/// A review from `webhook/tests/fixtures`, found from whichever workspace crate includes this
/// module (the reliability tests borrow it).
pub fn fixture(name: &str) -> Value {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("webhook/tests/fixtures"))
        .find(|dir| dir.is_dir())
        .expect("webhook/tests/fixtures above the crate");
    let path = fixtures.join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The response of a review, its patch decoded and applied to the request's object.
pub struct Answer {
    pub response: Value,
    pub patched: Option<Value>,
}

pub fn read_answer(review: &Value, body: &[u8]) -> Answer {
    use base64::Engine;
    let answer: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    let response = answer["response"].clone();
    assert_eq!(response["uid"], review["request"]["uid"], "uid echoed");
    let patched = response.get("patch").map(|patch| {
        let text = patch
            .as_str()
            .unwrap_or_else(|| panic!("the patch must be a base64 string on the wire: {patch}"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(response["patchType"], "JSONPatch");
        let mut object = review["request"]["object"].clone();
        json_patch::patch(&mut object, &ops.0).unwrap();
        object
    });
    Answer { response, patched }
}
