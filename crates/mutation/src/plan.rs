//! The first step: read the pod, validate every placeholder, decide which containers to wrap.

use std::collections::HashMap;
use std::fmt;

use akv_placeholder::{NearMiss, Vault};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use crate::compose::{CAPTURE_PREFIX, Composer};
use crate::config::{
    ANNOTATION_ALLOW_PLACEHOLDER_TEXT, ANNOTATION_INJECT, ANNOTATION_STATUS, ANNOTATION_VAULT,
    ARCH_NODE_SELECTOR, Config, DEFAULT_VAULT_ENV,
};
use crate::entrypoint::ImageEntrypoint;
use crate::error::{Denial, Problem};
use crate::trust::{self, NamespaceFacts};
use akv_trust::VaultHosts;

/// Which list a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Container,
    InitContainer,
}

impl ContainerKind {
    pub(crate) fn field(self) -> &'static str {
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

impl Skip {
    /// The rules a pod's own annotations decide (opt-out, already mutated), in the order
    /// admission applies them; the one place `inject --check` and the planner read them.
    pub fn by_annotations<'a>(annotation: impl Fn(&str) -> Option<&'a str>) -> Option<Skip> {
        if annotation(ANNOTATION_INJECT).is_some_and(|v| v.trim().eq_ignore_ascii_case("false")) {
            Some(Skip::OptedOut)
        } else if annotation(ANNOTATION_STATUS).is_some() {
            Some(Skip::AlreadyMutated)
        } else {
            None
        }
    }
}

/// A container that will be wrapped, with what the patch needs to know about its JSON.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) container: ContainerRef,
    pub(crate) image: String,
    pub(crate) command: Vec<String>,
    pub(crate) args: Vec<String>,
    pub(crate) has_command: bool,
    pub(crate) has_args: bool,
    pub(crate) has_env: bool,
    pub(crate) has_volume_mounts: bool,
    pub(crate) sets_default_vault: bool,
    /// The container's `terminationMessagePath` (the injector writes its failures there).
    pub(crate) termination_message_path: Option<String>,
    pub(crate) composer: Composer,
    /// Flags before `--` in the wrapped `args` (identity and trust, see `trust`).
    pub(crate) injector_flags: Vec<String>,
}

/// The first step's result: what will be done, pending image lookups.
#[derive(Debug, Clone)]
pub struct Plan<'c> {
    pub(crate) config: &'c Config,
    pub(crate) skip: Option<Skip>,
    pub(crate) targets: Vec<Target>,
    pub(crate) default_vault: Option<Vault>,
    pub(crate) warnings: Vec<String>,
    pub(crate) has_metadata: bool,
    pub(crate) has_annotations: bool,
    pub(crate) has_init_containers: bool,
    pub(crate) has_volumes: bool,
    pub(crate) arch: Option<String>,
    pub(crate) service_account: String,
    pub(crate) image_pull_secrets: Vec<String>,
    pub(crate) allow_placeholder_text: bool,
    /// Supervisor-mode flags for wrapped app containers (see `rotation`).
    pub(crate) rotation_flags: Vec<String>,
}

/// Reads a pod (or a pod template: any object with `metadata` and `spec`) and validates every
/// placeholder. `namespace_vault` is the namespace's `akv-env.io/vault` annotation, if any.
pub fn plan<'c>(
    pod: &Value,
    namespace_vault: Option<&str>,
    config: &'c Config,
) -> Result<Plan<'c>, Denial> {
    let namespace = NamespaceFacts {
        vault: namespace_vault.map(str::to_owned),
        ..Default::default()
    };
    plan_in(pod, &namespace, config)
}

