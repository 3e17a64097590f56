//! The resolver: cached answers with a single flight per key, and each way of asking a
//! registry (anonymous, each matching pull secret, ACR) tried in turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use oci_spec::distribution::Reference;
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::acr::{self, ACR_USERNAME};
use crate::credentials::{Credential, DockerConfig, matching_credentials};
use crate::distribution::{Auth, Manifest, Repository};
use crate::egress::Egress;
use crate::error::{Failure, LookupError, error_chain};
use crate::options::{CacheStats, ImageEntrypoint, RegistryOptions};
use crate::platform::{self, Platform};
use crate::reference::parse_reference;

/// Image configs are a few KiB; refuse anything absurd before downloading it.
const MAX_CONFIG_BYTES: i64 = 4 << 20;
/// ACR refresh tokens live about three hours; renew well before.
const ACR_REFRESH_TTL: Duration = Duration::from_secs(30 * 60);
const ACR_TOKEN_CAPACITY: u64 = 256;

/// Reads image entrypoints from registries. Cheap to clone; clones share caches and clients.
#[derive(Clone)]
pub struct ImageResolver {
    inner: Arc<Inner>,
}

/// Key of an answer: the reference, the platform, and which pull-secret credentials were
/// offered (hashed), so an image one pod may read is not handed to a pod that may not.
type AnswerKey = (String, Platform, [u8; 32]);

/// A cached answer and how long it may be reused (`None`: for good, a digest reference).
#[derive(Clone)]
struct Answer {
    entrypoint: ImageEntrypoint,
    ttl: Option<Duration>,
}

/// Each answer expires after its own TTL: tag references after `cache_ttl`, digests never.
struct AnswerExpiry;

impl Expiry<AnswerKey, Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &AnswerKey, answer: &Answer, _: Instant) -> Option<Duration> {
        answer.ttl
    }
}

struct Inner {
    opts: RegistryOptions,
    /// The HTTP clients, or why they could not be built (reported by each lookup).
    egress: Result<Egress, String>,
    /// Its `try_get_with` is the single flight: concurrent lookups of one key (a Deployment
    /// scaling up) share one registry fetch and its outcome.
    answers: Cache<AnswerKey, Answer>,
    /// (registry/repository, manifest digest) -> entrypoint: content-addressed, never stale.
    by_digest: Cache<(String, String), ImageEntrypoint>,
    acr_tokens: Cache<String, Arc<Zeroizing<String>>>,
    /// Parsed references by the text the pod spec holds.
    references: Cache<String, Arc<Reference>>,
    lookups: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

/// One way of asking the registry.
#[derive(Clone, Copy)]
enum Attempt<'a> {
    Anonymous,
    Secret(&'a Credential),
    Acr,
}

impl ImageResolver {
    pub fn new(opts: RegistryOptions) -> Self {
        let capacity = opts.cache_capacity as u64;
        let egress = Egress::new(
            &opts.extra_roots,
            opts.allow_internal_addresses,
            &opts.insecure_registries,
            opts.proxy.as_ref(),
        );
        ImageResolver {
            inner: Arc::new(Inner {
                egress,
                opts,
                answers: Cache::builder()
                    .max_capacity(capacity)
                    .expire_after(AnswerExpiry)
                    .build(),
                by_digest: Cache::new(capacity),
                acr_tokens: Cache::builder()
                    .max_capacity(ACR_TOKEN_CAPACITY)
                    .time_to_live(ACR_REFRESH_TTL)
                    .build(),
                references: Cache::new(capacity),
                lookups: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                errors: AtomicU64::new(0),
            }),
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.inner.opts
    }

    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            lookups: i.lookups.load(Ordering::Relaxed),
            hits: i.hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            errors: i.errors.load(Ordering::Relaxed),
        }
    }

