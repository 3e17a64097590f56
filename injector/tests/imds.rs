//! Managed identity through IMDS at its real address, 169.254.169.254:80, which the Azure SDK
//! hard-codes (no env var moves it). As on an AKS node: the injector runs in a network where
//! that address answers, with no `IDENTITY_ENDPOINT` (App Service) and no other credential.
//!
//! The network is a namespace of the test's own (`unshare(CLONE_NEWNET)` on one thread, whose
//! children inherit it) with 169.254.169.254 on its loopback; the fake Key Vault serves from
//! listeners bound in there. Needs root (CI runs as root, like the end-to-end tests) and `ip`
//! from iproute2 (scripts/setup.sh installs it).

mod common;
mod netns;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};

use akv_test_support::proxy::TestProxy;
use common::{BIN, SEED};
use fake_keyvault::{FakeKeyVault, GrantMethod, Options, Seed};
use netns::NetNamespace;

const IMDS: &str = "169.254.169.254:80";

/// The test's network namespace with IMDS' address on its loopback, and one more listener
/// there for a test proxy.
struct Namespace {
    net: NetNamespace,
    spare: TcpListener,
}

impl Namespace {
    /// Returns the namespace and listeners bound inside it: (vault HTTPS on 127.0.0.1, IMDS).
    fn start() -> (Namespace, TcpListener, TcpListener) {
        let (net, [https, imds, spare]) = NetNamespace::start(
            &["169.254.169.254/32"],
            ["127.0.0.1:0", IMDS, "127.0.0.1:0"],
        );
        (Namespace { net, spare }, https, imds)
    }

    /// Runs `command` inside the namespace; blocks until it exits.
    fn run(&self, command: Command) -> Output {
        self.net.run(command)
    }
}

