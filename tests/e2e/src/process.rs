//! What a container runs, decided the way kubelet and containerd decide it: the pure part of the
//! kubelet stand-in, tested as tables. No I/O: the runner reads images and files, then asks here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Deserialize;

use crate::expand::{expand, lookup_in};

/// containerd's default `PATH` for Linux containers, used when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set for CRI containers.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The parts of an OCI image config (`config` object) a runtime uses to start a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

/// Why a container cannot be started; messages name the container and the field, like kubelet's
/// `CreateContainerConfigError` events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "container {container}: no command: the pod sets none and the image has no ENTRYPOINT or CMD"
    )]
    NoCommand { container: String },
    #[error(
        "container {container}: env var {env}: {what} is not supported by the kubelet stand-in"
    )]
    UnsupportedEnvSource {
        container: String,
        env: String,
        what: String,
    },
    #[error("container {container}: envFrom {what} is not supported by the kubelet stand-in")]
    UnsupportedEnvFrom { container: String, what: String },
    /// The kubelet's `CreateContainerConfigError` for a missing, non-optional ConfigMap.
    #[error("container {container}: configmap \"{name}\" not found in namespace {namespace}")]
    ConfigMapNotFound {
        container: String,
        namespace: String,
        name: String,
    },
    /// The kubelet's error for a missing, non-optional `configMapKeyRef` key.
    #[error(
        "container {container}: env var {env}: couldn't find key {key} in ConfigMap {namespace}/{name}"
    )]
    ConfigMapKeyNotFound {
        container: String,
        env: String,
        key: String,
        namespace: String,
        name: String,
    },
    #[error(
        "container {container}: volume mount {mount:?} names volume {volume:?}, which the pod does not define"
    )]
    UnknownVolume {
        container: String,
        mount: String,
        volume: String,
    },
    #[error("container {container}: {what}")]
    User { container: String, what: String },
    #[error(
        "container {container}: privileged containers are not supported by the kubelet stand-in"
    )]
    Privileged { container: String },
}

/// One bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Everything the OCI runtime spec of one container needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    pub args: Vec<String>,
    /// `NAME=value`, in the order containerd writes them.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    pub capabilities: Vec<String>,
    pub mounts: Vec<Mount>,
    pub hostname: String,
}

/// Users and groups of the image's `/etc/passwd` and `/etc/group`, when it has them.
#[derive(Debug, Clone, Default)]
pub struct ImageAccounts {
    pub passwd: Option<String>,
    pub group: Option<String>,
}

impl ImageAccounts {
    /// (uid, gid) of a user name, or of a uid, from `/etc/passwd`.
    fn user(&self, name_or_uid: &str) -> Option<(u32, u32)> {
        self.passwd.as_deref()?.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || (f[0] != name_or_uid && f[2] != name_or_uid) {
                return None;
            }
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        })
    }

    fn group(&self, name: &str) -> Option<u32> {
        self.group.as_deref()?.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3 && f[0] == name).then(|| f[2].parse().ok())?
        })
    }
}

/// The argv a runtime starts (containerd's `WithProcessArgs`): `command` replaces ENTRYPOINT and
/// drops CMD; `args` alone replace CMD; `ENTRYPOINT [""]` means none. `command` and `args` come
/// already expanded by kubelet.
pub fn effective_args(command: &[String], args: &[String], image: &ImageConfig) -> Vec<String> {
    if !command.is_empty() {
        return command.iter().chain(args).cloned().collect();
    }
    let mut argv: Vec<String> = match image.entrypoint.as_deref() {
        Some([only]) if only.is_empty() => Vec::new(),
        Some(entrypoint) => entrypoint.to_vec(),
        None => Vec::new(),
    };
    if args.is_empty() {
        argv.extend(image.cmd.iter().flatten().cloned());
    } else {
        argv.extend(args.iter().cloned());
    }
    argv
}

/// The cluster's ConfigMaps as the kubelet's ConfigMap manager reads them from the API server:
/// `data` by (namespace, name). `binaryData` never reaches env, so it is not kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigMaps(BTreeMap<(String, String), BTreeMap<String, String>>);

