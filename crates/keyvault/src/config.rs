//! Explicit configuration: which identity to use and how to reach Key Vault.
//!
//! The binary reads the environment once and fills these structs; nothing below reads env vars
//! itself (except what the SDK's managed-identity credential reads to find its endpoint).

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

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
    /// The spelling used by `AKV_ENV_AUTH`.
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
    /// `AKV_ENV_AUTH`: use exactly this mode instead of choosing.
    pub forced: Option<AuthMode>,
    /// `AZURE_TENANT_ID`.
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_ID`; for managed identity, selects a user-assigned identity.
    pub client_id: Option<String>,
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_CLIENT_SECRET`. Wiped on drop.
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    /// `AZURE_AUTHORITY_HOST`, e.g. `https://login.microsoftonline.com`.
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
    /// Picks the mode in DESIGN order (workload identity, client secret, managed identity) unless
    /// one is forced, and checks that the settings it needs are present.
    pub fn choose(&self) -> Result<AuthMode, ConfigError> {
        let mode = self
            .forced
            .unwrap_or(if self.federated_token_file.is_some() {
                AuthMode::WorkloadIdentity
            } else if self.client_secret.is_some() {
                AuthMode::ClientSecret
            } else {
                AuthMode::ManagedIdentity
            });
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
    /// `AKV_ENV_CA_FILE`: PEM file with extra trust anchors, added to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// `AKV_ENV_RESOLVE`: fixed host-to-address mappings that bypass DNS.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Upper bound for establishing one TCP+TLS connection.
    pub connect_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            ca_file: None,
            resolve: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Parses `AKV_ENV_RESOLVE`: `host=ip:port[,host2=ip:port]` (IPv6 as `[::1]:443`).
/// Meant for private endpoints without DNS, and for tests.
pub fn parse_resolve(text: &str) -> Result<Vec<(String, SocketAddr)>, ConfigError> {
    let mut out = Vec::new();
    for (i, entry) in text.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let bad = |why: &str| ConfigError::BadResolve {
            entry: entry.to_owned(),
            index: i + 1,
            why: why.to_owned(),
        };
        let (host, addr) = entry
            .split_once('=')
            .ok_or_else(|| bad("expected host=ip:port"))?;
        let host = host.trim();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(bad("the host must be a DNS name"));
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| bad("the address must be ip:port, e.g. 10.0.0.4:443"))?;
        out.push((host.to_ascii_lowercase(), addr));
    }
    Ok(out)
}

/// A setting that cannot work; names the variable and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "AKV_ENV_AUTH: unknown mode {0:?}; use workload-identity, client-secret or managed-identity"
    )]
    UnknownAuthMode(String),
    #[error("{mode} authentication needs {}", missing.join(", "))]
    MissingAuthSetting {
        mode: AuthMode,
        missing: Vec<&'static str>,
    },
    #[error("AKV_ENV_RESOLVE: entry {index} ({entry:?}): {why}")]
    BadResolve {
        entry: String,
        index: usize,
        why: String,
    },
    #[error("AKV_ENV_CA_FILE: cannot read {path}: {source}")]
    CaFileRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("AKV_ENV_CA_FILE: {path}: {why}")]
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
        type Case = (
            &'static str,
            AuthConfig,
            Result<AuthMode, Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing set: managed identity",
                cfg(None, false, false, false, false),
                Ok(ManagedIdentity),
            ),
            (
                "user-assigned managed identity",
                cfg(None, false, false, true, false),
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
            err.contains("AKV_ENV_AUTH") && err.contains("\"workload\""),
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
    fn parses_resolve_overrides() {
        let ok: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            (
                "myvault.vault.azure.net=127.0.0.1:8443",
                &[("myvault.vault.azure.net", "127.0.0.1:8443")],
            ),
            (
                " A.vault.azure.net=10.0.0.4:443 , login.test=[::1]:9000,",
                &[
                    ("a.vault.azure.net", "10.0.0.4:443"),
                    ("login.test", "[::1]:9000"),
                ],
            ),
        ];
        for (text, want) in ok {
            let got = parse_resolve(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let want: Vec<(String, SocketAddr)> = want
                .iter()
                .map(|(h, a)| (h.to_string(), a.parse().unwrap()))
                .collect();
            assert_eq!(got, want, "{text:?}");
        }
        let bad: &[(&str, &str)] = &[
            (
                "myvault.vault.azure.net",
                "entry 1 (\"myvault.vault.azure.net\"): expected host=ip:port",
            ),
            (
                "a=1.2.3.4:1,b=localhost:80",
                "entry 2 (\"b=localhost:80\"): the address must be ip:port",
            ),
            ("a b=1.2.3.4:1", "the host must be a DNS name"),
            ("a=1.2.3.4", "the address must be ip:port"),
        ];
        for (text, want) in bad {
            let err = parse_resolve(text).unwrap_err().to_string();
            assert!(err.starts_with("AKV_ENV_RESOLVE: "), "{text:?}: {err}");
            assert!(err.contains(want), "{text:?}: {err} (want {want})");
        }
    }
}
