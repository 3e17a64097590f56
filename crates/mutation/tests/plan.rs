//! Table tests of the mutation planner: plan, apply the patch with `json_patch`, check the pod.

use akv_mutation::{Config, ContainerKind, Entrypoints, ImageEntrypoint, Mutation, Skip, plan};
use akv_placeholder::Vault;
use serde_json::{Value, json};

const INJECTOR: &str = "registry.example/akv-env:1.0";

fn config() -> Config {
    Config::new(INJECTOR)
}

fn pod_with(containers: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"containers": containers}
    })
}

fn secret_env() -> Value {
    json!([{"name": "DB_PASSWORD", "value": "db-password@azurekeyvault?vault=prod-kv"}])
}

/// Plans and applies; returns the mutated pod and the mutation.
fn mutate(
    pod: &Value,
    namespace_vault: Option<&str>,
    config: &Config,
    entrypoints: &Entrypoints,
) -> Result<(Value, Mutation), String> {
    let plan = plan(pod, namespace_vault, config).map_err(|d| d.to_string())?;
    let mutation = plan.patch(entrypoints).map_err(|d| d.to_string())?;
    let mut out = pod.clone();
    json_patch::patch(&mut out, &mutation.patch.0).expect("the patch applies to the original");
    Ok((out, mutation))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

#[test]
fn entrypoint_matrix() {
    let image = ImageEntrypoint {
        entrypoint: words(&["/docker-entrypoint.sh"]),
        cmd: words(&["nginx", "-g", "daemon off;"]),
    };
    let entrypoints: Entrypoints = [("nginx:1".to_owned(), Ok(image))].into();
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("command only", json!({"command": ["/app", "$(PORT)"]}), vec!["--", "/app", "$(PORT)"]),
        ("command and args", json!({"command": ["/app"], "args": ["-p", "$(PORT)"]}), vec!["--", "/app", "-p", "$(PORT)"]),
        ("args only: ENTRYPOINT + args", json!({"args": ["nginx-debug", "$(PORT)"]}), vec!["--", "/docker-entrypoint.sh", "nginx-debug", "$(PORT)"]),
        ("neither: ENTRYPOINT + CMD", json!({}), vec!["--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
        ("empty command counts as none", json!({"command": [], "args": []}), vec!["--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
    ];
    for (name, fields, want_args) in cases {
        let mut container = json!({"name": "web", "image": "nginx:1", "env": secret_env()});
        for (k, v) in fields.as_object().unwrap() {
            container[k] = v.clone();
        }
        let pod = pod_with(json!([container]));
        let (out, mutation) = mutate(&pod, None, &config(), &entrypoints)
            .unwrap_or_else(|e| panic!("case {name}: {e}"));
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            strings(&c["command"]),
            words(&["/akv-env/bin/akv-env"]),
            "case {name}"
        );
        assert_eq!(strings(&c["args"]), words(&want_args), "case {name}");
        assert_eq!(mutation.wrapped.len(), 1, "case {name}");
    }
}

#[test]
fn only_containers_without_command_need_a_lookup() {
    let pod = pod_with(json!([
        {"name": "a", "image": "img-a", "command": ["/a"], "env": secret_env()},
        {"name": "b", "image": "img-b", "args": ["x"], "env": secret_env()},
        {"name": "c", "image": "img-c"},
    ]));
    let config = config();
    let plan = plan(&pod, None, &config).unwrap();
    let lookups = plan.images_to_look_up();
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].image, "img-b");
    assert_eq!(lookups[0].container.name, "b");
}

#[test]
fn unknown_entrypoints_deny_naming_container_image_reason_and_fix() {
    let pod = pod_with(json!([
        {"name": "app", "image": "private.example/app:2", "env": secret_env()},
    ]));
    let cases: Vec<(&str, Entrypoints, &str)> = vec![
        (
            "lookup failed",
            [(
                "private.example/app:2".to_owned(),
                Err("the registry refused the credentials".to_owned()),
            )]
            .into(),
            "the registry refused the credentials",
        ),
        ("not looked up", Entrypoints::new(), "it was not looked up"),
        (
            "image has no program",
            [(
                "private.example/app:2".to_owned(),
                Ok(ImageEntrypoint::default()),
            )]
            .into(),
            "neither ENTRYPOINT nor CMD",
        ),
    ];
    for (name, entrypoints, reason) in cases {
        let err = mutate(&pod, None, &config(), &entrypoints).unwrap_err();
        for needle in [
            "container \"app\"",
            "private.example/app:2",
            reason,
            "set `command` on the container",
        ] {
            assert!(
                err.contains(needle),
                "case {name}: {err:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn init_containers_and_native_sidecars_are_wrapped_and_the_installer_runs_first() {
    let pod = json!({
        "metadata": {"name": "p"},
        "spec": {
            "initContainers": [
                {"name": "migrate", "image": "m", "command": ["/migrate"], "env": secret_env()},
                {"name": "proxy", "image": "p", "command": ["/proxy"], "restartPolicy": "Always",
                 "env": secret_env(), "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "plain", "image": "x", "command": ["/x"], "env": [{"name": "A", "value": "b"}]},
            ],
            "containers": [{"name": "app", "image": "a", "command": ["/app"], "env": secret_env()}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }
    });
    let (out, mutation) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    let init = out["spec"]["initContainers"].as_array().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["akv-env-install", "migrate", "proxy", "plain"]);
    assert_eq!(
        strings(&init[0]["command"]),
        words(&["/akv-env", "install", "/install"])
    );
    assert_eq!(init[0]["image"], INJECTOR);
    for wrapped in [&init[1], &init[2], &out["spec"]["containers"][0]] {
        assert_eq!(
            strings(&wrapped["command"]),
            words(&["/akv-env/bin/akv-env"])
        );
        let mounts = wrapped["volumeMounts"].as_array().unwrap();
        assert!(
            mounts.contains(
                &json!({"name": "akv-env", "mountPath": "/akv-env/bin", "readOnly": true})
            ),
            "{wrapped}"
        );
    }
    assert_eq!(init[2]["restartPolicy"], "Always");
    assert_eq!(
        init[2]["volumeMounts"][0]["name"], "data",
        "existing mounts kept"
    );
    assert_eq!(
        init[3], pod["spec"]["initContainers"][2],
        "no placeholder: untouched"
    );
    let kinds: Vec<(ContainerKind, &str)> = mutation
        .wrapped
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ContainerKind::Container, "app"),
            (ContainerKind::InitContainer, "migrate"),
            (ContainerKind::InitContainer, "proxy"),
        ]
    );
    let volumes = out["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 2);
    assert_eq!(
        volumes[1],
        json!({"name": "akv-env", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    );
}

#[test]
fn several_containers_only_those_with_placeholders_change() {
    let pod = pod_with(json!([
        {"name": "a", "image": "a", "command": ["/a"], "env": secret_env()},
        {"name": "b", "image": "b", "command": ["/b"], "env": [{"name": "URL", "value": "https://x"}]},
        {"name": "c", "image": "c", "command": ["/c"], "args": ["--flag"],
         "env": [{"name": "K", "value": "api-key@azurekeyvault?vault=other-kv&version=0123456789abcdef0123456789abcdef"}]},
    ]));
    let (out, mutation) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    let names: Vec<&str> = mutation.wrapped.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(out["spec"]["containers"][1], pod["spec"]["containers"][1]);
    assert_eq!(
        strings(&out["spec"]["containers"][2]["args"]),
        words(&["--", "/c", "--flag"])
    );
    // env values are never rewritten by the webhook: the injector resolves them in the pod.
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        pod["spec"]["containers"][0]["env"]
    );
}

#[test]
fn mutating_the_output_again_changes_nothing() {
    let pods = [
        pod_with(json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}])),
        json!({"metadata": {"annotations": {"x/y": "z"}}, "spec": {
            "initContainers": [{"name": "i", "image": "i", "command": ["/i"], "env": secret_env()}],
            "containers": [{"name": "a", "image": "a", "args": ["x"], "env": secret_env()}]}}),
    ];
    let entrypoints: Entrypoints = [(
        "a".to_owned(),
        Ok(ImageEntrypoint {
            entrypoint: words(&["/e"]),
            cmd: vec![],
        }),
    )]
    .into();
    for pod in pods {
        let (once, first) = mutate(&pod, None, &config(), &entrypoints).unwrap();
        assert!(!first.patch.0.is_empty());
        assert_eq!(
            once["metadata"]["annotations"]["akv-env.io/status"],
            "injected"
        );
        let config = config();
        let again = plan(&once, None, &config).unwrap();
        assert_eq!(again.skipped(), Some(Skip::AlreadyMutated));
        assert!(again.images_to_look_up().is_empty());
        assert!(again.patch(&entrypoints).unwrap().patch.0.is_empty());
    }
}

#[test]
fn skipped_pods_get_an_empty_patch() {
    let opted_out = |value: &str| {
        let mut pod =
            pod_with(json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}]));
        pod["metadata"]["annotations"] = json!({"akv-env.io/inject": value});
        pod
    };
    let cases = [
        ("opt-out", opted_out("false"), Skip::OptedOut),
        ("opt-out, any case", opted_out("False"), Skip::OptedOut),
        (
            "no placeholders",
            pod_with(
                json!([{"name": "a", "image": "a", "env": [{"name": "X", "value": "y@example.com"}]}]),
            ),
            Skip::NoPlaceholders,
        ),
        (
            "placeholder only in valueFrom is not a placeholder",
            pod_with(json!([{"name": "a", "image": "a", "env": [{"name": "X",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}])),
            Skip::NoPlaceholders,
        ),
    ];
    for (name, pod, skip) in cases {
        let config = config();
        let plan = plan(&pod, None, &config).unwrap_or_else(|e| panic!("case {name}: {e}"));
        assert_eq!(plan.skipped(), Some(skip), "case {name}");
        assert!(plan.images_to_look_up().is_empty(), "case {name}");
        assert!(
            plan.patch(&Entrypoints::new()).unwrap().patch.0.is_empty(),
            "case {name}"
        );
    }
    // "true" (or anything but "false") does not opt out.
    let config = config();
    assert_eq!(
        plan(&opted_out("true"), None, &config).unwrap().skipped(),
        None
    );
}

#[test]
fn default_vault_order_pod_then_namespace_then_webhook() {
    struct Case {
        name: &'static str,
        pod_annotation: Option<&'static str>,
        namespace: Option<&'static str>,
        webhook: Option<&'static str>,
        container_sets: Option<&'static str>,
        want: Result<Option<&'static str>, &'static str>,
    }
    #[rustfmt::skip]
    let cases = [
        Case { name: "pod wins", pod_annotation: Some("pod-kv"), namespace: Some("ns-kv"), webhook: Some("hook-kv"), container_sets: None, want: Ok(Some("pod-kv")) },
        Case { name: "namespace next", pod_annotation: None, namespace: Some("ns-kv"), webhook: Some("hook-kv"), container_sets: None, want: Ok(Some("ns-kv")) },
        Case { name: "webhook last", pod_annotation: None, namespace: None, webhook: Some("hook-kv"), container_sets: None, want: Ok(Some("hook-kv")) },
        Case { name: "URL accepted", pod_annotation: Some("https://pod-kv.vault.azure.cn"), namespace: None, webhook: None, container_sets: None, want: Ok(Some("https://pod-kv.vault.azure.cn")) },
        Case { name: "container's own setting kept", pod_annotation: Some("pod-kv"), namespace: None, webhook: None, container_sets: Some("mine-kv"), want: Ok(Some("mine-kv")) },
        Case { name: "none anywhere", pod_annotation: None, namespace: None, webhook: None, container_sets: None, want: Err("env var PLAIN: the placeholder names no vault") },
        Case { name: "bad pod annotation", pod_annotation: Some("1bad"), namespace: Some("ns-kv"), webhook: None, container_sets: None, want: Err("pod annotation `akv-env.io/vault`: vault name must start with a letter") },
        Case { name: "bad namespace annotation", pod_annotation: None, namespace: Some("http://x.vault.azure.net"), webhook: None, container_sets: None, want: Err("namespace annotation `akv-env.io/vault`: vault URL must use https") },
        Case { name: "bad own env", pod_annotation: None, namespace: None, webhook: None, container_sets: Some("x"), want: Err("container \"app\": env var AKV_ENV_DEFAULT_VAULT: vault name must be 3 to 24") },
    ];
    for case in cases {
        let mut env = vec![json!({"name": "PLAIN", "value": "plain@azurekeyvault"})];
        if let Some(v) = case.container_sets {
            env.push(json!({"name": "AKV_ENV_DEFAULT_VAULT", "value": v}));
        }
        let mut pod =
            pod_with(json!([{"name": "app", "image": "a", "command": ["/a"], "env": env}]));
        if let Some(v) = case.pod_annotation {
            pod["metadata"]["annotations"] = json!({"akv-env.io/vault": v});
        }
        let mut config = config();
        config.default_vault = case.webhook.map(|v| Vault::parse(v).unwrap());
        let result = mutate(&pod, case.namespace, &config, &Entrypoints::new());
        match (result, case.want) {
            (Ok((out, _)), Ok(want)) => {
                let env = out["spec"]["containers"][0]["env"].as_array().unwrap();
                let set: Vec<&Value> = env
                    .iter()
                    .filter(|e| e["name"] == "AKV_ENV_DEFAULT_VAULT")
                    .map(|e| &e["value"])
                    .collect();
                let want: Vec<Value> = want.into_iter().map(Value::from).collect();
                assert_eq!(set, want.iter().collect::<Vec<_>>(), "case {}", case.name);
            }
            (Err(message), Err(want)) => {
                assert!(
                    message.contains(want),
                    "case {}: {message:?} lacks {want:?}",
                    case.name
                )
            }
            (got, want) => panic!("case {}: got {got:?}, want {want:?}", case.name),
        }
    }
}

#[test]
fn bad_placeholders_are_refused_naming_container_env_and_error() {
    #[rustfmt::skip]
    let cases = [
        ("db_password@azurekeyvault", "contains"),
        ("@azurekeyvault", "object name before `@azurekeyvault` is empty"),
        ("x@azurekeyvault?type=blob", "unknown type"),
        ("x@azurekeyvault?vault=ab", "vault name must be 3 to 24"),
        ("x@azurekeyvault?version=123", "version must be 32 hex"),
    ];
    for (value, want) in cases {
        let pod = pod_with(json!([
            {"name": "ok", "image": "a", "command": ["/a"], "env": secret_env()},
            {"name": "worker", "image": "w", "command": ["/w"], "env": [{"name": "TOKEN", "value": value}]},
        ]));
        let config = config();
        let err = plan(&pod, None, &config).unwrap_err().to_string();
        for needle in ["container \"worker\"", "env var TOKEN", want, "at byte"] {
            assert!(
                err.contains(needle),
                "value {value:?}: {err:?} lacks {needle:?}"
            );
        }
    }
    // Several problems are reported together.
    let pod = pod_with(json!([
        {"name": "a", "image": "a", "command": ["/a"], "env": [{"name": "X", "value": "@azurekeyvault"}]},
        {"name": "b", "image": "b", "command": ["/b"], "env": [{"name": "Y", "value": "y@azurekeyvault?nope=1"}]},
    ]));
    let config = config();
    let denial = plan(&pod, None, &config).unwrap_err();
    assert_eq!(denial.problems.len(), 2, "{denial}");
}

#[test]
fn unknown_fields_survive() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"a/b~c": "1"}, "futureMeta": {"x": 1}},
        "spec": {
            "futurePodField": {"enabled": true},
            "containers": [{
                "name": "app", "image": "a", "command": ["/a"], "env": secret_env(),
                "futureContainerField": ["kept"],
                "resources": {"requests": {"cpu": "1"}, "futureResource": 3}
            }]
        },
        "futureTopLevel": "kept"
    });
    let (out, _) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    assert_eq!(out["futureTopLevel"], "kept");
    assert_eq!(out["metadata"]["futureMeta"], json!({"x": 1}));
    assert_eq!(out["metadata"]["annotations"]["a/b~c"], "1");
    assert_eq!(out["spec"]["futurePodField"], json!({"enabled": true}));
    let c = &out["spec"]["containers"][0];
    assert_eq!(c["futureContainerField"], json!(["kept"]));
    assert_eq!(c["resources"], pod["spec"]["containers"][0]["resources"]);
}

