//! The kubelet stand-in on its own: an unmodified image from a real registry, run with runc.
//! Needs root (runc) and the tools from scripts/setup.sh; fails saying so otherwise.

use akv_env_e2e::app::app_image;
use akv_env_e2e::image::push_layout;
use akv_env_e2e::{NodeEnvironment, PodRun, PodRunner};
use k8s_openapi::api::core::v1::Pod;
use registry_harness::TestRegistry;

/// A registry holding the app image as `app:1`, and a runner on a fresh node directory.
struct Node {
    registry: TestRegistry,
    runner: PodRunner,
    _dir: tempfile::TempDir,
}

fn node() -> Node {
    let dir = tempfile::Builder::new()
        .prefix("akv-e2e-node-")
        .tempdir()
        .unwrap();
    let runner = PodRunner::new(&dir.path().join("node"), NodeEnvironment::default()).unwrap();
    let registry = TestRegistry::start().unwrap();
    let layout = app_image()
        .unwrap()
        .build(&dir.path().join("app-build"), "1")
        .unwrap();
    push_layout(&layout, "1", &registry.host(), "app:1").unwrap();
    Node {
        registry,
        runner,
        _dir: dir,
    }
}

impl Node {
    /// Runs a pod given as YAML, with `IMAGE` replaced by the app image's reference.
    fn run(&mut self, yaml: &str) -> PodRun {
        let yaml = yaml.replace("IMAGE", &self.registry.image("app:1"));
        let pod: Pod = serde_yaml_ng::from_str(&yaml).unwrap();
        self.runner.run_pod(&pod).unwrap()
    }
}

#[test]
fn image_entrypoint_and_cmd_run_when_the_pod_sets_no_command() {
    let mut node = node();
    let run = node.run(
        "metadata: { name: plain }\nspec: { containers: [ { name: app, image: IMAGE, env: [ { name: SHOW_VARS, value: LANG PATH } ] } ] }",
    );
    let app = run.expect_container("app");
    assert_eq!(app.exit_code, 0, "{run}");
    assert_eq!(app.args, ["/app/run.sh", "serve", "--port=8080"]);
    assert!(
        app.stdout.contains("app: pid=1 uid=1000 gid=1000 cwd=/app"),
        "{}",
        run
    );
    assert!(
        app.stdout.contains("app: args: [serve] [--port=8080]"),
        "{}",
        run
    );
    assert!(
        app.stdout.contains("env LANG=C.UTF-8"),
        "image env: {}",
        run
    );
}

#[test]
fn args_replace_cmd_and_kubelet_expands_references() {
    let mut node = node();
    let run = node.run(
        r#"
metadata: { name: expand }
spec:
  containers:
    - name: app
      image: IMAGE
      args: ["--name=$(NAME)", "$$(NAME)", "$(UNDEFINED)", "$(GREETING)"]
      workingDir: /tmp
      env:
        - { name: NAME, value: world }
        - { name: GREETING, value: "hello $(NAME)" }
        - { name: LANG, value: "en_GB $(LATER)" }
        - { name: LATER, value: later }
        - { name: SHOW_VARS, value: GREETING LANG }
"#,
    );
    let app = run.expect_container("app");
    assert_eq!(app.exit_code, 0, "{run}");
    assert!(
        app.stdout
            .contains("app: args: [--name=world] [$(NAME)] [$(UNDEFINED)] [hello world]"),
        "{}",
        run
    );
    assert!(app.stdout.contains("cwd=/tmp"), "{run}");
    assert!(app.stdout.contains("env GREETING=hello world"), "{}", run);
    // The pod's LANG replaces the image's; a reference to a later variable stays as written.
    assert!(app.stdout.contains("env LANG=en_GB $(LATER)"), "{}", run);
}

