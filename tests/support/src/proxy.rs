//! A small HTTP proxy for tests: `CONNECT host:port` tunnels (what HTTPS clients send), with
//! its own host map (the machine has no DNS, so a name reaches its stand-in only through the
//! proxy), optional Basic `Proxy-Authorization`, and failure modes (refuse every request with
//! 403, or accept and never answer). It records every request line and every byte it relays,
//! so a test can show what a proxy on the path could read.
//!
//! With [`Config::tls`] it is an `https://` proxy: clients speak TLS to the proxy itself, and
//! the tunnels inside carry their own TLS to the target.
//!
//! Plain-HTTP requests in absolute form (`GET http://host/...`) are recorded and refused with
//! 403: nothing in this project should send a plain-HTTP request through a proxy except an
//! operator's insecure registry, and the tests use TLS stand-ins for those.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

/// How the proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Tunnel CONNECT requests to the host map's address.
    #[default]
    Relay,
    /// Answer every request with 403 Forbidden.
    Refuse,
    /// Read the request and never answer (until the client goes away).
    Hang,
}

/// The proxy's set-up.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `host name -> address`, for CONNECT targets (the requested port is ignored: stand-ins
    /// listen on ephemeral ports). Literal IP targets are reached as given.
    pub hosts: HashMap<String, SocketAddr>,
    pub behaviour: Behaviour,
    /// `(user, password)` required in `Proxy-Authorization: Basic`; 407 otherwise.
    pub credentials: Option<(String, String)>,
    /// Serve TLS to clients (an `https://` proxy) with this certificate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// One request the proxy received: method, target and the status it answered (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub status: u16,
    /// Whether it carried a `Proxy-Authorization` header.
    pub with_credentials: bool,
}

#[derive(Default)]
struct Records {
    requests: Vec<Request>,
    /// Every request head as received (headers included).
    heads: Vec<u8>,
    /// Every byte relayed through tunnels, both directions.
    relayed: Vec<u8>,
}

/// A running proxy; stops accepting when dropped.
pub struct TestProxy {
    addr: SocketAddr,
    tls: bool,
    records: Arc<Mutex<Records>>,
    _stop: Stop,
}

struct Stop(SocketAddr, Arc<std::sync::atomic::AtomicBool>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.0, Duration::from_millis(200));
    }
}

impl TestProxy {
    /// Starts on 127.0.0.1 (an ephemeral port).
    pub fn start(config: Config) -> TestProxy {
        TestProxy::start_on(
            TcpListener::bind("127.0.0.1:0").expect("bind the test proxy"),
            config,
        )
    }