#[test]
fn patch_uses_escaped_pointers_and_creates_missing_lists() {
    let with_annotations = json!({"metadata": {"annotations": {"x": "y"}}, "spec": {
        "containers": [{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}],
        "initContainers": [], "volumes": []}});
    let bare = json!({"spec": {"containers": [{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}]}});
    let config = config();
    let ops = |pod: &Value| -> Vec<(String, String)> {
        let mutation = plan(pod, None, &config)
            .unwrap()
            .patch(&Entrypoints::new())
            .unwrap();
        serde_json::to_value(&mutation.patch)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                (
                    op["op"].as_str().unwrap().to_owned(),
                    op["path"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        ops(&with_annotations),
        owned(&[
            ("add", "/metadata/annotations/akv-env.io~1status"),
            ("replace", "/spec/containers/0/command"),
            ("add", "/spec/containers/0/args"),
            ("add", "/spec/containers/0/volumeMounts"),
            ("add", "/spec/volumes/-"),
            ("add", "/spec/initContainers/0"),
        ])
    );
    assert_eq!(
        ops(&bare),
        owned(&[
            ("add", "/metadata"),
            ("replace", "/spec/containers/0/command"),
            ("add", "/spec/containers/0/args"),
            ("add", "/spec/containers/0/volumeMounts"),
            ("add", "/spec/volumes"),
            ("add", "/spec/initContainers"),
        ])
    );
    // Both apply: a pod template may have no `metadata` at all, or an empty one.
    for pod in [bare.clone(), json!({"metadata": {}, "spec": bare["spec"]})] {
        let (out, _) = mutate(&pod, None, &config, &Entrypoints::new()).unwrap();
        assert_eq!(out["spec"]["initContainers"][0]["name"], "akv-env-install");
        assert_eq!(
            out["metadata"]["annotations"]["akv-env.io/status"],
            "injected"
        );
    }
}

#[test]
fn the_installer_passes_pod_security_restricted() {
    let pod =
        pod_with(json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}]));
    let (out, _) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    let init = &out["spec"]["initContainers"][0];
    let sc = &init["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert!(sc["runAsUser"].as_i64().unwrap() > 0);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_ne!(sc["privileged"], true);
    assert_eq!(init["resources"]["requests"]["memory"], "16Mi");
    assert!(init["resources"]["limits"]["cpu"].is_string());
    // The volume is the only one restricted allows for this purpose: an emptyDir.
    assert_eq!(out["spec"]["volumes"][0]["emptyDir"]["medium"], "Memory");
    // Wrapped containers get no new privileges either: only a read-only mount.
    let c = &out["spec"]["containers"][0];
    assert!(c.get("securityContext").is_none());
}

