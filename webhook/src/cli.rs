//! Command-line flags, each with an `AKV_ENV_WEBHOOK_*` env fallback; validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use akv_placeholder::Vault;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::acr::{AcrIdentity, AcrSettings};
use crate::duration::parse_duration;

/// The injector image `scripts/release.sh` publishes for this version: what `inject` uses
/// when no `--injector-image` is given (like `linkerd inject`).
pub const RELEASED_INJECTOR_IMAGE: &str =
    concat!("ghcr.io/akv-env/akv-env:", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Parser)]
#[command(
    name = "akv-env-webhook",
    version,
    about = "Kubernetes mutating admission webhook that gives pods Azure Key Vault secrets as env vars"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "AKV_ENV_WEBHOOK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve admission reviews over HTTPS (`/mutate`), health and metrics over HTTP.
    ///
    /// A flag given twice takes its last value (repeatable ones add up), so the chart's
    /// `extraArgs`, rendered after its own flags, can override them.
    #[command(args_override_self = true)]
    Serve(Box<ServeArgs>),
    /// Print manifests as they would be admitted (Pods and the pod templates of workloads).
    Inject(Box<InjectArgs>),
    /// Rewrite akv2k8s manifests: `NAME@azurekeyvault[?QUERY]` values that refer to an
    /// AzureKeyVaultSecret in the input become direct akv-env placeholders.
    Migrate(MigrateArgs),
    /// Benchmark floor: a bare rustls+axum server answering every review "allowed".
    #[command(hide = true)]
    Floor(FloorArgs),
}

/// What the mutation adds to pods.
#[derive(Debug, Args)]
pub struct MutationArgs {
    /// Image holding the static `akv-env` binary at /akv-env (run by the added init container).
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_IMAGE")]
    pub injector_image: String,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

impl MutationArgs {
    pub fn config(&self) -> akv_mutation::Config {
        self.policy.config(self.injector_image.clone())
    }
}

/// How pods are mutated, apart from the injector image: declared once for `serve` and
/// `inject`, so the offline CLI cannot drift from what admission does.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Vault (name or https URL) for placeholders without `?vault=` when neither the pod nor
    /// its namespace has an `akv-env.io/vault` annotation.
    #[arg(long, env = "AKV_ENV_WEBHOOK_DEFAULT_VAULT", value_parser = parse_vault)]
    pub default_vault: Option<Vault>,

    #[command(flatten)]
    pub init_container: InitContainerArgs,

    #[command(flatten)]
    pub trust: TrustArgs,

    /// Shortest `akv-env.io/restart-on-change` check interval pods get; shorter ones are raised
    /// to it (with a warning), so no pod polls Key Vault every second.
    #[arg(long, env = "AKV_ENV_WEBHOOK_RESTART_ON_CHANGE_FLOOR", default_value = "1m", value_parser = parse_duration)]
    pub restart_on_change_floor: Duration,
}

impl PolicyArgs {
    /// The mutation's settings with `injector_image` in the added init container.
    pub fn config(&self, injector_image: String) -> akv_mutation::Config {
        let mut config = akv_mutation::Config::new(injector_image);
        config.default_vault = self.default_vault.clone();
        self.init_container.apply(&mut config);
        config.trust = self.trust.policy();
        config.restart_floor = self.restart_on_change_floor;
        config
    }
}

/// The init container the mutation adds (it copies the injector into the pod).
#[derive(Debug, Args)]
pub struct InitContainerArgs {
    /// `imagePullPolicy` of the added init container.
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_PULL_POLICY", value_enum, default_value_t = PullPolicy::IfNotPresent)]
    pub injector_pull_policy: PullPolicy,

    /// CPU request of the added init container ("" leaves it unset).
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_CPU_REQUEST", default_value = "10m", value_parser = parse_quantity)]
    pub injector_cpu_request: String,

    /// Memory request of the added init container ("" leaves it unset).
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_MEMORY_REQUEST", default_value = "16Mi", value_parser = parse_quantity)]
    pub injector_memory_request: String,

