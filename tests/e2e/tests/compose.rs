//! `$(VAR)` composition and ConfigMap-borne placeholders end to end: the real webhook rewrites the
//! references, the kubelet stand-in expands with the kubelet's rules (ConfigMaps included), the
//! injector resolves and composes, and the unmodified program sees exactly what Kubernetes would
//! have given it had the placeholder been the secret. The program prints what it saw hashed
//! (`HASH_VALUES`), so the test checks exact strings and its output is searched for leaks too.
//! Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use akv_env_e2e::app::hashed;
use akv_env_e2e::scan::LogCapture;
use akv_env_e2e::story::{Admission, Story, parse_manifest};
use akv_env_e2e::{ContainerRun, PodRun};
use akv_test_support::leak::{Leak, find_in_bytes, find_in_dir};
use serde_json::{Value, json};

/// The program's output lines for these exact arguments and variables (`None`: unset).
fn expected_lines(args: &[&str], vars: &[(&str, Option<&str>)]) -> Vec<String> {
    let args: String = args.iter().map(|a| format!(" [{}]", hashed(a))).collect();
    let mut lines = vec![format!("app: args:{args}")];
    for (name, value) in vars {
        let shown = value.map_or_else(|| "<unset>".to_owned(), hashed);
        lines.push(format!("env {name}={shown}"));
    }
    lines
}

/// Every expected line is one the program printed; a failure names the line's label only (the
/// expected strings hold secrets).
fn assert_saw(app: &ContainerRun, run: &PodRun, labels: &[&str], expected: &[String]) {
    for (label, line) in labels.iter().zip(expected) {
        assert!(
            app.stdout.lines().any(|l| l == line),
            "the program did not see the exact {label}:\n{run}"
        );
    }
}

/// Replaces the Deployment's first container's env with `env`, showing `show` (hashed).
fn set_env<'a>(deployment: &'a mut Value, mut env: Vec<Value>, show: &str) -> &'a mut Value {
    let web = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    // The fixture's literal trust settings stay: only the admitted spec says where the token
    // goes (the webhook turns them into the injector's flags).
    let trust = ["AKV_ENV_RESOLVE", "AKV_ENV_CA_FILE", "AZURE_AUTHORITY_HOST"];
    let defines = |env: &[Value], name: &str| env.iter().any(|e| e["name"] == name);
    let kept: Vec<Value> = web["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["name"]
                .as_str()
                .is_some_and(|name| trust.contains(&name) && !defines(&env, name))
        })
        .cloned()
        .collect();
    env.splice(0..0, kept);
    env.push(json!({"name": "HASH_VALUES", "value": "1"}));
    env.push(json!({"name": "SHOW_VARS", "value": show}));
    web["env"] = Value::Array(env);
    web
}

/// The story's values in the pod specs, the webhook's answer, every log (the program's hashed
/// stdout included) and every file under the story's directory.
fn leaks(story: &Story, admission: &Admission, runs: &[&PodRun], logs: &LogCapture) -> Vec<Leak> {
    let values = story.values.all();
    let mut leaks = Vec::new();
    for (place, text) in [
        (
            "the admitted pod",
            admission.admitted.clone().unwrap().to_string(),
        ),
        ("the webhook's answer", admission.answer.to_string()),
        ("the webhook's log", story.webhook.log()),
        ("the harness's log", logs.text()),
    ] {
        leaks.extend(find_in_bytes(place, text.as_bytes(), &values));
    }
    for c in runs.iter().flat_map(|r| r.all()) {
        for (stream, text) in [("stdout", &c.stdout), ("stderr", &c.stderr)] {
            leaks.extend(find_in_bytes(
                &format!("{stream} of {}", c.name),
                text.as_bytes(),
                &values,
            ));
        }
        leaks.extend(find_in_bytes(
            &format!("argv of {} as stored", c.name),
            c.args.join("\0").as_bytes(),
            &values,
        ));
    }
    let (disk, _) = find_in_dir(story.dir(), &values).unwrap();
    leaks.extend(disk);
    leaks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_urls_args_and_escapes_reach_the_program_exactly() {
    let logs = LogCapture::install();
    let mut story = Story::start().await.unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] != "SHOW_VARS")
        .cloned()
        .chain([
            json!({"name": "DATABASE_URL", "value": "postgres://app:$(DB_PASSWORD)@db:5432/app?level=$(LOG_LEVEL)"}),
            json!({"name": "ESCAPED", "value": "$$(DB_PASSWORD) $(UNDEFINED)"}),
        ])
        .collect();
    let web = set_env(
        &mut deployment,
        env,
        "DATABASE_URL ESCAPED DB_PASSWORD AKV_ENV_REF_DB_PASSWORD",
    );
    // Only `args`: the image's ENTRYPOINT runs them (kubelet expands `args` like env values).
    web["args"] = json!([
        "--password=$(DB_PASSWORD)",
        "$$(DB_PASSWORD)",
        "$(LOG_LEVEL)"
    ]);

    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    let c = &admitted["spec"]["containers"][0];
    // What a user reads in the admitted spec: readable templates, no value.
    assert_eq!(c["command"], json!(["/akv-env/bin/akv-env"]));
    let mut wrapped = story.trust_flags();
    wrapped.extend(
        [
            "--compose-env=DATABASE_URL",
            "--compose-arg=1",
            "--capture=AKV_ENV_REF_DB_PASSWORD",
            "--capture=AKV_ENV_REF_LOG_LEVEL",
            "--",
            "/app/run.sh",
            "--password=$$(AKV_ENV_REF_DB_PASSWORD)",
            "$$(DB_PASSWORD)",
            "$(LOG_LEVEL)",
        ]
        .map(String::from),
    );
    assert_eq!(c["args"], json!(wrapped));

    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    let app = run.expect_container("web");
    let pw = story.values.db_password.clone();
    let url = format!("postgres://app:{pw}@db:5432/app?level=info");
    let expected = expected_lines(
        &[&format!("--password={pw}"), "$(DB_PASSWORD)", "info"],
        &[
            ("DATABASE_URL", Some(&url)),
            ("ESCAPED", Some("$(DB_PASSWORD) $(UNDEFINED)")),
            ("DB_PASSWORD", Some(&pw)),
            ("AKV_ENV_REF_DB_PASSWORD", None),
        ],
    );
    assert_saw(
        app,
        &run,
        &[
            "args `--password=<db-password>` `$(DB_PASSWORD)` `info`",
            "DATABASE_URL `postgres://app:<db-password>@db:5432/app?level=info`",
            "ESCAPED `$(DB_PASSWORD) $(UNDEFINED)`",
            "DB_PASSWORD `<db-password>`",
            "AKV_ENV_REF_DB_PASSWORD unset (the capture is removed)",
        ],
        &expected,
    );

    let leaks = leaks(&story, &admission, &[&run], &logs);
    assert!(leaks.is_empty(), "values found in: {leaks:?}");
}

