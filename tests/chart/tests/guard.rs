//! The chart's admission CEL, evaluated with the `cel` crate against tables of pods and held equal
//! to the Rust grammar (`akv_placeholder::is_placeholder`) and to what the webhook's mutation does:
//! - the ValidatingAdmissionPolicy "placeholder guard" denies a pod iff some container or init
//!   container has a placeholder env value and is not wrapped by the injector;
//! - the webhook's `matchConditions` send a pod to the webhook iff it has a placeholder at all.

use akv_placeholder::is_placeholder;
use chart_tests::cel_eval::{Decision, MatchConditions, Policy};
use chart_tests::helm::Helm;
use chart_tests::manifests::{of_kind, one, parse_documents};
use serde_json::{Value as Json, json};

const NAMESPACE: &str = "akv-system";
/// Where the webhook puts the injector; the chart's guard treats `command[0] == this` as wrapped.
const INJECTOR: &str = "/akv-env/bin/akv-env";

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
    let docs = render(&[]);
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

fn pod(containers: Vec<Json>, init: Vec<Json>) -> Json {
    let mut spec = json!({"containers": containers});
    if !init.is_empty() {
        spec["initContainers"] = json!(init);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "apps"}, "spec": spec})
}

/// The Rust side of the rule: names of containers that would start with a raw placeholder.
fn unwrapped_with_placeholder(pod: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().into_iter().flatten() {
            let wrapped = c["command"][0] == INJECTOR;
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
            c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["value"].as_str().is_some_and(is_placeholder))
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
            "bare suffix counts (the webhook refuses its empty name)",
            pod(
                vec![container("app", None, &[("V", Some("@azurekeyvault"))])],
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
    let mut config = akv_mutation::Config::new("registry.example/akv-env:1");
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
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}])
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
        policy["spec"]["variables"][1]["expression"]
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
