//! Issue 18: the operator's CA bundle, given to the webhook (`--ca-bundle-file`, chart
//! `caBundle`), is what the injector trusts in the pod. The local Key Vault's CA is only in the
//! bundle: the pod names no CA file of its own. Without the bundle the same pod fails closed
//! with a TLS error naming the vault. Needs root (runc) and the tools from scripts/setup.sh.

use akv_env_e2e::story::{Story, parse_manifest};
use akv_env_e2e::webhook::{WebhookOptions, WebhookServer};
use serde_json::{Value, json};

/// The fixture's Deployment without the pod's own `AKV_ENV_CA_FILE`.
fn without_own_ca(story: &Story) -> (Value, Value) {
    let (sa, mut deployment) = parse_manifest(&story.manifest()).unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap();
    env.retain(|e| e["name"] != "AKV_ENV_CA_FILE");
    (sa, deployment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_injector_trusts_the_ca_bundle_the_webhook_mounts() {
    let mut story = Story::start().await.unwrap();
    let (sa, deployment) = without_own_ca(&story);

    // Without the bundle: the vault's CA is trusted nowhere, the program never runs.
    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    let run = story.run(&admitted).unwrap();
    let web = run.expect_container("web");
    assert_eq!(web.exit_code, 1, "{run}");
    assert!(!web.stdout.contains("app:"), "the program ran: {run}");
    let line = web
        .stderr
        .lines()
        .find(|l| l.starts_with("akv-env: DB_PASSWORD: "))
        .unwrap_or_else(|| panic!("no line for DB_PASSWORD: {run}"));
    assert!(
        line.contains("myvault") && line.to_ascii_lowercase().contains("certificate"),
        "not a TLS error naming the vault: {line}"
    );

    // The webhook with the bundle holding the local Key Vault's CA.
    let bundle = story.dir().join("ca-bundle.pem");
    std::fs::write(&bundle, story.vault.ca_pem()).unwrap();
    story.webhook = WebhookServer::start(&WebhookOptions {
        binary: story.webhook_bin.clone(),
        injector_image: story.injector_image.clone(),
        default_vault: None,
        insecure_registries: vec![story.registry.host()],
        extra_args: vec![format!("--ca-bundle-file={}", bundle.display())],
    })
    .await
    .unwrap();
    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    let spec = &admitted["spec"];
    let init = &spec["initContainers"][0];
    assert_eq!(init["name"], "akv-env-install");
    // (The workload identity webhook's variables follow it.)
    assert_eq!(
        init["env"][0],
        json!({"name": "AKV_ENV_CA_BUNDLE", "value": story.vault.ca_pem()})
    );
    let args: Vec<&str> = spec["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--ca-file=/akv-env/bin/ca-bundle.pem"),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.contains("/etc/akv-e2e")),
        "the pod names no CA file of its own: {args:?}"
    );

    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    let web = run.expect_container("web");
    assert!(
        web.stdout
            .contains(&format!("env DB_PASSWORD={}\n", story.values.db_password)),
        "{run}"
    );
}
