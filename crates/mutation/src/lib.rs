//! Planning the admission mutation of a Pod: pure, no I/O.
//!
//! The webhook and the offline `inject` command share this crate, so a manifest reviewed with
//! `akv-env-webhook inject` is exactly what admission would produce. It works in two steps so it
//! stays free of I/O: [`plan`] reads the pod and validates every placeholder, then says which
//! images' ENTRYPOINT/CMD it needs ([`Plan::images_to_look_up`]); the caller looks them up and
//! [`Plan::patch`] returns one JSON patch of explicit operations against the JSON the API server
//! sent, so fields this crate does not know (newer Kubernetes versions) survive untouched.
//!
//! ```
//! use akv_mutation::{plan, Config, Entrypoints};
//! use serde_json::json;
//!
//! let pod = json!({
//!     "metadata": {"name": "app"},
//!     "spec": {"containers": [{
//!         "name": "app", "image": "example/app", "command": ["/app"],
//!         "env": [{"name": "DB_PASSWORD", "value": "db-password@azurekeyvault?vault=prod-kv"}]
//!     }]}
//! });
//! let config = Config::new("example/akv-env:1");
//! let plan = plan(&pod, None, &config).unwrap();
//! assert!(plan.images_to_look_up().is_empty()); // `command` is set
//! let mutation = plan.patch(&Entrypoints::new()).unwrap();
//! assert_eq!(mutation.wrapped.len(), 1);
//! ```

mod entrypoint;
mod error;

use std::collections::HashMap;
use std::fmt;

use akv_placeholder::Vault;
use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::{Value, json};

pub use entrypoint::ImageEntrypoint;
pub use error::{Denial, Problem};

/// Pod annotation: `"false"` skips the pod.
pub const ANNOTATION_INJECT: &str = "akv-env.io/inject";
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

/// What the mutation adds to a pod. Built once at start-up from the webhook's flags.
/// Where the init container mounts the shared volume to copy the binary into. Not under
/// `/akv-env`: in the injector image that path is the binary itself, and a runtime cannot make a
/// mount point below a file (the end-to-end tests found this with runc).
pub const INSTALL_MOUNT_PATH: &str = "/install";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The image holding the static `akv-env` binary at `/akv-env`.
    pub injector_image: String,
    /// Used when neither the pod nor its namespace names a vault.
    pub default_vault: Option<Vault>,
    /// Requests and limits of the init container (small: it copies one file).
    pub resources: ResourceRequirements,
    /// Where wrapped containers see the binary's directory.
    pub mount_path: String,
    /// The shared emptyDir volume's name.
    pub volume_name: String,
    /// The emptyDir's size limit (it lives in memory).
    pub volume_size_limit: String,
    /// The name of the added init container.
    pub init_container_name: String,
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
            mount_path: "/akv-env/bin".to_owned(),
            volume_name: "akv-env".to_owned(),
            volume_size_limit: "16Mi".to_owned(),
            init_container_name: "akv-env-install".to_owned(),
        }
    }

    /// The injector's path inside wrapped containers.
    pub fn injector_path(&self) -> String {
        format!("{}/akv-env", self.mount_path.trim_end_matches('/'))
    }
}

/// Which list a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Container,
    InitContainer,
}

impl ContainerKind {
    fn field(self) -> &'static str {
        match self {
            ContainerKind::Container => "containers",
            ContainerKind::InitContainer => "initContainers",
        }
    }
}

/// A container of the pod, as written in the original object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub kind: ContainerKind,
    /// Its index in the original list (before the init container is inserted).
    pub index: usize,
    pub name: String,
}

impl fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ContainerKind::Container => write!(f, "container \"{}\"", self.name),
            ContainerKind::InitContainer => write!(f, "init container \"{}\"", self.name),
        }
    }
}

/// An image whose ENTRYPOINT/CMD the caller must look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLookup {
    pub container: ContainerRef,
    pub image: String,
}

