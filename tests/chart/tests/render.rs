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

/// Base64 of a PEM CA certificate (a throw-away self-signed P-256 CA, `openssl req -x509`; its key
/// was never kept): what `tls.secret.caBundle` must hold.
macro_rules! test_ca_bundle {
    () => {
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJsekNDQVQyZ0F3SUJBZ0lVVzdRcE1PdzB1MTRrRDZuQXRxT2pHWFVUVmZvd0NnWUlLb1pJemowRUF3SXcKSURFZU1Cd0dBMVVFQXd3VllXdDJMV1Z1ZGlCamFHRnlkQ0IwWlhOMElFTkJNQ0FYRFRJMk1URXlPVEEwTkRBMQpORm9ZRHpJeE1qWXhNVEExTURRME1EVTBXakFnTVI0d0hBWURWUVFEREJWaGEzWXRaVzUySUdOb1lYSjBJSFJsCmMzUWdRMEV3V1RBVEJnY3Foa2pPUFFJQkJnZ3Foa2pPUFFNQkJ3TkNBQVFPZzlJOExzOVdMNzgvcE5UZlE5R2IKWHdlWURObW4xcldKZzU1enNhbEpQeVQwNlBiTlErbFNXbHV6TnJXc01CbXBCaEhPclVGSGovT3Y4V0tyS1UvMApvMU13VVRBZEJnTlZIUTRFRmdRVXdxbm1LRVR3T3MzcDcwQk1YY2JDVU9ZckRpc3dId1lEVlIwakJCZ3dGb0FVCndxbm1LRVR3T3MzcDcwQk1YY2JDVU9ZckRpc3dEd1lEVlIwVEFRSC9CQVV3QXdFQi96QUtCZ2dxaGtqT1BRUUQKQWdOSUFEQkZBaUJ3WEJxL2VuL0c1VmN5WmlXaEhMeU9nZXZVM3o2ODRnaldNeDVZdkFMajBRSWhBS1NIR1FWVApNdzdVU0k4Nlp0MEpVSFluRlVDY09aVjhSVkRVRm4vRnJ0cVoKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
    };
}

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
            concat!("tls.secret.caBundle=", test_ca_bundle!()),
        ],
    ),
    (
        "everything optional on",
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.grafanaDashboard.enabled=true",
            "webhook.defaultVault=myvault",
            "azureWorkloadIdentity.clientId=00000000-1111-2222-3333-444444444444",
            "imageLookup.insecureRegistries={127.0.0.1:5000}",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "webhook.timeoutSeconds=30",
            "imageLookup.timeoutSeconds=20",
            "imageLookup.allowInternalAddresses=true",
            "imageLookup.proxy=http://proxy.example:3128",
            "networkPolicy.enabled=true",
            "networkPolicy.webhookFrom[0].ipBlock.cidr=10.224.0.0/28",
            "networkPolicy.metricsFrom[0].podSelector.matchLabels.app=prometheus",
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
        concat!("tls.secret.caBundle=", test_ca_bundle!()),
    ]);
    assert!(of_kind(&docs, "Secret").is_empty() && of_kind(&docs, "Certificate").is_empty());
    assert_eq!(
        webhook(&docs)["clientConfig"]["caBundle"],
        test_ca_bundle!()
    );
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
fn a_ca_bundle_that_is_not_a_pem_certificate_fails_to_render() {
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let not_der = b64("-----BEGIN CERTIFICATE-----\nQ0EK\n-----END CERTIFICATE-----\n");
    let key = b64("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n");
    for (case, bundle, schema) in [
        ("base64 of plain text", "Q0EK".to_owned(), false),
        ("a PEM armour around no DER", not_der, false),
        ("a private key", key, false),
        ("not base64", "not base64!".to_owned(), true),
    ] {
        let set = format!("tls.secret.caBundle={bundle}");
        let error = helm()
            .template(
                RELEASE,
                NAMESPACE,
                &["tls.mode=secret", "tls.secret.name=my-tls", &set],
            )
            .expect_err(case)
            .to_string();
        let want = if schema {
            "/tls/secret/caBundle"
        } else {
            "tls.secret.caBundle must be the base64 of a PEM CA certificate"
        };
        assert!(error.contains(want), "{case}: {error}");
    }
}

