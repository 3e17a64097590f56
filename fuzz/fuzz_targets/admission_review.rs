//! The webhook's whole decoding path (`Admitter::review`) on arbitrary request bodies.
//!
//! Every body gets an answer: a 400 reason, or an AdmissionReview echoing the uid whose
//! base64 patch applies to the object that was sent and leaves a pod the webhook then skips.
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use akv_env_webhook::admission::{Admitter, Reply};
use akv_env_webhook::lookup::{EntrypointSource, Table};
use akv_env_webhook::metrics::Metrics;
use akv_env_webhook::namespaces::NoNamespaces;
use akv_mutation::{Config, ImageEntrypoint};
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct World {
    runtime: tokio::runtime::Runtime,
    admitter: Admitter,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let table: Arc<dyn EntrypointSource> = Arc::new(Table(HashMap::from([(
            "registry.example/nginx:1.27".to_owned(),
            ImageEntrypoint {
                entrypoint: vec!["/docker-entrypoint.sh".into()],
                cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            },
        )])));
        let mut config = Config::new("registry.example/akv-env:1");
        config.default_vault = akv_placeholder::Vault::parse("default-kv").ok();
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            admitter: Admitter {
                config,
                entrypoints: table.clone(),
                namespaces: Arc::new(NoNamespaces),
                metrics: Arc::new(Metrics::new(table)),
                timeout: Duration::from_secs(5),
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let reply = world.runtime.block_on(world.admitter.review(data));
    let review = match reply {
        Reply::BadRequest(reason) => {
            assert!(!reason.is_empty());
            return;
        }
        Reply::Review(review) => review,
    };
    // Anything answered with a review was a JSON AdmissionReview.
    let sent: Value = serde_json::from_slice(data).expect("a review answer to non-JSON");
    let response = &review["response"];
    assert_eq!(review["kind"], "AdmissionReview");
    assert!(response["allowed"].is_boolean(), "{review}");
    if response["allowed"] == false {
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "a refusal without a reason: {review}");
    }
    let Some(patch) = response.get("patch") else {
        return;
    };
    assert_eq!(response["allowed"], true);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().expect("the patch is a base64 string"))
        .expect("the patch is base64");
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).expect("the patch is JSON");
    let mut object = sent["request"]["object"].clone();
    json_patch::patch(&mut object, &ops.0)
        .unwrap_or_else(|e| panic!("the patch does not apply to the object sent: {e}"));
    // Admission again (reinvocation): the mutated pod is left alone.
    let mut again = sent.clone();
    again["request"]["object"] = object;
    let body = serde_json::to_vec(&again).unwrap();
    match world.runtime.block_on(world.admitter.review(&body)) {
        Reply::Review(second) => {
            assert_eq!(second["response"]["allowed"], true, "{second}");
            assert!(
                second["response"].get("patch").is_none(),
                "patched twice: {second}"
            );
        }
        Reply::BadRequest(reason) => panic!("the mutated review is refused: {reason}"),
    }
});