impl ConfigMaps {
    /// Creates or replaces a ConfigMap (an edit after admission, as `kubectl apply` would).
    pub fn insert(&mut self, namespace: &str, name: &str, data: BTreeMap<String, String>) {
        self.0.insert((namespace.to_owned(), name.to_owned()), data);
    }

    /// Adds every `kind: ConfigMap` of a multi-document manifest (namespace `default` when the
    /// object names none); other kinds are skipped. Returns how many were added.
    pub fn add_manifest(&mut self, yaml: &str) -> Result<usize, String> {
        use serde::Deserialize as _;
        let mut added = 0;
        for (i, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = serde_json::Value::deserialize(doc)
                .map_err(|e| format!("manifest document {i}: {e}"))?;
            if value["kind"] != "ConfigMap" {
                continue;
            }
            let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(value)
                .map_err(|e| format!("manifest document {i}: not a valid ConfigMap: {e}"))?;
            let name = cm
                .metadata
                .name
                .ok_or_else(|| format!("manifest document {i}: ConfigMap without a name"))?;
            let namespace = cm.metadata.namespace.unwrap_or_else(|| "default".into());
            self.insert(&namespace, &name, cm.data.unwrap_or_default());
            added += 1;
        }
        Ok(added)
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.0.get(&(namespace.to_owned(), name.to_owned()))
    }
}

/// The kubelet's `IsEnvVarName` check on `envFrom` keys (with their prefix): a key that fails it
/// is skipped (the kubelet records an `InvalidEnvironmentVariableNames` event), not an error.
fn is_env_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b"-._".contains(&b))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Kubelet's container environment (`makeEnvironmentVariables`): first every `envFrom`
/// ConfigMap's keys in order (later sources and `env` override earlier ones), then `env`, where
/// each literal value is expanded with everything defined before it; `valueFrom.fieldRef` for
/// the pod's own fields and `valueFrom.configMapKeyRef`. A missing ConfigMap or key fails the
/// container unless marked `optional`. Secrets are not supported (the stand-in has none).
pub fn kubelet_env(
    pod: &Pod,
    container: &Container,
    config_maps: &ConfigMaps,
) -> Result<Vec<(String, String)>, PlanError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let not_found = |name: &str| PlanError::ConfigMapNotFound {
        container: container.name.clone(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let mut vars: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        if source.secret_ref.is_some() {
            return Err(PlanError::UnsupportedEnvFrom {
                container: container.name.clone(),
                what: "secretRef".into(),
            });
        }
        let Some(cm) = &source.config_map_ref else {
            continue;
        };
        let Some(data) = config_maps.get(namespace, &cm.name) else {
            if cm.optional == Some(true) {
                continue;
            }
            return Err(not_found(&cm.name));
        };
        let prefix = source.prefix.as_deref().unwrap_or_default();
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            if is_env_var_name(&name) {
                vars.push((name, value.clone()));
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => {
                let unsupported = |what: &str| PlanError::UnsupportedEnvSource {
                    container: container.name.clone(),
                    env: var.name.clone(),
                    what: what.to_string(),
                };
                if let Some(field) = &from.field_ref {
                    field_value(pod, &field.field_path)
                        .ok_or_else(|| unsupported(&format!("fieldRef {}", field.field_path)))?
                } else if let Some(key_ref) = &from.config_map_key_ref {
                    let optional = key_ref.optional == Some(true);
                    let Some(data) = config_maps.get(namespace, &key_ref.name) else {
                        if optional {
                            continue;
                        }
                        return Err(not_found(&key_ref.name));
                    };
                    match data.get(&key_ref.key) {
                        Some(value) => value.clone(),
                        None if optional => continue,
                        None => {
                            return Err(PlanError::ConfigMapKeyNotFound {
                                container: container.name.clone(),
                                env: var.name.clone(),
                                key: key_ref.key.clone(),
                                namespace: namespace.to_owned(),
                                name: key_ref.name.clone(),
                            });
                        }
                    }
                } else {
                    return Err(unsupported(
                        "valueFrom other than fieldRef and configMapKeyRef",
                    ));
                }
            }
            (Some(value), None) => expand(value, lookup_in(&vars)),
            (None, None) => String::new(),
        };
        vars.push((var.name.clone(), value));
    }
    Ok(vars)
}

