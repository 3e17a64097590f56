//! Egress through an HTTP CONNECT proxy, as AKS' HTTP proxy feature sets it up: `HTTPS_PROXY`
//! and `NO_PROXY` in the pod's environment, Key Vault and Entra ID reachable only through the
//! proxy. Here the machine has no DNS and no `--resolve` is given: `myvault.vault.azure.net`
//! and `login.microsoftonline.com` reach the fake Key Vault only through the test proxy's own
//! host map (akv_test_support::proxy).

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::time::Duration;

use akv_test_support::leak::find_in_bytes;
use akv_test_support::proxy::{Behaviour, Config, TestProxy};
use common::*;

const VAULT: &str = "myvault.vault.azure.net";
const ENTRA: &str = "login.microsoftonline.com";
/// What must never cross a proxy in clear, nor reach stderr: the value, the service
/// principal's secret.
const SECRETS: &[&str] = &["hunter2", "s3cret-a"];
/// Markers of a token in clear: a JWT's header, an `Authorization` header, a token answer.
const TOKEN_MARKERS: &[&[u8]] = &[b"eyJ", b"Bearer", b"access_token", b"client_secret"];

fn proxy(h: &Harness, behaviour: Behaviour, credentials: Option<(&str, &str)>) -> TestProxy {
    let kv = h.kv.https_addr();
    TestProxy::start(Config {
        hosts: HashMap::from([(VAULT.to_owned(), kv), (ENTRA.to_owned(), kv)]),
        behaviour,
        credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
        tls: None,
    })
}

/// The injector as a pod behind the proxy runs it: the CA flag only (no `--resolve`, no
/// `--authority-host`: Entra's real host), a service principal, `DB_PASSWORD` a placeholder.
fn behind_proxy(h: &Harness, env: &[(&str, &str)], timeout: &str) -> tokio::process::Command {
    behind_proxy_with(h, &[], env, timeout)
}

/// [`behind_proxy`] with more flags.
fn behind_proxy_with(
    h: &Harness,
    extra: &[String],
    env: &[(&str, &str)],
    timeout: &str,
) -> tokio::process::Command {
    let mut flags = vec![format!("--ca-file={}", h.ca_file.display())];
    flags.extend_from_slice(extra);
    let mut c = h.cmd_with(Ident::ClientSecretA, flags, print_var("DB_PASSWORD"));
    c.env("DB_PASSWORD", "db-password@azurekeyvault")
        .env("AKV_ENV_TIMEOUT", timeout)
        .env("AKV_ENV_LOG", "trace");
    for (name, value) in env {
        c.env(name, value);
    }
    c
}

fn assert_no_leak(place: &str, bytes: &[u8], also: &[&str]) {
    let mut values = SECRETS.to_vec();
    values.extend_from_slice(also);
    let leaks = find_in_bytes(place, bytes, &values);
    assert!(leaks.is_empty(), "{place}: {leaks:?}");
}

