//! Test helper: a real registry on loopback, and images pushed to it without a Docker engine.
//!
//! [`TestRegistry`] runs Debian's `docker-registry` (distribution 2.8) on `127.0.0.1:<free port>`
//! with its storage in a temporary directory and, optionally, htpasswd Basic auth. It is stopped
//! when dropped. Images are built with `umoci` and pushed with `skopeo`, so tests exercise the
//! same manifests, indexes and auth a real registry serves. [`HangingServer`] accepts TCP
//! connections and never answers, for deadline tests.
//!
//! The tools come from `scripts/setup.sh`; when one is missing every call fails with a message
//! saying so, so a test never silently skips.

pub mod stand_in;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

/// What went wrong while preparing a test registry or image.
#[derive(thiserror::Error)]
pub enum HarnessError {
    #[error(
        "`{tool}` is not installed (Debian package `{package}`); run scripts/setup.sh to install the test tools"
    )]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("docker-registry on {addr} did not become ready within {waited:?}; its log:\n{log}")]
    NotReady {
        addr: String,
        waited: Duration,
        log: String,
    },
    #[error("unexpected OCI layout in {path}: {reason}")]
    Layout { path: String, reason: String },
}

/// Tests `.unwrap()` these: show the readable message (e.g. "run scripts/setup.sh"), not fields.
impl std::fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

type Result<T, E = HarnessError> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Fails with a clear "run scripts/setup.sh" error when a tool is not on PATH.
pub fn require_tool(tool: &'static str, package: &'static str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(HarnessError::MissingTool { tool, package })
    }
}

