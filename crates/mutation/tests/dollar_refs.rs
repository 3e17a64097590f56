//! Property: for pods whose strings refer to no placeholder, every `$(...)` in `command`, `args`
//! and env values reaches the admitted spec byte for byte (the kubelet expands it as before).

use akv_mutation::{Config, Entrypoints, plan};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Strings full of `$`, `(`, `)` and names, some of them defined plain variables.
fn dollar_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("$".to_owned()),
            Just("$$".to_owned()),
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("$(".to_owned()),
            Just("$(PLAIN)".to_owned()),
            Just("$(UNDEFINED)".to_owned()),
            Just("$()".to_owned()),
            "[a-zA-Zé_ ]{0,4}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn strings_without_placeholder_references_are_kept(
        command in prop::collection::vec(dollar_text(), 1..3),
        args in prop::collection::vec(dollar_text(), 0..3),
        values in prop::collection::vec(dollar_text(), 0..4),
    ) {
        let mut env = vec![json!({"name": "PLAIN", "value": "p"})];
        env.extend(values.iter().enumerate().map(|(i, v)| json!({"name": format!("V{i}"), "value": v})));
        // The placeholder var: no generated string can spell its name (no digits).
        env.push(json!({"name": "S3CRET", "value": "s@azurekeyvault?vault=prod-kv"}));
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{
                "name": "app", "image": "app", "command": command, "args": args, "env": env,
            }]}
        });
        let config = Config::new("injector:1");
        let mutation = plan(&pod, None, &config).unwrap().patch(&Entrypoints::new()).unwrap();
        let mut out = pod.clone();
        json_patch::patch(&mut out, &mutation.patch.0).unwrap();
        let c = &out["spec"]["containers"][0];
        let expected: Vec<Value> = std::iter::once(json!("--"))
            .chain(command.iter().map(|w| json!(w)))
            .chain(args.iter().map(|w| json!(w)))
            .collect();
        prop_assert_eq!(c["args"].as_array().unwrap(), &expected);
        prop_assert_eq!(&c["env"], &pod["spec"]["containers"][0]["env"]);
    }
}
