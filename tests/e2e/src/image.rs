//! Images without a container engine: built with `umoci`, moved with `skopeo`, unpacked with
//! `umoci unpack` as a kubelet's runtime would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::error::{Error, Result, io};
use crate::process::ImageConfig;

/// Runs a command and returns its stdout; a failure shows the command and its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io(format!("starting {shown}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(Error::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Fails with "run scripts/setup.sh" when a tool is missing.
pub fn require_tools() -> Result<()> {
    for (tool, package) in [("umoci", "umoci"), ("skopeo", "skopeo"), ("runc", "runc")] {
        registry_harness::require_tool(tool, package)?;
    }
    Ok(())
}

/// Reads the config of `layout:tag` (index.json -> manifest -> config blob).
pub fn read_config(layout: &Path, tag: &str) -> Result<ImageConfig> {
    let image = format!("{}:{tag}", layout.display());
    let bad = |reason: String| Error::Image {
        image: image.clone(),
        reason,
    };
    let read_json = |path: PathBuf| -> Result<Value> {
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))
    };
    let blob = |digest: &str| -> Result<PathBuf> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| bad(format!("unsupported digest {digest}")))?;
        Ok(layout.join("blobs/sha256").join(hex))
    };
    let index = read_json(layout.join("index.json"))?;
    let manifest_digest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .ok_or_else(|| bad(format!("no manifest tagged {tag:?} in index.json")))?;
    let manifest = read_json(blob(manifest_digest)?)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| bad("manifest has no config digest (an index?)".into()))?;
    let config = read_json(blob(config_digest)?)?;
    let inner = config.get("config").cloned().unwrap_or(Value::Null);
    if inner.is_null() {
        return Ok(ImageConfig::default());
    }
    serde_json::from_value(inner).map_err(|e| bad(format!("image config: {e}")))
}

/// Copies `layout:tag` to `registry` (plain HTTP) as `repository:tag`; returns the digest.
/// An image index goes with every image it lists (`--all`), keeping its digest.
pub fn push_layout(
    layout: &Path,
    tag: &str,
    registry: &str,
    repository_and_tag: &str,
) -> Result<String> {
    let digest_file = tempfile::NamedTempFile::new().map_err(io("creating a digest file"))?;
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--all", "--preserve-digests"])
        .args(["--dest-tls-verify=false", "--digestfile"])
        .arg(digest_file.path())
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{registry}/{repository_and_tag}")))?;
    let digest =
        std::fs::read_to_string(digest_file.path()).map_err(io("reading skopeo's digest file"))?;
    Ok(digest.trim().to_string())
}

/// The manifest (or image index) `reference` names in its registry, as JSON (plain HTTP
/// allowed).
pub fn inspect_raw(reference: &str) -> Result<Value> {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))?;
    serde_json::from_slice(&out).map_err(|e| Error::Image {
        image: reference.into(),
        reason: format!("manifest: {e}"),
    })
}

/// A file to put into an image.
#[derive(Debug, Clone)]
pub enum Entry {
    File {
        path: String,
        contents: Vec<u8>,
        mode: u32,
    },
    /// Copy of a host file (e.g. /bin/busybox), keeping the given mode.
    Copy {
        path: String,
        from: PathBuf,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
    Dir {
        path: String,
        mode: u32,
    },
}

/// An image built from entries and a config, like a small `FROM scratch` Containerfile.
#[derive(Debug, Clone, Default)]
pub struct ImageBuilder {
    pub entries: Vec<Entry>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// The image config's architecture (GOARCH names); amd64 when unset.
    pub architecture: Option<String>,
}

impl ImageBuilder {
    /// A static busybox (Debian's busybox-static) with `sh` and friends linked in `/bin`, plus
    /// minimal `/etc/passwd` and `/etc/group`: an app image of about 2 MB.
    pub fn busybox() -> Result<Self> {
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            return Err(Error::Other(
                "/bin/busybox not found: install Debian's busybox-static (scripts/setup.sh)".into(),
            ));
        }
        let mut b = ImageBuilder {
            env: vec![format!("PATH={}", crate::process::DEFAULT_PATH)],
            ..Default::default()
        };
        b.entries.push(Entry::Copy {
            path: "/bin/busybox".into(),
            from: busybox.into(),
            mode: 0o755,
        });
        for applet in [
            "sh",
            "env",
            "cat",
            "echo",
            "id",
            "ls",
            "printf",
            "test",
            "sleep",
            "touch",
            "sha256sum",
            "find",
            "grep",
        ] {
            b.entries.push(Entry::Symlink {
                path: format!("/bin/{applet}"),
                target: "busybox".into(),
            });
        }
        b.entries.push(Entry::File {
            path: "/etc/passwd".into(),
            contents: b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n".to_vec(),
            mode: 0o644,
        });
        b.entries.push(Entry::File {
            path: "/etc/group".into(),
            contents: b"root:x:0:\napp:x:1000:\nnogroup:x:65534:\n".to_vec(),
            mode: 0o644,
        });
        Ok(b)
    }