    /// CPU limit of the added init container ("" leaves it unset).
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_CPU_LIMIT", default_value = "100m", value_parser = parse_quantity)]
    pub injector_cpu_limit: String,

    /// Memory limit of the added init container ("" leaves it unset).
    #[arg(long, env = "AKV_ENV_WEBHOOK_INJECTOR_MEMORY_LIMIT", default_value = "64Mi", value_parser = parse_quantity)]
    pub injector_memory_limit: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    #[value(name = "Always")]
    Always,
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    #[value(name = "Never")]
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

impl InitContainerArgs {
    /// Sets the init container's pull policy and resources in `config`.
    pub fn apply(&self, config: &mut akv_mutation::Config) {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        use std::collections::BTreeMap;
        let quantities = |cpu: &str, memory: &str| {
            let map: BTreeMap<String, Quantity> = [("cpu", cpu), ("memory", memory)]
                .into_iter()
                .filter(|(_, q)| !q.is_empty())
                .map(|(k, q)| (k.to_owned(), Quantity(q.to_owned())))
                .collect();
            (!map.is_empty()).then_some(map)
        };
        config.pull_policy = self.injector_pull_policy.as_str().to_owned();
        config.resources.requests =
            quantities(&self.injector_cpu_request, &self.injector_memory_request);
        config.resources.limits = quantities(&self.injector_cpu_limit, &self.injector_memory_limit);
    }
}

/// A Kubernetes quantity as pod specs write them (`10m`, `0.5`, `64Mi`, `1G`), or "" for none.
fn parse_quantity(text: &str) -> Result<String, String> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let number_ok = !number.is_empty()
        && number.parse::<f64>().is_ok()
        && !number.starts_with('.')
        && !number.ends_with('.');
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    );
    if text.is_empty() || (number_ok && suffix_ok) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a Kubernetes quantity; write e.g. 10m, 0.5, 64Mi or 1G"
        ))
    }
}

/// Who may use managed identity, and which hosts are vaults (passed on to the injector).
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Let every namespace's pods choose managed identity (`akv-env.io/auth:
    /// managed-identity`); on AKS that is the node's identity, shared by every pod on the node.
    /// Without it, only namespaces annotated `akv-env.io/allow-managed-identity: "true"` may.
    #[arg(long, env = "AKV_ENV_WEBHOOK_ALLOW_MANAGED_IDENTITY", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_managed_identity: bool,

    /// Vault host suffix allowed besides Key Vault's and Managed HSM's domains (test rigs,
    /// new clouds); repeatable (env: comma-separated). Enforced at admission and by akv-env.
    #[arg(long = "vault-host-suffix", env = "AKV_ENV_WEBHOOK_VAULT_HOST_SUFFIXES", value_delimiter = ',', value_parser = parse_suffix)]
    pub vault_host_suffixes: Vec<String>,

    /// Pin the cloud: AzurePublicCloud, AzureChinaCloud, AzureUSGovernment, or a vault DNS
    /// suffix. Bare vault names take its suffix, akv-env gets its Entra authority and token
    /// audience, and vault URLs of other clouds are refused at admission. Unset: not pinned
    /// (bare names in the public cloud, every cloud's vault URLs accepted).
    #[arg(long, env = "AKV_ENV_WEBHOOK_CLOUD", value_parser = parse_cloud)]
    pub cloud: Option<akv_trust::Cloud>,

    /// A cloud that a namespace may choose with the annotation `akv-env.io/cloud` (overriding
    /// --cloud for its pods); repeatable (env: comma-separated). Namespace admins may be able to
    /// edit that annotation, so it picks among these only. Unset: the annotation is not read.
    #[arg(long = "namespace-cloud", env = "AKV_ENV_WEBHOOK_NAMESPACE_CLOUDS", value_delimiter = ',', value_parser = parse_cloud)]
    pub namespace_clouds: Vec<akv_trust::Cloud>,

    /// PEM file of the cluster's extra CAs (TLS-inspecting firewalls, private endpoints): read at
    /// start-up, written by the added init container next to the injector and trusted by every
    /// wrapped container (--ca-file), besides the built-in roots. At most 64 KiB: list only your
    /// own CAs, the public roots are built in. Restart the webhook when it changes.
    #[arg(long, env = "AKV_ENV_WEBHOOK_CA_BUNDLE_FILE", value_name = "FILE", value_parser = read_ca_bundle)]
    pub ca_bundle_file: Option<CaBundle>,
}

