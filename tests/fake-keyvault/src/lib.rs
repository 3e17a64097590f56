//! A local Azure Key Vault and Microsoft Entra token service for tests.
//!
//! One HTTPS port answers Key Vault's data plane for `<vault>.vault.azure.net` (and the sovereign
//! clouds' suffixes) and the Entra token service for every other host; clients map those names to
//! [`FakeKeyVault::https_addr`] and trust [`FakeKeyVault::ca_pem`], so vault URLs keep their real
//! shape and the SDKs' challenge-resource checks stay on. A plain-HTTP port serves the
//! managed-identity endpoints. Every token grant and vault access is recorded with the identity.

mod entra;
mod faults;
mod pki;
pub mod relay;
mod seed;
mod server;
mod store;
mod token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use akv_test_support::pod::PodEnv;
use tokio::sync::watch;

pub use faults::{Throttle, check_rate};
pub use pki::SERVER_NAMES;
pub use seed::{
    CertificateSeed, DEFAULT_TENANT, IdentitySeed, KeySeed, PEM, PKCS12, SecretSeed,
    SecretVersionSeed, Seed, SeedError, VaultSeed,
};
pub use store::{ObjectKind, SecretAttributes};
pub use token::LIFETIME_SECS as TOKEN_LIFETIME_SECS;

/// How to start the fake. `Default`: no vaults, no identities, no faults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Vaults, their objects, identities and access policies.
    pub seed: Seed,
    /// Per vault, GETs beyond `limit` per window get 429 with `Retry-After`.
    pub throttle: Option<Throttle>,
    /// Added to every vault data-plane response.
    pub latency: Duration,
    /// Share of vault requests answered 500.
    pub error_rate: f64,
    /// Share of vault requests whose connection is closed without an answer.
    pub drop_rate: f64,
    /// Offer only `http/1.1` in TLS ALPN, like a server without HTTP/2 (Key Vault offers h2 and
    /// http/1.1, and so does the fake by default).
    pub http1_only: bool,
}

/// One TCP connection to the HTTPS port, as the fake saw it: how round trips are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Accept order, from 0 over the fake's life (not reset by [`FakeKeyVault::clear_records`]).
    pub id: u64,
    /// TLS server name the client sent (the vault's or the token service's host).
    pub server_name: Option<String>,
    /// Protocol agreed in ALPN (`h2`, `http/1.1`); `None` when the client offered none, or the
    /// TLS handshake failed.
    pub protocol: Option<String>,
    /// Whether the TLS handshake completed.
    pub tls: bool,
    /// Requests answered (or dropped) on this connection.
    pub requests: u32,
    /// Requests received and not yet answered, now (HTTP/2 streams in flight).
    pub in_flight: u32,
    /// The most requests in flight at once on this connection: how many a client sent before
    /// the first answer came back.
    pub max_in_flight: u32,
}

/// One vault data-plane request, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Client id the bearer token was issued to; `None` without a valid token.
    pub identity: Option<String>,
    pub vault: String,
    pub kind: ObjectKind,
    /// Object name; empty for lists of all secrets.
    pub name: String,
    pub version: Option<String>,
    /// HTTP status answered; 0 when the connection was dropped.
    pub status: u16,
}

/// How an identity obtained a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantMethod {
    ClientSecret,
    ClientAssertion,
    ManagedIdentity,
}

/// One token issued by the token service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub identity: String,
    pub method: GrantMethod,
    pub scope: String,
}

/// Runtime-adjustable faults.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub throttle: Option<Throttle>,
    pub latency: Duration,
    pub error_rate: f64,
    pub drop_rate: f64,
    pub token_service_up: bool,
    pub challenge_resource: Option<String>,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub tenant: String,
    pub identities: Vec<IdentitySeed>,
    pub store: Mutex<store::Store>,
    pub signer: token::Signer,
    pub knobs: Mutex<Knobs>,
    pub windows: Mutex<faults::Windows>,
    pub accesses: Mutex<Vec<Access>>,
    pub grants: Mutex<Vec<TokenGrant>>,
    pub connections: Mutex<Vec<Connection>>,
    pub next_connection: std::sync::atomic::AtomicU64,
    pub identity_header: String,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not wedge the server.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A running fake Key Vault and token service; stops when dropped.
pub struct FakeKeyVault {
    shared: Arc<Shared>,
    https_addr: SocketAddr,
    http_addr: SocketAddr,
    ca_pem: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FakeKeyVault {
    /// Starts on ephemeral loopback ports.
    pub async fn start(opts: Options) -> anyhow::Result<FakeKeyVault> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        FakeKeyVault::start_on(any, any, opts).await
    }