/// Runs a command with `input` on stdin and returns its stdout; a non-zero exit is an error that
/// shows the command and its stderr.
fn run(cmd: &mut Command, input: Option<&[u8]>) -> Result<Vec<u8>> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {shown}")))?;
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(input)
            .map_err(io(format!("writing stdin of {shown}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io(format!("waiting for {shown}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(HarnessError::Command {
            command: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A running `docker-registry` on loopback; killed and its storage deleted on drop.
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    credentials: Option<(String, String)>,
}

impl TestRegistry {
    /// Starts an anonymous registry.
    pub fn start() -> Result<Self> {
        Self::start_inner(None)
    }

    /// Starts a registry that requires htpasswd (bcrypt) Basic auth for every request.
    pub fn start_with_basic_auth(username: &str, password: &str) -> Result<Self> {
        Self::start_inner(Some((username.to_string(), password.to_string())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Result<Self> {
        require_tool("docker-registry", "docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .map_err(io("creating the registry's temporary directory"))?;
        let auth_section = match &credentials {
            None => String::new(),
            Some((user, password)) => {
                require_tool("htpasswd", "apache2-utils")?;
                let path = dir.path().join("htpasswd");
                // -i: the password comes on stdin, not argv.
                let line = run(
                    Command::new("htpasswd").args(["-B", "-i", "-n", user]),
                    Some(password.as_bytes()),
                )?;
                std::fs::write(&path, line).map_err(io("writing htpasswd"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    path.display()
                )
            }
        };
        // A free port can be taken between probing and binding; retry a few times.
        let mut last_err = None;
        for _ in 0..3 {
            let addr = free_loopback_addr()?;
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth_section}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).map_err(io("writing registry config"))?;
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).map_err(io("creating registry log"))?;
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(io("cloning log handle"))?)
                .stderr(log)
                .spawn()
                .map_err(io("starting docker-registry"))?;
            match wait_ready(&mut child, addr, Duration::from_secs(15)) {
                Ok(()) => {
                    return Ok(TestRegistry {
                        child,
                        addr,
                        dir,
                        credentials,
                    });
                }
                Err(waited) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = Some(HarnessError::NotReady {
                        addr: addr.to_string(),
                        waited,
                        log: std::fs::read_to_string(&log_path).unwrap_or_default(),
                    });
                }
            }
        }
        Err(last_err.expect("at least one attempt was made"))
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT/<repository_and_tag>`.
    pub fn image(&self, repository_and_tag: &str) -> String {
        format!("{}/{repository_and_tag}", self.addr)
    }

    /// The registry's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Builds a single-platform image and pushes it as `repository:tag`; returns the manifest
    /// digest (`sha256:...`).
    pub fn push(&self, image: &ImageSpec, repository_and_tag: &str) -> Result<String> {
        let layout = OciLayout::new(&self.dir)?;
        layout.build(image, "img")?;
        self.copy(&layout, "img", repository_and_tag, false)
    }

    /// Builds one image per entry and pushes an OCI image index listing them with their
    /// platforms as `repository:tag`; returns the index digest.
    pub fn push_index(&self, images: &[ImageSpec], repository_and_tag: &str) -> Result<String> {
        let layout = OciLayout::new(&self.dir)?;
        let mut entries = Vec::new();
        for (i, image) in images.iter().enumerate() {
            let tag = format!("img{i}");
            layout.build(image, &tag)?;
            let mut descriptor = layout.descriptor(&tag)?;
            let mut platform =
                serde_json::json!({"os": image.os, "architecture": image.architecture});
            if let Some(variant) = &image.variant {
                platform["variant"] = variant.clone().into();
            }
            descriptor
                .as_object_mut()
                .expect("descriptor is an object")
                .remove("annotations");
            descriptor["platform"] = platform;
            entries.push(descriptor);
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        layout.add_blob_tag(
            &serde_json::to_vec(&index).expect("JSON serialises"),
            "application/vnd.oci.image.index.v1+json",
            "index",
        )?;
        self.copy(&layout, "index", repository_and_tag, true)
    }

    fn copy(
        &self,
        layout: &OciLayout,
        tag: &str,
        repository_and_tag: &str,
        all: bool,
    ) -> Result<String> {
        require_tool("skopeo", "skopeo")?;
        let digest_file = layout.dir.path().join("digest");
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(&digest_file);
        if all {
            cmd.arg("--all");
        }
        if let Some((user, password)) = &self.credentials {
            // An auth file keeps the password out of argv.
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let file = layout.dir.path().join("auth.json");
            let json = serde_json::json!({"auths": {self.host(): {"auth": auth}}});
            std::fs::write(&file, json.to_string()).map_err(io("writing skopeo auth file"))?;
            cmd.arg("--dest-authfile").arg(&file);
        }
        cmd.arg(format!("oci:{}:{tag}", layout.path().display()))
            .arg(format!("docker://{}", self.image(repository_and_tag)));
        run(&mut cmd, None)?;
        let digest =
            std::fs::read_to_string(&digest_file).map_err(io("reading skopeo digest file"))?;
        Ok(digest.trim().to_string())
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image to build: its config's ENTRYPOINT/CMD and platform, and optional rootfs files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub os: String,
    pub architecture: String,
    /// Only recorded in an index entry's platform (umoci 0.4 cannot set it in the config).
    pub variant: Option<String>,
    /// (path inside the image, contents): added as one layer; empty means no layers at all.
    pub files: Vec<(String, Vec<u8>)>,
}

impl ImageSpec {
    /// A linux image for `architecture` with no ENTRYPOINT, CMD or layers.
    pub fn linux(architecture: &str) -> Self {
        ImageSpec {
            entrypoint: None,
            cmd: None,
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
            files: Vec::new(),
        }
    }

    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn variant(mut self, variant: &str) -> Self {
        self.variant = Some(variant.into());
        self
    }

    pub fn file(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.push((path.into(), contents.to_vec()));
        self
    }
}

/// A scratch OCI layout directory that umoci writes images into.
struct OciLayout {
    dir: tempfile::TempDir,
}

impl OciLayout {
    fn new(parent: &tempfile::TempDir) -> Result<Self> {
        require_tool("umoci", "umoci")?;
        let dir = tempfile::Builder::new()
            .prefix("oci-")
            .tempdir_in(parent.path())
            .map_err(io("creating OCI layout directory"))?;
        let layout = OciLayout { dir };
        run(
            Command::new("umoci")
                .args(["init", "--layout"])
                .arg(layout.path()),
            None,
        )?;
        Ok(layout)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn image_arg(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path().display())
    }

    fn build(&self, image: &ImageSpec, tag: &str) -> Result<()> {
        let image_arg = self.image_arg(tag);
        run(
            Command::new("umoci").args(["new", "--image", &image_arg]),
            None,
        )?;
        if !image.files.is_empty() {
            let rootfs = self.dir.path().join(format!("rootfs-{tag}"));
            for (path, contents) in &image.files {
                let target = rootfs.join(path.trim_start_matches('/'));
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io("creating rootfs directory"))?;
                }
                std::fs::write(&target, contents).map_err(io("writing rootfs file"))?;
            }
            run(
                Command::new("umoci")
                    .args(["insert", "--image", &image_arg])
                    .arg(&rootfs)
                    .arg("/"),
                None,
            )?;
        }
        let mut cmd = Command::new("umoci");
        cmd.args(["config", "--image", &image_arg]).args([
            "--os",
            &image.os,
            "--architecture",
            &image.architecture,
        ]);
        for arg in image.entrypoint.iter().flatten() {
            cmd.arg(format!("--config.entrypoint={arg}"));
        }
        for arg in image.cmd.iter().flatten() {
            cmd.arg(format!("--config.cmd={arg}"));
        }
        run(&mut cmd, None)?;
        Ok(())
    }

    fn index_json(&self) -> Result<serde_json::Value> {
        let path = self.path().join("index.json");
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        serde_json::from_slice(&bytes).map_err(|e| HarnessError::Layout {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The descriptor index.json holds for `tag`.
    fn descriptor(&self, tag: &str) -> Result<serde_json::Value> {
        let index = self.index_json()?;
        index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .cloned()
            .ok_or_else(|| HarnessError::Layout {
                path: self.path().display().to_string(),
                reason: format!("no manifest tagged {tag:?} in index.json"),
            })
    }

    /// Stores `blob` and tags it in index.json.
    fn add_blob_tag(&self, blob: &[u8], media_type: &str, tag: &str) -> Result<()> {
        let hex = hex::encode(sha2::Sha256::digest(blob));
        let blob_path = self.path().join("blobs/sha256").join(&hex);
        std::fs::write(&blob_path, blob).map_err(io("writing index blob"))?;
        let mut index = self.index_json()?;
        let entry = serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{hex}"),
            "size": blob.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        });
        index["manifests"]
            .as_array_mut()
            .ok_or_else(|| HarnessError::Layout {
                path: self.path().display().to_string(),
                reason: "index.json has no manifests array".into(),
            })?
            .push(entry);
        let path = self.path().join("index.json");
        std::fs::write(&path, index.to_string()).map_err(io("writing index.json"))?;
        Ok(())
    }
}

/// A loopback port that was free a moment ago.
pub fn free_loopback_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a probe socket"))?;
    listener.local_addr().map_err(io("reading probe address"))
}

/// The status code of a plain `GET path` to `addr`, or None when it cannot be had.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Accepts TCP connections on loopback and never answers them, until dropped.
pub struct HangingServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HangingServer {
    pub fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding hanging server"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("making hanging server non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading hanging server address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(HangingServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for HangingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `GET /v2/` until the registry answers 200 or 401; Err(time waited) when it exits or
/// the limit passes.
fn wait_ready(child: &mut Child, addr: SocketAddr, limit: Duration) -> Result<(), Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if let Some(200 | 401) = http_status(addr, "/v2/") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(start.elapsed())
}
