//! `helm lint` and `helm template` of charts/akv-env with a real helm, and checks on what it renders.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use chart_tests::helm::{Helm, kubernetes_validate};
use chart_tests::manifests::{of_kind, one, parse_documents, restricted_violations};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{Value as Json, json};

const RELEASE: &str = "akv";
const NAMESPACE: &str = "akv-system";
const FULLNAME: &str = "akv-akv-env";

fn helm() -> Helm {
    Helm::locate().unwrap_or_else(|e| panic!("{e}"))
}

fn render(sets: &[&str]) -> Vec<Json> {
    let yaml = helm()
        .template(RELEASE, NAMESPACE, sets)
        .unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    parse_documents(&yaml).unwrap_or_else(|e| panic!("{sets:?}: {e}"))
}

fn webhook(docs: &[Json]) -> &Json {
    let config = one(docs, "MutatingWebhookConfiguration");
    let hooks = config["webhooks"].as_array().expect("webhooks is a list");
    assert_eq!(hooks.len(), 1, "one webhook");
    &hooks[0]
}

fn strings(value: &Json) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .collect()
}

fn webhook_args(docs: &[Json]) -> Vec<String> {
    let deployment = one(docs, "Deployment");
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Value sets every test below also relies on: each must lint, render and validate.
const VALUE_SETS: &[(&str, &[&str])] = &[
    ("defaults (tls.mode=helm)", &[]),
    ("cert-manager with its own CA", &["tls.mode=cert-manager"]),
    (
        "cert-manager with a ClusterIssuer",
        &[
            "tls.mode=cert-manager",
            "tls.certManager.issuerRef.name=corp-ca",
            "tls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    ),
    (
        "user secret",
        &[
            "tls.mode=secret",
            "tls.secret.name=my-tls",
            "tls.secret.caBundle=Q0EK",
        ],
    ),
    (
        "everything optional on",
        &[
            "metrics.serviceMonitor.enabled=true",
            "webhook.defaultVault=myvault",
            "azureWorkloadIdentity.clientId=00000000-1111-2222-3333-444444444444",
            "imageLookup.insecureRegistries={127.0.0.1:5000}",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "webhook.timeoutSeconds=30",
            "imageLookup.timeoutSeconds=20",
        ],
    ),
    (
        "everything optional off",
        &[
            "guard.enabled=false",
            "imageLookup.enabled=false",
            "webhook.onlyPodsWithPlaceholders=false",
            "podDisruptionBudget.enabled=false",
            "replicaCount=1",
            "webhook.failurePolicy=Ignore",
        ],
    ),
];

#[test]
fn chart_lints_renders_and_validates_for_each_tls_mode_and_value_set() {
    let helm = helm();
    for (case, sets) in VALUE_SETS {
        helm.lint(sets).unwrap_or_else(|e| panic!("{case}: {e}"));
        let yaml = helm
            .template(RELEASE, NAMESPACE, sets)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        let docs = parse_documents(&yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        for kind in [
            "Deployment",
            "Service",
            "MutatingWebhookConfiguration",
            "ClusterRole",
            "ClusterRoleBinding",
            "ServiceAccount",
        ] {
            assert_eq!(of_kind(&docs, kind).len(), 1, "{case}: one {kind}");
        }
        let report = kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            report.contains("passed for resource deployment/"),
            "{case}: validator checked nothing:\n{report}"
        );
    }
}

#[test]
fn webhook_points_at_the_service_and_trusts_the_ca_that_signed_the_served_certificate() {
    let docs = render(&[]);
    let hook = webhook(&docs);
    let service = one(&docs, "Service");
    let target = &hook["clientConfig"]["service"];
    assert_eq!(target["name"], service["metadata"]["name"]);
    assert_eq!(target["namespace"], NAMESPACE);
    assert_eq!(service["metadata"]["namespace"], NAMESPACE);
    assert_eq!(target["path"], "/mutate");
    let https = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .expect("https port");
    assert_eq!(target["port"], https["port"]);
    assert_eq!(https["port"], 443);
    assert_eq!(https["targetPort"], "https");
    let deployment = one(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let container_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .unwrap();
    assert_eq!(container_port["containerPort"], 8443);
    assert!(webhook_args(&docs).contains(&"--listen=0.0.0.0:8443".to_owned()));
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &deployment["spec"]["template"]["metadata"]["labels"][key], value,
            "selector {key}"
        );
    }

    // The Secret the Deployment mounts holds a certificate the API server accepts for the
    // Service's DNS name, chained to exactly the caBundle of the webhook configuration.
    let secret = one(&docs, "Secret");
    let volume_secret =
        &deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"];
    assert_eq!(&secret["metadata"]["name"], volume_secret);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca_bundle = hook["clientConfig"]["caBundle"]
        .as_str()
        .expect("caBundle set in helm mode");
    assert_eq!(ca_bundle, secret["data"]["ca.crt"].as_str().unwrap());
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64")
    };
    let ca =
        CertificateDer::from_pem_slice(&decode(ca_bundle)).expect("caBundle is a PEM certificate");
    let leaf = CertificateDer::from_pem_slice(&decode(secret["data"]["tls.crt"].as_str().unwrap()))
        .expect("tls.crt PEM");
    assert!(
        String::from_utf8(decode(secret["data"]["tls.key"].as_str().unwrap()))
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    for name in [
        format!("{FULLNAME}.{NAMESPACE}.svc"),
        format!("{FULLNAME}.{NAMESPACE}"),
    ] {
        let server = ServerName::try_from(name.clone()).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &server, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("certificate not valid for {name}: {e}"));
    }
    let other = ServerName::try_from("other.akv-system.svc").unwrap();
    assert!(
        verifier
            .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
            .is_err(),
        "checker must reject a wrong name"
    );

    // Two renders without a cluster generate different CAs: the stability across upgrades comes
    // from `lookup`, which the template must use for exactly this Secret.
    let template = std::fs::read_to_string(
        chart_tests::helm::workspace_root().join("charts/akv-env/templates/mutatingwebhook.yaml"),
    )
    .unwrap();
    assert!(
        template.contains("lookup \"v1\" \"Secret\" .Release.Namespace $secretName"),
        "CA must be kept via lookup"
    );
}

#[test]
fn cert_manager_mode_injects_the_ca_of_the_certificate_the_webhook_serves() {
    let docs = render(&["tls.mode=cert-manager"]);
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "cert-manager writes the Secret, not helm"
    );
    let config = one(&docs, "MutatingWebhookConfiguration");
    let inject = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .expect("inject-ca-from");
    let (namespace, name) = inject.split_once('/').unwrap();
    assert_eq!(namespace, NAMESPACE);
    assert!(
        webhook(&docs)["clientConfig"].get("caBundle").is_none(),
        "cainjector owns caBundle"
    );
    let certificates = of_kind(&docs, "Certificate");
    let serving = certificates
        .iter()
        .find(|c| c["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Certificate {name}"));
    assert_eq!(serving["metadata"]["namespace"], NAMESPACE);
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        serving["spec"]["secretName"],
        deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
    );
    assert!(
        strings(&serving["spec"]["dnsNames"])
            .contains(&format!("{FULLNAME}.{NAMESPACE}.svc").as_str())
    );
    // Its issuer is a CA issuer backed by a CA Certificate from a self-signed issuer.
    let issuers = of_kind(&docs, "Issuer");
    let issuer_name = serving["spec"]["issuerRef"]["name"].as_str().unwrap();
    let issuer = issuers
        .iter()
        .find(|i| i["metadata"]["name"] == issuer_name)
        .expect("serving issuer rendered");
    let ca_secret = issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA issuer");
    let ca_cert = certificates
        .iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("CA Certificate");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root = ca_cert["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(
        issuers
            .iter()
            .any(|i| i["metadata"]["name"] == root && i["spec"].get("selfSigned").is_some())
    );

    // With the operator's own issuer, the chart creates no CA of its own.
    let docs = render(&[
        "tls.mode=cert-manager",
        "tls.certManager.issuerRef.name=corp-ca",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ]);
    assert!(of_kind(&docs, "Issuer").is_empty());
    let serving = one(&docs, "Certificate");
    assert_eq!(serving["spec"]["issuerRef"]["name"], "corp-ca");
    assert_eq!(serving["spec"]["issuerRef"]["kind"], "ClusterIssuer");
}

