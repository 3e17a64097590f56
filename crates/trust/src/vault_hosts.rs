//! Which hosts are vaults: Key Vault and Managed HSM domains, port 443.

use akv_placeholder::{ObjectKind, Vault};

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
/// 443. Extra suffixes are for test rigs and clouds this list does not know yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultHosts {
    extra: Vec<String>,
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

    /// The operator's extra suffixes, normalised (lower case, no leading dot).
    pub fn extra_suffixes(&self) -> &[String] {
        &self.extra
    }

    /// Every allowed suffix: Key Vault's, Managed HSM's, then the extra ones.
    pub fn suffixes(&self) -> impl Iterator<Item = &str> {
        KEY_VAULT_SUFFIXES
            .iter()
            .chain(MANAGED_HSM_SUFFIXES)
            .copied()
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
        let url = vault.url();
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