#[test]
fn config_map_sources_are_wrapped_and_unscanned_secret_env_from_is_warned_about() {
    let pod = pod_with(json!([
        {"name": "cm-env-from", "image": "a", "command": ["/a"], "envFrom": [{"configMapRef": {"name": "cm"}}]},
        {"name": "cm-key", "image": "b", "command": ["/b"], "env": [
            {"name": "PW", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "pw"}}}]},
        {"name": "secret-env-from", "image": "c", "command": ["/c"], "envFrom": [{"secretRef": {"name": "s"}}]},
        {"name": "plain", "image": "d", "command": ["/d"], "env": [{"name": "A", "value": "x"}]},
    ]));
    let (out, mutation) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    let wrapped: Vec<&str> = mutation.wrapped.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(wrapped, ["cm-env-from", "cm-key"]);
    assert_eq!(
        strings(&out["spec"]["containers"][1]["args"]),
        words(&["--", "/b"])
    );
    // A valueFrom entry's raw JSON is kept as it was.
    assert_eq!(
        out["spec"]["containers"][1]["env"],
        pod["spec"]["containers"][1]["env"]
    );
    assert_eq!(mutation.warnings.len(), 1, "{:?}", mutation.warnings);
    assert!(
        mutation.warnings[0].contains("envFrom secretRef")
            && mutation.warnings[0].contains("containers: secret-env-from"),
        "{:?}",
        mutation.warnings
    );
}

