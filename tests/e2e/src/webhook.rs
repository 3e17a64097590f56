//! The real webhook binary, started as a child process serving HTTPS with a certificate from a
//! CA the harness makes, and a client that posts reviews to it as the API server would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use akv_test_support::pki::TestCa;
use akv_test_support::webhook::WebhookProcess;
use serde_json::Value;

use crate::error::{Error, Result};

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

/// A running `akv-env-webhook serve` (akv-test-support's launcher) and a client posting to it
/// as the API server would; stopped with SIGTERM when dropped.
pub struct WebhookServer {
    process: WebhookProcess,
    client: reqwest::Client,
    /// PEM of the CA that issued the serving certificate (the `caBundle` of the webhook config).
    pub ca_pem: String,
}

impl WebhookServer {
    /// Starts the binary on loopback ports it picks, with debug logs, and waits until it
    /// listens.
    pub async fn start(opts: &WebhookOptions) -> Result<Self> {
        if !opts.binary.is_file() {
            return Err(Error::Other(format!(
                "webhook binary {} not found (cargo build -p akv-env-webhook)",
                opts.binary.display()
            )));
        }
        // webpki refuses a self-signed leaf: a CA and a leaf it issues.
        let ca = TestCa::new("akv-env e2e webhook CA");
        let tls = Arc::unwrap_or_clone(ca.client_config(&[]));
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Other(format!("HTTP client: {e}")))?;
        let mut args = vec!["--injector-image".to_owned(), opts.injector_image.clone()];
        if let Some(vault) = &opts.default_vault {
            args.extend(["--default-vault".to_owned(), vault.clone()]);
        }
        for registry in &opts.insecure_registries {
            args.extend(["--insecure-registry".to_owned(), registry.clone()]);
        }
        args.extend(opts.extra_args.iter().cloned());
        let process = WebhookProcess::spawn(&opts.binary, &ca, &args, &[("RUST_LOG", "debug")])
            .map_err(|e| Error::Other(format!("the webhook did not start: {e}")))?;
        Ok(WebhookServer {
            process,
            client,
            ca_pem: ca.pem(),
        })
    }

    /// `https://127.0.0.1:PORT/mutate`.
    pub fn url(&self) -> String {
        format!(
            "https://localhost:{}/mutate",
            self.process.https_addr.port()
        )
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
        self.process.log()
    }
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
