//! Sovereign clouds: with `--cloud`, a bare vault name means the cloud's vault host, the token
//! comes from the cloud's Entra authority, for the cloud's Key Vault audience. Checked against
//! the fake Key Vault at the real names and port: `kv1.vault.azure.cn:443` and
//! `login.chinacloudapi.cn:443` (US Government alike), with no `--resolve` and no
//! `--authority-host`.
//!
//! The names resolve through a private `/etc/hosts` (a mount namespace) to loopback in a network
//! namespace of the test's own, where the fake listens on port 443 and no other host exists:
//! a token asked of another authority, or a vault of another cloud, would fail. Needs root, `ip`
//! (iproute2) and `unshare`/`mount` (util-linux), as the IMDS test does.

mod common;
mod netns;

use std::process::Command;

use common::BIN;
use fake_keyvault::{FakeKeyVault, Options, Seed};
use netns::NetNamespace;

const SEED: &str = r#"
identities:
  - { client_id: app-a, client_secret: s3cret-a }
vaults:
  kv1:
    access:
      app-a: ["*"]
    secrets:
      db-password: { value: "hunter2" }
      api-key: { value: "k3y" }
"#;

/// `akv-env FLAGS -- sh -c SCRIPT` seeing `hosts` as /etc/hosts (names -> 127.0.0.1), the
/// fake's CA trusted, a service principal's variables and `env` set.
fn injector(
    hosts: &std::path::Path,
    ca_file: &std::path::Path,
    tenant: &str,
    flags: &[&str],
    env: &[(&str, &str)],
    script: &str,
) -> Command {
    let mut c = Command::new("/usr/bin/unshare");
    c.args([
        "--mount",
        "--",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(hosts)
    .arg(BIN)
    .arg(format!("--ca-file={}", ca_file.display()))
    .args(flags)
    .args(["--", "sh", "-c", script])
    .env_clear()
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    .env("AKV_ENV_TIMEOUT", "10s")
    .env("AZURE_TENANT_ID", tenant)
    .env("AZURE_CLIENT_ID", "app-a")
    .env("AZURE_CLIENT_SECRET", "s3cret-a");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_names_resolve_in_the_clouds_vault_domain_with_its_authority_and_scope() {
    // Port 443, as the clouds' hosts are reached: the namespace is the test's own.
    let (namespace, [https, http]) = NetNamespace::start(&[], ["127.0.0.1:443", "127.0.0.1:0"]);
    https.set_nonblocking(true).unwrap();
    http.set_nonblocking(true).unwrap();
    let kv = FakeKeyVault::start_with_listeners(
        https,
        http,
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
    let tenant = kv.tenant().to_owned();

    // (cloud, vault host, authority host, scope)
    let clouds = [
        (
            "AzureChinaCloud",
            "kv1.vault.azure.cn",
            "login.chinacloudapi.cn",
            "https://vault.azure.cn/.default",
        ),
        (
            "AzureUSGovernment",
            "kv1.vault.usgovcloudapi.net",
            "login.microsoftonline.us",
            "https://vault.usgovcloudapi.net/.default",
        ),
    ];
    for (cloud, vault_host, authority, scope) in clouds {
        kv.clear_records();
        // Only this cloud's vault and authority exist: the public cloud's hosts have no
        // address, so a bare name taken as kv1.vault.azure.net, or a token asked of
        // login.microsoftonline.com, fails.
        let hosts = dir.path().join(format!("hosts-{cloud}"));
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n127.0.0.1 {vault_host} {authority}\n"),
        )
        .unwrap();
        // `?vault=kv1` and the default vault (the `akv-env.io/vault: kv1` annotation, which the
        // webhook passes as AKV_ENV_DEFAULT_VAULT) alike.
        let env = [
            ("DB_PASSWORD", "db-password@azurekeyvault?vault=kv1"),
            ("API_KEY", "api-key@azurekeyvault"),
            ("AKV_ENV_DEFAULT_VAULT", "kv1"),
        ];
        let flag = format!("--cloud={cloud}");
        let out = tokio::task::block_in_place(|| {
            namespace.run(injector(
                &hosts,
                &ca_file,
                &tenant,
                &[&flag],
                &env,
                "printf '%s %s' \"$DB_PASSWORD\" \"$API_KEY\"",
            ))
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{cloud}: {}: {stderr}", out.status);
        assert_eq!(out.stdout, b"hunter2 k3y", "{cloud}: {stderr}");
        let grants = kv.token_grants();
        assert!(!grants.is_empty(), "{cloud}: no token was issued");
        for grant in &grants {
            assert_eq!(
                (grant.identity.as_str(), grant.scope.as_str()),
                ("app-a", scope),
                "{cloud}"
            );
        }
        let reads: Vec<_> = kv
            .accesses()
            .into_iter()
            .filter(|a| a.status == 200)
            .collect();
        assert_eq!(reads.len(), 2, "{cloud}: {reads:?}");
        assert!(reads.iter().all(|a| a.vault == "kv1"), "{cloud}: {reads:?}");

        // Without --cloud the same pod means the public cloud's kv1, which is not there.
        kv.clear_records();
        let out = tokio::task::block_in_place(|| {
            namespace.run(injector(
                &hosts,
                &ca_file,
                &tenant,
                &[],
                &env,
                "echo started",
            ))
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cloud}, no --cloud: {stderr}");
        assert!(out.stdout.is_empty(), "the program must not start");
        assert!(
            kv.accesses().is_empty() && kv.token_grants().is_empty(),
            "{cloud}, no --cloud: the fake was reached"
        );
    }

    // Pinned to China, a vault URL of the public cloud is refused before any connection,
    // naming the variable and both clouds.
    kv.clear_records();
    let hosts = dir.path().join("hosts-AzureChinaCloud");
    let out = tokio::task::block_in_place(|| {
        namespace.run(injector(
            &hosts,
            &ca_file,
            &tenant,
            &["--cloud=AzureChinaCloud"],
            &[(
                "DB_PASSWORD",
                "db-password@azurekeyvault?vault=https://kv1.vault.azure.net",
            )],
            "echo started",
        ))
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("akv-env: DB_PASSWORD: "))
        .unwrap_or_else(|| panic!("no line for DB_PASSWORD: {stderr}"));
    assert!(
        line.contains("https://kv1.vault.azure.net is a vault of AzurePublicCloud")
            && line.contains("AzureChinaCloud"),
        "{line}"
    );
    assert!(kv.accesses().is_empty() && kv.token_grants().is_empty());
}
