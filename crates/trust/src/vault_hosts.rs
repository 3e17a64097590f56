//! Which hosts are vaults: Key Vault and Managed HSM domains, port 443.

use akv_placeholder::{ObjectKind, Vault};

use crate::cloud::Cloud;

/// Key Vault's DNS suffixes: public cloud, Azure China, Azure US Government.
pub const KEY_VAULT_SUFFIXES: &[&str] = &[
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
];

/// Managed HSM's DNS suffixes, same clouds. Managed HSM holds keys only.
pub const MANAGED_HSM_SUFFIXES: &[&str] = &[
    "managedhsm.azure.net",
    "managedhsm.azure.cn",
    "managedhsm.usgovcloudapi.net",
];

/// The vault host policy: the built-in suffixes plus the operator's extra ones.
///
/// A vault host is exactly one label (the vault's name) followed by an allowed suffix, on port
/// 443. Extra suffixes are for test rigs and clouds this list does not know yet. Pinned to a
/// cloud ([`VaultHosts::pinned_to`]), bare names take that cloud's suffix and the other clouds'
/// domains are refused (the extra suffixes stay allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultHosts {
    extra: Vec<String>,
    cloud: Option<Cloud>,
}

/// A vault that the policy refuses, or an extra suffix that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error(
        "{url} is not a Key Vault or Managed HSM host: its domain must be one of {allowed} \
         (an operator can allow more with the webhook's --vault-host-suffix)"
    )]
    NotAVault { url: String, allowed: String },
    #[error("{url}: Key Vault is reached on port 443 only; remove the port")]
    Port { url: String },
    #[error(
        "{url} is a Managed HSM, which holds keys only: a {kind} cannot be read from it; use \
         type=key, or a Key Vault for secrets and certificates"
    )]
    ManagedHsmKind { url: String, kind: ObjectKind },
    #[error(
        "{url} is a vault of {vault_cloud}, but vaults here are in {cloud} (pinned by the \
         operator); use a vault of {cloud}, or a bare vault name"
    )]
    OtherCloud {
        url: String,
        vault_cloud: Cloud,
        cloud: Cloud,
    },
    #[error("vault host suffix {suffix:?}: {why}")]
    BadSuffix { suffix: String, why: &'static str },
}

