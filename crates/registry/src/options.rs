//! What a resolver may do (deadline, caches, trust, proxy) and what it reports.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use crate::acr::AcrAuth;

/// What the image config says to run, and which manifest it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntrypoint {
    /// ENTRYPOINT; empty when the image sets none.
    pub entrypoint: Vec<String>,
    /// CMD; empty when the image sets none.
    pub cmd: Vec<String>,
    /// Digest of the platform-specific image manifest that was read.
    pub digest: String,
}

/// Settings of an [`ImageResolver`](crate::ImageResolver).
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Deadline for one whole lookup (token exchange, manifests, config).
    pub timeout: Duration,
    /// How long an answer for a tag reference is reused. Digest references never expire.
    pub cache_ttl: Duration,
    /// Most answers kept (each cache); past it, moka evicts the least likely to be used again.
    pub cache_capacity: usize,
    /// Registries (`host[:port]`, as in the image reference) spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Azure Container Registry through the webhook's own identity.
    pub acr: Option<AcrAuth>,
    /// CAs trusted besides the built-in webpki roots (private registries, tests), as read
    /// with [`pem_certificates`](crate::pem_certificates). The system CA store is never used, so the webhook needs no
    /// CA bundle in its image.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Let lookups reach loopback, link-local and other internal addresses (see
    /// [`internal_kind`](crate::internal_kind)); off, only the `insecure_registries` are reached there, as named.
    /// Tests and registries on the node need it; the cloud metadata service is among them.
    pub allow_internal_addresses: bool,
    /// The egress proxy for registry requests (the webhook builds it from `--registry-proxy`
    /// or its `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`); `None`: direct. Behind a proxy, names are
    /// resolved by the proxy: only literal addresses are checked.
    pub proxy: Option<Arc<akv_proxy::ProxySettings>>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            timeout: Duration::from_secs(4),
            cache_ttl: Duration::from_secs(10 * 60),
            cache_capacity: 1000,
            insecure_registries: Vec::new(),
            acr: None,
            extra_roots: Vec::new(),
            allow_internal_addresses: false,
            proxy: None,
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls to [`ImageResolver::entrypoint`](crate::ImageResolver::entrypoint).
    pub lookups: u64,
    /// Answered from the cache without contacting a registry.
    pub hits: u64,
    /// Went to a registry.
    pub misses: u64,
    /// Ended in an error.
    pub errors: u64,
}
