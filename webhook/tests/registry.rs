//! Entrypoints read from a real registry (Debian's `docker-registry` on loopback, images
//! pushed by the test) through the HTTPS webhook, with the real `akv-registry` resolver.

mod common;

use std::sync::Arc;
use std::time::Duration;

use akv_env_webhook::lookup::Registries;
use akv_registry::{ImageResolver, RegistryOptions};
use common::{Connection, Options, Protocol, fixture, read_answer, start};
use registry_harness::{HangingServer, ImageSpec, TestRegistry};
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn review_for(image: &str, arch: Option<&str>) -> Value {
    let mut review = fixture("pod-no-command.json");
    let spec = &mut review["request"]["object"]["spec"];
    spec["containers"][0]["image"] = json!(image);
    if let Some(arch) = arch {
        spec["nodeSelector"] = json!({"kubernetes.io/arch": arch});
    }
    review
}

fn registries(insecure: Vec<String>, timeout: Duration) -> Arc<Registries> {
    Arc::new(Registries::new(
        ImageResolver::new(RegistryOptions {
            timeout,
            insecure_registries: insecure,
            ..RegistryOptions::default()
        }),
        None,
    ))
}

#[tokio::test]
async fn entrypoints_come_from_the_registry_for_the_nodes_platform() {
    let registry = TestRegistry::start().expect("docker-registry (scripts/setup.sh installs it)");
    registry
        .push(
            &ImageSpec::linux("amd64")
                .entrypoint(&["/bin/sh", "-c"])
                .cmd(&["echo $(HOME) $$"]),
            "shop/shell:1",
        )
        .unwrap();
    registry
        .push_index(
            &[
                ImageSpec::linux("amd64")
                    .entrypoint(&["/amd64/app"])
                    .cmd(&["serve"]),
                ImageSpec::linux("arm64")
                    .entrypoint(&["/arm64/app"])
                    .cmd(&["serve"]),
            ],
            "shop/multi:2",
        )
        .unwrap();
    let running = start(Options {
        entrypoints: registries(vec![registry.host()], Duration::from_secs(4)),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http2).await;

    // Image words are escaped so kubelet's $(VAR) expansion gives them back unchanged.
    let review = review_for(&registry.image("shop/shell:1"), None);
    let answer = conn.review(&review).await;
    let pod = answer
        .patched
        .unwrap_or_else(|| panic!("{}\n{}", answer.response, registry.log()));
    assert_eq!(
        strings(&pod["spec"]["containers"][0]["args"]),
        ["--", "/bin/sh", "-c", "echo $$(HOME) $$$$"]
    );

    // An index: the node selector's architecture, else amd64.
    for (arch, want) in [
        (Some("arm64"), "/arm64/app"),
        (None, "/amd64/app"),
        (Some("amd64"), "/amd64/app"),
    ] {
        let review = review_for(&registry.image("shop/multi:2"), arch);
        let answer = conn.review(&review).await;
        let pod = answer
            .patched
            .unwrap_or_else(|| panic!("{arch:?}: {}", answer.response));
        assert_eq!(
            strings(&pod["spec"]["containers"][0]["args"]),
            ["--", want, "serve"],
            "{arch:?}"
        );
    }

    // A platform the index lacks, and an image that does not exist: refused, saying why.
    for (review, why) in [
        (
            review_for(&registry.image("shop/multi:2"), Some("s390x")),
            "s390x",
        ),
        (
            review_for(&registry.image("shop/missing:1"), None),
            "not found",
        ),
    ] {
        let answer = conn.review(&review).await;
        assert_eq!(answer.response["allowed"], false);
        let message = answer.response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(why) && message.contains("set `command`"),
            "{message}"
        );
    }

    // The same image again is a cache hit, visible in the metrics.
    let review = review_for(&registry.image("shop/shell:1"), None);
    let (_, body) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert!(read_answer(&review, &body).patched.is_some());
    let (_, metrics) = common::get(running.server.health_addr, "/metrics").await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert!(
        value("akv_env_webhook_image_cache_hits_total") >= 1,
        "{metrics}"
    );
    assert!(
        value("akv_env_webhook_image_lookups_total") >= 6,
        "{metrics}"
    );
    assert!(
        value("akv_env_webhook_image_lookup_errors_total") >= 2,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_hanging_registry_is_refused_by_its_deadline() {
    let hanging = HangingServer::start().unwrap();
    let running = start(Options {
        entrypoints: registries(vec![hanging.host()], Duration::from_millis(700)),
        timeout: Duration::from_secs(5),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    let review = review_for(&format!("{}/shop/app:1", hanging.host()), None);
    let started = std::time::Instant::now();
    let (_, body) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let answer = read_answer(&review, &body);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(message.contains("took longer than"), "{message}");
}
