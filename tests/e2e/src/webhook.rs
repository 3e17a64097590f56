//! The real webhook binary, started as a child process serving HTTPS with a certificate from a
//! CA the harness makes, and a client that posts reviews to it as the API server would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_test_support::pki::TestCa;
use serde_json::Value;

use crate::error::{Error, Result, io};

/// How to start the webhook.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    pub binary: PathBuf,
    pub injector_image: String,
    pub default_vault: Option<String>,
    /// Registries spoken to over plain HTTP (the test registry).
    pub insecure_registries: Vec<String>,
    /// More `serve` flags, e.g. `--restart-on-change-floor=1s`.
    pub extra_args: Vec<String>,
}

/// A running `akv-env-webhook serve`; stopped with SIGTERM when dropped.
pub struct WebhookServer {
    child: Child,
    addr: SocketAddr,
    client: reqwest::Client,
    log_path: PathBuf,
    /// PEM of the CA that issued the serving certificate (the `caBundle` of the webhook config).
    pub ca_pem: String,
}

impl WebhookServer {
    /// Writes the certificates under `dir`, starts the binary on free loopback ports, and waits
    /// until `/readyz` answers 200.
    pub async fn start(dir: &Path, opts: &WebhookOptions) -> Result<Self> {
        if !opts.binary.is_file() {
            return Err(Error::Other(format!(
                "webhook binary {} not found (cargo build -p akv-env-webhook)",
                opts.binary.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        // webpki refuses a self-signed leaf: a CA and a leaf it issues.
        let ca = TestCa::new("akv-env e2e webhook CA");
        let (cert_pem, key_pem) =
            ca.leaf_for(&["akv-env-webhook.akv-env.svc", "localhost", "127.0.0.1"]);
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::write(&cert, cert_pem).map_err(io("writing tls.crt"))?;
        std::fs::write(&key, key_pem).map_err(io("writing tls.key"))?;
        let log_path = dir.join("webhook.log");

        let tls = Arc::unwrap_or_clone(ca.client_config(&[]));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Other(format!("HTTP client: {e}")))?;

        let mut last = String::new();
        for _ in 0..3 {
            let addr = registry_harness::free_loopback_addr()?;
            let health = registry_harness::free_loopback_addr()?;
            let log = std::fs::File::create(&log_path).map_err(io("creating webhook.log"))?;
            let mut cmd = Command::new(&opts.binary);
            cmd.args(["--log-format", "json", "serve"])
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--health-listen")
                .arg(health.to_string())
                .arg("--tls-cert")
                .arg(&cert)
                .arg("--tls-key")
                .arg(&key)
                .arg("--injector-image")
                .arg(&opts.injector_image)
                .env_remove("KUBECONFIG")
                .env_remove("KUBERNETES_SERVICE_HOST")
                .env("RUST_LOG", "debug")
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("cloning the log handle"))?)
                .stderr(log);
            if let Some(v) = &opts.default_vault {
                cmd.arg("--default-vault").arg(v);
            }
            for r in &opts.insecure_registries {
                cmd.arg("--insecure-registry").arg(r);
            }
            cmd.args(&opts.extra_args);
            let mut child = cmd
                .spawn()
                .map_err(io(format!("starting {}", opts.binary.display())))?;
            if wait_ready(&mut child, health).await {
                return Ok(WebhookServer {
                    child,
                    addr,
                    client,
                    log_path,
                    ca_pem: ca.pem(),
                });
            }
            let _ = child.kill();
            let _ = child.wait();
            last = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        Err(Error::Other(format!(
            "the webhook did not become ready; its log:\n{last}"
        )))
    }

    /// `https://127.0.0.1:PORT/mutate`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/mutate", self.addr.port())
    }

    /// Posts an AdmissionReview and returns the answer's JSON.
    pub async fn review(&self, review: &Value) -> Result<Value> {
        let resp = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .map_err(|e| {
                Error::Other(format!(
                    "posting the review to {}: {}",
                    self.url(),
                    chain(&e)
                ))
            })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Error::Other(format!("reading the review answer: {e}")))?;
        if !status.is_success() {
            return Err(Error::Other(format!(
                "the webhook answered {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| Error::Other(format!("the review answer is not JSON: {e}")))
    }

    /// Everything the webhook logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `/readyz` on the health port; false if the process exits or 20 s pass.
async fn wait_ready(child: &mut Child, health: SocketAddr) -> bool {
    // reqwest is built without a default TLS provider; plain HTTP still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(r) = client.get(format!("http://{health}/readyz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An error with its causes, which reqwest hides.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
