//! Supervisor mode against the local Key Vault: a new version restarts the program onto it; a
//! failed check (vault down, throttled, connection dropped) never does; the supervisor's memory
//! never holds a value.

mod common;

use common::*;
use fake_keyvault::{SecretAttributes, Throttle};
use sha2::{Digest as _, Sha256};
use std::{process::Stdio, time::Duration};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader, Lines},
    process::{Child, ChildStdout},
};

/// Prints the first 16 hex digits of SHA-256 of $DB, then waits; on SIGTERM prints TERM and
/// exits 0 (a well-behaved program: the supervisor must still exit non-zero for a restart).
const PROGRAM: &str = "trap 'echo TERM; exit 0' TERM; \
    printf '%s' \"$DB\" | sha256sum | cut -c1-16; while :; do sleep 0.05; done";

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..16].to_owned()
}

fn start(h: &Harness, every: &str) -> (Child, Lines<BufReader<ChildStdout>>) {
    start_with(h, every, &[], &[("DB", "rotating@azurekeyvault")])
}

/// [`start`] with more injector flags and other variables.
fn start_with(
    h: &Harness,
    every: &str,
    extra: &[&str],
    vars: &[(&str, &str)],
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut flags = vec![
        "--restart-on-change",
        every,
        "--restart-grace-period",
        "5s",
        "--log",
        "info",
    ];
    flags.extend(extra);
    let mut c = h.cmd_with_flags(Ident::ClientSecretA, &flags, ["bash", "-c", PROGRAM]);
    c.envs(vars.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("akv-env starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    lines
        .next_line()
        .await
        .expect("stdout readable")
        .unwrap_or_default()
}

async fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut s)
        .await
        .unwrap();
    s
}

/// Vault reads of the object `rotating` answered with `status`.
fn reads(h: &Harness, status: u16) -> usize {
    reads_of(h, "rotating", status)
}

/// Vault reads of the object `name` answered with `status`.
fn reads_of(h: &Harness, name: &str, status: u16) -> usize {
    h.kv.accesses()
        .iter()
        .filter(|a| a.name == name && a.status == status)
        .count()
}