fn assert_no_token_in_clear(place: &str, bytes: &[u8]) {
    for marker in TOKEN_MARKERS {
        assert!(
            !akv_test_support::leak::contains(bytes, marker),
            "{place} holds {:?} in clear",
            String::from_utf8_lossy(marker)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_resolve_through_a_connect_proxy_that_sees_only_host_names() {
    let h = Harness::start().await;
    // Upper case, as AKS writes it; a lower-case variable pointing nowhere loses (Go's order).
    let p = proxy(&h, Behaviour::Relay, None);
    let out = run(behind_proxy(
        &h,
        &[
            ("HTTPS_PROXY", &p.url()),
            ("https_proxy", "http://127.0.0.1:9"),
        ],
        "20s",
    ))
    .await
    .0;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "hunter2");

    let requests = p.requests();
    assert!(!requests.is_empty(), "nothing went through the proxy");
    for r in &requests {
        assert_eq!(r.method, "CONNECT", "{}", p.log());
        assert!(
            [format!("{VAULT}:443"), format!("{ENTRA}:443")].contains(&r.target),
            "{}",
            p.log()
        );
    }
    for host in [VAULT, ENTRA] {
        assert!(p.log().contains(host), "{host} not in {}", p.log());
    }
    // Key Vault and Entra answered (the value came back) and only TLS crossed the proxy.
    assert!(!h.kv.token_grants().is_empty());
    let relayed = p.relayed();
    assert!(relayed.len() > 1000, "{} bytes relayed", relayed.len());
    for (place, bytes) in [
        ("relayed bytes", relayed.as_slice()),
        ("request heads", &p.heads()),
        ("proxy log", p.log().as_bytes()),
    ] {
        assert_no_leak(place, bytes, &[]);
        assert_no_token_in_clear(place, bytes);
    }
    assert_no_leak("stderr at trace level", err.as_bytes(), &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_proxy_is_spoken_to_over_tls_trusted_through_the_ca_flags() {
    let h = Harness::start().await;
    // The proxy's certificate comes from a CA of its own, as a corporate proxy's would.
    let proxy_ca = akv_test_support::pki::TestCa::new("corporate proxy CA");
    let kv = h.kv.https_addr();
    let p = TestProxy::start(Config {
        hosts: HashMap::from([(VAULT.to_owned(), kv), (ENTRA.to_owned(), kv)]),
        credentials: Some(("akv".into(), "pr0xy-pw".into())),
        tls: Some(proxy_ca.server_config_for(&["localhost"])),
        ..Default::default()
    });
    let url = p.url_with("akv", "pr0xy-pw");
    assert!(url.starts_with("https://akv:pr0xy-pw@localhost:"));
    let proxy_ca_file = h.dir.path().join("proxy-ca.pem");
    std::fs::write(&proxy_ca_file, proxy_ca.pem()).unwrap();

    // Without the proxy's CA the TLS to the proxy fails, and the error says so.
    let (out, _) = run(behind_proxy(&h, &[("HTTPS_PROXY", &url)], "5s")).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("invalid peer certificate") && err.contains("through the proxy https://"),
        "{err}"
    );
    // Refused at once, with what to do: no retry makes a certificate trusted.
    assert!(
        err.contains("add the CA that issued it") && !err.contains("gave up at the deadline"),
        "{err}"
    );
    assert!(p.requests().is_empty(), "{}", p.log());

    // With it (a second --ca-file, as a cluster CA bundle adds one), values come through.
    let ca_flag = format!("--ca-file={}", proxy_ca_file.display());
    let (out, _) = run(behind_proxy_with(
        &h,
        &[ca_flag],
        &[("HTTPS_PROXY", &url)],
        "20s",
    ))
    .await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "hunter2");
    let requests = p.requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.method == "CONNECT" && r.status == 200 && r.with_credentials),
        "{}",
        p.log()
    );
    assert_no_leak("stderr at trace level", err.as_bytes(), &["pr0xy-pw"]);
    assert_no_leak("relayed bytes", &p.relayed(), &[]);
    assert_no_token_in_clear("relayed bytes", &p.relayed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_work_and_never_show() {
    let h = Harness::start().await;
    // A password with characters that must be percent-encoded in a URL.
    let password = "pr0xy-p@ss:w0rd";
    let p = proxy(&h, Behaviour::Relay, Some(("akv", password)));
    let url = p.url_with("akv", "pr0xy-p%40ss%3Aw0rd");
    let (out, _) = run(behind_proxy(&h, &[("https_proxy", &url)], "20s")).await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "hunter2");
    let requests = p.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.with_credentials && r.status == 200),
        "{requests:?}"
    );
    assert_no_leak(
        "stderr at trace level",
        err.as_bytes(),
        &[password, "pr0xy-p%40ss%3Aw0rd"],
    );
    assert_no_leak("relayed bytes", &p.relayed(), &[password]);

    // A wrong password: 407 until the deadline; the message names the proxy, not the password.
    let (out, took) = run(behind_proxy(
        &h,
        &[("HTTPS_PROXY", &p.url_with("akv", "wr0ng-pr0xy-pass"))],
        "3s",
    ))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "the program must not start");
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} with a 3 s deadline"
    );
    let line = failure_line(&err);
    eprintln!("wrong password ({took:?}): {line}");
    assert!(
        line.contains(&format!("through the proxy {} (from HTTPS_PROXY)", p.url()))
            && line.contains("proxy authorization required"),
        "{line}"
    );
    assert_no_leak("stderr", err.as_bytes(), &["wr0ng-pr0xy-pass", password]);
}

