//! Clouds at admission (issue 18): the operator's `--cloud`, or a namespace's
//! `akv-env.io/cloud` among the clouds the operator lets namespaces choose, becomes the
//! injector's `--cloud`; a vault URL of another cloud is refused, naming the container, the env
//! var and both clouds.

use akv_mutation::{
    ANNOTATION_CLOUD, Config, Entrypoints, NamespaceFacts, TrustPolicy, needs_namespace_cloud,
    plan_in,
};
use akv_trust::{Cloud, VaultHosts};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn pod(annotations: Value, env: Value) -> Value {
    json!({
        "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{
            "name": "app", "image": "example/app", "command": ["/app"],
            "env": env,
        }]}
    })
}

fn namespace(cloud: Option<&str>) -> NamespaceFacts {
    let annotations: BTreeMap<String, String> = cloud
        .map(|c| (ANNOTATION_CLOUD.to_owned(), c.to_owned()))
        .into_iter()
        .collect();
    NamespaceFacts::from_annotations(&annotations)
}

fn config(cloud: Option<&str>, namespace_clouds: &[&str], extra: &[&str]) -> Config {
    let mut config = Config::new("example/akv-env:1");
    config.trust = TrustPolicy {
        vault_hosts: VaultHosts::with_extra_suffixes(extra).unwrap(),
        cloud: cloud.map(|c| Cloud::parse(c).unwrap()),
        namespace_clouds: namespace_clouds
            .iter()
            .map(|c| Cloud::parse(c).unwrap())
            .collect(),
        ..Default::default()
    };
    config
}

/// The injector flags of the wrapped container (its args before `--`), or the refusal.
fn flags(pod: &Value, ns: &NamespaceFacts, config: &Config) -> Result<Vec<String>, String> {
    let plan = plan_in(pod, ns, config).map_err(|d| d.to_string())?;
    let mutation = plan.patch(&Entrypoints::new()).map_err(|d| d.to_string())?;
    let ops = serde_json::to_value(&mutation.patch).unwrap();
    let args = ops
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["path"] == "/spec/containers/0/args")
        .expect("args are patched");
    let args: Vec<String> = serde_json::from_value(args["value"].clone()).unwrap();
    Ok(args.into_iter().take_while(|a| a != "--").collect())
}

