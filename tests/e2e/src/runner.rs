//! The kubelet stand-in: runs an admitted Pod's init containers in order, then its containers,
//! each in its image's unpacked root filesystem under Debian's `runc`.
//!
//! Layout of the node directory (like `/var/lib/kubelet`):
//! `images/` (pulled OCI layouts), `pods/<uid>/volumes/kubernetes.io~{empty-dir,projected}/<name>`,
//! `pods/<uid>/containers/<name>/{rootfs,config.json}`, `runc/` (runc's state).
//! Container output is kept in memory and returned, never written to the node directory, so a
//! scan of the directory shows only what the pod itself wrote.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use serde_json::Value;

use crate::error::{Error, Result, io};
use crate::image::{ImageStore, read_config, require_tools, run, unpack};
use crate::process::{ConfigMaps, ImageAccounts, Mount, NodeView, plan_container};
use crate::spec::runtime_spec;

/// What the node (not the pod spec) gives every container: the cluster's DNS and trust stand-ins,
/// and the service-account tokens kubelet would request for projected volumes.
#[derive(Debug, Clone, Default)]
pub struct NodeEnvironment {
    /// Added to every container's environment after the pod's own variables.
    pub env: Vec<(String, String)>,
    /// Host files bind-mounted read-only into every container: (host path, container path).
    pub files: Vec<(PathBuf, String)>,
    /// Service account name -> the token a projected `serviceAccountToken` source gets.
    pub service_account_tokens: BTreeMap<String, String>,
}

/// How one container ended.
#[derive(Debug, Clone)]
pub struct ContainerRun {
    pub name: String,
    /// The argv handed to the runtime (after kubelet's expansion and the image's defaults).
    pub args: Vec<String>,
    /// Exit code; 128 + signal when killed (as runc reports it).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// What the kubelet would put in `lastState.terminated.message`: the last 4 KiB of the file
    /// bind-mounted at `terminationMessagePath`, or with `FallbackToLogsOnError` and a failure
    /// and an empty file, the log's tail.
    pub termination_message: String,
    /// How often the stand-in restarted this container (the kubelet's `restartCount`).
    pub restart_count: u32,
    /// The runs before this one, oldest first (`kubectl logs --previous` shows the last).
    pub previous: Vec<ContainerRun>,
}

/// How a pod ended: init containers that ran, and the containers if all init containers succeeded.
#[derive(Debug, Clone)]
pub struct PodRun {
    pub pod_dir: PathBuf,
    pub init_containers: Vec<ContainerRun>,
    pub containers: Vec<ContainerRun>,
}

impl PodRun {
    /// Every container, init ones first.
    pub fn all(&self) -> impl Iterator<Item = &ContainerRun> {
        self.init_containers.iter().chain(&self.containers)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerRun> {
        self.all().find(|c| c.name == name)
    }

    /// The named container's result; panics showing the whole pod when it did not run (for
    /// tests, whose failures should say what every container printed).
    pub fn expect_container(&self, name: &str) -> &ContainerRun {
        self.container(name)
            .unwrap_or_else(|| panic!("container {name} did not run:\n{self}"))
    }

    /// True when every init container and container exited 0.
    pub fn succeeded(&self) -> bool {
        !self.containers.is_empty() && self.all().all(|c| c.exit_code == 0)
    }
}

/// Every container's exit code, argv and output: what a failed test shows.
impl std::fmt::Display for PodRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = self
            .all()
            .flat_map(|c| c.previous.iter().chain([c]).enumerate());
        for (i, (n, c)) in runs.enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let run = if n > 0 {
                format!(", run {}", n + 1)
            } else {
                String::new()
            };
            write!(
                f,
                "--- {} (exit {}{run}) args {:?}\nstdout:\n{}\nstderr:\n{}",
                c.name, c.exit_code, c.args, c.stdout, c.stderr
            )?;
        }
        Ok(())
    }
}

/// Fails clearly unless running as root, which runc needs.
pub fn require_root() -> Result<()> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid != 0 {
        return Err(Error::NotRoot { uid });
    }
    Ok(())
}

/// Runs pods as a kubelet would, with runc. Needs root.
pub struct PodRunner {
    dir: PathBuf,
    images: ImageStore,
    node: NodeEnvironment,
    template: Value,
    runc_root: PathBuf,
    /// The cluster's ConfigMaps, read at each container start like the kubelet reads them (so an
    /// edit between two runs of a pod is what a restarted container sees).
    pub config_maps: ConfigMaps,
    /// Containers still running after this are killed (a hung program must not hang the suite).
    pub container_deadline: Duration,
    /// Restarts per container allowed by the pod's `restartPolicy` (`Always`: after any exit;
    /// `OnFailure`: after a non-zero one), like the kubelet but bounded so a pod run ends.
    /// 0 (the default): every container runs once.
    pub max_restarts: u32,
}