#[test]
fn security_context_sets_user_and_read_only_root() {
    let mut node = node();
    let run = node.run(
        r#"
metadata: { name: secure }
spec:
  securityContext: { runAsUser: 4242, runAsGroup: 4343, runAsNonRoot: true }
  containers:
    - name: app
      image: IMAGE
      command: [/bin/sh, -c]
      args: ["echo uid=$(id -u) gid=$(id -g); touch /app/x 2>/dev/null && echo wrote-root || echo root-is-read-only"]
      securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: [ALL] } }
    - name: default-user
      image: IMAGE
      command: [/bin/sh, -c, "echo uid=$(id -u)"]
      securityContext: { runAsUser: 0, runAsNonRoot: false }
"#,
    );
    assert!(run.succeeded(), "{run}");
    let app = run.expect_container("app");
    assert!(app.stdout.contains("uid=4242 gid=4343"), "{run}");
    assert!(app.stdout.contains("root-is-read-only"), "{run}");
    assert!(
        run.container("default-user")
            .unwrap()
            .stdout
            .contains("uid=0"),
        "{}",
        run
    );
}

#[test]
fn run_as_non_root_refuses_a_root_container() {
    let mut node = node();
    let yaml = r#"
metadata: { name: rootly }
spec:
  securityContext: { runAsNonRoot: true }
  containers: [ { name: app, image: IMAGE, securityContext: { runAsUser: 0 } } ]
"#
    .replace("IMAGE", &node.registry.image("app:1"));
    let pod: Pod = serde_yaml_ng::from_str(&yaml).unwrap();
    let err = node.runner.run_pod(&pod).unwrap_err().to_string();
    assert!(
        err.contains("container app: container has runAsNonRoot and image will run as root"),
        "{err}"
    );
}

#[test]
fn init_containers_run_in_order_and_share_an_empty_dir() {
    let mut node = node();
    let run = node.run(
        r#"
metadata: { name: shared }
spec:
  initContainers:
    - { name: first, image: IMAGE, command: [/bin/sh, -c, "echo one > /shared/log"], volumeMounts: [ { name: work, mountPath: /shared } ] }
    - { name: second, image: IMAGE, command: [/bin/sh, -c, "echo two >> /shared/log"], volumeMounts: [ { name: work, mountPath: /shared } ] }
  containers:
    - { name: app, image: IMAGE, command: [/bin/cat, /shared/log], volumeMounts: [ { name: work, mountPath: /shared, readOnly: true } ] }
    - { name: writer, image: IMAGE, command: [/bin/sh, -c, "touch /shared/x 2>/dev/null && echo writable || echo read-only"], volumeMounts: [ { name: work, mountPath: /shared, readOnly: true } ] }
  volumes: [ { name: work, emptyDir: { medium: Memory } } ]
"#,
    );
    assert!(run.succeeded(), "{run}");
    assert_eq!(run.expect_container("app").stdout, "one\ntwo\n");
    assert_eq!(run.expect_container("writer").stdout, "read-only\n");
    let on_node = run.pod_dir.join("volumes/kubernetes.io~empty-dir/work/log");
    assert_eq!(std::fs::read_to_string(on_node).unwrap(), "one\ntwo\n");
}

#[test]
fn a_failing_init_container_stops_the_pod_with_its_exit_code() {
    let mut node = node();
    let run = node.run(
        r#"
metadata: { name: failing }
spec:
  initContainers: [ { name: broken, image: IMAGE, command: [/bin/sh, -c, "echo no >&2; exit 7"] } ]
  containers: [ { name: app, image: IMAGE } ]
"#,
    );
    assert!(!run.succeeded());
    let broken = run.expect_container("broken");
    assert_eq!((broken.exit_code, broken.stderr.as_str()), (7, "no\n"));
    assert!(run.containers.is_empty(), "app must not start: {}", run);
}