/// The fake Key Vault serving from listeners bound in a namespace, and the injector pointed at
/// it with nothing but its CA, its address and a placeholder: no identity variables at all.
struct Vault {
    kv: FakeKeyVault,
    addr: SocketAddr,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Vault {
    async fn start(https: TcpListener, managed_identity: TcpListener) -> Vault {
        let addr = https.local_addr().unwrap();
        let kv = FakeKeyVault::start_with_listeners(
            https,
            managed_identity,
            Options {
                seed: Seed::from_yaml(SEED).unwrap(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, kv.ca_pem()).unwrap();
        Vault {
            kv,
            addr,
            ca_file,
            _dir: dir,
        }
    }

    /// `akv-env --auth=managed-identity ... -- sh -c SCRIPT` with `DB_PASSWORD` a placeholder:
    /// managed identity chosen explicitly, as the webhook does for a pod annotated
    /// `akv-env.io/auth: managed-identity` where that is allowed.
    fn injector(&self, timeout: &str, script: &str) -> Command {
        let mut injector = injector(self.addr, &self.ca_file, timeout);
        injector.arg("--auth=managed-identity");
        injector.args(["--", "sh", "-c", script]);
        injector
    }
}

/// `akv-env` with the vault mapped to `addr`, its CA trusted and `DB_PASSWORD` a placeholder;
/// no identity variables. The caller adds flags, then `--` and the program.
fn injector(addr: SocketAddr, ca_file: &std::path::Path, timeout: &str) -> Command {
    let mut injector = Command::new(BIN);
    injector
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AKV_ENV_TIMEOUT", timeout)
        .env("DB_PASSWORD", "db-password@azurekeyvault?vault=myvault")
        .arg(format!("--ca-file={}", ca_file.display()))
        .arg(format!("--resolve=myvault.vault.azure.net={addr}"));
    injector
}

#[test]
fn without_an_identity_it_exits_before_any_connection_and_says_how_to_give_one() {
    // A node where IMDS answers (a listener at 169.254.169.254:80) and the vault is reachable,
    // but the pod was given no identity and did not choose managed identity: the injector must
    // not fall back to the node's identity, and must not even connect anywhere.
    let (namespace, https, imds) = Namespace::start();
    https.set_nonblocking(true).unwrap();
    imds.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, "not read: no connection is made").unwrap();
    let mut command = injector(https.local_addr().unwrap(), &ca_file, "20s");
    command.args(["--", "sh", "-c", "echo started"]);
    let out = namespace.run(command);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "the program must not start");
    for fragment in [
        "no identity to read Key Vault with",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_SECRET",
        "azure.workload.identity/use",
        "akv-env.io/auth: managed-identity",
    ] {
        assert!(stderr.contains(fragment), "{fragment:?} missing: {stderr}");
    }
    // A connection attempt would sit in the listen backlog, ready to be accepted.
    for (name, listener) in [("IMDS", &imds), ("the vault", &https)] {
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{name} saw a connection: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_reads_through_imds_at_its_real_address() {
    let (namespace, https, imds) = Namespace::start();
    let vault = Vault::start(https, imds).await;
    let kv = &vault.kv;

    // System-assigned (no client id), then user-assigned (AZURE_CLIENT_ID picks it).
    for (client_id, identity) in [(None, "system"), (Some("app-c"), "app-c")] {
        kv.clear_records();
        let mut injector = vault.injector("20s", "printf '%s' \"$DB_PASSWORD\"");
        if let Some(id) = client_id {
            injector.env("AZURE_CLIENT_ID", id);
        }
        let out = tokio::task::block_in_place(|| namespace.run(injector));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{identity}: {}: {stderr}", out.status);
        assert_eq!(out.stdout, b"hunter2", "{identity}: {stderr}");

        let grants = kv.token_grants();
        assert!(!grants.is_empty(), "{identity}: no token was issued");
        for grant in &grants {
            assert_eq!(
                (grant.identity.as_str(), grant.method),
                (identity, GrantMethod::ManagedIdentity),
                "{grants:?}"
            );
        }
        let reads: Vec<_> = kv
            .accesses()
            .into_iter()
            .filter(|a| a.status == 200)
            .collect();
        assert_eq!(reads.len(), 1, "{identity}: {reads:?}");
        assert_eq!(reads[0].identity.as_deref(), Some(identity));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_imds_managed_identity_fails_clearly_within_the_deadline() {
    // A namespace where nothing listens at 169.254.169.254:80: a pod on a cluster outside
    // Azure that was given no identity.
    let (namespace, https, imds) = Namespace::start();
    drop(imds);
    let vault = Vault::start(https, TcpListener::bind("127.0.0.1:0").unwrap()).await;
    let injector = vault.injector("3s", "echo started");
    let out = tokio::task::block_in_place(|| namespace.run(injector));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "the program must not start");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("akv-env: DB_PASSWORD:"))
        .unwrap_or_else(|| panic!("no line names the variable: {stderr}"));
    // Blamed on the identity (the SDK was still retrying IMDS), not on the vault.
    assert!(
        line.contains("myvault")
            && line.contains("authentication failed")
            && line.contains("identity system (managed-identity) got no access token")
            && line.contains("169.254.169.254"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_is_never_reached_through_a_proxy() {
    // AKS' HTTP proxy feature sets both variables; a NO_PROXY that forgets 169.254.169.254 must
    // still not send IMDS' answer (a token, over plain HTTP) through the proxy.
    let (namespace, https, imds) = Namespace::start();
    let proxy = TestProxy::start_on(namespace.spare.try_clone().unwrap(), Default::default());
    let vault = Vault::start(https, imds).await;
    let mut injector = vault.injector("20s", "printf '%s' \"$DB_PASSWORD\"");
    injector
        .env("HTTP_PROXY", proxy.url())
        .env("HTTPS_PROXY", proxy.url())
        // The vault is a private endpoint here (--resolve); everything else would be proxied.
        .env("NO_PROXY", "myvault.vault.azure.net");
    let out = tokio::task::block_in_place(|| namespace.run(injector));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(out.stdout, b"hunter2", "{stderr}");
    let grants = vault.kv.token_grants();
    assert!(
        !grants.is_empty()
            && grants
                .iter()
                .all(|g| g.method == GrantMethod::ManagedIdentity),
        "{grants:?}"
    );
    assert!(
        proxy.requests().is_empty(),
        "through the proxy: {}",
        proxy.log()
    );
}
