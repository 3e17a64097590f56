//! `scripts/release.sh` against a real local registry (Debian's docker-registry): both
//! architectures' binaries with SBOMs, multi-platform image indexes pushed by digest, and the
//! chart pushed to `oci://REGISTRY/charts`, from where helm installs it pinned to those digests.
//! The released webhook itself (amd64 natively, arm64 under qemu-user) reads its own image's
//! entrypoint through the pushed index for both node platforms.
//!
//! Builds the four release binaries (a no-op when fresh); needs the tools of scripts/setup.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chart_tests::helm::workspace_root;
use chart_tests::manifests::{one, parse_documents};
use registry_harness::TestRegistry;
use serde_json::Value as Json;
use sha2::Digest as _;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn run(command: &mut Command) -> Output {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn helm_bin() -> PathBuf {
    let bin = std::env::var_os("AKV_ENV_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("AKV_ENV_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join(".cache"))
                .join("tools/bin/helm")
        });
    assert!(
        bin.is_file(),
        "{} not found: run scripts/setup.sh",
        bin.display()
    );
    bin
}

/// helm with a private home: no user config, repositories or registry logins leak in.
fn helm(home: &Path) -> Command {
    let mut c = Command::new(helm_bin());
    c.env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"));
    c
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The raw manifest or index `reference` names, and its digest (sha256 of those bytes).
fn raw_manifest(reference: &str) -> (Json, String) {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    let digest = format!("sha256:{}", sha256_hex(&out.stdout));
    (serde_json::from_slice(&out.stdout).unwrap(), digest)
}

/// A pod on a node of `arch` whose container has a placeholder and no `command`: the webhook
/// must read ENTRYPOINT/CMD of `image` for that platform.
fn pod_on(arch: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  nodeSelector: {{kubernetes.io/arch: {arch}}}\n  containers:\n    - name: app\n      image: {image}\n      env: [{{name: X, value: \"x@azurekeyvault?vault=kv-one\"}}]\n"
    )
}

/// `inject --image-lookup` of `pod` by a released webhook binary (through qemu for arm64).
fn released_inject(runner: Option<&str>, webhook: &Path, registry: &str, pod: &str) -> Output {
    let mut c = match runner {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(webhook);
            c
        }
        None => Command::new(webhook),
    };
    c.args([
        "inject",
        "-f",
        "-",
        "--image-lookup",
        "--log-format",
        "text",
    ])
    .args(["--insecure-registry", registry])
    .env_clear()
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), pod.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn release_pushes_both_platforms_and_a_chart_pinned_to_their_digests() {
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let dir = tempfile::Builder::new()
        .prefix("akv-release-test-")
        .tempdir()
        .unwrap();
    let out_dir = dir.path().join("release");
    let helm_home = dir.path().join("helm");

    run(Command::new(workspace_root().join("scripts/release.sh"))
        .current_dir(workspace_root())
        .args([VERSION, "--push", &host, "--insecure", "--out"])
        .arg(&out_dir)
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        // The pipeline under test, not the optimiser: a webhook without fat LTO saves CI
        // minutes per architecture (see Cargo.toml, profile release-quick).
        .env("AKV_ENV_WEBHOOK_PROFILE", "release-quick")
        .env("AKV_ENV_ALLOW_UNOPTIMISED_RELEASE", "1"));
    let release: Json =
        serde_json::from_slice(&std::fs::read(out_dir.join("release.json")).unwrap()).unwrap();
    assert_eq!(release["version"], VERSION);
    assert_eq!(release["webhook_profile"], "release-quick");
    let injector_digest = release["images"]["injector"]["digest"].as_str().unwrap();
    let webhook_digest = release["images"]["webhook"]["digest"].as_str().unwrap();

    // Every artefact is listed in SHA256SUMS and matches it.
    run(Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&out_dir));
    let sums = std::fs::read_to_string(out_dir.join("SHA256SUMS")).unwrap();
    let lock = std::fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    let ring_version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"ring\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .unwrap()
        .trim_matches('"')
        .to_string();

    // Static binaries of the right machine, each with an SBOM naming it by hash.
    for (arch, machine) in [("amd64", "x86-64"), ("arm64", "ARM aarch64")] {
        for name in ["akv-env", "akv-env-webhook"] {
            let file = format!("{name}-linux-{arch}");
            let bin = out_dir.join("bin").join(&file);
            let desc = stdout(&run(Command::new("file").arg("-b").arg(&bin)));
            assert!(
                desc.contains(machine) && desc.contains("static"),
                "{file}: {desc}"
            );
            let sbom_file = format!("sbom/{file}.cdx.json");
            assert!(sums.contains(&format!("  bin/{file}\n")), "{sums}");
            assert!(sums.contains(&format!("  {sbom_file}\n")), "{sums}");
            let sbom: Json =
                serde_json::from_slice(&std::fs::read(out_dir.join(&sbom_file)).unwrap()).unwrap();
            assert_eq!(sbom["bomFormat"], "CycloneDX", "{sbom_file}");
            let subject = &sbom["metadata"]["component"];
            assert_eq!(subject["name"], name, "{sbom_file}");
            assert_eq!(subject["version"], VERSION, "{sbom_file}");
            assert_eq!(
                subject["hashes"][0]["content"],
                sha256_hex(&std::fs::read(&bin).unwrap()),
                "{sbom_file} names the binary it describes"
            );
            let components = sbom["components"].as_array().unwrap();
            let component = |n: &str| components.iter().find(|c| c["name"] == n);
            let ring = component("ring").unwrap_or_else(|| panic!("{sbom_file}: no ring"));
            assert_eq!(ring["version"], ring_version.as_str(), "{sbom_file}");
            assert_eq!(ring["scope"], "required", "{sbom_file}");
            assert_eq!(ring["purl"], format!("pkg:cargo/ring@{ring_version}"));
            // Compile-time only: listed, but not as part of the binary.
            assert_eq!(
                component("syn").unwrap()["scope"],
                "excluded",
                "{sbom_file}"
            );
            // Test-only crates are not in it.
            assert!(component("fake-keyvault").is_none(), "{sbom_file}");
        }
    }

    // Both images are indexes of linux/amd64 + linux/arm64, pushed with the recorded digest,
    // each platform's image holding a binary of that machine.
    for (repository, digest) in [
        ("akv-env", injector_digest),
        ("akv-env-webhook", webhook_digest),
    ] {
        let (index, pushed) = raw_manifest(&format!("{host}/{repository}:{VERSION}"));
        assert_eq!(
            pushed, digest,
            "{repository}: the tag is the recorded index"
        );
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let mut platforms = Vec::new();
        for entry in index["manifests"].as_array().unwrap() {
            let arch = entry["platform"]["architecture"].as_str().unwrap();
            platforms.push(format!(
                "{}/{arch}",
                entry["platform"]["os"].as_str().unwrap()
            ));
            let image = format!("{host}/{repository}@{}", entry["digest"].as_str().unwrap());
            let config: Json = serde_json::from_slice(
                &run(Command::new("skopeo")
                    .args(["inspect", "--config", "--raw", "--tls-verify=false"])
                    .arg(format!("docker://{image}")))
                .stdout,
            )
            .unwrap();
            assert_eq!(config["architecture"], arch, "{image}");
            assert_eq!(config["config"]["User"], "65532:65532", "{image}");
        }
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{repository}");
    }

    // The chart, from its oci:// reference: values and rendered manifests pin the digests.
    let chart = format!("oci://{host}/charts/akv-env");
    assert_eq!(release["chart"]["reference"], chart.as_str());
    let values = stdout(&run(helm(&helm_home).args([
        "show",
        "values",
        &chart,
        "--version",
        VERSION,
        "--plain-http",
    ])));
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&values).unwrap();
    assert_eq!(values["image"]["digest"].as_str(), Some(webhook_digest));
    assert_eq!(
        values["injector"]["image"]["digest"].as_str(),
        Some(injector_digest)
    );
    let chart_yaml = stdout(&run(helm(&helm_home).args([
        "show",
        "chart",
        &chart,
        "--version",
        VERSION,
        "--plain-http",
    ])));
    assert!(
        chart_yaml.contains(&format!("\nversion: {VERSION}\n"))
            && chart_yaml.contains(&format!("appVersion: {VERSION}")),
        "{chart_yaml}"
    );
    let rendered = stdout(&run(helm(&helm_home).args([
        "template",
        "akv",
        &chart,
        "--version",
        VERSION,
        "--plain-http",
        "--namespace",
        "akv-system",
        "--kube-version",
        chart_tests::helm::KUBE_VERSION,
    ])));
    let docs = parse_documents(&rendered).unwrap();
    let deployment = one(&docs, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        format!("{host}/akv-env-webhook@{webhook_digest}").as_str()
    );
    let injector_arg = format!("--injector-image={host}/akv-env@{injector_digest}");
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == injector_arg.as_str()),
        "{injector_arg} not in {}",
        container["args"]
    );

    // The released webhook reads its own image's ENTRYPOINT/CMD through the index for either
    // node platform; arm64's binary runs under qemu-user. A platform the index lacks is refused.
    let webhook_image = format!("{host}/akv-env-webhook:{VERSION}");
    for (runner, bin) in [
        (None, "akv-env-webhook-linux-amd64"),
        (Some("qemu-aarch64-static"), "akv-env-webhook-linux-arm64"),
    ] {
        let bin = out_dir.join("bin").join(bin);
        for arch in ["amd64", "arm64"] {
            let out = released_inject(runner, &bin, &host, &pod_on(arch, &webhook_image));
            let shown = format!("{} on {arch}", bin.display());
            assert!(
                out.status.success(),
                "{shown}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let pod: serde_yaml_ng::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
            let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            assert_eq!(args, ["--", "/akv-env-webhook", "serve"], "{shown}");
        }
        let out = released_inject(runner, &bin, &host, &pod_on("s390x", &webhook_image));
        assert_eq!(out.status.code(), Some(1), "{}", bin.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("s390x"), "{stderr}");
    }
}

