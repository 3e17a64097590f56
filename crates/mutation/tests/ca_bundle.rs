//! The operator's CA bundle (issue 18): the added init container carries it and writes it next
//! to the injector; every wrapped container trusts it through `--ca-file`, before any CA file of
//! the pod's own, and the pod cannot put anything of its own at that path.

use akv_mutation::{CA_BUNDLE_ENV, Config, Entrypoints, NamespaceFacts, TrustPolicy, plan_in};
use serde_json::{Value, json};

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn config(bundle: bool) -> Config {
    let mut config = Config::new("example/akv-env:1");
    config.trust = TrustPolicy {
        ca_bundle: bundle.then(|| PEM.to_owned()),
        ..Default::default()
    };
    config
}

fn pod(containers: Value) -> Value {
    json!({"metadata": {"name": "app"}, "spec": {"containers": containers}})
}

/// The patched pod, or the refusal.
fn admit(pod: &Value, config: &Config) -> Result<Value, String> {
    let plan = plan_in(pod, &NamespaceFacts::default(), config).map_err(|d| d.to_string())?;
    let mutation = plan.patch(&Entrypoints::new()).map_err(|d| d.to_string())?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &mutation.patch).unwrap();
    Ok(patched)
}

#[test]
fn every_wrapped_container_trusts_the_bundle_the_init_container_writes() {
    let p = pod(json!([
        {"name": "a", "image": "x", "command": ["/a"],
         "env": [{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]},
        {"name": "b", "image": "x", "command": ["/b"],
         "env": [
            {"name": "DB", "value": "db@azurekeyvault?vault=kv1"},
            {"name": "AKV_ENV_CA_FILE", "value": "/etc/own/ca.pem"},
         ]},
        {"name": "plain", "image": "x", "command": ["/c"]},
    ]));
    let patched = admit(&p, &config(true)).unwrap();
    let init = &patched["spec"]["initContainers"][0];
    assert_eq!(init["command"], json!(["/akv-env", "install", "/install"]));
    assert_eq!(init["env"], json!([{"name": CA_BUNDLE_ENV, "value": PEM}]));
    let args = |i: usize| patched["spec"]["containers"][i]["args"].clone();
    assert_eq!(
        args(0),
        json!(["--ca-file=/akv-env/bin/ca-bundle.pem", "--", "/a"])
    );
    // The pod's own CA file adds to the bundle; it comes after it and cannot remove it.
    assert_eq!(
        args(1),
        json!([
            "--ca-file=/akv-env/bin/ca-bundle.pem",
            "--ca-file=/etc/own/ca.pem",
            "--",
            "/b"
        ])
    );
    assert_eq!(
        args(2),
        Value::Null,
        "a container without placeholders is not touched"
    );
    // The bundle lives in the injector's own volume, mounted read-only.
    for i in [0, 1] {
        let mounts = patched["spec"]["containers"][i]["volumeMounts"]
            .as_array()
            .unwrap();
        assert!(
            mounts.contains(
                &json!({"name": "akv-env", "mountPath": "/akv-env/bin", "readOnly": true})
            ),
            "{mounts:?}"
        );
    }

    // Without a bundle: no env on the init container, no flag.
    let patched = admit(&p, &config(false)).unwrap();
    assert_eq!(patched["spec"]["initContainers"][0]["env"], Value::Null);
    assert_eq!(
        patched["spec"]["containers"][0]["args"],
        json!(["--", "/a"])
    );
}

#[test]
fn the_pod_cannot_put_its_own_file_where_the_bundle_is() {
    let placeholder = json!([{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]);
    // (case, pod, fragment of the refusal)
    let cases = [
        (
            "its own volume named like the injector's",
            json!({"metadata": {"name": "app"}, "spec": {
                "volumes": [{"name": "akv-env", "configMap": {"name": "fake-ca"}}],
                "containers": [{"name": "a", "image": "x", "command": ["/a"], "env": placeholder}],
            }}),
            "the pod already has a volume named \"akv-env\"",
        ),
        (
            "a mount at the injector's directory",
            pod(
                json!([{"name": "a", "image": "x", "command": ["/a"], "env": placeholder,
                "volumeMounts": [{"name": "fake", "mountPath": "/akv-env/bin/"}]}]),
            ),
            "already mounts volume \"fake\" at /akv-env/bin",
        ),
        (
            "an init container named like the one that writes the bundle",
            json!({"metadata": {"name": "app"}, "spec": {
                "initContainers": [{"name": "akv-env-install", "image": "evil"}],
                "containers": [{"name": "a", "image": "x", "command": ["/a"], "env": placeholder}],
            }}),
            "a container named \"akv-env-install\"",
        ),
    ];
    for (case, p, fragment) in cases {
        let err = admit(&p, &config(true)).unwrap_err();
        assert!(err.contains(fragment), "{case}: {err}");
    }
}
