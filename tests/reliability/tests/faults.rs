//! Faults of the vault and the token service while `akv-env` resolves: the real binary against
//! the local Key Vault, each fault switched on through the fake's knobs. Transient faults are
//! ridden out (the warn-level retry line proves the fault was hit); lasting ones fail closed by
//! the deadline with a message naming the variable, the object and the cause, and the program
//! never starts.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use akv_env_reliability::{
    bins,
    pod::{Identity, Vault},
};
use fake_keyvault::{Options, SecretAttributes};

async fn vault(options: Options) -> Vault {
    Vault::start(bins::injector().unwrap(), options)
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sh -c` that records that it ran (a marker file) and prints `$DB`.
fn marking_program(v: &Vault) -> (Vec<String>, PathBuf) {
    let marker = v.path().join("program-ran");
    let script = format!("touch '{}'; printf '%s' \"$DB\"", marker.display());
    (vec!["sh".into(), "-c".into(), script], marker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_service_down_then_back_up_within_the_deadline_succeeds() {
    let v = vault(Options::default()).await;
    v.kv.set_token_service_up(false);
    let (program, marker) = marking_program(&v);
    for identity in Identity::ROTATION {
        let _ = std::fs::remove_file(&marker);
        v.kv.set_token_service_up(false);
        let mut c = v.command(identity, "60s", &program);
        c.env("DB", "db-password@azurekeyvault");
        let child = c.output();
        let kv = &v.kv;
        let back_up = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            assert!(
                !marker.exists(),
                "{identity:?}: started with the token service down"
            );
            kv.set_token_service_up(true);
        };
        let (out, ()) = tokio::join!(child, back_up);
        let out = out.unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{identity:?}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hunter2",
            "{identity:?}"
        );
        assert!(
            err.contains("attempt failed; retrying") && err.contains("authentication failed"),
            "{identity:?}: the outage was never seen, so this proved nothing:\n{err}"
        );
    }
}

/// Twenty objects so that a 50 % fault rate is all but certain to hit some of them.
async fn twenty_secrets(v: &Vault) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for i in 0..20 {
        let value = format!("value-{i}");
        v.kv.upsert_secret(
            "myvault",
            &format!("s{i}"),
            &value,
            SecretAttributes::default(),
        );
        vars.push((format!("S{i}"), format!("s{i}@azurekeyvault")));
    }
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_500s_and_connection_resets_are_retried_until_success() {
    // (fault, knob, the status the fake records for a faulted request)
    type Knob = fn(&Vault);
    let cases: [(&str, Knob, u16); 2] = [
        ("500 InternalServerError", |v| v.kv.set_error_rate(0.5), 500),
        ("connection reset", |v| v.kv.set_drop_rate(0.5), 0),
    ];
    for (fault, switch_on, status) in cases {
        let v = vault(Options::default()).await;
        let vars = twenty_secrets(&v).await;
        switch_on(&v);
        let mut c = v.command(
            Identity::ClientSecret,
            "60s",
            ["sh", "-c", "env | grep -c '^S[0-9]*=value-'"],
        );
        c.envs(vars.iter().map(|(k, val)| (k, val)));
        let out = c.output().await.unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{fault}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "20", "{fault}");
        let accesses = v.kv.accesses();
        let faulted = accesses.iter().filter(|a| a.status == status).count();
        assert!(faulted > 0, "{fault}: never injected: {accesses:?}");
        for i in 0..20 {
            let ok = accesses
                .iter()
                .filter(|a| a.name == format!("s{i}") && a.status == 200)
                .count();
            assert_eq!(ok, 1, "{fault}: s{i} read {ok} times");
        }
        assert!(err.contains("attempt failed; retrying"), "{fault}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_vault_fails_closed_by_the_deadline() {
    let v = vault(Options {
        latency: Duration::from_secs(600),
        ..Default::default()
    })
    .await;
    let (program, marker) = marking_program(&v);
    let mut c = v.command(Identity::ClientSecret, "3s", &program);
    c.env("DB", "db-password@azurekeyvault");
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("akv-env outlived its deadline by far")
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!marker.exists(), "the program ran");
    assert!(out.stdout.is_empty());
    let line = err
        .lines()
        .find(|l| l.starts_with("akv-env: DB: "))
        .unwrap_or_else(|| panic!("no failure line for DB:\n{err}"));
    assert!(
        line.starts_with("akv-env: DB: secret db-password in vault myvault: unreachable (")
            && line.contains("no answer within"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_host_that_does_not_resolve_is_reported_unreachable() {
    let v = vault(Options::default()).await;
    let (program, marker) = marking_program(&v);
    // `.invalid` never resolves (RFC 6761); --resolve maps only the authority, and the
    // operator allowed the suffix (else the vault would be refused before any lookup).
    let mut c = v.command_with_flags(
        Identity::ClientSecret,
        "3s",
        &format!("login.test={}", v.kv.https_addr()),
        &["--vault-host-suffix=vault.azure.invalid"],
        &program,
    );
    c.env(
        "DB",
        "db-password@azurekeyvault?vault=https://nowhere.vault.azure.invalid",
    );
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("akv-env outlived its deadline by far")
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!marker.exists(), "the program ran");
    let line = err
        .lines()
        .find(|l| l.starts_with("akv-env: DB: "))
        .unwrap_or_else(|| panic!("no failure line for DB:\n{err}"));
    assert!(
        line.starts_with(
            "akv-env: DB: secret db-password in vault https://nowhere.vault.azure.invalid: unreachable ("
        ),
        "{line}"
    );
    assert!(v.kv.accesses().is_empty(), "nothing reached the fake");
}
