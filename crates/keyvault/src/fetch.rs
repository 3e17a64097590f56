//! Fetching every distinct object once, a bounded number at a time (fewer over HTTP/1.1, where
//! each request in flight is a connection, than over HTTP/2), with our own retry loop inside one
//! overall deadline.

use crate::{
    Secret,
    config::{AuthConfig, AuthMode, ConfigError, TransportConfig},
    credential::{ClientCredential, TrackedCredential},
    error::{
        FailureKind, ResolveError, UNTRUSTED_CERTIFICATE_HINT, Verdict, cause_chain, classify,
        facts_of,
    },
    render::{Fetched, PublicJwk, render},
    version::{Meta, Tracked, TrackedKind, version_of},
};
use akv_placeholder::{ObjectKind, Reference, Vault};
use akv_trust::VaultHosts;
use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{Secret as SdkSecret, TokenCredential},
    http::{ClientOptions, RetryOptions, Transport},
};
use azure_identity::{
    ClientSecretCredential, ClientSecretCredentialOptions, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, models::KeyClientGetKeyOptions};
use azure_security_keyvault_secrets::{
    SecretClient, SecretClientOptions, models::SecretClientGetSecretOptions,
};
use futures::StreamExt as _;
use rand::Rng as _;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};
use tokio::{
    sync::{Semaphore, watch},
    time::Instant,
};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Most requests in flight at once to vaults that speak HTTP/1.1 (or whose protocol is not
    /// known yet), where each one holds a connection and its TCP and TLS handshakes.
    pub concurrency: usize,
    /// Most requests in flight at once to vaults that answered over HTTP/2, where each is a
    /// stream on the vault's one connection: a wave of up to this many objects goes out in one
    /// round trip (the server's `SETTINGS_MAX_CONCURRENT_STREAMS` may queue some of it). Either
    /// way a pod stays far inside Key Vault's 4,000 GETs per 10 s per vault.
    pub streams: usize,
    /// Longest single attempt (connect + token + GET); the overall deadline still wins.
    pub attempt_timeout: Duration,
    /// First backoff step; doubles per retry up to `max_backoff`, with jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            concurrency: 64,
            streams: 256,
            attempt_timeout: Duration::from_secs(20),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// One object's fetch: what came back and its version, or why not.
type Outcome = Result<(Fetched, Meta), (FailureKind, String)>;

/// The request path an object is read from; two placeholders with the same one share a GET.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub(crate) vault_url: String,
    pub(crate) keys_endpoint: bool,
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

/// Reads Key Vault objects as one identity.
pub struct Resolver {
    pub(crate) credential: Arc<TrackedCredential>,
    pub(crate) hosts: VaultHosts,
    pub(crate) transport: Transport,
    /// The transport's own view: which vaults answered over HTTP/2.
    http: Arc<crate::transport::Http>,
    identity: String,
    mode: AuthMode,
    options: FetchOptions,
    /// Clients kept for [`Resolver::current_version`]: each one meets Key Vault's challenge once.
    pub(crate) check_clients: crate::version::ClientCache,
}

pub(crate) fn client_options(transport: &Transport, authority_host: Option<&str>) -> ClientOptions {
    ClientOptions {
        transport: Some(transport.clone()),
        // The SDK's own retries ignore our deadline (81 s against a closed port); we retry.
        retry: RetryOptions::none(),
        cloud: authority_host.map(|host| {
            let mut custom = CustomConfiguration::default();
            custom.authority_host = host.to_owned();
            Arc::new(CloudConfiguration::Custom(custom))
        }),
        ..Default::default()
    }
}

impl Resolver {
    /// Chooses the credential from `auth` and wires our HTTPS client into it and every client.
    /// Only vaults `hosts` allows are contacted, and tokens are requested for their resources
    /// only.
    pub fn new(
        auth: &AuthConfig,
        transport: &TransportConfig,
        hosts: &VaultHosts,
        options: FetchOptions,
    ) -> Result<Self, ConfigError> {
        let mode = auth.choose()?;
        let http = Arc::new(crate::transport::Http::new(crate::transport::http_client(
            transport,
        )?));
        let transport = Transport::new(http.clone());
        let opts = client_options(&transport, auth.authority_host.as_deref());
        let cred_err = |e: azure_core::Error| ConfigError::Credential {
            mode,
            cause: cause_chain(&e),
        };
        let credential: Arc<dyn TokenCredential> = match mode {
            AuthMode::WorkloadIdentity => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: azure_identity::ClientAssertionCredentialOptions {
                        client_options: opts,
                    },
                    client_id: auth.client_id.clone(),
                    tenant_id: auth.tenant_id.clone(),
                    token_file_path: auth.federated_token_file.clone(),
                }))
                .map_err(cred_err)?
            }
            AuthMode::ClientSecret => {
                let secret = auth
                    .client_secret
                    .as_ref()
                    .map(|s| s.as_str())
                    .unwrap_or_default();
                ClientSecretCredential::new(
                    auth.tenant_id.as_deref().unwrap_or_default(),
                    auth.client_id.clone().unwrap_or_default(),
                    SdkSecret::new(secret.to_owned()),
                    Some(ClientSecretCredentialOptions {
                        client_options: opts,
                    }),
                )
                .map_err(cred_err)?
            }
            AuthMode::ManagedIdentity => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: auth.client_id.clone().map(UserAssignedId::ClientId),
                    client_options: opts,
                }))
                .map_err(cred_err)?
            }
        };
        Ok(Resolver {
            credential: Arc::new(TrackedCredential::new(credential, hosts.clone())),
            hosts: hosts.clone(),
            transport,
            http,
            identity: auth.identity_label(mode),
            mode,
            options,
            check_clients: Default::default(),
        })
    }

    /// Resolves every reference, in order. Each distinct object is fetched once; a reference
    /// without `vault=` uses `default_vault`. Nothing runs past `deadline`.
    pub async fn resolve_all(
        &self,
        refs: &[Reference],
        default_vault: Option<&Vault>,
        deadline: Instant,
    ) -> Vec<Result<Secret, ResolveError>> {
        self.resolve_all_tracked(refs, default_vault, deadline)
            .await
            .into_iter()
            .map(|r| r.map(|(secret, _)| secret))
            .collect()
    }

    /// Like [`Resolver::resolve_all`], and also says which version of which object each value
    /// came from (for the rotation supervisor; identifiers only, never a value).
    pub async fn resolve_all_tracked(
        &self,
        refs: &[Reference],
        default_vault: Option<&Vault>,
        deadline: Instant,
    ) -> Vec<Result<(Secret, Tracked), ResolveError>> {
        let keys: Vec<Option<(ObjectKey, String)>> = refs
            .iter()
            .map(|r| {
                let vault = r.vault.as_ref().or(default_vault)?;
                // A vault the policy refuses is never contacted (reported below).
                self.hosts.check(vault, r.kind).ok()?;
                Some((
                    ObjectKey {
                        vault_url: vault.url(),
                        keys_endpoint: r.kind == ObjectKind::Key,
                        name: r.name.clone(),
                        version: r.version.clone(),
                    },
                    vault.to_string(),
                ))
            })
            .collect();
        let distinct: BTreeMap<ObjectKey, ()> = keys
            .iter()
            .flatten()
            .map(|(k, _)| (k.clone(), ()))
            .collect();
        info!(
            placeholders = refs.len(),
            objects = distinct.len(),
            identity = %self.identity,
            auth = %self.mode,
            "resolving Key Vault placeholders"
        );
        // The token request goes out alongside the first vault request where the domain says
        // which resource the challenge will name; the SDK still verifies the challenge.
        let vault_urls: std::collections::BTreeSet<&str> =
            distinct.keys().map(|k| k.vault_url.as_str()).collect();
        for url in vault_urls {
            if let Some(scope) = crate::credential::scope_for_vault(&self.hosts, url) {
                self.credential.prefetch(scope);
            }
        }
        let mut secret_clients: HashMap<String, Arc<SecretClient>> = HashMap::new();
        let mut key_clients: HashMap<String, Arc<KeyClient>> = HashMap::new();
        let mut client_errors: HashMap<String, String> = HashMap::new();
        // Per vault client: true once it met the challenge and holds a token, or its first
        // object's fetch ended (then the others go anyway, and fail or succeed on their own).
        let mut ready: HashMap<(String, bool), Arc<watch::Sender<bool>>> = HashMap::new();
        for k in distinct.keys() {
            let opts = client_options(&self.transport, None);
            let client_key = (k.vault_url.clone(), k.keys_endpoint);
            if ready.contains_key(&client_key) {
                continue;
            }
            let gate = Arc::new(watch::channel(false).0);
            ready.insert(client_key, gate.clone());
            let credential: Arc<dyn TokenCredential> =
                Arc::new(ClientCredential::new(self.credential.clone(), gate));
            if k.keys_endpoint {
                match KeyClient::new(
                    &k.vault_url,
                    credential,
                    Some(KeyClientOptions {
                        client_options: opts,
                        // On by default in the SDK; stated so that no upgrade turns it off.
                        verify_challenge_resource: Some(true),
                        ..Default::default()
                    }),
                ) {
                    Ok(c) => drop(key_clients.insert(k.vault_url.clone(), Arc::new(c))),
                    Err(e) => drop(client_errors.insert(k.vault_url.clone(), cause_chain(&e))),
                }
            } else {
                match SecretClient::new(
                    &k.vault_url,
                    credential,
                    Some(SecretClientOptions {
                        client_options: opts,
                        // On by default in the SDK; stated so that no upgrade turns it off.
                        verify_challenge_resource: Some(true),
                        ..Default::default()
                    }),
                ) {
                    Ok(c) => drop(secret_clients.insert(k.vault_url.clone(), Arc::new(c))),
                    Err(e) => drop(client_errors.insert(k.vault_url.clone(), cause_chain(&e))),
                }
            }
        }

        // One object per vault client goes first: it meets Key Vault's 401 challenge and gets
        // the token, which the client then reuses. The others wait until the client holds the
        // token (not until that first object is back: over HTTP/2 they all go out at once on
        // the same connection); otherwise each would pay the challenge round trip on its own.
        let mut seen = std::collections::HashSet::new();
        let (first_wave, second_wave): (Vec<ObjectKey>, Vec<ObjectKey>) = distinct
            .into_keys()
            .partition(|k| seen.insert((k.vault_url.clone(), k.keys_endpoint)));
        let ordered = first_wave
            .into_iter()
            .map(|k| (k, true))
            .chain(second_wave.into_iter().map(|k| (k, false)));
        // The bound is chosen per request once its gate is open: by then the vault's first
        // answer (the challenge) said whether its connection multiplexes.
        let connections = Semaphore::new(self.options.concurrency.max(1));
        let streams = Semaphore::new(self.options.streams.max(1));
        let fetched: HashMap<ObjectKey, Outcome> = ordered
            .map(|(key, first)| {
                let secrets = secret_clients.get(&key.vault_url).cloned();
                let keys = key_clients.get(&key.vault_url).cloned();
                let client_error = client_errors.get(&key.vault_url).cloned();
                let gate = ready
                    .get(&(key.vault_url.clone(), key.keys_endpoint))
                    .cloned();
                let (connections, streams) = (&connections, &streams);
                async move {
                    if let (Some(gate), false) = (&gate, first) {
                        let _ = gate.subscribe().wait_for(|open| *open).await;
                    }
                    let slots = if self.http.multiplexed(&key.vault_url) {
                        streams
                    } else {
                        connections
                    };
                    // Never closed, so this cannot fail; a retry keeps its slot while it waits.
                    let _slot = slots.acquire().await;
                    let result = match (client_error, secrets, keys) {
                        (Some(e), _, _) => Err((FailureKind::Rejected, e)),
                        (None, s, k) => self.fetch_with_retry(&key, s, k, deadline).await,
                    };
                    if let (Some(gate), true) = (gate, first) {
                        gate.send_replace(true);
                    }
                    (key, result)
                }
            })
            .collect::<futures::stream::FuturesUnordered<_>>()
            .collect()
            .await;

        refs.iter()
            .zip(keys)
            .map(|(r, key)| {
                let object = describe(r);
                if let Some(Err(cause)) = r
                    .vault
                    .as_ref()
                    .or(default_vault)
                    .map(|v| self.hosts.check(v, r.kind))
                {
                    return Err(ResolveError {
                        object,
                        vault: r
                            .vault
                            .as_ref()
                            .or(default_vault)
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        kind: FailureKind::Rejected,
                        cause: cause.to_string(),
                    });
                }
                let Some((key, vault)) = key else {
                    return Err(ResolveError {
                        object,
                        vault: "(none)".into(),
                        kind: FailureKind::NoVault,
                        cause: "add vault=NAME to the placeholder or set AKV_ENV_DEFAULT_VAULT"
                            .into(),
                    });
                };
                let err = |kind, cause| ResolveError {
                    object: object.clone(),
                    vault: vault.clone(),
                    kind,
                    cause,
                };
                match fetched.get(&key) {
                    Some(Ok((f, meta))) => render(r, f)
                        .map(|secret| {
                            let tracked = Tracked {
                                vault_url: key.vault_url.clone(),
                                kind: TrackedKind::of(r.kind),
                                name: key.name.clone(),
                                pinned: key.version.is_some(),
                                version: meta.version.clone().or_else(|| key.version.clone()),
                                expires: meta.expires,
                            };
                            (secret, tracked)
                        })
                        .map_err(|cause| err(FailureKind::BadFormat, cause)),
                    Some(Err((kind, cause))) => Err(err(*kind, cause.clone())),
                    None => Err(err(
                        FailureKind::Rejected,
                        "internal error: object was not fetched".into(),
                    )),
                }
            })
            .collect()
    }

    async fn fetch_with_retry(
        &self,
        key: &ObjectKey,
        secrets: Option<Arc<SecretClient>>,
        keys: Option<Arc<KeyClient>>,
        deadline: Instant,
    ) -> Outcome {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err((
                    FailureKind::Unreachable,
                    "no answer before the deadline".into(),
                ));
            }
            let attempt_end = deadline.min(now + self.options.attempt_timeout);
            let result = tokio::time::timeout_at(attempt_end, async {
                match (&keys, &secrets) {
                    (Some(c), _) if key.keys_endpoint => get_key(c, key).await,
                    (_, Some(c)) => get_secret(c, key).await,
                    _ => Err(Err("internal error: no client for this vault".to_owned())),
                }
            })
            .await;
            let (facts, cause) = match result {
                Ok(Ok(f)) => {
                    debug!(vault = %key.vault_url, name = %key.name, attempt, "fetched");
                    return Ok(f);
                }
                Ok(Err(Ok(e))) => (facts_of(&e), cause_chain(&e)),
                Ok(Err(Err(bad_format))) => return Err((FailureKind::BadFormat, bad_format)),
                Err(_) => {
                    let waited = (attempt_end - now).as_secs_f64();
                    let stuck = self.credential.stuck_without_token();
                    let cause = if stuck {
                        format!(
                            "identity {} ({}) got no access token within {waited:.1} s; {}",
                            self.identity,
                            self.mode,
                            token_service_hint(self.mode)
                        )
                    } else {
                        format!("no answer within {waited:.1} s")
                    };
                    let facts = crate::error::AttemptFacts {
                        timed_out: true,
                        credential: stuck,
                        ..Default::default()
                    };
                    (facts, cause)
                }
            };
            let kind = match classify(&facts) {
                Verdict::Fatal(kind) if facts.untrusted_certificate => {
                    return Err((kind, format!("{cause}; {UNTRUSTED_CERTIFICATE_HINT}")));
                }
                Verdict::Fatal(kind) => return Err((kind, cause)),
                Verdict::Retry(kind) => kind,
            };
            let backoff = self.backoff(attempt);
            let wait = facts.retry_after.map_or(backoff, |ra| ra.max(backoff / 4));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                let cause = match facts.retry_after {
                    Some(ra) => format!(
                        "{cause}; Key Vault asked to retry after {} s, past the deadline",
                        ra.as_secs_f64()
                    ),
                    None => format!(
                        "{cause}; gave up at the deadline after {attempt} attempt{}",
                        if attempt == 1 { "" } else { "s" }
                    ),
                };
                warn!(vault = %key.vault_url, name = %key.name, attempt, %kind, "giving up");
                return Err((kind, cause));
            }
            warn!(
                vault = %key.vault_url, name = %key.name, attempt, %kind, status = ?facts.status,
                wait_ms = wait.as_millis() as u64, cause = %cause, "attempt failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Exponential backoff with "equal jitter": half fixed, half random, so retries from many
    /// pods spread out but never collapse to zero.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .options
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.options.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Where the token should have come from, for the operator reading the failure.
fn token_service_hint(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::ManagedIdentity => {
            "nothing answered at the managed identity endpoint (IMDS, 169.254.169.254, or \
             IDENTITY_ENDPOINT); outside Azure, give the pod workload identity or a service \
             principal"
        }
        AuthMode::WorkloadIdentity | AuthMode::ClientSecret => {
            "Microsoft Entra ID (AZURE_AUTHORITY_HOST) did not answer"
        }
    }
}