#[test]
fn pod_disruption_budget_never_blocks_a_drain_and_offers_max_unavailable() {
    enum Want {
        Min(Json),
        Max(Json),
        None,
        Fails(&'static str),
    }
    let min_fails = "must be less than replicaCount";
    let max_fails = "lets no webhook pod be evicted";
    for (sets, want) in [
        (&[][..], Want::Min(1.into())),
        (
            &["replicaCount=3", "podDisruptionBudget.minAvailable=2"][..],
            Want::Min(2.into()),
        ),
        (
            &["podDisruptionBudget.minAvailable=50%"][..],
            Want::Min("50%".into()),
        ),
        (
            &["podDisruptionBudget.minAvailable=2"][..],
            Want::Fails(min_fails),
        ),
        (
            &["podDisruptionBudget.minAvailable=60%"][..],
            Want::Fails(min_fails),
        ),
        (
            &["replicaCount=3", "podDisruptionBudget.minAvailable=3"][..],
            Want::Fails(min_fails),
        ),
        (
            &["podDisruptionBudget.maxUnavailable=1"][..],
            Want::Max(1.into()),
        ),
        (
            &[
                "podDisruptionBudget.minAvailable=2",
                "podDisruptionBudget.maxUnavailable=1",
            ][..],
            Want::Max(1.into()),
        ),
        (
            &["replicaCount=4", "podDisruptionBudget.maxUnavailable=25%"][..],
            Want::Max("25%".into()),
        ),
        (
            &["podDisruptionBudget.maxUnavailable=0"][..],
            Want::Fails(max_fails),
        ),
        (
            &["replicaCount=3", "podDisruptionBudget.maxUnavailable=30%"][..],
            Want::Fails(max_fails),
        ),
        (
            &["replicaCount=1", "podDisruptionBudget.minAvailable=1"][..],
            Want::None,
        ),
        (&["podDisruptionBudget.enabled=false"][..], Want::None),
    ] {
        let rendered = helm().template(RELEASE, NAMESPACE, sets);
        let spec = |docs: &[Json]| one(docs, "PodDisruptionBudget")["spec"].clone();
        match want {
            Want::Fails(message) => {
                let error = rendered.expect_err(&format!("{sets:?}")).to_string();
                assert!(error.contains(message), "{sets:?}: {error}");
                assert!(
                    error.contains("maxUnavailable"),
                    "{sets:?}: offers maxUnavailable: {error}"
                );
            }
            Want::None => {
                let docs = parse_documents(&rendered.unwrap()).unwrap();
                assert!(of_kind(&docs, "PodDisruptionBudget").is_empty(), "{sets:?}");
            }
            Want::Min(value) => {
                let yaml = rendered.unwrap();
                let spec = spec(&parse_documents(&yaml).unwrap());
                assert_eq!(spec["minAvailable"], value, "{sets:?}");
                assert!(spec.get("maxUnavailable").is_none(), "{sets:?}");
                kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
            }
            Want::Max(value) => {
                let yaml = rendered.unwrap();
                let spec = spec(&parse_documents(&yaml).unwrap());
                assert_eq!(spec["maxUnavailable"], value, "{sets:?}");
                assert!(spec.get("minAvailable").is_none(), "{sets:?}");
                kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
            }
        }
    }
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
        webhook_gets_the_same_selector(&docs);
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
    // Side by side with akv2k8s: another label, the akv2k8s one excluded explicitly, and an
    // object selector; the own namespace stays excluded.
    let docs = render(&[
        "webhook.namespaceSelector.matchLabels.azure-key-vault-env-injection=null",
        "webhook.namespaceSelector.matchLabels.akv-env\\.io/injection=enabled",
        "webhook.namespaceSelector.matchExpressions[0].key=azure-key-vault-env-injection",
        "webhook.namespaceSelector.matchExpressions[0].operator=DoesNotExist",
        "webhook.objectSelector.matchLabels.app=web",
    ]);
    let hook = webhook(&docs);
    assert_eq!(
        hook["namespaceSelector"]["matchLabels"],
        serde_json::json!({"akv-env.io/injection": "enabled"})
    );
    // The webhook's own check (before any Secret read) selects what the API server selects.
    let selector = webhook_gets_the_same_selector(&docs);
    let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let name = "kubernetes.io/metadata.name";
    assert!(selector.matches(&labels(&[
        ("akv-env.io/injection", "enabled"),
        (name, "shop")
    ])));
    for not_selected in [
        labels(&[
            ("azure-key-vault-env-injection", "enabled"),
            (name, "legacy"),
        ]),
        labels(&[
            ("akv-env.io/injection", "enabled"),
            ("azure-key-vault-env-injection", "enabled"),
            (name, "both"),
        ]),
        labels(&[("akv-env.io/injection", "enabled"), (name, NAMESPACE)]),
    ] {
        assert!(!selector.matches(&not_selected), "{not_selected:?}");
    }
    let expressions = hook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert_eq!(
        expressions[0],
        serde_json::json!({"key": "azure-key-vault-env-injection", "operator": "DoesNotExist"})
    );
    assert_eq!(expressions[1]["key"], "kubernetes.io/metadata.name");
    assert!(strings(&expressions[1]["values"]).contains(&NAMESPACE));
    assert_eq!(
        hook["objectSelector"],
        serde_json::json!({"matchLabels": {"app": "web"}})
    );
}

/// The webhook's `--namespace-selector` is the MutatingWebhookConfiguration's selector, and the
/// webhook's own parser accepts it.
fn webhook_gets_the_same_selector(docs: &[Json]) -> akv_env_webhook::selector::NamespaceSelector {
    let args = webhook_args(docs);
    let flag = args
        .iter()
        .find_map(|a| a.strip_prefix("--namespace-selector="))
        .unwrap_or_else(|| panic!("no --namespace-selector in {args:?}"));
    let rendered: Json = serde_json::from_str(flag).unwrap();
    assert_eq!(rendered, webhook(docs)["namespaceSelector"]);
    akv_env_webhook::selector::NamespaceSelector::parse(flag).unwrap()
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
    // The cloud is not pinned and namespaces choose none unless asked for.
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--cloud") || a.starts_with("--namespace-cloud")),
        "{args:?}"
    );
    let args = webhook_args(&render(&[
        "cloud.name=AzureChinaCloud",
        "cloud.namespaceChoices={AzureUSGovernment,vault.example.test}",
    ]));
    for expected in [
        "--cloud=AzureChinaCloud",
        "--namespace-cloud=AzureUSGovernment",
        "--namespace-cloud=vault.example.test",
    ] {
        assert!(
            args.contains(&expected.to_owned()),
            "missing {expected} in {args:?}"
        );
    }
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
fn registry_egress_flags_follow_values() {
    let args = webhook_args(&render(&[]));
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--registry-allow-internal-addresses")
                || a.starts_with("--registry-proxy")),
        "{args:?}"
    );
    let args = webhook_args(&render(&[
        "imageLookup.allowInternalAddresses=true",
        "imageLookup.proxy=http://proxy.example:3128",
    ]));
    for expected in [
        "--registry-allow-internal-addresses",
        "--registry-proxy=http://proxy.example:3128",
    ] {
        assert!(args.contains(&expected.to_owned()), "{expected}: {args:?}");
    }
}

