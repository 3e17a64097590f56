//! The harness itself: what it pushes is what a registry client sees (checked with skopeo).

use std::process::Command;

use registry_harness::{HarnessError, ImageSpec, TestRegistry, require_tool};

/// `skopeo inspect --raw` of an image, as JSON; Err(stderr) when skopeo fails.
fn inspect_raw(image: &str) -> Result<serde_json::Value, String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("skopeo runs");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("manifest is JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_missing_tool_says_to_run_setup() {
    let err = require_tool("no-such-tool-akv-env", "no-such-package").unwrap_err();
    assert!(matches!(err, HarnessError::MissingTool { .. }), "{err:?}");
    // Tests unwrap harness results: the panic message must carry the advice too.
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            text.contains("no-such-tool-akv-env") && text.contains("run scripts/setup.sh"),
            "{text}"
        );
    }
}

#[test]
fn pushes_images_with_and_without_layers() {
    let registry = TestRegistry::start().unwrap();
    let bare = registry
        .push(&ImageSpec::linux("amd64").cmd(&["true"]), "bare:v1")
        .unwrap();
    let with_file = registry
        .push(
            &ImageSpec::linux("arm64")
                .entrypoint(&["/app"])
                .file("/app", b"#!/bin/sh\n"),
            "files:v1",
        )
        .unwrap();
    assert!(bare.starts_with("sha256:") && with_file.starts_with("sha256:"));
    assert_ne!(bare, with_file);

    let manifest = inspect_raw(&registry.image("bare:v1")).unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        0,
        "{manifest}"
    );
    let manifest = inspect_raw(&registry.image("files:v1")).unwrap();
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );
    // The returned digest addresses the pushed manifest.
    assert!(inspect_raw(&registry.image(&format!("files@{with_file}"))).is_ok());
}

#[test]
fn pushes_a_multi_platform_index() {
    let registry = TestRegistry::start().unwrap();
    let digest = registry
        .push_index(
            &[
                ImageSpec::linux("amd64").cmd(&["a"]),
                ImageSpec::linux("arm64").variant("v8").cmd(&["b"]),
            ],
            "multi:v1",
        )
        .unwrap();
    let index = inspect_raw(&registry.image("multi:v1")).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<&serde_json::Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["platform"])
        .collect();
    assert_eq!(
        platforms,
        [
            &serde_json::json!({"os": "linux", "architecture": "amd64"}),
            &serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ]
    );
    assert!(inspect_raw(&registry.image(&format!("multi@{digest}"))).is_ok());
}

#[test]
fn a_basic_auth_registry_refuses_anonymous_clients() {
    let registry = TestRegistry::start_with_basic_auth("user", "pass word").unwrap();
    registry
        .push(&ImageSpec::linux("amd64").cmd(&["x"]), "private:v1")
        .unwrap();
    let err = inspect_raw(&registry.image("private:v1")).unwrap_err();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );
}

#[test]
fn dropping_the_registry_stops_it() {
    let registry = TestRegistry::start().unwrap();
    let addr = registry.addr();
    assert!(std::net::TcpStream::connect(addr).is_ok());
    drop(registry);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "{addr} still answers"
    );
}