    pub fn file(mut self, path: &str, contents: &[u8], mode: u32) -> Self {
        self.entries.push(Entry::File {
            path: path.into(),
            contents: contents.to_vec(),
            mode,
        });
        self
    }

    /// Copies a host file into the image.
    pub fn copy(mut self, path: &str, from: &Path, mode: u32) -> Self {
        self.entries.push(Entry::Copy {
            path: path.into(),
            from: from.into(),
            mode,
        });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(Entry::Dir {
            path: path.into(),
            mode,
        });
        self
    }

    pub fn entrypoint(mut self, words: &[&str]) -> Self {
        self.entrypoint = Some(words.iter().map(|w| w.to_string()).collect());
        self
    }

    pub fn cmd(mut self, words: &[&str]) -> Self {
        self.cmd = Some(words.iter().map(|w| w.to_string()).collect());
        self
    }

    pub fn env(mut self, entry: &str) -> Self {
        self.env.push(entry.into());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn architecture(mut self, architecture: &str) -> Self {
        self.architecture = Some(architecture.into());
        self
    }

    /// Builds the image into a new OCI layout under `work` as `layout:tag`.
    pub fn build(&self, work: &Path, tag: &str) -> Result<PathBuf> {
        let layout = work.join("layout");
        self.build_into(&layout, work, tag)?;
        Ok(layout)
    }

    /// Builds the image into `layout` (created when missing) as `layout:tag`, using `work` for
    /// the unpacked bundle.
    pub fn build_into(&self, layout: &Path, work: &Path, tag: &str) -> Result<()> {
        let bundle = work.join(format!("bundle-{tag}"));
        let image = format!("{}:{tag}", layout.display());
        if !layout.join("index.json").is_file() {
            run(Command::new("umoci").args(["init", "--layout"]).arg(layout))?;
        }
        run(Command::new("umoci").args(["new", "--image", &image]))?;
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle))?;
        let rootfs = bundle.join("rootfs");
        for entry in &self.entries {
            write_entry(&rootfs, entry)?;
        }
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle))?;
        let mut config = Command::new("umoci");
        config.args([
            "config",
            "--image",
            &image,
            "--os",
            "linux",
            "--architecture",
            self.architecture.as_deref().unwrap_or("amd64"),
        ]);
        // umoci appends entrypoint/cmd words one flag at a time.
        for w in self.entrypoint.iter().flatten() {
            config.arg(format!("--config.entrypoint={w}"));
        }
        for w in self.cmd.iter().flatten() {
            config.arg(format!("--config.cmd={w}"));
        }
        for e in &self.env {
            config.arg(format!("--config.env={e}"));
        }
        if let Some(dir) = &self.working_dir {
            config.arg(format!("--config.workingdir={dir}"));
        }
        if let Some(user) = &self.user {
            config.arg(format!("--config.user={user}"));
        }
        run(&mut config)?;
        run(Command::new("umoci").args(["gc", "--layout"]).arg(layout))?;
        std::fs::remove_dir_all(&bundle).map_err(io("removing the build bundle"))?;
        Ok(())
    }
}

