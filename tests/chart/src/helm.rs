//! The real `helm` and `kubernetes-validate`, as `scripts/tools.sh` installs them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Kubernetes version the chart is rendered and validated for.
pub const KUBE_VERSION: &str = "1.34.0";

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} not found at {path}: run scripts/setup.sh (or scripts/tools.sh) first")]
    Missing { tool: &'static str, path: PathBuf },
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("AKV_ENV_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache"))
}

fn existing(tool: &'static str, path: PathBuf) -> Result<PathBuf, ToolError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ToolError::Missing { tool, path })
    }
}

fn run(tool: &'static str, mut command: Command, stdin: Option<&str>) -> Result<String, ToolError> {
    let shown = format!(
        "{} {}",
        Path::new(command.get_program())
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
        command
            .get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|source| ToolError::Spawn { tool, source })?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .map_err(|source| ToolError::Spawn { tool, source })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| ToolError::Spawn { tool, source })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(ToolError::Failed {
            command: shown,
            status: output.status,
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        })
    }
}

/// `helm` on the chart `charts/akv-env`.
pub struct Helm {
    bin: PathBuf,
    chart: PathBuf,
}

impl Helm {
    /// Finds helm in `$AKV_ENV_HELM` or `.cache/tools/bin/helm`.
    pub fn locate() -> Result<Helm, ToolError> {
        let bin = match std::env::var_os("AKV_ENV_HELM") {
            Some(path) => PathBuf::from(path),
            None => cache_dir().join("tools/bin/helm"),
        };
        Ok(Helm {
            bin: existing("helm", bin)?,
            chart: workspace_root().join("charts/akv-env"),
        })
    }

    fn command(&self, verb: &str, sets: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg(verb);
        // No user config or repositories leak into the tests.
        let home = std::env::temp_dir().join("akv-env-chart-tests-helm");
        command
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"));
        command.args(["--kube-version", KUBE_VERSION]);
        for set in sets {
            command.args(["--set", set]);
        }
        command
    }

    /// `helm lint --strict` with `--set` values.
    pub fn lint(&self, sets: &[&str]) -> Result<String, ToolError> {
        let mut command = self.command("lint", sets);
        command.arg("--strict").arg(&self.chart);
        run("helm", command, None)
    }

    /// `helm template RELEASE CHART -n NAMESPACE` with `--set` values: the rendered YAML.
    pub fn template(
        &self,
        release: &str,
        namespace: &str,
        sets: &[&str],
    ) -> Result<String, ToolError> {
        let mut command = self.command("template", sets);
        command.args([
            release,
            &self.chart.to_string_lossy(),
            "--namespace",
            namespace,
        ]);
        run("helm", command, None)
    }
}

/// `kubernetes-validate --strict` on rendered YAML: unknown fields and wrong types fail. Kinds it
/// has no schema for (cert-manager, Prometheus Operator) are reported as warnings only.
pub fn kubernetes_validate(yaml: &str) -> Result<String, ToolError> {
    let bin = existing(
        "kubernetes-validate",
        cache_dir().join("venv/bin/kubernetes-validate"),
    )?;
    let file =
        std::env::temp_dir().join(format!("rendered-{}-{}.yaml", std::process::id(), unique()));
    std::fs::write(&file, yaml).map_err(|source| ToolError::Spawn {
        tool: "kubernetes-validate",
        source,
    })?;
    let version = KUBE_VERSION
        .rsplit_once('.')
        .map(|(minor, _)| format!("{minor}.0"))
        .unwrap_or_default();
    let mut command = Command::new(bin);
    command.args(["--strict", "-k", &version]).arg(&file);
    let result = run("kubernetes-validate", command, None);
    let _ = std::fs::remove_file(&file);
    result
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
