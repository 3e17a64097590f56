//! Settings that decide where the pod's token goes: the identity mode, the extra CA, fixed
//! addresses, the authority and the vault host policy.
//!
//! They are flags only, with no environment fallback: the environment can be fed from
//! ConfigMaps (`envFrom`, `valueFrom`), which people may edit who may not create pods. The
//! webhook writes these flags into the wrapped container's `args`, deriving them from the
//! admitted pod spec (annotations and literal `env[].value`s).

use std::ffi::OsString;
use std::path::PathBuf;

use akv_keyvault::{AuthMode, Cloud, ConfigError, TransportConfig, VaultHosts};
use akv_placeholder::Reference;

/// Environment variables that earlier versions read and that now only the webhook may turn
/// into flags; set in the environment alone they are ignored (with a warning).
const IGNORED_ENV: &[(&str, &str)] = &[
    ("AKV_ENV_AUTH", "--auth (pod annotation akv-env.io/auth)"),
    ("AKV_ENV_CA_FILE", "--ca-file"),
    ("AKV_ENV_RESOLVE", "--resolve"),
];

#[derive(clap::Args, Debug, Default)]
#[command(
    next_help_heading = "Where the token goes (flags only; the webhook sets them from the pod spec)"
)]
pub struct Trust {
    /// Identity: workload-identity, client-secret or managed-identity. Without it: workload
    /// identity if AZURE_FEDERATED_TOKEN_FILE is set, else a service principal if
    /// AZURE_CLIENT_SECRET is set, else exit 1 before any connection (managed identity, on AKS
    /// the node's, is used only when chosen here). Not read from AKV_ENV_AUTH.
    #[arg(long, value_name = "MODE", value_parser = parse_auth)]
    pub auth: Option<AuthMode>,

    /// PEM file of extra CAs to trust besides the built-in roots (private endpoints, tests);
    /// repeatable (the cluster's CA bundle and the pod's own file add up). Not read from
    /// AKV_ENV_CA_FILE.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Vec<PathBuf>,

    /// Fixed addresses for host names without DNS: "host=ip:port,host2=ip:port". Never for
    /// Microsoft Entra ID's hosts or IMDS. Not read from AKV_ENV_RESOLVE.
    #[arg(long, value_name = "MAP")]
    pub resolve: Option<String>,

    /// Microsoft Entra authority, e.g. https://login.microsoftonline.us. Without it,
    /// AZURE_AUTHORITY_HOST is used if it names one of Entra's own hosts.
    #[arg(long, value_name = "URL")]
    pub authority_host: Option<String>,

    /// Vault host suffix allowed besides Key Vault's and Managed HSM's (vault.azure.net,
    /// vault.azure.cn, vault.usgovcloudapi.net, managedhsm.*); repeatable. Port 443 only.
    #[arg(long = "vault-host-suffix", value_name = "SUFFIX")]
    pub vault_host_suffixes: Vec<String>,

    /// The cloud, pinned by the operator: AzurePublicCloud, AzureChinaCloud, AzureUSGovernment
    /// or a vault DNS suffix. Bare vault names take its suffix (kv1 -> kv1.vault.azure.cn), the
    /// authority is its Entra host unless --authority-host says otherwise, and only its vault
    /// domains (plus --vault-host-suffix) are vaults. Without it: every cloud's vaults, bare
    /// names in the public cloud, the authority from AZURE_AUTHORITY_HOST.
    #[arg(long, value_name = "CLOUD", value_parser = parse_cloud)]
    pub cloud: Option<Cloud>,
}

fn parse_cloud(text: &str) -> Result<Cloud, String> {
    Cloud::parse(text).map_err(|e| e.to_string())
}

fn parse_auth(text: &str) -> Result<AuthMode, String> {
    text.parse::<AuthMode>().map_err(|e| e.to_string())
}

impl Trust {
    /// The HTTPS client's settings: the CA file and the fixed-address map (checked: never
    /// Entra's hosts or IMDS).
    pub fn transport(&self) -> Result<TransportConfig, ConfigError> {
        let mut files = self
            .ca_file
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .cloned();
        Ok(TransportConfig {
            ca_file: files.next(),
            extra_ca_files: files.collect(),
            resolve: akv_keyvault::parse_resolve(self.resolve.as_deref().unwrap_or(""))?,
            ..Default::default()
        })
    }

    /// The authority: `--authority-host`, else the `--cloud`'s Entra host, else an Entra host
    /// from `AZURE_AUTHORITY_HOST`.
    pub fn authority(&self, env_value: Option<&str>) -> Result<Option<String>, ConfigError> {
        akv_keyvault::choose_authority_in(
            self.authority_host.as_deref(),
            self.cloud.as_ref(),
            env_value,
        )
    }