/// SIGTERM, as the kubelet stops a container: an ordinary stop, so the program traps it
/// (prints TERM) and its own status, 0, is the container's.
async fn stop_as_the_kubelet_does(child: &mut Child, lines: &mut Lines<BufReader<ChildStdout>>) {
    let pid = child.id().unwrap() as i32;
    assert_eq!(unsafe { nix::libc::kill(pid, nix::libc::SIGTERM) }, 0);
    assert_eq!(next_line(lines).await, "TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

/// Key Vault's current version is the last created, to the second: a new version must come at
/// least a second after the one in use, or the two are a tie (which never restarts).
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_restarts_the_program_onto_it() {
    let h = Harness::start().await;
    let v1 = h.kv.upsert_secret(
        "myvault",
        "rotating",
        "first-value",
        SecretAttributes::default(),
    );
    let (mut child, mut lines) = start(&h, "2s");
    assert_eq!(next_line(&mut lines).await, hash("first-value"));
    next_second().await;
    h.kv.clear_records();
    let changed_at = std::time::Instant::now();
    let v2 = h.kv.upsert_secret(
        "myvault",
        "rotating",
        "second-value",
        SecretAttributes::default(),
    );
    // The program gets SIGTERM, ends by itself, and the supervisor exits for a restart.
    assert_eq!(next_line(&mut lines).await, "TERM");
    let status = child.wait().await.unwrap();
    let latency = changed_at.elapsed();
    assert_eq!(status.code(), Some(75), "restart exit status");
    // The first check after the change saw it (one more may have been in flight).
    let checks = reads(&h, 200);
    assert!(
        (1..=2).contains(&checks),
        "checks after the change: {checks}"
    );
    eprintln!("change seen and program ended {latency:?} after the new version (interval 2s)");
    let err = stderr_of(&mut child).await;
    let restart_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("new version in Key Vault"))
        .collect();
    assert_eq!(restart_lines.len(), 1, "{err}");
    for want in ["DB", "rotating", v1.as_str(), v2.as_str()] {
        assert!(
            restart_lines[0].contains(want),
            "{want}: {}",
            restart_lines[0]
        );
    }
    for value in ["first-value", "second-value"] {
        assert!(!err.contains(value), "a value in the logs: {err}");
    }

    // The kubelet starts the container again: the program sees the new value. A SIGTERM from
    // the kubelet now is an ordinary stop: the program's own status (0) is the container's.
    let (mut child, mut lines) = start(&h, "2s");
    assert_eq!(next_line(&mut lines).await, hash("second-value"));
    stop_as_the_kubelet_does(&mut child, &mut lines).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_never_restart_and_are_retried() {
    let h = Harness::start().await;
    h.kv.upsert_secret("myvault", "rotating", "v1", SecretAttributes::default());
    let (mut child, mut lines) = start(&h, "1s");
    assert_eq!(next_line(&mut lines).await, hash("v1"));
    next_second().await;

    // The vault fails every request: several checks fail, the program keeps running.
    h.kv.clear_records();
    h.kv.set_error_rate(1.0);
    until("three failed checks (500)", || reads(&h, 500) >= 3).await;
    assert!(child.try_wait().unwrap().is_none(), "restarted on a 500");

    // Connections dropped without an answer: the same.
    h.kv.set_error_rate(0.0);
    h.kv.set_drop_rate(1.0);
    until("two dropped checks", || reads(&h, 0) >= 2).await;
    assert!(child.try_wait().unwrap().is_none(), "restarted on a drop");

    // Throttled: 429 with Retry-After; no restart either.
    h.kv.set_drop_rate(0.0);
    h.kv.set_throttle(Some(Throttle {
        limit: 0,
        window: Duration::from_secs(2),
    }));
    until("two throttled checks", || reads(&h, 429) >= 2).await;
    assert!(child.try_wait().unwrap().is_none(), "restarted on a 429");

    // Meanwhile a new version appeared; once the vault answers again the next check sees it.
    h.kv.upsert_secret("myvault", "rotating", "v2", SecretAttributes::default());
    h.kv.set_throttle(None);
    assert_eq!(next_line(&mut lines).await, "TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(75));
    let err = stderr_of(&mut child).await;
    assert!(
        err.contains("could not check for a new version") && err.contains("throttled"),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("new version in Key Vault"))
            .count(),
        1,
        "{err}"
    );
}

/// Every readable mapping of `pid`'s memory (needs CAP_SYS_PTRACE: the supervisor is not
/// dumpable).
fn memory_of(pid: u32) -> Vec<u8> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.contains("[vvar") || line.contains("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisor_never_holds_a_value() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test reads another process' memory and must run as root");
    }
    let canary = "zq-rotation-canary-7c1f-value";
    let h = Harness::start().await;
    h.kv.upsert_secret("myvault", "rotating", canary, SecretAttributes::default());
    let (mut child, mut lines) = start(&h, "1s");
    assert_eq!(next_line(&mut lines).await, hash(canary));
    // Let a few checks run, so the check path is covered too.
    h.kv.clear_records();
    until("two checks", || reads(&h, 200) >= 2).await;
    let sup = child.id().unwrap();
    let program = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, r)| r.split_whitespace().nth(1).map(str::to_owned))
                })
                .as_deref()
                == Some(&sup.to_string())
        })
        .expect("the program runs as the supervisor's child");
    // The scan finds the value where it is (the program's environment)...
    assert!(contains(&memory_of(program), canary.as_bytes()));
    // ...and not in the supervisor, nor in either's command line.
    assert!(
        !contains(&memory_of(sup), canary.as_bytes()),
        "the supervisor's memory holds the value"
    );
    for pid in [sup, program] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!contains(&cmdline, canary.as_bytes()));
    }
    let environ = std::fs::read(format!("/proc/{sup}/environ")).unwrap();
    assert!(!contains(&environ, canary.as_bytes()));
    // SIGTERM (forwarded): killing only the supervisor would leave the program holding stderr.
    assert_eq!(
        unsafe { nix::libc::kill(sup as i32, nix::libc::SIGTERM) },
        0
    );
    assert_eq!(next_line(&mut lines).await, "TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    let err = stderr_of(&mut child).await;
    assert!(!err.contains(canary), "{err}");
}

