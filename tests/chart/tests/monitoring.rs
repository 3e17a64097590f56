//! The chart's optional PrometheusRule and Grafana dashboard: they render and validate, every
//! query parses as PromQL, thresholds follow the values, and every webhook metric they name is
//! one the real webhook binary serves on `/metrics`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use akv_env_webhook::metrics::Outcome;
use akv_test_support::pki::TestCa;
use akv_test_support::webhook::{INJECTOR, WebhookProcess};
use chart_tests::helm::{Helm, kubernetes_validate, workspace_root};
use chart_tests::manifests::{of_kind, one, parse_documents};
use promql_parser::parser::{Expr, parse};
use serde_json::Value as Json;

const RELEASE: &str = "akv";
const NAMESPACE: &str = "akv-system";
const FULLNAME: &str = "akv-akv-env";

/// Metrics the alerts and the dashboard read from other exporters than the webhook.
const OTHER_EXPORTERS: &[&str] = &[
    // Prometheus itself, per scrape target of the ServiceMonitor.
    "up",
    // kube-state-metrics.
    "kube_deployment_status_replicas_available",
];

/// Every outcome the webhook labels `akv_env_webhook_admissions_total` with.
const OUTCOMES: &[Outcome] = &[
    Outcome::Mutated,
    Outcome::Skipped,
    Outcome::Ignored,
    Outcome::Denied,
    Outcome::Invalid,
];

/// Outcomes named in a matcher are the webhook's own words for them.
fn known_outcomes_only(context: &str, matchers: &[(String, String)]) {
    for (_, value) in matchers.iter().filter(|(n, _)| n == "outcome") {
        for outcome in value.split('|') {
            assert!(
                OUTCOMES.iter().any(|o| o.as_str() == outcome),
                "{context}: outcome {outcome:?} is not one the webhook counts"
            );
        }
    }
}

fn render(sets: &[&str]) -> (String, Vec<Json>) {
    let helm = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    helm.lint(sets).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    let yaml = helm
        .template(RELEASE, NAMESPACE, sets)
        .unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    let docs = parse_documents(&yaml).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
    (yaml, docs)
}

