//! The webhook's reads from the Kubernetes API, against a stand-in API server (axum, the real
//! REST paths and object shapes) and a real basic-auth `docker-registry`: the namespace's vault
//! annotation (cached) and the service account's `imagePullSecrets`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use akv_env_webhook::lookup::Registries;
use akv_env_webhook::namespaces::KubeNamespaces;
use akv_env_webhook::selector::NamespaceSelector;
use akv_registry::{ImageResolver, RegistryOptions};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use common::{Connection, Options, Protocol, fixture, read_answer, start};
use registry_harness::{ImageSpec, TestRegistry};
use serde_json::{Value, json};

#[derive(Clone)]
struct Api {
    registry: String,
    namespace_reads: Arc<AtomicUsize>,
    /// Secret and ServiceAccount GETs.
    secret_reads: Arc<AtomicUsize>,
}

fn not_found(what: &str) -> Response {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    (StatusCode::NOT_FOUND, axum::Json(status)).into_response()
}

async fn namespace(State(api): State<Api>, Path(name): Path<String>) -> Response {
    api.namespace_reads.fetch_add(1, Ordering::SeqCst);
    if name == "burst" {
        // A slow API server: every review of a burst arrives while the first read is pending.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Only `shop` opted in.
    let labels = if name == "shop" {
        json!({"azure-key-vault-env-injection": "enabled"})
    } else {
        json!({})
    };
    axum::Json(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels, "annotations": {"akv-env.io/vault": "ns-default-kv"}}}))
    .into_response()
}

async fn service_account(
    State(api): State<Api>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    api.secret_reads.fetch_add(1, Ordering::SeqCst);
    if name != "builder" {
        return not_found("serviceaccount");
    }
    axum::Json(json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns},
        "imagePullSecrets": [{"name": "regcred"}, {"name": "missing"}]}))
    .into_response()
}