    /// ENTRYPOINT and CMD of `image` for `platform`, using the pull secrets' credentials that
    /// match the image (in order; anonymous when none match), then ACR through the webhook's
    /// identity when configured. Bounded by `timeout`.
    pub async fn entrypoint(
        &self,
        image: &str,
        platform: &Platform,
        credentials: &[DockerConfig],
    ) -> Result<ImageEntrypoint, LookupError> {
        let inner = &self.inner;
        inner.lookups.fetch_add(1, Ordering::Relaxed);
        let result = self.lookup(image, platform, credentials).await;
        if result.is_err() {
            inner.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn lookup(
        &self,
        image: &str,
        platform: &Platform,
        credentials: &[DockerConfig],
    ) -> Result<ImageEntrypoint, LookupError> {
        let inner = &self.inner;
        let reference = self.reference(image).await?;
        let name = format!("{}/{}", reference.registry(), reference.repository());
        let offered = matching_credentials(credentials, &name);
        let key: AnswerKey = (reference.whole(), platform.clone(), fingerprint(&offered));

        let deadline = inner.opts.timeout;
        tokio::time::timeout(
            deadline,
            self.cached_or_fetched(key, &reference, image, platform, &offered),
        )
        .await
        .map_err(|_| {
            let proxy = self.proxy_for(reference.registry());
            if let Some(proxy) = &proxy {
                tracing::warn!(registry = reference.registry(), %proxy, "registry lookup timed out through the egress proxy");
            }
            LookupError::Timeout {
                image: image.to_string(),
                after: deadline,
                through_proxy: proxy.is_some(),
            }
        })?
    }

    /// Parsing a reference runs a large regex (~10 µs); admissions repeat the same few images.
    async fn reference(&self, image: &str) -> Result<Arc<Reference>, LookupError> {
        if let Some(reference) = self.inner.references.get(image).await {
            return Ok(reference);
        }
        let reference = Arc::new(parse_reference(image)?);
        self.inner
            .references
            .insert(image.to_string(), reference.clone())
            .await;
        Ok(reference)
    }

    /// The cached answer, or one registry fetch shared by every concurrent lookup of `key`:
    /// the first runs it, the others wait and take its outcome (an error too: it is not
    /// cached, so the next lookup asks again). A caller cancelled at its deadline hands the
    /// fetch to a waiter.
    async fn cached_or_fetched(
        &self,
        key: AnswerKey,
        reference: &Reference,
        image: &str,
        platform: &Platform,
        offered: &[&Credential],
    ) -> Result<ImageEntrypoint, LookupError> {
        let inner = &self.inner;
        let fetch = async {
            inner.misses.fetch_add(1, Ordering::Relaxed);
            let entrypoint = self.fetch(reference, image, platform, offered).await?;
            // A digest reference names immutable content: keep it until evicted.
            let ttl = reference.digest().is_none().then_some(inner.opts.cache_ttl);
            Ok::<_, LookupError>(Answer { entrypoint, ttl })
        };
        let entry = inner
            .answers
            .entry(key)
            .or_try_insert_with(fetch)
            .await
            .map_err(|shared| (*shared).clone())?;
        if !entry.is_fresh() {
            inner.hits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(image, %platform, "image entrypoint from cache");
        }
        Ok(entry.into_value().entrypoint)
    }

    /// Tries each way of asking in turn; a refusal moves on to the next, anything else ends.
    async fn fetch(
        &self,
        reference: &Reference,
        image: &str,
        platform: &Platform,
        offered: &[&Credential],
    ) -> Result<ImageEntrypoint, LookupError> {
        let registry = reference.resolve_registry().to_string();
        let use_acr = self
            .inner
            .opts
            .acr
            .as_ref()
            .is_some_and(|acr| acr.serves(&registry));
        let mut attempts: Vec<Attempt<'_>> = offered.iter().map(|c| Attempt::Secret(c)).collect();
        if use_acr {
            attempts.push(Attempt::Acr);
        }
        if attempts.is_empty() {
            attempts.push(Attempt::Anonymous);
        }

        for attempt in &attempts {
            let acr_token = match attempt {
                Attempt::Acr => Some(self.acr_refresh_token(&registry, image).await?),
                _ => None,
            };
            let auth = match (attempt, &acr_token) {
                (Attempt::Secret(c), _) if !c.is_anonymous() => {
                    Auth::Basic(c.username(), c.password())
                }
                (Attempt::Acr, Some(token)) => Auth::Basic(ACR_USERNAME, token.as_str()),
                _ => Auth::Anonymous,
            };
            tracing::debug!(image, %platform, registry, attempt = attempt.describe(), "reading image config");
            match self.fetch_with(reference, &registry, platform, auth).await {
                Ok(answer) => return Ok(answer),
                Err(FetchError::Failure(Failure::Unauthorized)) => {
                    tracing::debug!(
                        image,
                        registry,
                        attempt = attempt.describe(),
                        "registry refused"
                    );
                    if matches!(attempt, Attempt::Acr) {
                        self.inner.acr_tokens.invalidate(&registry).await;
                    }
                }
                Err(e) => {
                    let err = e.into_lookup_error(image, &registry, platform);
                    return Err(self.through_proxy(err, &registry));
                }
            }
        }
        Err(LookupError::Unauthorized {
            image: image.to_string(),
            registry,
            attempts: describe_attempts(&attempts),
        })
    }

    async fn fetch_with(
        &self,
        reference: &Reference,
        registry: &str,
        platform: &Platform,
        auth: Auth<'_>,
    ) -> Result<ImageEntrypoint, FetchError> {
        let egress =
            self.inner.egress.as_ref().map_err(|e| {
                FetchError::Failure(Failure::Other(format!("no registry client: {e}")))
            })?;
        let secure = !self.is_insecure(registry);
        let mut repository =
            Repository::new(egress, secure, registry, reference.repository(), auth)?;
        let named = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let (manifest, digest) = match repository.manifest(&named).await? {
            (Manifest::Index(entries), _) => {
                let offered: Vec<Option<Platform>> = entries
                    .iter()
                    .map(|entry| {
                        entry
                            .platform
                            .as_ref()
                            .map(|(os, architecture, variant)| Platform {
                                os: os.clone(),
                                architecture: architecture.clone(),
                                variant: variant.clone(),
                            })
                    })
                    .collect();
                let Some(chosen) = platform::choose(&offered, platform) else {
                    let listed: Vec<String> =
                        offered.iter().flatten().map(Platform::to_string).collect();
                    return Err(FetchError::NoMatchingPlatform(listed.join(", ")));
                };
                let entry_digest = entries[chosen].digest.clone();
                match repository.manifest(&entry_digest).await? {
                    (manifest @ Manifest::Image { .. }, digest) => (manifest, digest),
                    (Manifest::Index(_), _) => {
                        return Err(FetchError::Invalid(
                            "its index points at another index instead of an image manifest".into(),
                        ));
                    }
                }
            }
            image => image,
        };
        let Manifest::Image {
            config_digest,
            config_size,
        } = manifest
        else {
            unreachable!("indexes are resolved above");
        };

        let digest_key = (
            format!("{registry}/{}", reference.repository()),
            digest.clone(),
        );
        if let Some(hit) = self.inner.by_digest.get(&digest_key).await {
            return Ok(hit);
        }
        if !(0..=MAX_CONFIG_BYTES).contains(&config_size) {
            return Err(FetchError::Invalid(format!(
                "its config blob is {config_size} bytes, more than the {MAX_CONFIG_BYTES} allowed"
            )));
        }
        let config = repository
            .blob(&config_digest, MAX_CONFIG_BYTES as u64)
            .await?;
        let (entrypoint, cmd) = parse_config(&config).map_err(FetchError::Invalid)?;
        let answer = ImageEntrypoint {
            entrypoint,
            cmd,
            digest,
        };
        self.inner
            .by_digest
            .insert(digest_key, answer.clone())
            .await;
        Ok(answer)
    }

    /// Says that an unreachable registry was asked for through the egress proxy: the proxy may
    /// be what failed. Not its address (the message reaches pod authors); the log names it.
    fn through_proxy(&self, err: LookupError, registry: &str) -> LookupError {
        let LookupError::Unreachable {
            image,
            registry: name,
            reason,
        } = err
        else {
            return err;
        };
        let reason = match self.proxy_for(registry) {
            Some(proxy) => {
                tracing::warn!(registry, %proxy, "registry unreachable through the egress proxy");
                format!("{reason} (through the webhook's egress proxy)")
            }
            None => reason,
        };
        LookupError::Unreachable {
            image,
            registry: name,
            reason,
        }
    }

    /// The egress proxy requests to `registry` go through, if any.
    fn proxy_for(&self, registry: &str) -> Option<akv_proxy::ProxyServer> {
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        self.inner.opts.proxy.as_ref().and_then(|p| {
            url::Url::parse(&format!("{scheme}://{registry}/"))
                .ok()
                .and_then(|u| p.proxy_for(&u).cloned())
        })
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.inner
            .opts
            .insecure_registries
            .iter()
            .any(|r| r.eq_ignore_ascii_case(registry))
    }

    /// An ACR refresh token for `registry`, from the cache or a fresh exchange.
    async fn acr_refresh_token(
        &self,
        registry: &str,
        image: &str,
    ) -> Result<Arc<Zeroizing<String>>, LookupError> {
        if let Some(token) = self.inner.acr_tokens.get(registry).await {
            return Ok(token);
        }
        let acr_error = |reason: String| LookupError::Acr {
            image: image.to_string(),
            registry: registry.to_string(),
            reason,
        };
        let acr = self
            .inner
            .opts
            .acr
            .as_ref()
            .ok_or_else(|| acr_error("ACR is not configured".into()))?;
        let access_token =
            Zeroizing::new(acr.tokens.access_token(registry).await.map_err(|e| {
                acr_error(format!(
                    "no Microsoft Entra token: {}",
                    error_chain(e.as_ref())
                ))
            })?);
        let egress = self
            .inner
            .egress
            .as_ref()
            .map_err(|e| acr_error(format!("no HTTP client: {e}")))?;
        let scheme = if self.is_insecure(registry) {
            "http"
        } else {
            "https"
        };
        // No own timeout: the lookup's deadline bounds the exchange too.
        let token = Arc::new(
            acr::exchange(egress, scheme, registry, &access_token)
                .await
                .map_err(acr_error)?,
        );
        self.inner
            .acr_tokens
            .insert(registry.to_string(), token.clone())
            .await;
        tracing::debug!(
            registry,
            "exchanged an Entra token for an ACR refresh token"
        );
        Ok(token)
    }
}

/// Failures inside one attempt, before the image name is attached.
enum FetchError {
    Failure(Failure),
    NoMatchingPlatform(String),
    Invalid(String),
}

impl From<Failure> for FetchError {
    fn from(f: Failure) -> Self {
        FetchError::Failure(f)
    }
}

impl FetchError {
    fn into_lookup_error(self, image: &str, registry: &str, platform: &Platform) -> LookupError {
        let image = image.to_string();
        let registry = registry.to_string();
        match self {
            FetchError::Failure(Failure::NotFound) => LookupError::NotFound { image },
            FetchError::Failure(Failure::Unauthorized) => LookupError::Unauthorized {
                image,
                registry,
                attempts: "anonymously".into(),
            },
            FetchError::Failure(Failure::Unreachable(reason)) => LookupError::Unreachable {
                image,
                registry,
                reason,
            },
            FetchError::Failure(Failure::Certificate(reason)) => {
                LookupError::UntrustedCertificate {
                    image,
                    registry,
                    reason,
                }
            }
            FetchError::Failure(Failure::Refused(reason)) => LookupError::Refused {
                image,
                registry,
                reason,
            },
            FetchError::Failure(Failure::Other(reason)) => LookupError::Registry {
                image,
                registry,
                reason,
            },
            FetchError::NoMatchingPlatform(offered) => LookupError::NoMatchingPlatform {
                image,
                wanted: platform.clone(),
                offered: if offered.is_empty() {
                    "no platforms".into()
                } else {
                    offered
                },
            },
            FetchError::Invalid(reason) => LookupError::InvalidImage { image, reason },
        }
    }
}

impl Attempt<'_> {
    fn describe(&self) -> &'static str {
        match self {
            Attempt::Anonymous => "anonymous",
            Attempt::Secret(_) => "pull secret",
            Attempt::Acr => "webhook Azure identity",
        }
    }
}

