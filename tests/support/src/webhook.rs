//! The webhook binary as the API server meets it: `akv-env-webhook serve` as a child process
//! on loopback, its certificate in a Secret-style directory, and the reviews it answers read
//! back the way the API server applies them. The one launcher of the webhook tests, the
//! reliability tests and the end-to-end harness (in-process servers stay in the webhook's own
//! tests: they need its library, which depends on nothing here).

use std::ffi::OsStr;
use std::io::{self, BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::pki::TestCa;

/// The injector image the tests' webhooks are configured with.
pub const INJECTOR: &str = "registry.example/akv-env:1.0";

/// The names the serving certificate is for: the chart's Service name and loopback.
pub const SERVING_NAMES: &[&str] = &["akv-env-webhook.akv-env.svc", "localhost", "127.0.0.1"];

/// Certificate files laid out like a mounted Kubernetes Secret: `tls.crt` and `tls.key` are
/// symlinks into `..data`, itself a symlink to a timestamped directory swapped on update.
pub struct SecretDir {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl Default for SecretDir {
    fn default() -> Self {
        Self::new()
    }
}

impl SecretDir {
    pub fn new() -> Self {
        SecretDir {
            dir: tempfile::tempdir().expect("a temporary directory"),
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

/// `serve` flags for image lookups against `registry`, trusted over plain HTTP (the tests'
/// registries), with the tests' injector image.
pub fn lookups_via(registry: SocketAddr) -> Vec<String> {
    [
        "--injector-image",
        INJECTOR,
        "--image-lookup",
        "true",
        "--insecure-registry",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([registry.to_string()])
    .collect()
}

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

/// `akv-env-webhook serve` as a child process with JSON logs and no Kubernetes API, for what
/// only the binary shows: signals, exit status, log lines, memory. SIGTERM, then SIGKILL, on drop.
pub struct WebhookProcess {
    child: Child,
    pub https_addr: SocketAddr,
    pub health_addr: SocketAddr,
    /// The serving certificate's files; write a new generation to rotate it.
    pub secret: SecretDir,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl WebhookProcess {
    /// Starts `binary serve` on ports it picks, serving a leaf of `ca` for [`SERVING_NAMES`],
    /// with `args` appended and `env` set; returns once it logs that it listens.
    pub fn spawn<A: AsRef<OsStr>>(
        binary: &Path,
        ca: &TestCa,
        args: &[A],
        env: &[(&str, &str)],
    ) -> io::Result<Self> {
        let mut secret = SecretDir::new();
        let (cert, key) = ca.leaf_for(SERVING_NAMES);
        secret.write(&cert, &key);
        let mut child = Command::new(binary)
            .args(["--log-format", "json", "serve"])
            .args(["--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(secret.cert_path())
            .arg("--tls-key")
            .arg(secret.key_path())
            .args(args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", binary.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (listening, addresses) = mpsc::channel();
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addrs) = listening_addresses(&line) {
                        let _ = listening.send(addrs);
                    }
                    lines.lock().unwrap().push(line);
                }
            })
        };
        let mut process = WebhookProcess {
            child,
            https_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            health_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            secret,
            lines,
            reader: Some(reader),
        };
        // The reader drops the sender when stderr closes, i.e. when the process exits.
        match addresses.recv_timeout(Duration::from_secs(30)) {
            Ok((https, health)) => {
                process.https_addr = https;
                process.health_addr = health;
                Ok(process)
            }
            Err(_) => Err(io::Error::other(format!(
                "{} did not log that it listens; its log:\n{}",
                binary.display(),
                process.log()
            ))),
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
        // The child may have exited already; that is not this call's concern.
        let _ = kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            Signal::SIGTERM,
        );
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

    /// Everything logged so far, one JSON line each.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Every log line, once the process has exited (waits for its stderr to close).
    pub fn logs(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for WebhookProcess {
    fn drop(&mut self) {
        if self.alive() {
            self.sigterm();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline && self.alive() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The addresses of the webhook's `listening` log line.
fn listening_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let log: Value = serde_json::from_str(line).ok()?;
    if log["message"] != "listening" {
        return None;
    }
    let addr = |key: &str| log[key].as_str()?.parse().ok();
    Some((addr("https_addr")?, addr("health_addr")?))
}

/// A review from `webhook/tests/fixtures`.
pub fn fixture(name: &str) -> Value {
    let path = crate::cargo::workspace_root()
        .join("webhook/tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The response of a review, its patch decoded and applied to the request's object.
pub struct Answer {
    pub response: Value,
    pub patched: Option<Value>,
}

/// Reads an answer as the API server does (the patch a base64 string on the wire) and checks
/// it echoes the review's uid.
pub fn read_answer(review: &Value, body: &[u8]) -> Answer {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_both_addresses() {
        let line = r#"{"message":"listening","https_addr":"127.0.0.1:8443","health_addr":"127.0.0.1:8080"}"#;
        assert_eq!(
            listening_addresses(line),
            Some((
                "127.0.0.1:8443".parse().unwrap(),
                "127.0.0.1:8080".parse().unwrap()
            ))
        );
        for other in [
            r#"{"message":"starting"}"#,
            r#"{"message":"listening","https_addr":"127.0.0.1:8443"}"#,
            "not json",
        ] {
            assert_eq!(listening_addresses(other), None, "{other}");
        }
    }
}