/// The ConfigMap of the manifest set: its values before and after an edit made after admission.
fn config_map(token: &str, ro_password: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  CM_TOKEN: "{token}"
  CM_PLAIN: plain-from-cm
  ro-password: "{ro_password}"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_from_a_config_map_are_resolved_even_when_added_after_admission() {
    let logs = LogCapture::install();
    let mut story = Story::start().await.unwrap();
    // At admission the ConfigMap holds no placeholder; the webhook never reads it.
    let manifest = format!(
        "{}\n---{}",
        story.manifest(),
        config_map("tok-not-yet-a-secret", "ro-not-yet-a-secret")
    );
    let (sa, mut deployment) = parse_manifest(&manifest).unwrap();
    assert_eq!(story.runner.config_maps.add_manifest(&manifest), Ok(1));
    // No placeholder in the pod spec at all: only ConfigMap references.
    let web = set_env(
        &mut deployment,
        vec![
            json!({"name": "RO_PASSWORD", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "ro-password"}}}),
            json!({"name": "REPLICA_URL", "value": "postgres://ro:$(RO_PASSWORD)@replica:5432/app"}),
        ],
        "CM_TOKEN CM_PLAIN RO_PASSWORD REPLICA_URL",
    );
    web["envFrom"] = json!([{"configMapRef": {"name": "web-config"}}]);
    web["args"] = json!(["--token=$(CM_TOKEN)", "$(CM_PLAIN)"]);

    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    assert_eq!(
        admitted["spec"]["containers"][0]["command"],
        json!(["/akv-env/bin/akv-env"]),
        "a container reading a ConfigMap is wrapped"
    );
    let labels = [
        "args `--token=<CM_TOKEN>` `plain-from-cm`",
        "CM_TOKEN (envFrom)",
        "CM_PLAIN (envFrom)",
        "RO_PASSWORD (configMapKeyRef)",
        "REPLICA_URL `postgres://ro:<RO_PASSWORD>@replica:5432/app`",
    ];
    let expected = |token: &str, ro: &str| {
        expected_lines(
            &[&format!("--token={token}"), "plain-from-cm"],
            &[
                ("CM_TOKEN", Some(token)),
                ("CM_PLAIN", Some("plain-from-cm")),
                ("RO_PASSWORD", Some(ro)),
                (
                    "REPLICA_URL",
                    Some(&format!("postgres://ro:{ro}@replica:5432/app")),
                ),
            ],
        )
    };

    let first = story.run(&admitted).unwrap();
    assert!(first.succeeded(), "{first}");
    assert_saw(
        first.expect_container("web"),
        &first,
        &labels,
        &expected("tok-not-yet-a-secret", "ro-not-yet-a-secret"),
    );

    // The ConfigMap gains placeholders after admission; the container restarts.
    story
        .runner
        .config_maps
        .add_manifest(&config_map(
            "api-config@azurekeyvault?key=token",
            "db-password@azurekeyvault",
        ))
        .unwrap();
    let restarted = story.run(&admitted).unwrap();
    assert!(restarted.succeeded(), "{restarted}");
    let values = story.values.clone();
    assert_saw(
        restarted.expect_container("web"),
        &restarted,
        &labels,
        &expected(&values.api_token, &values.db_password),
    );

    let leaks = leaks(&story, &admission, &[&first, &restarted], &logs);
    assert!(leaks.is_empty(), "values found in: {leaks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_placeholder_left_in_a_value_stops_the_program_naming_the_variable() {
    let mut story = Story::start().await.unwrap();
    let (sa, deployment) = story.manifest_objects().unwrap();
    let admission = story.admit(&sa, &deployment).await.unwrap();
    let mut admitted = admission.admitted.unwrap();
    // As if a `$(VAR)` had been expanded with the raw text behind the webhook's back.
    admitted["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "URL", "value": "postgres://app:db-password@azurekeyvault@db/app"}));
    let run = story.run(&admitted).unwrap();
    let app = run.expect_container("web");
    assert_eq!(app.exit_code, 1, "{run}");
    assert!(
        !app.stdout.contains("app:"),
        "the program must not start: {run}"
    );
    assert!(
        app.stderr
            .contains("akv-env: env var URL still holds Key Vault placeholder text"),
        "{run}"
    );
    assert!(!app.stderr.contains("postgres://"), "{run}");
}