/// The CA bundle's PEM, read and checked when the flag is parsed; shown by its size only.
#[derive(Clone)]
pub struct CaBundle(pub String);

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaBundle({} bytes)", self.0.len())
    }
}

/// The largest CA bundle put into pods (it travels in every mutated pod's spec).
pub const CA_BUNDLE_LIMIT: usize = 64 * 1024;

fn read_ca_bundle(path: &str) -> Result<CaBundle, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA bundle {path}: {e}"))?;
    if pem.len() > CA_BUNDLE_LIMIT {
        return Err(format!(
            "the CA bundle {path} is {} bytes, more than {CA_BUNDLE_LIMIT}; it goes into every \
             mutated pod, so list only your own CAs (the public roots are built in)",
            pem.len()
        ));
    }
    akv_registry::pem_certificates(&pem).map_err(|e| format!("the CA bundle {path}: {e}"))?;
    String::from_utf8(pem)
        .map(CaBundle)
        .map_err(|_| format!("the CA bundle {path} is not text (PEM)"))
}

impl TrustArgs {
    pub fn policy(&self) -> akv_mutation::TrustPolicy {
        akv_mutation::TrustPolicy {
            allow_managed_identity: self.allow_managed_identity,
            vault_hosts: akv_trust::VaultHosts::with_extra_suffixes(&self.vault_host_suffixes)
                .expect("suffixes were validated when parsed"),
            cloud: self.cloud.clone(),
            namespace_clouds: self.namespace_clouds.clone(),
            ca_bundle: self.ca_bundle_file.as_ref().map(|b| b.0.clone()),
        }
    }
}

fn parse_cloud(text: &str) -> Result<akv_trust::Cloud, String> {
    akv_trust::Cloud::parse(text).map_err(|e| e.to_string())
}

fn parse_suffix(text: &str) -> Result<String, String> {
    akv_trust::validate_suffix(text).map_err(|e| e.to_string())
}

/// Reading ENTRYPOINT/CMD from registries for containers without `command`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Deadline for one image lookup (token exchange, manifests, config).
    #[arg(long, env = "AKV_ENV_WEBHOOK_REGISTRY_TIMEOUT", default_value = "4s", value_parser = parse_duration)]
    pub registry_timeout: Duration,

    /// How long an entrypoint read by tag is reused (by digest: for good).
    #[arg(long, env = "AKV_ENV_WEBHOOK_CACHE_TTL", default_value = "10m", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Most entrypoints kept in the cache.
    #[arg(long, env = "AKV_ENV_WEBHOOK_CACHE_CAPACITY", default_value_t = 1000)]
    pub cache_capacity: usize,

    /// Registry (`host[:port]`) spoken to over plain HTTP; repeatable (env: comma-separated).
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registry: Vec<String>,

    /// PEM file of a CA trusted for registries besides the built-in webpki roots (the system
    /// CA store is not used); repeatable (env: comma-separated).
    #[arg(long, env = "AKV_ENV_WEBHOOK_REGISTRY_CA_FILE", value_delimiter = ',')]
    pub registry_ca_file: Vec<PathBuf>,

    /// Let lookups reach loopback, link-local (cloud metadata service, wireserver) and other
    /// internal addresses; off, only --insecure-registry hosts are reached there, as named.
    #[arg(long, env = "AKV_ENV_WEBHOOK_REGISTRY_ALLOW_INTERNAL_ADDRESSES")]
    pub registry_allow_internal_addresses: bool,

    /// HTTP(S) proxy for registry lookups (`http://[user:pass@]host:port`). It overrides
    /// HTTPS_PROXY and HTTP_PROXY for registries; NO_PROXY still applies. Without it, lookups
    /// use HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the webhook's environment (upper case first).
    #[arg(long, env = "AKV_ENV_WEBHOOK_REGISTRY_PROXY")]
    pub registry_proxy: Option<String>,
}