#[test]
fn the_cloud_comes_from_the_operator_or_an_allowed_namespace_choice() {
    let bare = pod(
        json!({}),
        json!([{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]),
    );
    let annotated = pod(
        json!({"akv-env.io/vault": "kv1"}),
        json!([{"name": "DB", "value": "db@azurekeyvault"}]),
    );
    // (case, pod, webhook --cloud, --namespace-cloud, --vault-host-suffix, namespace annotation,
    //  Ok(flags) or a fragment of the refusal)
    type Case<'a> = (
        &'a str,
        &'a Value,
        Option<&'a str>,
        &'a [&'a str],
        &'a [&'a str],
        Option<&'a str>,
        Result<&'a [&'a str], &'a str>,
    );
    let cases: &[Case] = &[
        ("not pinned", &bare, None, &[], &[], None, Ok(&[])),
        (
            "chart value",
            &bare,
            Some("AzureChinaCloud"),
            &[],
            &[],
            None,
            Ok(&["--cloud=AzureChinaCloud"]),
        ),
        (
            "chart value as a suffix, annotation vault",
            &annotated,
            Some("vault.usgovcloudapi.net"),
            &[],
            &[],
            None,
            Ok(&["--cloud=AzureUSGovernment"]),
        ),
        (
            "operator's own suffix: allowed for the injector too",
            &bare,
            Some("vault.example.test"),
            &[],
            &[],
            None,
            Ok(&[
                "--cloud=vault.example.test",
                "--vault-host-suffix=vault.example.test",
            ]),
        ),
        (
            "namespace choice allowed",
            &bare,
            None,
            &["AzureChinaCloud", "AzureUSGovernment"],
            &[],
            Some("AzureUSGovernment"),
            Ok(&["--cloud=AzureUSGovernment"]),
        ),
        (
            "namespace choice beats the operator's default",
            &annotated,
            Some("AzurePublicCloud"),
            &["AzureChinaCloud"],
            &[],
            Some(" azurechinacloud "),
            Ok(&["--cloud=AzureChinaCloud"]),
        ),
        (
            "namespace names the operator's own cloud",
            &bare,
            Some("AzureChinaCloud"),
            &["AzureUSGovernment"],
            &[],
            Some("vault.azure.cn"),
            Ok(&["--cloud=AzureChinaCloud"]),
        ),
        (
            "namespace choices not enabled: the annotation is not read",
            &bare,
            Some("AzureChinaCloud"),
            &[],
            &[],
            Some("AzureUSGovernment"),
            Ok(&["--cloud=AzureChinaCloud"]),
        ),
        (
            "namespace choice outside the allowed ones",
            &bare,
            Some("AzurePublicCloud"),
            &["AzureChinaCloud"],
            &[],
            Some("AzureUSGovernment"),
            Err(
                "namespace annotation `akv-env.io/cloud: AzureUSGovernment`: the operator does not let namespaces choose this cloud (allowed: AzurePublicCloud, AzureChinaCloud)",
            ),
        ),
        (
            "namespace choice of an unknown cloud",
            &bare,
            None,
            &["AzureChinaCloud"],
            &[],
            Some("AzureGermanCloud"),
            Err("namespace annotation `akv-env.io/cloud`: \"AzureGermanCloud\" is not a cloud"),
        ),
        (
            "extra suffixes still passed when pinned",
            &bare,
            Some("AzureChinaCloud"),
            &[],
            &["vault.test"],
            None,
            Ok(&["--cloud=AzureChinaCloud", "--vault-host-suffix=vault.test"]),
        ),
    ];
    for (case, pod, cloud, ns_clouds, extra, ns_cloud, want) in cases {
        let config = config(*cloud, ns_clouds, extra);
        match (flags(pod, &namespace(*ns_cloud), &config), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, *want, "{case}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{case}: {e}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn a_vault_url_of_another_cloud_is_refused_where_the_cloud_is_pinned() {
    let p = pod(
        json!({}),
        json!([
            {"name": "OK", "value": "db@azurekeyvault?vault=https://kv1.vault.azure.cn"},
            {"name": "BARE", "value": "db@azurekeyvault?vault=kv1"},
            {"name": "PUBLIC", "value": "db@azurekeyvault?vault=https://kv1.vault.azure.net"},
            {"name": "GOVHSM", "value": "k@azurekeyvault?type=key&vault=https://hsm1.managedhsm.usgovcloudapi.net"},
        ]),
    );
    // Pinned by the operator, or chosen by the namespace: the same refusal.
    for (case, config, ns) in [
        (
            "operator",
            config(Some("AzureChinaCloud"), &[], &[]),
            namespace(None),
        ),
        (
            "namespace",
            config(None, &["AzureChinaCloud"], &[]),
            namespace(Some("AzureChinaCloud")),
        ),
    ] {
        let err = flags(&p, &ns, &config).unwrap_err();
        for fragment in [
            "container \"app\": env var PUBLIC: https://kv1.vault.azure.net is a vault of AzurePublicCloud, but vaults here are in AzureChinaCloud",
            "container \"app\": env var GOVHSM: https://hsm1.managedhsm.usgovcloudapi.net is a vault of AzureUSGovernment, but vaults here are in AzureChinaCloud",
        ] {
            assert!(err.contains(fragment), "{case}: {fragment}\nnot in: {err}");
        }
        assert!(
            !err.contains("env var OK") && !err.contains("env var BARE"),
            "{case}: {err}"
        );
    }
    // Not pinned: every cloud's vaults, as before.
    assert_eq!(
        flags(&p, &namespace(None), &config(None, &[], &[])).unwrap(),
        Vec::<String>::new()
    );

    // A default vault annotation of another cloud is refused where a placeholder uses it.
    let p = pod(
        json!({"akv-env.io/vault": "https://kv1.vault.azure.net"}),
        json!([{"name": "DB", "value": "db@azurekeyvault"}]),
    );
    let err = flags(
        &p,
        &namespace(None),
        &config(Some("AzureUSGovernment"), &[], &[]),
    )
    .unwrap_err();
    assert!(
        err.contains("container \"app\": env var DB: https://kv1.vault.azure.net is a vault of AzurePublicCloud, but vaults here are in AzureUSGovernment"),
        "{err}"
    );
}

#[test]
fn the_namespace_is_read_for_its_cloud_only_where_namespaces_may_choose() {
    let with = pod(
        json!({"akv-env.io/vault": "kv1"}),
        json!([{"name": "DB", "value": "db@azurekeyvault"}]),
    );
    let without = pod(json!({}), json!([{"name": "X", "value": "plain"}]));
    let opted_out = pod(
        json!({"akv-env.io/inject": "false"}),
        json!([{"name": "DB", "value": "db@azurekeyvault?vault=kv1"}]),
    );
    let choosing = config(None, &["AzureChinaCloud"], &[]).trust;
    let fixed = config(Some("AzureChinaCloud"), &[], &[]).trust;
    assert!(needs_namespace_cloud(&with, &choosing));
    assert!(!needs_namespace_cloud(&with, &fixed));
    assert!(!needs_namespace_cloud(&without, &choosing));
    assert!(!needs_namespace_cloud(&opted_out, &choosing));
}
