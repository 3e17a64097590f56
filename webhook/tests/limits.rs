//! Hostile clients against the real `akv-env-webhook serve` process: hundreds of connections
//! trickling bytes (slowloris) and many parallel maximum-size bodies, while a well-behaved client
//! (one HTTP/2 connection, as the API server keeps) sends reviews that must keep being answered.
//! The figures are printed (`--no-capture`) and recorded in RELIABILITY.md.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Connection, Protocol, TestCa, fixture, read_answer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_akv-env-webhook");
/// The chart's memory limit for the webhook container.
const CHART_MEMORY_LIMIT_MIB: f64 = 256.0;
/// The API server's default webhook timeout.
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends the fixture review every `every` until `until`; every answer must be a patch within the
/// API server's timeout. Returns (reviews answered, slowest).
async fn well_behaved(
    addr: SocketAddr,
    ca: Arc<TestCa>,
    every: Duration,
    until: Instant,
) -> (usize, Duration) {
    let review = fixture("pod-command.json");
    let body = serde_json::to_vec(&review).unwrap();
    let mut conn = Connection::open(addr, &ca, Protocol::Http2).await;
    let (mut answered, mut slowest) = (0, Duration::ZERO);
    loop {
        let started = Instant::now();
        let (status, answer) =
            tokio::time::timeout(API_SERVER_TIMEOUT, conn.post("/mutate", body.clone()))
                .await
                .expect("a well-behaved review is answered within the API server's timeout");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        assert!(read_answer(&review, &answer).patched.is_some());
        answered += 1;
        slowest = slowest.max(started.elapsed());
        if Instant::now() >= until {
            return (answered, slowest);
        }
        tokio::time::sleep(every).await;
    }
}

/// How a slow client trickles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trickle {
    /// A TLS ClientHello, one byte at a time.
    Handshake,
    /// An HTTP/1.1 request head, one byte at a time.
    Head,
    /// A complete head announcing a body, then the body one byte at a time.
    Body,
    /// An HTTP/2 connection that never sends a request.
    Idle,
}

/// What happened to one slow connection.
#[derive(Debug)]
enum Fate {
    /// Closed by the server within 200 ms of connecting: the connection cap.
    Refused,
    /// Closed by the server after this long.
    Cut(Duration),
    /// Still open when the client gave up.
    Held,
}

async fn slow_client(addr: SocketAddr, ca: Arc<TestCa>, kind: Trickle, give_up: Duration) -> Fate {
    let started = Instant::now();
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return Fate::Refused;
    };
    let fate = |closed_at: Duration| {
        if closed_at < Duration::from_millis(200) {
            Fate::Refused
        } else {
            Fate::Cut(closed_at)
        }
    };
    let step = Duration::from_millis(300);
    if kind == Trickle::Handshake {
        // The first bytes of a TLS record carrying a ClientHello, then more, slowly.
        let mut tcp = tcp;
        let hello = [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        let mut buf = [0u8; 64];
        for byte in hello.iter().cycle() {
            if started.elapsed() > give_up {
                return Fate::Held;
            }
            if tcp.write_all(&[*byte]).await.is_err() {
                return fate(started.elapsed());
            }
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(step, tcp.read(&mut buf)).await {
                return fate(started.elapsed());
            }
        }
        unreachable!()
    }
    let alpn: &[u8] = if kind == Trickle::Idle {
        b"h2"
    } else {
        b"http/1.1"
    };
    let connector = tokio_rustls::TlsConnector::from(ca.client_config(&[alpn]));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(Ok(tls)) = tokio::time::timeout(give_up, connector.connect(name, tcp)).await else {
        return fate(started.elapsed());
    };
    let (mut read, mut write) = tokio::io::split(tls);
    let watch_close = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let payload: Vec<u8> = match kind {
        Trickle::Head => b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
        Trickle::Body => {
            let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
            if write.write_all(head).await.is_err() {
                return fate(started.elapsed());
            }
            b"{\"apiVersion\":\"admission.k8s.io/v1\",".repeat(100)
        }
        // The HTTP/2 preface and an empty SETTINGS frame, at once: then silence.
        _ => {
            let mut preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            preface.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
            let _ = write.write_all(&preface).await;
            Vec::new()
        }
    };
    let mut bytes = payload.iter();
    loop {
        if watch_close.is_finished() {
            return fate(started.elapsed());
        }
        if started.elapsed() > give_up {
            watch_close.abort();
            return Fate::Held;
        }
        if let Some(byte) = bytes.next()
            && (write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err())
        {
            return fate(started.elapsed());
        }
        tokio::time::sleep(step).await;
    }
}

