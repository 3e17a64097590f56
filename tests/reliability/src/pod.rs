//! One pod's view of the world: the local Key Vault, the CA it trusts, its identity's
//! variables, and `akv-env -- PROGRAM` started with nothing else in its environment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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
    ca_file: PathBuf,
    token_file: PathBuf,
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
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, kv.ca_pem()).map_err(io("writing the CA file"))?;
        let token_file = dir.path().join("federated-token");
        std::fs::write(&token_file, "federated-token-of-app-b")
            .map_err(io("writing the federated token file"))?;
        Ok(Vault {
            kv,
            dir,
            injector,
            ca_file,
            token_file,
        })
    }

    /// `AKV_ENV_RESOLVE`: the vault and the authority mapped to the fake's port.
    pub fn resolve_map(&self) -> String {
        let a = self.kv.https_addr();
        format!("myvault.vault.azure.net={a},login.microsoftonline.com={a}")
    }

    /// `akv-env -- PROGRAM...` as a pod with `identity` would run it; the working directory is
    /// the vault's temporary directory, `AKV_ENV_TIMEOUT` is `timeout`.
    pub fn command<I, S>(&self, identity: Identity, timeout: &str, program: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command_with_flags(identity, timeout, &[], program)
    }

    /// [`Vault::command`] with injector flags before `--` (as the webhook writes them).
    pub fn command_with_flags<I, S>(
        &self,
        identity: Identity,
        timeout: &str,
        flags: &[&str],
        program: I,
    ) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.injector);
        c.env_clear()
            .current_dir(self.dir.path())
            .env("PATH", "/usr/bin:/bin")
            .env("AKV_ENV_CA_FILE", &self.ca_file)
            .env("AKV_ENV_RESOLVE", self.resolve_map())
            .env("AKV_ENV_DEFAULT_VAULT", "myvault")
            .env("AKV_ENV_TIMEOUT", timeout)
            .env("AZURE_AUTHORITY_HOST", self.kv.authority_host())
            .kill_on_drop(true);
        let tenant = self.kv.tenant().to_owned();
        match identity {
            Identity::ClientSecret | Identity::Reader => {
                let (id, secret) = match identity {
                    Identity::Reader => ("reader", "s3cret-r"),
                    _ => ("app-a", "s3cret-a"),
                };
                c.env("AZURE_TENANT_ID", &tenant)
                    .env("AZURE_CLIENT_ID", id)
                    .env("AZURE_CLIENT_SECRET", secret);
            }
            Identity::Workload => {
                c.env("AZURE_TENANT_ID", &tenant)
                    .env("AZURE_CLIENT_ID", "app-b")
                    .env("AZURE_FEDERATED_TOKEN_FILE", &self.token_file);
            }
            Identity::Managed => {
                c.env(
                    "IDENTITY_ENDPOINT",
                    format!("http://{}/msi/token", self.kv.http_addr()),
                )
                .env("IDENTITY_HEADER", self.kv.identity_header())
                .env("AZURE_CLIENT_ID", "app-c");
            }
        }
        c.args(flags).arg("--").args(program);
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