fn describe_attempts(attempts: &[Attempt<'_>]) -> String {
    let secrets = attempts
        .iter()
        .filter(|a| matches!(a, Attempt::Secret(_)))
        .count();
    let acr = attempts.iter().any(|a| matches!(a, Attempt::Acr));
    let secrets_text = match secrets {
        1 => "the 1 matching credential from imagePullSecrets".to_string(),
        n => format!("all {n} matching credentials from imagePullSecrets"),
    };
    match (secrets, acr) {
        (0, false) => "anonymously (no imagePullSecrets credential matches this registry)".into(),
        (0, true) => "with the webhook's Azure identity".into(),
        (_, false) => format!("with {secrets_text}"),
        (_, true) => format!("with {secrets_text} and with the webhook's Azure identity"),
    }
}

/// ENTRYPOINT and CMD from an image config blob (`config.Entrypoint`, `config.Cmd`).
fn parse_config(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct ImageConfig {
        config: Option<RunConfig>,
    }
    #[derive(serde::Deserialize)]
    struct RunConfig {
        #[serde(rename = "Entrypoint")]
        entrypoint: Option<Vec<String>>,
        #[serde(rename = "Cmd")]
        cmd: Option<Vec<String>>,
    }
    let parsed: ImageConfig = serde_json::from_slice(bytes)
        .map_err(|e| format!("its config blob is not a valid image config: {e}"))?;
    let run = parsed.config.unwrap_or(RunConfig {
        entrypoint: None,
        cmd: None,
    });
    Ok((
        run.entrypoint.unwrap_or_default(),
        run.cmd.unwrap_or_default(),
    ))
}

/// A stable hash of the credentials offered for a lookup.
fn fingerprint(credentials: &[&Credential]) -> [u8; 32] {
    let mut hasher = sha2::Sha256::new();
    for c in credentials {
        hasher.update(c.username().as_bytes());
        hasher.update([0]);
        hasher.update(c.password().as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entrypoint_and_cmd_from_configs() {
        let ok: &[(&str, &str, &[&str], &[&str])] = &[
            (
                "both",
                r#"{"config":{"Entrypoint":["/bin/app","-v"],"Cmd":["serve"]}}"#,
                &["/bin/app", "-v"],
                &["serve"],
            ),
            (
                "cmd only",
                r#"{"architecture":"amd64","config":{"Cmd":["sh"]}}"#,
                &[],
                &["sh"],
            ),
            (
                "nulls",
                r#"{"config":{"Entrypoint":null,"Cmd":null}}"#,
                &[],
                &[],
            ),
            (
                "no config",
                r#"{"architecture":"amd64","os":"linux"}"#,
                &[],
                &[],
            ),
            ("null config", r#"{"config":null}"#, &[], &[]),
        ];
        for (name, json, entrypoint, cmd) in ok {
            let (e, c) = parse_config(json.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((e, c), (strings(entrypoint), strings(cmd)), "{name}");
        }
        for (name, json) in [
            ("not json", "<html>"),
            (
                "entrypoint a string",
                r#"{"config":{"Entrypoint":"/bin/sh"}}"#,
            ),
        ] {
            let err = parse_config(json.as_bytes()).expect_err(name);
            assert!(err.contains("not a valid image config"), "{name}: {err}");
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn attempts_are_described_without_credentials() {
        let c = Credential::new("user", "pw");
        let cases = [
            (vec![Attempt::Anonymous], "anonymously"),
            (
                vec![Attempt::Secret(&c)],
                "with the 1 matching credential from imagePullSecrets",
            ),
            (
                vec![Attempt::Secret(&c), Attempt::Secret(&c)],
                "with all 2 matching credentials from imagePullSecrets",
            ),
            (vec![Attempt::Acr], "with the webhook's Azure identity"),
            (
                vec![Attempt::Secret(&c), Attempt::Acr],
                "with the 1 matching credential from imagePullSecrets and with the webhook's Azure identity",
            ),
        ];
        for (attempts, want) in cases {
            let text = describe_attempts(&attempts);
            assert!(text.starts_with(want), "{text}");
            assert!(!text.contains("pw") && !text.contains("user "), "{text}");
        }
    }

    #[test]
    fn fingerprints_differ_by_credential() {
        let a = Credential::new("u", "1");
        let b = Credential::new("u", "2");
        assert_ne!(fingerprint(&[&a]), fingerprint(&[&b]));
        assert_ne!(fingerprint(&[&a]), fingerprint(&[]));
        assert_eq!(
            fingerprint(&[&a]),
            fingerprint(&[&Credential::new("u", "1")])
        );
    }
}