/// `Err(Ok(e))`: the SDK failed (maybe retry); `Err(Err(why))`: the answer is unusable.
type FetchResult = Result<(Fetched, Meta), Result<azure_core::Error, String>>;

#[derive(serde::Deserialize)]
struct WireSecret {
    value: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    id: Option<String>,
    attributes: Option<WireAttributes>,
}

#[derive(serde::Deserialize)]
struct WireAttributes {
    exp: Option<i64>,
}

async fn get_secret(client: &SecretClient, key: &ObjectKey) -> FetchResult {
    let options = SecretClientGetSecretOptions {
        secret_version: key.version.clone(),
        ..Default::default()
    };
    let response = client
        .get_secret(&key.name, Some(options))
        .await
        .map_err(Ok)?;
    let body = response.into_body();
    // Our own type, so the value moves straight into a wiped buffer.
    let wire: WireSecret = serde_json::from_slice(body.as_ref()).map_err(|e| {
        Err(format!(
            "Key Vault's answer is not a secret ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let meta = Meta {
        version: wire.id.as_deref().and_then(version_of),
        expires: wire.attributes.and_then(|a| a.exp),
    };
    let value = wire
        .value
        .ok_or_else(|| Err("Key Vault's answer has no value".to_owned()))?;
    Ok((
        Fetched::Secret {
            value: Zeroizing::new(value),
            content_type: wire.content_type,
        },
        meta,
    ))
}

pub(crate) async fn get_key(client: &KeyClient, key: &ObjectKey) -> FetchResult {
    let options = KeyClientGetKeyOptions {
        key_version: key.version.clone(),
        ..Default::default()
    };
    let response = client.get_key(&key.name, Some(options)).await.map_err(Ok)?;
    let model = response.into_model().map_err(|e| {
        Err(format!(
            "Key Vault's answer is not a key: {}",
            cause_chain(&e)
        ))
    })?;
    let jwk = model
        .key
        .ok_or_else(|| Err("Key Vault's answer has no key".to_owned()))?;
    let meta = Meta {
        version: jwk.kid.as_deref().and_then(version_of),
        expires: None,
    };
    Ok((
        Fetched::Key(PublicJwk {
            kty: jwk.kty.map(|k| k.to_string()).unwrap_or_default(),
            n: jwk.n,
            e: jwk.e,
            crv: jwk.crv.map(|c| c.to_string()),
            x: jwk.x,
            y: jwk.y,
        }),
        meta,
    ))
}

/// `secret db-password`, `certificate web-tls (part=key)`, `key signing version 0123...`.
fn describe(r: &Reference) -> String {
    let kind = match r.kind {
        ObjectKind::Secret => "secret",
        ObjectKind::Certificate => "certificate",
        ObjectKind::Key => "key",
    };
    match &r.version {
        Some(v) => format!("{kind} {} version {v}", r.name),
        None => format!("{kind} {}", r.name),
    }
}
