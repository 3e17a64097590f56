//! The demo binary, run as a user would: it prints the manifest, the webhook's diff, the
//! program's output with values masked, and passes its own leak checks.
//! Needs root (runc) and the tools from scripts/setup.sh.

use std::process::Command;

#[test]
fn the_demo_shows_masked_values_and_finds_no_leak() {
    let out = Command::new(env!("CARGO_BIN_EXE_akv-env-demo"))
        .args(["--show-chars", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for heading in [
        "== 1. The manifest, as the team writes it ==",
        "== 2. What the webhook changed",
        "== 3. The pod runs",
        "== 4. Where the values are not",
    ] {
        assert!(stdout.contains(heading), "missing {heading:?}:\n{stdout}");
    }
    assert!(
        stdout.contains("+    - /akv-env/bin/akv-env"),
        "the diff shows the wrapped command:\n{stdout}"
    );
    // Values: a 3-character prefix, then only their length.
    for (var, prefix) in [("DB_PASSWORD", "pw-"), ("API_TOKEN", "tok")] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("env {var}=")))
            .unwrap_or_else(|| panic!("no {var} line:\n{stdout}"));
        let shown = line
            .trim_start()
            .strip_prefix(&format!("env {var}="))
            .unwrap();
        assert!(
            shown.starts_with(&format!("{prefix}…(")) && shown.ends_with(" chars)"),
            "{line}"
        );
    }
    assert!(!stdout.contains("LEAK"), "{stdout}");
    assert!(stdout.contains("ok   every file on the node"), "{stdout}");
}
