//! Explicit configuration: which identity to use and how to reach Key Vault.
//!
//! The binary reads its flags and the environment once and fills these structs; nothing below
//! reads env vars itself (except what the SDK's managed-identity credential reads to find its
//! endpoint). Settings that decide where the pod's token goes (the mode, the extra CA, fixed
//! addresses, the authority) come from flags the webhook derived from the admitted pod spec.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, sync::Arc, time::Duration};

/// How the injector proves who it is to Microsoft Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Entra Workload ID: a federated service-account token exchanged by client assertion.
    WorkloadIdentity,
    /// A service principal's client secret from the environment.
    ClientSecret,
    /// The node's or App Service's managed identity (IMDS / `IDENTITY_ENDPOINT`).
    ManagedIdentity,
}

impl AuthMode {
    /// The spelling used by `--auth` and the pod annotation `akv-env.io/auth`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::WorkloadIdentity => "workload-identity",
            AuthMode::ClientSecret => "client-secret",
            AuthMode::ManagedIdentity => "managed-identity",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "workload-identity" => Ok(AuthMode::WorkloadIdentity),
            "client-secret" => Ok(AuthMode::ClientSecret),
            "managed-identity" => Ok(AuthMode::ManagedIdentity),
            other => Err(ConfigError::UnknownAuthMode(other.to_owned())),
        }
    }
}

/// Identity settings, as the azure-workload-identity webhook and Azure's SDKs name them.
#[derive(Default)]
pub struct AuthConfig {
    /// `--auth`: use exactly this mode instead of choosing. Managed identity is never chosen
    /// otherwise.
    pub forced: Option<AuthMode>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_ID`; for managed identity, selects a user-assigned identity.
    pub client_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_CLIENT_SECRET`. Wiped on drop.
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    /// The authority, e.g. `https://login.microsoftonline.com`: `--authority-host`, or an Entra
    /// host from `AZURE_AUTHORITY_HOST` (see [`akv_trust::authority::choose`]).
    pub authority_host: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("forced", &self.forced)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("federated_token_file", &self.federated_token_file)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("authority_host", &self.authority_host)
            .finish()
    }
}

impl AuthConfig {
    /// Picks the mode in DESIGN order (workload identity, then client secret) unless one is
    /// forced, and checks that the settings it needs are present. Managed identity (on AKS the
    /// node's identity, shared by every pod on the node) only when forced: with nothing
    /// configured this fails closed, before any connection, saying how to give the pod an
    /// identity.
    pub fn choose(&self) -> Result<AuthMode, ConfigError> {
        let mode = match self.forced {
            Some(mode) => mode,
            None if self.federated_token_file.is_some() => AuthMode::WorkloadIdentity,
            None if self.client_secret.is_some() => AuthMode::ClientSecret,
            None => return Err(ConfigError::NoIdentity),
        };
        let mut missing = Vec::new();
        match mode {
            AuthMode::WorkloadIdentity => {
                if self.federated_token_file.is_none() {
                    missing.push("AZURE_FEDERATED_TOKEN_FILE");
                }
                if self.client_id.is_none() {
                    missing.push("AZURE_CLIENT_ID");
                }
                if self.tenant_id.is_none() {
                    missing.push("AZURE_TENANT_ID");
                }
            }
            AuthMode::ClientSecret => {
                if self.client_secret.is_none() {
                    missing.push("AZURE_CLIENT_SECRET");
                }
                if self.client_id.is_none() {
                    missing.push("AZURE_CLIENT_ID");
                }
                if self.tenant_id.is_none() {
                    missing.push("AZURE_TENANT_ID");
                }
            }
            AuthMode::ManagedIdentity => {}
        }
        if missing.is_empty() {
            Ok(mode)
        } else {
            Err(ConfigError::MissingAuthSetting { mode, missing })
        }
    }

    /// The identity name used in logs: the client id, or "system" for a system-assigned
    /// managed identity.
    pub fn identity_label(&self, mode: AuthMode) -> String {
        match (&self.client_id, mode) {
            (Some(id), _) => id.clone(),
            (None, AuthMode::ManagedIdentity) => "system".to_owned(),
            (None, _) => "(no client id)".to_owned(),
        }
    }
}

