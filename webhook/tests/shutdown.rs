//! The binary under SIGTERM: an in-flight review (held up by a registry that never answers)
//! is still answered, new connections are refused, and the process exits 0.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Connection, Protocol, TestCa, fixture, read_answer};

#[tokio::test]
async fn sigterm_finishes_the_in_flight_review() {
    let registry = common::silent_registry();
    let ca = TestCa::new("akv-env test CA");
    let mut webhook = common::spawn_process(
        Path::new(env!("CARGO_BIN_EXE_akv-env-webhook")),
        &ca,
        registry,
        &["--registry-timeout", "2s", "--admission-timeout", "6s"],
    );

    let mut review = fixture("pod-no-command.json");
    let image = format!("{registry}/shop/app:1");
    review["request"]["object"]["spec"]["containers"][0]["image"] = image.clone().into();
    let mut conn = Connection::open(webhook.https_addr, &ca, Protocol::Http2).await;
    let body = serde_json::to_vec(&review).unwrap();
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { conn.post("/mutate", body).await });

    tokio::time::sleep(Duration::from_millis(500)).await;
    webhook.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tokio::net::TcpStream::connect(webhook.https_addr)
            .await
            .is_err(),
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

    let status = webhook.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let logs = webhook.logs();
    assert!(logs.iter().any(|l| l.contains("pod refused")), "{logs:?}");
    assert!(logs.iter().any(|l| l.contains("\"stopped\"")), "{logs:?}");
}