/// The webhook container's env entries, by name.
fn webhook_env(docs: &[Json]) -> Vec<(String, String)> {
    one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn proxy_values_become_the_webhooks_proxy_variables() {
    let names =
        |docs: &[Json]| -> Vec<String> { webhook_env(docs).into_iter().map(|(n, _)| n).collect() };
    let none = names(&render(&[]));
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"] {
        assert!(
            !none.contains(&var.to_owned()),
            "{var} set by default: {none:?}"
        );
    }
    let no_proxy = "localhost\\,127.0.0.1\\,.svc\\,.cluster.local\\,10.0.0.0/16";
    let env = webhook_env(&render(&[
        "proxy.httpsProxy=http://proxy.corp:3128",
        "proxy.httpProxy=proxy.corp:3128",
        &format!("proxy.noProxy={no_proxy}"),
    ]));
    for (name, value) in [
        ("HTTPS_PROXY", "http://proxy.corp:3128"),
        ("HTTP_PROXY", "proxy.corp:3128"),
        (
            "NO_PROXY",
            "localhost,127.0.0.1,.svc,.cluster.local,10.0.0.0/16",
        ),
    ] {
        assert!(
            env.contains(&(name.to_owned(), value.to_owned())),
            "{name}={value}: {env:?}"
        );
    }
    // What the webhook makes of them is akv-proxy's; a SOCKS URL fails the schema already.
    let error = helm()
        .template(
            RELEASE,
            NAMESPACE,
            &["proxy.httpsProxy=socks5://proxy:1080"],
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("httpsProxy"), "{error}");
}

