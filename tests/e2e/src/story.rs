//! The whole story on one machine: a local Key Vault with the team's secrets, a registry with
//! the unmodified app image and the injector image, the webhook admitting the Deployment's pod,
//! the workload identity webhook's mutation, and the kubelet stand-in running the admitted pod.
//! Shared by the end-to-end tests and the demo.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_keyvault::{FakeKeyVault, Options, Seed};
use registry_harness::TestRegistry;
use serde_json::Value;

use crate::app::app_image;
use crate::bins::{static_injector_for, webhook_binary, workspace_root};
use crate::cluster::{
    Verdict, WI_CLIENT_ID_ANNOTATION, admission_review, apply, persist, pod_from_deployment,
    read_verdict, workload_identity,
};
use crate::error::{Error, Result, io};
use crate::image::{ImageBuilder, build_index, push_layout};
use crate::runner::{NodeEnvironment, PodRun, PodRunner};
use crate::webhook::{WebhookOptions, WebhookServer};

/// The registry host written in the fixture manifest, replaced by the test registry's.
pub const FIXTURE_REGISTRY: &str = "127.0.0.1:5000";
/// The app image's repository and tag in the manifest.
pub const APP_REPOSITORY: &str = "shop/web:1.0";
/// The vault the manifest's pods read.
pub const VAULT: &str = "myvault";
/// The client id the service account's annotation names.
pub const CLIENT_ID: &str = "app-web";
/// Another team's service account and identity: known to the vault, allowed only `unrelated`.
pub const OTHER_SERVICE_ACCOUNT: &str = "other-team";
pub const OTHER_CLIENT_ID: &str = "app-other-team";
/// Where the node mounts the local vault's CA in every container.
pub const CA_PATH_IN_CONTAINER: &str = "/etc/akv-e2e/vault-ca.pem";
/// The local vault's address in the fixture (`AKV_ENV_RESOLVE`), replaced by the real one.
pub const FIXTURE_VAULT_ADDR: &str = "127.0.0.1:8443";

/// The fixture manifest: a ServiceAccount and a Deployment, as the team writes them.
pub fn fixture_manifest() -> String {
    include_str!("../fixtures/deployment.yaml").to_string()
}

/// The secret values of one run: random, so nothing could pass by having them hard-coded, and
/// distinctive, so a search for them is meaningful.
#[derive(Clone)]
pub struct Values {
    pub db_password: String,
    pub api_token: String,
    /// The whole JSON secret `api-config` (API_TOKEN is one field of it).
    pub api_config: String,
}

impl Values {
    fn random() -> Result<Values> {
        let db_password = format!("pw-{}", random_hex(12)?);
        let api_token = format!("tok-{}", random_hex(12)?);
        let api_config = format!(r#"{{"user":"svc-web","token":"{api_token}"}}"#);
        Ok(Values {
            db_password,
            api_token,
            api_config,
        })
    }

    /// Every value that must stay out of specs, logs and files.
    pub fn all(&self) -> Vec<&str> {
        vec![&self.db_password, &self.api_token, &self.api_config]
    }
}

/// Values are never printed whole.
impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Values { .. }")
    }
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io("reading /dev/urandom"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// How long each phase took, for the demo and the report.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub steps: Vec<(String, Duration)>,
}

impl Timings {
    fn record(&mut self, step: &str, since: Instant) {
        self.steps.push((step.to_string(), since.elapsed()));
    }
}

/// Where the injector image comes from.
enum InjectorSource {
    /// A prebuilt OCI layout (`AKV_ENV_E2E_INJECTOR_LAYOUT=oci:DIR:TAG`, e.g. the index
    /// scripts/build-images.sh writes).
    Layout { layout: PathBuf, tag: String },
    /// The static amd64 and arm64 binaries, assembled here into a multi-platform image index
    /// as scripts/build-images.sh does: the node pulls its platform through the index.
    Binaries { amd64: PathBuf, arm64: PathBuf },
}

