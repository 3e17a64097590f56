//! Azure clouds: which Key Vault suffix a bare vault name gets, which Microsoft Entra authority
//! signs tokens, and which token audience (scope) a vault of the cloud may ask for.
//!
//! The names are those of Azure's SDKs and the `az` CLI (`AzurePublicCloud`, `AzureChinaCloud`,
//! `AzureUSGovernment`); a Key Vault DNS suffix is accepted too (`vault.azure.cn` is Azure
//! China; another suffix is a cloud of its own, for private clouds and test rigs, with no
//! built-in authority).

use std::fmt;

use crate::vault_hosts::validate_suffix;

/// A cloud: one of Azure's, or a vault DNS suffix of an operator's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// `AzurePublicCloud`: `vault.azure.net`, `login.microsoftonline.com`.
    Public,
    /// `AzureChinaCloud` (21Vianet): `vault.azure.cn`, `login.chinacloudapi.cn`.
    China,
    /// `AzureUSGovernment`: `vault.usgovcloudapi.net`, `login.microsoftonline.us`.
    UsGovernment,
    /// A vault DNS suffix of the operator's (normalised, e.g. `vault.example.test`): bare
    /// names get it; the authority must come from elsewhere.
    Suffix(String),
}

/// The built-in clouds, in the order messages list them.
pub const AZURE_CLOUDS: &[Cloud] = &[Cloud::Public, Cloud::China, Cloud::UsGovernment];

/// A cloud setting that names no cloud.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a cloud: use AzurePublicCloud, AzureChinaCloud or AzureUSGovernment, or a \
     Key Vault DNS suffix such as vault.azure.cn ({why})"
)]
pub struct CloudError {
    pub value: String,
    pub why: String,
}