/// Every vector selector in `expr`: (metric name, label matchers as (name, value)).
fn selectors(expr: &Expr, out: &mut Vec<(String, Vec<(String, String)>)>) {
    match expr {
        Expr::Aggregate(e) => {
            selectors(&e.expr, out);
            if let Some(param) = &e.param {
                selectors(param, out);
            }
        }
        Expr::Unary(e) => selectors(&e.expr, out),
        Expr::Binary(e) => {
            selectors(&e.lhs, out);
            selectors(&e.rhs, out);
        }
        Expr::Paren(e) => selectors(&e.expr, out),
        Expr::Subquery(e) => selectors(&e.expr, out),
        Expr::VectorSelector(vs) => out.push(selector(vs)),
        Expr::MatrixSelector(ms) => out.push(selector(&ms.vs)),
        Expr::Call(call) => {
            for arg in &call.args.args {
                selectors(arg, out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector(vs: &promql_parser::parser::VectorSelector) -> (String, Vec<(String, String)>) {
    let matchers: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    let name = vs.name.clone().unwrap_or_else(|| {
        matchers
            .iter()
            .find(|(n, _)| n == "__name__")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    });
    (name, matchers)
}

fn parse_promql(context: &str, query: &str) -> Expr {
    parse(query).unwrap_or_else(|e| panic!("{context}: {query:?} is not PromQL: {e}"))
}

/// The alert rules of the rendered PrometheusRule: (alert name, rule object).
fn alerts(docs: &[Json]) -> Vec<(String, Json)> {
    let rule = one(docs, "PrometheusRule");
    let groups = rule["spec"]["groups"].as_array().expect("groups is a list");
    let mut out = Vec::new();
    for group in groups {
        assert!(group["name"].as_str().is_some_and(|n| !n.is_empty()));
        for r in group["rules"].as_array().expect("rules is a list") {
            let name = r["alert"].as_str().expect("every rule is an alert");
            out.push((name.to_owned(), r.clone()));
        }
    }
    out
}

/// Prometheus' duration grammar (`for:`), as the PrometheusRule CRD's pattern has it.
fn is_prometheus_duration(text: &str) -> bool {
    let re = regex::Regex::new(
        r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
    )
    .unwrap();
    !text.is_empty() && re.is_match(text)
}

const RULE_SETS: &[(&str, &[&str])] = &[
    ("rules only", &["metrics.prometheusRule.enabled=true"]),
    (
        "rules, ServiceMonitor, own labels, 30 s timeout",
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.labels.release=kube-prometheus-stack",
            "metrics.prometheusRule.additionalRuleLabels.team=platform",
            "webhook.timeoutSeconds=30",
            "metrics.prometheusRule.latencyPercent=50",
            "metrics.prometheusRule.refusalPercent=25",
        ],
    ),
    (
        "rules with failurePolicy Ignore",
        &[
            "metrics.prometheusRule.enabled=true",
            "webhook.failurePolicy=Ignore",
        ],
    ),
];

#[test]
fn monitoring_is_off_by_default() {
    let (_, docs) = render(&[]);
    assert!(of_kind(&docs, "PrometheusRule").is_empty());
    assert!(
        of_kind(&docs, "ConfigMap").is_empty(),
        "no dashboard ConfigMap unless asked"
    );
}

#[test]
fn alerts_render_validate_parse_and_follow_the_values() {
    for (case, sets) in RULE_SETS {
        let (yaml, docs) = render(sets);
        kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        let value = |key: &str| -> Option<&str> {
            sets.iter()
                .find_map(|s| s.strip_prefix(key)?.strip_prefix('='))
        };
        let rule = one(&docs, "PrometheusRule");
        assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1", "{case}");
        assert_eq!(rule["metadata"]["namespace"], NAMESPACE, "{case}");
        if let Some(release) = value("metrics.prometheusRule.labels.release") {
            assert_eq!(rule["metadata"]["labels"]["release"], release, "{case}");
        }
        let alerts = alerts(&docs);
        let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), alerts.len(), "{case}: alert names are unique");
        let fail = value("webhook.failurePolicy") != Some("Ignore");
        assert_eq!(
            names.contains("AkvEnvWebhookNoReadyReplica"),
            fail,
            "{case}: the no-ready-replica alert exists exactly when failurePolicy is Fail"
        );
        for expected in [
            "AkvEnvWebhookRefusingReviews",
            "AkvEnvWebhookErrors",
            "AkvEnvWebhookSlowReviews",
        ] {
            assert!(names.contains(expected), "{case}: {expected} missing");
        }
        for (name, r) in &alerts {
            let context = format!("{case}: {name}");
            let expr = parse_promql(&context, r["expr"].as_str().expect("expr is a string"));
            let mut found = Vec::new();
            selectors(&expr, &mut found);
            for (metric, matchers) in &found {
                known_outcomes_only(&context, matchers);
                // Every webhook series is this release's: job (the Service) and namespace.
                if metric.starts_with("akv_env_webhook_") || metric == "up" {
                    for (label, want) in [("job", FULLNAME), ("namespace", NAMESPACE)] {
                        assert!(
                            matchers.iter().any(|(n, v)| n == label && v == want),
                            "{context}: {metric} does not select {label}={want}: {matchers:?}"
                        );
                    }
                }
            }
            assert!(
                r["for"].as_str().is_some_and(is_prometheus_duration),
                "{context}: for {}",
                r["for"]
            );
            assert!(
                matches!(
                    r["labels"]["severity"].as_str(),
                    Some("critical" | "warning")
                ),
                "{context}: severity"
            );
            if let Some(team) = value("metrics.prometheusRule.additionalRuleLabels.team") {
                assert_eq!(r["labels"]["team"], team, "{context}");
            }
            for annotation in ["summary", "description"] {
                assert!(
                    r["annotations"][annotation]
                        .as_str()
                        .is_some_and(|t| t.len() > 20),
                    "{context}: {annotation}"
                );
            }
        }
        // The thresholds are the values' (comparison against a number literal on the right).
        let threshold = |alert: &str| -> f64 {
            let (_, r) = alerts.iter().find(|(n, _)| n == alert).unwrap();
            match parse_promql(alert, r["expr"].as_str().unwrap()) {
                Expr::Binary(b) => match *b.rhs {
                    Expr::NumberLiteral(n) => n.val,
                    other => panic!("{case}: {alert} compares with {other:?}"),
                },
                other => panic!("{case}: {alert} is not a comparison: {other:?}"),
            }
        };
        let timeout: f64 = value("webhook.timeoutSeconds").map_or(10.0, |v| v.parse().unwrap());
        let latency: f64 =
            value("metrics.prometheusRule.latencyPercent").map_or(75.0, |v| v.parse().unwrap());
        let refusal: f64 =
            value("metrics.prometheusRule.refusalPercent").map_or(10.0, |v| v.parse().unwrap());
        assert_eq!(
            threshold("AkvEnvWebhookSlowReviews"),
            timeout * latency / 100.0,
            "{case}: p99 threshold is latencyPercent of webhook.timeoutSeconds"
        );
        assert_eq!(
            threshold("AkvEnvWebhookRefusingReviews"),
            refusal / 100.0,
            "{case}"
        );
        if fail {
            let (_, r) = alerts
                .iter()
                .find(|(n, _)| n == "AkvEnvWebhookNoReadyReplica")
                .unwrap();
            let mut found = Vec::new();
            selectors(&parse_promql(case, r["expr"].as_str().unwrap()), &mut found);
            let used: BTreeSet<&str> = found.iter().map(|(m, _)| m.as_str()).collect();
            let scraped = value("metrics.serviceMonitor.enabled") == Some("true");
            assert_eq!(
                used.contains("up"),
                scraped,
                "{case}: `up` is read only when the ServiceMonitor scrapes the webhook"
            );
            assert!(used.contains("kube_deployment_status_replicas_available"));
        }
    }
}

#[test]
fn values_outside_their_range_fail_the_schema() {
    let helm = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    for set in [
        "metrics.prometheusRule.refusalPercent=0",
        "metrics.prometheusRule.latencyPercent=101",
        "metrics.grafanaDashboard.namespace=Not_A_Namespace",
        "metrics.grafanaDashboard.label=x",
    ] {
        let err = helm
            .template(RELEASE, NAMESPACE, &[set])
            .expect_err(&format!("{set} must not render"));
        let key = set.split('=').next().unwrap().rsplit('.').next().unwrap();
        assert!(err.to_string().contains(key), "{set}: {err}");
    }
}

/// The dashboard file, the ConfigMap holding it, and each of its queries with Grafana's
/// variables replaced as Grafana would before sending them.
fn dashboard_queries(dashboard: &Json) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("panel title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel {title}: the data source is the dashboard's variable"
            );
            let expr = target["expr"].as_str().expect("expr");
            out.push((format!("panel {title}"), grafana_expand(expr)));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        // label_values(SELECTOR, label): the selector is PromQL.
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.rsplit_once(','))
            .map(|(selector, _)| selector)
            .unwrap_or_else(|| panic!("variable query {query}"));
        out.push((
            format!("variable {}", variable["name"]),
            grafana_expand(inner),
        ));
    }
    out
}

