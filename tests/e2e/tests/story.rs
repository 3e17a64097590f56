//! The whole story without a cluster: the real webhook admits a real Deployment's pod, the
//! kubelet stand-in runs it with runc from a real registry, and the unmodified program gets its
//! Key Vault secrets from the local vault as the pod's own identity.
//! Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use std::time::Duration;

use akv_env_e2e::PodRun;
use akv_env_e2e::scan::LogCapture;
use akv_env_e2e::story::{CLIENT_ID, OTHER_CLIENT_ID, OTHER_SERVICE_ACCOUNT, Story, VAULT};
use akv_test_support::leak::{find_in_bytes, find_in_dir};
use fake_keyvault::{GrantMethod, ObjectKind, Throttle};
use serde_json::{Value, json};

/// The app image prints `env NAME=value` for each variable it was given.
fn assert_program_saw(run: &PodRun, name: &str, value: &str) {
    let line = format!("env {name}={value}\n");
    assert!(
        run.expect_container("web").stdout.contains(&line),
        "{name} not seen by the program:\n{run}"
    );
}

/// The `web` container failed (exit 1) before its program printed anything.
fn program_never_ran(run: &PodRun) -> &akv_env_e2e::ContainerRun {
    let app = run.expect_container("web");
    assert_eq!(app.exit_code, 1, "{run}");
    assert!(
        !app.stdout.contains("app:"),
        "the program must not start: {run}"
    );
    app
}

