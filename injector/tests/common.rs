//! Shared harness: a fake Key Vault on loopback and the real `akv-env` binary with a cleared,
//! explicit environment, pointed at the fake as the webhook would: flags (`--resolve`,
//! `--ca-file`, `--authority-host`), never the environment.
#![allow(dead_code)]

use akv_test_support::pod::{Credential, PodEnv};
use fake_keyvault::{FakeKeyVault, Options, Seed};
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_akv-env");

/// The injector under test: this build (`BIN`), or `AKV_ENV_INJECTOR_BIN` (another
/// architecture's static build, e.g. the arm64 one) started through `AKV_ENV_INJECTOR_RUNNER`
/// (e.g. `qemu-aarch64-static`). scripts/test.sh runs these tests both ways.
pub fn injector_command() -> std::process::Command {
    command_for(&injector_binary())
}

/// Runs `bin` (the injector under test or a copy of it) through `AKV_ENV_INJECTOR_RUNNER`.
pub fn command_for(bin: &Path) -> std::process::Command {
    match std::env::var_os("AKV_ENV_INJECTOR_RUNNER").filter(|r| !r.is_empty()) {
        Some(runner) => {
            // An absolute path: the tests give the child PATHs that may not hold the runner.
            let runner = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(&runner))
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from(&runner));
            let mut c = std::process::Command::new(runner);
            c.arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    }
}

/// The binary [`injector_command`] runs.
pub fn injector_binary() -> PathBuf {
    match std::env::var_os("AKV_ENV_INJECTOR_BIN").filter(|b| !b.is_empty()) {
        Some(bin) => {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "AKV_ENV_INJECTOR_BIN={}: no such file",
                bin.display()
            );
            bin
        }
        None => PathBuf::from(BIN),
    }
}

pub const SEED: &str = r#"
identities:
  - { client_id: app-a, client_secret: s3cret-a }
  - { client_id: app-b, federated_token: federated-token-of-app-b }
  - { client_id: app-c, managed: true }
  - { client_id: system, managed: true }
vaults:
  myvault:
    access:
      app-a: ["*"]
      app-b: ["db-password"]
      app-c: ["*"]
      system: ["*"]
    secrets:
      db-password: { value: "hunter2" }
      api-config:
        versions:
          - { value: '{"user":"u","pass":"p"}', version: 0123456789abcdef0123456789abcdef, content_type: application/json }
          - { value: '{"user":"u2","pass":"p2","port":5432}' }
      b64: { value: "aGVsbG8gd29ybGQ=" }
      disabled: { value: "x", enabled: false }
    certificates:
      web-pem: { subject: "CN=web.example.com", content_type: application/x-pem-file }
      web-pfx: { subject: "CN=pfx.example.com", content_type: application/x-pkcs12 }
    keys:
      signing-ec: { kty: EC }
  othervault:
    secrets:
      other: { value: "from-the-other-vault" }
"#;

/// Which identity the injector runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ident {
    ClientSecretA,
    WorkloadB,
    ManagedC,
    ManagedSystem,
    None,
}

pub struct Harness {
    pub kv: FakeKeyVault,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
    /// How pods of this rig are started (shared with the reliability tests).
    pub pod: PodEnv,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options {
            seed: Seed::from_yaml(SEED).expect("seed parses"),
            ..Default::default()
        })
        .await
    }

    pub async fn start_with(opts: Options) -> Harness {
        let kv = FakeKeyVault::start(opts)
            .await
            .expect("fake Key Vault starts");
        let dir = tempfile::tempdir().unwrap();
        let pod = kv.pod_env(dir.path()).unwrap();
        Harness {
            kv,
            dir,
            ca_file: pod.ca_file.clone(),
            token_file: pod.token_file.clone(),
            pod,
        }
    }

    /// `--resolve` mapping both vaults and the test authority (`login.test`) to the fake.
    pub fn resolve_map(&self) -> String {
        let a = self.kv.https_addr();
        format!("myvault.vault.azure.net={a},othervault.vault.azure.net={a},login.test={a}")
    }

    /// The flags the webhook would derive for this rig: CA, fixed addresses, authority.
    pub fn flags(&self) -> Vec<String> {
        self.pod.trust_flags(&self.resolve_map())
    }

    /// `akv-env FLAGS -- PROGRAM ARGS...` with only the given identity's variables set.
    pub fn cmd<I, S>(&self, ident: Ident, program: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd_with(ident, self.flags(), program)
    }

    /// `akv-env` with the rig's flags plus `extra` (e.g. `--restart-on-change=1s`).
    pub fn cmd_with_flags<I, S>(&self, ident: Ident, extra: &[&str], program: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut flags = self.flags();
        flags.extend(extra.iter().map(|f| f.to_string()));
        self.cmd_with(ident, flags, program)
    }

    /// [`Self::cmd`] with other flags (managed identity adds `--auth managed-identity`).
    pub fn cmd_with<I, S>(&self, ident: Ident, flags: Vec<String>, program: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let credential = match ident {
            Ident::ClientSecretA => Credential::ClientSecret {
                client_id: "app-a",
                secret: "s3cret-a",
            },
            Ident::WorkloadB => Credential::Workload { client_id: "app-b" },
            Ident::ManagedC => Credential::Managed {
                client_id: Some("app-c"),
            },
            Ident::ManagedSystem => Credential::Managed { client_id: None },
            Ident::None => Credential::None,
        };
        let std = self
            .pod
            .command(injector_command(), credential, "20s", flags, program);
        let mut c = Command::from(std);
        c.kill_on_drop(true);
        c
    }
}

pub async fn run(mut c: Command) -> (Output, Duration) {
    let start = Instant::now();
    let out = c.output().await.expect("akv-env runs");
    (out, start.elapsed())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sh -c 'printf "%s" "$VAR"'`: the program prints one variable exactly.
pub fn print_var(var: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("printf '%s' \"${var}\"")]
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