#[test]
fn secret_mode_uses_the_given_secret_and_ca_bundle_and_names_what_is_missing() {
    let docs = render(&[
        "tls.mode=secret",
        "tls.secret.name=my-tls",
        "tls.secret.caBundle=Q0EK",
    ]);
    assert!(of_kind(&docs, "Secret").is_empty() && of_kind(&docs, "Certificate").is_empty());
    assert_eq!(webhook(&docs)["clientConfig"]["caBundle"], "Q0EK");
    assert_eq!(
        one(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "my-tls"
    );
    let error = helm()
        .template(
            RELEASE,
            NAMESPACE,
            &["tls.mode=secret", "tls.secret.name=my-tls"],
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("/tls/secret/caBundle"), "{error}");
}

#[test]
fn namespace_selector_wants_the_label_and_excludes_own_and_system_namespaces() {
    for (sets, expected) in [
        (&[][..], &[NAMESPACE, "kube-system"][..]),
        (
            &["webhook.excludedNamespaces={kube-system,gatekeeper-system}"][..],
            &[NAMESPACE, "kube-system", "gatekeeper-system"][..],
        ),
        // The own namespace stays excluded even when the list is emptied.
        (&["webhook.excludedNamespaces=null"][..], &[NAMESPACE][..]),
    ] {
        let docs = render(sets);
        let selector = &webhook(&docs)["namespaceSelector"];
        assert_eq!(
            selector["matchLabels"],
            serde_json::json!({"azure-key-vault-env-injection": "enabled"})
        );
        let expressions = selector["matchExpressions"].as_array().unwrap();
        assert_eq!(expressions.len(), 1, "{sets:?}");
        assert_eq!(expressions[0]["key"], "kubernetes.io/metadata.name");
        assert_eq!(expressions[0]["operator"], "NotIn");
        let got: BTreeSet<&str> = strings(&expressions[0]["values"]).into_iter().collect();
        assert_eq!(got, expected.iter().copied().collect(), "{sets:?}");
        assert!(webhook(&docs).get("objectSelector").is_none());
    }
}

/// (resource, verbs) granted by the ClusterRole, sorted.
fn grants(docs: &[Json]) -> BTreeSet<(String, String)> {
    let role = one(docs, "ClusterRole");
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(strings(&rule["apiGroups"]), [""], "core API group only");
        assert!(rule.get("resourceNames").is_none());
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                out.insert((resource.to_owned(), verb.to_owned()));
            }
        }
    }
    out
}

