//! The chart's admission CEL, evaluated with the `cel` crate against tables of pods and held equal
//! to the Rust grammar (`akv_placeholder::is_placeholder`) and to what the webhook's mutation does:
//! - the ValidatingAdmissionPolicy "placeholder guard" denies a pod iff some container or init
//!   container has a placeholder env value and is not wrapped by the injector;
//! - the webhook's `matchConditions` send a pod to the webhook iff it has a placeholder at all or
//!   reads a ConfigMap (which may hold one; the webhook wraps such containers).

use akv_placeholder::is_placeholder;
use chart_tests::cel_eval::{Decision, MatchConditions, Policy};
use chart_tests::helm::Helm;
use chart_tests::manifests::{of_kind, one, parse_documents};
use serde_json::{Value as Json, json};

const NAMESPACE: &str = "akv-system";
/// Where the webhook puts the injector; the chart's guard treats `command[0] == this`, with a
/// read-only mount of the installer's volume at its directory, as wrapped.
const INJECTOR: &str = "/akv-env/bin/akv-env";
const INJECTOR_DIR: &str = "/akv-env/bin";
/// akv2k8s' env injector, as its webhook rewrites commands: the guard leaves such pods alone.
const AKV2K8S: &str = "/azure-keyvault/azure-keyvault-env";
/// The injector image the charts below are rendered with.
const INJECTOR_IMAGE: &str = "registry.example/akv-env:v1";
const IMAGE_SETS: [&str; 2] = [
    "injector.image.repository=registry.example/akv-env",
    "injector.image.tag=v1",
];

fn render(sets: &[&str]) -> Vec<Json> {
    let helm = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    let yaml = helm
        .template("akv", NAMESPACE, sets)
        .unwrap_or_else(|e| panic!("{e}"));
    parse_documents(&yaml).unwrap()
}

struct Chart {
    guard: Policy,
    conditions: MatchConditions,
}

fn chart() -> Chart {
    let docs = render(&IMAGE_SETS);
    let guard = Policy::from_manifest(one(&docs, "ValidatingAdmissionPolicy"))
        .unwrap_or_else(|e| panic!("{e}"));
    let hook = &one(&docs, "MutatingWebhookConfiguration")["webhooks"][0];
    let conditions = MatchConditions::from_webhook(hook).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !conditions.is_empty(),
        "onlyPodsWithPlaceholders is on by default"
    );
    Chart { guard, conditions }
}

/// A container: env entries are (name, Some(literal value)) or (name, None) for `valueFrom`.
fn container(name: &str, command: Option<&[&str]>, env: &[(&str, Option<&str>)]) -> Json {
    let mut c = json!({"name": name, "image": "registry.example/app:1"});
    if let Some(command) = command {
        c["command"] = json!(command);
    }
    if !env.is_empty() {
        c["env"] = env
            .iter()
            .map(|(n, v)| match v {
                Some(v) => json!({"name": n, "value": v}),
                None => {
                    json!({"name": n, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
                }
            })
            .collect();
    }
    c
}

fn sidecar(mut c: Json) -> Json {
    c["restartPolicy"] = json!("Always");
    c
}

/// A pod as written; nothing added.
fn raw_pod(containers: Vec<Json>, init: Vec<Json>) -> Json {
    let mut spec = json!({"containers": containers});
    if !init.is_empty() {
        spec["initContainers"] = json!(init);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "apps"}, "spec": spec})
}

/// The webhook's install init container and volume, as `akv-mutation` writes them.
fn installer() -> Json {
    json!({"name": "akv-env-install", "image": INJECTOR_IMAGE,
           "command": ["/akv-env", "install", "/install"],
           "volumeMounts": [{"name": "akv-env", "mountPath": "/install"}]})
}

fn injector_mount() -> Json {
    json!({"name": "akv-env", "mountPath": INJECTOR_DIR, "readOnly": true})
}

/// A pod where every container whose command is the injector is wired as the webhook does: a
/// read-only mount of the volume the install init container fills.
fn pod(mut containers: Vec<Json>, mut init: Vec<Json>) -> Json {
    let mut wired = false;
    for c in containers.iter_mut().chain(init.iter_mut()) {
        if c["command"][0] == INJECTOR {
            c["volumeMounts"] = json!([injector_mount()]);
            wired = true;
        }
    }
    if wired {
        init.insert(0, installer());
    }
    let mut pod = raw_pod(containers, init);
    if wired {
        pod["spec"]["volumes"] = json!([{"name": "akv-env", "emptyDir": {"medium": "Memory"}}]);
    }
    pod
}

