//! One pod's view of the world: the local Key Vault, the CA it trusts, its identity's
//! variables, and `akv-env -- PROGRAM` started with nothing else in its environment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use akv_test_support::pod::{Credential, PodEnv};
use fake_keyvault::{FakeKeyVault, Options, Seed};
use tokio::process::Command;

use crate::{Error, Result, io};

/// Every identity may read everything: the herd and the faults are about load, not policy.
pub const SEED: &str = r#"
identities:
  - { client_id: app-a, client_secret: s3cret-a }
  - { client_id: app-b, federated_token: federated-token-of-app-b }
  - { client_id: app-c, managed: true }
  - { client_id: reader, client_secret: s3cret-r }
vaults:
  myvault:
    access:
      app-a: ["*"]
      app-b: ["*"]
      app-c: ["*"]
      reader: ["db-password", "leak-plain"]
    secrets:
      db-password: { value: "hunter2" }
      api-config: { value: '{"user":"u2","pass":"p2"}' }
"#;

/// Which identity a pod runs as, as the platform would hand it over in its environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Service principal `app-a` (`AZURE_CLIENT_SECRET`).
    ClientSecret,
    /// Workload identity `app-b` (`AZURE_FEDERATED_TOKEN_FILE`).
    Workload,
    /// User-assigned managed identity `app-c` (`IDENTITY_ENDPOINT`).
    Managed,
    /// Service principal `reader`, allowed `db-password` and `leak-plain` only.
    Reader,
}

impl Identity {
    /// The three ways pods authenticate, in turn: pod `i` of a herd uses `ROTATION[i % 3]`.
    pub const ROTATION: [Identity; 3] = [
        Identity::ClientSecret,
        Identity::Workload,
        Identity::Managed,
    ];
}

/// The local Key Vault and the files a pod needs to talk to it (CA, federated token).
pub struct Vault {
    pub kv: FakeKeyVault,
    pub dir: tempfile::TempDir,
    pub injector: PathBuf,
    pod: PodEnv,
}

impl Vault {
    /// Starts the fake with [`SEED`] and `options`' faults (its `seed` is replaced).
    pub async fn start(injector: PathBuf, options: Options) -> Result<Vault> {
        // Pods run with the vault's directory as working directory: a relative path would break.
        let injector = std::fs::canonicalize(&injector)
            .map_err(io(format!("the injector binary {}", injector.display())))?;
        let seed = Seed::from_yaml(SEED).map_err(|e| Error::FakeKeyVault(e.to_string()))?;
        let kv = FakeKeyVault::start(Options { seed, ..options })
            .await
            .map_err(|e| Error::FakeKeyVault(format!("{e:#}")))?;
        let dir = tempfile::tempdir().map_err(io("creating a temporary directory"))?;
        let pod = kv
            .pod_env(dir.path())
            .map_err(io("writing the CA and federated token files"))?;
        Ok(Vault {
            kv,
            dir,
            injector,
            pod,
        })
    }

    /// `--resolve`: the vault and the test authority (`login.test`) mapped to the fake's port.
    pub fn resolve_map(&self) -> String {
        let a = self.kv.https_addr();
        format!("myvault.vault.azure.net={a},login.test={a}")
    }

    /// `akv-env FLAGS -- PROGRAM...` as a pod with `identity` would run it; the working
    /// directory is the vault's temporary directory, `AKV_ENV_TIMEOUT` is `timeout`. The flags
    /// are what the webhook derives from the pod spec: the fake's CA, [`Self::resolve_map`],
    /// the test authority, and `--auth=managed-identity` for managed identity.
    pub fn command<I, S>(&self, identity: Identity, timeout: &str, program: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command_with_resolve(identity, timeout, &self.resolve_map(), program)
    }

    /// [`Self::command`] with another fixed-address map.
    pub fn command_with_resolve<I, S>(
        &self,
        identity: Identity,
        timeout: &str,
        resolve: &str,
        program: I,
    ) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command_with_flags(identity, timeout, resolve, &[], program)
    }

    /// [`Self::command_with_resolve`] with more injector flags (before `--`), as the webhook
    /// would write them into the wrapped container's `args`.
    pub fn command_with_flags<I, S>(
        &self,
        identity: Identity,
        timeout: &str,
        resolve: &str,
        flags: &[&str],
        program: I,
    ) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let credential = match identity {
            Identity::ClientSecret => Credential::ClientSecret {
                client_id: "app-a",
                secret: "s3cret-a",
            },
            Identity::Reader => Credential::ClientSecret {
                client_id: "reader",
                secret: "s3cret-r",
            },
            Identity::Workload => Credential::Workload { client_id: "app-b" },
            Identity::Managed => Credential::Managed {
                client_id: Some("app-c"),
            },
        };
        let mut all_flags = self.pod.trust_flags(resolve);
        all_flags.extend(flags.iter().map(|f| f.to_string()));
        let std = self.pod.command(
            std::process::Command::new(&self.injector),
            credential,
            timeout,
            all_flags,
            program,
        );
        let mut c = Command::from(std);
        c.kill_on_drop(true);
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
