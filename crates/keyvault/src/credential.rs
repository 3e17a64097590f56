//! Watching the credential, so that a deadline passing while the identity still waits for its
//! token is reported as an identity problem, not as an unreachable vault; and guarding it, so
//! that no token is ever requested for anything but Key Vault.
//!
//! The SDK's managed-identity credential retries IMDS on its own for up to 72 s (Microsoft's
//! guidance for VMs), so with nothing answering at 169.254.169.254 an attempt just runs out of
//! time inside `get_token`. Without this wrapper the injector would blame the vault.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use akv_trust::VaultHosts;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

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
}

impl TrackedCredential {
    pub(crate) fn new(inner: Arc<dyn TokenCredential>, hosts: VaultHosts) -> Self {
        TrackedCredential {
            inner,
            hosts,
            got_token: AtomicBool::new(false),
            unfinished: AtomicBool::new(false),
        }
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
        let result = self.inner.get_token(scopes, options).await;
        if result.is_ok() {
            self.got_token.store(true, Ordering::Release);
        }
        self.unfinished.store(false, Ordering::Release);
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
}