/// The caller's answers, by image reference: the entrypoint, or why it could not be read
/// (e.g. "image lookups are disabled", "the registry did not answer within 5s").
pub type Entrypoints = HashMap<String, Result<ImageEntrypoint, String>>;

/// Why a pod is left exactly as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `akv-env.io/inject: "false"`.
    OptedOut,
    /// `akv-env.io/status` is present: this pod was mutated already.
    AlreadyMutated,
    /// No container or init container holds a placeholder.
    NoPlaceholders,
}

/// The result: one JSON patch, warnings for the client, and the containers that were wrapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Vec<String>,
    pub wrapped: Vec<ContainerRef>,
}

/// A container that will be wrapped, with what the patch needs to know about its JSON.
#[derive(Debug, Clone)]
struct Target {
    container: ContainerRef,
    image: String,
    command: Vec<String>,
    args: Vec<String>,
    has_command: bool,
    has_args: bool,
    has_env: bool,
    has_volume_mounts: bool,
    sets_default_vault: bool,
}

/// The first step's result: what will be done, pending image lookups.
#[derive(Debug, Clone)]
pub struct Plan<'c> {
    config: &'c Config,
    skip: Option<Skip>,
    targets: Vec<Target>,
    default_vault: Option<Vault>,
    warnings: Vec<String>,
    has_metadata: bool,
    has_annotations: bool,
    has_init_containers: bool,
    has_volumes: bool,
    arch: Option<String>,
    service_account: String,
    image_pull_secrets: Vec<String>,
}

