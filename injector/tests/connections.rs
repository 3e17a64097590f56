//! How the injector talks to Key Vault and the token service: HTTP/2 with one connection per
//! host when offered, HTTP/1.1 otherwise, and the token requested alongside the first vault
//! request. Counted from the fake's connection log and access record.

mod common;

use common::*;
use fake_keyvault::{Connection, Options, SecretAttributes, Seed};
use std::time::Duration;

const SECRETS: usize = 40;

/// A rig whose vault holds `SECRETS` more secrets, and a command reading all of them.
async fn rig(http1_only: bool) -> (Harness, tokio::process::Command) {
    rig_of(http1_only, SECRETS).await
}

/// A rig whose vault holds `secrets` more secrets, and a command reading all of them.
async fn rig_of(http1_only: bool, secrets: usize) -> (Harness, tokio::process::Command) {
    let h = Harness::start_with(Options {
        seed: Seed::from_yaml(SEED).unwrap(),
        http1_only,
        ..Default::default()
    })
    .await;
    for i in 0..secrets {
        h.kv.upsert_secret(
            "myvault",
            &format!("w{i}"),
            &format!("wave-{i}"),
            SecretAttributes::default(),
        );
    }
    h.kv.clear_records();
    let mut c = h.cmd(
        Ident::ClientSecretA,
        ["sh", "-c", "env | grep -c '^W[0-9]*=wave-'"],
    );
    for i in 0..secrets {
        c.env(format!("W{i}"), format!("w{i}@azurekeyvault"));
    }
    (h, c)
}

fn to(conns: &[Connection], host: &str) -> Vec<Connection> {
    conns
        .iter()
        .filter(|c| c.server_name.as_deref() == Some(host))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_of_secrets_shares_one_http2_connection_per_host() {
    let (h, c) = rig(false).await;
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), SECRETS.to_string());
    let conns = h.kv.connections();
    let vault = to(&conns, "myvault.vault.azure.net");
    let login = to(&conns, "login.test");
    assert_eq!(vault.len(), 1, "one connection to the vault: {conns:?}");
    assert_eq!(
        login.len(),
        1,
        "one connection to the token service: {conns:?}"
    );
    assert_eq!(conns.len(), 2, "no other connection: {conns:?}");
    for c in &conns {
        assert!(c.tls, "{c:?}");
        assert_eq!(c.protocol.as_deref(), Some("h2"), "{c:?}");
    }
    // The challenge, then every secret: all on the one connection.
    let accesses = h.kv.accesses();
    assert_eq!(vault[0].requests as usize, accesses.len(), "{accesses:?}");
    assert_eq!(accesses.iter().filter(|a| a.status == 401).count(), 1);
    assert_eq!(accesses.iter().filter(|a| a.status == 200).count(), SECRETS);
    assert_eq!(h.kv.token_grants().len(), 1, "{:?}", h.kv.token_grants());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_h2_on_offer_the_injector_speaks_http1() {
    let (h, c) = rig(true).await;
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), SECRETS.to_string());
    let conns = h.kv.connections();
    assert!(!conns.is_empty());
    for c in &conns {
        assert!(c.tls, "{c:?}");
        assert_eq!(c.protocol.as_deref(), Some("http/1.1"), "{c:?}");
    }
    // HTTP/1.1 carries one request at a time: the wave needs more than one connection.
    assert!(to(&conns, "myvault.vault.azure.net").len() > 1, "{conns:?}");
    let ok = h.kv.accesses().iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, SECRETS);
}

/// The token is requested before the vault's challenge is answered: with every vault answer
/// held back, the token service has issued the token while the vault has answered nothing.
/// (Waiting for the challenge, the token request could only follow the vault's first answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_requested_alongside_the_first_vault_request() {
    let h = Harness::start().await;
    h.kv.set_latency(Duration::from_secs(2));
    let mut c = h.cmd(Ident::ClientSecretA, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault");
    let child = tokio::spawn(run(c));
    let seen = loop {
        let grants = h.kv.token_grants();
        let accesses = h.kv.accesses();
        if !grants.is_empty() || !accesses.is_empty() || child.is_finished() {
            break (grants, accesses);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (out, _) = child.await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hunter2");
    let (grants, accesses) = seen;
    assert_eq!(grants.len(), 1, "token first: {grants:?} {accesses:?}");
    assert_eq!(grants[0].scope, "https://vault.azure.net/.default");
    assert!(
        accesses.is_empty(),
        "the vault answered first: {accesses:?}"
    );
    // One token in all: the prefetched one served the challenge.
    assert_eq!(h.kv.token_grants().len(), 1, "{:?}", h.kv.token_grants());
}

/// More objects than HTTP/1.1's bound of 64 connections.
const WAVE: usize = 100;

/// Over HTTP/2 every object of a wave goes out on the one connection before any answer comes
/// back: with each vault answer held back, the vault sees all of them in flight at once (a
/// bound of 64, as over HTTP/1.1, would cost the rest another round trip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_a_wave_of_more_than_64_objects_is_in_flight_at_once() {
    let (h, c) = rig_of(false, WAVE).await;
    h.kv.set_latency(Duration::from_millis(500));
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), WAVE.to_string());
    let vault = to(&h.kv.connections(), "myvault.vault.azure.net");
    assert_eq!(vault.len(), 1, "{vault:?}");
    assert_eq!(vault[0].protocol.as_deref(), Some("h2"), "{vault:?}");
    assert_eq!(vault[0].max_in_flight as usize, WAVE, "{vault:?}");
}

/// Over HTTP/1.1, where each request in flight holds a connection (and its handshakes), a wave
/// stays bounded: at most 64 connections to the vault however many objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_a_wave_holds_at_most_64_connections() {
    let (h, c) = rig_of(true, WAVE).await;
    h.kv.set_latency(Duration::from_millis(200));
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), WAVE.to_string());
    let vault = to(&h.kv.connections(), "myvault.vault.azure.net");
    assert!(
        vault.len() > 1 && vault.len() <= 64,
        "{} connections",
        vault.len()
    );
    let ok = h.kv.accesses().iter().filter(|a| a.status == 200).count();
    assert_eq!(ok, WAVE);
}