#[test]
fn composed_references_become_templates_with_captures() {
    let pod = pod_with(json!([{
        "name": "app", "image": "app", "command": ["/app"],
        "args": ["--password=$(DB_PASSWORD)", "$$(DB_PASSWORD)", "$(HOME)"],
        "env": [
            {"name": "DB_PASSWORD", "value": "db-password@azurekeyvault?vault=prod-kv"},
            {"name": "DATABASE_URL", "value": "postgres://app:$(DB_PASSWORD)@db:5432/app", "x-unknown": 1},
        ],
    }]));
    let (out, mutation) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    let c = &out["spec"]["containers"][0];
    assert_eq!(
        strings(&c["args"]),
        words(&[
            "--compose-env=DATABASE_URL",
            "--compose-arg=1",
            "--capture=AKV_ENV_REF_DB_PASSWORD",
            "--",
            "/app",
            "--password=$$(AKV_ENV_REF_DB_PASSWORD)",
            "$$(DB_PASSWORD)",
            "$(HOME)",
        ])
    );
    assert_eq!(
        c["env"],
        json!([
            {"name": "DB_PASSWORD", "value": "db-password@azurekeyvault?vault=prod-kv"},
            {"name": "AKV_ENV_REF_DB_PASSWORD", "value": "$(DB_PASSWORD)"},
            {"name": "DATABASE_URL", "value": "postgres://app:$$(AKV_ENV_REF_DB_PASSWORD)@db:5432/app", "x-unknown": 1},
        ])
    );
    assert!(mutation.warnings.is_empty());
    // Admitting the result again changes nothing.
    let config = config();
    let again = plan(&out, None, &config).unwrap();
    assert_eq!(again.skipped(), Some(Skip::AlreadyMutated));
}