/// The supervised program gets exactly what the exec path gives: `$(VAR)` templates in env and
/// argv expanded, captures removed, and placeholder text left over refused before it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervised_program_gets_composed_values_like_exec() {
    let h = Harness::start().await;
    h.kv.upsert_secret(
        "myvault",
        "rotating",
        "composed-secret",
        SecretAttributes::default(),
    );
    // Prints hashes of the composed env var and argument, and whether the capture is gone.
    let script = "printf '%s|%s|%s\\n' \
        \"$(printf '%s' \"$URL\" | sha256sum | cut -c1-16)\" \
        \"$(printf '%s' \"$1\" | sha256sum | cut -c1-16)\" \
        \"${AKV_ENV_REF_DB-unset}\"";
    let compose = [
        "--compose-env=URL",
        "--compose-arg=4",
        "--capture=AKV_ENV_REF_DB",
    ];
    let supervise = ["--restart-on-change=1m", "--restart-grace-period=1s"];
    let command = |flags: Vec<&str>, leftover: bool| {
        let mut c = h.cmd_with_flags(
            Ident::ClientSecretA,
            &flags,
            ["sh", "-c", script, "sh", "--pw=$(AKV_ENV_REF_DB)"],
        );
        c.env("AKV_ENV_REF_DB", "rotating@azurekeyvault")
            .env("URL", "postgres://app:$(AKV_ENV_REF_DB)@db/app");
        if leftover {
            // A template the webhook never saw: its placeholder text must not reach the program.
            c.env("NOTE", "postgres://app:rotating@azurekeyvault@db/app");
        }
        c
    };
    let want = format!(
        "{}|{}|unset\n",
        hash("postgres://app:composed-secret@db/app"),
        hash("--pw=composed-secret")
    );
    let (exec, _) = run(command(compose.to_vec(), false)).await;
    assert_eq!(stdout(&exec), want, "exec path: {}", stderr(&exec));
    assert_eq!(exec.status.code(), Some(0));
    let (supervised, _) = run(command([&compose[..], &supervise[..]].concat(), false)).await;
    assert_eq!(
        stdout(&supervised),
        want,
        "supervised: {}",
        stderr(&supervised)
    );
    assert_eq!(supervised.status.code(), Some(0));

    // Placeholder text left over: the exec path refuses, and so does the supervisor.
    let (exec, _) = run(command(compose.to_vec(), true)).await;
    let (supervised, _) = run(command([&compose[..], &supervise[..]].concat(), true)).await;
    for (path, out) in [("exec", &exec), ("supervised", &supervised)] {
        assert_eq!(out.status.code(), Some(1), "{path}: {}", stderr(out));
        assert_eq!(stdout(out), "", "{path}: the program ran");
        assert!(
            stderr(out).contains("env var NOTE still holds Key Vault placeholder text"),
            "{path}: {}",
            stderr(out)
        );
        assert!(!stderr(out).contains("composed-secret"), "{path}");
    }
}

/// A pinned version (`?version=`) is never watched: a new version of that object restarts
/// nothing, while the pod's unpinned object is checked all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_version_is_never_changed() {
    let h = Harness::start().await;
    let v1 = h.kv.upsert_secret(
        "myvault",
        "rotating",
        "pinned-one",
        SecretAttributes::default(),
    );
    let pinned = format!("rotating@azurekeyvault?version={v1}");
    let vars = [
        ("DB", pinned.as_str()),
        ("OTHER", "db-password@azurekeyvault"),
    ];
    let (mut child, mut lines) = start_with(&h, "1s", &[], &vars);
    assert_eq!(next_line(&mut lines).await, hash("pinned-one"));
    next_second().await;
    h.kv.clear_records();
    h.kv.upsert_secret(
        "myvault",
        "rotating",
        "pinned-two",
        SecretAttributes::default(),
    );
    // Three rounds of checks of the unpinned object, each after the new version existed.
    until("three checks of the unpinned object", || {
        reads_of(&h, "db-password", 200) >= 3
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "restarted for a pinned object"
    );
    assert_eq!(
        h.kv.accesses()
            .iter()
            .filter(|a| a.name == "rotating")
            .count(),
        0,
        "the pinned object was checked"
    );
    stop_as_the_kubelet_does(&mut child, &mut lines).await;
    let err = stderr_of(&mut child).await;
    assert!(!err.contains("new version in Key Vault"), "{err}");
}

