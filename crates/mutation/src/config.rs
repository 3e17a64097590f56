//! What the mutation adds to a pod, and the annotations and names it reads and writes.

use akv_placeholder::Vault;
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Pod annotation: `"false"` skips the pod.
pub const ANNOTATION_INJECT: &str = "akv-env.io/inject";
/// Pod annotation: `"true"` lets the program start even if a value or argument still holds
/// placeholder text after resolution (the injector refuses by default).
pub const ANNOTATION_ALLOW_PLACEHOLDER_TEXT: &str = "akv-env.io/allow-placeholder-text";
/// Injector flag set from [`ANNOTATION_ALLOW_PLACEHOLDER_TEXT`].
pub const FLAG_ALLOW_PLACEHOLDER_TEXT: &str = "--allow-placeholder-text";
/// Pod or namespace annotation: the default vault (name or URL).
pub const ANNOTATION_VAULT: &str = "akv-env.io/vault";
/// Pod annotation set by the mutation; its presence makes admission idempotent.
pub const ANNOTATION_STATUS: &str = "akv-env.io/status";
/// The value of [`ANNOTATION_STATUS`].
pub const STATUS_INJECTED: &str = "injected";
/// The env var telling the injector which vault placeholders without `vault=` use.
pub const DEFAULT_VAULT_ENV: &str = "AKV_ENV_DEFAULT_VAULT";
/// The node selector whose value picks the platform in a multi-arch image index.
pub const ARCH_NODE_SELECTOR: &str = "kubernetes.io/arch";

/// The env var carrying the operator's CA bundle (PEM) to the added init container, which
/// writes it next to the injector as [`CA_BUNDLE_FILE`].
pub const CA_BUNDLE_ENV: &str = "AKV_ENV_CA_BUNDLE";
/// The CA bundle's file name in the injector's directory.
pub const CA_BUNDLE_FILE: &str = "ca-bundle.pem";

/// Where the init container mounts the shared volume to copy the binary into. Not under
/// `/akv-env`: in the injector image that path is the binary itself, and a runtime cannot make a
/// mount point below a file (the end-to-end tests found this with runc).
pub const INSTALL_MOUNT_PATH: &str = "/install";

/// What the mutation adds to a pod. Built once at start-up from the webhook's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The image holding the static `akv-env` binary at `/akv-env`.
    pub injector_image: String,
    /// Used when neither the pod nor its namespace names a vault.
    pub default_vault: Option<Vault>,
    /// Requests and limits of the init container (small: it copies one file).
    pub resources: ResourceRequirements,
    /// `imagePullPolicy` of the init container.
    pub pull_policy: String,
    /// Where wrapped containers see the binary's directory.
    pub mount_path: String,
    /// The shared emptyDir volume's name.
    pub volume_name: String,
    /// The emptyDir's size limit (it lives in memory).
    pub volume_size_limit: String,
    /// The name of the added init container.
    pub init_container_name: String,
    /// Who may use managed identity, and which hosts are vaults.
    pub trust: crate::TrustPolicy,
    /// The shortest `akv-env.io/restart-on-change` interval honoured; shorter ones are raised.
    pub restart_floor: std::time::Duration,
}

impl Config {
    /// The defaults: mount at `/akv-env/bin`, volume `akv-env`, init container
    /// `akv-env-install` with 10m/16Mi requests and 100m/64Mi limits.
    pub fn new(injector_image: impl Into<String>) -> Self {
        let quantities = |cpu: &str, memory: &str| {
            [
                ("cpu".to_owned(), Quantity(cpu.to_owned())),
                ("memory".to_owned(), Quantity(memory.to_owned())),
            ]
            .into_iter()
            .collect()
        };
        Config {
            injector_image: injector_image.into(),
            default_vault: None,
            resources: ResourceRequirements {
                requests: Some(quantities("10m", "16Mi")),
                limits: Some(quantities("100m", "64Mi")),
                ..Default::default()
            },
            pull_policy: "IfNotPresent".to_owned(),
            mount_path: "/akv-env/bin".to_owned(),
            volume_name: "akv-env".to_owned(),
            volume_size_limit: "16Mi".to_owned(),
            init_container_name: "akv-env-install".to_owned(),
            trust: crate::TrustPolicy::default(),
            restart_floor: std::time::Duration::from_secs(60),
        }
    }

    /// The injector's path inside wrapped containers.
    pub fn injector_path(&self) -> String {
        format!("{}/akv-env", self.mount_path.trim_end_matches('/'))
    }

    /// The CA bundle's path inside wrapped containers (next to the injector, read-only).
    pub fn ca_bundle_path(&self) -> String {
        format!("{}/{CA_BUNDLE_FILE}", self.mount_path.trim_end_matches('/'))
    }
}