#[test]
fn near_miss_spellings_are_warned_about_by_name_with_the_fix() {
    let pod = pod_with(json!([{
        "name": "app", "image": "app", "command": ["/app"],
        "env": [
            {"name": "CASED", "value": "db-password@AzureKeyVault"},
            {"name": "BLOCK", "value": "db-password@azurekeyvault\n"},
            {"name": "FINE", "value": "db-password@azurekeyvault?vault=prod-kv"},
        ],
    }]));
    let (_, mutation) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    assert_eq!(mutation.warnings.len(), 2, "{:?}", mutation.warnings);
    assert!(mutation.warnings[0].contains("container \"app\": env var CASED"));
    assert!(mutation.warnings[0].contains("lower case: @azurekeyvault"));
    assert!(mutation.warnings[1].contains("env var BLOCK"));
    assert!(mutation.warnings[1].contains("trailing newline"));
}

#[test]
fn reserved_capture_names_and_the_allow_annotation() {
    let pod = pod_with(json!([{
        "name": "app", "image": "app", "command": ["/app"],
        "env": [{"name": "AKV_ENV_REF_X", "value": "db-password@azurekeyvault?vault=kv"}],
    }]));
    let err = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap_err();
    assert!(
        err.contains("env var AKV_ENV_REF_X: names starting with AKV_ENV_REF_ are reserved"),
        "{err}"
    );

    let mut pod = pod_with(json!([{
        "name": "app", "image": "app", "command": ["/app"], "env": secret_env(),
    }]));
    pod["metadata"]["annotations"] = json!({"akv-env.io/allow-placeholder-text": "true"});
    let (out, _) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    assert_eq!(
        strings(&out["spec"]["containers"][0]["args"]),
        words(&["--allow-placeholder-text", "--", "/app"])
    );
}

