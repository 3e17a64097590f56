//! The real `akv-env` binary against the local Key Vault over real HTTPS with the real SDK.

mod common;

use common::*;
use fake_keyvault::{GrantMethod, ObjectKind, Options, SecretAttributes, Seed, Throttle};
use std::{os::unix::process::ExitStatusExt as _, time::Duration};

fn ok_accesses(h: &Harness, name: &str) -> Vec<fake_keyvault::Access> {
    h.kv.accesses()
        .into_iter()
        .filter(|a| a.name == name && a.status == 200)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_identity_mode_reads_as_its_own_identity() {
    let h = Harness::start().await;
    let cases = [
        (Ident::ClientSecretA, "app-a", GrantMethod::ClientSecret),
        (Ident::WorkloadB, "app-b", GrantMethod::ClientAssertion),
        (Ident::ManagedC, "app-c", GrantMethod::ManagedIdentity),
        (Ident::ManagedSystem, "system", GrantMethod::ManagedIdentity),
    ];
    for (ident, client, method) in cases {
        h.kv.clear_records();
        let mut c = h.cmd(ident, print_var("DB"));
        c.env("DB", "db-password@azurekeyvault");
        let (out, _) = run(c).await;
        assert!(out.status.success(), "{ident:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "hunter2", "{ident:?}");
        let reads = ok_accesses(&h, "db-password");
        assert_eq!(reads.len(), 1, "{ident:?}: {reads:?}");
        assert_eq!(reads[0].identity.as_deref(), Some(client), "{ident:?}");
        let grants = h.kv.token_grants();
        assert_eq!(grants.len(), 1, "{ident:?}: one token per run: {grants:?}");
        assert_eq!(
            (grants[0].identity.as_str(), grants[0].method),
            (client, method),
            "{ident:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_be_forced_and_a_forced_mode_needs_its_settings() {
    let h = Harness::start().await;
    // Both a token file and a secret are present: the default picks workload identity...
    let mut c = h.cmd(Ident::WorkloadB, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault")
        .env("AZURE_CLIENT_SECRET", "s3cret-a")
        .env("AZURE_CLIENT_ID", "app-a");
    let (out, _) = run(c).await;
    // app-a has no federated token, so the assertion is refused: proves workload identity was chosen.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("authentication failed"),
        "{}",
        stderr(&out)
    );
    // ...AKV_ENV_AUTH=client-secret in the environment changes nothing (a ConfigMap could set
    // it), and says so...
    h.kv.clear_records();
    let mut c = h.cmd(Ident::WorkloadB, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault")
        .env("AZURE_CLIENT_SECRET", "s3cret-a")
        .env("AZURE_CLIENT_ID", "app-a")
        .env("AKV_ENV_AUTH", "client-secret");
    let (out, _) = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("AKV_ENV_AUTH in the environment is ignored"),
        "{}",
        stderr(&out)
    );
    assert!(h.kv.token_grants().is_empty());
    // ...while --auth=client-secret (the webhook's flag) forces the secret.
    let mut flags = h.flags();
    flags.push("--auth=client-secret".into());
    let mut c = h.cmd_with(Ident::WorkloadB, flags, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault")
        .env("AZURE_CLIENT_SECRET", "s3cret-a")
        .env("AZURE_CLIENT_ID", "app-a");
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(h.kv.token_grants()[0].method, GrantMethod::ClientSecret);
    // A forced mode whose settings are missing says which.
    let mut flags = h.flags();
    flags.push("--auth=workload-identity".into());
    let mut c = h.cmd_with(Ident::None, flags, print_var("DB"));
    c.env("DB", "db-password@azurekeyvault");
    let (out, _) = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("workload-identity authentication needs AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_missing_objects_fail_closed_with_one_line_per_var() {
    let h = Harness::start().await;
    let marker = h.dir.path().join("program-ran");
    let touch = [
        "sh".to_owned(),
        "-c".to_owned(),
        format!("touch {}", marker.display()),
    ];
    // app-b may read db-password only.
    let mut c = h.cmd(Ident::WorkloadB, &touch);
    c.env("DB", "db-password@azurekeyvault")
        .env("API", "api-config@azurekeyvault")
        .env("TYPO", "bad_name@azurekeyvault");
    let (out, _) = run(c).await;
    // app-a may read everything, but these do not exist or are disabled.
    let mut c = h.cmd(Ident::ClientSecretA, &touch);
    c.env("GONE", "no-such-secret@azurekeyvault")
        .env("OFF", "disabled@azurekeyvault");
    let (out2, _) = run(c).await;
    assert_eq!((out.status.code(), out2.status.code()), (Some(1), Some(1)));
    assert!(!marker.exists(), "the program must not run");
    let err = format!("{}{}", stderr(&out), stderr(&out2));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("akv-env: ")).collect();
    assert_eq!(lines.len(), 4, "one line per failing var:\n{err}");
    let expect = [
        "akv-env: API: secret api-config in vault myvault: forbidden (HTTP 403 Forbidden: ",
        "akv-env: TYPO: bad placeholder: ",
        "akv-env: GONE: secret no-such-secret in vault myvault: not found (HTTP 404 SecretNotFound",
        "akv-env: OFF: secret disabled in vault myvault: forbidden (HTTP 403 Forbidden: Operation get is not allowed on a disabled secret.",
    ];
    for want in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "no line starting {want:?} in:\n{err}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("akv-env: API") && l.contains("appid=app-b")),
        "names the identity: {err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_type_and_parameter() {
    let h = Harness::start().await;
    let cases: &[(&str, &str, &str)] = &[
        ("plain secret", "db-password@azurekeyvault", "hunter2"),
        (
            "explicit vault name",
            "other@azurekeyvault?vault=othervault",
            "from-the-other-vault",
        ),
        (
            "explicit vault url",
            "other@azurekeyvault?vault=https://othervault.vault.azure.net",
            "from-the-other-vault",
        ),
        ("latest version", "api-config@azurekeyvault?key=user", "u2"),
        (
            "pinned version",
            "api-config@azurekeyvault?version=0123456789abcdef0123456789abcdef&key=user",
            "u",
        ),
        ("json number", "api-config@azurekeyvault?key=port", "5432"),
        ("bare key token", "api-config@azurekeyvault?pass", "p2"),
        ("base64", "b64@azurekeyvault?encoding=base64", "hello world"),
    ];
    let mut c = h.cmd(
        Ident::ClientSecretA,
        [
            "sh",
            "-c",
            "for i in 0 1 2 3 4 5 6 7; do eval \"printf '%s\\n' \\\"\\$V$i\\\"\"; done",
        ],
    );
    for (i, (_, placeholder, _)) in cases.iter().enumerate() {
        c.env(format!("V{i}"), placeholder);
    }
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    for (i, (name, _, want)) in cases.iter().enumerate() {
        assert_eq!(got.get(i).map(String::as_str), Some(*want), "{name}");
    }

    // Certificates (PEM and PKCS#12 backing secrets) and keys, checked with openssl.
    let pem_cases: &[(&str, &str, &[&str])] = &[
        (
            "pem cert",
            "web-pem@azurekeyvault?type=certificate&part=cert",
            &["CERTIFICATE"],
        ),
        (
            "pem key",
            "web-pem@azurekeyvault?type=certificate&part=key",
            &["PRIVATE KEY"],
        ),
        (
            "pem both",
            "web-pem@azurekeyvault?type=certificate",
            &["PRIVATE KEY", "CERTIFICATE"],
        ),
        (
            "pfx cert",
            "web-pfx@azurekeyvault?type=certificate&part=cert",
            &["CERTIFICATE"],
        ),
        (
            "pfx key",
            "web-pfx@azurekeyvault?type=certificate&part=key",
            &["PRIVATE KEY"],
        ),
        (
            "pfx both",
            "web-pfx@azurekeyvault?type=certificate&part=pem",
            &["PRIVATE KEY", "CERTIFICATE"],
        ),
        (
            "ec key",
            "signing-ec@azurekeyvault?type=key",
            &["PUBLIC KEY"],
        ),
    ];
    for (name, placeholder, blocks) in pem_cases {
        let mut c = h.cmd(Ident::ClientSecretA, print_var("V"));
        c.env("V", placeholder);
        let (out, _) = run(c).await;
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = stdout(&out);
        let tags: Vec<&str> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
            })
            .collect();
        assert_eq!(
            &tags[..blocks.len().min(tags.len())],
            *blocks,
            "{name}: {text}"
        );
        let path = h.dir.path().join("obj.pem");
        std::fs::write(&path, &text).unwrap();
        let check: &[&str] = match blocks[0] {
            "CERTIFICATE" => &["x509", "-noout", "-subject", "-in"],
            "PRIVATE KEY" => &["pkey", "-noout", "-in"],
            _ => &["pkey", "-pubin", "-noout", "-in"],
        };
        let st = std::process::Command::new("openssl")
            .args(check)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{name}: openssl rejects it: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        if name.ends_with("cert") {
            let subject = String::from_utf8_lossy(&st.stdout).into_owned();
            let want = if name.starts_with("pem") {
                "web.example.com"
            } else {
                "pfx.example.com"
            };
            assert!(subject.contains(want), "{name}: {subject}");
        }
    }
    // The certificate's key and its public key are a pair.
    let mut c = h.cmd(Ident::ClientSecretA, ["sh", "-c", "printf '%s' \"$K\" > k.pem; printf '%s' \"$C\" > c.pem; openssl pkey -in k.pem -pubout; openssl x509 -in c.pem -noout -pubkey"]);
    c.env("K", "web-pfx@azurekeyvault?type=certificate&part=key")
        .env("C", "web-pfx@azurekeyvault?type=certificate&part=cert");
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let halves: Vec<&str> = text.split("-----END PUBLIC KEY-----").collect();
    assert_eq!(halves.len(), 3, "{text}");
    assert_eq!(
        halves[0].trim(),
        halves[1].trim(),
        "key and certificate do not match"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_placeholders_fetch_each_object_once() {
    let h = Harness::start().await;
    for i in 0..60 {
        h.kv.upsert_secret(
            "myvault",
            &format!("s{i}"),
            &format!("value-{i}"),
            SecretAttributes::default(),
        );
    }
    h.kv.clear_records();
    // 120 vars over 60 objects: each object referenced twice (once through a JSON-free second name).
    let mut c = h.cmd(
        Ident::ClientSecretA,
        ["sh", "-c", "env | grep '^[AB][0-9]*=' | sort"],
    );
    for i in 0..60 {
        c.env(format!("A{i}"), format!("s{i}@azurekeyvault"));
        c.env(format!("B{i}"), format!("s{i}@azurekeyvault?vault=myvault"));
    }
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 120);
    for i in 0..60 {
        assert!(lines.contains(&format!("A{i}=value-{i}")), "A{i}");
        assert!(lines.contains(&format!("B{i}=value-{i}")), "B{i}");
        let reads = ok_accesses(&h, &format!("s{i}"));
        assert_eq!(reads.len(), 1, "s{i} fetched {} times", reads.len());
        assert_eq!(reads[0].kind, ObjectKind::Secret);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_ridden_out_honouring_retry_after() {
    let h = Harness::start_with(Options {
        seed: Seed::from_yaml(SEED).unwrap(),
        throttle: Some(Throttle {
            limit: 10,
            window: Duration::from_secs(1),
        }),
        ..Default::default()
    })
    .await;
    for i in 0..30 {
        h.kv.upsert_secret(
            "myvault",
            &format!("t{i}"),
            &format!("v{i}"),
            SecretAttributes::default(),
        );
    }
    let mut c = h.cmd(
        Ident::ClientSecretA,
        ["sh", "-c", "env | grep -c '^T[0-9]*=v'"],
    );
    for i in 0..30 {
        c.env(format!("T{i}"), format!("t{i}@azurekeyvault"));
    }
    let (out, took) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "30");
    let accesses = h.kv.accesses();
    let throttled = accesses.iter().filter(|a| a.status == 429).count();
    assert!(throttled > 0, "the fake never throttled: {accesses:?}");
    // 30 GETs (plus challenges) at 10 per 1 s window need at least two waits of Retry-After.
    assert!(
        took >= Duration::from_secs(2),
        "finished in {took:?}: Retry-After not honoured"
    );
    for i in 0..30 {
        assert_eq!(ok_accesses(&h, &format!("t{i}")).len(), 1, "t{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vault_that_keeps_failing_fails_within_the_deadline() {
    let h = Harness::start_with(Options {
        seed: Seed::from_yaml(SEED).unwrap(),
        error_rate: 1.0,
        ..Default::default()
    })
    .await;
    let mut c = h.cmd(Ident::ClientSecretA, ["true"]);
    c.env("DB", "db-password@azurekeyvault")
        .env("AKV_ENV_TIMEOUT", "3s");
    let (out, took) = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(
            "akv-env: DB: secret db-password in vault myvault: server errors until the deadline"
        ),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} with a 3 s deadline"
    );
    let tries = h.kv.accesses().iter().filter(|a| a.status == 500).count();
    assert!(tries >= 3, "retried only {tries} times");

    // Throttled for longer than the deadline: says so.
    h.kv.set_error_rate(0.0);
    h.kv.set_throttle(Some(Throttle {
        limit: 0,
        window: Duration::from_secs(30),
    }));
    let mut c = h.cmd(Ident::ClientSecretA, ["true"]);
    c.env("DB", "db-password@azurekeyvault")
        .env("AKV_ENV_TIMEOUT", "3s");
    let (out, took) = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("DB: secret db-password in vault myvault: throttled until the deadline"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_vault_is_reported_as_such_within_the_deadline() {
    let h = Harness::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let flags = vec![
        format!("--ca-file={}", h.ca_file.display()),
        format!("--resolve=myvault.vault.azure.net={addr}"),
    ];
    let mut c = h.cmd_with(Ident::ManagedSystem, flags, ["true"]);
    c.env("DB", "db-password@azurekeyvault")
        .env("AKV_ENV_TIMEOUT", "2s");
    let (out, took) = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("akv-env: DB: secret db-password in vault myvault: unreachable"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_placeholders_it_execs_at_once_without_network() {
    let h = Harness::start().await;
    // Everything points nowhere and there is no identity; with no placeholder nothing is
    // contacted or checked.
    let flags = vec![
        "--resolve=myvault.vault.azure.net=192.0.2.1:443".to_owned(),
        "--ca-file=/nonexistent".to_owned(),
    ];
    let mut c = h.cmd_with(
        Ident::None,
        flags,
        ["sh", "-c", "printf '%s|%s' \"$PLAIN\" \"$MAIL\""],
    );
    c.env("PLAIN", "just a value")
        .env("MAIL", "someone@example.com");
    let (out, took) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "just a value|someone@example.com");
    assert!(h.kv.accesses().is_empty() && h.kv.token_grants().is_empty());
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_pass_through_and_exec_failures_use_shell_codes() {
    let h = Harness::start().await;
    let mut c = h.cmd(Ident::ClientSecretA, ["sh", "-c", "exit 42"]);
    c.env("DB", "db-password@azurekeyvault");
    assert_eq!(run(c).await.0.status.code(), Some(42));

    let (out, _) = run(h.cmd(Ident::None, ["no-such-program-xyz"])).await;
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("no-such-program-xyz: command not found in PATH (/usr/bin:/bin)"),
        "{}",
        stderr(&out)
    );

    let script = h.dir.path().join("not-exec.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let (out, _) = run(h.cmd(Ident::None, [script.as_os_str()])).await;
    assert_eq!(out.status.code(), Some(126));
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );

    // PATH is looked up in the resolved environment.
    let bin = h.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy("/bin/true", bin.join("my-true")).unwrap();
    h.kv.upsert_secret(
        "myvault",
        "path",
        &format!("{}:/usr/bin:/bin", bin.display()),
        SecretAttributes::default(),
    );
    let mut c = h.cmd(Ident::ClientSecretA, ["my-true"]);
    c.env("PATH", "path@azurekeyvault");
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_the_pid_reaches_the_program() {
    let h = Harness::start().await;
    let mut c = h.cmd(
        Ident::ClientSecretA,
        ["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo $$; echo \"$DB\"; while :; do sleep 0.05; done"],
    );
    c.env("DB", "db-password@azurekeyvault")
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, pid.to_string(), "the program runs as akv-env's PID");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "hunter2");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "got-term");
    let status = child.wait().await.unwrap();
    assert_eq!((status.code(), status.signal()), (Some(7), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_values_pass_through_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt as _;
    let h = Harness::start().await;
    let raw = std::ffi::OsStr::from_bytes(b"\xff\xfe\x01 tail");
    let mut c = h.cmd(
        Ident::ClientSecretA,
        ["sh", "-c", "printf '%s' \"$RAW\"; printf '|%s' \"$DB\""],
    );
    c.env("RAW", raw).env("DB", "db-password@azurekeyvault");
    let (out, _) = run(c).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"\xff\xfe\x01 tail|hunter2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_copies_itself_atomically_with_mode_0755() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = injector_command()
        .env_clear()
        .arg("install")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = dir.path().join("akv-env");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&target.display().to_string()));
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(injector_binary()).unwrap()
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["akv-env"]);
    // The copy works (through the same runner, for another architecture's build).
    let v = command_for(&target).arg("version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("akv-env {}", env!("CARGO_PKG_VERSION"))
    );
}
