//! A TCP relay that adds a round-trip time to every connection through it: the stand-in for
//! `tc qdisc ... netem delay`, which this machine's kernel lacks (no `sch_netem`).
//!
//! Every chunk is held for half the RTT in each direction, and nothing the client sends is
//! passed on before one RTT after the connection was accepted: the kernel completes the TCP
//! handshake at once on loopback, so the relay charges it to the client's first bytes instead
//! (a real client can send only after the SYN-ACK, one RTT after its SYN). TCP and TLS
//! handshakes, token requests and vault requests all pay the delay, as across a real network.
//! Not modelled: bandwidth, loss, and the kernel's congestion window (small here anyway).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A running relay; stops accepting when dropped (open connections finish on their own).
pub struct DelayRelay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayRelay {
    /// Listens on `listen` and forwards each connection to `upstream` with `rtt` added.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        rtt: Duration,
    ) -> io::Result<DelayRelay> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let accepted = Instant::now();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (client_rx, client_tx) = client.into_split();
                    let (server_rx, server_tx) = server.into_split();
                    let half = rtt / 2;
                    tokio::join!(
                        pipe(client_rx, server_tx, half, accepted + rtt),
                        pipe(server_rx, client_tx, half, accepted),
                    );
                });
            }
        });
        Ok(DelayRelay { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read and never before
/// `not_before + delay`; end of stream is passed on the same way.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    not_before: Instant,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            let at = Instant::now().max(not_before) + delay;
            // An empty chunk marks the end of the stream.
            if tx.send((at, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server behind the relay: bytes arrive intact in both directions, and the first
    /// answer takes at least connect (1 RTT) + request and answer (1 RTT). A lower bound only:
    /// a delay can be longer on a busy machine, never shorter.
    #[tokio::test]
    async fn relays_bytes_both_ways_and_charges_the_handshake_and_each_exchange() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let rtt = Duration::from_millis(40);
        let relay = DelayRelay::start("127.0.0.1:0".parse().unwrap(), echo_addr, rtt)
            .await
            .unwrap();
        let start = Instant::now();
        let mut c = TcpStream::connect(relay.addr()).await.unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        let first = start.elapsed();
        assert_eq!(&got, b"ping");
        assert!(first >= 2 * rtt, "first answer after {first:?}");

        let again = Instant::now();
        let (mut r, mut w) = c.into_split();
        let send = tokio::spawn(async move {
            w.write_all(&payload).await.unwrap();
            w.shutdown().await.unwrap();
            payload
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        let sent = send.await.unwrap();
        assert_eq!(back, sent, "bytes changed on the way");
        assert!(
            again.elapsed() >= rtt,
            "exchange after {:?}",
            again.elapsed()
        );
    }
}
