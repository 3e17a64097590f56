//! `akv-env-webhook inject`: the binary on multi-document YAML.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_yaml::Value;

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
    serde_yaml::Deserializer::from_str(text)
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
