//! Where images' ENTRYPOINT/CMD come from: the registries (with the pod's pull secrets), a
//! fixed table (tests), or nowhere (lookups disabled).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use akv_mutation::{Entrypoints, ImageEntrypoint, ImageLookup};
use akv_registry::{CacheStats, DockerConfig, ImageResolver, Platform};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Api;

/// What the webhook knows about the pod when it asks for entrypoints.
#[derive(Debug, Clone, Copy)]
pub struct LookupRequest<'a> {
    pub namespace: &'a str,
    pub images: &'a [ImageLookup],
    /// The pod's `kubernetes.io/arch` node selector; linux/amd64 when absent.
    pub arch: Option<&'a str>,
    pub pull_secrets: &'a [String],
    pub service_account: &'a str,
}

pub type EntrypointsFuture<'a> = Pin<Box<dyn Future<Output = Entrypoints> + Send + 'a>>;

/// Answers every image of a request: its entrypoint, or why it is not known.
pub trait EntrypointSource: Send + Sync {
    fn entrypoints<'a>(&'a self, request: LookupRequest<'a>) -> EntrypointsFuture<'a>;

    /// The cache's counters for `/metrics`; a source without a cache has none.
    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

/// Image lookups switched off: every container needs its own `command`.
pub struct Disabled {
    /// Why, in the words the operator will see, e.g. which flag turns lookups on.
    pub reason: String,
}

impl EntrypointSource for Disabled {
    fn entrypoints<'a>(&'a self, request: LookupRequest<'a>) -> EntrypointsFuture<'a> {
        let answers = request
            .images
            .iter()
            .map(|l| (l.image.clone(), Err(self.reason.clone())))
            .collect();
        Box::pin(async move { answers })
    }
}

/// A fixed table of image → entrypoint; images not in it are unknown.
#[derive(Default)]
pub struct Table(pub HashMap<String, ImageEntrypoint>);

impl EntrypointSource for Table {
    fn entrypoints<'a>(&'a self, request: LookupRequest<'a>) -> EntrypointsFuture<'a> {
        let answers = request
            .images
            .iter()
            .map(|l| {
                let answer = self
                    .0
                    .get(&l.image)
                    .cloned()
                    .ok_or_else(|| "the image is not in the table".to_owned());
                (l.image.clone(), answer)
            })
            .collect();
        Box::pin(async move { answers })
    }
}

/// The registries, through `akv-registry`, with the pod's and its service account's
/// `imagePullSecrets` read with kube when a cluster is available.
pub struct Registries {
    resolver: ImageResolver,
    kube: Option<kube::Client>,
}

impl Registries {
    pub fn new(resolver: ImageResolver, kube: Option<kube::Client>) -> Self {
        Registries { resolver, kube }
    }

    /// Pull secrets of the pod, then of its service account. A secret that cannot be read or
    /// parsed is skipped with a warning: the image may still be public.
    async fn docker_configs(&self, request: &LookupRequest<'_>) -> Vec<DockerConfig> {
        let Some(client) = &self.kube else {
            return Vec::new();
        };
        let namespace = request.namespace;
        let mut names: Vec<String> = request.pull_secrets.to_vec();
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
        match accounts.get_opt(request.service_account).await {
            Ok(Some(sa)) => names.extend(
                sa.image_pull_secrets
                    .into_iter()
                    .flatten()
                    .map(|r| r.name)
                    .filter(|n| !n.is_empty()),
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(
                namespace, service_account = request.service_account, %error,
                "cannot read the service account's imagePullSecrets"
            ),
        }
        let mut seen = BTreeSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let reads = names.iter().map(|name| {
            let secrets = secrets.clone();
            async move { (name, secrets.get_opt(name).await) }
        });
        let mut configs = Vec::new();
        for (name, result) in futures::future::join_all(reads).await {
            let secret = match result {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    tracing::warn!(namespace, secret = %name, "imagePullSecret does not exist");
                    continue;
                }
                Err(error) => {
                    tracing::warn!(namespace, secret = %name, %error, "cannot read imagePullSecret");
                    continue;
                }
            };
            // Only the two pull-secret types: a Secret of another type (a TLS key, a token) is
            // never parsed, whatever keys it holds.
            let data = secret.data.unwrap_or_default();
            let secret_type = secret.type_.as_deref().unwrap_or_default();
            let parsed = match DockerConfig::from_secret(
                secret_type,
                data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())),
            ) {
                Ok(Some(config)) => Ok(config),
                Ok(None) => {
                    tracing::warn!(namespace, secret = %name, secret_type, "imagePullSecret is not of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg with its key; ignored");
                    continue;
                }
                Err(error) => Err(error),
            };
            match parsed {
                Ok(config) => configs.push(config),
                Err(error) => {
                    tracing::warn!(namespace, secret = %name, %error, "imagePullSecret is not usable")
                }
            }
        }
        configs
    }
}

impl EntrypointSource for Registries {
    fn entrypoints<'a>(&'a self, request: LookupRequest<'a>) -> EntrypointsFuture<'a> {
        Box::pin(async move {
            let configs = if request.images.is_empty() {
                Vec::new()
            } else {
                self.docker_configs(&request).await
            };
            let platform = Platform::linux(request.arch.unwrap_or("amd64"));
            let images: BTreeSet<&str> = request.images.iter().map(|l| l.image.as_str()).collect();
            let configs = Arc::new(configs);
            let lookups = images.into_iter().map(|image| {
                let (platform, configs) = (&platform, configs.clone());
                async move {
                    let answer = self
                        .resolver
                        .entrypoint(image, platform, &configs)
                        .await
                        .map(|e| ImageEntrypoint {
                            entrypoint: e.entrypoint,
                            cmd: e.cmd,
                        })
                        .map_err(|e| e.to_string());
                    (image.to_owned(), answer)
                }
            });
            futures::future::join_all(lookups)
                .await
                .into_iter()
                .collect()
        })
    }

    fn stats(&self) -> CacheStats {
        self.resolver.stats()
    }
}
