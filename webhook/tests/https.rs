//! The webhook over real HTTPS: AdmissionReviews as the API server sends them, over HTTP/1.1
//! and HTTP/2, patches decoded from base64 and applied.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_env_webhook::lookup::{EntrypointSource, EntrypointsFuture, LookupRequest, Table};
use akv_env_webhook::namespaces::{FixedNamespaces, ManagedIdentityNamespaces};
use akv_mutation::ImageEntrypoint;
use common::{Connection, Options, Protocol, fixture, read_answer, start};
use hyper::StatusCode;
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn nginx_table() -> Arc<Table> {
    Arc::new(Table(HashMap::from([(
        "registry.example/nginx:1.27".to_owned(),
        ImageEntrypoint {
            entrypoint: vec!["/docker-entrypoint.sh".into()],
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        },
    )])))
}

#[tokio::test]
async fn pods_are_mutated_over_http1_and_http2() {
    let running = start(Options {
        entrypoints: nginx_table(),
        ..Options::default()
    })
    .await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let mut conn = Connection::open(running.server.https_addr, &running.ca, protocol).await;
        let want_alpn: &[u8] = if protocol == Protocol::Http2 {
            b"h2"
        } else {
            b"http/1.1"
        };
        assert_eq!(conn.alpn.as_deref(), Some(want_alpn));

        // Containers with `command`: containers, init containers and a native sidecar.
        let review = fixture("pod-command.json");
        let answer = conn.review(&review).await;
        assert_eq!(answer.response["allowed"], true);
        let pod = answer.patched.expect("a patch");
        let web = &pod["spec"]["containers"][0];
        assert_eq!(strings(&web["command"]), ["/akv-env/bin/akv-env"]);
        assert_eq!(
            strings(&web["args"]),
            ["--", "/srv/web", "--port", "$(PORT)"]
        );
        assert_eq!(
            pod["spec"]["containers"][1],
            review["request"]["object"]["spec"]["containers"][1]
        );
        let init: Vec<&str> = pod["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(init, ["akv-env-install", "migrate", "proxy"]);
        assert_eq!(
            strings(&pod["spec"]["initContainers"][2]["command"]),
            ["/akv-env/bin/akv-env"]
        );
        assert_eq!(pod["spec"]["initContainers"][0]["image"], common::INJECTOR);
        assert_eq!(
            pod["metadata"]["annotations"]["akv-env.io/status"],
            "injected"
        );

        // A container without `command`: the image's ENTRYPOINT/CMD from the lookup source.
        let review = fixture("pod-no-command.json");
        let pod = conn.review(&review).await.patched.expect("a patch");
        assert_eq!(
            strings(&pod["spec"]["containers"][0]["args"]),
            ["--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
        );
    }
}

#[tokio::test]
async fn fields_of_a_newer_kubernetes_survive() {
    let running = start(Options::default()).await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http2).await;
    let review = fixture("pod-future-fields.json");
    let pod = conn.review(&review).await.patched.expect("a patch");
    let original = &review["request"]["object"];
    for pointer in [
        "/metadata/futureMetadataField",
        "/metadata/annotations/example.com~1team",
        "/spec/workloadRef",
        "/spec/hostnameOverride",
        "/spec/futureSchedulingPolicy",
        "/spec/containers/0/futureProbe",
        "/spec/containers/0/resources",
        "/metadata/managedFields",
    ] {
        assert_eq!(pod.pointer(pointer), original.pointer(pointer), "{pointer}");
        assert!(pod.pointer(pointer).is_some(), "{pointer}");
    }
    assert_eq!(
        pod["metadata"]["annotations"]["akv-env.io/status"],
        "injected"
    );
}

