//! Turns `runc spec`'s template into one container's OCI runtime config: pure, so what the runtime
//! is asked to do can be checked without running it.

use serde_json::{Value, json};

use crate::process::ContainerPlan;

/// Patches the template from `runc spec` with `plan`: no terminal, the host network namespace
/// (containers reach the local vault on 127.0.0.1), the plan's user, env, mounts and hardening.
pub fn runtime_spec(template: &Value, plan: &ContainerPlan) -> Value {
    let mut spec = template.clone();
    let caps = json!(plan.capabilities);
    spec["process"] = json!({
        "terminal": false,
        "user": {
            "uid": plan.uid,
            "gid": plan.gid,
            "additionalGids": plan.additional_gids,
        },
        "args": plan.args,
        "env": plan.env,
        "cwd": plan.cwd,
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "rlimits": template["process"]["rlimits"].clone(),
        "noNewPrivileges": plan.no_new_privileges,
    });
    if plan.additional_gids.is_empty() {
        spec["process"]["user"]
            .as_object_mut()
            .expect("user is an object")
            .remove("additionalGids");
    }
    spec["root"] = json!({ "path": "rootfs", "readonly": plan.read_only_root });
    spec["hostname"] = json!(plan.hostname);
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for m in &plan.mounts {
            let mode = if m.read_only { "ro" } else { "rw" };
            mounts.push(json!({
                "destination": m.destination,
                "type": "bind",
                "source": m.source,
                "options": ["rbind", "rprivate", mode],
            }));
        }
    }
    if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
        namespaces.retain(|ns| ns["type"] != "network");
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Mount;

    fn template() -> Value {
        json!({
            "ociVersion": "1.0.2-dev",
            "process": { "terminal": true, "args": ["sh"], "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }] },
            "root": { "path": "rootfs", "readonly": true },
            "hostname": "runc",
            "mounts": [{ "destination": "/proc", "type": "proc", "source": "proc" }],
            "linux": { "namespaces": [{ "type": "pid" }, { "type": "network" }, { "type": "mount" }] }
        })
    }

    fn plan() -> ContainerPlan {
        ContainerPlan {
            args: vec!["/app/run".into(), "serve".into()],
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cwd: "/app".into(),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
            read_only_root: false,
            no_new_privileges: true,
            capabilities: vec![],
            mounts: vec![
                Mount {
                    source: "/pod/v/shared".into(),
                    destination: "/shared".into(),
                    read_only: false,
                },
                Mount {
                    source: "/pod/v/bin".into(),
                    destination: "/akv-env/bin".into(),
                    read_only: true,
                },
            ],
            hostname: "web-1".into(),
        }
    }

    #[test]
    fn spec_carries_the_plan() {
        let spec = runtime_spec(&template(), &plan());
        assert_eq!(spec["process"]["terminal"], false);
        assert_eq!(spec["process"]["args"], json!(["/app/run", "serve"]));
        assert_eq!(spec["process"]["env"], json!(["PATH=/bin", "A=1"]));
        assert_eq!(spec["process"]["cwd"], "/app");
        assert_eq!(spec["process"]["user"], json!({ "uid": 1000, "gid": 1000 }));
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(spec["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(spec["root"], json!({ "path": "rootfs", "readonly": false }));
        assert_eq!(spec["hostname"], "web-1");
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{ "type": "pid" }, { "type": "mount" }]),
            "host network namespace"
        );
        let mounts = spec["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1]["destination"], "/shared");
        assert_eq!(mounts[1]["options"], json!(["rbind", "rprivate", "rw"]));
        assert_eq!(mounts[2]["source"], "/pod/v/bin");
        assert_eq!(mounts[2]["options"], json!(["rbind", "rprivate", "ro"]));
    }

    #[test]
    fn read_only_root_and_groups() {
        let mut p = plan();
        p.read_only_root = true;
        p.additional_gids = vec![2000];
        p.capabilities = vec!["CAP_KILL".into()];
        let spec = runtime_spec(&template(), &p);
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["process"]["user"]["additionalGids"], json!([2000]));
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_KILL"])
        );
    }
}