impl VaultHosts {
    /// The built-in suffixes plus `extra` (each validated by [`validate_suffix`]).
    pub fn with_extra_suffixes<I, S>(extra: I) -> Result<Self, HostError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut hosts = VaultHosts::default();
        for suffix in extra {
            let suffix = validate_suffix(suffix.as_ref())?;
            if !hosts.suffixes().any(|s| s == suffix) {
                hosts.extra.push(suffix);
            }
        }
        Ok(hosts)
    }

    /// Pins the policy to `cloud` (none: every cloud, bare names in the public cloud). An
    /// operator's own suffix as the cloud is allowed as if added with `--vault-host-suffix`.
    pub fn pinned_to(mut self, cloud: Option<Cloud>) -> Self {
        if let Some(Cloud::Suffix(s)) = &cloud
            && !self.extra.contains(s)
        {
            self.extra.push(s.clone());
        }
        self.cloud = cloud;
        self
    }

    /// The cloud the policy is pinned to, if any.
    pub fn cloud(&self) -> Option<&Cloud> {
        self.cloud.as_ref()
    }

    /// The suffix completing bare vault names: the pinned cloud's, else the public cloud's.
    pub fn bare_name_suffix(&self) -> &str {
        self.cloud.as_ref().unwrap_or(&Cloud::Public).vault_suffix()
    }

    /// The URL the injector contacts for `vault` (a bare name completed with
    /// [`Self::bare_name_suffix`]).
    pub fn url_of(&self, vault: &Vault) -> String {
        vault.url_in(self.bare_name_suffix())
    }

    /// The operator's extra suffixes, normalised (lower case, no leading dot).
    pub fn extra_suffixes(&self) -> &[String] {
        &self.extra
    }

    /// Every allowed suffix: Key Vault's, Managed HSM's (only the pinned cloud's, when pinned),
    /// then the extra ones.
    pub fn suffixes(&self) -> impl Iterator<Item = &str> {
        KEY_VAULT_SUFFIXES
            .iter()
            .chain(MANAGED_HSM_SUFFIXES)
            .copied()
            .filter(|s| {
                self.cloud
                    .as_ref()
                    .is_none_or(|c| c.suffixes().any(|cs| cs == *s))
            })
            .chain(self.extra.iter().map(String::as_str))
    }

    /// Whether a token for `scope` may be requested: only `https://<allowed suffix>/.default`,
    /// the audience Key Vault's challenge names for its own hosts. A vault (or something
    /// posing as one) that asks for a token of another resource gets none.
    pub fn allows_scope(&self, scope: &str) -> bool {
        scope
            .strip_prefix("https://")
            .and_then(|s| s.strip_suffix("/.default"))
            .is_some_and(|host| self.suffixes().any(|s| s.eq_ignore_ascii_case(host)))
    }

    /// Checks that `vault` is a vault host on port 443 and, for Managed HSM, that `kind` is a
    /// key.
    pub fn check(&self, vault: &Vault, kind: ObjectKind) -> Result<(), HostError> {
        let url = self.url_of(vault);
        let authority = url.strip_prefix("https://").unwrap_or(&url);
        // `Vault::url` drops `:443`, so any port left is another one.
        if authority.contains(':') {
            return Err(HostError::Port { url });
        }
        let host = authority.to_ascii_lowercase();
        let suffix = host
            .split_once('.')
            .map(|(_, rest)| rest)
            .filter(|rest| self.suffixes().any(|s| s == *rest));
        if let (None, Some(cloud)) = (suffix, &self.cloud)
            && let Some(vault_cloud) = Cloud::of_host(&host)
        {
            return Err(HostError::OtherCloud {
                url,
                vault_cloud,
                cloud: cloud.clone(),
            });
        }
        match suffix {
            None => Err(HostError::NotAVault {
                url,
                allowed: self.suffixes().collect::<Vec<_>>().join(", "),
            }),
            Some(s) if MANAGED_HSM_SUFFIXES.contains(&s) && kind != ObjectKind::Key => {
                Err(HostError::ManagedHsmKind { url, kind })
            }
            Some(_) => Ok(()),
        }
    }
}

