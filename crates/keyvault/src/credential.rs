//! Watching the credential, so that a deadline passing while the identity still waits for its
//! token is reported as an identity problem, not as an unreachable vault; and guarding it, so
//! that no token is ever requested for anything but Key Vault.
//!
//! The SDK's managed-identity credential retries IMDS on its own for up to 72 s (Microsoft's
//! guidance for VMs), so with nothing answering at 169.254.169.254 an attempt just runs out of
//! time inside `get_token`. Without this wrapper the injector would blame the vault.
//!
//! It also saves a round trip: the SDK asks for a token only after the vault's 401 challenge
//! named the resource, but for a vault host the resource follows from the domain
//! ([`scope_for_vault`]), so the token request is started alongside the first vault request
//! ([`TrackedCredential::prefetch`]). The SDK's challenge check is untouched: the token is handed
//! over only when the SDK, after verifying a challenge, asks for exactly that scope; a vault
//! whose challenge names another resource never sees it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use akv_trust::VaultHosts;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The token scope Key Vault's challenge names for a vault at `vault_url`, known from its
/// domain: `https://myvault.vault.azure.net` -> `https://vault.azure.net/.default` (likewise the
/// sovereign clouds, Managed HSM and the operator's extra suffixes). `None` for anything that
/// is not one label before an allowed suffix: then the token waits for the challenge.
pub(crate) fn scope_for_vault(hosts: &VaultHosts, vault_url: &str) -> Option<String> {
    let host = vault_url
        .strip_prefix("https://")?
        .trim_end_matches('/')
        .to_ascii_lowercase();
    let (name, suffix) = host.split_once('.')?;
    if name.is_empty() || host.contains([':', '/']) {
        return None;
    }
    let suffix = hosts.suffixes().find(|s| s.eq_ignore_ascii_case(suffix))?;
    Some(format!("https://{suffix}/.default"))
}

/// A [`TokenCredential`] that remembers whether it ever produced a token and whether the last
/// request for one was left unfinished (still waiting, or abandoned when an attempt timed out).
///
/// It also refuses scopes other than Key Vault's (`https://vault.azure.net/.default` and the
/// other allowed suffixes): the SDK's challenge check only asks that the vault's host end with
/// the challenge's resource host, so a vault could still ask for `https://azure.net/.default`.
pub(crate) struct TrackedCredential {
    inner: Arc<dyn TokenCredential>,
    hosts: VaultHosts,
    got_token: AtomicBool,
    unfinished: AtomicBool,
    /// Token requests started before any challenge asked for them, by scope; each result goes
    /// to the first `get_token` call for its scope.
    prefetched: Mutex<HashMap<String, JoinHandle<azure_core::Result<AccessToken>>>>,
}

impl TrackedCredential {
    pub(crate) fn new(inner: Arc<dyn TokenCredential>, hosts: VaultHosts) -> Self {
        TrackedCredential {
            inner,
            hosts,
            got_token: AtomicBool::new(false),
            unfinished: AtomicBool::new(false),
            prefetched: Mutex::new(HashMap::new()),
        }
    }

    /// Starts requesting a token for `scope` now, in the background, unless one is already on
    /// its way. Scopes the guard refuses are never requested.
    pub(crate) fn prefetch(&self, scope: String) {
        if !self.hosts.allows_scope(&scope) {
            return;
        }
        let mut prefetched = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        // A finished, unclaimed one may be old by now (a supervisor resolves again later).
        if prefetched.get(&scope).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let inner = self.inner.clone();
        let task_scope = scope.clone();
        let task = tokio::spawn(async move { inner.get_token(&[task_scope.as_str()], None).await });
        if let Some(old) = prefetched.insert(scope, task) {
            old.abort();
        }
    }

    /// The prefetched token request for exactly `scopes`, if any; it is claimed once.
    fn claim(&self, scopes: &[&str]) -> Option<JoinHandle<azure_core::Result<AccessToken>>> {
        let [scope] = scopes else { return None };
        self.prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(*scope)
    }

    /// True when no token was ever obtained and the last request for one did not finish: an
    /// attempt that timed out now was waiting for the identity, not for the vault.
    pub(crate) fn stuck_without_token(&self) -> bool {
        !self.got_token.load(Ordering::Acquire) && self.unfinished.load(Ordering::Acquire)
    }
}

