//! The mutation planner on an arbitrary pod and arbitrary registry answers.
//!
//! Input: pod JSON, then (after the last NUL byte, which JSON text cannot hold) bytes that
//! choose the namespace's vault annotation, `$(` references spliced into the pod's `command`,
//! `args` and env values (see [`splice_references`]), and each image's entrypoint or lookup
//! error. A produced patch must apply to the pod it was computed against, wrap exactly the
//! containers it names, and make the pod one the planner then leaves alone. The seeds carry
//! `$(` references too; the splicing reaches the composition paths from any pod JSON.
#![no_main]

use akv_mutation::{
    Config, Entrypoints, ImageEntrypoint, STATUS_INJECTED, Skip, needs_namespace_vault, plan,
};
use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (json, choices) = match data.iter().rposition(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(mut pod) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let mut u = Unstructured::new(choices);
    let namespace_vault: Option<String> = u.arbitrary().unwrap_or_default();
    splice_references(&mut pod, &mut u);
    let _ = needs_namespace_vault(&pod);
    let mut config = Config::new("registry.example/akv-env:1");
    if u.arbitrary().unwrap_or(false) {
        config.default_vault = akv_placeholder::Vault::parse("default-kv").ok();
    }
    let planned = match plan(&pod, namespace_vault.as_deref(), &config) {
        Ok(p) => p,
        Err(denial) => {
            assert!(!denial.problems.is_empty(), "a denial without a reason");
            assert!(!denial.to_string().is_empty());
            return;
        }
    };
    let mut entrypoints = Entrypoints::new();
    for lookup in planned.images_to_look_up() {
        let answer: Result<(Vec<String>, Vec<String>), String> =
            u.arbitrary().unwrap_or(Err(String::new()));
        let answer = answer.map(|(entrypoint, cmd)| ImageEntrypoint { entrypoint, cmd });
        entrypoints.insert(lookup.image, answer);
    }
    let mutation = match planned.patch(&entrypoints) {
        Ok(m) => m,
        Err(denial) => {
            assert!(!denial.problems.is_empty(), "a denial without a reason");
            assert!(!denial.to_string().is_empty());
            return;
        }
    };
    if planned.skipped().is_some() {
        assert!(mutation.patch.0.is_empty(), "a skipped pod was patched");
        return;
    }
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &mutation.patch.0)
        .unwrap_or_else(|e| panic!("the patch does not apply to its own pod: {e}"));
    assert_eq!(
        patched["metadata"]["annotations"][akv_mutation::ANNOTATION_STATUS],
        STATUS_INJECTED
    );
    assert_eq!(
        patched["spec"]["initContainers"][0]["name"],
        config.init_container_name.as_str()
    );
    for wrapped in &mutation.wrapped {
        let list = match wrapped.kind {
            akv_mutation::ContainerKind::Container => "containers",
            akv_mutation::ContainerKind::InitContainer => "initContainers",
        };
        // The init container was inserted at 0 after the others were patched.
        let shift = usize::from(wrapped.kind == akv_mutation::ContainerKind::InitContainer);
        let container = &patched["spec"][list][wrapped.index + shift];
        assert_eq!(container["command"][0], config.injector_path().as_str());
        // Before `--` only the injector's own flags: `$(` in the pod's strings never moves there.
        let args = container["args"].as_array().expect("wrapped args");
        let dashes = args
            .iter()
            .position(|a| a == "--")
            .expect("`--` in the args");
        for flag in &args[..dashes] {
            let flag = flag.as_str().expect("a string flag");
            assert!(
                [
                    "--compose-env=",
                    "--compose-arg=",
                    "--capture=",
                    "--allow-placeholder-text",
                    "--termination-message-path="
                ]
                .iter()
                .any(|known| flag.starts_with(known)),
                "unexpected injector flag {flag:?}"
            );
        }
    }
    let again = plan(&patched, namespace_vault.as_deref(), &config)
        .unwrap_or_else(|e| panic!("the mutated pod is refused: {e}"));
    assert_eq!(again.skipped(), Some(Skip::AlreadyMutated));
});

/// The `$(` shapes the kubelet treats differently: a reference, an escape, an escaped dollar
/// before a reference, an unclosed one, an empty name.
const SHAPES: &[&str] = &["$({})", "$$({})", "$$$({})", "$({}", "$()", "$$"];

/// Splices `$(` references chosen by `u` into every container's `command`, `args` and env
/// values (and may add a placeholder env var for them to refer to), naming the container's own
/// env vars or arbitrary names, so composition is fuzzed from any pod, not only from seeds.
fn splice_references(pod: &mut Value, u: &mut Unstructured) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for container in containers.iter_mut().filter(|c| c.is_object()) {
            if u.arbitrary().unwrap_or(false)
                && let Some(env) = container.pointer_mut("/env").and_then(Value::as_array_mut)
            {
                let name: String = u.arbitrary().unwrap_or_default();
                env.push(serde_json::json!({"name": name, "value": "pw@azurekeyvault"}));
            }
            let names: Vec<String> = container
                .pointer("/env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.pointer("/name")?.as_str().map(str::to_owned))
                .collect();
            let mut strings: Vec<String> = Vec::new();
            for field in ["command", "args"] {
                let len = container
                    .pointer(&format!("/{field}"))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                strings.extend((0..len).map(|i| format!("/{field}/{i}")));
            }
            let env_len = container
                .pointer("/env")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            strings.extend((0..env_len).map(|i| format!("/env/{i}/value")));
            for pointer in strings {
                if !u.arbitrary().unwrap_or(false) {
                    continue;
                }
                let Some(Value::String(text)) = container.pointer_mut(&pointer) else {
                    continue;
                };
                let name = match u.choose(&names) {
                    Ok(known) if u.arbitrary().unwrap_or(true) => known.clone(),
                    _ => u.arbitrary().unwrap_or_default(),
                };
                let shape = u.choose(SHAPES).copied().unwrap_or(SHAPES[0]);
                let reference = shape.replace("{}", &name);
                let mut at = u.int_in_range(0..=text.len()).unwrap_or(text.len());
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.insert_str(at, &reference);
            }
        }
    }
}