#[test]
fn name_clashes_are_refused() {
    let mut pod =
        pod_with(json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}]));
    pod["spec"]["volumes"] = json!([{"name": "akv-env", "emptyDir": {}}]);
    let config = config();
    let err = plan(&pod, None, &config).unwrap_err().to_string();
    assert!(err.contains("a volume named \"akv-env\""), "{err}");

    // Something else mounted where the injector goes, in the wrapped container or another one.
    for (case, mount_path, in_sidecar) in [
        ("same path", "/akv-env/bin", false),
        ("trailing slash", "/akv-env/bin/", false),
        ("another container", "/akv-env/bin", true),
    ] {
        let mount = json!([{"name": "tools", "mountPath": mount_path, "readOnly": true}]);
        let mut wrapped =
            json!({"name": "a", "image": "a", "command": ["/a"], "env": secret_env()});
        let mut other = json!({"name": "b", "image": "b"});
        if in_sidecar {
            other["volumeMounts"] = mount;
        } else {
            wrapped["volumeMounts"] = mount;
        }
        let mut pod = pod_with(json!([wrapped, other]));
        pod["spec"]["volumes"] = json!([{"name": "tools", "emptyDir": {}}]);
        let err = plan(&pod, None, &config).unwrap_err().to_string();
        let container = if in_sidecar { "b" } else { "a" };
        assert!(
            err.contains(&format!(
                "container \"{container}\" already mounts volume \"tools\" at /akv-env/bin"
            )),
            "{case}: {err}"
        );
    }
    // Elsewhere is fine.
    let mut pod = pod_with(
        json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env(),
        "volumeMounts": [{"name": "tools", "mountPath": "/akv-env/binaries"}]}]),
    );
    pod["spec"]["volumes"] = json!([{"name": "tools", "emptyDir": {}}]);
    assert!(plan(&pod, None, &config).is_ok());
}