async fn secret(State(api): State<Api>, Path((ns, name)): Path<(String, String)>) -> Response {
    api.secret_reads.fetch_add(1, Ordering::SeqCst);
    // `opaque-cred` holds the right credentials under the right key, but is not a pull secret.
    let secret_type = match name.as_str() {
        "regcred" => "kubernetes.io/dockerconfigjson",
        "opaque-cred" => "Opaque",
        _ => return not_found("secret"),
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = json!({"auths": {api.registry.clone(): {"auth": b64("puller:correct horse")}}});
    axum::Json(
        json!({"apiVersion": "v1", "kind": "Secret", "type": secret_type,
        "metadata": {"name": name, "namespace": ns},
        "data": {".dockerconfigjson": b64(&config.to_string())}}),
    )
    .into_response()
}

async fn start_api(api: Api) -> kube::Client {
    let app = Router::new()
        .route("/api/v1/namespaces/{name}", get(namespace))
        .route(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
            get(service_account),
        )
        .route("/api/v1/namespaces/{ns}/secrets/{name}", get(secret))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn review(image: &str, service_account: &str) -> Value {
    let mut review = fixture("pod-no-command.json");
    let pod = &mut review["request"]["object"];
    pod["spec"]["containers"][0]["image"] = json!(image);
    pod["spec"]["containers"][0]["env"][0]["value"] = json!("db-password@azurekeyvault");
    pod["spec"]["serviceAccountName"] = json!(service_account);
    review
}

#[tokio::test]
async fn pull_secrets_and_namespace_defaults_come_from_the_api() {
    let registry = TestRegistry::start_with_basic_auth("puller", "correct horse").unwrap();
    registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/private/app"]),
            "private/app:1",
        )
        .unwrap();
    let namespace_reads = Arc::new(AtomicUsize::new(0));
    let client = start_api(Api {
        registry: registry.host(),
        namespace_reads: namespace_reads.clone(),
        secret_reads: Arc::default(),
    })
    .await;
    let resolver = ImageResolver::new(RegistryOptions {
        insecure_registries: vec![registry.host()],
        ..RegistryOptions::default()
    });
    let running = start(Options {
        entrypoints: Arc::new(Registries::new(resolver, Some(client.clone()))),
        namespaces: Arc::new(KubeNamespaces::new(
            client,
            Duration::from_secs(60),
            NamespaceSelector::default(),
        )),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http2).await;
    let image = registry.image("private/app:1");

    // The service account's pull secret opens the private image; the namespace names the vault.
    for _ in 0..2 {
        let review = review(&image, "builder");
        let answer = conn.review(&review).await;
        let pod = answer
            .patched
            .unwrap_or_else(|| panic!("{}\n{}", answer.response, registry.log()));
        let container = &pod["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["--", "/private/app"]));
        let env = container["env"].as_array().unwrap();
        let default = env
            .iter()
            .find(|e| e["name"] == "AKV_ENV_DEFAULT_VAULT")
            .unwrap();
        assert_eq!(default["value"], "ns-default-kv");
    }
    assert_eq!(
        namespace_reads.load(Ordering::SeqCst),
        1,
        "the namespace is cached"
    );

    // A service account without pull secrets: the registry refuses, and the pod is refused.
    let review = review(&image, "default");
    let answer = conn.review(&review).await;
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("refused access") && message.contains("set `command`"),
        "{message}"
    );
}

/// A Deployment scaling up in a namespace sends many reviews at once: they share one read of
/// the namespace (moka's single flight), not one each while the first is pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reviews_in_one_namespace_reads_it_once() {
    let namespace_reads = Arc::new(AtomicUsize::new(0));
    let client = start_api(Api {
        registry: String::new(),
        namespace_reads: namespace_reads.clone(),
        secret_reads: Arc::default(),
    })
    .await;
    let running = Arc::new(
        start(Options {
            namespaces: Arc::new(KubeNamespaces::new(
                client,
                Duration::from_secs(60),
                NamespaceSelector::default(),
            )),
            ..Options::default()
        })
        .await,
    );
    let mut review = fixture("pod-command.json");
    review["request"]["namespace"] = json!("burst");
    review["request"]["object"]["metadata"]["namespace"] = json!("burst");
    for container in ["initContainers", "containers"] {
        for c in review["request"]["object"]["spec"][container]
            .as_array_mut()
            .unwrap()
        {
            // No `?vault=`: the vault comes from the namespace's annotation.
            c["env"] = json!([{"name": "DB", "value": "db-password@azurekeyvault"}]);
        }
    }
    let reviews = (0..16).map(|_| {
        let (running, review) = (running.clone(), review.clone());
        tokio::spawn(async move {
            let mut conn =
                Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
            let (_, body) = conn
                .post("/mutate", serde_json::to_vec(&review).unwrap())
                .await;
            read_answer(&review, &body)
        })
    });
    for answer in futures::future::join_all(reviews).await {
        let pod = answer.unwrap().patched.expect("mutated");
        let env = pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .clone();
        assert!(
            env.iter()
                .any(|e| e["name"] == "AKV_ENV_DEFAULT_VAULT" && e["value"] == "ns-default-kv"),
            "{env:?}"
        );
    }
    assert_eq!(namespace_reads.load(Ordering::SeqCst), 1);
}

/// `/mutate` answers whoever reaches the Service, so a forged review can name any namespace and
/// any Secret. Secrets and ServiceAccounts are read only for pods that need an image lookup in a
/// namespace labelled for akv-env, only pull-secret types are used, and refusals do not say
/// whether a named Secret exists.
#[tokio::test]
async fn forged_reviews_read_no_secret() {
    let registry = TestRegistry::start_with_basic_auth("puller", "correct horse").unwrap();
    registry
        .push(
            &ImageSpec::linux("amd64").entrypoint(&["/private/app"]),
            "private/app:1",
        )
        .unwrap();
    let secret_reads = Arc::new(AtomicUsize::new(0));
    let client = start_api(Api {
        registry: registry.host(),
        namespace_reads: Arc::default(),
        secret_reads: secret_reads.clone(),
    })
    .await;
    let resolver = ImageResolver::new(RegistryOptions {
        insecure_registries: vec![registry.host()],
        ..RegistryOptions::default()
    });
    let running = start(Options {
        entrypoints: Arc::new(Registries::new(resolver, Some(client.clone()))),
        namespaces: Arc::new(KubeNamespaces::new(
            client,
            Duration::from_secs(60),
            NamespaceSelector::default(),
        )),
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http2).await;
    let image = registry.image("private/app:1");
    let mut send = async |review: &Value| {
        let (_, body) = conn
            .post("/mutate", serde_json::to_vec(review).unwrap())
            .await;
        read_answer(review, &body).response
    };

    // A namespace that did not opt in, naming a Secret that exists and one that does not.
    for secret in ["regcred", "no-such-secret"] {
        let mut forged = review(&image, "builder");
        forged["request"]["namespace"] = json!("payments");
        forged["request"]["object"]["metadata"]["namespace"] = json!("payments");
        forged["request"]["object"]["spec"]["imagePullSecrets"] = json!([{"name": secret}]);
        let response = send(&forged).await;
        assert_eq!(response["allowed"], false, "{response}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(
                "namespace payments is not selected by the webhook's namespace selector \
                 (azure-key-vault-env-injection=enabled)"
            ),
            "{message}"
        );
        assert!(!message.contains(secret), "{message}");
        assert_eq!(secret_reads.load(Ordering::SeqCst), 0, "{secret}: no read");
    }

    // An enabled namespace, but a pod with `command`: nothing to look up, nothing read.
    let mut with_command = fixture("pod-command.json");
    with_command["request"]["object"]["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    let response = send(&with_command).await;
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(
        secret_reads.load(Ordering::SeqCst),
        0,
        "a pod with command reads nothing"
    );

    // An enabled namespace and a Secret of type Opaque holding valid credentials: not used, and
    // the refusal reads the same as for a Secret that does not exist.
    let mut answers = Vec::new();
    for secret in ["opaque-cred", "no-such-secret"] {
        let mut review = review(&image, "default");
        review["request"]["object"]["spec"]["imagePullSecrets"] = json!([{"name": secret}]);
        let response = send(&review).await;
        assert_eq!(response["allowed"], false, "{secret}: {response}");
        let message = response["status"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains("refused access"), "{message}");
        assert!(!message.contains(secret), "{message}");
        answers.push(message);
    }
    assert_eq!(answers[0], answers[1], "existence is not revealed");
    assert!(
        secret_reads.load(Ordering::SeqCst) >= 2,
        "the enabled namespace's Secrets were read"
    );
}