impl PodRunner {
    /// A node rooted at `dir` (created if needed). Fails clearly without root or the tools.
    pub fn new(dir: &Path, node: NodeEnvironment) -> Result<Self> {
        require_root()?;
        require_tools()?;
        let images = dir.join("images");
        let runc_root = dir.join("runc");
        for d in [&images, &runc_root, &dir.join("pods")] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let spec_dir = dir.join("runc-spec");
        std::fs::create_dir_all(&spec_dir).map_err(io("creating runc-spec"))?;
        let _ = std::fs::remove_file(spec_dir.join("config.json"));
        run(Command::new("runc")
            .args(["spec", "--bundle"])
            .arg(&spec_dir))?;
        let template: Value = serde_json::from_slice(
            &std::fs::read(spec_dir.join("config.json"))
                .map_err(io("reading runc's spec template"))?,
        )
        .map_err(|e| Error::Other(format!("runc spec printed invalid JSON: {e}")))?;
        Ok(PodRunner {
            dir: dir.to_path_buf(),
            images: ImageStore::new(images),
            node,
            template,
            runc_root,
            config_maps: ConfigMaps::default(),
            container_deadline: Duration::from_secs(120),
            max_restarts: 0,
        })
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `pod` to completion: volumes, init containers in order (stopping at the first that
    /// fails, as `restartPolicy: Never` would), then all containers concurrently, each restarted
    /// as its `restartPolicy` says up to [`Self::max_restarts`] times.
    pub fn run_pod(&mut self, pod: &Pod) -> Result<PodRun> {
        let pod_name = pod
            .metadata
            .name
            .clone()
            .or_else(|| pod.metadata.generate_name.clone())
            .unwrap_or_else(|| "pod".into());
        let pod_err = |reason: String| Error::Pod {
            pod: pod_name.clone(),
            reason,
        };
        let spec = pod.spec.as_ref().ok_or_else(|| pod_err("no spec".into()))?;
        let uid = pod
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{:016x}", rand_u64()));
        let pod_dir = self.dir.join("pods").join(&uid);
        std::fs::create_dir_all(&pod_dir).map_err(io(format!("creating {}", pod_dir.display())))?;
        let volumes =
            self.make_volumes(pod, &pod_dir, spec.volumes.as_deref().unwrap_or_default())?;

        let mut result = PodRun {
            pod_dir: pod_dir.clone(),
            init_containers: Vec::new(),
            containers: Vec::new(),
        };
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                return Err(pod_err(format!(
                    "init container {} is a native sidecar (restartPolicy: Always), which the kubelet stand-in does not run",
                    c.name
                )));
            }
            let prepared = self.prepare(pod, c, &pod_dir, &volumes, &uid)?;
            let ran = self.start(&prepared)?;
            let failed = ran.exit_code != 0;
            result.init_containers.push(ran);
            if failed {
                return Ok(result);
            }
        }
        let mut prepared = Vec::new();
        for c in &spec.containers {
            prepared.push(self.prepare(pod, c, &pod_dir, &volumes, &uid)?);
        }
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let this = &*self;
        let runs: Vec<Result<ContainerRun>> = std::thread::scope(|s| {
            let handles: Vec<_> = prepared
                .into_iter()
                .map(|p| {
                    let policy = &policy;
                    s.spawn(move || this.run_restarting(p, policy))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("container thread panicked".into())))
                })
                .collect()
        });
        for r in runs {
            result.containers.push(r?);
        }
        Ok(result)
    }

    /// emptyDir volumes as world-writable directories (as kubelet makes them) and projected
    /// volumes as read-only files; other kinds are refused by name.
    fn make_volumes(
        &self,
        pod: &Pod,
        pod_dir: &Path,
        volumes: &[Volume],
    ) -> Result<BTreeMap<String, PathBuf>> {
        use std::os::unix::fs::PermissionsExt as _;
        let mut out = BTreeMap::new();
        let unsupported = |v: &Volume, what: &str| Error::Pod {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            reason: format!(
                "volume {}: {what} is not supported by the kubelet stand-in",
                v.name
            ),
        };
        for v in volumes {
            let dir = if v.empty_dir.is_some() {
                let dir = pod_dir
                    .join("volumes/kubernetes.io~empty-dir")
                    .join(&v.name);
                std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io(format!("chmod {}", dir.display())))?;
                dir
            } else if let Some(projected) = &v.projected {
                let dir = pod_dir
                    .join("volumes/kubernetes.io~projected")
                    .join(&v.name);
                std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
                for source in projected.sources.iter().flatten() {
                    if let Some(token) = &source.service_account_token {
                        let sa = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.service_account_name.clone())
                            .unwrap_or_else(|| "default".into());
                        let value = self.node.service_account_tokens.get(&sa).ok_or_else(|| {
                            unsupported(
                                v,
                                &format!("a token for service account {sa:?} (the node has none)"),
                            )
                        })?;
                        write_projected(&dir, &token.path, value.as_bytes())?;
                    } else if let Some(cm) = &source.config_map {
                        // The API server's kube-root-ca.crt; nothing in these pods talks to it.
                        for item in cm.items.iter().flatten() {
                            write_projected(&dir, &item.path, b"-----BEGIN CERTIFICATE-----\n(stand-in cluster CA)\n-----END CERTIFICATE-----\n")?;
                        }
                    } else if let Some(downward) = &source.downward_api {
                        for item in downward.items.iter().flatten() {
                            let field = item.field_ref.as_ref().map(|f| f.field_path.as_str());
                            let value = match field {
                                Some("metadata.namespace") => {
                                    pod.metadata.namespace.clone().unwrap_or_default()
                                }
                                Some("metadata.name") => {
                                    pod.metadata.name.clone().unwrap_or_default()
                                }
                                other => {
                                    return Err(unsupported(
                                        v,
                                        &format!("downwardAPI field {other:?}"),
                                    ));
                                }
                            };
                            write_projected(&dir, &item.path, value.as_bytes())?;
                        }
                    } else {
                        return Err(unsupported(v, "this projected source"));
                    }
                }
                dir
            } else {
                return Err(unsupported(v, "this volume type"));
            };
            out.insert(v.name.clone(), dir);
        }
        Ok(out)
    }

    /// Pulls and unpacks the image, plans the container and writes its runtime config.
    fn prepare(
        &mut self,
        pod: &Pod,
        container: &Container,
        pod_dir: &Path,
        volumes: &BTreeMap<String, PathBuf>,
        uid: &str,
    ) -> Result<Prepared> {
        let image = container.image.clone().ok_or_else(|| Error::Pod {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            reason: format!("container {} has no image", container.name),
        })?;
        let layout = self.images.pull(&image)?;
        let config = read_config(&layout, "img")?;
        let bundle = pod_dir.join("containers").join(&container.name);
        if bundle.exists() {
            std::fs::remove_dir_all(&bundle)
                .map_err(io(format!("removing {}", bundle.display())))?;
        }
        unpack(&layout, &bundle)?;
        let rootfs = bundle.join("rootfs");
        let accounts = ImageAccounts {
            passwd: std::fs::read_to_string(rootfs.join("etc/passwd")).ok(),
            group: std::fs::read_to_string(rootfs.join("etc/group")).ok(),
        };
        let mut extra_mounts: Vec<Mount> = self
            .node
            .files
            .iter()
            .map(|(source, destination)| Mount {
                source: source.clone(),
                destination: destination.clone(),
                read_only: true,
            })
            .collect();
        // Like the kubelet: an empty world-writable file per container, bind-mounted read-write
        // at terminationMessagePath, read after the container exits.
        let termination_file = match container
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            Some(destination) => {
                use std::os::unix::fs::PermissionsExt as _;
                let dir = pod_dir.join("termination-messages");
                std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
                let file = dir.join(&container.name);
                std::fs::write(&file, b"").map_err(io(format!("creating {}", file.display())))?;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))
                    .map_err(io(format!("chmod {}", file.display())))?;
                extra_mounts.push(Mount {
                    source: file.clone(),
                    destination: destination.to_owned(),
                    read_only: false,
                });
                Some(file)
            }
            None => None,
        };
        let plan = plan_container(
            pod,
            container,
            &config,
            &accounts,
            &NodeView {
                volumes,
                config_maps: &self.config_maps,
                extra_env: &self.node.env,
                extra_mounts: &extra_mounts,
            },
        )?;
        let spec = runtime_spec(&self.template, &plan);
        let config_path = bundle.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&spec).expect("JSON serialises"),
        )
        .map_err(io(format!("writing {}", config_path.display())))?;
        let short: String = uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        Ok(Prepared {
            id: format!("akv-e2e-{short}-{}", container.name),
            name: container.name.clone(),
            args: plan.args,
            bundle,
            termination_file,
            fallback_to_logs: container.termination_message_policy.as_deref()
                == Some("FallbackToLogsOnError"),
        })
    }

    /// Runs a container, then again while `policy` asks for a restart and restarts are left.
    /// Each run starts from the same prepared bundle (the kubelet would create a new container
    /// from the image, with a fresh writable layer: these pods' root filesystems are read-only)
    /// and an empty termination message file; volumes keep their contents, as on a node. No
    /// back-off (the kubelet waits 10 s, doubling), to keep tests short.
    fn run_restarting(&self, p: Prepared, policy: &str) -> Result<ContainerRun> {
        let mut previous = Vec::new();
        loop {
            if let Some(file) = &p.termination_file {
                std::fs::write(file, b"").map_err(io(format!("emptying {}", file.display())))?;
            }
            let mut ran = self.start(&p)?;
            let again = match policy {
                "Always" => true,
                "OnFailure" => ran.exit_code != 0,
                _ => false,
            };
            if !again || previous.len() as u32 >= self.max_restarts {
                ran.restart_count = previous.len() as u32;
                ran.previous = previous;
                return Ok(ran);
            }
            previous.push(ran);
        }
    }

    /// `runc run` without a terminal; output captured; `runc delete` afterwards, always.
    fn start(&self, p: &Prepared) -> Result<ContainerRun> {
        let runc = |args: &[&str]| {
            let mut c = Command::new("runc");
            c.arg("--root").arg(&self.runc_root).args(args);
            c
        };
        let mut child = runc(&["run", "--bundle"])
            .arg(&p.bundle)
            .arg(&p.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting runc for container {}", p.name)))?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(io("waiting for runc"))? {
                break status;
            }
            if started.elapsed() > self.container_deadline {
                let _ = runc(&["kill", &p.id, "KILL"]).output();
                break child.wait().map_err(io("waiting for runc"))?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        let _ = runc(&["delete", "--force", &p.id]).output();
        use std::os::unix::process::ExitStatusExt as _;
        let exit_code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        let file = match &p.termination_file {
            Some(path) => read_tail(path, MAX_TERMINATION_MESSAGE)?,
            None => Vec::new(),
        };
        let mut logs = stdout.clone();
        logs.extend_from_slice(&stderr);
        Ok(ContainerRun {
            name: p.name.clone(),
            args: p.args.clone(),
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            termination_message: termination_message(&file, p.fallback_to_logs, exit_code, &logs),
            restart_count: 0,
            previous: Vec::new(),
        })
    }
}