impl fmt::Debug for TrackedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrackedCredential")
            .field("got_token", &self.got_token)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for TrackedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if let Some(scope) = scopes.iter().find(|s| !self.hosts.allows_scope(s)) {
            // `Other`, not `Credential`: asking again cannot help, so this is not retried.
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Other,
                format!(
                    "refused to request a token for {scope:?}: the vault asked for a token of \
                     another resource than Key Vault's"
                ),
            ));
        }
        self.unfinished.store(true, Ordering::Release);
        // If the attempt times out, this future is dropped here and `unfinished` stays set.
        let prefetched = match self.claim(scopes) {
            // A task that panicked or was cancelled, or a token about to expire: ask afresh.
            Some(task) => task.await.ok().filter(|r| {
                r.as_ref().map_or(true, |t| {
                    t.expires_on
                        > azure_core::time::OffsetDateTime::now_utc()
                            + azure_core::time::Duration::minutes(5)
                })
            }),
            None => None,
        };
        let result = match prefetched {
            Some(result) => result,
            None => self.inner.get_token(scopes, options).await,
        };
        if result.is_ok() {
            self.got_token.store(true, Ordering::Release);
        }
        self.unfinished.store(false, Ordering::Release);
        result
    }
}

impl Drop for TrackedCredential {
    fn drop(&mut self) {
        for (_, task) in self
            .prefetched
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

/// The credential as one vault client sees it: says when a token first reached that client,
/// i.e. when the client met its vault's challenge and holds a token, so the rest of its
/// requests can go out already authorized instead of each meeting the challenge.
#[derive(Debug)]
pub(crate) struct ClientCredential {
    shared: Arc<TrackedCredential>,
    ready: Arc<watch::Sender<bool>>,
}

impl ClientCredential {
    /// `ready` is set to true once a token was handed to this client.
    pub(crate) fn new(shared: Arc<TrackedCredential>, ready: Arc<watch::Sender<bool>>) -> Self {
        ClientCredential { shared, ready }
    }
}

#[async_trait::async_trait]
impl TokenCredential for ClientCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let result = self.shared.get_token(scopes, options).await;
        if result.is_ok() {
            self.ready.send_replace(true);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::time::{Duration, OffsetDateTime};

    const VAULT_SCOPE: &str = "https://vault.azure.net/.default";

    /// Answers after `delay`, with a token or an error.
    #[derive(Debug)]
    struct Scripted {
        delay: std::time::Duration,
        ok: bool,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Scripted {
        async fn get_token(
            &self,
            _: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            tokio::time::sleep(self.delay).await;
            if self.ok {
                Ok(AccessToken::new(
                    "token".to_owned(),
                    OffsetDateTime::now_utc() + Duration::hours(1),
                ))
            } else {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "refused",
                ))
            }
        }
    }

    async fn after(delay_ms: u64, ok: bool, timeout_ms: u64) -> bool {
        let tracked = TrackedCredential::new(
            Arc::new(Scripted {
                delay: std::time::Duration::from_millis(delay_ms),
                ok,
            }),
            VaultHosts::default(),
        );
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(timeout_ms),
            tracked.get_token(&[VAULT_SCOPE], None),
        )
        .await;
        tracked.stuck_without_token()
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_abandoned_wait_with_no_token_yet_counts_as_stuck() {
        let cases = [
            ("token in time", after(10, true, 100).await, false),
            ("error in time", after(10, false, 100).await, false),
            (
                "abandoned while waiting",
                after(1000, true, 100).await,
                true,
            ),
        ];
        for (case, stuck, want) in cases {
            assert_eq!(stuck, want, "{case}");
        }
        assert!(
            !TrackedCredential::new(
                Arc::new(Scripted {
                    delay: std::time::Duration::ZERO,
                    ok: true
                }),
                VaultHosts::default()
            )
            .stuck_without_token()
        );
    }

    #[tokio::test]
    async fn tokens_for_other_resources_are_never_requested() {
        let inner = Arc::new(Scripted {
            delay: std::time::Duration::ZERO,
            ok: true,
        });
        let tracked = TrackedCredential::new(inner, VaultHosts::default());
        assert!(tracked.get_token(&[VAULT_SCOPE], None).await.is_ok());
        for scope in [
            "https://management.azure.com/.default",
            "https://azure.net/.default",
        ] {
            let err = tracked.get_token(&[scope], None).await.unwrap_err();
            assert!(
                err.to_string().contains("refused to request a token"),
                "{scope}: {err}"
            );
            assert_eq!(*err.kind(), azure_core::error::ErrorKind::Other, "{scope}");
        }
    }

    #[test]
    fn the_scope_follows_from_the_vault_domain() {
        let extra = VaultHosts::with_extra_suffixes(["vault.test"]).unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("https://myvault.vault.azure.net", Some(VAULT_SCOPE)),
            ("https://MyVault.Vault.Azure.Net/", Some(VAULT_SCOPE)),
            (
                "https://v.vault.azure.cn",
                Some("https://vault.azure.cn/.default"),
            ),
            (
                "https://v.vault.usgovcloudapi.net",
                Some("https://vault.usgovcloudapi.net/.default"),
            ),
            (
                "https://hsm.managedhsm.azure.net",
                Some("https://managedhsm.azure.net/.default"),
            ),
            (
                "https://myvault.vault.test",
                Some("https://vault.test/.default"),
            ),
            // Not one label before an allowed suffix, or not https: wait for the challenge.
            ("https://a.b.vault.azure.net", None),
            ("https://vault.azure.net", None),
            ("https://myvault.vault.azure.net:8443", None),
            ("http://myvault.vault.azure.net", None),
            ("https://myvault.azure.net", None),
            ("https://myvault.example.com", None),
        ];
        for (url, want) in cases {
            assert_eq!(scope_for_vault(&extra, url).as_deref(), *want, "{url}");
        }
        assert_eq!(
            scope_for_vault(&VaultHosts::default(), "https://myvault.vault.test"),
            None
        );
    }

