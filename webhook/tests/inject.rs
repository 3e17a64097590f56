//! `akv-env-webhook inject`: the binary on multi-document YAML.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_yaml_ng::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn inject(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"))
        .arg("inject")
        .args([
            "--injector-image",
            "registry.example/akv-env:1.0",
            "--log-format",
            "text",
        ])
        .args(args)
        .env_remove("AKV_ENV_WEBHOOK_DEFAULT_VAULT")
        .env_remove("AKV_ENV_WEBHOOK_NAMESPACE_VAULT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn workloads_are_injected_and_other_documents_pass_through() {
    let file = fixture("workloads.yaml");
    let out = inject(
        &["-f", file.to_str().unwrap(), "--namespace-vault", "shop-kv"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let input = std::fs::read_to_string(&file).unwrap();

    // The ConfigMap (with its comments) and the Service are byte for byte the same.
    let configmap = input.split("---\n").next().unwrap();
    assert!(stdout.starts_with(configmap), "{stdout}");
    let service = input.rsplit("---\n").next().unwrap();
    assert!(stdout.ends_with(service), "{stdout}");

    let docs = documents(&stdout);
    assert_eq!(docs.len(), 4);
    let template = &docs[1]["spec"]["template"];
    let web = &template["spec"]["containers"][0];
    assert_eq!(strs(&web["command"]), ["/akv-env/bin/akv-env"]);
    assert_eq!(strs(&web["args"]), ["--", "/srv/web", "--port", "$(PORT)"]);
    let default_vault = web["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "AKV_ENV_DEFAULT_VAULT")
        .expect("default vault set from --namespace-vault");
    assert_eq!(default_vault["value"], "shop-kv");
    assert!(
        template["spec"]["containers"][1].get("args").is_none(),
        "sidecar untouched"
    );
    assert_eq!(
        template["spec"]["initContainers"][0]["name"],
        "akv-env-install"
    );
    assert_eq!(
        template["metadata"]["annotations"]["akv-env.io/status"],
        "injected"
    );
    assert_eq!(docs[1]["spec"]["replicas"], 2);

    let cron = &docs[2]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(
        strs(&cron["containers"][0]["args"]),
        ["--", "/report", "--all"]
    );
    assert_eq!(
        cron["initContainers"][0]["image"],
        "registry.example/akv-env:1.0"
    );
    assert_eq!(cron["restartPolicy"], "OnFailure");

    // Keys keep the order they were written in.
    let deployment_text = stdout.split("---\n").nth(1).unwrap();
    let order: Vec<usize> = ["apiVersion:", "kind:", "metadata:", "spec:"]
        .iter()
        .map(|k| deployment_text.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{deployment_text}");

    // Injecting the output again changes nothing, and stdin works.
    let again = inject(&["-f", "-"], Some(&stdout));
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8(again.stdout).unwrap(), stdout);
}

#[test]
fn a_container_without_command_fails_offline_naming_it() {
    let file = fixture("no-command.yaml");
    let out = inject(&["-f", file.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing printed on failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "document 2 (Deployment api)",
        "container \"api\"",
        "shop/api:7",
        "--image-lookup",
        "set `command`",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing in {stderr}");
    }
}

#[test]
fn bad_input_is_reported_per_document() {
    let yaml = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      command: [/a]\n      env: [{name: X, value: \"bad name@azurekeyvault\"}]\n---\n: : :\n";
    let out = inject(&["-f", "-"], Some(yaml));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("document 1 (Pod p)") && stderr.contains("env var X"),
        "{stderr}"
    );
    assert!(stderr.contains("document 2: not valid YAML"), "{stderr}");

    let out = inject(&["-f", "/nonexistent/manifest.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/manifest.yaml")
    );
}

#[test]
fn lists_and_json_input_are_handled() {
    // `kubectl get -o json` output: a List of Pods, in JSON (which is YAML).
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "a", "command": ["/a"], "env": [{"name": "X", "value": "x@azurekeyvault?vault=kv-one"}]}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}"#;
    let out = inject(&["-f", "-"], Some(list));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    let pod = &docs[0]["items"][0];
    assert_eq!(strs(&pod["spec"]["containers"][0]["args"]), ["--", "/a"]);
    assert_eq!(docs[0]["items"][1]["kind"], "ConfigMap");
}

// ---- `inject --check` -------------------------------------------------------------------

/// Runs `inject --check` without `--injector-image` (CI has no reason to know it).
fn check(args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"))
        .args(["inject", "--check", "--log-format", "text", "-f", "-"])
        .args(args)
        .env_remove("AKV_ENV_WEBHOOK_INJECTOR_IMAGE")
        .env_remove("AKV_ENV_WEBHOOK_ENABLED_NAMESPACES")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn namespace(name: &str, labelled: bool) -> String {
    let labels = if labelled {
        "\n  labels: {azure-key-vault-env-injection: enabled}"
    } else {
        "\n  labels: {team: shop}"
    };
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}{labels}\n---\n")
}

/// A Deployment in `ns` with pod `annotations` and the given pod spec lists (YAML, indented
/// for `spec:` at six spaces).
fn deployment(ns: &str, annotations: &str, spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: {ns}\nspec:\n  \
         selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata:\n      labels: {{app: web}}\n      \
         annotations: {{{annotations}}}\n    spec:\n{spec}"
    )
}

const APP: &str = "      containers:
        - name: web
          image: shop/web:1
          command: [/srv/web]
          env:
            - {name: PORT, value: \"8080\"}
            - {name: DB_PASSWORD, value: db-password@azurekeyvault?vault=shop-kv}
            - {name: API_KEY, value: api-key@azurekeyvault?vault=shop-kv}
";

const INIT_AND_SIDECAR: &str = "      initContainers:
        - name: migrate
          image: shop/migrate:1
          command: [/migrate]
          env: [{name: DB_PASSWORD, value: db-password@azurekeyvault?vault=shop-kv}]
        - name: proxy
          image: shop/proxy:1
          restartPolicy: Always
          command: [/proxy]
          env: [{name: TOKEN, value: token@azurekeyvault?vault=shop-kv}]
        - name: already
          image: shop/x:1
          command: [/akv-env/bin/akv-env]
          args: [--, /x]
          env: [{name: TOKEN, value: token@azurekeyvault?vault=shop-kv}]
      containers:
        - name: web
          image: shop/web:1
          command: [/srv/web]
";

const LOOK_ALIKES: &str = "      containers:
        - name: web
          image: shop/web:1
          env:
            - {name: A, value: user@azurekeyvault.example.com}
            - {name: B, value: x@azurekeyvaults}
            - {name: C, value: azurekeyvault}
            - {name: D, value: \"a?b@azurekeyvault\"}
            - {name: E, value: \"$(DB)@azurekeyvault-x\"}
            - {name: F, valueFrom: {secretKeyRef: {name: s, key: k}}}
";

const EPHEMERAL: &str = "      containers:
        - {name: web, image: shop/web:1, command: [/srv/web]}
      ephemeralContainers:
        - name: debug
          image: busybox
          env: [{name: DB_PASSWORD, value: db-password@azurekeyvault?vault=shop-kv}]
";

/// (case, input, extra flags, exit status, lines expected on stdout, text absent from stdout)
type CheckCase = (
    &'static str,
    String,
    Vec<&'static str>,
    i32,
    Vec<&'static str>,
    Vec<&'static str>,
);

#[test]
fn check_lists_containers_that_would_start_unwrapped() {
    let cases: Vec<CheckCase> = vec![
        (
            "unlabelled Namespace document",
            namespace("shop", false) + &deployment("shop", "", APP),
            vec![],
            2,
            vec![
                "document 2 Deployment/web (namespace shop): container \"web\" would start with \
                 unwrapped placeholders in DB_PASSWORD, API_KEY: its Namespace document \"shop\" \
                 is not selected by azure-key-vault-env-injection=enabled",
                "akv-env check: FAILED: 1 pod template(s), 1 container(s) with placeholders, 1 \
                 would start with unwrapped placeholders",
            ],
            vec!["PORT", "apiVersion"],
        ),
        (
            "the chart's migration selector: akv2k8s' label no longer enables",
            namespace("shop", true) + &deployment("shop", "", APP),
            vec![
                "--namespace-selector",
                r#"{"matchLabels":{"akv-env.io/injection":"enabled"}}"#,
            ],
            2,
            vec![
                "its Namespace document \"shop\" is not selected by akv-env.io/injection=enabled",
            ],
            vec![],
        ),
        (
            "the chart's migration selector on a namespace with the new label",
            namespace("shop", false).replace("team: shop", "akv-env.io/injection: enabled")
                + &deployment("shop", "", APP),
            vec![
                "--namespace-selector",
                r#"{"matchLabels":{"akv-env.io/injection":"enabled"}}"#,
            ],
            0,
            vec!["akv-env check: ok: 1 pod template(s), 1 container(s) with placeholders"],
            vec!["would start"],
        ),
        (
            "labelled Namespace document",
            namespace("shop", true) + &deployment("shop", "", APP),
            vec![],
            0,
            vec![
                "akv-env check: ok: 1 pod template(s), 1 container(s) with placeholders, all \
                 wrapped at admission",
            ],
            vec!["would start"],
        ),
        (
            "pod opts out",
            namespace("shop", true) + &deployment("shop", "akv-env.io/inject: \"false\"", APP),
            vec![],
            2,
            vec![
                "document 2 Deployment/web (namespace shop): container \"web\" would start with \
                 unwrapped placeholders in DB_PASSWORD, API_KEY: the pod opts out \
                 (akv-env.io/inject: \"false\")",
            ],
            vec![],
        ),
        (
            "pod marked injected but not wrapped",
            namespace("shop", true) + &deployment("shop", "akv-env.io/status: injected", APP),
            vec![],
            2,
            vec!["container \"web\" would start with unwrapped placeholders in DB_PASSWORD, API_KEY: the pod carries akv-env.io/status"],
            vec![],
        ),
        (
            "look-alike values in an unlabelled namespace",
            namespace("shop", false) + &deployment("shop", "", LOOK_ALIKES),
            vec![],
            0,
            vec!["akv-env check: ok: 1 pod template(s), 0 container(s) with placeholders"],
            vec!["would start"],
        ),
        (
            "init containers and native sidecars in an unlabelled namespace",
            namespace("shop", false) + &deployment("shop", "", INIT_AND_SIDECAR),
            vec![],
            2,
            vec![
                "document 2 Deployment/web (namespace shop): init container \"migrate\" would \
                 start with unwrapped placeholders in DB_PASSWORD: its Namespace document \
                 \"shop\" is not selected by azure-key-vault-env-injection=enabled",
                "document 2 Deployment/web (namespace shop): init container \"proxy\" (sidecar) \
                 would start with unwrapped placeholders in TOKEN: its Namespace document \
                 \"shop\" is not selected by azure-key-vault-env-injection=enabled",
                "akv-env check: FAILED: 1 pod template(s), 3 container(s) with placeholders, 2 \
                 would start with unwrapped placeholders",
            ],
            // Already wrapped by the injector: fine wherever it runs.
            vec!["\"already\""],
        ),
        (
            "ephemeral container in an enabled namespace",
            namespace("shop", true) + &deployment("shop", "", EPHEMERAL),
            vec![],
            2,
            vec![
                "document 2 Deployment/web (namespace shop): ephemeral container \"debug\" would \
                 start with unwrapped placeholders in DB_PASSWORD: ephemeral containers are never \
                 wrapped",
            ],
            vec!["container \"web\""],
        ),
        (
            "--enabled-namespace lists the namespace",
            deployment("shop", "", APP),
            vec!["--enabled-namespace", "kube-public", "--enabled-namespace", "shop"],
            0,
            vec!["akv-env check: ok: 1 pod template(s), 1 container(s) with placeholders"],
            vec![],
        ),
        (
            "--enabled-namespace does not list the namespace",
            deployment("shop", "", APP),
            vec!["--enabled-namespace", "payments"],
            2,
            vec![
                "document 1 Deployment/web (namespace shop): container \"web\" would start with \
                 unwrapped placeholders in DB_PASSWORD, API_KEY: namespace \"shop\" is not in \
                 --enabled-namespace",
            ],
            vec![],
        ),
        (
            "a Namespace document wins over --enabled-namespace",
            namespace("shop", false) + &deployment("shop", "", APP),
            vec!["--enabled-namespace", "shop"],
            2,
            vec!["is not selected by azure-key-vault-env-injection=enabled"],
            vec![],
        ),
        (
            "a List holding the Namespace and a Pod without a namespace (default)",
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
                    {"name": "a", "image": "a", "env": [{"name": "X", "value": "x@azurekeyvault"}]}]}}]}"#
                .to_owned(),
            vec![],
            2,
            vec![
                "document 1 Pod/p (namespace default): container \"a\" would start with \
                 unwrapped placeholders in X: its Namespace document \"default\" is not selected by",
            ],
            vec![],
        ),
        (
            "placeholders from a ConfigMap of the input, in a namespace that is not labelled",
            namespace("shop", false)
                + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: shop}\n\
                   data: {DB_PASSWORD: db-password@azurekeyvault, PORT: \"8080\"}\n---\n"
                + &deployment("shop", "", "      containers:
        - name: web
          image: shop/web:1
          command: [/srv/web]
          envFrom: [{configMapRef: {name: cfg}, prefix: APP_}]
          env: [{name: PW, valueFrom: {configMapKeyRef: {name: cfg, key: DB_PASSWORD}}},
                {name: OTHER, valueFrom: {configMapKeyRef: {name: cfg, key: PORT}}}]
"),
            vec![],
            2,
            vec![
                "document 3 Deployment/web (namespace shop): container \"web\" would start with \
                 unwrapped placeholders in APP_DB_PASSWORD (from ConfigMap cfg), PW (from \
                 ConfigMap cfg): its Namespace document \"shop\" is not selected by",
            ],
            vec!["OTHER", "APP_PORT"],
        ),
        (
            "a malformed placeholder admission would refuse",
            namespace("shop", true)
                + &deployment("shop", "", &APP.replace("api-key@azurekeyvault?vault=shop-kv", "api key@azurekeyvault")),
            vec![],
            1,
            vec!["akv-env check: FAILED: 1 pod template(s), 1 container(s) with placeholders, 0 unwrapped, 1 problem(s)"],
            vec![],
        ),
    ];
    for (case, input, flags, status, want, absent) in cases {
        let (code, stdout, stderr) = check(&flags, &input);
        assert_eq!(
            code,
            Some(status),
            "{case}: stdout {stdout}\nstderr {stderr}"
        );
        for line in want {
            assert!(
                stdout.lines().any(|l| l.contains(line)),
                "{case}: no line with {line:?} in\n{stdout}\nstderr {stderr}"
            );
        }
        for text in absent {
            assert!(!stdout.contains(text), "{case}: {text:?} in\n{stdout}");
        }
        // Findings and the summary only: never the manifests.
        assert!(
            stdout
                .lines()
                .all(|l| l.starts_with("document ") || l.starts_with("akv-env check: ")),
            "{case}: {stdout}"
        );
    }
}

#[test]
fn check_reports_malformed_placeholders_and_unknown_namespaces_on_stderr() {
    let input = namespace("shop", true)
        + &deployment(
            "shop",
            "",
            &APP.replace(
                "api-key@azurekeyvault?vault=shop-kv",
                "api key@azurekeyvault",
            ),
        )
        + "---\n"
        + &deployment("payments", "", APP);
    let (code, _, stderr) = check(&[], &input);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("error: document 2 (Deployment web): container \"web\", env var API_KEY:")
            && stderr.contains("admission would refuse this pod"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: namespace \"payments\" has no Namespace document"),
        "{stderr}"
    );
    assert!(!stderr.contains("namespace \"shop\" has no"), "{stderr}");

    let (code, _, stderr) = check(&[], "kind: Pod\n: : :\n");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("document 1: not valid YAML"), "{stderr}");
}