impl InjectorSource {
    fn from_env() -> Result<Self> {
        match std::env::var("AKV_ENV_E2E_INJECTOR_LAYOUT") {
            Ok(reference) => {
                let (layout, tag) = reference
                    .strip_prefix("oci:")
                    .and_then(|r| r.rsplit_once(':'))
                    .ok_or_else(|| {
                        Error::Other(format!(
                            "AKV_ENV_E2E_INJECTOR_LAYOUT={reference:?}: expected oci:DIR:TAG"
                        ))
                    })?;
                Ok(InjectorSource::Layout {
                    layout: layout.into(),
                    tag: tag.into(),
                })
            }
            Err(_) => Ok(InjectorSource::Binaries {
                amd64: static_injector_for("amd64")?,
                arm64: static_injector_for("arm64")?,
            }),
        }
    }
}

/// Everything running for one story.
pub struct Story {
    pub vault: FakeKeyVault,
    pub registry: TestRegistry,
    pub webhook: WebhookServer,
    pub runner: PodRunner,
    pub values: Values,
    /// The federated token the service account's projected token holds.
    pub federated_token: String,
    pub app_image: String,
    pub injector_image: String,
    /// The webhook binary (also the `inject` CLI).
    pub webhook_bin: PathBuf,
    pub timings: Timings,
    dir: tempfile::TempDir,
}

/// One admission, as the API server saw it.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The Pod the API server sent (before any webhook).
    pub pod: Value,
    /// The review posted and the answer's JSON.
    pub review: Value,
    pub answer: Value,
    pub verdict: Verdict,
    /// After our patch, the workload identity webhook, our reinvocation, and persisting
    /// (name, uid); `None` when refused.
    pub admitted: Option<Value>,
    /// The pod right after our webhook's patch (before the workload identity webhook).
    pub patched: Option<Value>,
}

impl Story {
    /// Starts everything; builds the webhook and the static injector first (no-ops when fresh).
    pub async fn start() -> Result<Story> {
        Story::start_with_webhook_args(&[]).await
    }

