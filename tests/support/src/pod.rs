//! A pod's view of a Key Vault: `akv-env FLAGS -- PROGRAM` started with nothing in its
//! environment but what the platform hands a pod (its identity's variables) and what the webhook
//! writes (flags, `AKV_ENV_DEFAULT_VAULT`, `AKV_ENV_TIMEOUT`). The injector's tests and the
//! reliability tests build their pods here, so both run the injector the same way.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a pod authenticates, as the platform would hand it over in its environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A service principal's secret: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    ClientSecret { client_id: &'a str, secret: &'a str },
    /// Workload identity: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_FEDERATED_TOKEN_FILE`.
    Workload { client_id: &'a str },
    /// Managed identity through `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` and
    /// `--auth=managed-identity`; user-assigned when `client_id` is set, system-assigned if not.
    Managed { client_id: Option<&'a str> },
    /// No identity at all.
    None,
}

/// What every pod of one test vault shares: where the vault's CA and the federated token are,
/// the token service's tenant and authority, and the managed-identity endpoint.
#[derive(Clone, Debug)]
pub struct PodEnv {
    /// The pods' working directory; holds `ca.pem` and `federated-token`.
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub token_file: PathBuf,
    pub tenant: String,
    pub authority_host: String,
    /// `http://HOST:PORT/...` of the App Service-style managed-identity endpoint.
    pub identity_endpoint: String,
    pub identity_header: String,
}

/// The federated token workload-identity pods present (the fake Key Vault's seeds accept it).
pub const FEDERATED_TOKEN: &str = "federated-token-of-app-b";

impl PodEnv {
    /// Writes the vault's CA and [`FEDERATED_TOKEN`] into `dir`, where the pods will run.
    pub fn write(
        dir: &Path,
        ca_pem: &str,
        tenant: &str,
        authority_host: &str,
        identity_endpoint: &str,
        identity_header: &str,
    ) -> io::Result<PodEnv> {
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_pem)?;
        let token_file = dir.join("federated-token");
        std::fs::write(&token_file, FEDERATED_TOKEN)?;
        Ok(PodEnv {
            dir: dir.to_owned(),
            ca_file,
            token_file,
            tenant: tenant.to_owned(),
            authority_host: authority_host.to_owned(),
            identity_endpoint: identity_endpoint.to_owned(),
            identity_header: identity_header.to_owned(),
        })
    }

    /// The flags the webhook derives for this vault: its CA, the fixed addresses `resolve`
    /// (`host=addr,...`) and the authority.
    pub fn trust_flags(&self, resolve: &str) -> Vec<String> {
        vec![
            format!("--ca-file={}", self.ca_file.display()),
            format!("--resolve={resolve}"),
            format!("--authority-host={}", self.authority_host),
        ]
    }

    /// `injector FLAGS [--auth=managed-identity] -- PROGRAM...` run as a pod with `credential`:
    /// a cleared environment, `PATH`, `AKV_ENV_DEFAULT_VAULT=myvault`, `AKV_ENV_TIMEOUT` and the
    /// credential's variables, in [`Self::dir`]. `injector` is the command that starts the
    /// injector (the binary itself, or a runner such as qemu with the binary as argument).
    pub fn command<F, P>(
        &self,
        mut injector: Command,
        credential: Credential,
        timeout: &str,
        flags: F,
        program: P,
    ) -> Command
    where
        F: IntoIterator,
        F::Item: AsRef<OsStr>,
        P: IntoIterator,
        P::Item: AsRef<OsStr>,
    {
        let c = &mut injector;
        c.env_clear()
            .current_dir(&self.dir)
            .env("PATH", "/usr/bin:/bin")
            .env("AKV_ENV_DEFAULT_VAULT", "myvault")
            .env("AKV_ENV_TIMEOUT", timeout)
            .args(flags);
        match credential {
            Credential::ClientSecret { client_id, secret } => {
                c.env("AZURE_TENANT_ID", &self.tenant)
                    .env("AZURE_CLIENT_ID", client_id)
                    .env("AZURE_CLIENT_SECRET", secret);
            }
            Credential::Workload { client_id } => {
                c.env("AZURE_TENANT_ID", &self.tenant)
                    .env("AZURE_CLIENT_ID", client_id)
                    .env("AZURE_FEDERATED_TOKEN_FILE", &self.token_file);
            }
            Credential::Managed { client_id } => {
                c.env("IDENTITY_ENDPOINT", &self.identity_endpoint)
                    .env("IDENTITY_HEADER", &self.identity_header)
                    .arg("--auth=managed-identity");
                if let Some(id) = client_id {
                    c.env("AZURE_CLIENT_ID", id);
                }
            }
            Credential::None => {}
        }
        c.arg("--").args(program);
        injector
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> PodEnv {
        PodEnv {
            dir: "/pod".into(),
            ca_file: "/pod/ca.pem".into(),
            token_file: "/pod/federated-token".into(),
            tenant: "t1".into(),
            authority_host: "https://login.test".into(),
            identity_endpoint: "http://127.0.0.1:1/msi/token".into(),
            identity_header: "h1".into(),
        }
    }

    fn parts(c: &Command) -> (Vec<String>, Vec<(String, String)>) {
        let args = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let mut envs: Vec<_> = c
            .get_envs()
            .filter_map(|(k, v)| {
                Some((
                    k.to_string_lossy().into_owned(),
                    v?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        envs.sort();
        (args, envs)
    }

    #[test]
    fn each_credential_sets_only_its_own_variables() {
        let e = env();
        let run = |cred| parts(&e.command(Command::new("akv-env"), cred, "2s", ["--x"], ["true"]));
        let names = |envs: &[(String, String)]| -> Vec<String> {
            envs.iter()
                .map(|(k, _)| k.clone())
                .filter(|k| {
                    !["PATH", "AKV_ENV_DEFAULT_VAULT", "AKV_ENV_TIMEOUT"].contains(&k.as_str())
                })
                .collect()
        };

        let (args, envs) = run(Credential::ClientSecret {
            client_id: "a",
            secret: "s",
        });
        assert_eq!(args, ["--x", "--", "true"]);
        assert_eq!(
            names(&envs),
            ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID"]
        );
        assert!(envs.contains(&("AKV_ENV_TIMEOUT".into(), "2s".into())));

        let (args, envs) = run(Credential::Workload { client_id: "b" });
        assert_eq!(args, ["--x", "--", "true"]);
        assert!(envs.contains(&(
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            "/pod/federated-token".into()
        )));
        assert_eq!(
            names(&envs),
            [
                "AZURE_CLIENT_ID",
                "AZURE_FEDERATED_TOKEN_FILE",
                "AZURE_TENANT_ID"
            ]
        );

        let (args, envs) = run(Credential::Managed { client_id: None });
        assert_eq!(args, ["--x", "--auth=managed-identity", "--", "true"]);
        assert_eq!(names(&envs), ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"]);

        let (_, envs) = run(Credential::Managed {
            client_id: Some("c"),
        });
        assert_eq!(
            names(&envs),
            ["AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"]
        );

        let (args, envs) = run(Credential::None);
        assert_eq!(args, ["--x", "--", "true"]);
        assert!(names(&envs).is_empty());
    }

    #[test]
    fn trust_flags_name_the_ca_the_addresses_and_the_authority() {
        assert_eq!(
            env().trust_flags("v=1.2.3.4:443"),
            [
                "--ca-file=/pod/ca.pem",
                "--resolve=v=1.2.3.4:443",
                "--authority-host=https://login.test"
            ]
        );
    }
}
