//! The end-to-end demo: a Deployment as its team writes it is admitted by the real webhook, its
//! pod is run by the kubelet stand-in with runc, and the unmodified program prints its Key Vault
//! secrets (masked here). Then the demo checks where the values are not: spec, logs, disk.

use std::process::ExitCode;
use std::time::Instant;

use akv_env_e2e::scan::LogCapture;
use akv_env_e2e::story::Story;
use akv_test_support::leak::{find_in_bytes, find_in_dir};
use anyhow::{Context as _, Result};
use clap::Parser;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "akv-env-demo",
    about = "Run the akv-env story end to end on this machine (root: pods run with runc)",
    long_about = "Starts a local Key Vault, a registry holding an unmodified app image and the \
injector image, and the webhook; admits a Deployment's pod as the API server would, runs it as \
a kubelet would (runc), shows what the program printed (values masked), and checks that no \
value is in the pod spec, any log, or any file on the node."
)]
struct Cli {
    /// How many leading characters of each secret value to show.
    #[arg(long, env = "AKV_ENV_DEMO_SHOW_CHARS", default_value_t = 4)]
    show_chars: usize,

    /// Keep the demo's directory (node, pods, webhook log) and print where it is.
    #[arg(long, env = "AKV_ENV_DEMO_KEEP")]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("akv-env-demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(&cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("akv-env-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn section(title: &str) {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() {
        println!("\n\x1b[1m== {title} ==\x1b[0m");
    } else {
        println!("\n== {title} ==");
    }
}

/// `abcd…(24 chars)`: enough to recognise, not enough to use.
fn mask(value: &str, show: usize) -> String {
    let shown: String = value.chars().take(show).collect();
    format!("{shown}…({} chars)", value.chars().count())
}

/// Env var names whose value in the manifest is a placeholder.
fn placeholder_vars(deployment: &Value) -> Vec<String> {
    let mut names = Vec::new();
    for c in deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for e in c["env"].as_array().into_iter().flatten() {
            let value = e["value"].as_str().unwrap_or("");
            if value
                .split('?')
                .next()
                .unwrap_or("")
                .ends_with("@azurekeyvault")
                && let Some(n) = e["name"].as_str()
            {
                names.push(n.to_string());
            }
        }
    }
    names
}

async fn demo(cli: &Cli) -> Result<bool> {
    let logs = LogCapture::install();
    let started = Instant::now();
    println!(
        "Starting a local Key Vault, a registry (Debian docker-registry), the webhook, and a node (runc)…"
    );
    let mut story = Story::start().await.context("setting up the story")?;
    let dir = story.dir().to_path_buf();

    section("1. The manifest, as the team writes it");
    print!("{}", story.manifest());
    let (sa, deployment) = story.manifest_objects()?;

    let t = Instant::now();
    let admission = story
        .admit(&sa, &deployment)
        .await
        .context("admitting the pod")?;
    let admit_took = t.elapsed();
    if !admission.verdict.allowed {
        section("The webhook refused the pod");
        println!("{}", admission.verdict.message.unwrap_or_default());
        return Ok(false);
    }
    section("2. What the webhook changed (the pod as the API server sent it -> as admitted)");
    let before = serde_yaml_ng::to_string(&admission.pod)?;
    let after = serde_yaml_ng::to_string(admission.patched.as_ref().context("no patched pod")?)?;
    let diff = similar::TextDiff::from_lines(&before, &after);
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(2)
            .header("pod (from the ReplicaSet)", "pod (after akv-env-webhook)")
    );
    for w in &admission.verdict.warnings {
        println!("warning: {w}");
    }
    println!(
        "(then the azure-workload-identity webhook adds AZURE_* env vars and the projected token file)"
    );

    let admitted = admission.admitted.clone().context("no admitted pod")?;
    let t = Instant::now();
    let run = story.run(&admitted).context("running the pod")?;
    let run_took = t.elapsed();
    section("3. The pod runs: init container, then the unmodified program");
    let secret_vars = placeholder_vars(&deployment);
    for c in run.all() {
        println!(
            "--- container {} (exit {}): {}",
            c.name,
            c.exit_code,
            c.args.join(" ")
        );
        for line in c.stdout.lines() {
            let shown = match line.strip_prefix("env ").and_then(|l| l.split_once('=')) {
                Some((name, value)) if secret_vars.iter().any(|v| v == name) => {
                    format!("env {name}={}", mask(value, cli.show_chars))
                }
                _ => line.to_string(),
            };
            println!("  {shown}");
        }
        // The injector's own messages (its failures, if any); its debug log is checked below.
        for line in c
            .stderr
            .lines()
            .filter(|l| l.starts_with("akv-env: ") || l.contains("runc"))
        {
            println!("  stderr: {line}");
        }
    }
    if !run.succeeded() {
        section("The pod failed");
        return Ok(false);
    }
    let reads: Vec<String> = story
        .vault
        .accesses()
        .iter()
        .map(|a| {
            format!(
                "{} read {}/{} -> {}",
                a.identity.as_deref().unwrap_or("(no token)"),
                a.vault,
                a.name,
                a.status
            )
        })
        .collect();
    println!("Key Vault's access record (the pod's own identity, through workload identity):");
    for r in reads {
        println!("  {r}");
    }

    section("4. Where the values are not (checked now, not claimed)");
    let values = story.values.all();
    let mut ok = true;
    let mut check = |place: &str, bytes: &[u8]| {
        let found = find_in_bytes(place, bytes, &values);
        let mark = if found.is_empty() { "ok  " } else { "LEAK" };
        println!("  {mark} {place} ({} bytes)", bytes.len());
        ok &= found.is_empty();
    };
    check(
        "pod spec sent to admission",
        admission.pod.to_string().as_bytes(),
    );
    check(
        "AdmissionReview and the webhook's answer",
        format!("{}{}", admission.review, admission.answer).as_bytes(),
    );
    check(
        "pod spec as admitted (what etcd would store)",
        admitted.to_string().as_bytes(),
    );
    check("webhook log", story.webhook.log().as_bytes());
    check("registry log", story.registry.log().as_bytes());
    for c in run.all() {
        check(
            &format!("stderr of {} (akv-env's log at debug)", c.name),
            c.stderr.as_bytes(),
        );
    }
    check("this demo's own log", logs.text().as_bytes());
    let (disk, files) = find_in_dir(&dir, &values)?;
    let mark = if disk.is_empty() { "ok  " } else { "LEAK" };
    println!(
        "  {mark} every file on the node: {files} files under {} (images, pod volumes incl. the shared emptyDir, root filesystems, runtime configs, runc state)",
        dir.display()
    );
    for leak in &disk {
        println!("       value #{} in {}", leak.value_index, leak.place);
    }
    ok &= disk.is_empty();

    section("Timings");
    let steps = story.timings.steps.iter().cloned().chain([
        (
            "admission: our webhook, workload identity, reinvocation".to_string(),
            admit_took,
        ),
        (
            "run the pod: pull, unpack, init container, program".to_string(),
            run_took,
        ),
    ]);
    for (step, took) in steps {
        println!("  {:>7.2}s  {step}", took.as_secs_f64());
    }
    println!("  {:>7.2}s  total", started.elapsed().as_secs_f64());
    if cli.keep {
        println!("kept {}", story.keep().display());
    }
    Ok(ok)
}