#[derive(Debug, Default)]
struct Tally {
    refused: usize,
    cut: Vec<Duration>,
    held: usize,
}

impl Tally {
    fn add(&mut self, fate: Fate) {
        match fate {
            Fate::Refused => self.refused += 1,
            Fate::Cut(after) => self.cut.push(after),
            Fate::Held => self.held += 1,
        }
    }

    fn latest_cut(&self) -> Duration {
        self.cut.iter().copied().max().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_connections_are_cut_and_reviews_keep_flowing() {
    let ca = Arc::new(TestCa::new("akv-env test CA"));
    let webhook = common::spawn_process(
        Path::new(BIN),
        &ca,
        common::silent_registry(),
        &[
            "--max-connections",
            "150",
            "--header-timeout",
            "2s",
            "--body-timeout",
            "3s",
            "--idle-timeout",
            "4s",
        ],
    );
    let addr = webhook.https_addr;
    // The API server's connection is there before the attack.
    let good = tokio::spawn(well_behaved(
        addr,
        ca.clone(),
        Duration::from_millis(100),
        Instant::now() + Duration::from_secs(12),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let kinds = [
        Trickle::Handshake,
        Trickle::Head,
        Trickle::Body,
        Trickle::Idle,
    ];
    let attackers: Vec<_> = (0..400)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            let ca = ca.clone();
            tokio::spawn(async move {
                (
                    kind,
                    slow_client(addr, ca, kind, Duration::from_secs(20)).await,
                )
            })
        })
        .collect();
    // Sample the server's open sockets while the attack runs.
    let pid = webhook.pid();
    let sampler = tokio::spawn(async move {
        let mut most = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let sockets = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|dir| {
                    dir.filter_map(Result::ok)
                        .filter(|e| {
                            std::fs::read_link(e.path())
                                .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                        })
                        .count()
                })
                .unwrap_or(0);
            most = most.max(sockets);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (rss_attack, _) = webhook.memory_mib();

    let mut tallies: Vec<(Trickle, Tally)> = kinds.iter().map(|k| (*k, Tally::default())).collect();
    for attacker in attackers {
        let (kind, fate) = attacker.await.unwrap();
        tallies
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .unwrap()
            .1
            .add(fate);
    }
    let (answered, slowest) = good.await.unwrap();
    // A new connection after the attack is served too.
    let (late, _) = well_behaved(addr, ca.clone(), Duration::ZERO, Instant::now()).await;
    let (_, peak) = webhook.memory_mib();
    let most_sockets = sampler.await.unwrap();

    println!(
        "slowloris: 400 slow connections against --max-connections 150, header timeout 2s, body timeout 3s, idle timeout 4s"
    );
    for (kind, tally) in &tallies {
        println!(
            "  {kind:?}: {} refused at the cap, {} cut by the server (last after {:.1?}), {} still open after 20 s",
            tally.refused,
            tally.cut.len(),
            tally.latest_cut(),
            tally.held
        );
    }
    println!(
        "  well-behaved client: {answered} reviews answered during the attack, slowest {slowest:.0?}; a new connection afterwards: {late} answered"
    );
    println!("  most sockets open in the server at once (listeners included): {most_sockets}");
    println!(
        "  server RSS during the attack {rss_attack:.1} MiB, peak {peak:.1} MiB (chart limit {CHART_MEMORY_LIMIT_MIB} MiB)"
    );

    for (kind, tally) in &tallies {
        assert_eq!(
            tally.held, 0,
            "{kind:?}: connections held past the deadlines: {tally:?}"
        );
    }
    let refused: usize = tallies.iter().map(|(_, t)| t.refused).sum();
    assert!(refused > 0, "the connection cap refused none of 400");
    // Two listeners, the well-behaved connection, the registry client: a few more than the cap.
    assert!(
        most_sockets <= 150 + 8,
        "{most_sockets} sockets open with a cap of 150"
    );
    assert!(
        answered >= 20,
        "only {answered} reviews answered during the attack"
    );
    assert!(late >= 1);
    assert!(peak < CHART_MEMORY_LIMIT_MIB);
}

/// A review of `size` bytes (padding in an annotation) for a pod with `command`.
fn review_of_size(size: usize) -> Vec<u8> {
    let mut review = fixture("pod-command.json");
    let base = serde_json::to_vec(&review).unwrap().len();
    let annotations = review["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .map(|a| a.len());
    assert!(annotations.is_none(), "the fixture has no annotations");
    let overhead = r#","annotations":{"pad":""}"#.len();
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"pad": "x".repeat(size - base - overhead)});
    let body = serde_json::to_vec(&review).unwrap();
    assert_eq!(body.len(), size);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_maximum_size_bodies_stay_under_the_memory_limit() {
    const LIMIT: usize = 3 * 1024 * 1024;
    const PARALLEL: usize = 64;
    let ca = Arc::new(TestCa::new("akv-env test CA"));
    // Default limits but the body deadline: 64 connections pushing 3 MiB each through TLS in a
    // debug build on a busy 2-core machine can take longer than 5 s, and this test is about
    // memory, not the deadline (the slowloris test covers that).
    let mut webhook = common::spawn_process(
        Path::new(BIN),
        &ca,
        common::silent_registry(),
        &["--body-timeout", "30s"],
    );
    let addr = webhook.https_addr;
    let (rss_idle, _) = webhook.memory_mib();
    let good = tokio::spawn(well_behaved(
        addr,
        ca.clone(),
        Duration::from_millis(50),
        Instant::now() + Duration::from_secs(6),
    ));
    let big = Arc::new(review_of_size(LIMIT - 1));
    let started = Instant::now();
    let mut statuses: Vec<u16> = Vec::new();
    for _round in 0..3 {
        let senders: Vec<_> = (0..PARALLEL)
            .map(|_| {
                let (ca, big) = (ca.clone(), big.clone());
                tokio::spawn(async move {
                    let mut conn = Connection::open(addr, &ca, Protocol::Http2).await;
                    let (status, answer) = conn.post("/mutate", big.to_vec()).await;
                    if status == 200 {
                        let answer: Value = serde_json::from_slice(&answer).unwrap();
                        assert_eq!(answer["response"]["allowed"], true);
                    }
                    status.as_u16()
                })
            })
            .collect();
        for sender in senders {
            statuses.push(sender.await.unwrap());
        }
    }
    let took = started.elapsed();
    let (answered, slowest) = good.await.unwrap();
    let (rss_after, peak) = webhook.memory_mib();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let shed = statuses.iter().filter(|s| **s == 503).count();
    println!(
        "memory: 3 rounds of {PARALLEL} parallel 3 MiB reviews on their own HTTP/2 connections (default limits, 30 s body timeout): \
         {ok} answered, {shed} shed with 503, in {took:.1?}; well-behaved client: {answered} answered, slowest {slowest:.0?}; \
         server RSS {rss_idle:.1} idle -> {rss_after:.1} after, peak {peak:.1} MiB (chart limit {CHART_MEMORY_LIMIT_MIB} MiB)"
    );
    assert!(webhook.alive());
    assert_eq!(ok + shed, statuses.len(), "only 200 or 503: {statuses:?}");
    assert!(ok > 0, "no maximum-size review was answered");
    assert!(answered >= 3, "only {answered} small reviews answered");
    assert!(
        peak < CHART_MEMORY_LIMIT_MIB * 0.75,
        "peak RSS {peak:.1} MiB is too close to the chart's limit"
    );
}
