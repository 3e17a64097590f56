//! The namespace's `akv-env.io/vault` and `akv-env.io/cloud` annotations and its opt-in label,
//! read through the API and
//! cached briefly (a bounded moka cache: one GET per namespace per TTL, shared by concurrent
//! reviews). A watch (kube's reflector) would need kube's `runtime` feature; the short TTL keeps
//! answers fresh enough for labels and annotations that change rarely.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use akv_mutation::ANNOTATION_VAULT;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use moka::future::Cache;

use crate::selector::NamespaceSelector;

/// The annotation's value (`None`: not set), or why it could not be read.
pub type VaultFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send + 'a>>;

/// Whether the namespace carries the opt-in label, or why it could not be read.
pub type EnabledFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;

/// Where namespace annotations come from: the API server, or nowhere (no cluster).
pub trait NamespaceSource: Send + Sync {
    fn vault_annotation<'a>(&'a self, namespace: &'a str) -> VaultFuture<'a>;

    /// Whether the namespace is selected by the webhook's namespace selector. Checked before
    /// any Secret or ServiceAccount is read, because `/mutate` answers whoever reaches it and a
    /// forged review can name any namespace. Sources without a cluster say yes: with no API
    /// access there is nothing to read.
    fn enabled<'a>(&'a self, _namespace: &'a str) -> EnabledFuture<'a> {
        Box::pin(async { Ok(true) })
    }

    /// The selector [`Self::enabled`] applies, in kubectl's syntax, for messages.
    fn selector(&self) -> String {
        NamespaceSelector::default().to_string()
    }

    /// Whether the namespace is annotated `akv-env.io/allow-managed-identity: "true"`, letting
    /// its pods choose the node's managed identity. Sources without a cluster say no.
    fn allows_managed_identity<'a>(&'a self, _namespace: &'a str) -> EnabledFuture<'a> {
        Box::pin(async { Ok(false) })
    }

    /// The namespace's `akv-env.io/cloud` annotation (`None`: not set). Sources without a
    /// cluster have none.
    fn cloud_annotation<'a>(&'a self, _namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

/// Namespaces with an `akv-env.io/cloud` annotation (and nothing else), for tests.
pub struct CloudNamespaces(pub HashMap<String, String>);

impl NamespaceSource for CloudNamespaces {
    fn vault_annotation<'a>(&'a self, _namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async { Ok(None) })
    }

    fn cloud_annotation<'a>(&'a self, namespace: &'a str) -> VaultFuture<'a> {
        let answer = self.0.get(namespace).cloned();
        Box::pin(async move { Ok(answer) })
    }
}

/// Namespaces that allow managed identity (and have no default vault), for tests.
pub struct ManagedIdentityNamespaces(pub Vec<String>);

impl NamespaceSource for ManagedIdentityNamespaces {
    fn vault_annotation<'a>(&'a self, _namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async { Ok(None) })
    }

    fn allows_managed_identity<'a>(&'a self, namespace: &'a str) -> EnabledFuture<'a> {
        let allowed = self.0.iter().any(|n| n == namespace);
        Box::pin(async move { Ok(allowed) })
    }
}

/// No cluster to ask (tests, or a webhook run without a kube config): no namespace defaults.
pub struct NoNamespaces;

impl NamespaceSource for NoNamespaces {
    fn vault_annotation<'a>(&'a self, _namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async { Ok(None) })
    }
}

/// Fixed answers, for tests and for offline use.
pub struct FixedNamespaces(pub HashMap<String, String>);

impl NamespaceSource for FixedNamespaces {
    fn vault_annotation<'a>(&'a self, namespace: &'a str) -> VaultFuture<'a> {
        let answer = self.0.get(namespace).cloned();
        Box::pin(async move { Ok(answer) })
    }
}

/// Namespaces remembered at once; past it, moka evicts those least likely to be used again.
const NAMESPACE_CACHE_CAPACITY: u64 = 10_000;

/// Reads `Namespace` objects with kube, keeping each answer for `ttl` so a burst of pods in
/// one namespace costs one API call.
pub struct KubeNamespaces {
    api: Api<Namespace>,
    selector: NamespaceSelector,
    cache: Cache<String, Facts>,
}

/// What the webhook reads from a namespace.
#[derive(Debug, Clone)]
struct Facts {
    enabled: bool,
    vault: Option<String>,
    allow_managed_identity: bool,
    cloud: Option<String>,
}

impl KubeNamespaces {
    pub fn new(client: kube::Client, ttl: Duration, selector: NamespaceSelector) -> Self {
        KubeNamespaces {
            api: Api::all(client),
            selector,
            cache: Cache::builder()
                .max_capacity(NAMESPACE_CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }
}

impl KubeNamespaces {
    /// One GET per namespace per `ttl`, for both the label and the annotation; concurrent
    /// reviews in one namespace wait for the same GET (a failed one is not remembered).
    async fn facts(&self, namespace: &str) -> Result<Facts, String> {
        self.cache
            .try_get_with_by_ref(namespace, self.read(namespace))
            .await
            .map_err(|e: Arc<String>| (*e).clone())
    }

    async fn read(&self, namespace: &str) -> Result<Facts, String> {
        let ns = self
            .api
            .get(namespace)
            .await
            .map_err(|e| format!("cannot read namespace {namespace}: {e}"))?;
        let facts = Facts {
            enabled: self
                .selector
                .matches(ns.metadata.labels.as_ref().unwrap_or(&Default::default())),
            allow_managed_identity: ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(akv_mutation::ANNOTATION_ALLOW_MANAGED_IDENTITY))
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            cloud: ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(akv_mutation::ANNOTATION_CLOUD))
                .cloned(),
            vault: ns
                .metadata
                .annotations
                .and_then(|mut a| a.remove(ANNOTATION_VAULT)),
        };
        Ok(facts)
    }
}

impl NamespaceSource for KubeNamespaces {
    fn vault_annotation<'a>(&'a self, namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async move { self.facts(namespace).await.map(|f| f.vault) })
    }

    fn enabled<'a>(&'a self, namespace: &'a str) -> EnabledFuture<'a> {
        Box::pin(async move { self.facts(namespace).await.map(|f| f.enabled) })
    }

    fn selector(&self) -> String {
        self.selector.to_string()
    }

    fn allows_managed_identity<'a>(&'a self, namespace: &'a str) -> EnabledFuture<'a> {
        Box::pin(async move {
            self.facts(namespace)
                .await
                .map(|f| f.allow_managed_identity)
        })
    }

    fn cloud_annotation<'a>(&'a self, namespace: &'a str) -> VaultFuture<'a> {
        Box::pin(async move { self.facts(namespace).await.map(|f| f.cloud) })
    }
}