#[test]
fn cluster_role_grants_only_what_the_webhook_reads() {
    let set = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(r, v)| (r.to_string(), v.to_string()))
            .collect::<BTreeSet<_>>()
    };
    let namespaces = [("namespaces", "get")];
    let mut with_secrets = namespaces.to_vec();
    with_secrets.extend([("secrets", "get"), ("serviceaccounts", "get")]);
    for (sets, expected) in [
        (&[][..], set(&with_secrets)),
        (&["imageLookup.pullSecrets=false"][..], set(&namespaces)),
        (&["imageLookup.enabled=false"][..], set(&namespaces)),
    ] {
        let docs = render(sets);
        assert_eq!(grants(&docs), expected, "{sets:?}");
        let binding = one(&docs, "ClusterRoleBinding");
        assert_eq!(
            binding["roleRef"]["name"],
            one(&docs, "ClusterRole")["metadata"]["name"]
        );
        assert_eq!(
            binding["subjects"][0]["name"],
            one(&docs, "ServiceAccount")["metadata"]["name"]
        );
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    assert!(of_kind(&render(&["rbac.create=false"]), "ClusterRole").is_empty());

    // Per-namespace grants instead of cluster-wide ones.
    let docs = render(&["rbac.pullSecretNamespaces={shop,payments}"]);
    assert_eq!(
        grants(&docs),
        set(&namespaces),
        "nothing cluster-wide on secrets"
    );
    let roles = of_kind(&docs, "Role");
    let bindings = of_kind(&docs, "RoleBinding");
    let in_ns = |docs: &[&Json]| -> Vec<String> {
        docs.iter()
            .map(|d| d["metadata"]["namespace"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(in_ns(&roles), ["shop", "payments"]);
    assert_eq!(in_ns(&bindings), ["shop", "payments"]);
    for (role, binding) in roles.iter().zip(&bindings) {
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}])
        );
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(
            binding["subjects"][0]["name"],
            one(&docs, "ServiceAccount")["metadata"]["name"]
        );
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    let docs = render(&[
        "rbac.pullSecretNamespaces={shop}",
        "imageLookup.pullSecrets=false",
    ]);
    assert!(of_kind(&docs, "Role").is_empty());
}