#[test]
fn chart_and_changelog_carry_the_workspace_version() {
    let chart =
        std::fs::read_to_string(workspace_root().join("charts/akv-env/Chart.yaml")).unwrap();
    let chart: serde_yaml_ng::Value = serde_yaml_ng::from_str(&chart).unwrap();
    assert_eq!(
        chart["version"].as_str(),
        Some(VERSION),
        "Chart.yaml version"
    );
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(VERSION),
        "Chart.yaml appVersion"
    );
    let changelog = std::fs::read_to_string(workspace_root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains(&format!("\n## [{VERSION}]")),
        "CHANGELOG.md has no section for {VERSION}"
    );
    // `inject` without --injector-image uses the image the chart installs by default.
    let values =
        std::fs::read_to_string(workspace_root().join("charts/akv-env/values.yaml")).unwrap();
    let values: serde_yaml_ng::Value = serde_yaml_ng::from_str(&values).unwrap();
    let repository = values["injector"]["image"]["repository"].as_str().unwrap();
    assert_eq!(
        akv_env_webhook::cli::RELEASED_INJECTOR_IMAGE,
        format!("{repository}:{VERSION}")
    );
}

#[test]
fn a_pushed_release_refuses_an_unoptimised_webhook_profile() {
    let out = Command::new(workspace_root().join("scripts/release.sh"))
        .current_dir(workspace_root())
        .args([
            VERSION,
            "--push",
            "127.0.0.1:9",
            "--insecure",
            "--skip-build",
        ])
        .env("AKV_ENV_WEBHOOK_PROFILE", "release-quick")
        .env_remove("AKV_ENV_ALLOW_UNOPTIMISED_RELEASE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("AKV_ENV_WEBHOOK_PROFILE=release-quick")
            && stderr.contains("release-webhook"),
        "{stderr}"
    );
}
