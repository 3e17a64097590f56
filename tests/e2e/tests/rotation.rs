//! Restart on rotation end to end: a pod annotated `akv-env.io/restart-on-change` runs with the
//! injector as a supervisor; a new version of its secret is created while the program runs; the
//! supervisor ends the program and exits, the kubelet stand-in restarts the container
//! (`restartPolicy: Always`), and the program's second run prints the new value (hashed).
//! Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use std::time::{Duration, Instant};

use akv_env_e2e::app::hashed;
use akv_env_e2e::scan::LogCapture;
use akv_env_e2e::story::{Story, VAULT};
use akv_test_support::leak::{find_in_bytes, find_in_dir};
use fake_keyvault::SecretAttributes;
use serde_json::json;

/// The app's own script, then: the first run waits for SIGTERM (and ends 0 on it, as a
/// well-behaved server does); a restarted run ends at once, so the pod run ends. The marker is
/// in an emptyDir, which outlives a container restart as on a node.
const WRAPPER: &str = "/app/run.sh \"$@\"; \
    if [ -e /state/ran ]; then exit 0; fi; : > /state/ran; \
    trap 'echo TERM; exit 0' TERM; while :; do sleep 0.1; done";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_restarts_the_container_onto_it() {
    let logs = LogCapture::install();
    // The operator's floor is low for this test only (the chart's default is 1m).
    let mut story = Story::start_with_webhook_args(&["--restart-on-change-floor=1s"])
        .await
        .unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    let template = &mut deployment["spec"]["template"];
    template["metadata"]["annotations"]["akv-env.io/restart-on-change"] = json!("1s");
    template["spec"]["restartPolicy"] = json!("Always");
    template["spec"]["terminationGracePeriodSeconds"] = json!(5);
    template["spec"]["volumes"] = json!([{"name": "state", "emptyDir": {}}]);
    let web = &mut template["spec"]["containers"][0];
    web["command"] = json!(["/bin/sh", "-c", WRAPPER, "sh"]);
    web["volumeMounts"] = json!([{"name": "state", "mountPath": "/state"}]);
    web["env"]
        .as_array_mut()
        .unwrap()
        .extend([json!({"name": "HASH_VALUES", "value": "1"})]);

    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    let args: Vec<String> =
        serde_json::from_value(admitted["spec"]["containers"][0]["args"].clone()).unwrap();
    for flag in ["--restart-on-change=1s", "--restart-grace-period=5s"] {
        assert!(args.iter().any(|a| a == flag), "{flag} not in {args:?}");
    }

    let old = story.values.db_password.clone();
    let new = format!("{old}-rotated");
    let pod = serde_json::from_value(admitted).unwrap();
    story.runner.max_restarts = 1;
    let (vault, runner) = (&story.vault, &mut story.runner);
    let (run, created) = std::thread::scope(|s| {
        // While the program runs (after the injector read the secret), a new version.
        let rotate = s.spawn(|| {
            let started = Instant::now();
            while !vault
                .accesses()
                .iter()
                .any(|a| a.name == "db-password" && a.status == 200)
            {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "the secret was never read"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // Key Vault's versions are ordered to the second: a new one a second later.
            std::thread::sleep(Duration::from_millis(1100));
            let version =
                vault.upsert_secret(VAULT, "db-password", &new, SecretAttributes::default());
            (version, Instant::now())
        });
        let run = runner.run_pod(&pod).unwrap();
        (run, rotate.join().unwrap())
    });
    let (version, created_at) = created;
    let app = run.expect_container("web");
    assert_eq!(app.restart_count, 1, "{run}");
    let first = &app.previous[0];

    // First run: the old value; SIGTERM to the program; the supervisor's exit asks for a restart.
    let line = |v: &str| format!("env DB_PASSWORD={}", hashed(v));
    assert!(first.stdout.lines().any(|l| l == line(&old)), "{run}");
    assert!(first.stdout.lines().any(|l| l == "TERM"), "{run}");
    assert_eq!(first.exit_code, 75, "{run}");
    let said: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains("new version in Key Vault"))
        .collect();
    assert_eq!(said.len(), 1, "{run}");
    assert!(
        said[0].contains("DB_PASSWORD") && said[0].contains(&version),
        "{run}"
    );
    // Second run: the new value, and an ordinary end.
    assert!(app.stdout.lines().any(|l| l == line(&new)), "{run}");
    assert!(!app.stdout.contains(&line(&old)), "{run}");
    assert_eq!(app.exit_code, 0, "{run}");
    eprintln!(
        "restarted onto the new version; the pod run ended {:?} after it was created",
        created_at.elapsed()
    );

    // No value, old or new, in any output, the harness's log or the node's files.
    let mut values = story.values.all();
    values.push(&new);
    let mut leaks = Vec::new();
    for (n, c) in [first, app].into_iter().enumerate() {
        leaks.extend(find_in_bytes(
            &format!("run {} stdout", n + 1),
            c.stdout.as_bytes(),
            &values,
        ));
        leaks.extend(find_in_bytes(
            &format!("run {} stderr", n + 1),
            c.stderr.as_bytes(),
            &values,
        ));
    }
    leaks.extend(find_in_bytes(
        "the harness's log",
        logs.text().as_bytes(),
        &values,
    ));
    let (disk, _) = find_in_dir(&story.node_dir(), &values).unwrap();
    leaks.extend(disk);
    assert!(leaks.is_empty(), "values found in: {leaks:?}");
}
