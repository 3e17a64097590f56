//! Issue 13 end to end: someone who may edit a ConfigMap but not create pods cannot redirect a
//! pod's token. ConfigMap values reach the injector's environment through the kubelet stand-in
//! exactly as the kubelet passes them; only the admitted spec's literal values become the
//! injector's trust flags. A listener at the "attacker's" address counts every connection.
//! Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use akv_env_e2e::story::{Story, parse_manifest};
use serde_json::json;
use tokio::net::TcpListener;

/// A listener that accepts and drops connections, counting them.
async fn attacker() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, hits)
}

fn config_map(name: &str, data: &[(&str, String)]) -> String {
    let data: String = data
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\ndata:\n{data}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_and_addresses_from_a_config_map_change_nothing() {
    let mut story = Story::start().await.unwrap();
    let (addr, hits) = attacker().await;
    // Every setting that would send the token elsewhere, through envFrom (names the pod spec
    // does not define literally, so the kubelet passes them on).
    let tampered = config_map(
        "tampered",
        &[
            ("AKV_ENV_AUTH", "managed-identity".to_owned()),
            ("IDENTITY_ENDPOINT", format!("http://{addr}/msi/token")),
            ("IDENTITY_HEADER", "h".to_owned()),
            ("MSI_ENDPOINT", format!("http://{addr}/msi/token")),
        ],
    );
    let manifest = format!("{}\n{tampered}", story.manifest());
    let (sa, mut deployment) = parse_manifest(&manifest).unwrap();
    assert_eq!(story.runner.config_maps.add_manifest(&manifest), Ok(1));
    deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
        json!([{"configMapRef": {"name": "tampered"}}]);

    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    let admitted = admission.admitted.clone().unwrap();
    let args = &admitted["spec"]["containers"][0]["args"];
    assert!(
        !args
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("--auth=")),
        "no identity flag from a ConfigMap: {args}"
    );

    let run = story.run(&admitted).unwrap();
    assert!(run.succeeded(), "{run}");
    let web = run.expect_container("web");
    // The pod's own (workload) identity read its secrets; the ConfigMap's choice was ignored,
    // and said so.
    assert!(
        web.stdout
            .contains(&format!("env DB_PASSWORD={}\n", story.values.db_password)),
        "{run}"
    );
    assert!(
        web.stderr
            .contains("AKV_ENV_AUTH in the environment is ignored"),
        "{run}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a connection reached the listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_address_map_redefined_from_a_config_map_is_not_used() {
    let mut story = Story::start().await.unwrap();
    let (addr, hits) = attacker().await;
    let tampered = config_map(
        "tampered",
        &[(
            "resolve",
            format!("myvault.vault.azure.net={addr},login.test={addr}"),
        )],
    );
    let manifest = format!("{}\n{tampered}", story.manifest());
    let (sa, mut deployment) = parse_manifest(&manifest).unwrap();
    assert_eq!(story.runner.config_maps.add_manifest(&manifest), Ok(1));
    // The last definition wins in the kubelet: the injector's environment gets the ConfigMap's
    // map. The webhook uses only a literal last definition, and warns.
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "AKV_ENV_RESOLVE",
            "valueFrom": {"configMapKeyRef": {"name": "tampered", "key": "resolve"}}
        }));

    let admission = story.admit(&sa, &deployment).await.unwrap();
    assert!(admission.verdict.allowed, "{:?}", admission.verdict.message);
    assert!(
        admission
            .verdict
            .warnings
            .iter()
            .any(|w| w.contains("AKV_ENV_RESOLVE") && w.contains("web")),
        "no admission warning naming the container and variable: {:?}",
        admission.verdict.warnings
    );
    let admitted = admission.admitted.clone().unwrap();
    let args = admitted["spec"]["containers"][0]["args"].to_string();
    assert!(!args.contains("--resolve"), "{args}");
    assert!(!args.contains(&addr.to_string()), "{args}");

    // Without the map the rig's vault has no address: the pod fails closed, and nothing went
    // to the ConfigMap's address.
    let run = story.run(&admitted).unwrap();
    let web = run.expect_container("web");
    assert_eq!(web.exit_code, 1, "{run}");
    assert!(!web.stdout.contains("app:"), "the program ran: {run}");
    assert!(
        web.stderr
            .contains("AKV_ENV_RESOLVE in the environment is ignored"),
        "{run}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a connection reached the listener"
    );
}