/// The Rust side of "wrapped": the injector as program, read-only from a volume an installer
/// (the configured image running `/akv-env install`) fills.
fn wrapped(pod: &Json, c: &Json) -> bool {
    let installers: Vec<&Json> = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| {
            i["image"] == INJECTOR_IMAGE
                && i["command"][0] == "/akv-env"
                && i["command"][1] == "install"
        })
        .collect();
    c["command"][0] == INJECTOR
        && c["volumeMounts"].as_array().into_iter().flatten().any(|m| {
            m["mountPath"] == INJECTOR_DIR
                && m["readOnly"] == true
                && installers.iter().any(|i| {
                    i["volumeMounts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|n| n["name"] == m["name"])
                })
        })
}

/// The Rust side of the rule: names of containers that would start with a raw placeholder.
fn unwrapped_with_placeholder(pod: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let wrapped = wrapped(pod, c) || c["command"][0] == AKV2K8S;
            let has = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["value"].as_str().is_some_and(is_placeholder));
            if has && !wrapped {
                out.push(c["name"].as_str().unwrap().to_owned());
            }
        }
    }
    out
}

fn has_placeholder(pod: &Json) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        pod["spec"][list].as_array().into_iter().flatten().any(|c| {
            let env = || c["env"].as_array().into_iter().flatten();
            env().any(|e| e["value"].as_str().is_some_and(is_placeholder))
                || env().any(|e| e["valueFrom"].get("configMapKeyRef").is_some())
                || c["envFrom"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|f| f.get("configMapRef").is_some())
        })
    })
}

/// Checks one pod: the CEL decision, the Rust rule and the expected outcome all agree.
fn check(chart: &Chart, case: &str, pod: &Json, denied: &[&str]) {
    let rust = unwrapped_with_placeholder(pod);
    assert_eq!(
        rust, denied,
        "{case}: the table disagrees with the Rust grammar"
    );
    let decision = chart
        .guard
        .evaluate(pod, "apps")
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    match (&decision, denied.is_empty()) {
        (Decision::Allowed, true) => {}
        (Decision::Denied(message), false) => {
            assert!(
                message.starts_with(&format!("container(s) {} would start", denied.join(", "))),
                "{case}: {message}"
            );
            for needle in [
                "label namespace apps",
                "azure-key-vault-env-injection=enabled",
                "webhook in namespace akv-system is running",
            ] {
                assert!(
                    message.contains(needle),
                    "{case}: message lacks {needle:?}: {message}"
                );
            }
        }
        _ => panic!("{case}: CEL says {decision:?}, expected denied = {denied:?}"),
    }
    let sent = chart
        .conditions
        .matches(pod)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(
        sent,
        has_placeholder(pod),
        "{case}: matchConditions disagree with is_placeholder"
    );
}

const PH: &str = "db-password@azurekeyvault";