    /// [`Self::start`] with more webhook `serve` flags (as a chart value would add them).
    pub async fn start_with_webhook_args(webhook_args: &[&str]) -> Result<Story> {
        crate::runner::require_root()?;
        crate::image::require_tools()?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut timings = Timings::default();
        let dir = tempfile::Builder::new()
            .prefix("akv-e2e-")
            .tempdir()
            .map_err(io("creating the story's directory"))?;

        let t = Instant::now();
        let webhook_bin = webhook_binary()?;
        let injector = InjectorSource::from_env()?;
        timings.record("build binaries (cargo, no-op when fresh)", t);

        let t = Instant::now();
        let values = Values::random()?;
        let federated_token = format!("eyJhbGciOiJSUzI1NiJ9.e2e-{}.sig", random_hex(8)?);
        let other_token = format!("eyJhbGciOiJSUzI1NiJ9.other-{}.sig", random_hex(8)?);
        let seed = Seed::from_yaml(&seed_yaml(&values, &federated_token, &other_token))
            .map_err(|e| Error::Other(format!("the story's seed: {e}")))?;
        let vault = FakeKeyVault::start(Options {
            seed,
            ..Options::default()
        })
        .await
        .map_err(|e| Error::Other(format!("starting the local Key Vault: {e:#}")))?;
        timings.record("start the local Key Vault", t);

        let t = Instant::now();
        let registry = TestRegistry::start()?;
        timings.record("start the registry", t);

        let t = Instant::now();
        let app_layout = app_image()?.build(&dir.path().join("build-app"), "1.0")?;
        push_layout(&app_layout, "1.0", &registry.host(), APP_REPOSITORY)?;
        match &injector {
            InjectorSource::Layout { layout, tag } => {
                push_layout(layout, tag, &registry.host(), "akv-env:e2e")?;
            }
            InjectorSource::Binaries { amd64, arm64 } => {
                // As scripts/build-images.sh assembles it: FROM scratch, /akv-env, user 65532,
                // one image per platform under one index.
                let image = |bin: &Path| {
                    ImageBuilder::default()
                        .copy("/akv-env", bin, 0o755)
                        .entrypoint(&["/akv-env"])
                        .user("65532:65532")
                        .working_dir("/")
                };
                let layout = build_index(
                    &dir.path().join("build-injector"),
                    "e2e",
                    &[("amd64", image(amd64)), ("arm64", image(arm64))],
                )?;
                push_layout(&layout, "e2e", &registry.host(), "akv-env:e2e")?;
            }
        }
        let app_image = registry.image(APP_REPOSITORY);
        let injector_image = registry.image("akv-env:e2e");
        timings.record("build and push the app and injector images", t);

        let t = Instant::now();
        let webhook = WebhookServer::start(&WebhookOptions {
            binary: webhook_bin.clone(),
            injector_image: injector_image.clone(),
            default_vault: None,
            insecure_registries: vec![registry.host()],
            extra_args: webhook_args.iter().map(|a| a.to_string()).collect(),
        })
        .await?;
        timings.record("start the webhook", t);

        let ca_file = dir.path().join("vault-ca.pem");
        std::fs::write(&ca_file, vault.ca_pem()).map_err(io("writing the vault CA"))?;
        let node = NodeEnvironment {
            // The CA file the pod's AKV_ENV_CA_FILE names (as a mounted volume would provide
            // it), and the injector at its most verbose, for the leak checks. Where tokens go
            // is in the pod spec (the fixture's literal values), never in the node's env.
            env: vec![
                ("AKV_ENV_LOG".into(), "debug".into()),
                ("AKV_ENV_TIMEOUT".into(), "30s".into()),
            ],
            files: vec![(ca_file, CA_PATH_IN_CONTAINER.into())],
            service_account_tokens: [
                ("web".to_string(), federated_token.clone()),
                (OTHER_SERVICE_ACCOUNT.to_string(), other_token),
            ]
            .into(),
        };
        let runner = PodRunner::new(&dir.path().join("node"), node)?;
        Ok(Story {
            vault,
            registry,
            webhook,
            runner,
            values,
            federated_token,
            app_image,
            injector_image,
            webhook_bin,
            timings,
            dir,
        })
    }

    /// The story's directory: node, webhook certificates and log, image builds.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The fixture manifest with the test registry's address.
    pub fn manifest(&self) -> String {
        fixture_manifest()
            .replace(FIXTURE_REGISTRY, &self.registry.host())
            .replace(FIXTURE_VAULT_ADDR, &self.vault.https_addr().to_string())
    }

    /// (ServiceAccount, Deployment) from [`Self::manifest`].
    /// The injector flags the webhook derives from the fixture's literal `AKV_ENV_CA_FILE`,
    /// `AKV_ENV_RESOLVE` and `AZURE_AUTHORITY_HOST` values (issue 13: only the admitted spec says
    /// where the pod's token goes), in the order the webhook writes them before `--`.
    pub fn trust_flags(&self) -> Vec<String> {
        let addr = self.vault.https_addr();
        vec![
            "--ca-file=/etc/akv-e2e/vault-ca.pem".to_owned(),
            format!("--resolve=myvault.vault.azure.net={addr},login.test={addr}"),
            "--authority-host=https://login.test".to_owned(),
        ]
    }

    pub fn manifest_objects(&self) -> Result<(Value, Value)> {
        parse_manifest(&self.manifest())
    }

