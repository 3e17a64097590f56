//! Values must not leave memory, raw or encoded: not in logs at the most verbose level, not in
//! argv, not in any file written under HOME, TMPDIR or the working directory during the run.

mod common;

use akv_test_support::leak::{contains, files_under, forms};
use common::*;
use fake_keyvault::{Options, SecretAttributes, Seed};
use sha2::{Digest as _, Sha256};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_in_logs_argv_or_files_at_trace_level() {
    let h = Harness::start_with(Options {
        seed: Seed::from_yaml(SEED).unwrap(),
        // Slow answers keep akv-env in its resolving phase long enough to read its argv.
        latency: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let plain = "LEAKCHECK-plain-7f3a9c1e";
    let field = "LEAKCHECK-field-52be0d77";
    let json = format!(r#"{{"user":"{field}","other":"LEAKCHECK-unused-91aa"}}"#);
    h.kv.upsert_secret("myvault", "leak-plain", plain, SecretAttributes::default());
    h.kv.upsert_secret("myvault", "leak-json", &json, SecretAttributes::default());
    // The marker every value starts with (a partial leak shows too), and every encoded form
    // (akv_test_support::leak) of each value and of the identity's secret.
    let mut needles: Vec<Vec<u8>> = vec![b"LEAKCHECK".to_vec()];
    for value in [plain, field, json.as_str(), "s3cret-a"] {
        needles.extend(forms(value.as_bytes()));
    }

    let home = h.dir.path().join("home");
    let tmp = h.dir.path().join("tmp");
    let cwd = h.dir.path().join("cwd");
    for d in [&home, &tmp, &cwd] {
        std::fs::create_dir(d).unwrap();
    }
    let sha = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    // The program proves it got the values by printing only their hashes.
    let mut c = h.cmd(
        Ident::ClientSecretA,
        [
            "sh",
            "-c",
            "printf '%s' \"$P\" | sha256sum; printf '%s' \"$J\" | sha256sum",
        ],
    );
    c.env("P", "leak-plain@azurekeyvault")
        .env("J", "leak-json@azurekeyvault?key=user")
        .env("AKV_ENV_LOG", "trace")
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .current_dir(&cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut cmdlines = Vec::new();
    let wait = tokio::spawn(child.wait_with_output());
    for _ in 0..20 {
        if let Ok(b) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            cmdlines.push(b);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let out = wait.await.unwrap().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains(&sha(plain)) && printed.contains(&sha(field)),
        "values did not arrive: {printed}"
    );

    let log = &out.stderr;
    assert!(
        contains(log, b"resolving Key Vault placeholders") && contains(log, b"TRACE"),
        "trace logging was not on, the test would prove nothing:\n{}",
        String::from_utf8_lossy(log)
    );
    assert!(
        !cmdlines.is_empty() && cmdlines.iter().any(|c| contains(c, b"akv-env")),
        "never saw akv-env's argv"
    );
    for needle in &needles {
        let n = String::from_utf8_lossy(needle);
        assert!(
            !contains(log, needle),
            "{n} in stderr:\n{}",
            String::from_utf8_lossy(log)
        );
        assert!(!contains(&out.stdout, needle), "{n} in stdout");
        for c in &cmdlines {
            assert!(
                !contains(c, needle),
                "{n} in argv: {}",
                String::from_utf8_lossy(c)
            );
        }
    }
    for f in [&home, &tmp, &cwd].into_iter().flat_map(|d| files_under(d)) {
        let bytes = std::fs::read(&f).unwrap();
        for needle in &needles {
            assert!(
                !contains(&bytes, needle),
                "{} holds {}",
                f.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_messages_carry_no_value() {
    let h = Harness::start().await;
    h.kv.upsert_secret(
        "myvault",
        "not-json",
        "LEAKCHECK-notjson",
        SecretAttributes::default(),
    );
    h.kv.upsert_secret(
        "myvault",
        "not-b64",
        "LEAKCHECK*",
        SecretAttributes::default(),
    );
    h.kv.upsert_secret(
        "myvault",
        "json-array",
        r#"["LEAKCHECK"]"#,
        SecretAttributes::default(),
    );
    let mut c = h.cmd(Ident::ClientSecretA, ["true"]);
    c.env("A", "not-json@azurekeyvault?key=x")
        .env("B", "not-b64@azurekeyvault?encoding=base64")
        .env("C", "json-array@azurekeyvault?key=x")
        .env("AKV_ENV_LOG", "trace");
    let (out, _) = run(c).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "A: secret not-json in vault myvault: bad format (key=x: the value is not JSON",
        "B: secret not-b64 in vault myvault: bad format (encoding=base64: the value is not valid base64 at byte 9)",
        "C: secret json-array in vault myvault: bad format (key=x: the value is JSON an array, not an object)",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(!err.contains("LEAKCHECK"), "{err}");
}