/// Adds an env var to the Deployment's first container.
fn add_env(deployment: &mut Value, name: &str, value: &str) {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": name, "value": value }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmodified_program_gets_its_secrets_and_they_are_nowhere_else() {
    let logs = LogCapture::install();
    let mut story = Story::start().await.unwrap();
    let (sa, deployment) = story.manifest_objects().unwrap();
    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(
        admission.verdict.allowed,
        "refused: {:?}",
        admission.verdict.message
    );
    let admitted = admission.admitted.clone().unwrap();

    // The webhook wrapped the container around the image's own ENTRYPOINT + CMD.
    let web = &admitted["spec"]["containers"][0];
    assert_eq!(web["command"], json!(["/akv-env/bin/akv-env"]));
    let mut wrapped = story.trust_flags();
    wrapped.extend(["--", "/app/run.sh", "serve", "--port=8080"].map(String::from));
    assert_eq!(web["args"], json!(wrapped));
    assert_eq!(
        admitted["spec"]["initContainers"][0]["image"],
        json!(story.injector_image)
    );

    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    // The injector image is a multi-platform index, as released; the node pulled its own
    // platform through it.
    let index = akv_env_e2e::image::inspect_raw(&story.injector_image).unwrap();
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]).replace('"', "")
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    let app = run.expect_container("web");
    let v = story.values.clone();
    // The program (from the unmodified image) sees the values, is PID 1 (exec, not a child) and
    // runs with the argv of its image.
    assert_program_saw(&run, "DB_PASSWORD", &v.db_password);
    assert_program_saw(&run, "API_TOKEN", &v.api_token);
    assert!(app.stdout.contains("env LOG_LEVEL=info\n"), "{run}");
    assert!(
        app.stdout.contains("app: pid=1 uid=1000 gid=1000 cwd=/app"),
        "{run}"
    );
    assert!(
        app.stdout.contains("app: args: [serve] [--port=8080]"),
        "{run}"
    );

    // The vault saw the pod's own identity, through workload identity, and nothing else.
    let accesses = story.vault.accesses();
    let reads: Vec<_> = accesses.iter().filter(|a| a.status == 200).collect();
    let mut names: Vec<&str> = reads.iter().map(|a| a.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["api-config", "db-password"],
        "one read per object: {accesses:?}"
    );
    for a in &reads {
        assert_eq!(
            (a.identity.as_deref(), a.vault.as_str(), a.kind),
            (Some(CLIENT_ID), VAULT, ObjectKind::Secret)
        );
    }
    let grants = story.vault.token_grants();
    assert!(!grants.is_empty());
    for g in &grants {
        assert_eq!(
            (g.identity.as_str(), g.method),
            (CLIENT_ID, GrantMethod::ClientAssertion),
            "{grants:?}"
        );
    }

    // The values are in no spec, log or file.
    let values = v.all();
    let mut leaks = Vec::new();
    for (place, text) in [
        ("the pod as sent to admission", admission.pod.to_string()),
        ("the AdmissionReview", admission.review.to_string()),
        ("the webhook's answer", admission.answer.to_string()),
        ("the admitted pod", admitted.to_string()),
        ("the webhook's log", story.webhook.log()),
        ("the harness's log", logs.text()),
        ("the registry's log", story.registry.log()),
    ] {
        leaks.extend(find_in_bytes(place, text.as_bytes(), &values));
    }
    for c in run.all() {
        leaks.extend(find_in_bytes(
            &format!("stderr of {} (akv-env logs at debug)", c.name),
            c.stderr.as_bytes(),
            &values,
        ));
    }
    for c in run.init_containers.iter() {
        leaks.extend(find_in_bytes(
            &format!("stdout of {}", c.name),
            c.stdout.as_bytes(),
            &values,
        ));
    }
    let (disk, files) = find_in_dir(story.dir(), &values).unwrap();
    leaks.extend(disk);
    // The scan covers the pod's volumes (the injector's copy), each container's runtime config
    // (its env as the runtime got it) and root filesystem.
    for file in [
        "volumes/kubernetes.io~empty-dir/akv-env/akv-env",
        "containers/web/config.json",
        "containers/web/rootfs/app/run.sh",
    ] {
        assert!(run.pod_dir.join(file).is_file(), "{file} is on the node");
    }
    assert!(
        run.pod_dir.starts_with(story.dir()) && files > 20,
        "scanned {files} files"
    );
    assert!(leaks.is_empty(), "values found in: {leaks:?}");
    assert!(!logs.text().is_empty(), "the harness's log was captured");
    // The stderr of the injector is where a leak would show: it must have logged something.
    assert!(!app.stderr.is_empty(), "akv-env logged nothing at debug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_the_container_and_the_program_never_runs() {
    let mut story = Story::start().await.unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    add_env(
        &mut deployment,
        "FEATURE_FLAG",
        "no-such-secret@azurekeyvault",
    );
    let admission = story.admit(&sa, &deployment).await.unwrap();
    let run = story.run(admission.admitted.as_ref().unwrap()).unwrap();
    let app = program_never_ran(&run);
    let line = app
        .stderr
        .lines()
        .find(|l| l.starts_with("akv-env: FEATURE_FLAG:"))
        .unwrap_or_else(|| panic!("no line names the env var: {run}"));
    assert!(
        line.contains("no-such-secret") && line.contains(VAULT),
        "{line}"
    );
    assert!(line.to_lowercase().contains("not found"), "{line}");
    let failures = app
        .stderr
        .lines()
        .filter(|l| l.starts_with("akv-env: "))
        .count();
    assert_eq!(failures, 1, "one line per failing variable: {run}");
    assert!(!app.stderr.contains(&story.values.db_password), "{run}");
    // `kubectl describe pod` shows the same line: the kubelet stand-in read the file it
    // bind-mounted at /dev/termination-log, as `lastState.terminated.message`.
    assert_eq!(app.termination_message, format!("{line}\n"), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_reach_a_termination_message_path_the_pod_chose() {
    let mut story = Story::start().await.unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    add_env(
        &mut deployment,
        "FEATURE_FLAG",
        "no-such-secret@azurekeyvault",
    );
    add_env(&mut deployment, "OTHER_FLAG", "also-missing@azurekeyvault");
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    container["terminationMessagePath"] = json!("/tmp/akv-env-why");
    container["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
    let admission = story.admit(&sa, &deployment).await.unwrap();
    let admitted = admission.admitted.as_ref().unwrap();
    let web = &admitted["spec"]["containers"][0];
    // The user's choices are kept; the injector is told where to write.
    assert_eq!(web["terminationMessagePath"], "/tmp/akv-env-why");
    assert_eq!(web["terminationMessagePolicy"], "FallbackToLogsOnError");
    let mut flags = story.trust_flags();
    flags.extend(["--termination-message-path=/tmp/akv-env-why", "--"].map(String::from));
    assert_eq!(
        web["args"].as_array().unwrap()[..flags.len()],
        json!(flags).as_array().unwrap()[..]
    );
    let run = story.run(admitted).unwrap();
    let app = program_never_ran(&run);
    let message: Vec<&str> = app.termination_message.lines().collect();
    assert_eq!(message.len(), 2, "{run}");
    for (line, (var, object)) in message.iter().zip([
        ("FEATURE_FLAG", "no-such-secret"),
        ("OTHER_FLAG", "also-missing"),
    ]) {
        assert!(
            line.starts_with(&format!("akv-env: {var}:")) && line.contains(object),
            "{line}"
        );
        assert!(app.stderr.contains(line), "the same line on stderr: {run}");
    }
    assert!(!app.termination_message.contains(&story.values.db_password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_vault_still_starts_the_pod() {
    let mut story = Story::start().await.unwrap();
    let (sa, deployment) = story.manifest_objects().unwrap();
    let admission = story.admit(&sa, &deployment).await.unwrap();
    // One secret read per second per vault: the second object is throttled (429, Retry-After).
    story.vault.set_throttle(Some(Throttle {
        limit: 1,
        window: Duration::from_secs(1),
    }));
    let run = story.run(admission.admitted.as_ref().unwrap()).unwrap();
    assert!(run.succeeded(), "{run}");
    assert_program_saw(&run, "DB_PASSWORD", &story.values.db_password);
    assert_program_saw(&run, "API_TOKEN", &story.values.api_token);
    let accesses = story.vault.accesses();
    assert!(
        accesses.iter().any(|a| a.status == 429),
        "the vault throttled: {accesses:?}"
    );
    assert_eq!(
        accesses.iter().filter(|a| a.status == 200).count(),
        2,
        "{accesses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_references_in_args_still_expand_after_wrapping() {
    let mut story = Story::start().await.unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    // No `command`: ENTRYPOINT + these args. Kubelet expands $(LOG_LEVEL) and unescapes $$( in
    // the wrapped args exactly as it would have in the original ones.
    deployment["spec"]["template"]["spec"]["containers"][0]["args"] =
        json!(["--level=$(LOG_LEVEL)", "$$(LOG_LEVEL)", "$(UNDEFINED)"]);
    let admission = story.admit(&sa, &deployment).await.unwrap();
    let admitted = admission.admitted.unwrap();
    let mut wrapped = story.trust_flags();
    wrapped.extend(
        [
            "--",
            "/app/run.sh",
            "--level=$(LOG_LEVEL)",
            "$$(LOG_LEVEL)",
            "$(UNDEFINED)",
        ]
        .map(String::from),
    );
    assert_eq!(admitted["spec"]["containers"][0]["args"], json!(wrapped));
    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    let app = run.expect_container("web");
    assert!(
        app.stdout
            .contains("app: args: [--level=info] [$(LOG_LEVEL)] [$(UNDEFINED)]\n"),
        "{run}"
    );
    assert_program_saw(&run, "DB_PASSWORD", &story.values.db_password);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_teams_identity_is_refused_and_the_program_never_runs() {
    let mut story = Story::start().await.unwrap();
    let (mut sa, mut deployment) = story.manifest_objects().unwrap();
    // The same workload under another team's service account (and so its Entra identity).
    sa["metadata"]["name"] = json!(OTHER_SERVICE_ACCOUNT);
    sa["metadata"]["annotations"]["azure.workload.identity/client-id"] = json!(OTHER_CLIENT_ID);
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = json!(OTHER_SERVICE_ACCOUNT);
    let admission = story.admit(&sa, &deployment).await.unwrap();
    let run = story.run(admission.admitted.as_ref().unwrap()).unwrap();
    let app = program_never_ran(&run);
    for var in ["DB_PASSWORD", "API_TOKEN"] {
        let line = app
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("akv-env: {var}:")))
            .unwrap_or_else(|| panic!("no line for {var}: {run}"));
        assert!(line.contains("forbidden") && line.contains(VAULT), "{line}");
    }
    let accesses = story.vault.accesses();
    assert!(
        accesses
            .iter()
            .filter(|a| a.identity.is_some())
            .all(|a| a.identity.as_deref() == Some(OTHER_CLIENT_ID) && a.status == 403),
        "only the other team's identity, always refused: {accesses:?}"
    );
    assert!(accesses.iter().any(|a| a.status == 403), "{accesses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_injected_offline_is_left_alone_at_admission_and_runs() {
    let mut story = Story::start().await.unwrap();
    // GitOps: `akv-env-webhook inject` rewrites the manifest before it is applied.
    let mut child = std::process::Command::new(&story.webhook_bin)
        .args(["inject", "-f", "-", "--image-lookup", "--injector-image"])
        .arg(&story.injector_image)
        .arg("--insecure-registry")
        .arg(story.registry.host())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(story.manifest().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inject failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (sa, deployment) = akv_env_e2e::story::parse_manifest(&printed).unwrap();
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["akv-env.io/status"], "injected",
        "{printed}"
    );
    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed);
    assert_eq!(
        admission.patched.as_ref(),
        Some(&admission.pod),
        "admission leaves an injected pod alone"
    );
    let run = story.run(admission.admitted.as_ref().unwrap()).unwrap();
    assert!(run.succeeded(), "{run}");
    let app = run.expect_container("web");
    assert_program_saw(&run, "DB_PASSWORD", &story.values.db_password);
    assert!(
        app.stdout.contains("app: args: [serve] [--port=8080]"),
        "{run}"
    );
    assert!(!printed.contains(&story.values.db_password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_is_down_makes_admission_refuse_the_pod() {
    let story = Story::start().await.unwrap();
    let (sa, deployment) = story.manifest_objects().unwrap();
    // The app image on a registry nobody answers for.
    let down = registry_harness::free_loopback_addr().unwrap().to_string();
    let moved = serde_json::to_string(&deployment)
        .unwrap()
        .replace(&story.registry.host(), &down);
    let deployment: Value = serde_json::from_str(&moved).unwrap();
    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(!admission.verdict.allowed, "{:?}", admission.answer);
    assert!(admission.admitted.is_none());
    let message = admission.verdict.message.unwrap();
    // DESIGN.md: refused with a message saying why and how to fix it (set `command`).
    assert!(message.contains("container \"web\""), "{message}");
    assert!(
        message.contains(&format!("{down}/shop/web:1.0")),
        "{message}"
    );
    assert!(
        message.contains("ENTRYPOINT/CMD could not be read"),
        "{message}"
    );
    assert!(message.contains("set `command`"), "{message}");
}