#[test]
fn network_policy_admits_only_the_configured_sources_to_each_port() {
    assert!(of_kind(&render(&[]), "NetworkPolicy").is_empty());
    let sets = [
        "networkPolicy.enabled=true",
        "networkPolicy.webhookFrom[0].ipBlock.cidr=10.224.0.0/28",
        "networkPolicy.webhookFrom[1].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=kube-system",
        "networkPolicy.webhookFrom[1].podSelector.matchLabels.app=konnectivity-agent",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    ];
    let yaml = helm().template(RELEASE, NAMESPACE, &sets).unwrap();
    kubernetes_validate(&yaml).unwrap();
    let docs = parse_documents(&yaml).unwrap();
    let policy = one(&docs, "NetworkPolicy");
    let pod_labels = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    for (key, value) in policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[key], value, "selects the webhook pods: {key}");
    }
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
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
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert_eq!(
        rules[0]["ports"],
        serde_json::json!([{"port": port("https"), "protocol": "TCP"}])
    );
    assert_eq!(
        rules[0]["from"],
        serde_json::json!([
            {"ipBlock": {"cidr": "10.224.0.0/28"}},
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"app": "konnectivity-agent"}}
            }
        ])
    );
    assert_eq!(
        rules[1]["ports"],
        serde_json::json!([{"port": port("http-metrics"), "protocol": "TCP"}])
    );
    assert_eq!(
        rules[1]["from"],
        serde_json::json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );

    // No metrics sources: the metrics port gets no rule, so nothing is admitted to it.
    let docs = render(&sets[..4]);
    let rules = one(&docs, "NetworkPolicy")["spec"]["ingress"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["ports"][0]["port"], port("https"));

    // Enabled with no source for the API server would lock it out: refused, naming the key.
    let error = helm()
        .template(RELEASE, NAMESPACE, &["networkPolicy.enabled=true"])
        .expect_err("no webhookFrom")
        .to_string();
    assert!(error.contains("networkPolicy.webhookFrom"), "{error}");
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
        ("imageLookup.proxy=proxy:3128", "/imageLookup/proxy"),
        ("cloud.name=AzureGermanCloud", "/cloud/name"),
        (
            "cloud.namespaceChoices={china}",
            "/cloud/namespaceChoices/0",
        ),
        ("cloud.region=cn", "'region' not allowed"),
        (
            "networkPolicy.webhookFrom[0].ipBlok.cidr=10.0.0.0/8",
            "'ipBlok' not allowed",
        ),
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

/// Every duration-valued key of the schema, with the grammar it must use.
const DURATION_KEYS: &[(&str, &str)] = &[
    ("/properties/imageLookup/properties/cacheTTL", "go"),
    (
        "/properties/tls/properties/certManager/properties/duration",
        "go",
    ),
    (
        "/properties/tls/properties/certManager/properties/renewBefore",
        "go",
    ),
    (
        "/properties/metrics/properties/serviceMonitor/properties/interval",
        "prometheus",
    ),
];