fn failure_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.starts_with("akv-env: DB_PASSWORD:"))
        .unwrap_or_else(|| panic!("no line names the variable: {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_go_direct() {
    let h = Harness::start().await;
    let p = proxy(&h, Behaviour::Relay, None);
    // The list AKS writes, with the vault's domain added: the vault is reached directly (here
    // through --resolve, a private endpoint's fixed address), Entra through the proxy.
    let no_proxy = "localhost,127.0.0.1,.svc,.cluster.local,10.0.0.0/16,169.254.169.254,\
                    konnectivity,mycluster-dns.hcp.westeurope.azmk8s.io,.vault.azure.net";
    let c = behind_proxy_with(
        &h,
        &[format!("--resolve={VAULT}={}", h.kv.https_addr())],
        &[("HTTPS_PROXY", &p.url()), ("no_proxy", no_proxy)],
        "20s",
    );
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hunter2");
    let log = p.log();
    assert!(log.contains(&format!("CONNECT {ENTRA}:443 200")), "{log}");
    assert!(
        !log.contains(VAULT),
        "the vault went through the proxy: {log}"
    );
    let reads = h.kv.accesses().iter().filter(|a| a.status == 200).count();
    assert_eq!(reads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_fails_within_the_deadline_and_is_named_without_its_password() {
    let h = Harness::start().await;
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let refusing = proxy(&h, Behaviour::Refuse, None);
    let hanging = proxy(&h, Behaviour::Hang, None);
    let cases = [
        ("connection refused", format!("http://{closed_addr}")),
        ("403 to CONNECT", refusing.url()),
        ("accepts and never answers", hanging.url()),
    ];
    for (name, address) in cases {
        let with_password = address.replace("http://", "http://akv:d34d-pr0xy-pass@");
        let (out, took) = run(behind_proxy(&h, &[("HTTPS_PROXY", &with_password)], "3s")).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: the program must not start");
        assert!(
            took < Duration::from_secs(6),
            "{name}: took {took:?} with a 3 s deadline"
        );
        let line = failure_line(&err);
        eprintln!("{name} ({took:?}): {line}");
        assert!(
            line.contains(&format!("through the proxy {address} (from HTTPS_PROXY)")),
            "{name}: {line}"
        );
        assert_no_leak(name, err.as_bytes(), &["d34d-pr0xy-pass"]);
    }
    assert!(h.kv.accesses().is_empty() && h.kv.token_grants().is_empty());
    assert!(refusing.log().contains(" 403"), "{}", refusing.log());
    assert!(!hanging.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_proxy_setting_stops_before_any_connection_without_quoting_it() {
    let h = Harness::start().await;
    let (out, _) = run(behind_proxy(
        &h,
        &[("HTTPS_PROXY", "socks5://akv:s0cks-pass@127.0.0.1:1080")],
        "20s",
    ))
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("HTTPS_PROXY: scheme \"socks5\" is not supported"),
        "{err}"
    );
    assert_no_leak("stderr", err.as_bytes(), &["s0cks-pass"]);
    assert!(h.kv.accesses().is_empty() && h.kv.token_grants().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_version_check_behind_a_proxy_names_it() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let h = Harness::start().await;
    let p = proxy(&h, Behaviour::Relay, None);
    let flags = vec![
        format!("--ca-file={}", h.ca_file.display()),
        "--restart-on-change=1s".to_owned(),
        "--log=info".to_owned(),
    ];
    let mut c = h.cmd_with(
        Ident::ClientSecretA,
        flags,
        ["sh", "-c", "echo started; exec sleep 60"],
    );
    c.env("DB_PASSWORD", "db-password@azurekeyvault")
        .env("HTTPS_PROXY", p.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    assert_eq!(out.next_line().await.unwrap().as_deref(), Some("started"));

    // The vault drops every connection now: the checks fail as "unreachable".
    h.kv.set_drop_rate(1.0);
    let failed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = err.next_line().await.unwrap() {
            if line.contains("could not check for a new version") {
                return line;
            }
        }
        panic!("stderr ended without a failed check");
    })
    .await
    .expect("a failed check is reported");
    assert!(
        failed.contains("through the proxy http://127.0.0.1")
            && failed.contains("allows CONNECT to myvault.vault.azure.net:443"),
        "{failed}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "restarted on a failed check"
    );
    child.kill().await.unwrap();
}
