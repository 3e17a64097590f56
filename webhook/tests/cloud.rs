//! Clouds over the wire (issue 18): a namespace's `akv-env.io/cloud`, among the clouds the
//! operator lets namespaces choose, becomes the injector's `--cloud`; a vault URL of another
//! cloud, or a cloud the operator did not allow, is refused with a message naming what.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use akv_env_webhook::namespaces::CloudNamespaces;
use akv_trust::Cloud;
use common::{Connection, Options, Protocol, fixture, read_answer, start};
use serde_json::json;

#[tokio::test]
async fn the_namespace_cloud_becomes_the_injectors_flag_or_a_refusal() {
    let running = start(Options {
        namespaces: Arc::new(CloudNamespaces(HashMap::from([
            ("shop".to_owned(), "AzureChinaCloud".to_owned()),
            ("ops".to_owned(), "AzureUSGovernment".to_owned()),
        ]))),
        trust: akv_mutation::TrustPolicy {
            cloud: Some(Cloud::Public),
            namespace_clouds: vec![Cloud::China],
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let mut conn = Connection::open(running.server.https_addr, &running.ca, Protocol::Http1).await;
    // (namespace, DB_PASSWORD, Ok(first injector flag) or fragments of the refusal)
    type Case<'a> = (&'a str, &'a str, Result<&'a str, &'a [&'a str]>);
    let cases: &[Case] = &[
        (
            "shop",
            "db-password@azurekeyvault?vault=shop-kv",
            Ok("--cloud=AzureChinaCloud"),
        ),
        (
            "default",
            "db-password@azurekeyvault?vault=shop-kv",
            Ok("--cloud=AzurePublicCloud"),
        ),
        (
            "shop",
            "db-password@azurekeyvault?vault=https://shop-kv.vault.azure.net",
            Err(&[
                "container \"web\": env var DB_PASSWORD: https://shop-kv.vault.azure.net is a vault of AzurePublicCloud, but vaults here are in AzureChinaCloud",
            ]),
        ),
        (
            "ops",
            "db-password@azurekeyvault?vault=shop-kv",
            Err(&[
                "namespace annotation `akv-env.io/cloud: AzureUSGovernment`",
                "allowed: AzurePublicCloud, AzureChinaCloud",
            ]),
        ),
    ];
    for (namespace, value, want) in cases {
        let mut review = fixture("pod-command.json");
        review["request"]["namespace"] = json!(namespace);
        review["request"]["object"]["metadata"]["namespace"] = json!(namespace);
        review["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = json!(value);
        let (_, body) = conn
            .post("/mutate", serde_json::to_vec(&review).unwrap())
            .await;
        let answer = read_answer(&review, &body);
        match want {
            Ok(flag) => {
                let pod = answer.patched.expect("a patch");
                assert_eq!(
                    pod["spec"]["containers"][0]["args"][0], *flag,
                    "{namespace}: {pod}"
                );
            }
            Err(fragments) => {
                assert_eq!(answer.response["allowed"], false, "{}", answer.response);
                let message = answer.response["status"]["message"].as_str().unwrap();
                for fragment in *fragments {
                    assert!(message.contains(fragment), "{namespace}: {message}");
                }
            }
        }
    }
}