fn grafana_expand(query: &str) -> String {
    query
        .replace("$__rate_interval", "2m")
        .replace("$namespace", NAMESPACE)
        .replace("$job", FULLNAME)
}

fn dashboard_file() -> Json {
    let path = workspace_root().join("charts/akv-env/dashboards/akv-env-webhook.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn dashboard_config_map_is_labelled_for_the_grafana_sidecar_and_its_queries_parse() {
    let sets = [
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.namespace=monitoring",
        "metrics.grafanaDashboard.annotations.grafana_folder=Security",
    ];
    let (yaml, docs) = render(&sets);
    kubernetes_validate(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let map = one(&docs, "ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Security");
    let data = map["data"].as_object().unwrap();
    assert_eq!(data.len(), 1);
    let shipped: Json = serde_json::from_str(data["akv-env-webhook.json"].as_str().unwrap())
        .expect("the ConfigMap holds the dashboard JSON");
    let dashboard = dashboard_file();
    assert_eq!(shipped, dashboard, "the ConfigMap holds the file unchanged");
    assert_eq!(dashboard["uid"], "akv-env-webhook");
    let ids: Vec<&Json> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    let unique: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(unique.len(), ids.len(), "panel ids are unique");
    for (context, query) in dashboard_queries(&dashboard) {
        let mut found = Vec::new();
        selectors(&parse_promql(&context, &query), &mut found);
        for (_, matchers) in &found {
            known_outcomes_only(&context, matchers);
        }
    }

    // Without a namespace override it goes to the release namespace.
    let (_, docs) = render(&["metrics.grafanaDashboard.enabled=true"]);
    assert_eq!(one(&docs, "ConfigMap")["metadata"]["namespace"], NAMESPACE);
}

/// The metric names the text exposition serves (sample names, and the names a family with no
/// sample yet will have: `_total` of counters, `_bucket`/`_sum`/`_count` of histograms).
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_read_is_served_by_the_real_webhook() {
    // What the rules and the dashboard read, over every rule variant.
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for (case, sets) in RULE_SETS {
        let (_, docs) = render(sets);
        for (name, r) in alerts(&docs) {
            let mut found = Vec::new();
            selectors(
                &parse_promql(&name, r["expr"].as_str().unwrap()),
                &mut found,
            );
            for (metric, _) in found {
                used.insert((metric, format!("{case}: alert {name}")));
            }
        }
    }
    for (context, query) in dashboard_queries(&dashboard_file()) {
        let mut found = Vec::new();
        selectors(&parse_promql(&context, &query), &mut found);
        for (metric, _) in found {
            used.insert((metric, format!("dashboard {context}")));
        }
    }
    assert!(
        used.iter()
            .any(|(m, _)| m == "akv_env_webhook_admission_duration_seconds_bucket"),
        "{used:?}"
    );

    let webhook = Webhook::start();
    let review: Json = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("webhook/tests/fixtures/pod-command.json"))
            .unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exposition = runtime.block_on(webhook.review_then_scrape(&review));
    for counted in [
        "akv_env_webhook_admissions_total{outcome=\"mutated\"} 1",
        "akv_env_webhook_errors_total{kind=\"bad_request\"} 1",
    ] {
        assert!(
            exposition.lines().any(|l| l == counted),
            "the reviews were answered and counted ({counted}):\n{exposition}"
        );
    }
    let served = served_names(&exposition);
    for (metric, context) in &used {
        if OTHER_EXPORTERS.contains(&metric.as_str()) {
            continue;
        }
        assert!(
            served.contains(metric),
            "{context}: {metric} is not served by the webhook's /metrics; it serves {served:?}"
        );
    }
}

/// The webhook binary: `AKV_ENV_WEBHOOK_BIN`, or the workspace's debug build (a no-op when fresh).
fn webhook_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AKV_ENV_WEBHOOK_BIN") {
        return path.into();
    }
    akv_test_support::cargo::build("akv-env-webhook", "akv-env-webhook")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `akv-env-webhook serve` as a child process (akv-test-support's launcher) and its test CA.
struct Webhook {
    process: WebhookProcess,
    ca: TestCa,
}

impl Webhook {
    fn start() -> Webhook {
        let ca = TestCa::new("akv-env monitoring test CA");
        let process =
            WebhookProcess::spawn(&webhook_binary(), &ca, &["--injector-image", INJECTOR], &[])
                .expect("the webhook starts");
        Webhook { process, ca }
    }

    /// Posts `review` to `/mutate` as the API server would, then an unreadable one, then returns
    /// `/metrics`.
    async fn review_then_scrape(&self, review: &Json) -> String {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(Arc::unwrap_or_clone(self.ca.client_config(&[])))
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let answer = client
            .post(format!(
                "https://localhost:{}/mutate",
                self.process.https_addr.port()
            ))
            .json(review)
            .send()
            .await
            .expect("the webhook answers the review");
        assert!(answer.status().is_success(), "{}", answer.status());
        let answer: Json = answer.json().await.unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        // An unreadable review: the error families exist only once something was counted.
        let garbage = client
            .post(format!(
                "https://localhost:{}/mutate",
                self.process.https_addr.port()
            ))
            .header("content-type", "application/json")
            .body("garbage")
            .send()
            .await
            .expect("the webhook answers garbage");
        assert!(garbage.status().is_client_error(), "{}", garbage.status());
        let metrics = client
            .get(format!("http://{}/metrics", self.process.health_addr))
            .send()
            .await
            .expect("/metrics answers");
        assert!(metrics.status().is_success());
        metrics.text().await.unwrap()
    }
}