/// The container `app` of the pod named `pod` in the output.
fn container<'a>(docs: &'a [Value], pod: &str) -> &'a Value {
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod" && d["metadata"]["name"] == pod)
        .unwrap_or_else(|| panic!("no pod {pod}"));
    &pod["spec"]["containers"][0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[test]
fn a_namespace_document_in_the_input_gives_its_pods_their_vault_and_cloud() {
    let pod = |name: &str, namespace: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             spec:\n  containers:\n    - name: app\n      image: app:1\n      command: [/app]\n\
             \x20     env:\n        - name: DB\n          value: db@azurekeyvault\n"
        )
    };
    let input = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  annotations:\n\
                 \x20   akv-env.io/vault: ns-kv\n    akv-env.io/cloud: AzureChinaCloud\n"
        .to_owned()
        + &pod("in-shop", "shop")
        + &pod("elsewhere", "other");
    let flags = [
        "-f",
        "-",
        "--namespace-vault",
        "flag-kv",
        "--namespace-cloud",
        "AzureChinaCloud",
    ];
    let out = inject(&flags, Some(&input));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let docs = documents(&String::from_utf8(out.stdout).unwrap());

    // The documented namespace: its annotations, as admission would read them.
    let shop = container(&docs, "in-shop");
    assert_eq!(env_value(shop, "AKV_ENV_DEFAULT_VAULT"), Some("ns-kv"));
    assert_eq!(
        strs(&shop["args"]),
        ["--cloud=AzureChinaCloud", "--", "/app"]
    );
    // A namespace without a document: --namespace-vault, and no cloud of its own.
    let other = container(&docs, "elsewhere");
    assert_eq!(env_value(other, "AKV_ENV_DEFAULT_VAULT"), Some("flag-kv"));
    assert_eq!(strs(&other["args"]), ["--", "/app"]);

    // A cloud the operator did not list: refused, as admission refuses it.
    let out = inject(
        &[&flags[..5], &["AzureUSGovernment"]].concat(),
        Some(&input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("AzureChinaCloud"), "{stderr}");
}