/// Builds one image per `(architecture, image)` into one layout under `work` and tags an OCI
/// image index of them (linux/<architecture> each) as `layout:tag`, as scripts/build-images.sh
/// does for the released images.
pub fn build_index(work: &Path, tag: &str, images: &[(&str, ImageBuilder)]) -> Result<PathBuf> {
    use sha2::Digest as _;
    let layout = work.join("layout");
    for (arch, image) in images {
        image
            .clone()
            .architecture(arch)
            .build_into(&layout, work, &format!("{tag}-{arch}"))?;
    }
    let index_path = layout.join("index.json");
    let read = || -> Result<Value> {
        let bytes = std::fs::read(&index_path).map_err(io("reading index.json"))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Image {
            image: layout.display().to_string(),
            reason: format!("index.json: {e}"),
        })
    };
    let mut top = read()?;
    let manifests = top["manifests"].as_array().cloned().unwrap_or_default();
    let mut entries = Vec::new();
    for (arch, _) in images {
        let name = format!("{tag}-{arch}");
        let mut entry = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str())
            .cloned()
            .ok_or_else(|| Error::Image {
                image: layout.display().to_string(),
                reason: format!("no manifest tagged {name:?}"),
            })?;
        entry
            .as_object_mut()
            .expect("a descriptor is an object")
            .remove("annotations");
        entry["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        entries.push(entry);
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .expect("JSON serialises");
    let hex = hex::encode(sha2::Sha256::digest(&index));
    std::fs::write(layout.join("blobs/sha256").join(&hex), &index)
        .map_err(io("writing the index blob"))?;
    top["manifests"]
        .as_array_mut()
        .ok_or_else(|| Error::Image {
            image: layout.display().to_string(),
            reason: "index.json has no manifests".into(),
        })?
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{hex}"),
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }));
    std::fs::write(&index_path, top.to_string()).map_err(io("writing index.json"))?;
    Ok(layout)
}

/// This machine's platform in image-index terms (GOARCH names): the node's.
pub fn node_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn write_entry(rootfs: &Path, entry: &Entry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let at = |p: &str| rootfs.join(p.trim_start_matches('/'));
    let parent = |p: &Path| -> Result<()> {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        Ok(())
    };
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(io(format!("chmod {}", p.display())))
    };
    match entry {
        Entry::File {
            path,
            contents,
            mode,
        } => {
            let p = at(path);
            parent(&p)?;
            std::fs::write(&p, contents).map_err(io(format!("writing {}", p.display())))?;
            chmod(&p, *mode)
        }
        Entry::Copy { path, from, mode } => {
            let p = at(path);
            parent(&p)?;
            std::fs::copy(from, &p).map_err(io(format!(
                "copying {} to {}",
                from.display(),
                p.display()
            )))?;
            chmod(&p, *mode)
        }
        Entry::Symlink { path, target } => {
            let p = at(path);
            parent(&p)?;
            std::os::unix::fs::symlink(target, &p)
                .map_err(io(format!("symlinking {}", p.display())))
        }
        Entry::Dir { path, mode } => {
            let p = at(path);
            std::fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
            chmod(&p, *mode)
        }
    }
}

/// Images pulled from registries into one OCI layout each, once per reference.
pub struct ImageStore {
    dir: PathBuf,
    pulled: Vec<(String, PathBuf)>,
}

impl ImageStore {
    pub fn new(dir: PathBuf) -> Self {
        ImageStore {
            dir,
            pulled: Vec::new(),
        }
    }

    /// Pulls `reference` (plain-HTTP registries allowed, as the test registry is) unless pulled
    /// already; returns its layout, tagged `img`. From an image index, the node's platform
    /// (linux/[`node_architecture`]) is pulled, as a kubelet does.
    pub fn pull(&mut self, reference: &str) -> Result<PathBuf> {
        if let Some((_, layout)) = self.pulled.iter().find(|(r, _)| r == reference) {
            return Ok(layout.clone());
        }
        let layout = self.dir.join(format!("image-{}", self.pulled.len()));
        run(Command::new("skopeo")
            .args(["copy", "--quiet", "--src-tls-verify=false"])
            .args([
                "--override-os",
                "linux",
                "--override-arch",
                node_architecture(),
            ])
            .arg(format!("docker://{reference}"))
            .arg(format!("oci:{}:img", layout.display())))
        .map_err(|e| Error::Image {
            image: reference.into(),
            reason: format!("pull failed (ErrImagePull): {e}"),
        })?;
        self.pulled.push((reference.into(), layout.clone()));
        Ok(layout)
    }
}

/// Unpacks `layout:img` into `bundle` (rootfs/ with ownership kept; we run as root).
pub fn unpack(layout: &Path, bundle: &Path) -> Result<()> {
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:img", layout.display()))
        .arg(bundle))?;
    Ok(())
}
