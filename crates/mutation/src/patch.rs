//! The second step: the JSON patch against the JSON the API server sent, given the entrypoints.

use json_patch::jsonptr::{PointerBuf, Token};
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::{Value, json};

use crate::config::{
    ANNOTATION_STATUS, CA_BUNDLE_ENV, DEFAULT_VAULT_ENV, FLAG_ALLOW_PLACEHOLDER_TEXT,
    INSTALL_MOUNT_PATH, STATUS_INJECTED,
};
use crate::entrypoint::{self, Word};
use crate::error::{Denial, Problem};
use crate::plan::{ContainerKind, ContainerRef, Entrypoints, Plan};
use crate::termination;

/// The result: one JSON patch, warnings for the client, and the containers that were wrapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Vec<String>,
    pub wrapped: Vec<ContainerRef>,
}

impl Plan<'_> {
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
            // `$(VAR)` references to placeholders in the program's own words become templates.
            let mut composer = target.composer.clone();
            let argv: Vec<Word> = argv
                .into_iter()
                .enumerate()
                .map(|(index, word)| match word {
                    Word::Pod(w) => Word::Pod(composer.word(index, &w).unwrap_or(w)),
                    image => image,
                })
                .collect();
            let mut args = target.injector_flags.clone();
            args.extend(termination::injector_flags(
                target.termination_message_path.as_deref(),
            ));
            // Supervisor mode is for app containers; an init container runs to completion.
            if target.container.kind == ContainerKind::Container {
                args.extend(self.rotation_flags.iter().cloned());
            }
            args.extend(composer.flags());
            if self.allow_placeholder_text {
                args.push(FLAG_ALLOW_PLACEHOLDER_TEXT.to_owned());
            }
            args.extend(entrypoint::wrapped_args(argv));
            ops.push(set(target.has_args, &at("args"), json!(args)));
            let default_vault = self
                .default_vault
                .as_ref()
                .filter(|_| !target.sets_default_vault)
                .map(|vault| json!({ "name": DEFAULT_VAULT_ENV, "value": vault.to_string() }));
            if composer.env_changed() {
                let mut env = composer.env();
                env.extend(default_vault);
                ops.push(set(target.has_env, &at("env"), json!(env)));
            } else if let Some(var) = default_vault {
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
        let mut init = json!({
            "name": config.init_container_name,
            "image": config.injector_image,
            "imagePullPolicy": config.pull_policy,
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
        });
        if let Some(pem) = &config.trust.ca_bundle {
            init["env"] = json!([{ "name": CA_BUNDLE_ENV, "value": pem }]);
        }
        init
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