    /// Key Vault's and Managed HSM's domains plus `--vault-host-suffix`, pinned to `--cloud`.
    /// An operator's own suffix as the cloud must also be given as `--vault-host-suffix` (the
    /// webhook passes both), so the cloud flag alone cannot widen what is a vault.
    pub fn vault_hosts(&self) -> Result<VaultHosts, ConfigError> {
        let hosts = VaultHosts::with_extra_suffixes(&self.vault_host_suffixes)
            .map_err(ConfigError::VaultHosts)?;
        if let Some(Cloud::Suffix(s)) = &self.cloud
            && !hosts.extra_suffixes().contains(s)
        {
            return Err(ConfigError::Cloud(akv_keyvault::CloudError {
                value: s.clone(),
                why: "an operator's own suffix must also be allowed with --vault-host-suffix"
                    .to_owned(),
            }));
        }
        Ok(hosts.pinned_to(self.cloud.clone()))
    }

    /// `reference` with a bare vault name completed with the cloud's suffix, so that what is
    /// contacted (and named in errors) is the cloud's host. Without `--cloud`, unchanged.
    pub fn in_cloud(&self, reference: &Reference) -> Reference {
        let mut r = reference.clone();
        if let Some(cloud) = &self.cloud {
            r.vault = r.vault.map(|v| v.in_suffix(cloud.vault_suffix()));
        }
        r
    }

    /// The default vault, completed like [`Self::in_cloud`].
    pub fn vault_in_cloud(&self, vault: akv_placeholder::Vault) -> akv_placeholder::Vault {
        match &self.cloud {
            Some(cloud) => vault.in_suffix(cloud.vault_suffix()),
            None => vault,
        }
    }

    /// Warnings for trust settings found in the environment with another value than the flag
    /// (or without one): they have no effect, and whoever set them should know. A literal value
    /// in the pod spec becomes the same flag, so it draws no warning.
    pub fn ignored_env(&self, env: &[(OsString, OsString)]) -> Vec<String> {
        IGNORED_ENV
            .iter()
            .filter(|(name, _)| {
                let Some((_, value)) = env.iter().find(|(n, v)| n == name && !v.is_empty()) else {
                    return false;
                };
                let flags: Vec<OsString> = match *name {
                    "AKV_ENV_AUTH" => self.auth.map(|a| a.as_str().into()).into_iter().collect(),
                    "AKV_ENV_CA_FILE" => self.ca_file.iter().cloned().map(Into::into).collect(),
                    _ => self.resolve.clone().map(Into::into).into_iter().collect(),
                };
                !flags.contains(value)
            })
            .map(|(name, flag)| {
                format!(
                    "{name} in the environment is ignored: it decides where the pod's token \
                     goes, so only {flag}, which the webhook derives from the admitted pod spec, \
                     sets it (a literal env value in the pod spec is turned into the flag; one \
                     from a ConfigMap is not)"
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), OsString::from(v)))
            .collect()
    }

    #[test]
    fn trust_settings_in_the_environment_are_reported_as_ignored() {
        let none = Trust::default();
        let flagged = Trust {
            ca_file: vec!["/akv-env/bin/ca-bundle.pem".into(), "/x".into()],
            resolve: Some("a.vault.azure.net=1.2.3.4:443".into()),
            ..Default::default()
        };
        let all = env(&[
            ("AKV_ENV_CA_FILE", "/x"),
            ("AKV_ENV_RESOLVE", "a=1.2.3.4:1"),
            ("AKV_ENV_AUTH", "managed-identity"),
            ("AKV_ENV_TIMEOUT", "5s"),
        ]);
        let names = |t: &Trust, e: &[(OsString, OsString)]| -> Vec<String> {
            t.ignored_env(e)
                .iter()
                .map(|w| w.split(' ').next().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names(&none, &all),
            ["AKV_ENV_AUTH", "AKV_ENV_CA_FILE", "AKV_ENV_RESOLVE"]
        );
        // Same value as the flag (a literal in the spec): fine; another value: ignored.
        assert_eq!(names(&flagged, &all), ["AKV_ENV_AUTH", "AKV_ENV_RESOLVE"]);
        assert!(names(&none, &env(&[("AKV_ENV_RESOLVE", "")])).is_empty());
    }

    #[test]
    fn flags_are_checked() {
        let t = Trust {
            resolve: Some("login.microsoftonline.com=127.0.0.1:1".into()),
            ..Default::default()
        };
        assert!(t.transport().unwrap_err().to_string().contains("Entra"));
        let t = Trust {
            vault_host_suffixes: vec!["test".into()],
            ..Default::default()
        };
        assert!(
            t.vault_hosts()
                .unwrap_err()
                .to_string()
                .starts_with("--vault-host-suffix: ")
        );
        let t = Trust::default();
        assert!(
            t.authority(Some("https://login.evil.example"))
                .unwrap_err()
                .to_string()
                .contains("not a Microsoft Entra ID authority")
        );
    }
}