/// The downward API fields the stand-in knows.
fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.serviceAccountName" => spec?.service_account_name.clone(),
        "spec.nodeName" => spec?.node_name.clone(),
        "status.podIP" | "status.hostIP" => Some("127.0.0.1".into()),
        _ => {
            let key = path
                .strip_prefix("metadata.labels['")
                .map(|k| (k, &meta.labels))
                .or_else(|| {
                    path.strip_prefix("metadata.annotations['")
                        .map(|k| (k, &meta.annotations))
                });
            let (key, map) = key?;
            map.as_ref()?.get(key.strip_suffix("']")?).cloned()
        }
    }
}

/// containerd's `replaceOrAppendEnvValues`: a later `NAME=` replaces an earlier one in place.
pub fn merge_env(layers: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for layer in layers {
        for entry in *layer {
            let name = entry.split('=').next().unwrap_or(entry);
            match out
                .iter_mut()
                .find(|e| e.split('=').next().unwrap_or(e) == name)
            {
                Some(existing) => existing.clone_from(entry),
                None => out.push(entry.clone()),
            }
        }
    }
    out
}

/// What the kubelet uses besides the pod and the image.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The pod's volume names -> host directories.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    /// The cluster's ConfigMaps, for `envFrom` and `configMapKeyRef`.
    pub config_maps: &'a ConfigMaps,
    /// What the node adds to every container (see `runner::NodeEnvironment`).
    pub extra_env: &'a [(String, String)],
    pub extra_mounts: &'a [Mount],
}

/// Plans one container of `pod`.
pub fn plan_container(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    accounts: &ImageAccounts,
    node: &NodeView<'_>,
) -> Result<ContainerPlan, PlanError> {
    let NodeView {
        volumes,
        config_maps,
        extra_env,
        extra_mounts,
    } = *node;
    let name = || container.name.clone();
    let kube_env = kubelet_env(pod, container, config_maps)?;
    let lookup = lookup_in(&kube_env);
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|w| expand(w, &lookup))
        .collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|w| expand(w, &lookup))
        .collect();
    let argv = effective_args(&command, &args, image);
    if argv.is_empty() {
        return Err(PlanError::NoCommand { container: name() });
    }

    let hostname = pod.metadata.name.clone().unwrap_or_default();
    let base = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    let image_env = image.env.clone().unwrap_or_default();
    let pod_env: Vec<String> = kube_env
        .iter()
        .chain(extra_env)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let env = merge_env(&[&base, &image_env, &pod_env]);

    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.working_dir.clone().filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "/".into());

    let pod_sc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = container.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        return Err(PlanError::Privileged { container: name() });
    }
    let user_error = |what: String| PlanError::User {
        container: name(),
        what,
    };
    let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
    let run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
    let run_as_non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    let to_id = |n: i64, field: &str| {
        u32::try_from(n).map_err(|_| user_error(format!("{field} {n} is not a valid id")))
    };
    let (uid, mut gid) = match run_as_user {
        Some(uid) => {
            let uid = to_id(uid, "runAsUser")?;
            // containerd's WithUserID: the primary group from the image's passwd, else 0.
            let gid = accounts.user(&uid.to_string()).map_or(0, |(_, g)| g);
            (uid, gid)
        }
        None => image_user(
            image.user.as_deref().unwrap_or(""),
            accounts,
            run_as_non_root,
        )
        .map_err(user_error)?,
    };
    if let Some(g) = run_as_group {
        gid = to_id(g, "runAsGroup")?;
    }
    if run_as_non_root && uid == 0 {
        return Err(user_error(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    let mut additional_gids = Vec::new();
    for g in pod_sc
        .supplemental_groups
        .iter()
        .flatten()
        .chain(pod_sc.fs_group.iter())
    {
        let g = to_id(*g, "supplementalGroups/fsGroup")?;
        if g != gid && !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }

    let mut capabilities: Vec<String> =
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if let Some(caps) = &sc.capabilities {
        let canon = |c: &String| {
            let c = c.to_uppercase();
            if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        };
        // containerd's order: "ALL" first, then single adds, then single drops.
        let adds: Vec<String> = caps.add.iter().flatten().map(canon).collect();
        let drops: Vec<String> = caps.drop.iter().flatten().map(canon).collect();
        if drops.iter().any(|d| d == "CAP_ALL") {
            capabilities.clear();
        }
        for add in adds.into_iter().filter(|a| a != "CAP_ALL") {
            if !capabilities.contains(&add) {
                capabilities.push(add);
            }
        }
        for drop in drops {
            capabilities.retain(|c| *c != drop);
        }
    }

    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let dir = volumes
            .get(&m.name)
            .ok_or_else(|| PlanError::UnknownVolume {
                container: name(),
                mount: m.mount_path.clone(),
                volume: m.name.clone(),
            })?;
        let source = match m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) => dir.join(sub),
            None => dir.clone(),
        };
        mounts.push(Mount {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only == Some(true),
        });
    }
    mounts.extend(extra_mounts.iter().cloned());

    Ok(ContainerPlan {
        args: argv,
        env,
        cwd,
        uid,
        gid,
        additional_gids,
        read_only_root: sc.read_only_root_filesystem == Some(true),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        capabilities,
        mounts,
        hostname,
    })
}

