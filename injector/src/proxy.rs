//! The egress proxy, read from the environment: `HTTPS_PROXY` and `NO_PROXY` (upper case first,
//! then lower case, as Go reads them; see `akv_proxy`), as AKS' HTTP proxy feature writes them
//! into every pod.
//!
//! Unlike the trust settings (`settings.rs`, flags only), these may come from the environment,
//! ConfigMaps included: a proxy decides where traffic goes, not who can read it. HTTPS passes it
//! as a CONNECT tunnel, with TLS end to end to Key Vault and Entra ID, verified against the
//! built-in roots plus `--ca-file` only (which the environment cannot set): the proxy sees host
//! names and byte counts, never a token or a value. Plain-HTTP targets (the managed identity
//! endpoint, whose answer is a token) never use a proxy, whatever `NO_PROXY` says; so
//! `HTTP_PROXY` has no effect here. Whoever edits the ConfigMap can at worst stop the pod from
//! starting, which they could already do by editing the placeholders.

use std::ffi::OsString;
use std::sync::Arc;

use akv_keyvault::{FailureKind, ResolveError};
use akv_placeholder::Vault;
use akv_proxy::{PlainHttp, ProxySettings, ProxyVars, Route};

/// The proxy settings from the environment; `None` when no proxy is set.
pub fn from_env(env: &[(OsString, OsString)]) -> Result<Option<Arc<ProxySettings>>, String> {
    let vars = ProxyVars::from_lookup(|name| crate::var(env, name));
    let settings = ProxySettings::from_vars(&vars, PlainHttp::Direct).map_err(|e| e.to_string())?;
    if let Some(s) = &settings {
        match &s.https {
            Some(p) => tracing::debug!(
                proxy = %p,
                credentials = p.has_credentials(),
                no_proxy = ?vars.no_proxy.as_ref().map(|(n, _)| n),
                "HTTPS through the proxy"
            ),
            None => tracing::debug!(
                "only HTTP_PROXY is set: it applies to plain-HTTP targets, and the only one here \
                 (the managed identity endpoint) never uses a proxy; HTTPS goes direct"
            ),
        }
    }
    Ok(settings.map(Arc::new))
}

/// Names the proxy in failures it may have caused: a proxy that refuses, hangs or is down
/// shows as an unreachable vault or token service, and the operator must know traffic went
/// through it.
pub struct Blame {
    settings: Option<Arc<ProxySettings>>,
    /// `host:port` of the authority, for token failures; `None` with managed identity, whose
    /// endpoint is plain HTTP and never proxied.
    authority: Option<(String, u16)>,
}

impl Blame {
    /// `authority_host`: `None` for Entra's default; `managed_identity`: tokens come from the
    /// (never proxied) managed identity endpoint, not from the authority.
    pub fn new(
        settings: Option<Arc<ProxySettings>>,
        authority_host: Option<&str>,
        managed_identity: bool,
    ) -> Blame {
        let authority = (!managed_identity)
            .then(|| authority_host.unwrap_or("https://login.microsoftonline.com"))
            .and_then(|a| a.parse::<url::Url>().ok())
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        Blame {
            settings,
            authority,
        }
    }

    /// `err` with a note naming the proxy when the failure is one a proxy can cause and the
    /// vault's (or for token failures, the authority's) traffic went through it.
    pub fn annotate(&self, mut err: ResolveError) -> ResolveError {
        let Some(settings) = &self.settings else {
            return err;
        };
        let vault = Vault::parse(&err.vault)
            .ok()
            .and_then(|v| v.url().parse::<url::Url>().ok())
            .and_then(|u| Some((u.host_str()?.to_owned(), u.port_or_known_default()?)));
        let through = |target: &Option<(String, u16)>| match target {
            Some((host, port)) => match settings.route("https", host, *port) {
                Route::Proxy(p) => Some((p, format!("{host}:{port}"))),
                Route::Direct(_) => None,
            },
            None => None,
        };
        let hit = match err.kind {
            FailureKind::Unreachable => through(&vault),
            FailureKind::AuthFailed => through(&self.authority).or_else(|| through(&vault)),
            _ => None,
        };
        if let Some((proxy, target)) = hit {
            err.cause = format!(
                "{}; through the proxy {proxy}: check that it is up and allows CONNECT to {target}",
                err.cause
            );
        }
        err
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

    fn failure(vault: &str, kind: FailureKind) -> ResolveError {
        ResolveError {
            object: "secret db-password".into(),
            vault: vault.into(),
            kind,
            cause: "tunnel error: unsuccessful".into(),
        }
    }

    #[test]
    fn failures_name_the_proxy_they_went_through_without_its_password() {
        let settings = from_env(&env(&[
            ("https_proxy", "http://user:hunter2@proxy.corp:3128"),
            ("NO_PROXY", ".vault.azure.cn"),
        ]))
        .unwrap();
        let blame = Blame::new(
            settings.clone(),
            Some("https://login.microsoftonline.com"),
            false,
        );
        let managed = Blame::new(settings, None, true);
        assert_eq!(
            managed
                .annotate(failure(
                    "https://kv.vault.azure.cn",
                    FailureKind::AuthFailed
                ))
                .cause,
            "tunnel error: unsuccessful",
            "managed identity's tokens never cross the proxy"
        );
        let note = "through the proxy http://proxy.corp:3128 (from https_proxy)";
        let cases: &[(&str, &str, FailureKind, Option<&str>)] = &[
            (
                "unreachable vault",
                "myvault",
                FailureKind::Unreachable,
                Some("myvault.vault.azure.net:443"),
            ),
            (
                "token service",
                "myvault",
                FailureKind::AuthFailed,
                Some("login.microsoftonline.com:443"),
            ),
            (
                "not found is the vault's answer",
                "myvault",
                FailureKind::NotFound,
                None,
            ),
            (
                "vault listed in NO_PROXY",
                "https://kv.vault.azure.cn",
                FailureKind::Unreachable,
                None,
            ),
        ];
        for (name, vault, kind, target) in cases {
            let cause = blame.annotate(failure(vault, *kind)).cause;
            assert!(!cause.contains("hunter2"), "{name}: {cause}");
            match target {
                Some(t) => assert!(
                    cause.contains(note) && cause.ends_with(&format!("CONNECT to {t}")),
                    "{name}: {cause}"
                ),
                None => assert_eq!(cause, "tunnel error: unsuccessful", "{name}"),
            }
        }
        let none = Blame::new(from_env(&env(&[("NO_PROXY", "*")])).unwrap(), None, false);
        assert_eq!(
            none.annotate(failure("myvault", FailureKind::Unreachable))
                .cause,
            "tunnel error: unsuccessful"
        );
    }

    #[test]
    fn a_bad_proxy_setting_is_named_without_its_value() {
        let err = from_env(&env(&[("HTTPS_PROXY", "socks5://u:hunter2@proxy:1080")])).unwrap_err();
        assert!(
            err.starts_with("HTTPS_PROXY: ") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