#[test]
fn injected_output_passes_the_check_even_in_an_unlabelled_namespace() {
    let input = namespace("shop", false) + &deployment("shop", "", APP);
    let out = inject(&["-f", "-"], Some(&input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let injected = String::from_utf8(out.stdout).unwrap();
    let (code, stdout, stderr) = check(&[], &injected);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 container(s) with placeholders, all wrapped"),
        "{stdout}"
    );
}

#[test]
fn check_flags_are_documented_and_enabled_namespace_needs_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"))
        .args(["inject", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--check",
        "--enabled-namespace",
        "AKV_ENV_WEBHOOK_ENABLED_NAMESPACES",
        "Exit status: 0",
    ] {
        assert!(help.contains(needle), "{needle:?} missing in\n{help}");
    }
    let out = inject(&["-f", "-", "--enabled-namespace", "shop"], Some(""));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--check"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_registry_ca_file_that_cannot_be_used_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, reason) in [
        (&not_pem, "it holds no PEM certificate"),
        (&missing, "cannot read it"),
    ] {
        let out = inject(
            &[
                "-f",
                "-",
                "--image-lookup",
                "--registry-ca-file",
                path.to_str().unwrap(),
            ],
            Some("kind: ConfigMap\n"),
        );
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let named = format!("--registry-ca-file {}: {reason}", path.display());
        assert!(stderr.contains(&named), "{named:?} not in {stderr}");
    }
}

#[test]
fn without_injector_image_the_released_image_of_this_version_is_used() {
    let pod = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - name: a\n      image: a\n      command: [/a]\n      env: [{name: X, value: \"x@azurekeyvault?vault=kv-one\"}]\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_akv-env-webhook"))
        .args(["inject", "-f", "-", "--log-format", "text"])
        .env_remove("AKV_ENV_WEBHOOK_INJECTOR_IMAGE")
        .env_remove("AKV_ENV_WEBHOOK_DEFAULT_VAULT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pod.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    let init = &docs[0]["spec"]["initContainers"][0];
    // What scripts/release.sh pushes: ghcr.io/akv-env/akv-env:<this version>.
    assert_eq!(
        init["image"].as_str(),
        Some(format!("ghcr.io/akv-env/akv-env:{}", env!("CARGO_PKG_VERSION")).as_str()),
        "{init:?}"
    );
    assert_eq!(
        akv_env_webhook::cli::RELEASED_INJECTOR_IMAGE,
        format!("ghcr.io/akv-env/akv-env:{}", env!("CARGO_PKG_VERSION"))
    );
}
