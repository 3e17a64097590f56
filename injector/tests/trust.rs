//! Where the pod's token may go: vault host policy, Managed HSM, the challenge's resource, the
//! authority, and trust settings that arrive through the environment (which ConfigMaps feed).

mod common;

use common::{Harness, Ident, print_var, run, stderr, stdout};
use fake_keyvault::{Options, Seed};

/// The common seed plus a Managed HSM `myhsm` holding keys.
const HSM_SEED: &str = r#"
  myhsm:
    access:
      app-a: ["*"]
    keys:
      hsm-rsa: { kty: RSA }
      hsm-ec: { kty: EC }
"#;

async fn harness_with_hsm() -> Harness {
    Harness::start_with(Options {
        seed: Seed::from_yaml(&format!("{}{HSM_SEED}", common::SEED)).expect("seed parses"),
        ..Default::default()
    })
    .await
}

/// The harness' flags with more fixed addresses and extra flags.
fn flags_with(h: &Harness, hosts: &[&str], extra: &[&str]) -> Vec<String> {
    let a = h.kv.https_addr();
    let mut map = h.resolve_map();
    for host in hosts {
        map.push_str(&format!(",{host}={a}"));
    }
    let mut flags: Vec<String> = h
        .flags()
        .into_iter()
        .filter(|f| !f.starts_with("--resolve="))
        .collect();
    flags.push(format!("--resolve={map}"));
    flags.extend(extra.iter().map(|s| s.to_string()));
    flags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaults_outside_key_vault_domains_are_refused_before_any_connection() {
    let h = Harness::start().await;
    // (var, placeholder, fragment of its line)
    let cases = [
        (
            "RIG",
            "db-password@azurekeyvault?vault=https://myvault.vault.test",
            "https://myvault.vault.test is not a Key Vault or Managed HSM host",
        ),
        (
            "PORT",
            "db-password@azurekeyvault?vault=https://myvault.vault.azure.net:8443",
            "port 443 only",
        ),
        (
            "HSMSECRET",
            "db-password@azurekeyvault?vault=https://myhsm.managedhsm.azure.net",
            "holds keys only",
        ),
    ];
    let flags = flags_with(
        &h,
        &["myvault.vault.test", "myhsm.managedhsm.azure.net"],
        &[],
    );
    let mut c = h.cmd_with(Ident::ClientSecretA, flags, ["echo", "started"]);
    for (var, value, _) in cases {
        c.env(var, value);
    }
    let (out, _) = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(stdout(&out).is_empty(), "the program must not run");
    for (var, _, fragment) in cases {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("akv-env: {var}: ")))
            .unwrap_or_else(|| panic!("no line for {var}: {err}"));
        assert!(line.contains(fragment), "{var}: {line}");
    }
    assert!(h.kv.accesses().is_empty(), "{:?}", h.kv.accesses());
    assert!(h.kv.token_grants().is_empty(), "{:?}", h.kv.token_grants());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_added_suffix_is_a_vault_domain() {
    let h = Harness::start().await;
    let flags = flags_with(
        &h,
        &["myvault.vault.test"],
        &["--vault-host-suffix=vault.test"],
    );
    let mut c = h.cmd_with(Ident::ClientSecretA, flags, print_var("DB"));
    c.env(
        "DB",
        "db-password@azurekeyvault?vault=https://myvault.vault.test",
    );
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hunter2");
    let grants = h.kv.token_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].scope, "https://vault.test/.default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_asking_for_a_token_of_another_resource_gets_none() {
    let h = Harness::start().await;
    // ARM fails the SDK's challenge check (the vault's host does not end with it); azure.net
    // passes it (myvault.vault.azure.net ends with .azure.net) and is stopped by ours.
    for (resource, fragment) in [
        (
            "https://management.azure.com",
            "doesn't match the requested domain",
        ),
        (
            "https://azure.net",
            "refused to request a token for \"https://azure.net/.default\"",
        ),
    ] {
        h.kv.clear_records();
        h.kv.set_challenge_resource(Some(resource));
        for ident in [Ident::ClientSecretA, Ident::WorkloadB] {
            let mut c = h.cmd(ident, ["echo", "started"]);
            c.env("DB", "db-password@azurekeyvault");
            let (out, took) = run(c).await;
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{resource} {ident:?}: {err}");
            assert!(stdout(&out).is_empty(), "the program must not run");
            assert!(
                err.contains("akv-env: DB: secret db-password in vault myvault: rejected")
                    && err.contains(fragment),
                "{resource} {ident:?}: {err}"
            );
            // Not retried until the deadline (20 s): asking again cannot help.
            assert!(took.as_secs() < 10, "{resource} {ident:?}: took {took:?}");
        }
        // The only token ever requested is Key Vault's own, started alongside the first
        // request (the domain says which resource a real challenge names); it stays unused.
        assert!(
            h.kv.token_grants()
                .iter()
                .all(|g| g.scope == "https://vault.azure.net/.default"),
            "{resource}: a token of another resource was issued: {:?}",
            h.kv.token_grants()
        );
        // The vault saw only the unauthenticated first request of each run.
        assert!(
            h.kv.accesses().iter().all(|a| a.identity.is_none()),
            "{:?}",
            h.kv.accesses()
        );
    }
    h.kv.set_challenge_resource(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_hsm_keys_are_read_as_public_key_pem() {
    let h = harness_with_hsm().await;
    let flags = flags_with(&h, &["myhsm.managedhsm.azure.net"], &[]);
    let script = "printf '%s' \"$RSA\" > rsa.pem; printf '%s' \"$EC\" > ec.pem; \
                  openssl pkey -pubin -noout -in rsa.pem && openssl pkey -pubin -noout -in ec.pem \
                  && head -1 rsa.pem";
    let mut c = h.cmd_with(Ident::ClientSecretA, flags, ["sh", "-c", script]);
    let vault = "vault=https://myhsm.managedhsm.azure.net";
    c.env("RSA", format!("hsm-rsa@azurekeyvault?type=key&{vault}"))
        .env("EC", format!("hsm-ec@azurekeyvault?type=key&{vault}"));
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "-----BEGIN PUBLIC KEY-----");
    let grants = h.kv.token_grants();
    assert!(
        !grants.is_empty()
            && grants
                .iter()
                .all(|g| g.scope == "https://managedhsm.azure.net/.default"),
        "{grants:?}"
    );
    let reads: Vec<_> =
        h.kv.accesses()
            .into_iter()
            .filter(|a| a.status == 200)
            .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|a| a.vault == "myhsm"), "{reads:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_settings_from_the_environment_have_no_effect() {
    let h = Harness::start().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    // As a ConfigMap could set them: the vault and the authority mapped elsewhere, another CA,
    // managed identity. The flags (from the admitted spec) decide; the run succeeds as the
    // client secret identity and says what it ignored.
    let mut c = h.cmd(Ident::ClientSecretA, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault")
        .env(
            "AKV_ENV_RESOLVE",
            format!("myvault.vault.azure.net={dead_addr},login.test={dead_addr}"),
        )
        .env("AKV_ENV_CA_FILE", "/nonexistent/ca.pem")
        .env("AKV_ENV_AUTH", "managed-identity");
    let (out, _) = run(c).await;
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout(&out), "hunter2");
    for var in ["AKV_ENV_RESOLVE", "AKV_ENV_CA_FILE", "AKV_ENV_AUTH"] {
        assert!(
            err.contains(&format!("{var} in the environment is ignored")),
            "{var}: {err}"
        );
    }
    let grants = h.kv.token_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].identity, "app-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_from_the_environment_must_be_entra() {
    let h = Harness::start().await;
    // Without --authority-host, AZURE_AUTHORITY_HOST from the environment names the test
    // authority, which is not Entra's: refused before anything is sent.
    let flags: Vec<String> = h
        .flags()
        .into_iter()
        .filter(|f| !f.starts_with("--authority-host="))
        .collect();
    let mut c = h.cmd_with(Ident::WorkloadB, flags, ["echo", "started"]);
    c.env("DB", "db-password@azurekeyvault")
        .env("AZURE_AUTHORITY_HOST", h.kv.test_authority_host());
    let (out, _) = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("AZURE_AUTHORITY_HOST \"https://login.test\" from the environment is not a Microsoft Entra ID authority")
            && err.contains("--authority-host"),
        "{err}"
    );
    assert!(h.kv.token_grants().is_empty() && h.kv.accesses().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_address_for_entra_is_refused() {
    let h = Harness::start().await;
    let a = h.kv.https_addr();
    let mut flags: Vec<String> = h
        .flags()
        .into_iter()
        .filter(|f| !f.starts_with("--resolve=") && !f.starts_with("--authority-host="))
        .collect();
    flags.push(format!(
        "--resolve=myvault.vault.azure.net={a},login.microsoftonline.com={a}"
    ));
    let mut c = h.cmd_with(Ident::WorkloadB, flags, ["echo", "started"]);
    c.env("DB", "db-password@azurekeyvault");
    let (out, _) = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--resolve: entry 2")
            && err.contains("login.microsoftonline.com is Microsoft Entra ID's sign-in host"),
        "{err}"
    );
    assert!(h.kv.token_grants().is_empty() && h.kv.accesses().is_empty());
}