    /// Admits the pod of `deployment` whose service account is `service_account`, as the API
    /// server would: our webhook, then the workload identity webhook, then our webhook again
    /// (reinvocation), which must change nothing.
    pub async fn admit(&self, service_account: &Value, deployment: &Value) -> Result<Admission> {
        let pod = pod_from_deployment(deployment).map_err(|e| Error::Other(e.to_string()))?;
        let uid = format!("review-{}", random_hex(8)?);
        let review = admission_review(&pod, &uid, false);
        let answer = self.webhook.review(&review).await?;
        let verdict = read_verdict(&answer, &uid).map_err(|e| Error::Other(e.to_string()))?;
        let mut admission = Admission {
            pod: pod.clone(),
            review,
            answer,
            verdict: verdict.clone(),
            admitted: None,
            patched: None,
        };
        if !verdict.allowed {
            return Ok(admission);
        }
        let patched = match &verdict.patch {
            Some(p) => apply(&pod, p).map_err(|e| Error::Other(e.to_string()))?,
            None => pod.clone(),
        };
        admission.patched = Some(patched.clone());
        let mut after = patched;
        if let Some(client_id) =
            service_account["metadata"]["annotations"][WI_CLIENT_ID_ANNOTATION].as_str()
        {
            workload_identity(
                &mut after,
                client_id,
                self.vault.tenant(),
                "https://login.microsoftonline.com/",
            );
        }
        // reinvocationPolicy: IfNeeded — the pod changed after us, so we are asked again.
        let uid2 = format!("review-{}", random_hex(8)?);
        let again = read_verdict(
            &self
                .webhook
                .review(&admission_review(&after, &uid2, false))
                .await?,
            &uid2,
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        if !again.allowed {
            return Err(Error::Other(format!(
                "reinvocation refused the mutated pod: {}",
                again.message.unwrap_or_default()
            )));
        }
        if let Some(p) = &again.patch {
            let reapplied = apply(&after, p).map_err(|e| Error::Other(e.to_string()))?;
            if reapplied != after {
                return Err(Error::Other(format!(
                    "reinvocation changed the already mutated pod (not idempotent): {}",
                    serde_json::to_string(p).unwrap_or_default()
                )));
            }
        }
        persist(&mut after, &uid);
        admission.admitted = Some(after);
        Ok(admission)
    }

    /// Runs an admitted pod on the node.
    pub fn run(&mut self, admitted: &Value) -> Result<PodRun> {
        let pod = serde_json::from_value(admitted.clone())
            .map_err(|e| Error::Other(format!("the admitted pod is not a valid Pod: {e}")))?;
        self.runner.run_pod(&pod)
    }

    /// Stops everything but keeps the story's directory; returns where it is.
    pub fn keep(self) -> PathBuf {
        let Story { dir, .. } = self;
        dir.keep()
    }

    /// The node directory (pods, images, runtime state).
    pub fn node_dir(&self) -> PathBuf {
        self.runner.dir().to_path_buf()
    }
}

/// Splits a multi-document manifest into its ServiceAccount and Deployment.
pub fn parse_manifest(text: &str) -> Result<(Value, Value)> {
    use serde::Deserialize as _;
    let mut sa = None;
    let mut deployment = None;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).map_err(|e| Error::Other(format!("manifest: {e}")))?;
        match v["kind"].as_str() {
            Some("ServiceAccount") => sa = Some(v),
            Some("Deployment") => deployment = Some(v),
            _ => {}
        }
    }
    match (sa, deployment) {
        (Some(sa), Some(d)) => Ok((sa, d)),
        _ => Err(Error::Other(
            "manifest: needs a ServiceAccount and a Deployment".into(),
        )),
    }
}

/// The local vault's content: the team's secrets, readable by the pod's identity only.
fn seed_yaml(values: &Values, federated_token: &str, other_token: &str) -> String {
    let json_string = |s: &str| serde_json::to_string(s).expect("JSON string");
    format!(
        r#"
identities:
  - {{ client_id: {CLIENT_ID}, federated_token: {token} }}
  - {{ client_id: {OTHER_CLIENT_ID}, federated_token: {other} }}
vaults:
  {VAULT}:
    access:
      {CLIENT_ID}: ["*"]
      {OTHER_CLIENT_ID}: [unrelated]
    secrets:
      db-password: {{ value: {db} }}
      api-config: {{ value: {api}, content_type: application/json }}
      unrelated: {{ value: not-for-web }}
"#,
        token = json_string(federated_token),
        other = json_string(other_token),
        db = json_string(&values.db_password),
        api = json_string(&values.api_config),
    )
}

/// The workspace root, for the demo's messages.
pub fn root() -> PathBuf {
    workspace_root()
}