impl Cloud {
    /// Parses a cloud name (case-insensitive; `AzureCloud` is the `az` CLI's name for the public
    /// cloud) or a vault DNS suffix (a built-in one maps to its cloud).
    pub fn parse(text: &str) -> Result<Cloud, CloudError> {
        let t = text.trim();
        let by_name = [
            ("AzurePublicCloud", Cloud::Public),
            ("AzureCloud", Cloud::Public),
            ("AzureChinaCloud", Cloud::China),
            ("AzureUSGovernment", Cloud::UsGovernment),
            ("AzureUSGovernmentCloud", Cloud::UsGovernment),
        ];
        if let Some((_, cloud)) = by_name.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
            return Ok(cloud.clone());
        }
        if !t.contains('.') {
            return Err(CloudError {
                value: text.to_owned(),
                why: "unknown name".to_owned(),
            });
        }
        let suffix = validate_suffix(t).map_err(|e| CloudError {
            value: text.to_owned(),
            why: e.to_string(),
        })?;
        Ok(AZURE_CLOUDS
            .iter()
            .find(|c| c.vault_suffix() == suffix || c.managed_hsm_suffix() == Some(&suffix))
            .cloned()
            .unwrap_or(Cloud::Suffix(suffix)))
    }

    /// The spelling of `--cloud` and the `akv-env.io/cloud` annotation.
    pub fn name(&self) -> &str {
        match self {
            Cloud::Public => "AzurePublicCloud",
            Cloud::China => "AzureChinaCloud",
            Cloud::UsGovernment => "AzureUSGovernment",
            Cloud::Suffix(s) => s,
        }
    }

    /// Key Vault's DNS suffix in this cloud: what a bare vault name is completed with.
    pub fn vault_suffix(&self) -> &str {
        match self {
            Cloud::Public => "vault.azure.net",
            Cloud::China => "vault.azure.cn",
            Cloud::UsGovernment => "vault.usgovcloudapi.net",
            Cloud::Suffix(s) => s,
        }
    }

    /// Managed HSM's DNS suffix in this cloud, if it has one.
    pub fn managed_hsm_suffix(&self) -> Option<&'static str> {
        match self {
            Cloud::Public => Some("managedhsm.azure.net"),
            Cloud::China => Some("managedhsm.azure.cn"),
            Cloud::UsGovernment => Some("managedhsm.usgovcloudapi.net"),
            Cloud::Suffix(_) => None,
        }
    }

    /// The vault suffixes of this cloud (Key Vault, then Managed HSM).
    pub fn suffixes(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.vault_suffix()).chain(self.managed_hsm_suffix())
    }

    /// Microsoft Entra ID's authority for this cloud (`None` for an operator's suffix).
    pub fn authority_host(&self) -> Option<&'static str> {
        match self {
            Cloud::Public => Some("https://login.microsoftonline.com"),
            Cloud::China => Some("https://login.chinacloudapi.cn"),
            Cloud::UsGovernment => Some("https://login.microsoftonline.us"),
            Cloud::Suffix(_) => None,
        }
    }

    /// The token scopes a vault of this cloud may ask for: `https://<suffix>/.default` for
    /// Key Vault and Managed HSM.
    pub fn scopes(&self) -> Vec<String> {
        self.suffixes()
            .map(|s| format!("https://{s}/.default"))
            .collect()
    }

    /// The built-in cloud a vault host belongs to (`kv1.vault.azure.cn` -> China), by suffix.
    pub fn of_host(host: &str) -> Option<Cloud> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let (_, rest) = host.split_once('.')?;
        AZURE_CLOUDS
            .iter()
            .find(|c| c.suffixes().any(|s| s == rest))
            .cloned()
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cloud {
    type Err = CloudError;
    fn from_str(s: &str) -> Result<Cloud, CloudError> {
        Cloud::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cloud_has_its_suffix_authority_and_scopes() {
        // (setting, name, vault suffix, authority, scopes)
        type Case = (
            &'static str,
            &'static str,
            &'static str,
            Option<&'static str>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (
                "AzurePublicCloud",
                "AzurePublicCloud",
                "vault.azure.net",
                Some("https://login.microsoftonline.com"),
                &[
                    "https://vault.azure.net/.default",
                    "https://managedhsm.azure.net/.default",
                ],
            ),
            (
                "azurecloud",
                "AzurePublicCloud",
                "vault.azure.net",
                Some("https://login.microsoftonline.com"),
                &[
                    "https://vault.azure.net/.default",
                    "https://managedhsm.azure.net/.default",
                ],
            ),
            (
                "AzureChinaCloud",
                "AzureChinaCloud",
                "vault.azure.cn",
                Some("https://login.chinacloudapi.cn"),
                &[
                    "https://vault.azure.cn/.default",
                    "https://managedhsm.azure.cn/.default",
                ],
            ),
            (
                " vault.azure.cn ",
                "AzureChinaCloud",
                "vault.azure.cn",
                Some("https://login.chinacloudapi.cn"),
                &[
                    "https://vault.azure.cn/.default",
                    "https://managedhsm.azure.cn/.default",
                ],
            ),
            (
                "AzureUSGovernment",
                "AzureUSGovernment",
                "vault.usgovcloudapi.net",
                Some("https://login.microsoftonline.us"),
                &[
                    "https://vault.usgovcloudapi.net/.default",
                    "https://managedhsm.usgovcloudapi.net/.default",
                ],
            ),
            (
                "managedhsm.usgovcloudapi.net",
                "AzureUSGovernment",
                "vault.usgovcloudapi.net",
                Some("https://login.microsoftonline.us"),
                &[
                    "https://vault.usgovcloudapi.net/.default",
                    "https://managedhsm.usgovcloudapi.net/.default",
                ],
            ),
            (
                ".Vault.Example.Test",
                "vault.example.test",
                "vault.example.test",
                None,
                &["https://vault.example.test/.default"],
            ),
        ];
        for (setting, name, suffix, authority, scopes) in cases {
            let cloud = Cloud::parse(setting).unwrap_or_else(|e| panic!("{setting}: {e}"));
            assert_eq!(cloud.name(), *name, "{setting}");
            assert_eq!(cloud.vault_suffix(), *suffix, "{setting}");
            assert_eq!(cloud.authority_host(), *authority, "{setting}");
            assert_eq!(cloud.scopes(), *scopes, "{setting}");
            assert_eq!(Cloud::parse(cloud.name()).unwrap(), cloud, "{setting}");
        }
    }

    #[test]
    fn settings_that_name_no_cloud_are_refused() {
        for (setting, fragment) in [
            ("AzureGermanCloud", "unknown name"),
            ("", "unknown name"),
            ("china", "unknown name"),
            ("test", "unknown name"),
            ("vault..test", "empty"),
            ("10.0.0.1", "IP address"),
        ] {
            let e = Cloud::parse(setting).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{setting:?} is not a cloud")) && e.contains(fragment),
                "{setting:?}: {e}"
            );
        }
    }

    #[test]
    fn vault_hosts_belong_to_their_cloud() {
        let cases = [
            ("kv1.vault.azure.net", Some(Cloud::Public)),
            ("KV1.Vault.Azure.CN.", Some(Cloud::China)),
            (
                "hsm.managedhsm.usgovcloudapi.net",
                Some(Cloud::UsGovernment),
            ),
            ("hsm.managedhsm.azure.cn", Some(Cloud::China)),
            ("kv1.vault.test", None),
            ("vault.azure.net", None),
            ("kv1.x.vault.azure.net", None),
        ];
        for (host, want) in cases {
            assert_eq!(Cloud::of_host(host), want, "{host}");
        }
    }
}