impl RegistryArgs {
    /// The resolver's settings; reads the CA files, so a bad one stops start-up with a
    /// message naming it.
    pub fn options(&self) -> Result<akv_registry::RegistryOptions, String> {
        let mut extra_roots = Vec::new();
        for path in &self.registry_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                format!("--registry-ca-file {}: cannot read it: {e}", path.display())
            })?;
            let certs = akv_registry::pem_certificates(&pem)
                .map_err(|e| format!("--registry-ca-file {}: {e}", path.display()))?;
            extra_roots.extend(certs);
        }
        Ok(akv_registry::RegistryOptions {
            timeout: self.registry_timeout,
            cache_ttl: self.cache_ttl,
            cache_capacity: self.cache_capacity,
            insecure_registries: self.insecure_registry.clone(),
            acr: None,
            extra_roots,
            allow_internal_addresses: self.registry_allow_internal_addresses,
            proxy: registry_proxy(
                self.registry_proxy.as_deref(),
                &akv_proxy::ProxyVars::from_process_env(),
            )?,
        })
    }
}

/// The registry proxy: `--registry-proxy` for both schemes if given, else the environment's
/// `HTTPS_PROXY` / `HTTP_PROXY`; `NO_PROXY` applies either way. The operator sets the webhook's
/// environment (the chart's `proxy` values), so it is trusted like its flags.
fn registry_proxy(
    flag: Option<&str>,
    vars: &akv_proxy::ProxyVars,
) -> Result<Option<std::sync::Arc<akv_proxy::ProxySettings>>, String> {
    let flag = flag.filter(|f| !f.trim().is_empty());
    akv_proxy::ProxySettings::from_vars_with_override(
        vars,
        flag.map(|f| ("--registry-proxy", f)),
        akv_proxy::PlainHttp::Proxied,
    )
    .map(|s| s.map(std::sync::Arc::new))
    .map_err(|e| e.to_string())
}

/// Azure Container Registry through the webhook's own Microsoft Entra identity.
#[derive(Debug, Args)]
pub struct AcrArgs {
    /// Identity for ACR image lookups (`*.azurecr.io`); `auto`: workload identity when
    /// AZURE_FEDERATED_TOKEN_FILE is set, else none (pull secrets and anonymous access only).
    #[arg(long, env = "AKV_ENV_WEBHOOK_ACR_IDENTITY", value_enum, default_value_t = AcrIdentity::Auto)]
    pub acr_identity: AcrIdentity,

    /// Entra scope of the token exchanged at ACR.
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_ACR_SCOPE",
        default_value = "https://containerregistry.azure.net/.default"
    )]
    pub acr_scope: String,

    /// Extra registry host that speaks ACR's token exchange (e.g. a custom domain); repeatable.
    #[arg(long, env = "AKV_ENV_WEBHOOK_ACR_HOSTS", value_delimiter = ',')]
    pub acr_host: Vec<String>,

    /// Extra CA (PEM) trusted for Entra ID and ACR, e.g. for private endpoints.
    #[arg(long, env = "AKV_ENV_WEBHOOK_ACR_CA_FILE")]
    pub acr_ca_file: Option<PathBuf>,

    /// Client id of the webhook's identity (set by azure-workload-identity).
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,

    #[arg(long, env = "AZURE_TENANT_ID")]
    pub azure_tenant_id: Option<String>,

    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub azure_federated_token_file: Option<PathBuf>,

    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    pub azure_authority_host: Option<String>,
}