    /// Starts with HTTPS (vault + token service) on `addr` and managed identity on `http_addr`.
    pub async fn start_on(
        addr: SocketAddr,
        http_addr: SocketAddr,
        opts: Options,
    ) -> anyhow::Result<FakeKeyVault> {
        let https = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen for HTTPS on {addr}: {e}"))?;
        let http = std::net::TcpListener::bind(http_addr).map_err(|e| {
            anyhow::anyhow!("cannot listen for HTTP (managed identity) on {http_addr}: {e}")
        })?;
        FakeKeyVault::start_with_listeners(https, http, opts).await
    }

    /// Starts on listeners the caller bound: how a test serves inside a network namespace of
    /// its own (e.g. managed identity on IMDS' real address, 169.254.169.254:80).
    pub async fn start_with_listeners(
        https: std::net::TcpListener,
        http: std::net::TcpListener,
        opts: Options,
    ) -> anyhow::Result<FakeKeyVault> {
        opts.seed.validate()?;
        check_rate("error_rate", opts.error_rate).map_err(anyhow::Error::msg)?;
        check_rate("drop_rate", opts.drop_rate).map_err(anyhow::Error::msg)?;
        let mut pki = pki::server_pki()?;
        if opts.http1_only {
            let mut tls = (*pki.tls).clone();
            tls.alpn_protocols = vec![b"http/1.1".to_vec()];
            pki.tls = Arc::new(tls);
        }
        let store = store::Store::from_seed(&opts.seed, now_unix())?;
        let header_bytes: [u8; 16] = rand::random();
        let shared = Arc::new(Shared {
            tenant: opts.seed.tenant.clone(),
            identities: opts.seed.identities.clone(),
            store: Mutex::new(store),
            signer: token::Signer::new(),
            knobs: Mutex::new(Knobs {
                throttle: opts.throttle,
                latency: opts.latency,
                error_rate: opts.error_rate,
                drop_rate: opts.drop_rate,
                token_service_up: true,
                challenge_resource: None,
            }),
            windows: Mutex::new(faults::Windows::default()),
            accesses: Mutex::new(Vec::new()),
            grants: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
            next_connection: Default::default(),
            identity_header: header_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        });
        https.set_nonblocking(true)?;
        http.set_nonblocking(true)?;
        let https = tokio::net::TcpListener::from_std(https)?;
        let http = tokio::net::TcpListener::from_std(http)?;
        let https_addr = https.local_addr()?;
        let http_addr = http.local_addr()?;
        let (shutdown, rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::serve_https(
                https,
                pki.tls.clone(),
                shared.clone(),
                rx.clone(),
            )),
            tokio::spawn(server::serve_http(http, shared.clone(), rx)),
        ];
        tracing::info!(%https_addr, %http_addr, "fake Key Vault listening");
        Ok(FakeKeyVault {
            shared,
            https_addr,
            http_addr,
            ca_pem: pki.ca_pem,
            shutdown,
            tasks,
        })
    }

    /// The HTTPS port: vault data plane for vault hosts, token service for any other host.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The plain-HTTP port of the managed-identity endpoints (IMDS and App Service style).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// PEM of the CA that issued the server certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `https://<vault>.vault.azure.net`, without port: clients resolve the host to [`Self::https_addr`].
    pub fn vault_url(&self, vault: &str) -> String {
        format!("https://{vault}.vault.azure.net")
    }

    /// `https://login.microsoftonline.com`, without port, like [`Self::vault_url`].
    pub fn authority_host(&self) -> String {
        "https://login.microsoftonline.com".to_string()
    }

    /// `https://login.test`: an authority host that is not Entra's, for clients that must reach
    /// the token service through a fixed-address map (which may never cover Entra's hosts).
    pub fn test_authority_host(&self) -> String {
        "https://login.test".to_string()
    }

    /// Makes every vault's 401 challenge name `resource` (e.g. `https://management.azure.com`)
    /// instead of its own, as a vault asking for a token of another resource would; `None`
    /// restores the real one.
    pub fn set_challenge_resource(&self, resource: Option<&str>) {
        lock(&self.shared.knobs).challenge_resource = resource.map(str::to_owned);
    }

    /// The tenant the token service answers for.
    pub fn tenant(&self) -> &str {
        &self.shared.tenant
    }

    /// The token endpoint URL for the seed's tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_host(),
            self.shared.tenant
        )
    }

    /// Value the App Service-style endpoint expects in `X-IDENTITY-HEADER`.
    pub fn identity_header(&self) -> &str {
        &self.shared.identity_header
    }

    /// What a pod of this vault is handed, written into `dir` (where it runs): the CA, the
    /// seed's federated token, the tenant, the test authority (`login.test`) and the
    /// managed-identity endpoint.
    pub fn pod_env(&self, dir: &Path) -> std::io::Result<PodEnv> {
        PodEnv::write(
            dir,
            self.ca_pem(),
            self.tenant(),
            &self.test_authority_host(),
            &format!("http://{}/msi/token", self.http_addr()),
            self.identity_header(),
        )
    }

    /// Every vault data-plane request so far, in order.
    pub fn accesses(&self) -> Vec<Access> {
        lock(&self.shared.accesses).clone()
    }

    /// Every token issued so far, in order.
    pub fn token_grants(&self) -> Vec<TokenGrant> {
        lock(&self.shared.grants).clone()
    }

    /// Every connection to the HTTPS port so far, in the order they were accepted.
    pub fn connections(&self) -> Vec<Connection> {
        lock(&self.shared.connections).clone()
    }

    /// Forgets recorded accesses, grants and connections (between phases of one test).
    /// Connections still open keep counting their requests into a forgotten entry.
    pub fn clear_records(&self) {
        lock(&self.shared.accesses).clear();
        lock(&self.shared.grants).clear();
        lock(&self.shared.connections).clear();
    }

    /// One line of round-trip facts about the records so far (connections, TLS handshakes,
    /// protocols, requests per connection, vault answers, tokens), e.g. for a benchmark.
    pub fn summary(&self) -> String {
        let conns = lock(&self.shared.connections);
        let accesses = lock(&self.shared.accesses);
        let grants = lock(&self.shared.grants);
        let is_vault = |c: &&Connection| {
            c.server_name
                .as_deref()
                .is_some_and(|n| server::vault_host(n).is_some())
        };
        let proto = |p: &str| {
            conns
                .iter()
                .filter(|c| c.protocol.as_deref() == Some(p))
                .count()
        };
        let status = |code: u16| accesses.iter().filter(|a| a.status == code).count();
        format!(
            "connections={} tls={} h2={} http1={} vault_connections={} vault_requests={} \
             vault_401={} vault_200={} token_connections={} token_requests={} tokens={} \
             max_requests_per_connection={} max_in_flight={}",
            conns.len(),
            conns.iter().filter(|c| c.tls).count(),
            proto("h2"),
            proto("http/1.1"),
            conns.iter().filter(is_vault).count(),
            accesses.len(),
            status(401),
            status(200),
            conns.iter().filter(|c| c.tls && !is_vault(c)).count(),
            conns
                .iter()
                .filter(|c| c.tls && !is_vault(c))
                .map(|c| c.requests)
                .sum::<u32>(),
            grants.len(),
            conns.iter().map(|c| c.requests).max().unwrap_or(0),
            conns.iter().map(|c| c.max_in_flight).max().unwrap_or(0),
        )
    }

    /// Takes the records so far and forgets them: for a runner that reports per run.
    pub fn take_records(&self) -> (Vec<Access>, Vec<TokenGrant>, Vec<Connection>) {
        (
            std::mem::take(&mut *lock(&self.shared.accesses)),
            std::mem::take(&mut *lock(&self.shared.grants)),
            std::mem::take(&mut *lock(&self.shared.connections)),
        )
    }

    /// Changes throttling; the current windows start afresh.
    pub fn set_throttle(&self, t: Option<Throttle>) {
        lock(&self.shared.knobs).throttle = t;
        lock(&self.shared.windows).reset();
    }

    pub fn set_latency(&self, d: Duration) {
        lock(&self.shared.knobs).latency = d;
    }

    /// Share of vault requests answered 500; clamped to 0..=1.
    pub fn set_error_rate(&self, r: f64) {
        lock(&self.shared.knobs).error_rate = r.clamp(0.0, 1.0);
    }

    /// Share of vault requests whose connection is dropped; clamped to 0..=1.
    pub fn set_drop_rate(&self, r: f64) {
        lock(&self.shared.knobs).drop_rate = r.clamp(0.0, 1.0);
    }

    /// Down: every token endpoint (Entra and managed identity) answers 503.
    pub fn set_token_service_up(&self, up: bool) {
        lock(&self.shared.knobs).token_service_up = up;
    }

    /// Writes a new latest version of a secret and returns its version id.
    pub fn upsert_secret(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        attrs: SecretAttributes,
    ) -> String {
        lock(&self.shared.store).upsert_secret(vault, name, value, attrs, now_unix())
    }
}

impl Drop for FakeKeyVault {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}