#[test]
fn deployment_passes_restricted_and_stays_available() {
    for (case, sets) in VALUE_SETS {
        let docs = render(sets);
        let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(restricted_violations(spec), Vec::<String>::new(), "{case}");
        assert_eq!(
            spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true,
            "{case}"
        );
    }
    let docs = render(&[]);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let spec = &deployment["spec"]["template"]["spec"];
    let spreads = spec["topologySpreadConstraints"].as_array().unwrap();
    assert!(
        spreads
            .iter()
            .any(|s| s["topologyKey"] == "kubernetes.io/hostname")
    );
    assert!(spec["affinity"]["podAntiAffinity"].is_object());
    let container = &spec["containers"][0];
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["port"], "http-metrics",
            "{probe} on the health port"
        );
    }
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        container["resources"]["requests"]["cpu"].is_string()
            && container["resources"]["limits"]["memory"].is_string()
    );
    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // One replica and a PDB with minAvailable 1 would block every node drain.
    assert!(of_kind(&render(&["replicaCount=1"]), "PodDisruptionBudget").is_empty());
}

#[test]
fn webhook_arguments_follow_values() {
    let args = webhook_args(&render(&[
        "webhook.defaultVault=myvault",
        "injector.image.repository=registry.example/akv-env",
        "injector.image.tag=1.2.3",
        "imageLookup.insecureRegistries={127.0.0.1:5000,reg:80}",
        "logging.format=text",
    ]));
    for expected in [
        "serve",
        "--injector-image=registry.example/akv-env:1.2.3",
        "--default-vault=myvault",
        "--image-lookup=true",
        "--insecure-registry=127.0.0.1:5000",
        "--insecure-registry=reg:80",
        "--log-format=text",
        "--tls-cert=/tls/tls.crt",
        "--tls-key=/tls/tls.key",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "missing {expected} in {args:?}"
        );
    }
    let args = webhook_args(&render(&[
        "imageLookup.enabled=false",
        "injector.image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ]));
    assert!(args.contains(&"--image-lookup=false".to_owned()));
    assert!(args.contains(&"--injector-image=ghcr.io/akv-env/akv-env@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned()), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--default-vault")));
    // Managed identity stays off and no vault suffix is added unless asked for.
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--allow-managed-identity")
                || a.starts_with("--vault-host-suffix")),
        "{args:?}"
    );
    let args = webhook_args(&render(&[
        "identity.allowManagedIdentity=true",
        "vaultHosts.extraSuffixes={vault.test,kv.example.org}",
    ]));
    for expected in [
        "--allow-managed-identity=true",
        "--vault-host-suffix=vault.test",
        "--vault-host-suffix=kv.example.org",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "missing {expected} in {args:?}"
        );
    }
}

#[test]
fn server_limits_follow_values() {
    let defaults = webhook_args(&render(&[]));
    for expected in [
        "--header-timeout=5s",
        "--body-timeout=5s",
        "--idle-timeout=90s",
        "--max-connections=1000",
        "--max-reviews=64",
        "--body-memory=67108864",
    ] {
        assert!(
            defaults.contains(&expected.to_owned()),
            "missing {expected} in {defaults:?}"
        );
    }
    let args = webhook_args(&render(&[
        "limits.headerTimeout=2s",
        "limits.maxConnections=50",
        "limits.bodyMemoryMiB=16",
    ]));
    for expected in [
        "--header-timeout=2s",
        "--max-connections=50",
        "--body-memory=16777216",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "missing {expected} in {args:?}"
        );
    }
}