/// A certificate whose version in use comes within `--cert-expiry-margin` of its expiry while
/// the program runs counts as changed (once): the program restarts. Started again inside the
/// margin (nobody renewed it), it is not restarted again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_expiry_counts_as_changed_once() {
    let h = Harness::start().await;
    // Enough parsing for `part=cert`; the value is never looked into.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBzq0=\n-----END CERTIFICATE-----\n";
    // Outside the 60 s margin for the first 8 s of the run.
    let expires = time::OffsetDateTime::now_utc() + Duration::from_secs(68);
    let version = h.kv.upsert_secret(
        "myvault",
        "expiring",
        pem,
        SecretAttributes {
            exp: Some(expires),
            content_type: Some("application/x-pem-file".into()),
            ..SecretAttributes::default()
        },
    );
    let vars = [("DB", "expiring@azurekeyvault?type=certificate&part=cert")];
    let margin = ["--cert-expiry-margin=60s"];
    let (mut child, mut lines) = start_with(&h, "1s", &margin, &vars);
    assert_eq!(next_line(&mut lines).await, hash(pem));
    until("two checks", || reads_of(&h, "expiring", 200) >= 2).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "restarted before the margin"
    );
    // Then the margin is reached: SIGTERM, and an exit for a restart.
    assert_eq!(next_line(&mut lines).await, "TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(75));
    let err = stderr_of(&mut child).await;
    let lines_said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("within the expiry margin"))
        .collect();
    assert_eq!(lines_said.len(), 1, "{err}");
    assert!(
        lines_said[0].contains("expiring") && lines_said[0].contains(&version),
        "{}",
        lines_said[0]
    );

    // The kubelet starts it again, still inside the margin: no restart loop.
    let (mut child, mut lines) = start_with(&h, "1s", &margin, &vars);
    assert_eq!(next_line(&mut lines).await, hash(pem));
    h.kv.clear_records();
    until("three checks", || reads_of(&h, "expiring", 200) >= 3).await;
    assert!(child.try_wait().unwrap().is_none(), "restarted again");
    stop_as_the_kubelet_does(&mut child, &mut lines).await;
}

/// A check whose token cannot be had (Entra down) fails like any other: logged, retried, and
/// the program keeps running; once tokens come back, the next check sees the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_error_during_checks_never_restarts() {
    let h = Harness::start().await;
    h.kv.upsert_secret("myvault", "rotating", "t1", SecretAttributes::default());
    // The first check comes 1.5-3.3 s after the start, well after the program's first line.
    let (mut child, mut lines) = start(&h, "3s");
    assert_eq!(next_line(&mut lines).await, hash("t1"));
    h.kv.set_token_service_up(false);
    assert_eq!(
        h.kv.token_grants().len(),
        1,
        "the supervisor had a token before Entra went down (its first check came before the \
         program's first line), so this run proves nothing"
    );
    next_second().await;
    // A check that got through would see this and restart.
    h.kv.upsert_secret("myvault", "rotating", "t2", SecretAttributes::default());
    // At least two intervals (3 s ± 10 %) after the first check.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "restarted on a token error"
    );
    h.kv.set_token_service_up(true);
    assert_eq!(next_line(&mut lines).await, "TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(75));
    let err = stderr_of(&mut child).await;
    let failed = err
        .lines()
        .filter(|l| l.contains("could not check for a new version"))
        .collect::<Vec<_>>();
    assert!(failed.len() >= 2, "failed checks logged and retried: {err}");
    assert!(
        failed.iter().all(|l| l.contains("authentication failed")),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("new version in Key Vault"))
            .count(),
        1,
        "{err}"
    );
}

/// A program that ignores SIGTERM: the supervisor waits the grace period it was given, then
/// SIGKILLs it, reaps it and still exits for a restart, saying why in one line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_ignores_sigterm_is_killed_after_the_grace_period() {
    const STUBBORN: &str = "trap 'echo TERM' TERM; echo $$; \
        printf '%s' \"$DB\" | sha256sum | cut -c1-16; while :; do sleep 0.05; done";
    let h = Harness::start().await;
    h.kv.upsert_secret("myvault", "rotating", "first", SecretAttributes::default());
    let mut c = h.cmd_with_flags(
        Ident::ClientSecretA,
        &[
            "--restart-on-change",
            "1s",
            "--restart-grace-period",
            "2s",
            "--log",
            "info",
        ],
        ["bash", "-c", STUBBORN],
    );
    c.env("DB", "rotating@azurekeyvault")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("akv-env starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let program: u32 = next_line(&mut lines)
        .await
        .parse()
        .expect("the program's pid");
    assert_eq!(next_line(&mut lines).await, hash("first"));
    next_second().await;
    h.kv.upsert_secret("myvault", "rotating", "second", SecretAttributes::default());

    assert_eq!(next_line(&mut lines).await, "TERM", "SIGTERM first");
    let termed_at = std::time::Instant::now();
    let status = child.wait().await.unwrap();
    let waited = termed_at.elapsed();
    assert_eq!(status.code(), Some(75), "restart exit status");
    assert!(
        waited >= Duration::from_millis(1800),
        "SIGKILL came {waited:?} after SIGTERM, before the 2 s grace period"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{program}")).exists(),
        "the program (pid {program}) outlived its supervisor"
    );
    let err = stderr_of(&mut child).await;
    assert!(
        err.lines()
            .any(|l| l.contains("still running after the grace period") && l.contains("SIGKILL")),
        "{err}"
    );
    for value in ["first", "second"] {
        assert!(
            !err.contains(&hash(value)),
            "a value's hash in the logs: {err}"
        );
    }
}