impl AcrArgs {
    pub fn settings(&self) -> AcrSettings {
        AcrSettings {
            identity: self.acr_identity,
            client_id: self.azure_client_id.clone(),
            tenant_id: self.azure_tenant_id.clone(),
            federated_token_file: self.azure_federated_token_file.clone(),
            authority_host: self.azure_authority_host.clone(),
            scope: self.acr_scope.clone(),
            extra_hosts: self.acr_host.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for `/mutate`.
    #[arg(long, env = "AKV_ENV_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Plain HTTP address for `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_HEALTH_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub health_listen: SocketAddr,

    /// PEM certificate chain; re-read when it changes (e.g. cert-manager rotation).
    #[arg(long, env = "AKV_ENV_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,

    /// PEM private key matching --tls-cert.
    #[arg(long, env = "AKV_ENV_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,

    #[command(flatten)]
    pub mutation: MutationArgs,

    /// Read ENTRYPOINT/CMD from registries for containers without `command`. When false, such
    /// containers with placeholders are refused with a message asking for `command`.
    #[arg(long, env = "AKV_ENV_WEBHOOK_IMAGE_LOOKUP", default_value_t = true, action = ArgAction::Set)]
    pub image_lookup: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,

    #[command(flatten)]
    pub acr: AcrArgs,

    /// Bound on answering one review; keep it below the webhook's `timeoutSeconds` (10s by
    /// default) and above --registry-timeout.
    #[arg(long, env = "AKV_ENV_WEBHOOK_ADMISSION_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub admission_timeout: Duration,

    /// How long a namespace's `akv-env.io/vault` annotation is reused.
    #[arg(long, env = "AKV_ENV_WEBHOOK_NAMESPACE_CACHE_TTL", default_value = "30s", value_parser = parse_duration)]
    pub namespace_cache_ttl: Duration,

    /// The namespace selector the chart gives the API server (`webhook.namespaceSelector`), as
    /// JSON. The webhook checks it itself before reading any Secret, since `/mutate` answers
    /// whoever reaches it.
    #[arg(long, env = "AKV_ENV_WEBHOOK_NAMESPACE_SELECTOR", default_value = crate::selector::DEFAULT_NAMESPACE_SELECTOR, value_parser = crate::selector::NamespaceSelector::parse)]
    pub namespace_selector: crate::selector::NamespaceSelector,

    /// Largest accepted review body in bytes (larger: 413).
    #[arg(long, env = "AKV_ENV_WEBHOOK_BODY_LIMIT", default_value_t = 3 * 1024 * 1024)]
    pub body_limit: usize,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "AKV_ENV_WEBHOOK_CERT_RELOAD_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,

    /// How long shutdown (SIGTERM) waits for in-flight reviews.
    #[arg(long, env = "AKV_ENV_WEBHOOK_SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one client can make the webhook hold (see `limits.rs`).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Deadline for a TLS handshake and for each request head (also the longest wait for the
    /// next request on an HTTP/1.1 connection).
    #[arg(long, env = "AKV_ENV_WEBHOOK_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Deadline for reading one review body (408 after it).
    #[arg(long, env = "AKV_ENV_WEBHOOK_BODY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// A connection without a request in flight for this long is closed (HTTP/2: GOAWAY).
    #[arg(long, env = "AKV_ENV_WEBHOOK_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Interval of HTTP/2 keep-alive pings; a peer silent for one more header timeout is dropped.
    #[arg(long, env = "AKV_ENV_WEBHOOK_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// Open connections on the HTTPS port; more are closed on accept.
    #[arg(long, env = "AKV_ENV_WEBHOOK_MAX_CONNECTIONS", default_value_t = 1000)]
    pub max_connections: usize,

    /// Open connections on the health/metrics port; more are closed on accept.
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_HEALTH_MAX_CONNECTIONS",
        default_value_t = 64
    )]
    pub health_max_connections: usize,