#[tokio::test]
async fn refusals_and_pass_throughs() {
    let running = start(Options::default()).await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;

    let review = fixture("pod-bad-placeholder.json");
    let answer = conn.review(&review).await;
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    for needle in ["container \"worker\"", "env var API_TOKEN", "at byte"] {
        assert!(message.contains(needle), "{message}");
    }
    assert!(answer.patched.is_none());

    // No `command`, and the image is not known: refused with the fix.
    let review = fixture("pod-no-command.json");
    let answer = conn.review(&review).await;
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    for needle in [
        "container \"nginx\"",
        "registry.example/nginx:1.27",
        "set `command`",
    ] {
        assert!(message.contains(needle), "{message}");
    }

    // Allowed untouched: opt-out, UPDATE, another kind.
    for name in [
        "pod-opted-out.json",
        "pod-update.json",
        "deployment-create.json",
    ] {
        let review = fixture(name);
        let answer = conn.review(&review).await;
        assert_eq!(answer.response["allowed"], true, "{name}");
        assert!(answer.patched.is_none(), "{name}: {}", answer.response);
    }

    // Admitting the mutated pod again changes nothing.
    let review = fixture("pod-command.json");
    let (_, body) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    let mut again = review.clone();
    again["request"]["object"] = read_answer(&review, &body).patched.unwrap();
    let answer = conn.review(&again).await;
    assert_eq!(answer.response["allowed"], true);
    assert!(answer.patched.is_none());
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_4xx_or_a_reasoned_refusal() {
    let running = start(Options {
        body_limit: 64 * 1024,
        ..Options::default()
    })
    .await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
            ("not JSON", b"{not json".to_vec(), StatusCode::BAD_REQUEST),
            ("empty", Vec::new(), StatusCode::BAD_REQUEST),
            (
                "not a review",
                br#"{"kind": 3}"#.to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "binary",
                vec![0xff, 0xfe, 0x00, 0x01],
                StatusCode::BAD_REQUEST,
            ),
            (
                "oversized",
                vec![b' '; 200 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (name, body, want) in cases {
            // A fresh connection each: after a 413 the server may close an HTTP/1.1 one.
            let mut conn = Connection::open(running.server.https_addr, &running.ca, protocol).await;
            let (status, text) = conn.post("/mutate", body).await;
            assert_eq!(
                status,
                want,
                "{protocol:?} {name}: {}",
                String::from_utf8_lossy(&text)
            );
            assert!(!text.is_empty(), "{name}: a reason is given");
        }
        let mut conn = Connection::open(running.server.https_addr, &running.ca, protocol).await;
        // A review without a request: a refusal with a reason, not a crash.
        let (status, body) = conn
            .post(
                "/mutate",
                r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["response"]["allowed"], false);
        assert!(
            answer["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("no request")
        );
        // A request whose object is not a pod at all.
        let mut review = fixture("pod-command.json");
        review["request"]["object"]["spec"] = json!({"containers": "nope"});
        let answer = conn.review(&review).await;
        assert_eq!(answer.response["allowed"], false);
        // Unknown paths and methods.
        let (status, _) = conn.post("/nope", "{}").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // The server is still healthy after all that.
    let (status, _) = common::get(running.server.health_addr, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

/// Never answers: stands for a registry that hangs.
struct Hanging;

impl EntrypointSource for Hanging {
    fn entrypoints<'a>(&'a self, _request: LookupRequest<'a>) -> EntrypointsFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_hanging_lookup_is_refused_within_the_admission_timeout() {
    let running = start(Options {
        entrypoints: Arc::new(Hanging),
        timeout: Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http2).await;
    let review = fixture("pod-no-command.json");
    let started = Instant::now();
    let (status, body) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let answer = read_answer(&review, &body);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(message.contains("did not finish within 300ms"), "{message}");
    // Pods with `command` never wait for the registry.
    let review = fixture("pod-command.json");
    let (_, body) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert!(read_answer(&review, &body).patched.is_some());
}

#[tokio::test]
async fn namespace_annotation_sets_the_default_vault() {
    let running = start(Options {
        namespaces: Arc::new(FixedNamespaces(HashMap::from([(
            "shop".to_owned(),
            "shop-default-kv".to_owned(),
        )]))),
        default_vault: Some("cluster-kv"),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    let mut review = fixture("pod-command.json");
    review["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] =
        json!("db-password@azurekeyvault");
    let pod = conn.review(&review).await.patched.expect("a patch");
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let default = env
        .iter()
        .find(|e| e["name"] == "AKV_ENV_DEFAULT_VAULT")
        .unwrap();
    assert_eq!(default["value"], "shop-default-kv");
}

#[tokio::test]
async fn managed_identity_only_in_namespaces_that_allow_it() {
    let running = start(Options {
        namespaces: Arc::new(ManagedIdentityNamespaces(vec!["ops".to_owned()])),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    for (namespace, allowed) in [("ops", true), ("shop", false)] {
        let mut review = fixture("pod-command.json");
        review["request"]["namespace"] = json!(namespace);
        review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
        review["request"]["object"]["metadata"]["annotations"] =
            json!({"akv-env.io/auth": "managed-identity"});
        let answer = conn.review(&review).await;
        if allowed {
            let pod = answer.patched.expect("a patch");
            assert_eq!(
                pod["spec"]["containers"][0]["args"][0], "--auth=managed-identity",
                "{pod}"
            );
        } else {
            assert_eq!(answer.response["allowed"], false, "{}", answer.response);
            let message = answer.response["status"]["message"].as_str().unwrap();
            assert!(
                message.contains("managed identity is not allowed here")
                    && message.contains("akv-env.io/allow-managed-identity"),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_admissions_and_wraps() {
    let running = start(Options::default()).await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    for name in [
        "pod-command.json",
        "pod-command.json",
        "pod-bad-placeholder.json",
        "pod-update.json",
    ] {
        let review = fixture(name);
        conn.post("/mutate", serde_json::to_vec(&review).unwrap())
            .await;
    }
    conn.post("/mutate", "garbage").await;
    let (status, text) = common::get(running.server.health_addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "akv_env_webhook_admissions_total{outcome=\"mutated\"} 2",
        "akv_env_webhook_admissions_total{outcome=\"denied\"} 1",
        "akv_env_webhook_admissions_total{outcome=\"ignored\"} 1",
        "akv_env_webhook_admissions_total{outcome=\"invalid\"} 1",
        // 3 per pod-command review: the container, the init container, the native sidecar.
        "akv_env_webhook_containers_wrapped_total 6",
        "akv_env_webhook_admission_duration_seconds_count 5",
        "akv_env_webhook_errors_total{kind=\"bad_request\"} 1",
        "akv_env_webhook_image_lookups_total 0",
        "akv_env_webhook_image_cache_hits_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_certificate_is_reloaded_when_the_secret_changes() {
    let running = start(Options::default()).await;
    let addr = running.server.https_addr;
    let first = std::fs::read_to_string(running.secret.cert_path()).unwrap();
    let first_der = rustls_pki_types::pem::PemObject::from_pem_slice(first.as_bytes()).unwrap();
    let mut old = Connection::open(addr, &running.ca, Protocol::Http2).await;
    assert_eq!(old.peer_certificate, first_der);
    let (status, _) = common::get(running.server.health_addr, "/readyz").await;
    assert_eq!(status, StatusCode::OK);

    let mut secret = running.secret;
    let (cert, key) = running.ca.leaf();
    secret.write(&cert, &key);
    let new_der: rustls_pki_types::CertificateDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let conn = Connection::open(addr, &running.ca, Protocol::Http1).await;
        if conn.peer_certificate == new_der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the rotation still works.
    let review = fixture("pod-command.json");
    let (status, body) = old
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(read_answer(&review, &body).patched.is_some());

    // A broken update is ignored: the last good certificate stays.
    secret.write("not a certificate", "not a key");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let conn = Connection::open(addr, &running.ca, Protocol::Http1).await;
    assert_eq!(conn.peer_certificate, new_der);
}

#[tokio::test]
async fn not_ready_until_a_certificate_can_be_loaded() {
    let ca = common::TestCa::new("akv-env test CA");
    let mut running = common::start_with(Options::default(), ca, common::SecretDir::new()).await;
    let health = running.server.health_addr;
    let (status, text) = common::get(health, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let (status, _) = common::get(health, "/healthz").await;
    assert_eq!(status, StatusCode::OK);

    // cert-manager issues the certificate later: the webhook becomes ready and serves it.
    let (cert, key) = running.ca.leaf();
    running.secret.write(&cert, &key);
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::get(health, "/readyz").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    let review = fixture("pod-command.json");
    let (status, _) = conn
        .post("/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
}
