//! The binary under SIGTERM: an in-flight review (held up by a registry that never answers)
//! is still answered, new connections are refused, and the process exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Connection, Protocol, SecretDir, TestCa, fixture, read_answer};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[tokio::test]
async fn sigterm_finishes_the_in_flight_review() {
    // A "registry" that accepts connections and never says a word.
    let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry_addr = registry.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in registry.incoming() {
            held.push(conn);
        }
    });

    let ca = TestCa::new();
    let mut secret = SecretDir::new();
    let (cert, key) = ca.leaf();
    secret.write(&cert, &key);
    let mut child = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(secret.cert_path())
        .arg("--tls-key")
        .arg(secret.key_path())
        .args([
            "--injector-image",
            common::INJECTOR,
            "--image-lookup",
            "true",
        ])
        .args(["--insecure-registry", &registry_addr.to_string()])
        .args([
            "--registry-timeout",
            "2s",
            "--admission-timeout",
            "6s",
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Learn the bound address from the JSON log line.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let https_addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the webhook exited before listening")
            .unwrap();
        let log: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("log lines are JSON ({e}): {line}"));
        if log["message"] == "listening" {
            break log["https_addr"].as_str().unwrap().parse().unwrap();
        }
    };
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let mut review = fixture("pod-no-command.json");
    let image = format!("{registry_addr}/shop/app:1");
    review["request"]["object"]["spec"]["containers"][0]["image"] = image.clone().into();
    let mut conn = Connection::open(https_addr, &ca, Protocol::Http2).await;
    let body = serde_json::to_vec(&review).unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { conn.post("/mutate", body).await });

    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(https_addr).await.is_err(),
        "no new connections once shutting down"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, hyper::StatusCode::OK);
    let answer = read_answer(&review, &body);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&image) && message.contains("set `command`"),
        "{message}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "answered after the registry deadline"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the webhook did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let logs = logs.join().unwrap();
    assert!(logs.iter().any(|l| l.contains("pod refused")), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("\"stopped\"")), "{logs:?}");
}
