//! `$(VAR)` composition end to end: the real webhook rewrites the references, the kubelet
//! stand-in expands with the kubelet's rules, the injector resolves and composes, and the
//! unmodified program sees exactly what Kubernetes would have given it had the placeholder been
//! the secret. Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use akv_env_e2e::scan::{LogCapture, find_in_bytes, find_in_dir};
use akv_env_e2e::story::Story;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composed_urls_args_and_escapes_reach_the_program_exactly() {
    let logs = LogCapture::install();
    let mut story = Story::start().await.unwrap();
    let (sa, mut deployment) = story.manifest_objects().unwrap();
    let web = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    let env = web["env"].as_array_mut().unwrap();
    env.retain(|e| e["name"] != "SHOW_VARS");
    env.extend([
        json!({"name": "DATABASE_URL", "value": "postgres://app:$(DB_PASSWORD)@db:5432/app?level=$(LOG_LEVEL)"}),
        json!({"name": "ESCAPED", "value": "$$(DB_PASSWORD) $(UNDEFINED)"}),
        json!({"name": "SHOW_VARS", "value": "DATABASE_URL ESCAPED DB_PASSWORD AKV_ENV_REF_DB_PASSWORD"}),
    ]);
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
    assert_eq!(
        c["args"],
        json!([
            "--compose-env=DATABASE_URL",
            "--compose-arg=1",
            "--capture=AKV_ENV_REF_DB_PASSWORD",
            "--capture=AKV_ENV_REF_LOG_LEVEL",
            "--",
            "/app/run.sh",
            "--password=$$(AKV_ENV_REF_DB_PASSWORD)",
            "$$(DB_PASSWORD)",
            "$(LOG_LEVEL)",
        ])
    );

    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    let app = run.expect_container("web");
    let pw = story.values.db_password.clone();
    for line in [
        format!("app: args: [--password={pw}] [$(DB_PASSWORD)] [info]"),
        format!("env DATABASE_URL=postgres://app:{pw}@db:5432/app?level=info"),
        "env ESCAPED=$(DB_PASSWORD) $(UNDEFINED)".to_owned(),
        format!("env DB_PASSWORD={pw}"),
        "env AKV_ENV_REF_DB_PASSWORD=<unset>".to_owned(),
    ] {
        assert!(
            app.stdout.lines().any(|l| l == line),
            "the program did not see {line:?}:\n{run}"
        );
    }

    // The composed value is in no spec, log, stored argument or file.
    let values = story.values.all();
    let mut leaks = Vec::new();
    for (place, text) in [
        ("the admitted pod", admitted.to_string()),
        ("the webhook's answer", admission.answer.to_string()),
        ("the webhook's log", story.webhook.log()),
        ("the harness's log", logs.text()),
    ] {
        leaks.extend(find_in_bytes(place, text.as_bytes(), &values));
    }
    for c in run.all() {
        leaks.extend(find_in_bytes(
            &format!("stderr of {}", c.name),
            c.stderr.as_bytes(),
            &values,
        ));
    }
    let (disk, _) = find_in_dir(story.dir(), &values).unwrap();
    leaks.extend(disk);
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