/// Normalises an extra vault host suffix (`.Vault.Example.test` -> `vault.example.test`) and
/// checks it is a DNS name of at least two labels: one label would make a whole top-level
/// domain a vault.
pub fn validate_suffix(suffix: &str) -> Result<String, HostError> {
    let bad = |why| HostError::BadSuffix {
        suffix: suffix.to_owned(),
        why,
    };
    let s = suffix.trim().trim_start_matches('.').to_ascii_lowercase();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(bad(
            "only letters, digits, '-' and '.' may appear in a DNS suffix",
        ));
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) {
        return Err(bad("a DNS label is empty or longer than 63 characters"));
    }
    if labels.len() < 2 {
        return Err(bad(
            "it needs at least two labels (e.g. vault.example.test)",
        ));
    }
    if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(bad("it is an IP address, not a DNS suffix"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_hosts_by_domain_port_and_kind() {
        use ObjectKind::*;
        let extra = VaultHosts::with_extra_suffixes(["vault.test"]).unwrap();
        let default = VaultHosts::default();
        // (case, policy, vault, kind, Ok or a fragment of the error)
        type Case<'a> = (
            &'a str,
            &'a VaultHosts,
            &'a str,
            ObjectKind,
            Result<(), &'a str>,
        );
        let cases: &[Case] = &[
            ("bare name", &default, "kv1", Secret, Ok(())),
            (
                "public",
                &default,
                "https://kv1.vault.azure.net",
                Certificate,
                Ok(()),
            ),
            (
                "china",
                &default,
                "https://kv1.vault.azure.cn/",
                Secret,
                Ok(()),
            ),
            (
                "us gov",
                &default,
                "https://kv1.vault.usgovcloudapi.net",
                Key,
                Ok(()),
            ),
            (
                "explicit 443",
                &default,
                "https://kv1.vault.azure.net:443",
                Secret,
                Ok(()),
            ),
            (
                "upper case",
                &default,
                "https://KV1.Vault.Azure.Net",
                Secret,
                Ok(()),
            ),
            (
                "hsm key",
                &default,
                "https://hsm1.managedhsm.azure.net",
                Key,
                Ok(()),
            ),
            (
                "hsm key cn",
                &default,
                "https://hsm1.managedhsm.azure.cn",
                Key,
                Ok(()),
            ),
            (
                "hsm secret",
                &default,
                "https://hsm1.managedhsm.azure.net",
                Secret,
                Err("holds keys only: a secret cannot"),
            ),
            (
                "hsm certificate",
                &default,
                "https://hsm1.managedhsm.usgovcloudapi.net",
                Certificate,
                Err("a certificate cannot"),
            ),
            (
                "other domain",
                &default,
                "https://kv1.example.com",
                Secret,
                Err("https://kv1.example.com is not a Key Vault or Managed HSM host"),
            ),
            (
                "look-alike",
                &default,
                "https://kv1.vault.azure.net.evil.example",
                Secret,
                Err("is not a Key Vault"),
            ),
            (
                "two labels before",
                &default,
                "https://kv1.x.vault.azure.net",
                Secret,
                Err("is not a Key Vault"),
            ),
            (
                "suffix lookalike",
                &default,
                "https://kv1.myvault.azure.net",
                Secret,
                Err("is not a Key Vault"),
            ),
            (
                "other port",
                &default,
                "https://kv1.vault.azure.net:8443",
                Secret,
                Err("port 443 only"),
            ),
            (
                "extra not allowed by default",
                &default,
                "https://kv1.vault.test",
                Secret,
                Err("--vault-host-suffix"),
            ),
            (
                "extra allowed",
                &extra,
                "https://kv1.vault.test",
                Secret,
                Ok(()),
            ),
            (
                "extra: still one label",
                &extra,
                "https://abc.kv1.vault.test",
                Secret,
                Err("is not a Key Vault"),
            ),
            (
                "extra: still port 443",
                &extra,
                "https://kv1.vault.test:9443",
                Secret,
                Err("port 443"),
            ),
        ];
        for (case, policy, vault, kind, want) in cases {
            let vault = Vault::parse(vault).unwrap_or_else(|e| panic!("{case}: {e}"));
            match (policy.check(&vault, *kind), want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{case}: {e}")
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_refusal_lists_every_allowed_domain() {
        let e = VaultHosts::default()
            .check(
                &Vault::parse("https://kv1.example.com").unwrap(),
                ObjectKind::Secret,
            )
            .unwrap_err()
            .to_string();
        for suffix in KEY_VAULT_SUFFIXES.iter().chain(MANAGED_HSM_SUFFIXES) {
            assert!(e.contains(suffix), "{e} lacks {suffix}");
        }
    }

    #[test]
    fn extra_suffixes_are_normalised_and_checked() {
        let hosts =
            VaultHosts::with_extra_suffixes([".Vault.Test", "vault.test", "vault.azure.net"])
                .unwrap();
        assert_eq!(hosts.extra_suffixes(), ["vault.test"]);
        let bad = [
            ("", "empty"),
            ("test", "at least two labels"),
            ("vault..test", "empty"),
            ("vault test", "only letters"),
            ("10.0.0.1", "IP address"),
            ("vault/test", "only letters"),
        ];
        for (suffix, want) in bad {
            let e = validate_suffix(suffix).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains(&format!("{suffix:?}")),
                "{suffix:?}: {e}"
            );
        }
    }

    #[test]
    fn a_pinned_cloud_completes_bare_names_and_refuses_other_clouds() {
        use ObjectKind::*;
        let china = VaultHosts::default().pinned_to(Some(Cloud::China));
        let gov = VaultHosts::with_extra_suffixes(["vault.test"])
            .unwrap()
            .pinned_to(Some(Cloud::UsGovernment));
        let own =
            VaultHosts::default().pinned_to(Some(Cloud::parse("vault.example.test").unwrap()));
        let open = VaultHosts::default();
        // (case, policy, vault, kind, Ok(url contacted) or a fragment of the error)
        type Case<'a> = (
            &'a str,
            &'a VaultHosts,
            &'a str,
            ObjectKind,
            Result<&'a str, &'a str>,
        );
        let cases: &[Case] = &[
            (
                "bare, open",
                &open,
                "kv1",
                Secret,
                Ok("https://kv1.vault.azure.net"),
            ),
            (
                "bare, china",
                &china,
                "kv1",
                Secret,
                Ok("https://kv1.vault.azure.cn"),
            ),
            (
                "bare, gov",
                &gov,
                "KV1",
                Key,
                Ok("https://kv1.vault.usgovcloudapi.net"),
            ),
            (
                "bare, own suffix",
                &own,
                "kv1",
                Secret,
                Ok("https://kv1.vault.example.test"),
            ),
            (
                "china url, china",
                &china,
                "https://kv1.vault.azure.cn",
                Secret,
                Ok("https://kv1.vault.azure.cn"),
            ),
            (
                "china hsm, china",
                &china,
                "https://hsm1.managedhsm.azure.cn",
                Key,
                Ok("https://hsm1.managedhsm.azure.cn"),
            ),
            (
                "public url, open",
                &open,
                "https://kv1.vault.azure.net",
                Secret,
                Ok("https://kv1.vault.azure.net"),
            ),
            (
                "extra suffix stays allowed",
                &gov,
                "https://kv1.vault.test",
                Secret,
                Ok("https://kv1.vault.test"),
            ),
            (
                "public url, china",
                &china,
                "https://kv1.vault.azure.net",
                Secret,
                Err(
                    "https://kv1.vault.azure.net is a vault of AzurePublicCloud, but vaults here are in AzureChinaCloud",
                ),
            ),
            (
                "public hsm, gov",
                &gov,
                "https://hsm1.managedhsm.azure.net",
                Key,
                Err("is a vault of AzurePublicCloud, but vaults here are in AzureUSGovernment"),
            ),
            (
                "china url, own suffix",
                &own,
                "https://kv1.vault.azure.cn",
                Secret,
                Err("is a vault of AzureChinaCloud, but vaults here are in vault.example.test"),
            ),
            (
                "elsewhere, china",
                &china,
                "https://kv1.example.com",
                Secret,
                Err("is not a Key Vault or Managed HSM host"),
            ),
        ];
        for (case, policy, vault, kind, want) in cases {
            let vault = Vault::parse(vault).unwrap_or_else(|e| panic!("{case}: {e}"));
            match (policy.check(&vault, *kind), want) {
                (Ok(()), Ok(url)) => assert_eq!(policy.url_of(&vault), *url, "{case}"),
                (Err(e), Err(fragment)) => {
                    assert!(e.to_string().contains(fragment), "{case}: {e}")
                }
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
        // Tokens only for the pinned cloud's audiences (and the extra suffixes).
        for (policy, scope, ok) in [
            (&china, "https://vault.azure.cn/.default", true),
            (&china, "https://managedhsm.azure.cn/.default", true),
            (&china, "https://vault.azure.net/.default", false),
            (&gov, "https://vault.usgovcloudapi.net/.default", true),
            (&gov, "https://vault.test/.default", true),
            (&gov, "https://vault.azure.cn/.default", false),
            (&own, "https://vault.example.test/.default", true),
            (&own, "https://vault.azure.net/.default", false),
            (&open, "https://vault.azure.cn/.default", true),
        ] {
            assert_eq!(
                policy.allows_scope(scope),
                ok,
                "{scope} in {:?}",
                policy.cloud()
            );
        }
    }

    #[test]
    fn tokens_only_for_key_vault_resources() {
        let extra = VaultHosts::with_extra_suffixes(["vault.test"]).unwrap();
        let cases = [
            ("https://vault.azure.net/.default", true, true),
            ("https://vault.azure.cn/.default", true, true),
            ("https://managedhsm.azure.net/.default", true, true),
            ("https://vault.test/.default", false, true),
            ("https://management.azure.com/.default", false, false),
            ("https://graph.microsoft.com/.default", false, false),
            ("https://storage.azure.com/.default", false, false),
            ("https://azure.net/.default", false, false),
            ("https://vault.azure.net", false, false),
            ("http://vault.azure.net/.default", false, false),
            ("https://evil.vault.azure.net/.default", false, false),
        ];
        for (scope, default_ok, extra_ok) in cases {
            assert_eq!(
                VaultHosts::default().allows_scope(scope),
                default_ok,
                "{scope}"
            );
            assert_eq!(
                extra.allows_scope(scope),
                extra_ok,
                "{scope} with vault.test"
            );
        }
    }
}
