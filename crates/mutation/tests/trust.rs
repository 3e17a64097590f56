//! Identity and trust at admission: the injector's flags come from the admitted spec only, and
//! vaults are Key Vault's (issue 13).

use akv_mutation::{Config, Entrypoints, NamespaceFacts, TrustPolicy, plan_in};
use akv_trust::VaultHosts;
use serde_json::{Value, json};

fn pod(annotations: Value, env: Value) -> Value {
    json!({
        "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{
            "name": "app", "image": "example/app", "command": ["/app"], "args": ["--port=80"],
            "env": env,
            "envFrom": [{"configMapRef": {"name": "settings"}}],
        }]}
    })
}

/// The wrapped container's args, or the refusal.
fn admit(pod: &Value, namespace: &NamespaceFacts, config: &Config) -> Result<Vec<String>, String> {
    let plan = plan_in(pod, namespace, config).map_err(|d| d.to_string())?;
    let mutation = plan.patch(&Entrypoints::new()).map_err(|d| d.to_string())?;
    let ops = serde_json::to_value(&mutation.patch).unwrap();
    let args = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/containers/0/args")
        .expect("args are patched");
    Ok(serde_json::from_value(args["value"].clone()).unwrap())
}

#[test]
fn flags_come_from_annotations_and_literal_values_before_the_program() {
    let config = Config::new("example/akv-env:1");
    let allowed = NamespaceFacts {
        allow_managed_identity: true,
        ..Default::default()
    };
    let p = pod(
        json!({"akv-env.io/auth": "managed-identity"}),
        json!([
            {"name": "DB", "value": "db@azurekeyvault?vault=kv1"},
            {"name": "AKV_ENV_RESOLVE", "value": "kv1.vault.azure.net=10.0.0.4:443"},
            {"name": "AKV_ENV_CA_FILE", "value": "/etc/kv/ca.pem"},
        ]),
    );
    assert_eq!(
        admit(&p, &allowed, &config).unwrap(),
        [
            "--auth=managed-identity",
            "--ca-file=/etc/kv/ca.pem",
            "--resolve=kv1.vault.azure.net=10.0.0.4:443",
            "--",
            "/app",
            "--port=80"
        ]
    );
    // Without any of it: just the program, as before.
    let plain = pod(
        json!({}),
        json!([{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]),
    );
    assert_eq!(
        admit(&plain, &NamespaceFacts::default(), &config).unwrap(),
        ["--", "/app", "--port=80"]
    );
}

#[test]
fn values_from_config_maps_never_become_flags() {
    let config = Config::new("example/akv-env:1");
    let p = pod(
        json!({}),
        json!([
            {"name": "DB", "value": "db@azurekeyvault?vault=kv1"},
            {"name": "AKV_ENV_CA_FILE", "value": "/etc/kv/ca.pem"},
            {"name": "AKV_ENV_CA_FILE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "ca"}}},
            {"name": "AKV_ENV_RESOLVE", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "map"}}},
        ]),
    );
    let plan = plan_in(&p, &NamespaceFacts::default(), &config).unwrap();
    let mutation = plan.patch(&Entrypoints::new()).unwrap();
    assert!(
        mutation
            .warnings
            .iter()
            .any(|w| w.contains("env var AKV_ENV_RESOLVE comes from valueFrom")),
        "{:?}",
        mutation.warnings
    );
    assert_eq!(
        admit(&p, &NamespaceFacts::default(), &config).unwrap(),
        ["--", "/app", "--port=80"]
    );
}

#[test]
fn managed_identity_is_refused_unless_an_operator_allows_it() {
    let p = pod(
        json!({"akv-env.io/auth": "managed-identity"}),
        json!([{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]),
    );
    let config = Config::new("example/akv-env:1");
    let err = admit(&p, &NamespaceFacts::default(), &config).unwrap_err();
    assert!(
        err.starts_with("akv-env: pod annotation `akv-env.io/auth: managed-identity`: managed identity is not allowed here")
            && err.contains("azure.workload.identity/use")
            && err.contains("akv-env.io/allow-managed-identity")
            && err.contains("identity.allowManagedIdentity"),
        "{err}"
    );
    let mut open = config.clone();
    open.trust.allow_managed_identity = true;
    assert_eq!(
        admit(&p, &NamespaceFacts::default(), &open).unwrap()[0],
        "--auth=managed-identity"
    );
}

#[test]
fn vault_hosts_are_checked_naming_the_container_and_variable() {
    let config = Config::new("example/akv-env:1");
    let p = pod(
        json!({"akv-env.io/vault": "https://kv1.vault.test"}),
        json!([
            {"name": "OK", "value": "db@azurekeyvault?vault=https://kv1.vault.azure.cn"},
            {"name": "RIG", "value": "db@azurekeyvault"},
            {"name": "PORT", "value": "db@azurekeyvault?vault=https://kv1.vault.azure.net:8443"},
            {"name": "HSM", "value": "db@azurekeyvault?vault=https://hsm1.managedhsm.azure.net"},
            {"name": "HSMKEY", "value": "k@azurekeyvault?type=key&vault=https://hsm1.managedhsm.azure.net"},
        ]),
    );
    let err = admit(&p, &NamespaceFacts::default(), &config).unwrap_err();
    for fragment in [
        "container \"app\": env var RIG: https://kv1.vault.test is not a Key Vault or Managed HSM host",
        "container \"app\": env var PORT: https://kv1.vault.azure.net:8443: Key Vault is reached on port 443 only",
        "container \"app\": env var HSM: https://hsm1.managedhsm.azure.net is a Managed HSM, which holds keys only",
    ] {
        assert!(err.contains(fragment), "{fragment}\nnot in: {err}");
    }
    assert!(!err.contains("OK") && !err.contains("HSMKEY"), "{err}");

    // An operator's extra suffix admits the test rig's vault and tells the injector.
    let mut rig = config.clone();
    rig.trust = TrustPolicy {
        vault_hosts: VaultHosts::with_extra_suffixes(["vault.test"]).unwrap(),
        ..Default::default()
    };
    let p = pod(
        json!({"akv-env.io/vault": "https://kv1.vault.test"}),
        json!([{"name": "RIG", "value": "db@azurekeyvault"}]),
    );
    assert_eq!(
        admit(&p, &NamespaceFacts::default(), &rig).unwrap(),
        ["--vault-host-suffix=vault.test", "--", "/app", "--port=80"]
    );
}
