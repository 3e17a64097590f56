//! Hostile AdmissionReviews over HTTPS against the real `akv-env-webhook serve` process: huge
//! bodies, thousands of containers and env vars, deep nesting, invalid escapes, huge strings and
//! duplicate keys. Each gets a clear answer (a 4xx with a reason, a refusal naming the problem,
//! or a correct patch) and the process survives them all. The server's RSS is read from /proc
//! and printed (run with `--no-capture` to see it); only behaviour is asserted.

mod common;

use std::path::Path;

use common::{Connection, Protocol, TestCa, WebhookProcess, read_answer};
use hyper::StatusCode;
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;
const PLACEHOLDER: &str = "db-password@azurekeyvault?vault=prod-kv";

/// The webhook binary, listening on loopback (akv-test-support's launcher).
struct Webhook {
    process: WebhookProcess,
    ca: TestCa,
}

impl Webhook {
    fn spawn(body_limit: usize) -> Webhook {
        let ca = TestCa::new("akv-env test CA");
        let body_limit = body_limit.to_string();
        let process = WebhookProcess::spawn(
            Path::new(env!("CARGO_BIN_EXE_akv-env-webhook")),
            &ca,
            &[
                "--injector-image",
                common::INJECTOR,
                "--body-limit",
                &body_limit,
            ],
            &[],
        )
        .expect("the webhook starts");
        Webhook { process, ca }
    }

    /// Posts one body on a fresh HTTP/2 connection, printing the server's memory around it.
    async fn post(&mut self, case: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let (rss_before, _) = self.process.memory_mib();
        let started = std::time::Instant::now();
        let mut conn = Connection::open(self.process.https_addr, &self.ca, Protocol::Http2).await;
        let size = body.len();
        let (status, answer) = conn.post("/mutate", body).await;
        let elapsed = started.elapsed();
        let (rss_after, peak) = self.process.memory_mib();
        println!(
            "{case}: body {:.2} MiB -> {status} in {elapsed:.2?}, answer {:.2} MiB; server RSS \
             {rss_before:.1} -> {rss_after:.1} MiB, peak {peak:.1} MiB",
            size as f64 / MIB as f64,
            answer.len() as f64 / MIB as f64,
        );
        assert!(self.process.alive(), "{case}: the webhook died");
        (status, answer.to_vec())
    }
}

fn container(index: usize, vars: usize) -> Value {
    let env: Vec<Value> = (0..vars)
        .map(|v| json!({"name": format!("VAR_{v}"), "value": PLACEHOLDER}))
        .collect();
    json!({
        "name": format!("c{index}"),
        "image": "registry.example/app:1",
        "command": ["/app", "--serve"],
        "env": env,
    })
}

fn review(containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0b7e3c6a-hostile",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "hostile", "namespace": "shop"},
                "spec": {"containers": containers},
            },
        },
    })
}

/// A review of the right shape whose total size is `target` bytes (padding in an annotation).
fn review_of_size(target: usize) -> Vec<u8> {
    let mut r = review(vec![container(0, 1)]);
    let base = serde_json::to_vec(&r).unwrap().len();
    let pad_overhead = r#","annotations":{"pad":""}"#.len();
    let pad = "x".repeat(target - base - pad_overhead);
    r["request"]["object"]["metadata"]["annotations"] = json!({ "pad": pad });
    let body = serde_json::to_vec(&r).unwrap();
    assert_eq!(body.len(), target);
    body
}

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