/// The image's `User` (`uid`, `uid:gid`, `name`, `name:group`; empty = root) as numbers.
pub fn image_user(
    user: &str,
    accounts: &ImageAccounts,
    must_be_numeric: bool,
) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, passwd_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, accounts.user(u).map(|(_, g)| g)),
        Err(_) if must_be_numeric => {
            return Err(format!(
                "container has runAsNonRoot and image has non-numeric user ({u}), cannot verify user is non-root"
            ));
        }
        Err(_) => {
            let (uid, gid) = accounts
                .user(u)
                .ok_or_else(|| format!("image user {u:?} is not in the image's /etc/passwd"))?;
            (uid, Some(gid))
        }
    };
    let gid = match g {
        None => passwd_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => accounts
                .group(g)
                .ok_or_else(|| format!("image group {g:?} is not in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        ImageConfig {
            entrypoint: entrypoint.map(s),
            cmd: cmd.map(s),
            ..Default::default()
        }
    }

    #[test]
    fn effective_args_follow_kubernetes_rules() {
        // (case, command, args, ENTRYPOINT, CMD, expected)
        type Row<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a [&'a str]>,
            Option<&'a [&'a str]>,
            &'a [&'a str],
        );
        let rows: &[Row] = &[
            (
                "neither: entrypoint + cmd",
                &[],
                &[],
                Some(&["/ep", "-x"]),
                Some(&["serve"]),
                &["/ep", "-x", "serve"],
            ),
            (
                "args replace cmd",
                &[],
                &["run", "now"],
                Some(&["/ep"]),
                Some(&["serve"]),
                &["/ep", "run", "now"],
            ),
            (
                "command drops entrypoint and cmd",
                &["/bin/sh"],
                &[],
                Some(&["/ep"]),
                Some(&["serve"]),
                &["/bin/sh"],
            ),
            (
                "command + args",
                &["/bin/sh", "-c"],
                &["echo hi"],
                Some(&["/ep"]),
                Some(&["serve"]),
                &["/bin/sh", "-c", "echo hi"],
            ),
            (
                "cmd only image",
                &[],
                &[],
                None,
                Some(&["/bin/app", "x"]),
                &["/bin/app", "x"],
            ),
            (
                "args only, no entrypoint",
                &[],
                &["/bin/true"],
                None,
                Some(&["/bin/app"]),
                &["/bin/true"],
            ),
            (
                "empty-string entrypoint means none",
                &[],
                &[],
                Some(&[""]),
                Some(&["/bin/app"]),
                &["/bin/app"],
            ),
            ("entrypoint only", &[], &[], Some(&["/ep"]), None, &["/ep"]),
            ("nothing at all", &[], &[], None, None, &[]),
        ];
        for (case, command, args, ep, cmd, expected) in rows {
            let got = effective_args(&s(command), &s(args), &image(*ep, *cmd));
            assert_eq!(got, s(expected), "case {case:?}");
        }
    }

    #[test]
    fn env_merge_replaces_in_place_and_appends() {
        let base = s(&["PATH=/default", "HOSTNAME=p"]);
        let image = s(&["PATH=/image/bin", "LANG=C"]);
        let pod = s(&["LANG=en", "A=1", "PATH=/pod"]);
        assert_eq!(
            merge_env(&[&base, &image, &pod]),
            s(&["PATH=/pod", "HOSTNAME=p", "LANG=en", "A=1"])
        );
    }

    #[test]
    fn image_users() {
        let accounts = ImageAccounts {
            passwd: Some("root:x:0:0::/root:/bin/sh\napp:x:1000:2000::/home/app:/bin/sh\n".into()),
            group: Some("root:x:0:\nstaff:x:50:\n".into()),
        };
        // (case, User, must be numeric, expected)
        type Row<'a> = (&'a str, &'a str, bool, Result<(u32, u32), &'a str>);
        let rows: &[Row] = &[
            ("empty is root", "", false, Ok((0, 0))),
            (
                "numeric uid, gid from passwd",
                "1000",
                false,
                Ok((1000, 2000)),
            ),
            (
                "numeric uid unknown to passwd",
                "4242",
                false,
                Ok((4242, 0)),
            ),
            ("uid:gid", "65532:65532", false, Ok((65532, 65532))),
            ("name", "app", false, Ok((1000, 2000))),
            ("name:group", "app:staff", false, Ok((1000, 50))),
            (
                "unknown name",
                "ghost",
                false,
                Err("not in the image's /etc/passwd"),
            ),
            (
                "unknown group",
                "app:ghosts",
                false,
                Err("not in the image's /etc/group"),
            ),
            (
                "name with runAsNonRoot",
                "app",
                true,
                Err("non-numeric user (app)"),
            ),
        ];
        for (case, user, numeric, expected) in rows {
            match (image_user(user, &accounts, *numeric), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "case {case:?}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "case {case:?}: {got}"),
                (got, want) => panic!("case {case:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn empty_node() -> NodeView<'static> {
        static VOLUMES: BTreeMap<String, PathBuf> = BTreeMap::new();
        static CONFIG_MAPS: ConfigMaps = ConfigMaps(BTreeMap::new());
        NodeView {
            volumes: &VOLUMES,
            config_maps: &CONFIG_MAPS,
            extra_env: &[],
            extra_mounts: &[],
        }
    }

    fn pod(yaml: &str) -> Pod {
        serde_yaml_ng::from_str(yaml).expect("test pod parses")
    }

    #[test]
    fn container_plan_applies_kubelet_rules() {
        let pod = pod(r#"
metadata: { name: web-1, namespace: shop, labels: { app: web } }
spec:
  securityContext: { runAsUser: 1001, runAsGroup: 3000, fsGroup: 2000, supplementalGroups: [4000] }
  containers:
    - name: app
      image: registry/app:1
      args: ["--greeting=$(GREETING)", "$$(GREETING)", "$(UNDEFINED)"]
      workingDir: /srv
      env:
        - { name: WHO, value: world }
        - { name: GREETING, value: "hello $(WHO)" }
        - { name: EARLY, value: "$(LATE)" }
        - { name: LATE, value: late }
        - { name: POD, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
        - { name: APP, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
        - { name: LANG, value: en }
      securityContext:
        runAsUser: 1002
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] }
      volumeMounts:
        - { name: cache, mountPath: /cache }
        - { name: cache, mountPath: /conf, subPath: conf, readOnly: true }
  volumes: [ { name: cache, emptyDir: {} } ]
"#);
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let image = ImageConfig {
            entrypoint: Some(s(&["/app/run"])),
            cmd: Some(s(&["serve"])),
            env: Some(s(&["PATH=/app/bin:/bin", "LANG=C"])),
            working_dir: Some("/app".into()),
            user: Some("65532".into()),
        };
        let volumes = BTreeMap::from([("cache".to_string(), PathBuf::from("/node/cache"))]);
        let extra_env = vec![("NODE".to_string(), "n1".to_string())];
        let plan = plan_container(
            &pod,
            container,
            &image,
            &ImageAccounts::default(),
            &NodeView {
                volumes: &volumes,
                config_maps: &ConfigMaps::default(),
                extra_env: &extra_env,
                extra_mounts: &[],
            },
        )
        .unwrap();
        assert_eq!(
            plan.args,
            s(&[
                "/app/run",
                "--greeting=hello world",
                "$(GREETING)",
                "$(UNDEFINED)"
            ])
        );
        assert_eq!(
            plan.env,
            s(&[
                "PATH=/app/bin:/bin",
                "HOSTNAME=web-1",
                "LANG=en",
                "WHO=world",
                "GREETING=hello world",
                "EARLY=$(LATE)",
                "LATE=late",
                "POD=web-1",
                "APP=web",
                "NODE=n1",
            ])
        );
        assert_eq!(plan.cwd, "/srv");
        assert_eq!((plan.uid, plan.gid), (1002, 3000));
        assert_eq!(plan.additional_gids, vec![4000, 2000]);
        assert!(plan.read_only_root && plan.no_new_privileges);
        assert_eq!(plan.capabilities, s(&["CAP_NET_BIND_SERVICE"]));
        assert_eq!(
            plan.mounts,
            vec![
                Mount {
                    source: "/node/cache".into(),
                    destination: "/cache".into(),
                    read_only: false
                },
                Mount {
                    source: "/node/cache/conf".into(),
                    destination: "/conf".into(),
                    read_only: true
                },
            ]
        );
    }

    #[test]
    fn container_plan_defaults_from_image() {
        let pod = pod("metadata: { name: p }\nspec: { containers: [ { name: c, image: i } ] }");
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let image = ImageConfig {
            cmd: Some(s(&["/bin/app"])),
            working_dir: Some("/work".into()),
            user: Some("1000:1000".into()),
            ..Default::default()
        };
        let plan = plan_container(
            &pod,
            container,
            &image,
            &ImageAccounts::default(),
            &empty_node(),
        )
        .unwrap();
        assert_eq!(plan.args, s(&["/bin/app"]));
        assert_eq!(
            plan.env,
            s(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=p"])
        );
        assert_eq!(plan.cwd, "/work");
        assert_eq!((plan.uid, plan.gid), (1000, 1000));
        assert!(!plan.read_only_root && !plan.no_new_privileges);
        assert_eq!(plan.capabilities.len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn container_plan_errors_name_the_container() {
        // (case, pod yaml, image, expected message part)
        let rows: &[(&str, &str, ImageConfig, &str)] = &[
            (
                "no program",
                "metadata: { name: p }\nspec: { containers: [ { name: c1, image: i } ] }",
                ImageConfig::default(),
                "container c1: no command",
            ),
            (
                "root with runAsNonRoot",
                "metadata: { name: p }\nspec: { securityContext: { runAsNonRoot: true }, containers: [ { name: c2, image: i, command: [x] } ] }",
                ImageConfig::default(),
                "container c2: container has runAsNonRoot and image will run as root",
            ),
            (
                "unknown volume",
                "metadata: { name: p }\nspec: { containers: [ { name: c3, image: i, command: [x], volumeMounts: [ { name: nope, mountPath: /x } ] } ] }",
                ImageConfig::default(),
                "container c3: volume mount \"/x\" names volume \"nope\"",
            ),
            (
                "secretKeyRef",
                "metadata: { name: p }\nspec: { containers: [ { name: c4, image: i, command: [x], env: [ { name: S, valueFrom: { secretKeyRef: { name: s, key: k } } } ] } ] }",
                ImageConfig::default(),
                "container c4: env var S: valueFrom other than fieldRef and configMapKeyRef",
            ),
            (
                "envFrom secretRef",
                "metadata: { name: p }\nspec: { containers: [ { name: c5, image: i, command: [x], envFrom: [ { secretRef: { name: s } } ] } ] }",
                ImageConfig::default(),
                "container c5: envFrom secretRef is not supported",
            ),
            (
                "missing ConfigMap",
                "metadata: { name: p, namespace: shop }\nspec: { containers: [ { name: c6, image: i, command: [x], envFrom: [ { configMapRef: { name: nope } } ] } ] }",
                ImageConfig::default(),
                "container c6: configmap \"nope\" not found in namespace shop",
            ),
        ];
        for (case, yaml, image, expected) in rows {
            let pod = pod(yaml);
            let container = &pod.spec.as_ref().unwrap().containers[0];
            let err = plan_container(
                &pod,
                container,
                image,
                &ImageAccounts::default(),
                &empty_node(),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "case {case:?}: {err}");
        }
    }

    #[test]
    fn config_maps_reach_env_as_the_kubelet_reads_them() {
        let mut cms = ConfigMaps::default();
        let added = cms
            .add_manifest(
                r#"
apiVersion: v1
kind: ConfigMap
metadata: { name: app, namespace: shop }
data: { HOST: db, PORT: "5432", 1BAD: skipped, URL: "$(HOST)" }
---
apiVersion: v1
kind: ServiceAccount
metadata: { name: web, namespace: shop }
---
kind: ConfigMap
metadata: { name: other, namespace: shop }
data: { HOST: replica }
---
kind: ConfigMap
metadata: { name: app }
data: { HOST: default-namespace }
"#,
            )
            .unwrap();
        assert_eq!(added, 3);
        let env = |yaml: &str| {
            let pod = pod(&format!(
                "metadata: {{ name: p, namespace: shop }}\nspec: {{ containers: [ {yaml} ] }}"
            ));
            kubelet_env(&pod, &pod.spec.as_ref().unwrap().containers[0], &cms)
                .map(|vars| {
                    vars.iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| e.to_string())
        };
        let ok = |v: &[&str]| Ok(s(v));
        // (case, container, expected env or error part)
        type Row = (&'static str, &'static str, Result<Vec<String>, String>);
        let rows: &[Row] = &[
            (
                "envFrom: every valid key in order, values not expanded",
                "{ name: c, envFrom: [ { configMapRef: { name: app } } ] }",
                ok(&["HOST=db", "PORT=5432", "URL=$(HOST)"]),
            ),
            (
                "prefix; a later source overrides an earlier one (last definition)",
                "{ name: c, envFrom: [ { configMapRef: { name: app }, prefix: A_ }, { configMapRef: { name: app } }, { configMapRef: { name: other } } ] }",
                ok(&[
                    "A_1BAD=skipped",
                    "A_HOST=db",
                    "A_PORT=5432",
                    "A_URL=$(HOST)",
                    "HOST=db",
                    "PORT=5432",
                    "URL=$(HOST)",
                    "HOST=replica",
                ]),
            ),
            (
                "env sees envFrom and earlier env; configMapKeyRef",
                "{ name: c, envFrom: [ { configMapRef: { name: app } } ], env: [ { name: DSN, value: \"$(HOST):$(PORT)/$(K)\" }, { name: K, valueFrom: { configMapKeyRef: { name: other, key: HOST } } }, { name: AFTER, value: \"$(K)\" } ] }",
                ok(&[
                    "HOST=db",
                    "PORT=5432",
                    "URL=$(HOST)",
                    "DSN=db:5432/$(K)",
                    "K=replica",
                    "AFTER=replica",
                ]),
            ),
            (
                "optional: a missing ConfigMap or key is skipped",
                "{ name: c, envFrom: [ { configMapRef: { name: nope, optional: true } } ], env: [ { name: A, valueFrom: { configMapKeyRef: { name: nope, key: k, optional: true } } }, { name: B, valueFrom: { configMapKeyRef: { name: app, key: nope, optional: true } } } ] }",
                ok(&[]),
            ),
            (
                "a missing key",
                "{ name: c, env: [ { name: A, valueFrom: { configMapKeyRef: { name: app, key: nope } } } ] }",
                Err("container c: env var A: couldn't find key nope in ConfigMap shop/app".into()),
            ),
            (
                "configMapKeyRef alone",
                "{ name: c, env: [ { name: A, valueFrom: { configMapKeyRef: { name: other, key: HOST } } } ] }",
                ok(&["A=replica"]),
            ),
        ];
        for (case, container, expected) in rows {
            assert_eq!(&env(container), expected, "case {case:?}");
        }
        let elsewhere = pod(
            "metadata: { name: p, namespace: team }\nspec: { containers: [ { name: c, envFrom: [ { configMapRef: { name: other } } ] } ] }",
        );
        assert_eq!(
            kubelet_env(
                &elsewhere,
                &elsewhere.spec.as_ref().unwrap().containers[0],
                &cms
            )
            .unwrap_err()
            .to_string(),
            "container c: configmap \"other\" not found in namespace team"
        );
    }
}