#[test]
fn projected_tokens_and_the_node_environment_reach_the_container() {
    let dir = tempfile::Builder::new()
        .prefix("akv-e2e-node-")
        .tempdir()
        .unwrap();
    let host_file = dir.path().join("ca.pem");
    std::fs::write(&host_file, "node-provided file\n").unwrap();
    let node_env = NodeEnvironment {
        env: vec![("FROM_NODE".into(), "yes".into())],
        files: vec![(host_file, "/etc/node/ca.pem".into())],
        service_account_tokens: [("web".to_string(), "token-for-web".to_string())].into(),
    };
    let mut node = Node {
        runner: PodRunner::new(&dir.path().join("node"), node_env).unwrap(),
        ..node()
    };
    let run = node.run(
        r#"
metadata: { name: tokens, namespace: shop }
spec:
  serviceAccountName: web
  containers:
    - name: app
      image: IMAGE
      command: [/bin/sh, -c, 'cat /var/run/secrets/azure/tokens/azure-identity-token; echo; cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; cat /etc/node/ca.pem; echo "FROM_NODE=$FROM_NODE"; ls -l /var/run/secrets/azure/tokens/azure-identity-token']
      volumeMounts:
        - { name: azure-identity-token, mountPath: /var/run/secrets/azure/tokens, readOnly: true }
        - { name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true }
  volumes:
    - name: azure-identity-token
      projected: { sources: [ { serviceAccountToken: { path: azure-identity-token, audience: api://AzureADTokenExchange } } ] }
    - name: kube-api-access
      projected:
        sources:
          - serviceAccountToken: { path: token }
          - downwardAPI: { items: [ { path: namespace, fieldRef: { fieldPath: metadata.namespace } } ] }
"#,
    );
    let app = run.expect_container("app");
    assert_eq!(app.exit_code, 0, "{run}");
    let lines: Vec<&str> = app.stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "token-for-web",
            "shop",
            "node-provided file",
            "FROM_NODE=yes"
        ],
        "{}",
        run
    );
    assert!(
        lines[4].starts_with("-rw-r--r--"),
        "projected files are 0644: {}",
        lines[4]
    );
}

#[test]
fn a_mount_under_a_file_of_the_image_fails_as_it_would_on_a_real_node() {
    let mut node = node();
    // /app/run.sh is a file in the image: runc cannot make a mount point beneath it.
    let run = node.run(
        r#"
metadata: { name: clash }
spec:
  containers:
    - { name: app, image: IMAGE, volumeMounts: [ { name: v, mountPath: /app/run.sh/dir } ] }
  volumes: [ { name: v, emptyDir: {} } ]
"#,
    );
    let app = run.expect_container("app");
    assert_ne!(app.exit_code, 0, "{run}");
    assert!(app.stderr.contains("not a directory"), "{run}");
    assert!(app.stdout.is_empty(), "{run}");
}

/// Like the kubelet, the stand-in restarts a container as the pod's `restartPolicy` says
/// (bounded by `max_restarts` so a run ends), keeps the earlier runs, and counts restarts; an
/// emptyDir outlives a restart.
#[test]
fn containers_restart_as_the_restart_policy_says() {
    let mut node = node();
    node.runner.max_restarts = 2;
    // Exits 3 on its first run, 0 after (a count in the emptyDir).
    let pod = |policy: &str| {
        format!(
            r#"
metadata: {{ name: restarts }}
spec:
  restartPolicy: {policy}
  volumes: [ {{ name: state, emptyDir: {{}} }} ]
  containers:
    - name: app
      image: IMAGE
      command: [/bin/sh, -c, 'echo run >> /state/runs; n=$(wc -l < /state/runs); echo "run $n"; [ "$n" -gt 1 ] || exit 3']
      volumeMounts: [ {{ name: state, mountPath: /state }} ]
"#
        )
    };
    for (policy, restarts, last_exit) in [("Always", 2, 0), ("OnFailure", 1, 0), ("Never", 0, 3)] {
        let run = node.run(&pod(policy));
        let app = run.expect_container("app");
        assert_eq!(app.restart_count, restarts, "{policy}: {run}");
        assert_eq!(app.previous.len(), restarts as usize, "{policy}: {run}");
        assert_eq!(app.exit_code, last_exit, "{policy}: {run}");
        assert!(
            app.stdout.contains(&format!("run {}", restarts + 1)),
            "{policy}: {run}"
        );
        if restarts > 0 {
            assert_eq!(app.previous[0].exit_code, 3, "{policy}: {run}");
            assert!(app.previous[0].stdout.contains("run 1"), "{policy}: {run}");
        }
    }
}