#[test]
fn platform_and_pull_secrets_are_read_for_the_lookup() {
    let pod = json!({"spec": {
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "serviceAccountName": "builder",
        "imagePullSecrets": [{"name": "regcred"}, {"name": "acr"}],
        "containers": [{"name": "a", "image": "a", "env": secret_env()}]}});
    let config = config();
    let plan = plan(&pod, None, &config).unwrap();
    assert_eq!(plan.arch(), Some("arm64"));
    assert_eq!(plan.service_account(), "builder");
    assert_eq!(plan.image_pull_secrets(), ["regcred", "acr"]);
    let bare = pod_with(json!([]));
    let plan = akv_mutation::plan(&bare, None, &config).unwrap();
    assert_eq!((plan.arch(), plan.service_account()), (None, "default"));
}

#[test]
fn invalid_pods_are_refused_not_panicked_on() {
    let config = config();
    for (name, pod) in [
        ("no spec", json!({"metadata": {}})),
        ("containers not a list", json!({"spec": {"containers": 3}})),
        (
            "env value not a string",
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": 1}]}]}}),
        ),
    ] {
        let err = plan(&pod, None, &config).unwrap_err().to_string();
        assert!(err.contains("not a valid Pod"), "case {name}: {err}");
    }
}

#[test]
fn the_namespace_is_consulted_only_when_it_matters() {
    let with = |annotations: Value, value: &str| {
        json!({"metadata": {"annotations": annotations}, "spec": {
            "initContainers": [{"name": "i", "env": [{"name": "X", "value": value}]}],
            "containers": [{"name": "a"}]}})
    };
    let cases = [
        (
            "placeholder, no pod vault",
            with(json!({}), "x@azurekeyvault"),
            true,
        ),
        (
            "pod names its vault",
            with(json!({"akv-env.io/vault": "kv1"}), "x@azurekeyvault"),
            false,
        ),
        (
            "opted out",
            with(json!({"akv-env.io/inject": "false"}), "x@azurekeyvault"),
            false,
        ),
        (
            "already mutated",
            with(json!({"akv-env.io/status": "injected"}), "x@azurekeyvault"),
            false,
        ),
        ("no placeholder", with(json!({}), "plain"), false),
        (
            "a ConfigMap key may hold one",
            json!({"spec": {"containers": [{"name": "a", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}]}}),
            true,
        ),
        (
            "envFrom a ConfigMap may hold one",
            json!({"spec": {"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "cm"}}]}]}}),
            true,
        ),
        (
            "envFrom a Secret is not read",
            json!({"spec": {"containers": [{"name": "a", "envFrom": [{"secretRef": {"name": "s"}}]}]}}),
            false,
        ),
    ];
    for (name, pod, want) in cases {
        assert_eq!(
            akv_mutation::needs_namespace_vault(&pod),
            want,
            "case {name}"
        );
    }
}

#[test]
fn windows_pods_with_placeholders_are_refused() {
    let mut pod =
        pod_with(json!([{"name": "a", "image": "a", "command": ["/a"], "env": secret_env()}]));
    pod["spec"]["os"] = json!({"name": "windows"});
    let config = config();
    let err = plan(&pod, None, &config).unwrap_err().to_string();
    assert!(
        err.contains("windows nodes") && err.contains("Linux only"),
        "{err}"
    );
    pod["spec"]["os"] = json!({"name": "linux"});
    assert!(plan(&pod, None, &config).is_ok());
    // Without placeholders a Windows pod is simply left alone.
    let windows =
        json!({"spec": {"os": {"name": "windows"}, "containers": [{"name": "a", "image": "a"}]}});
    assert_eq!(
        plan(&windows, None, &config).unwrap().skipped(),
        Some(Skip::NoPlaceholders)
    );
}

#[test]
fn restart_on_change_puts_app_containers_in_supervisor_mode() {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "annotations": {"akv-env.io/restart-on-change": "15m"}},
        "spec": {
            "terminationGracePeriodSeconds": 45,
            "initContainers": [{"name": "migrate", "image": "app", "command": ["/migrate"], "env": secret_env()}],
            "containers": [{"name": "app", "image": "app", "command": ["/app"], "args": ["-v"], "env": secret_env()}]
        }
    });
    let (out, _) = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap();
    assert_eq!(
        strings(&out["spec"]["containers"][0]["args"]),
        words(&[
            "--restart-on-change=900s",
            "--restart-grace-period=45s",
            "--",
            "/app",
            "-v"
        ])
    );
    // The init container runs to completion: it is wrapped but never supervised.
    let init = out["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "migrate")
        .unwrap();
    assert_eq!(strings(&init["args"]), words(&["--", "/migrate"]));

    // Below the operator's floor: raised, with a warning the API server shows the user.
    pod["metadata"]["annotations"]["akv-env.io/restart-on-change"] = json!("10s");
    let mut floor = config();
    floor.restart_floor = std::time::Duration::from_secs(300);
    let (out, mutation) = mutate(&pod, None, &floor, &Entrypoints::new()).unwrap();
    assert_eq!(
        strings(&out["spec"]["containers"][0]["args"])[0],
        "--restart-on-change=300s"
    );
    assert!(
        mutation.warnings.iter().any(|w| w.contains("floor")),
        "{:?}",
        mutation.warnings
    );

    // A value that is no interval refuses the pod, naming the annotation.
    pod["metadata"]["annotations"]["akv-env.io/restart-on-change"] = json!("often");
    let err = mutate(&pod, None, &config(), &Entrypoints::new()).unwrap_err();
    assert!(
        err.contains("pod annotation `akv-env.io/restart-on-change`"),
        "{err}"
    );
}

#[test]
fn skip_rules_from_annotations_table() {
    use akv_mutation::Skip;
    type Annotations<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Annotations, Option<Skip>)] = &[
        (&[], None),
        (&[("akv-env.io/inject", "false")], Some(Skip::OptedOut)),
        (&[("akv-env.io/inject", " FALSE ")], Some(Skip::OptedOut)),
        (&[("akv-env.io/inject", "true")], None),
        (&[("akv-env.io/inject", "no")], None),
        (
            &[("akv-env.io/status", "injected")],
            Some(Skip::AlreadyMutated),
        ),
        (&[("akv-env.io/status", "")], Some(Skip::AlreadyMutated)),
        // Opting out is reported first: it is the author's own word.
        (
            &[
                ("akv-env.io/status", "injected"),
                ("akv-env.io/inject", "false"),
            ],
            Some(Skip::OptedOut),
        ),
        (&[("akv-env.io/vault", "kv1")], None),
    ];
    for (annotations, want) in cases {
        let got = Skip::by_annotations(|key| {
            annotations.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        });
        assert_eq!(got, *want, "{annotations:?}");
    }
}