#[test]
fn guard_denies_exactly_the_pods_that_would_start_with_raw_placeholders() {
    let chart = chart();
    let wrapped: &[&str] = &[INJECTOR];
    let cases: Vec<(&str, Json, Vec<&str>)> = vec![
        (
            "no env at all",
            pod(vec![container("app", None, &[])], vec![]),
            vec![],
        ),
        (
            "plain values",
            pod(
                vec![container("app", None, &[("A", Some("x")), ("B", Some(""))])],
                vec![],
            ),
            vec![],
        ),
        (
            "unlabelled namespace, placeholder",
            pod(vec![container("app", None, &[("DB", Some(PH))])], vec![]),
            vec!["app"],
        ),
        (
            "placeholder with query",
            pod(
                vec![container(
                    "app",
                    None,
                    &[("DB", Some("db@azurekeyvault?vault=v&type=secret"))],
                )],
                vec![],
            ),
            vec!["app"],
        ),
        (
            "valueFrom is never a placeholder",
            pod(vec![container("app", None, &[("DB", None)])], vec![]),
            vec![],
        ),
        (
            "wrapped by the webhook",
            pod(
                vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                vec![],
            ),
            vec![],
        ),
        (
            "other command",
            pod(
                vec![container("app", Some(&["/bin/app"]), &[("DB", Some(PH))])],
                vec![],
            ),
            vec!["app"],
        ),
        (
            "injector not first",
            pod(
                vec![container(
                    "app",
                    Some(&["/bin/sh", INJECTOR]),
                    &[("DB", Some(PH))],
                )],
                vec![],
            ),
            vec!["app"],
        ),
        (
            "one wrapped, one not",
            pod(
                vec![
                    container("a", Some(wrapped), &[("DB", Some(PH))]),
                    container("b", None, &[("X", Some("y")), ("DB", Some(PH))]),
                ],
                vec![],
            ),
            vec!["b"],
        ),
        (
            "init container",
            pod(
                vec![container("app", None, &[])],
                vec![container("migrate", None, &[("DB", Some(PH))])],
            ),
            vec!["migrate"],
        ),
        (
            "init container wrapped",
            pod(
                vec![container("app", None, &[])],
                vec![container("migrate", Some(wrapped), &[("DB", Some(PH))])],
            ),
            vec![],
        ),
        (
            "native sidecar",
            pod(
                vec![container("app", None, &[])],
                vec![sidecar(container("proxy", None, &[("T", Some(PH))]))],
            ),
            vec!["proxy"],
        ),
        (
            "native sidecar wrapped",
            pod(
                vec![container("app", None, &[])],
                vec![sidecar(container(
                    "proxy",
                    Some(wrapped),
                    &[("T", Some(PH))],
                ))],
            ),
            vec![],
        ),
        (
            "containers before init containers in the message",
            pod(
                vec![
                    container("app", None, &[("DB", Some(PH))]),
                    container("web", None, &[("DB", Some(PH))]),
                ],
                vec![container("init", None, &[("DB", Some(PH))])],
            ),
            vec!["app", "web", "init"],
        ),
        (
            "look-alike: e-mail",
            pod(
                vec![container(
                    "app",
                    None,
                    &[("MAIL", Some("ops@azurekeyvault.example.com"))],
                )],
                vec![],
            ),
            vec![],
        ),
        (
            "look-alike: case",
            pod(
                vec![container("app", None, &[("V", Some("db@AzureKeyVault"))])],
                vec![],
            ),
            vec![],
        ),
        (
            "look-alike: trailing space",
            pod(
                vec![container("app", None, &[("V", Some("db@azurekeyvault "))])],
                vec![],
            ),
            vec![],
        ),
        (
            "look-alike: suffix after '?'",
            pod(
                vec![container(
                    "app",
                    None,
                    &[("V", Some("https://x/?next=db@azurekeyvault"))],
                )],
                vec![],
            ),
            vec![],
        ),
        (
            "look-alike: no '@'",
            pod(
                vec![container("app", None, &[("V", Some("azurekeyvault"))])],
                vec![],
            ),
            vec![],
        ),
        (
            "forged: injector command alone (no mount, no installer)",
            raw_pod(
                vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                vec![],
            ),
            vec!["app"],
        ),
        (
            "forged: status annotation and command, no installer",
            {
                let mut p = raw_pod(
                    vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                    vec![],
                );
                p["metadata"]["annotations"] = json!({"akv-env.io/status": "injected"});
                p["spec"]["containers"][0]["volumeMounts"] = json!([injector_mount()]);
                p["spec"]["volumes"] = json!([{"name": "akv-env", "emptyDir": {}}]);
                p
            },
            vec!["app"],
        ),
        (
            "forged: installer from another image",
            {
                let mut p = pod(
                    vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                    vec![],
                );
                p["spec"]["initContainers"][0]["image"] = json!("evil.example/akv-env:1");
                p
            },
            vec!["app"],
        ),
        (
            "forged: mount not read-only",
            {
                let mut p = pod(
                    vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                    vec![],
                );
                p["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = json!(false);
                p
            },
            vec!["app"],
        ),
        (
            "forged: mount of another volume than the installer's",
            {
                let mut p = pod(
                    vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                    vec![],
                );
                p["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("tools");
                p
            },
            vec!["app"],
        ),
        (
            "forged: mount at another path",
            {
                let mut p = pod(
                    vec![container("app", Some(wrapped), &[("DB", Some(PH))])],
                    vec![],
                );
                p["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = json!("/akv-env");
                p
            },
            vec!["app"],
        ),
        (
            "wrapped by akv2k8s during a migration",
            pod(
                vec![container(
                    "app",
                    Some(&[AKV2K8S, "/app"]),
                    &[("DB", Some("db@azurekeyvault?tls.crt"))],
                )],
                vec![container("init", Some(&[AKV2K8S]), &[("DB", Some(PH))])],
            ),
            vec![],
        ),
        (
            "akv2k8s' binary elsewhere than command[0] is not a wrapper",
            pod(
                vec![container(
                    "app",
                    Some(&["/bin/sh", AKV2K8S]),
                    &[("DB", Some(PH))],
                )],
                vec![],
            ),
            vec!["app"],
        ),
        (
            "bare suffix counts (the webhook refuses its empty name)",
            pod(
                vec![container("app", None, &[("V", Some("@azurekeyvault"))])],
                vec![],
            ),
            vec!["app"],
        ),
        (
            // The webhook wraps it (the map may hold a placeholder); the guard cannot read the
            // map, and a ConfigMap without placeholders is no reason to refuse a pod.
            "reads a ConfigMap: sent to the webhook, not denied",
            pod(
                vec![{
                    let mut c = container("app", None, &[]);
                    c["envFrom"] = json!([{"configMapRef": {"name": "cm"}}]);
                    c
                }],
                vec![{
                    let mut c = container("init", None, &[]);
                    c["env"] = json!([{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]);
                    c
                }],
            ),
            vec![],
        ),
        (
            "a composed reference in an unwrapped container: its placeholder var is denied",
            pod(
                vec![container(
                    "app",
                    Some(&["/app", "--password=$(DB)"]),
                    &[("DB", Some(PH)), ("URL", Some("postgres://u:$(DB)@db"))],
                )],
                vec![],
            ),
            vec!["app"],
        ),
    ];
    for (case, pod, denied) in &cases {
        check(&chart, case, pod, denied);
    }
}

/// Strings built from the pieces that matter to the rule, every sequence up to three pieces:
/// the CEL test and `is_placeholder` must agree on each.
#[test]
fn cel_placeholder_test_equals_the_rust_grammar_on_generated_values() {
    let chart = chart();
    let pieces = [
        "",
        "a",
        "@",
        "?",
        "=",
        "@azurekeyvault",
        "azurekeyvault",
        "@AZUREKEYVAULT",
        "?vault=v",
        "\n",
        "é",
        " ",
    ];
    let mut values = Vec::new();
    for a in pieces {
        for b in pieces {
            for c in pieces {
                values.push(format!("{a}{b}{c}"));
            }
        }
    }
    values.sort();
    values.dedup();
    let mut placeholders = 0;
    for value in &values {
        let pod = pod(vec![container("app", None, &[("V", Some(value))])], vec![]);
        let expected = is_placeholder(value);
        placeholders += usize::from(expected);
        assert_eq!(
            chart.conditions.matches(&pod).unwrap(),
            expected,
            "matchConditions on {value:?}"
        );
        let denied = chart.guard.evaluate(&pod, "apps").unwrap() != Decision::Allowed;
        assert_eq!(denied, expected, "guard on {value:?}");
    }
    // The generator must produce both kinds, or the comparison proves nothing.
    assert!(
        placeholders > 50 && placeholders < values.len() - 50,
        "{placeholders} of {}",
        values.len()
    );
}

#[test]
fn pods_mutated_by_the_webhook_pass_the_guard() {
    let chart = chart();
    let mut config = akv_mutation::Config::new(INJECTOR_IMAGE);
    config.default_vault = Some(akv_placeholder::Vault::parse("myvault").unwrap());
    assert_eq!(
        config.injector_path(),
        INJECTOR,
        "the guard's notion of 'wrapped' is the webhook's"
    );
    let command: &[&str] = &["/bin/app"];
    let pods = [
        pod(
            vec![container("app", Some(command), &[("DB", Some(PH))])],
            vec![],
        ),
        pod(
            vec![
                container("app", Some(command), &[("DB", Some(PH)), ("X", Some("y"))]),
                container("plain", Some(command), &[]),
            ],
            vec![sidecar(container(
                "proxy",
                Some(command),
                &[("T", Some("token@azurekeyvault?vault=other"))],
            ))],
        ),
    ];
    for (i, original) in pods.iter().enumerate() {
        assert!(
            chart.guard.evaluate(original, "apps").unwrap() != Decision::Allowed,
            "pod {i} unmutated is denied"
        );
        let plan =
            akv_mutation::plan(original, None, &config).unwrap_or_else(|e| panic!("pod {i}: {e}"));
        let mutation = plan
            .patch(&Default::default())
            .unwrap_or_else(|e| panic!("pod {i}: {e}"));
        let mut mutated = original.clone();
        json_patch::patch(&mut mutated, &mutation.patch).unwrap();
        assert_eq!(
            chart.guard.evaluate(&mutated, "apps").unwrap(),
            Decision::Allowed,
            "pod {i} after mutation: {mutated}"
        );
        assert!(
            chart.conditions.matches(&mutated).unwrap(),
            "reinvocation still reaches the webhook"
        );
    }
}

#[test]
fn guard_is_optional_and_never_checks_excluded_namespaces() {
    assert!(
        of_kind(
            &render(&["guard.enabled=false"]),
            "ValidatingAdmissionPolicy"
        )
        .is_empty()
    );
    assert!(
        of_kind(
            &render(&["guard.enabled=false"]),
            "ValidatingAdmissionPolicyBinding"
        )
        .is_empty()
    );
    let docs = render(&[
        "guard.excludedNamespaces={kube-system,kube-node-lease}",
        "guard.failurePolicy=Ignore",
    ]);
    let policy = one(&docs, "ValidatingAdmissionPolicy");
    let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    assert_eq!(policy["spec"]["failurePolicy"], "Ignore");
    assert_eq!(
        binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"],
        json!([{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-node-lease"]}])
    );
    assert_eq!(
        policy["spec"]["matchConstraints"]["resourceRules"],
        json!([
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods/ephemeralcontainers"]},
        ])
    );
    // The placeholder test is written once: both places render the same text from one template.
    let webhook = &one(&docs, "MutatingWebhookConfiguration")["webhooks"][0];
    let test = "e.value.split('?', 2)[0].endsWith('@azurekeyvault')";
    assert!(
        webhook["matchConditions"][0]["expression"]
            .as_str()
            .unwrap()
            .contains(test)
    );
    assert!(
        policy["spec"]["variables"][2]["expression"]
            .as_str()
            .unwrap()
            .contains(test)
    );
    let helpers = std::fs::read_to_string(
        chart_tests::helm::workspace_root()
            .join("charts/akv-env/templates")
            .join("_helpers.tpl"),
    )
    .unwrap();
    let templates: String = ["mutatingwebhook.yaml", "placeholder-guard.yaml"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(
                chart_tests::helm::workspace_root()
                    .join("charts/akv-env/templates")
                    .join(f),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(
        helpers.matches("@azurekeyvault')").count(),
        1,
        "one definition"
    );
    assert!(
        !templates.contains("@azurekeyvault')"),
        "templates include the helper instead of repeating it"
    );
    // Without matchConditions, every pod of a labelled namespace goes to the webhook.
    let docs = render(&["webhook.onlyPodsWithPlaceholders=false"]);
    let webhook = &one(&docs, "MutatingWebhookConfiguration")["webhooks"][0];
    assert!(MatchConditions::from_webhook(webhook).unwrap().is_empty());
}

/// `kubectl debug` adds ephemeral containers with an UPDATE of `pods/ephemeralcontainers`; the
/// webhook never wraps them, so one with a placeholder is refused unless it is wired to the
/// injector the pod already has. Pods created before the guard stay debuggable.
#[test]
fn ephemeral_containers_with_placeholders_are_refused() {
    let chart = chart();
    let update =
        json!({"namespace": "apps", "operation": "UPDATE", "subResource": "ephemeralcontainers"});
    let injector: &[&str] = &[INJECTOR];
    let mutated = pod(
        vec![container("app", Some(injector), &[("DB", Some(PH))])],
        vec![],
    );
    let with_debug = |debug: Json| {
        let mut p = mutated.clone();
        p["spec"]["ephemeralContainers"] = json!([debug]);
        p
    };
    let mut wired_debug = container("debug", Some(injector), &[("DB", Some(PH))]);
    wired_debug["volumeMounts"] = json!([injector_mount()]);
    let old_unwrapped = raw_pod(vec![container("legacy", None, &[("DB", Some(PH))])], vec![]);
    let cases: Vec<(&str, Json, Vec<&str>)> = vec![
        (
            "plain debug container",
            with_debug(container("debug", None, &[("X", Some("y"))])),
            vec![],
        ),
        (
            "debug container with a placeholder",
            with_debug(container("debug", Some(&["/bin/sh"]), &[("DB", Some(PH))])),
            vec!["debug"],
        ),
        (
            "debug container with the injector command alone",
            with_debug(container("debug", Some(injector), &[("DB", Some(PH))])),
            vec!["debug"],
        ),
        (
            "debug container wired to the pod's injector",
            with_debug(wired_debug),
            vec![],
        ),
        (
            "a pod from before the guard gets a plain debug container",
            {
                let mut p = old_unwrapped.clone();
                p["spec"]["ephemeralContainers"] = json!([container("debug", None, &[])]);
                p
            },
            vec![],
        ),
    ];
    for (case, pod, denied) in &cases {
        let rust: Vec<String> = pod["spec"]["ephemeralContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                !wrapped(pod, c)
                    && c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| e["value"].as_str().is_some_and(is_placeholder))
            })
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            rust, *denied,
            "{case}: the table disagrees with the Rust rule"
        );
        let decision = chart
            .guard
            .evaluate_request(pod, &update)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        match (&decision, denied.is_empty()) {
            (Decision::Allowed, true) => {}
            (Decision::Denied(message), false) => assert!(
                message.starts_with(&format!("container(s) {} would start", denied.join(", "))),
                "{case}: {message}"
            ),
            _ => panic!("{case}: CEL says {decision:?}, expected denied = {denied:?}"),
        }
        // The same pod created with that ephemeral container (the API server refuses that
        // anyway) is judged alike.
        let created = chart.guard.evaluate(pod, "apps").unwrap();
        assert_eq!(
            created != Decision::Allowed,
            !denied.is_empty()
                || *case == "a pod from before the guard gets a plain debug container",
            "{case} at CREATE"
        );
    }
}

#[test]
fn guard_can_warn_or_audit_during_a_migration_and_follows_the_namespace_selector() {
    for (sets, actions) in [
        (&[][..], json!(["Deny"])),
        (&["guard.validationActions={Warn}"][..], json!(["Warn"])),
        (
            &["guard.validationActions={Warn,Audit}"][..],
            json!(["Warn", "Audit"]),
        ),
        (&["guard.validationActions={Audit}"][..], json!(["Audit"])),
    ] {
        let docs = render(sets);
        let binding = one(&docs, "ValidatingAdmissionPolicyBinding");
        assert_eq!(binding["spec"]["validationActions"], actions, "{sets:?}");
    }
    let helm = Helm::locate().unwrap();
    let error = helm
        .template("akv", NAMESPACE, &["guard.validationActions={Deny,Warn}"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Deny and Warn cannot be combined"),
        "{error}"
    );
    for (bad, want) in [
        (
            "guard.validationActions={Block}",
            "/guard/validationActions",
        ),
        (
            "guard.validationActions=null",
            "guard.validationActions must list Deny",
        ),
    ] {
        let error = helm
            .template("akv", NAMESPACE, &[bad])
            .unwrap_err()
            .to_string();
        assert!(error.contains(want), "{bad}: {error}");
    }

    // With the migration label, the guard's message names that label.
    let docs = render(&[
        "webhook.namespaceSelector.matchLabels.azure-key-vault-env-injection=null",
        "webhook.namespaceSelector.matchLabels.akv-env\\.io/injection=enabled",
    ]);
    let guard = Policy::from_manifest(one(&docs, "ValidatingAdmissionPolicy")).unwrap();
    let bare = pod(vec![container("app", None, &[("DB", Some(PH))])], vec![]);
    let Decision::Denied(message) = guard.evaluate(&bare, "apps").unwrap() else {
        panic!("denied")
    };
    assert!(
        message.contains("with akv-env.io/injection=enabled,"),
        "{message}"
    );
    // Without the akv2k8s exemption, its pods are refused like any other.
    let docs = render(&["guard.allowAkv2k8sWrapped=false"]);
    let guard = Policy::from_manifest(one(&docs, "ValidatingAdmissionPolicy")).unwrap();
    let theirs = pod(
        vec![container("app", Some(&[AKV2K8S]), &[("DB", Some(PH))])],
        vec![],
    );
    assert!(matches!(
        guard.evaluate(&theirs, "apps").unwrap(),
        Decision::Denied(_)
    ));
}