#[tokio::test]
async fn bodies_at_the_size_limit() {
    let limit = 3 * MIB;
    let mut webhook = Webhook::spawn(limit);
    let body = review_of_size(limit - 1);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let (status, answer) = webhook.post("just under the limit", body).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&answer));
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], true);
    let pod = answer.patched.expect("a patch");
    assert_eq!(
        pod["spec"]["containers"][0]["command"][0],
        "/akv-env/bin/akv-env"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["pad"],
        sent["request"]["object"]["metadata"]["annotations"]["pad"],
        "fields the patch does not touch survive"
    );

    let (status, answer) = webhook
        .post("just over the limit", review_of_size(limit + 1))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", text(&answer));
    let (status, answer) = webhook.post("8 MiB", review_of_size(8 * MIB)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{}", text(&answer));

    // Still serving normally afterwards.
    let small = review(vec![container(0, 1)]);
    let (status, answer) = webhook
        .post("small after large", serde_json::to_vec(&small).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(read_answer(&small, &answer).patched.is_some());
}

#[tokio::test]
async fn thousands_of_containers_and_env_vars_get_a_correct_patch() {
    // 2,000 containers x 50 placeholders is ~10 MiB: far above what the API server stores,
    // so the limit is raised to see the planner itself at that scale.
    let mut webhook = Webhook::spawn(64 * MIB);
    let sent = review((0..2_000).map(|i| container(i, 50)).collect());
    let (status, answer) = webhook
        .post(
            "2,000 containers x 50 vars",
            serde_json::to_vec(&sent).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", text(&answer));
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], true);
    let pod = answer.patched.expect("a patch");
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2_000);
    for (i, c) in containers.iter().enumerate() {
        assert_eq!(c["name"], format!("c{i}"));
        assert_eq!(c["command"], json!(["/akv-env/bin/akv-env"]), "c{i}");
        assert_eq!(c["args"], json!(["--", "/app", "--serve"]), "c{i}");
        assert_eq!(c["env"].as_array().unwrap().len(), 50, "c{i}");
    }
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "akv-env-install");

    // One container with 20,000 env vars, one of them wrong: refused, naming it.
    let mut big = container(0, 20_000);
    big["env"][12_345]["value"] = json!("db@azurekeyvault?vault=prod-kv&bogus=1");
    let sent = review(vec![big]);
    let (status, answer) = webhook
        .post("20,000 vars, one bad", serde_json::to_vec(&sent).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("VAR_12345") && message.contains("bogus"),
        "{message}"
    );

    // The same pod at the default limit: a clear 413, not a partial read.
    let mut webhook = Webhook::spawn(3 * MIB);
    let sent = review((0..2_000).map(|i| container(i, 50)).collect());
    let (status, _) = webhook
        .post(
            "2,000 x 50 at the default limit",
            serde_json::to_vec(&sent).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Splices raw JSON text in place of the string `"HOLE"` in a serialised review.
fn splice(review: &Value, raw: &str) -> Vec<u8> {
    let text = serde_json::to_string(review).unwrap();
    assert_eq!(text.matches("\"HOLE\"").count(), 1);
    text.replacen("\"HOLE\"", raw, 1).into_bytes()
}

#[tokio::test]
async fn deeply_nested_json_is_a_clear_400_anywhere() {
    let mut webhook = Webhook::spawn(3 * MIB);
    let deep = |levels: usize, open: &str, close: &str| {
        format!("{}1{}", open.repeat(levels), close.repeat(levels))
    };
    let mut places = Vec::new();
    let mut r = review(vec![container(0, 1)]);
    r["request"]["object"]["spec"]["x-future-field"] = json!("HOLE");
    places.push(("an unknown pod field", r));
    let mut r = review(vec![container(0, 1)]);
    r["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!("HOLE");
    places.push(("an env value", r));
    let mut r = review(vec![container(0, 1)]);
    r["request"]["oldObject"] = json!("HOLE");
    places.push(("oldObject", r));
    let mut r = review(vec![container(0, 1)]);
    r["extra"] = json!("HOLE");
    places.push(("the review itself", r));

    for (place, r) in &places {
        for (shape, raw) in [
            ("arrays", deep(10_000, "[", "]")),
            ("objects", deep(10_000, r#"{"a":"#, "}")),
        ] {
            let (status, answer) = webhook
                .post(
                    &format!("10,000 nested {shape} in {place}"),
                    splice(r, &raw),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{place}, {shape}");
            let reason = text(&answer);
            assert!(
                reason.contains("not JSON") && reason.contains("recursion limit"),
                "{place}, {shape}: {reason}"
            );
        }
    }

    // Nesting within serde_json's limit (128) in a field the webhook does not know survives.
    let r = &places[0].1;
    let sent: Value = serde_json::from_slice(&splice(r, &deep(100, "[", "]"))).unwrap();
    let (status, answer) = webhook
        .post("100 nested arrays", serde_json::to_vec(&sent).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let pod = read_answer(&sent, &answer).patched.expect("a patch");
    assert_eq!(
        pod["spec"]["x-future-field"],
        sent["request"]["object"]["spec"]["x-future-field"]
    );
}

#[tokio::test]
async fn invalid_unicode_escapes_are_a_clear_400() {
    let mut webhook = Webhook::spawn(3 * MIB);
    let cases = [
        ("lone high surrogate in a value", r#""\ud800""#),
        ("lone low surrogate in a value", r#""\udfff""#),
        (
            "high surrogate before a placeholder",
            r#""\ud800db@azurekeyvault?vault=kv""#,
        ),
        ("reversed pair", r#""\udc00\ud800""#),
    ];
    for (case, raw) in cases {
        let mut r = review(vec![container(0, 1)]);
        r["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!("HOLE");
        let (status, answer) = webhook.post(case, splice(&r, raw)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}");
        let reason = text(&answer);
        assert!(
            reason.contains("not JSON")
                && (reason.contains("surrogate") || reason.contains("escape"))
                && reason.contains("column"),
            "{case}: {reason}"
        );
    }
    // Raw bytes that are not UTF-8 inside a string are refused the same way.
    let mut r = review(vec![container(0, 1)]);
    r["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!("HOLE");
    let mut body = splice(&r, "\"ab\u{1}cd\"");
    let at = body.windows(5).position(|w| w == b"ab\x01cd").unwrap() + 2;
    body[at] = 0xff;
    let (status, answer) = webhook.post("a 0xff byte in a value", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text(&answer).contains("not JSON"), "{}", text(&answer));

    // A valid surrogate pair is just a character, and a placeholder after it is still refused
    // as malformed (the name has a character the grammar does not allow).
    let mut r = review(vec![container(0, 1)]);
    r["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!("HOLE");
    let body = splice(&r, r#""\ud83d\ude00@azurekeyvault?vault=kv""#);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let (status, answer) = webhook.post("emoji placeholder name", body).await;
    assert_eq!(status, StatusCode::OK);
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], false, "{}", answer.response);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(message.contains("VAR_0"), "{message}");
}

#[tokio::test]
async fn huge_single_strings_get_bounded_answers() {
    let mut webhook = Webhook::spawn(3 * MIB);
    let huge = "a".repeat(2 * MIB);

    // A huge plain value is left alone; the other container's placeholder is wrapped.
    let mut plain = container(0, 1);
    plain["env"][0]["value"] = json!(huge);
    let sent = review(vec![plain]);
    let mut sent = sent;
    sent["request"]["object"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "OK", "value": PLACEHOLDER}));
    let (status, answer) = webhook
        .post("2 MiB plain env value", serde_json::to_vec(&sent).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let pod = read_answer(&sent, &answer).patched.expect("a patch");
    assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], json!(huge));

    // Huge malformed placeholders, in the name, the vault and a parameter: refused with a
    // reason that names the variable and stays small (the value is not echoed whole).
    for (case, value) in [
        (
            "2 MiB secret name",
            format!("{huge}@azurekeyvault?vault=kv"),
        ),
        ("2 MiB vault", format!("db@azurekeyvault?vault={huge}")),
        (
            "2 MiB unknown parameter",
            format!("db@azurekeyvault?{huge}=1"),
        ),
    ] {
        let mut c = container(0, 1);
        c["env"][0]["value"] = json!(value);
        let sent = review(vec![c]);
        let (status, answer) = webhook.post(case, serde_json::to_vec(&sent).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{case}");
        assert!(
            answer.len() < 64 * 1024,
            "{case}: a {} byte answer",
            answer.len()
        );
        let answer = read_answer(&sent, &answer);
        assert_eq!(answer.response["allowed"], false, "{case}");
        let message = answer.response["status"]["message"].as_str().unwrap();
        assert!(message.contains("VAR_0"), "{case}: {message}");
    }

    // A huge image name without `command`: a refusal naming the container, no lookup hang.
    let mut c = container(0, 1);
    c.as_object_mut().unwrap().remove("command");
    c["image"] = json!(format!("registry.example/{}:1", "b".repeat(MIB)));
    let sent = review(vec![c]);
    let (status, answer) = webhook
        .post("1 MiB image name", serde_json::to_vec(&sent).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    // The refusal quotes the start of the name and its length, not the megabyte.
    assert!(answer.len() < 8 * 1024, "a {} byte answer", answer.len());
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    let length = format!("({} bytes)", MIB + "registry.example/:1".len());
    assert!(
        message.contains("\"c0\"") && message.contains(&length),
        "{}",
        &message[..message.len().min(1000)]
    );
}

#[tokio::test]
async fn duplicate_keys_are_read_as_the_api_server_reads_them() {
    // Go's encoding/json (the API server) keeps the last of duplicate keys; so must we, or the
    // webhook would decide about a different pod than the one stored.
    let mut webhook = Webhook::spawn(3 * MIB);
    let mut r = review(vec![container(0, 1)]);
    r["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!("HOLE");
    let cases = [
        (
            "placeholder then plain",
            format!(r#""{PLACEHOLDER}","value":"plain""#),
            false,
        ),
        (
            "plain then placeholder",
            format!(r#""plain","value":"{PLACEHOLDER}""#),
            true,
        ),
    ];
    for (case, raw, wrapped) in cases {
        let body = splice(&r, &raw);
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let (status, answer) = webhook.post(case, body).await;
        assert_eq!(status, StatusCode::OK, "{case}");
        let answer = read_answer(&sent, &answer);
        assert_eq!(answer.response["allowed"], true, "{case}");
        assert_eq!(
            answer.patched.is_some(),
            wrapped,
            "{case}: {}",
            answer.response
        );
    }

    // Duplicate `object`: the last one is the pod decided on.
    let mut r = review(vec![]);
    r["request"]["object"] = json!("HOLE");
    let plain_pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
    let with = review(vec![container(0, 1)])["request"]["object"].clone();
    let raw = format!("{plain_pod},\"object\":{with}");
    let body = splice(&r, &raw);
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let (status, answer) = webhook.post("duplicate object", body).await;
    assert_eq!(status, StatusCode::OK);
    let answer = read_answer(&sent, &answer);
    assert!(answer.patched.is_some(), "{}", answer.response);

    // Duplicate uid: the last one is echoed.
    let mut r = review(vec![container(0, 1)]);
    r["request"]["uid"] = json!("HOLE");
    let body = splice(&r, r#""first","uid":"second""#);
    let (status, answer) = webhook.post("duplicate uid", body).await;
    assert_eq!(status, StatusCode::OK);
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["response"]["uid"], "second");
}

#[tokio::test]
async fn a_body_claiming_another_kind_is_a_400() {
    // Found by fuzzing (fuzz/artifacts: admission_review): kube echoes the request's
    // kind/apiVersion, so "kind": "AdmissionRevi/w" used to get an answer of that kind.
    let mut webhook = Webhook::spawn(3 * MIB);
    for (field, value) in [
        ("kind", "AdmissionRevi/w"),
        ("kind", "ConfigMap"),
        ("apiVersion", "admission.k8s.io/v2"),
        ("apiVersion", "v1"),
    ] {
        let mut r = review(vec![container(0, 1)]);
        r[field] = json!(value);
        let (status, answer) = webhook
            .post(&format!("{field} {value}"), serde_json::to_vec(&r).unwrap())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {value}");
        let reason = text(&answer);
        assert!(
            reason.contains(value) && reason.contains("AdmissionReview"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn a_vault_annotation_with_a_multibyte_character_is_refused_not_a_crash() {
    // Found by fuzzing (fuzz/artifacts: placeholder): `Vault::parse` panicked on this text.
    let mut webhook = Webhook::spawn(3 * MIB);
    let mut c = container(0, 1);
    c["env"][0]["value"] = json!("db@azurekeyvault");
    let mut sent = review(vec![c]);
    sent["request"]["object"]["metadata"]["annotations"] =
        json!({"akv-env.io/vault": "abcdefg\u{e9}://kv.vault.azure.net"});
    let (status, answer) = webhook
        .post(
            "multibyte vault annotation",
            serde_json::to_vec(&sent).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let answer = read_answer(&sent, &answer);
    assert_eq!(answer.response["allowed"], false);
    let message = answer.response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("akv-env.io/vault") || message.contains("vault"),
        "{message}"
    );
}