    /// Counts token requests and the scopes they named.
    #[derive(Debug, Default)]
    struct Counting {
        scopes: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl TokenCredential for Counting {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AccessToken> {
            let n = {
                let mut seen = self.scopes.lock().unwrap();
                seen.push(scopes.join(" "));
                seen.len()
            };
            Ok(AccessToken::new(
                format!("token-{n}"),
                OffsetDateTime::now_utc() + Duration::hours(1),
            ))
        }
    }

    #[tokio::test]
    async fn a_prefetched_token_is_handed_to_the_first_request_for_its_scope_only() {
        let inner = Arc::new(Counting::default());
        let tracked = TrackedCredential::new(inner.clone(), VaultHosts::default());
        tracked.prefetch(VAULT_SCOPE.to_owned());
        // A second prefetch while the first is on its way asks for nothing more.
        tracked.prefetch(VAULT_SCOPE.to_owned());
        // Refused scopes are never prefetched.
        tracked.prefetch("https://management.azure.com/.default".to_owned());
        // A challenge naming another (allowed) resource gets its own token, not the prefetched.
        let hsm = "https://managedhsm.azure.net/.default";
        let other = tracked.get_token(&[hsm], None).await.unwrap();
        let first = tracked.get_token(&[VAULT_SCOPE], None).await.unwrap();
        let scopes = inner.scopes.lock().unwrap().clone();
        assert_eq!(scopes.len(), 2, "{scopes:?}");
        assert!(scopes.contains(&VAULT_SCOPE.to_owned()), "{scopes:?}");
        assert!(scopes.contains(&hsm.to_owned()), "{scopes:?}");
        assert_ne!(other.token.secret(), first.token.secret());
        let prefetched = 1 + scopes.iter().position(|s| s == VAULT_SCOPE).unwrap();
        assert_eq!(first.token.secret(), format!("token-{prefetched}"));
        // Claimed once: the next request asks the identity again (its own cache answers there).
        tracked.get_token(&[VAULT_SCOPE], None).await.unwrap();
        assert_eq!(inner.scopes.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_client_is_ready_once_a_token_reached_it() {
        let tracked = Arc::new(TrackedCredential::new(
            Arc::new(Counting::default()),
            VaultHosts::default(),
        ));
        let (tx, rx) = watch::channel(false);
        let client = ClientCredential::new(tracked, Arc::new(tx));
        assert!(
            client
                .get_token(&["https://azure.net/.default"], None)
                .await
                .is_err()
        );
        assert!(!*rx.borrow(), "a refused scope opened the gate");
        client.get_token(&[VAULT_SCOPE], None).await.unwrap();
        assert!(*rx.borrow());
    }
}