/// [`plan`] with everything the webhook knows of the namespace (its `akv-env.io/*`
/// annotations: default vault, whether managed identity is allowed).
pub fn plan_in<'c>(
    pod: &Value,
    namespace: &NamespaceFacts,
    config: &'c Config,
) -> Result<Plan<'c>, Denial> {
    let namespace_vault = namespace.vault.as_deref();
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
        has_annotations: at(pod, &["metadata", "annotations"]).is_some_and(Value::is_object),
        has_init_containers: at(pod, &["spec", "initContainers"]).is_some_and(Value::is_array),
        has_volumes: at(pod, &["spec", "volumes"]).is_some_and(Value::is_array),
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
        allow_placeholder_text: false,
        rotation_flags: Vec::new(),
    };

    if let Some(skip) = Skip::by_annotations(|key| annotations.get(key).map(String::as_str)) {
        plan.skip = Some(skip);
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
    let auth_flag = trust::auth_flag(&annotations, namespace, &config.trust).unwrap_or_else(|p| {
        problems.push(p);
        None
    });
    let cloud = trust::effective_cloud(namespace, &config.trust).unwrap_or_else(|p| {
        problems.push(p);
        None
    });
    let hosts = config.trust.vault_hosts.clone().pinned_to(cloud.clone());
    let cloud_flag = trust::cloud_flag(cloud.as_ref());
    let ca_bundle_flag = config
        .trust
        .ca_bundle
        .as_ref()
        .map(|_| format!("--ca-file={}", config.ca_bundle_path()));
    match crate::rotation::injector_flags(
        &annotations,
        config.restart_floor,
        spec.termination_grace_period_seconds,
        &mut plan.warnings,
    ) {
        Ok(flags) => plan.rotation_flags = flags,
        Err(e) => problems.push(Problem::BadRotationAnnotation(e)),
    }

    let no_init_containers = Vec::new();
    let lists = [
        (ContainerKind::Container, &spec.containers),
        (
            ContainerKind::InitContainer,
            spec.init_containers.as_ref().unwrap_or(&no_init_containers),
        ),
    ];
    let mut secret_env_from = Vec::new();
    for (kind, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let reference = ContainerRef {
                kind,
                index,
                name: container.name.clone(),
            };
            let raw = at(pod, &["spec", kind.field()]).and_then(|list| list.get(index));
            match examine(
                reference,
                container,
                raw,
                default_vault.as_ref(),
                &hosts,
                &mut problems,
                &mut plan.warnings,
            ) {
                Some(mut target) => {
                    let own = std::mem::take(&mut target.injector_flags);
                    target.injector_flags = auth_flag
                        .iter()
                        .cloned()
                        .chain(cloud_flag.iter().cloned())
                        .chain(ca_bundle_flag.iter().cloned())
                        .chain(own)
                        .chain(trust::suffix_flags(&hosts))
                        .collect();
                    plan.targets.push(target);
                }
                None => {
                    let secret_ref = container.env_from.iter().flatten();
                    if secret_ref.into_iter().any(|e| e.secret_ref.is_some()) {
                        secret_env_from.push(container.name.clone());
                    }
                }
            }
        }
    }
    if !secret_env_from.is_empty() {
        plan.warnings.push(format!(
            "akv-env: envFrom secretRef is not scanned for @azurekeyvault placeholders \
             (containers: {}); put placeholders in env[].value or a ConfigMap",
            secret_env_from.join(", ")
        ));
    }
    plan.allow_placeholder_text = annotations
        .get(ANNOTATION_ALLOW_PLACEHOLDER_TEXT)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));

    if !plan.targets.is_empty() {
        if let Some(os) = spec.os.as_ref().map(|os| os.name.as_str())
            && !os.eq_ignore_ascii_case("linux")
        {
            problems.push(Problem::UnsupportedOs { os: os.to_owned() });
        }
        let names = |list: &str| -> Vec<String> {
            at(pod, &["spec", list])
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        };
        if names("volumes").contains(&config.volume_name) {
            problems.push(Problem::NameClash {
                what: "a volume",
                name: config.volume_name.clone(),
            });
        }
        problems.extend(mount_clashes(pod, &config.mount_path));
        let container_names: Vec<String> = names("containers")
            .into_iter()
            .chain(names("initContainers"))
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

/// `value.pointer("/a/b")` for plain keys, without the pointer's per-token allocations (a
/// review walks the pod a few dozen times).
pub(crate) fn at<'v>(value: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().try_fold(value, |value, key| value.get(key))
}

/// Containers that already mount something at the injector's path: the wrapped program would
/// run whatever that volume holds (and the chart's guard could not tell it from the injector).
fn mount_clashes(pod: &Value, mount_path: &str) -> Vec<Problem> {
    let wanted = mount_path.trim_end_matches('/');
    let mut clashes = Vec::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in pod
            .get("spec")
            .and_then(|spec| spec.get(list))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mounts = container.get("volumeMounts").and_then(Value::as_array);
            let clash = mounts.into_iter().flatten().find(|m| {
                m.get("mountPath")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.trim_end_matches('/') == wanted)
            });
            if let Some(mount) = clash {
                clashes.push(Problem::MountClash {
                    container: container
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .chars()
                        .take(253)
                        .collect(),
                    volume: mount
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .chars()
                        .take(253)
                        .collect(),
                    path: wanted.to_owned(),
                });
            }
        }
    }
    clashes
}