#[test]
fn failure_policy_and_timeouts_follow_values_and_stay_inside_the_api_server_deadline() {
    for (sets, policy, timeout, admission, registry) in [
        (&[][..], "Fail", 10, "8s", "4s"),
        (
            &[
                "webhook.failurePolicy=Ignore",
                "webhook.timeoutSeconds=20",
                "imageLookup.timeoutSeconds=15",
            ][..],
            "Ignore",
            20,
            "18s",
            "15s",
        ),
    ] {
        let docs = render(sets);
        let hook = webhook(&docs);
        assert_eq!(hook["failurePolicy"], policy);
        assert_eq!(hook["timeoutSeconds"], timeout);
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
        assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(
            hook["rules"],
            serde_json::json!([{
                "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"
            }])
        );
        let args = webhook_args(&docs);
        assert!(
            args.contains(&format!("--admission-timeout={admission}")),
            "{args:?}"
        );
        assert!(
            args.contains(&format!("--registry-timeout={registry}")),
            "{args:?}"
        );
    }
    let error = helm()
        .template(RELEASE, NAMESPACE, &["webhook.timeoutSeconds=5"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("imageLookup.timeoutSeconds (4) must be shorter"),
        "{error}"
    );
}

#[test]
fn typos_and_bad_values_fail_the_schema_naming_the_key() {
    let helm = helm();
    for (set, expected) in [
        ("replicasCount=2", "'replicasCount' not allowed"),
        ("webhook.timeoutSecond=5", "'timeoutSecond' not allowed"),
        ("guard.enable=false", "'enable' not allowed"),
        ("image.tags=1", "'tags' not allowed"),
        ("tls.mode=helmm", "/tls/mode"),
        ("webhook.failurePolicy=fail", "/webhook/failurePolicy"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("webhook.defaultVault=1vault", "/webhook/defaultVault"),
        ("replicaCount=0", "/replicaCount"),
    ] {
        let error = helm
            .template(RELEASE, NAMESPACE, &[set])
            .expect_err(set)
            .to_string();
        assert!(
            error.contains("schema") && error.contains(expected),
            "{set}: {error}"
        );
        assert!(helm.lint(&[set]).is_err(), "{set}: lint must fail too");
    }
}

#[test]
fn workload_identity_and_service_monitor_are_wired_when_asked() {
    let docs = render(&[
        "azureWorkloadIdentity.clientId=00000000-1111-2222-3333-444444444444",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let account = one(&docs, "ServiceAccount");
    assert_eq!(
        account["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "00000000-1111-2222-3333-444444444444"
    );
    let deployment = one(&docs, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        account["metadata"]["name"]
    );
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let service = one(&docs, "Service");
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "http-metrics")
    );
    let docs = render(&[]);
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(
        one(&docs, "ServiceAccount")["metadata"]
            .get("annotations")
            .is_none()
    );
}

#[test]
fn deployment_args_are_accepted_by_the_webhook_cli() {
    use akv_env_webhook::cli::{Cli, Command};
    use clap::Parser as _;
    for (case, sets) in VALUE_SETS {
        let docs = render(sets);
        let mut argv = vec!["akv-env-webhook".to_owned()];
        argv.extend(webhook_args(&docs));
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{case}: {argv:?}: {e}"));
        let Command::Serve(serve) = cli.command else {
            panic!("{case}: not `serve`")
        };
        serve.validate().unwrap_or_else(|e| panic!("{case}: {e}"));
        let spec = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        let port = |name: &str| {
            spec["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap()["containerPort"]
                .clone()
        };
        assert_eq!(port("https"), serve.listen.port(), "{case}");
        assert_eq!(port("http-metrics"), serve.health_listen.port(), "{case}");
        let mount = spec["containers"][0]["volumeMounts"][0]["mountPath"]
            .as_str()
            .unwrap();
        assert!(
            serve.tls_cert.starts_with(mount) && serve.tls_key.starts_with(mount),
            "{case}"
        );
        let timeout = webhook(&docs)["timeoutSeconds"].as_u64().unwrap();
        assert!(
            serve.admission_timeout.as_secs() < timeout,
            "{case}: the webhook answers before the API server gives up"
        );
    }
}