struct Prepared {
    id: String,
    name: String,
    args: Vec<String>,
    bundle: PathBuf,
    termination_file: Option<PathBuf>,
    fallback_to_logs: bool,
}

/// The kubelet's limits: 4 KiB of the file; with the logs fallback, 80 lines and 2 KiB of them.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
const MAX_FALLBACK_LINES: usize = 80;
const MAX_FALLBACK_BYTES: usize = 2048;

/// The last `max` bytes of a file (the kubelet's `tail.ReadAtMost`).
fn read_tail(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::{Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let len = file
        .metadata()
        .map_err(io(format!("stat {}", path.display())))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(io(format!("seeking {}", path.display())))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .map_err(io(format!("reading {}", path.display())))?;
    Ok(buf)
}

/// What the kubelet reports as the termination message: the file's contents, or, when it is
/// empty, the container failed and the policy is `FallbackToLogsOnError`, the log's last lines.
/// (The kubelet reads the runtime's combined log; here stdout then stderr.) Pure.
fn termination_message(file: &[u8], fallback_to_logs: bool, exit_code: i32, logs: &[u8]) -> String {
    if !file.is_empty() || !fallback_to_logs || exit_code == 0 {
        return String::from_utf8_lossy(file).into_owned();
    }
    let text = String::from_utf8_lossy(logs);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(MAX_FALLBACK_LINES)..].join("\n");
    let mut start = tail.len().saturating_sub(MAX_FALLBACK_BYTES);
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    tail[start..].to_owned()
}