/// Whether [`plan`] would use the namespace's `akv-env.io/vault` annotation: the pod is in
/// scope, names no vault itself and holds a placeholder or reads a ConfigMap. Lets the webhook skip the API call for
/// most pods.
pub fn needs_namespace_vault(pod: &Value) -> bool {
    let annotation = |key: &str| {
        pod.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    annotation(ANNOTATION_VAULT).is_none() && in_scope_with_placeholders(pod)
}

/// The pod is neither opted out nor mutated already, and holds a placeholder or reads a
/// ConfigMap (which may hold one).
pub(crate) fn in_scope_with_placeholders(pod: &Value) -> bool {
    let annotation = |key: &str| {
        pod.get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    };
    if annotation(ANNOTATION_INJECT).is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        || annotation(ANNOTATION_STATUS).is_some()
    {
        return false;
    }
    let containers = || {
        ["containers", "initContainers"]
            .iter()
            .filter_map(|list| pod.get("spec")?.get(list)?.as_array())
            .flatten()
    };
    let env = || {
        containers()
            .filter_map(|c| c.get("env")?.as_array())
            .flatten()
    };
    // A container reading a ConfigMap is wrapped too: its placeholders need the default vault.
    env()
        .filter_map(|e| e.get("value")?.as_str())
        .any(akv_placeholder::is_placeholder)
        || env().any(|e| at(e, &["valueFrom", "configMapKeyRef"]).is_some())
        || containers()
            .filter_map(|c| c.get("envFrom")?.as_array())
            .flatten()
            .any(|e| e.get("configMapRef").is_some())
}

/// Validates a container's placeholders; returns it as a target if it holds any, or reads a
/// ConfigMap (which may hold one now or after a later edit: the injector resolves at start).
fn examine(
    container: ContainerRef,
    typed: &Container,
    raw: Option<&Value>,
    default_vault: Option<&Vault>,
    hosts: &VaultHosts,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<Target> {
    let has_default_vault = default_vault.is_some();
    let env = typed.env.as_deref().unwrap_or_default();
    let own_default = env.iter().find(|e| e.name == DEFAULT_VAULT_ENV);
    let mut own_default_vault = None;
    if let Some(value) = own_default.and_then(|e| e.value.as_deref()) {
        match Vault::parse(value) {
            Ok(v) => own_default_vault = Some(v),
            Err(e) => problems.push(Problem::BadDefaultVaultEnv {
                container: container.clone(),
                error: e.to_string(),
            }),
        }
    }
    let mut holds_placeholder = false;
    for var in env {
        if var.name.starts_with(CAPTURE_PREFIX) {
            problems.push(Problem::ReservedName {
                container: container.clone(),
                env: var.name.clone(),
            });
        }
        let Some(value) = var.value.as_deref() else {
            continue;
        };
        if let Some(miss) = akv_placeholder::near_miss(value) {
            warnings.push(near_miss_warning(&container, &var.name, miss));
        }
        match akv_placeholder::parse(value) {
            Ok(None) => {}
            Ok(Some(reference)) => {
                holds_placeholder = true;
                let vault = reference
                    .vault
                    .as_ref()
                    .or(own_default_vault.as_ref())
                    .or(default_vault);
                if let Some(vault) = vault
                    && let Err(p) =
                        trust::check_vault(hosts, &container, &var.name, vault, reference.kind)
                {
                    problems.push(p);
                }
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
    let env_from_config_map = typed
        .env_from
        .iter()
        .flatten()
        .any(|e| e.config_map_ref.is_some());
    let reads_config_map = env_from_config_map
        || env.iter().any(|e| {
            e.value_from
                .as_ref()
                .is_some_and(|f| f.config_map_key_ref.is_some())
        });
    if !holds_placeholder && !reads_config_map {
        return None;
    }
    let injector_flags = trust::container_flags(&container, env, problems, warnings);
    let has = |key: &str| raw.and_then(|r| r.get(key)).is_some();
    let raw_env = raw
        .and_then(|r| r.get("env"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
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
        termination_message_path: typed.termination_message_path.clone(),
        composer: Composer::new(env, raw_env, env_from_config_map),
        injector_flags,
        container,
    })
}

/// The admission warning for a value that is almost a placeholder; `inject -f` prints it too.
fn near_miss_warning(container: &ContainerRef, env: &str, miss: NearMiss) -> String {
    format!(
        "akv-env: {container}: env var {env} looks like a Key Vault placeholder but is not one, \
         so the program would get it as written: {}",
        miss.fix()
    )
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
}
