//! The planner on hostile pods: thousands of containers and env vars, huge strings, deep
//! nesting, fields of the wrong type. Each gets a correct patch or a denial naming the problem;
//! nothing panics. (The HTTPS edge is covered in `webhook/tests/hostile.rs`.)

use akv_mutation::{Config, Entrypoints, ImageEntrypoint, Skip, plan};
use serde_json::{Value, json};

const PLACEHOLDER: &str = "db-password@azurekeyvault?vault=prod-kv";

fn config() -> Config {
    Config::new("registry.example/akv-env:1")
}

fn container(index: usize, vars: usize) -> Value {
    let env: Vec<Value> = (0..vars)
        .map(|v| json!({"name": format!("VAR_{v}"), "value": PLACEHOLDER}))
        .collect();
    json!({"name": format!("c{index}"), "image": "registry.example/app:1",
           "command": ["/app"], "env": env})
}

fn pod(containers: Vec<Value>) -> Value {
    json!({"metadata": {"name": "hostile"}, "spec": {"containers": containers}})
}

/// Plans and patches with no image lookups, applies the patch: the mutated pod.
fn mutate(pod: &Value) -> Result<Value, String> {
    let config = config();
    let plan = plan(pod, None, &config).map_err(|d| d.to_string())?;
    let mutation = plan.patch(&Entrypoints::new()).map_err(|d| d.to_string())?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &mutation.patch.0).map_err(|e| e.to_string())?;
    Ok(patched)
}

#[test]
fn thousands_of_containers_and_vars_are_all_wrapped() {
    let pod = pod((0..2_000).map(|i| container(i, 50)).collect());
    let patched = mutate(&pod).unwrap();
    let containers = patched["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2_000);
    for (i, c) in containers.iter().enumerate() {
        assert_eq!(c["command"], json!(["/akv-env/bin/akv-env"]), "c{i}");
        assert_eq!(c["args"], json!(["--", "/app"]), "c{i}");
        assert_eq!(c["env"], pod["spec"]["containers"][i]["env"], "c{i}");
    }
    // Re-planning the mutated pod leaves it alone.
    let config = config();
    assert_eq!(
        plan(&patched, None, &config).unwrap().skipped(),
        Some(Skip::AlreadyMutated)
    );
}

#[test]
fn every_bad_placeholder_among_thousands_is_named() {
    let mut containers: Vec<Value> = (0..500).map(|i| container(i, 40)).collect();
    let bad = [(7, 3), (250, 39), (499, 0)];
    for (c, v) in bad {
        containers[c]["env"][v]["value"] = json!("db@azurekeyvault?vault=prod-kv&type=nonsense");
    }
    let message = mutate(&pod(containers)).unwrap_err();
    for (c, v) in bad {
        assert!(
            message.contains(&format!("\"c{c}\"")) && message.contains(&format!("VAR_{v}")),
            "c{c}/VAR_{v} missing: {message}"
        );
    }
    assert!(message.contains("nonsense"), "{message}");
}

#[test]
fn huge_strings_give_small_denials_or_untouched_values() {
    let huge = "a".repeat(4 * 1024 * 1024);
    // A huge plain value next to a placeholder: the pod is wrapped, the value untouched.
    let mut c = container(0, 1);
    c["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "BIG", "value": huge}));
    let patched = mutate(&pod(vec![c])).unwrap();
    assert_eq!(
        patched["spec"]["containers"][0]["env"][1]["value"],
        json!(huge)
    );

    let cases = [
        ("huge name", format!("{huge}@azurekeyvault?vault=kv")),
        ("huge vault", format!("db@azurekeyvault?vault={huge}")),
        (
            "huge version",
            format!("db@azurekeyvault?vault=kv&version={huge}"),
        ),
        (
            "huge unknown parameter",
            format!("db@azurekeyvault?{huge}=x"),
        ),
        (
            "many parameters",
            format!("db@azurekeyvault?{}", "vault=kv&".repeat(100_000)),
        ),
    ];
    for (case, value) in cases {
        let mut c = container(0, 1);
        c["env"][0]["value"] = json!(value);
        let message = mutate(&pod(vec![c])).unwrap_err();
        assert!(message.contains("VAR_0"), "{case}: {message}");
        assert!(
            message.len() < 4096,
            "{case}: a {} byte denial echoes the input",
            message.len()
        );
    }

    // A huge image without `command` whose lookup failed: the denial names the container.
    let mut c = container(0, 1);
    c.as_object_mut().unwrap().remove("command");
    let image = format!("registry.example/{}", "b".repeat(1024 * 1024));
    c["image"] = json!(image);
    let pod = pod(vec![c]);
    let config = config();
    let planned = plan(&pod, None, &config).unwrap();
    let lookups = planned.images_to_look_up();
    assert_eq!(lookups.len(), 1);
    let entrypoints: Entrypoints = [(image.clone(), Err("the registry refused".to_owned()))]
        .into_iter()
        .collect();
    let message = planned.patch(&entrypoints).unwrap_err().to_string();
    assert!(message.contains("\"c0\"") && message.contains("the registry refused"));
}

#[test]
fn hostile_image_entrypoints_are_wrapped_exactly() {
    // An image config with 10,000 entrypoint words and kubelet-looking `$(VAR)` words.
    let mut c = container(0, 1);
    c.as_object_mut().unwrap().remove("command");
    let pod = pod(vec![c]);
    let config = config();
    let planned = plan(&pod, None, &config).unwrap();
    let mut words: Vec<String> = (0..10_000).map(|i| format!("w{i}")).collect();
    words.push("$(HOME)".into());
    words.push(String::new());
    let entrypoints: Entrypoints = [(
        "registry.example/app:1".to_owned(),
        Ok(ImageEntrypoint {
            entrypoint: words.clone(),
            cmd: vec![],
        }),
    )]
    .into_iter()
    .collect();
    let mutation = planned.patch(&entrypoints).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &mutation.patch.0).unwrap();
    let args: Vec<&str> = patched["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args.len(), words.len() + 1);
    assert_eq!(args[0], "--");
    assert_eq!(args[1], "w0");
    // Image words are not expanded by the kubelet: `$(` is escaped as `$$(`.
    assert_eq!(args[words.len() - 1], "$$(HOME)");
    assert_eq!(args[words.len()], "");
}

/// `levels` arrays nested around 1, built without recursion.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = Value::Array(vec![v]);
    }
    v
}