fn schema() -> Json {
    let path = chart_tests::helm::workspace_root().join("charts/akv-env/values.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn durations_mean_the_same_to_the_schema_the_chart_and_the_webhook() {
    let schema = schema();
    for (key, grammar) in DURATION_KEYS {
        let pattern = schema.pointer(&format!("{key}/pattern")).unwrap();
        if *grammar == "go" {
            assert_eq!(pattern, akv_duration::SCHEMA_PATTERN, "{key}");
        }
    }
    let go = regex::Regex::new(akv_duration::SCHEMA_PATTERN).unwrap();
    // The schema's pattern accepts exactly what the shared parser accepts.
    for text in [
        "10m", "1.5h", "1h30m", "90s", "500ms", "0", "0s", "+5s", ".5s", "1.s", "300us", "300µs",
        "300μs", "2m0.5s", "2160h", "90", "", "1.5d", "-1s", "5 s", " 5s", "1h-30m", ".s", "s",
        "1e3s", "0x10s", "1,5h",
    ] {
        assert_eq!(
            go.is_match(text),
            akv_duration::parse(text).is_ok() && text.trim() == text,
            "{text:?}: the schema and the binaries disagree"
        );
    }
    // Rendered through the real chart and read back by the real webhook CLI.
    use akv_env_webhook::cli::{Cli, Command};
    use clap::Parser as _;
    for (text, renders) in [
        ("1.5h", true),
        ("1h30m", true),
        ("90s", true),
        ("0.5m", true),
        ("300ms", true),
        ("0s", true),
        ("90", false),
        ("1.5d", false),
        ("-1m", false),
    ] {
        let set = format!("imageLookup.cacheTTL={text}");
        let rendered = helm().template(RELEASE, NAMESPACE, &[&set]);
        if !renders {
            let error = rendered.expect_err(text).to_string();
            assert!(error.contains("/imageLookup/cacheTTL"), "{text}: {error}");
            assert!(akv_duration::parse(text).is_err(), "{text}");
            continue;
        }
        let docs = parse_documents(&rendered.unwrap_or_else(|e| panic!("{text}: {e}"))).unwrap();
        let mut argv = vec!["akv-env-webhook".to_owned()];
        argv.extend(webhook_args(&docs));
        let Command::Serve(serve) = Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .command
        else {
            panic!("not serve")
        };
        assert_eq!(
            serve.registry.cache_ttl,
            akv_duration::parse(text).unwrap(),
            "{text}"
        );
    }
}

#[test]
fn extra_args_come_last_and_override_the_charts_own_flags() {
    use akv_env_webhook::cli::{Cli, Command};
    use clap::Parser as _;
    let docs = render(&[
        "imageLookup.insecureRegistries={reg:5000}",
        "webhook.extraArgs={--cache-ttl=1h,--registry-timeout=2s,--cache-capacity=5000,--insecure-registry=other:80,--image-lookup=false}",
    ]);
    let args = webhook_args(&docs);
    let chart_ttl = args.iter().position(|a| a == "--cache-ttl=10m").unwrap();
    let extra_ttl = args.iter().position(|a| a == "--cache-ttl=1h").unwrap();
    assert!(chart_ttl < extra_ttl, "{args:?}");
    let mut argv = vec!["akv-env-webhook".to_owned()];
    argv.extend(args);
    let Command::Serve(serve) = Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .command
    else {
        panic!("not serve")
    };
    assert_eq!(
        serve.registry.cache_ttl,
        std::time::Duration::from_secs(3600)
    );
    assert_eq!(
        serve.registry.registry_timeout,
        std::time::Duration::from_secs(2)
    );
    assert_eq!(serve.registry.cache_capacity, 5000);
    assert!(!serve.image_lookup);
    // Repeatable flags add up instead of replacing each other.
    assert_eq!(serve.registry.insecure_registry, ["reg:5000", "other:80"]);
    serve.validate().unwrap();
}

/// Every example the values file documents renders, validates, and parses with the real CLI.
#[test]
fn documented_value_examples_render_and_parse() {
    use akv_env_webhook::cli::{Cli, Command};
    use clap::Parser as _;
    for sets in [
        &["webhook.extraArgs={--cache-capacity=5000}"][..],
        &["imageLookup.cacheTTL=10m"][..],
        &["imageLookup.cacheTTL=1.5h"][..],
        &["imageLookup.cacheTTL=1h30m"][..],
        &["imageLookup.cacheTTL=90s"][..],
        &["webhook.defaultVault=myvault"][..],
        &["webhook.defaultVault=https://myvault.vault.azure.cn"][..],
        &[
            "tls.mode=cert-manager",
            "tls.certManager.duration=2160h",
            "tls.certManager.renewBefore=360h",
        ][..],
        &["logging.format=text"][..],
        &["podDisruptionBudget.maxUnavailable=1"][..],
    ] {
        let yaml = helm()
            .template(RELEASE, NAMESPACE, sets)
            .unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        let docs = parse_documents(&yaml).unwrap();
        let mut argv = vec!["akv-env-webhook".to_owned()];
        argv.extend(webhook_args(&docs));
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        let Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        serve.validate().unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    }
}

/// The README's values table is generated from values.yaml; regenerate it with
/// `AKV_ENV_UPDATE_CHART_README=1 cargo nextest run -p chart-tests values_table`.
#[test]
fn chart_readme_values_table_is_generated_from_values_yaml() {
    use chart_tests::values_doc::{replace_table, rows, table};
    let chart = chart_tests::helm::workspace_root().join("charts/akv-env");
    let values = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    let readme_path = chart.join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let rows = rows(&values).unwrap_or_else(|e| panic!("{e}"));
    // Every key the schema knows at the top level is documented (directly or below it).
    for key in schema()["properties"].as_object().unwrap().keys() {
        if key == "global" {
            continue;
        }
        assert!(
            rows.iter()
                .any(|r| r.key == *key || r.key.starts_with(&format!("{key}."))),
            "values.yaml has no `# --` description for {key}"
        );
    }
    let wanted = replace_table(&readme, &table(&rows)).expect("README has a ## Values table");
    if std::env::var_os("AKV_ENV_UPDATE_CHART_README").is_some() {
        std::fs::write(&readme_path, &wanted).unwrap();
    } else {
        assert!(
            readme == wanted,
            "charts/akv-env/README.md's values table is stale: run AKV_ENV_UPDATE_CHART_README=1 cargo nextest run -p chart-tests values_table"
        );
    }
}