    /// Reviews decided at once; more are answered 503 at once (the API server applies the
    /// failure policy and the pod's controller retries) instead of queueing past its timeout.
    #[arg(long, env = "AKV_ENV_WEBHOOK_MAX_REVIEWS", default_value_t = 64)]
    pub max_reviews: usize,

    /// Bytes of review bodies held in memory at once across all connections (503 past it);
    /// keep it well under the container's memory limit.
    #[arg(long, env = "AKV_ENV_WEBHOOK_BODY_MEMORY", default_value_t = 64 * 1024 * 1024)]
    pub body_memory: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
            keepalive_interval: self.keepalive_interval,
            max_connections: self.max_connections,
            health_max_connections: self.health_max_connections,
            max_reviews: self.max_reviews,
            body_memory: self.body_memory,
        }
    }
}

impl ServeArgs {
    /// Checks that flags agree with each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.image_lookup && self.registry.registry_timeout >= self.admission_timeout {
            return Err(format!(
                "--registry-timeout ({:?}) must be shorter than --admission-timeout ({:?}) so a \
                 slow registry yields a clear refusal",
                self.registry.registry_timeout, self.admission_timeout
            ));
        }
        if self.body_limit < 1024 {
            return Err(format!(
                "--body-limit {} is too small for any review",
                self.body_limit
            ));
        }
        let limits = &self.limits;
        if limits.body_memory < self.body_limit {
            return Err(format!(
                "--body-memory ({}) must be at least --body-limit ({}), or the largest review \
                 could never be read",
                limits.body_memory, self.body_limit
            ));
        }
        for (flag, value) in [
            ("--max-connections", limits.max_connections),
            ("--health-max-connections", limits.health_max_connections),
            ("--max-reviews", limits.max_reviews),
        ] {
            if value == 0 || value > u32::MAX as usize / 2 {
                return Err(format!("{flag} {value} must be between 1 and 2147483647"));
            }
        }
        for (flag, value) in [
            ("--header-timeout", limits.header_timeout),
            ("--body-timeout", limits.body_timeout),
            ("--idle-timeout", limits.idle_timeout),
            ("--keepalive-interval", limits.keepalive_interval),
        ] {
            if value.is_zero() {
                return Err(format!("{flag} must be longer than zero"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
Containers with placeholders but no `command` need their image's ENTRYPOINT/CMD. Offline, \
this is an error naming the container (exit status 1, nothing printed) unless --image-lookup \
is given, because guessing would print a manifest that does not match what admission does. \
Set `command` on such containers, or pass --image-lookup (anonymous registry access only).

Manifests printed here carry `akv-env.io/status: injected` on their pod templates, so the \
webhook leaves their pods alone at admission. Documents other than Pods, Deployments, \
StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs and Lists of \
them are printed unchanged, byte for byte.

--check (for CI of GitOps repositories) prints no manifests. It lists, one line per \
container, every container or init container (native sidecars included) and ephemeral \
container that would START with a raw `...@azurekeyvault` value because the webhook would \
not wrap it: its namespace is not enabled, the pod opts out (`akv-env.io/inject: \"false\"`), \
the pod already carries `akv-env.io/status`, or the container is ephemeral. A container \
whose command is already the injector is fine. A namespace is enabled when a Namespace \
document in the same input has the label azure-key-vault-env-injection=enabled (a document \
without it means: not enabled); for namespaces without a document, --enabled-namespace lists \
the enabled ones; with neither, a namespace is assumed enabled and a note says so. Objects \
without metadata.namespace are in `default`. \
Exit status: 0 and a one-line summary when all is well; 2 when a container is listed; 1 when \
a document cannot be read or holds a malformed placeholder that admission would refuse.")]
pub struct InjectArgs {
    /// Manifest file, or `-` for standard input. Multi-document YAML (or JSON).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,

    /// Image holding the static `akv-env` binary at /akv-env (run by the added init
    /// container). Default: the released injector image of this version.
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_INJECTOR_IMAGE",
        default_value = RELEASED_INJECTOR_IMAGE
    )]
    pub injector_image: Option<String>,

    /// The `akv-env.io/vault` annotation of namespaces without a Namespace document in the
    /// input (a document's `akv-env.io/*` annotations are read from it, as admission would).
    #[arg(long, env = "AKV_ENV_WEBHOOK_NAMESPACE_VAULT")]
    pub namespace_vault: Option<String>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Read ENTRYPOINT/CMD from registries (anonymously) for containers without `command`.
    #[arg(long, env = "AKV_ENV_WEBHOOK_IMAGE_LOOKUP", default_value_t = false, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub image_lookup: bool,

    /// Print no manifests; list containers that would start with unwrapped placeholders
    /// (exit status 2 if any). See below.
    #[arg(long)]
    pub check: bool,

    /// With --check: a namespace labelled azure-key-vault-env-injection=enabled in the
    /// cluster; repeatable (env: comma-separated). When given, other namespaces without a
    /// Namespace document in the input count as not enabled.
    #[arg(
        long,
        env = "AKV_ENV_WEBHOOK_ENABLED_NAMESPACES",
        value_delimiter = ',',
        requires = "check"
    )]
    pub enabled_namespace: Vec<String>,

    /// With --check: the chart's `webhook.namespaceSelector` (JSON), applied to Namespace
    /// documents in the input.
    #[arg(long, env = "AKV_ENV_WEBHOOK_NAMESPACE_SELECTOR", default_value = crate::selector::DEFAULT_NAMESPACE_SELECTOR, value_parser = crate::selector::NamespaceSelector::parse)]
    pub namespace_selector: crate::selector::NamespaceSelector,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl InjectArgs {
    /// The mutation's settings (`--injector-image` is present unless `--check` is given).
    pub fn config(&self) -> akv_mutation::Config {
        self.policy
            .config(self.injector_image.clone().unwrap_or_default())
    }

    /// `--check`'s settings.
    pub fn check_options(&self) -> crate::inject::CheckOptions {
        crate::inject::CheckOptions {
            injector_path: self.config().injector_path(),
            enabled_namespaces: (!self.enabled_namespace.is_empty())
                .then(|| self.enabled_namespace.clone()),
            namespace_selector: self.namespace_selector.clone(),
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
Give it the workloads and the AzureKeyVaultSecret resources they use, e.g. \
`kubectl get azurekeyvaultsecrets -n NS -o yaml` appended to the manifests. Prints the \
manifests with each convertible placeholder rewritten (other documents byte for byte) and, on \
standard error, one line per thing it could not convert: Secrets the akv2k8s controller syncs \
(akv-env has no equivalent, by design), username/password queries, YAML multi-key secrets, \
transforms other than base64decode, references to resources not in the input. \
Exit status: 0 when everything was converted; 2 when some lines were printed; 1 when the \
input cannot be read.")]
pub struct MigrateArgs {
    /// Manifest file, or `-` for standard input. Multi-document YAML (or JSON).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    #[arg(long)]
    pub tls_cert: PathBuf,
    #[arg(long)]
    pub tls_key: PathBuf,
}

fn parse_vault(text: &str) -> Result<Vault, String> {
    Vault::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_parse_and_validate() {
        let args = serve_args(&[
            "--image-lookup",
            "false",
            "--insecure-registry",
            "a:5000",
            "--insecure-registry",
            "b",
        ])
        .unwrap();
        assert!(!args.image_lookup);
        assert_eq!(args.registry.insecure_registry, ["a:5000", "b"]);
        assert_eq!(args.listen.port(), 8443);
        args.validate().unwrap();

        let args = serve_args(&["--registry-timeout", "9s"]).unwrap();
        assert!(args.validate().unwrap_err().contains("--registry-timeout"));

        let err = serve_args(&["--default-vault", "1bad"]).unwrap_err();
        assert!(
            err.contains("--default-vault") && err.contains("start with a letter"),
            "{err}"
        );
        let args = serve_args(&[
            "--allow-managed-identity",
            "--vault-host-suffix",
            ".Vault.Test",
        ])
        .unwrap();
        let policy = args.mutation.config().trust;
        assert!(policy.allow_managed_identity);
        assert_eq!(policy.vault_hosts.extra_suffixes(), ["vault.test"]);
        let err = serve_args(&["--vault-host-suffix", "test"]).unwrap_err();
        assert!(
            err.contains("--vault-host-suffix") && err.contains("at least two labels"),
            "{err}"
        );
        let err = serve_args(&["--cache-ttl", "5x"]).unwrap_err();
        assert!(
            err.contains("--cache-ttl") && err.contains("unknown unit"),
            "{err}"
        );
    }

    /// `serve` with its required flags and `extra`, parsed; Err is clap's message.
    fn serve_args(extra: &[&str]) -> Result<Box<ServeArgs>, String> {
        let mut argv = vec![
            "akv-env-webhook",
            "serve",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--injector-image",
            "img",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).map(|c| c.command) {
            Ok(Command::Serve(args)) => Ok(args),
            Ok(_) => panic!("not serve"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn init_container_flags_reach_the_mutation_config() {
        let serve = |extra: &[&str]| serve_args(extra).map(|args| args.mutation.config());
        let defaults = serve(&[]).unwrap();
        assert_eq!(
            defaults,
            akv_mutation::Config::new("img"),
            "the flags' defaults are the library's"
        );
        let config = serve(&[
            "--injector-pull-policy=Always",
            "--injector-memory-request=32Mi",
            "--injector-cpu-limit=",
            "--injector-memory-limit=",
        ])
        .unwrap();
        assert_eq!(config.pull_policy, "Always");
        let requests = config.resources.requests.unwrap();
        assert_eq!(requests["memory"].0, "32Mi");
        assert_eq!(requests["cpu"].0, "10m");
        assert_eq!(
            config.resources.limits, None,
            "no limit when both are emptied"
        );
        for (flag, want) in [
            ("--injector-cpu-request=ten", "not a Kubernetes quantity"),
            ("--injector-memory-limit=64MB", "not a Kubernetes quantity"),
            ("--injector-pull-policy=always", "invalid value 'always'"),
        ] {
            let err = serve(&[flag]).unwrap_err();
            assert!(err.contains(want), "{flag}: {err}");
        }
        // A flag given twice takes its last value (the chart's extraArgs override its own flags).
        let config = serve(&[
            "--injector-pull-policy=Never",
            "--injector-pull-policy=Always",
        ])
        .unwrap();
        assert_eq!(config.pull_policy, "Always");
    }

    #[test]
    fn cloud_flags_reach_the_trust_policy() {
        use akv_trust::Cloud;
        let serve = |extra: &[&str]| serve_args(extra).map(|args| args.mutation.config().trust);
        let open = serve(&[]).unwrap();
        assert_eq!((open.cloud, open.namespace_clouds), (None, vec![]));
        let pinned = serve(&[
            "--cloud=AzureChinaCloud",
            "--namespace-cloud=AzureUSGovernment",
            "--namespace-cloud=vault.example.test",
        ])
        .unwrap();
        assert_eq!(pinned.cloud, Some(Cloud::China));
        assert_eq!(
            pinned.namespace_clouds,
            [
                Cloud::UsGovernment,
                Cloud::Suffix("vault.example.test".into())
            ]
        );
        assert_eq!(
            serve(&["--cloud=vault.usgovcloudapi.net"]).unwrap().cloud,
            Some(Cloud::UsGovernment)
        );
        let err = serve(&["--cloud=AzureGermanCloud"]).unwrap_err();
        assert!(err.contains("\"AzureGermanCloud\" is not a cloud"), "{err}");
    }
}