/// Reads a pod (or a pod template: any object with `metadata` and `spec`) and validates every
/// placeholder. `namespace_vault` is the namespace's `akv-env.io/vault` annotation, if any.
pub fn plan<'c>(
    pod: &Value,
    namespace_vault: Option<&str>,
    config: &'c Config,
) -> Result<Plan<'c>, Denial> {
    let metadata: ObjectMeta = match pod.get("metadata") {
        None | Some(Value::Null) => ObjectMeta::default(),
        Some(m) => {
            ObjectMeta::deserialize(m).map_err(|e| Problem::InvalidPod(format!("metadata: {e}")))?
        }
    };
    let spec: PodSpec = match pod.get("spec") {
        None | Some(Value::Null) => return Err(Problem::InvalidPod("it has no spec".into()).into()),
        Some(s) => {
            PodSpec::deserialize(s).map_err(|e| Problem::InvalidPod(format!("spec: {e}")))?
        }
    };
    let annotations = metadata.annotations.unwrap_or_default();

    let mut plan = Plan {
        config,
        skip: None,
        targets: Vec::new(),
        default_vault: None,
        warnings: Vec::new(),
        has_metadata: pod.get("metadata").is_some_and(Value::is_object),
        has_annotations: pod
            .pointer("/metadata/annotations")
            .is_some_and(Value::is_object),
        has_init_containers: pod
            .pointer("/spec/initContainers")
            .is_some_and(Value::is_array),
        has_volumes: pod.pointer("/spec/volumes").is_some_and(Value::is_array),
        arch: spec
            .node_selector
            .as_ref()
            .and_then(|s| s.get(ARCH_NODE_SELECTOR).cloned()),
        service_account: spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned()),
        image_pull_secrets: spec
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|r| r.name.clone())
            .filter(|n| !n.is_empty())
            .collect(),
    };

    if annotations
        .get(ANNOTATION_INJECT)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        plan.skip = Some(Skip::OptedOut);
        return Ok(plan);
    }
    if annotations.contains_key(ANNOTATION_STATUS) {
        plan.skip = Some(Skip::AlreadyMutated);
        return Ok(plan);
    }

    let mut problems = Vec::new();
    let default_vault = match annotations.get(ANNOTATION_VAULT) {
        Some(v) => Vault::parse(v.trim())
            .map(Some)
            .map_err(|e| ("pod", e.to_string())),
        None => match namespace_vault {
            Some(v) => Vault::parse(v.trim())
                .map(Some)
                .map_err(|e| ("namespace", e.to_string())),
            None => Ok(config.default_vault.clone()),
        },
    };
    let default_vault = default_vault.unwrap_or_else(|(origin, error)| {
        problems.push(Problem::BadVaultAnnotation { origin, error });
        None
    });

    let no_init_containers = Vec::new();
    let lists = [
        (
            ContainerKind::Container,
            "/spec/containers",
            &spec.containers,
        ),
        (
            ContainerKind::InitContainer,
            "/spec/initContainers",
            spec.init_containers.as_ref().unwrap_or(&no_init_containers),
        ),
    ];
    let mut env_from = Vec::new();
    for (kind, pointer, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let reference = ContainerRef {
                kind,
                index,
                name: container.name.clone(),
            };
            if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
                env_from.push(container.name.clone());
            }
            let raw = pod.pointer(&format!("{pointer}/{index}"));
            if let Some(target) = examine(
                reference,
                container,
                raw,
                default_vault.is_some(),
                &mut problems,
            ) {
                plan.targets.push(target);
            }
        }
    }
    if !env_from.is_empty() {
        plan.warnings.push(format!(
            "akv-env: envFrom is not scanned for @azurekeyvault placeholders (containers: {}); \
             put placeholders in env[].value",
            env_from.join(", ")
        ));
    }

    if !plan.targets.is_empty() {
        if let Some(os) = spec.os.as_ref().map(|os| os.name.as_str())
            && !os.eq_ignore_ascii_case("linux")
        {
            problems.push(Problem::UnsupportedOs { os: os.to_owned() });
        }
        let names = |key: &str| -> Vec<String> {
            pod.pointer(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        if names("/spec/volumes").contains(&config.volume_name) {
            problems.push(Problem::NameClash {
                what: "a volume",
                name: config.volume_name.clone(),
            });
        }
        let container_names: Vec<String> = names("/spec/containers")
            .into_iter()
            .chain(names("/spec/initContainers"))
            .collect();
        if container_names.contains(&config.init_container_name) {
            problems.push(Problem::NameClash {
                what: "a container",
                name: config.init_container_name.clone(),
            });
        }
    }

    if !problems.is_empty() {
        return Err(Denial { problems });
    }
    if plan.targets.is_empty() {
        plan.skip = Some(Skip::NoPlaceholders);
    }
    plan.default_vault = default_vault;
    Ok(plan)
}

/// Whether [`plan`] would use the namespace's `akv-env.io/vault` annotation: the pod is in
/// scope, names no vault itself and holds a placeholder. Lets the webhook skip the API call for
/// most pods.
pub fn needs_namespace_vault(pod: &Value) -> bool {
    let annotation = |key: &str| {
        pod.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    if annotation(ANNOTATION_INJECT).is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        || annotation(ANNOTATION_STATUS).is_some()
        || annotation(ANNOTATION_VAULT).is_some()
    {
        return false;
    }
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod.get("spec")?.get(list)?.as_array())
        .flatten()
        .filter_map(|c| c.get("env")?.as_array())
        .flatten()
        .filter_map(|e| e.get("value")?.as_str())
        .any(akv_placeholder::is_placeholder)
}

/// Validates a container's placeholders; returns it as a target if it holds any.
fn examine(
    container: ContainerRef,
    typed: &Container,
    raw: Option<&Value>,
    has_default_vault: bool,
    problems: &mut Vec<Problem>,
) -> Option<Target> {
    let env = typed.env.as_deref().unwrap_or_default();
    let own_default = env.iter().find(|e| e.name == DEFAULT_VAULT_ENV);
    if let Some(value) = own_default.and_then(|e| e.value.as_deref())
        && let Err(e) = Vault::parse(value)
    {
        problems.push(Problem::BadDefaultVaultEnv {
            container: container.clone(),
            error: e.to_string(),
        });
    }
    let mut holds_placeholder = false;
    for var in env {
        let Some(value) = var.value.as_deref() else {
            continue;
        };
        match akv_placeholder::parse(value) {
            Ok(None) => {}
            Ok(Some(reference)) => {
                holds_placeholder = true;
                if reference.vault.is_none() && !has_default_vault && own_default.is_none() {
                    problems.push(Problem::NoVault {
                        container: container.clone(),
                        env: var.name.clone(),
                    });
                }
            }
            Err(error) => {
                holds_placeholder = true;
                problems.push(Problem::BadPlaceholder {
                    container: container.clone(),
                    env: var.name.clone(),
                    error: error.to_string(),
                });
            }
        }
    }
    if !holds_placeholder {
        return None;
    }
    let has = |key: &str| raw.and_then(|r| r.get(key)).is_some();
    Some(Target {
        image: typed.image.clone().unwrap_or_default(),
        command: typed.command.clone().unwrap_or_default(),
        args: typed.args.clone().unwrap_or_default(),
        has_command: has("command"),
        has_args: has("args"),
        has_env: raw.and_then(|r| r.get("env")).is_some_and(Value::is_array),
        has_volume_mounts: raw
            .and_then(|r| r.get("volumeMounts"))
            .is_some_and(Value::is_array),
        sets_default_vault: own_default.is_some(),
        container,
    })
}

impl Plan<'_> {
    /// Why nothing will change, if nothing will.
    pub fn skipped(&self) -> Option<Skip> {
        self.skip
    }

    /// The containers to wrap that have no `command`: their image's ENTRYPOINT/CMD is needed.
    pub fn images_to_look_up(&self) -> Vec<ImageLookup> {
        self.targets
            .iter()
            .filter(|t| t.command.is_empty())
            .map(|t| ImageLookup {
                container: t.container.clone(),
                image: t.image.clone(),
            })
            .collect()
    }

    /// The pod's `kubernetes.io/arch` node selector: the platform to pick from an image index.
    pub fn arch(&self) -> Option<&str> {
        self.arch.as_deref()
    }

    /// The pod's service account (`default` when unset), whose pull secrets also apply.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The names of the pod's own `imagePullSecrets`.
    pub fn image_pull_secrets(&self) -> &[String] {
        &self.image_pull_secrets
    }

    /// The vault placeholders without `vault=` will use, after annotations and defaults.
    pub fn default_vault(&self) -> Option<&Vault> {
        self.default_vault.as_ref()
    }

    /// The JSON patch, given the entrypoints of [`Plan::images_to_look_up`]'s images.
    pub fn patch(&self, entrypoints: &Entrypoints) -> Result<Mutation, Denial> {
        let mut mutation = Mutation {
            patch: Patch(Vec::new()),
            warnings: self.warnings.clone(),
            wrapped: Vec::new(),
        };
        if self.skip.is_some() {
            return Ok(mutation);
        }
        let config = self.config;
        let mut problems = Vec::new();
        let ops = &mut mutation.patch.0;

        // Annotations first; container paths use the original indices, so the init container
        // is inserted at index 0 only after every existing init container has been patched.
        if self.has_annotations {
            ops.push(add(
                &["metadata", "annotations", ANNOTATION_STATUS],
                json!(STATUS_INJECTED),
            ));
        } else if self.has_metadata {
            ops.push(add(
                &["metadata", "annotations"],
                json!({ ANNOTATION_STATUS: STATUS_INJECTED }),
            ));
        } else {
            // A pod template may have no metadata at all.
            ops.push(add(
                &["metadata"],
                json!({ "annotations": { ANNOTATION_STATUS: STATUS_INJECTED } }),
            ));
        }

        for target in &self.targets {
            let image = if target.command.is_empty() {
                match entrypoints.get(&target.image) {
                    Some(Ok(image)) => Some(image),
                    Some(Err(reason)) => {
                        problems.push(Problem::EntrypointUnknown {
                            container: target.container.clone(),
                            image: target.image.clone(),
                            reason: reason.clone(),
                        });
                        continue;
                    }
                    None => {
                        problems.push(Problem::EntrypointUnknown {
                            container: target.container.clone(),
                            image: target.image.clone(),
                            reason: "it was not looked up".to_owned(),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            let argv = entrypoint::effective_argv(&target.command, &target.args, image)
                .filter(|argv| !argv.is_empty());
            let Some(argv) = argv else {
                problems.push(Problem::NoProgram {
                    container: target.container.clone(),
                    image: target.image.clone(),
                });
                continue;
            };
            let base = [
                "spec".to_owned(),
                target.container.kind.field().to_owned(),
                target.container.index.to_string(),
            ];
            let at = |key: &str| {
                let mut path = base.to_vec();
                path.push(key.to_owned());
                path
            };
            ops.push(set(
                target.has_command,
                &at("command"),
                json!([config.injector_path()]),
            ));
            ops.push(set(
                target.has_args,
                &at("args"),
                json!(entrypoint::wrapped_args(argv)),
            ));
            if let Some(vault) = self
                .default_vault
                .as_ref()
                .filter(|_| !target.sets_default_vault)
            {
                let var = json!({ "name": DEFAULT_VAULT_ENV, "value": vault.to_string() });
                ops.push(append(target.has_env, &at("env"), var));
            }
            let mount = json!({
                "name": config.volume_name,
                "mountPath": config.mount_path,
                "readOnly": true,
            });
            ops.push(append(target.has_volume_mounts, &at("volumeMounts"), mount));
            mutation.wrapped.push(target.container.clone());
        }
        if !problems.is_empty() {
            return Err(Denial { problems });
        }

        let volume = json!({
            "name": config.volume_name,
            "emptyDir": { "medium": "Memory", "sizeLimit": config.volume_size_limit },
        });
        ops.push(append(self.has_volumes, &["spec", "volumes"], volume));
        let init = self.init_container();
        if self.has_init_containers {
            ops.push(add(&["spec", "initContainers", "0"], init));
        } else {
            ops.push(add(&["spec", "initContainers"], json!([init])));
        }
        Ok(mutation)
    }

    /// The init container copying the binary into the shared volume. It passes Pod Security
    /// "restricted" on its own: non-root, no privilege escalation, no capabilities, read-only
    /// root filesystem, RuntimeDefault seccomp.
    fn init_container(&self) -> Value {
        let config = self.config;
        json!({
            "name": config.init_container_name,
            "image": config.injector_image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/akv-env", "install", INSTALL_MOUNT_PATH],
            "volumeMounts": [{ "name": config.volume_name, "mountPath": INSTALL_MOUNT_PATH }],
            "resources": config.resources,
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "readOnlyRootFilesystem": true,
                "capabilities": { "drop": ["ALL"] },
                "seccompProfile": { "type": "RuntimeDefault" },
            },
        })
    }
}

fn pointer<S: AsRef<str>>(tokens: &[S]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().map(|t| Token::new(t.as_ref())))
}

fn add<S: AsRef<str>>(path: &[S], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(path),
        value,
    })
}

/// `replace` when the field exists in the original JSON, else `add`.
fn set<S: AsRef<str>>(exists: bool, path: &[S], value: Value) -> PatchOperation {
    if exists {
        PatchOperation::Replace(ReplaceOperation {
            path: pointer(path),
            value,
        })
    } else {
        add(path, value)
    }
}

/// Appends to an array, creating it when the original JSON has none.
fn append<S: AsRef<str>>(exists: bool, path: &[S], item: Value) -> PatchOperation {
    if exists {
        let mut tokens: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
        tokens.push("-");
        add(&tokens, item)
    } else {
        add(path, json!([item]))
    }
}