#[test]
fn nesting_within_parser_limits_is_kept_or_refused_clearly() {
    // serde_json and serde_yaml_ng stop at 128 levels, so no real caller hands over deeper JSON.
    let mut p = pod(vec![container(0, 1)]);
    p["spec"]["x-future-field"] = nested(120);
    let patched = mutate(&p).unwrap();
    assert_eq!(
        patched["spec"]["x-future-field"],
        p["spec"]["x-future-field"]
    );

    let mut p = pod(vec![container(0, 1)]);
    p["spec"]["containers"][0]["securityContext"] = nested(120);
    let message = mutate(&p).unwrap_err();
    assert!(message.contains("spec"), "{message}");
}

#[test]
fn fields_of_the_wrong_type_are_denied_with_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "containers is an object",
            json!({"containers": {"a": 1}}),
            "spec",
        ),
        (
            "env is a string",
            json!({"containers": [{"name": "a", "env": "x"}]}),
            "spec",
        ),
        (
            "env value is a number",
            json!({"containers": [{"name": "a", "env": [{"name": "X", "value": 5}]}]}),
            "spec",
        ),
        (
            "command holds null",
            json!({"containers": [{"name": "a", "command": [null],
                   "env": [{"name": "X", "value": PLACEHOLDER}]}]}),
            "spec",
        ),
        ("spec is a string", json!("spec"), "spec"),
    ];
    for (case, spec, want) in cases {
        let p = json!({"metadata": {"name": "p"}, "spec": spec});
        let message = mutate(&p).unwrap_err();
        assert!(message.contains(want), "{case}: {message}");
    }
    let p = json!({"metadata": {"annotations": ["not", "a", "map"]}, "spec": {"containers": []}});
    let message = mutate(&p).unwrap_err();
    assert!(message.contains("metadata"), "{message}");
}