/// A projected file: kubelet's default mode 0644 in a 0755 directory.
fn write_projected(dir: &Path, rel: &str, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(rel.trim_start_matches('/'));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .map_err(io(format!("chmod {}", path.display())))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termination_message_follows_the_kubelets_rules() {
        let long_log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        for (case, file, fallback, exit, logs, want) in [
            (
                "the file wins",
                "boom\n",
                true,
                1,
                "log",
                "boom\n".to_owned(),
            ),
            (
                "file even on success",
                "done",
                false,
                0,
                "log",
                "done".to_owned(),
            ),
            (
                "empty file, policy File",
                "",
                false,
                1,
                "log",
                String::new(),
            ),
            (
                "empty file, success: no fallback",
                "",
                true,
                0,
                "log",
                String::new(),
            ),
            (
                "empty file, failure: the log",
                "",
                true,
                2,
                "a\nb\n",
                "a\nb".to_owned(),
            ),
            (
                "the log's last 80 lines",
                "",
                true,
                1,
                long_log.as_str(),
                (20..100)
                    .map(|i| format!("line {i}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ] {
            assert_eq!(
                termination_message(file.as_bytes(), fallback, exit, logs.as_bytes()),
                want,
                "{case}"
            );
        }
        let huge = "x".repeat(5000);
        assert_eq!(
            termination_message(b"", true, 1, huge.as_bytes()).len(),
            2048
        );
    }
}