/// How HTTPS connections to Key Vault and Entra ID are made.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// `--ca-file`: PEM file with extra trust anchors, added to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// More `--ca-file`s (the cluster's CA bundle and the pod's own), added alike.
    pub extra_ca_files: Vec<PathBuf>,
    /// `--resolve`: fixed host-to-address mappings that bypass DNS (never Entra's or IMDS).
    pub resolve: Vec<(String, SocketAddr)>,
    /// Upper bound for establishing one TCP+TLS connection.
    pub connect_timeout: Duration,
    /// The egress proxy (`HTTPS_PROXY`/`NO_PROXY`, read by the binary); `None`: direct.
    /// Plain-HTTP targets (the managed identity endpoint) never use it.
    pub proxy: Option<Arc<akv_proxy::ProxySettings>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            ca_file: None,
            extra_ca_files: Vec::new(),
            resolve: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            proxy: None,
        }
    }
}

/// Parses `--resolve`: `host=ip:port[,host2=ip:port]` (IPv6 as `[::1]:443`), refusing Entra's
/// hosts and IMDS ([`akv_trust::parse_resolve`]). For private endpoints without DNS, and tests.
pub fn parse_resolve(text: &str) -> Result<Vec<(String, SocketAddr)>, ConfigError> {
    akv_trust::parse_resolve(text).map_err(ConfigError::BadResolve)
}

/// The authority to use: `--authority-host`, else `AZURE_AUTHORITY_HOST` if it names an
/// Entra host ([`akv_trust::authority::choose`]).
pub fn choose_authority(
    flag: Option<&str>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    Ok(akv_trust::authority::choose(flag, env)?)
}

/// The authority with the operator's cloud: `--authority-host`, else the cloud's Entra host
/// (`--cloud`), else `AZURE_AUTHORITY_HOST` if it names an Entra host
/// ([`akv_trust::authority::choose_in`]).
pub fn choose_authority_in(
    flag: Option<&str>,
    cloud: Option<&akv_trust::Cloud>,
    env: Option<&str>,
) -> Result<Option<String>, ConfigError> {
    Ok(akv_trust::authority::choose_in(flag, cloud, env)?)
}