    /// Starts on a listener the caller bound (e.g. inside a network namespace).
    pub fn start_on(listener: TcpListener, config: Config) -> TestProxy {
        let addr = listener.local_addr().expect("the proxy's address");
        let records = Arc::new(Mutex::new(Records::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tls = config.tls.is_some();
        let config = Arc::new(config);
        let (r, s) = (records.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r, c) = (r.clone(), config.clone());
                std::thread::spawn(move || serve(conn, &c, &r));
            }
        });
        TestProxy {
            addr,
            tls,
            records,
            _stop: Stop(addr, stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` for a TLS proxy (its certificate
    /// names `localhost`).
    pub fn url(&self) -> String {
        match self.tls {
            false => format!("http://{}", self.addr),
            true => format!("https://localhost:{}", self.addr.port()),
        }
    }

    /// [`Self::url`] with `user:password@` (percent-encode special characters yourself).
    pub fn url_with(&self, user: &str, password: &str) -> String {
        let url = self.url();
        let (scheme, rest) = url.split_once("://").expect("a URL");
        format!("{scheme}://{user}:{password}@{rest}")
    }

    pub fn requests(&self) -> Vec<Request> {
        self.records.lock().unwrap().requests.clone()
    }

    /// The proxy's access log: one `METHOD target status` line per request.
    pub fn log(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} {}\n", r.method, r.target, r.status))
            .collect()
    }

    /// Every request head received (with its `Proxy-Authorization`, which is the proxy's due).
    pub fn heads(&self) -> Vec<u8> {
        self.records.lock().unwrap().heads.clone()
    }

    /// Every byte relayed through tunnels, both directions: what a proxy on the path could read.
    pub fn relayed(&self) -> Vec<u8> {
        self.records.lock().unwrap().relayed.clone()
    }
}

fn serve(client: TcpStream, config: &Config, records: &Mutex<Records>) {
    let Some(tls) = &config.tls else {
        let mut client = client;
        let Some(upstream) = connect(&mut client, config, records) else {
            return;
        };
        let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
            return;
        };
        std::thread::scope(|scope| {
            scope.spawn(|| pipe(client2, upstream, records));
            pipe(upstream2, client, records);
        });
        return;
    };
    let Ok(session) = rustls::ServerConnection::new(tls.clone()) else {
        return;
    };
    let mut client = rustls::StreamOwned::new(session, client);
    if let Some(upstream) = connect(&mut client, config, records) {
        relay_tls(client, upstream, records);
    }
}

/// Reads the request head from `client` and answers it: the tunnel's upstream connection once
/// `200 Connection established` is written, or `None` after any other answer.
fn connect<C: Read + Write>(
    client: &mut C,
    config: &Config,
    records: &Mutex<Records>,
) -> Option<TcpStream> {
    let head = read_head(client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let method = words.next().unwrap_or("").to_owned();
    let target = words.next().unwrap_or("").to_owned();
    let auth = text.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    let record = |status: u16| {
        let mut r = records.lock().unwrap();
        r.heads.extend_from_slice(&head);
        r.requests.push(Request {
            method: method.clone(),
            target: target.clone(),
            status,
            with_credentials: auth.is_some(),
        });
    };
    let answer = |client: &mut C, status: u16, reason: &str, extra: &str| {
        record(status);
        let _ = write!(
            client,
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = client.flush();
        None
    };
    match config.behaviour {
        Behaviour::Hang => {
            record(0);
            let mut sink = [0u8; 1024];
            while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
            return None;
        }
        Behaviour::Refuse => return answer(client, 403, "Forbidden", ""),
        Behaviour::Relay => {}
    }
    if let Some((user, password)) = &config.credentials {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if auth.as_deref() != Some(want.as_str()) {
            return answer(
                client,
                407,
                "Proxy Authentication Required",
                "Proxy-Authenticate: Basic realm=\"test-proxy\"\r\n",
            );
        }
    }
    if method != "CONNECT" {
        return answer(client, 403, "Forbidden", "");
    }
    let upstream = target.rsplit_once(':').and_then(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match config.hosts.get(&host.to_ascii_lowercase()) {
            Some(addr) => Some(*addr),
            None => Some(SocketAddr::new(host.parse().ok()?, port.parse().ok()?)),
        }
    });
    let Some(Ok(upstream)) =
        upstream.map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)))
    else {
        return answer(client, 502, "Bad Gateway", "");
    };
    record(200);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .and_then(|()| client.flush())
        .ok()?;
    Some(upstream)
}

/// Relays between a TLS client and its upstream until either side ends, recording every byte
/// of the tunnel. One thread takes turns with short read timeouts: a TLS session cannot be
/// read and written from two threads.
fn relay_tls(
    mut client: rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
    mut upstream: TcpStream,
    records: &Mutex<Records>,
) {
    let tick = Some(Duration::from_millis(2));
    if client.sock.set_read_timeout(tick).is_err() || upstream.set_read_timeout(tick).is_err() {
        return;
    }
    let idle = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    };
    let mut buf = [0u8; 16 * 1024];
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                records.lock().unwrap().relayed.extend_from_slice(&buf[..n]);
                if upstream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
        match upstream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                records.lock().unwrap().relayed.extend_from_slice(&buf[..n]);
                if client
                    .write_all(&buf[..n])
                    .and_then(|()| client.flush())
                    .is_err()
                {
                    break;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => break,
        }
    }
    client.conn.send_close_notify();
    let _ = client.flush();
}

/// Copies `from` to `to`, recording every byte, until `from` ends; then ends `to`'s writes.
fn pipe(mut from: TcpStream, mut to: TcpStream, records: &Mutex<Records>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                records.lock().unwrap().relayed.extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads up to the blank line that ends a request head (at most 64 KiB).
fn read_head(conn: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}