/// A setting that cannot work; names the variable and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--auth: unknown mode {0:?}; use workload-identity, client-secret or managed-identity")]
    UnknownAuthMode(String),
    #[error(
        "no identity to read Key Vault with: neither AZURE_FEDERATED_TOKEN_FILE (workload \
         identity) nor AZURE_CLIENT_SECRET (a service principal) is set, and managed identity was \
         not chosen. Give the pod an identity: Microsoft Entra Workload ID (label the pod \
         azure.workload.identity/use: \"true\" and run it as a service account annotated with \
         azure.workload.identity/client-id), or set AZURE_CLIENT_ID, AZURE_TENANT_ID and \
         AZURE_CLIENT_SECRET; the node's managed identity only with the pod annotation \
         akv-env.io/auth: managed-identity, where an operator allows it"
    )]
    NoIdentity,
    #[error("{mode} authentication needs {}", missing.join(", "))]
    MissingAuthSetting {
        mode: AuthMode,
        missing: Vec<&'static str>,
    },
    #[error("--resolve: {0}")]
    BadResolve(akv_trust::ResolveError),
    #[error(transparent)]
    Authority(#[from] akv_trust::AuthorityError),
    #[error("--vault-host-suffix: {0}")]
    VaultHosts(akv_trust::HostError),
    #[error("--cloud: {0}")]
    Cloud(akv_trust::CloudError),
    #[error("--ca-file: cannot read {path}: {source}")]
    CaFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--ca-file: {path}: {why}")]
    CaFileContent { path: PathBuf, why: String },
    #[error("cannot build the HTTPS client: {0}")]
    Tls(String),
    #[error("cannot create the {mode} credential: {cause}")]
    Credential { mode: AuthMode, cause: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn cfg(
        forced: Option<AuthMode>,
        file: bool,
        secret: bool,
        client: bool,
        tenant: bool,
    ) -> AuthConfig {
        AuthConfig {
            forced,
            tenant_id: tenant.then(|| "t".to_owned()),
            client_id: client.then(|| "c".to_owned()),
            federated_token_file: file.then(|| PathBuf::from("/var/run/token")),
            client_secret: secret.then(|| Zeroizing::new("s".to_owned())),
            authority_host: None,
        }
    }

    #[test]
    fn chooses_in_design_order() {
        use AuthMode::*;
        // (case, config, expected mode or the missing settings)
        // An empty list of missing settings stands for "no identity at all".
        type Case = (
            &'static str,
            AuthConfig,
            Result<AuthMode, Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing set: no identity, never managed identity",
                cfg(None, false, false, false, false),
                Err(vec![]),
            ),
            (
                "a client id alone is no identity",
                cfg(None, false, false, true, true),
                Err(vec![]),
            ),
            (
                "forced system-assigned managed identity",
                cfg(Some(ManagedIdentity), false, false, false, false),
                Ok(ManagedIdentity),
            ),
            (
                "forced user-assigned managed identity",
                cfg(Some(ManagedIdentity), false, false, true, false),
                Ok(ManagedIdentity),
            ),
            (
                "token file wins over secret",
                cfg(None, true, true, true, true),
                Ok(WorkloadIdentity),
            ),
            (
                "secret without token file",
                cfg(None, false, true, true, true),
                Ok(ClientSecret),
            ),
            (
                "forced managed identity",
                cfg(Some(ManagedIdentity), true, true, true, true),
                Ok(ManagedIdentity),
            ),
            (
                "forced secret with both",
                cfg(Some(ClientSecret), true, true, true, true),
                Ok(ClientSecret),
            ),
            (
                "workload identity lacks ids",
                cfg(None, true, false, false, false),
                Err(vec!["AZURE_CLIENT_ID", "AZURE_TENANT_ID"]),
            ),
            (
                "secret lacks tenant",
                cfg(None, false, true, true, false),
                Err(vec!["AZURE_TENANT_ID"]),
            ),
            (
                "forced workload identity without file",
                cfg(Some(WorkloadIdentity), false, false, true, true),
                Err(vec!["AZURE_FEDERATED_TOKEN_FILE"]),
            ),
            (
                "forced secret without secret",
                cfg(Some(ClientSecret), false, false, true, true),
                Err(vec!["AZURE_CLIENT_SECRET"]),
            ),
        ];
        for (name, config, want) in cases {
            match (config.choose(), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(ConfigError::MissingAuthSetting { missing, .. }), Err(want)) => {
                    assert_eq!(missing, want, "{name}")
                }
                (Err(ConfigError::NoIdentity), Err(want)) if want.is_empty() => {}
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn auth_mode_round_trips_and_rejects_typos() {
        for m in [
            AuthMode::WorkloadIdentity,
            AuthMode::ClientSecret,
            AuthMode::ManagedIdentity,
        ] {
            assert_eq!(m.as_str().parse::<AuthMode>().unwrap(), m);
        }
        let err = "workload".parse::<AuthMode>().unwrap_err().to_string();
        assert!(
            err.contains("--auth") && err.contains("\"workload\""),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let mut c = cfg(None, false, true, true, true);
        c.client_secret = Some(Zeroizing::new("very-secret-value".to_owned()));
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn identity_label_names_the_client_or_system() {
        let c = cfg(None, false, false, false, false);
        assert_eq!(c.identity_label(AuthMode::ManagedIdentity), "system");
        let c = cfg(None, false, false, true, false);
        assert_eq!(c.identity_label(AuthMode::ManagedIdentity), "c");
    }

    #[test]
    fn the_missing_identity_message_says_how_to_give_one() {
        let err = cfg(None, false, false, false, false)
            .choose()
            .unwrap_err()
            .to_string();
        for fragment in [
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_CLIENT_SECRET",
            "azure.workload.identity/use",
            "akv-env.io/auth: managed-identity",
        ] {
            assert!(err.contains(fragment), "{err} lacks {fragment}");
        }
    }

    #[test]
    fn resolve_errors_name_the_flag() {
        let err = parse_resolve("login.microsoftonline.com=127.0.0.1:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--resolve: entry 1") && err.contains("Entra"),
            "{err}"
        );
    }
}
