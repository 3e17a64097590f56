//! The leak matrix: every path the injector can take (success and each failure) at every log
//! level, with distinctive values stored in the vault. Each value, in every encoded form, is
//! looked for in stdout, stderr, the program's argv (which it writes down itself),
//! `/proc/PID/cmdline` sampled during the run, and every file written under the run's HOME,
//! TMPDIR and working directory. One line per (path, level,
//! value, place) that leaks. Every path runs in exec mode and in supervisor mode
//! (`--restart-on-change`: akv-env stays as the program's parent and a second akv-env resolves
//! and execs the program), where the argv of every process under the supervisor is sampled too.

use std::process::Stdio;
use std::time::Duration;

use akv_env_reliability::{
    bins,
    pod::{Identity, Vault},
};
use akv_test_support::leak as scan;
use fake_keyvault::{Options, SecretAttributes, Throttle};
use sha2::{Digest as _, Sha256};

const PLAIN: &str = "LEAKv-plain-3b9f0c27";
const FIELD: &str = "LEAKv-json-field-81d2e4";
const OTHER: &str = "LEAKv-json-other-5e7a90";
const DECODED: &str = "LEAKv-b64-decoded-4c1f6b";
const NOT_JSON: &str = "LEAKv-notjson-77aa31";
const NOT_B64: &str = "LEAKv-notb64-*";

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A vault fault switched on for one path, off again afterwards.
#[derive(Clone, Copy)]
enum Fault {
    None,
    /// Throttled for longer than the deadline.
    Throttled,
    /// The vault's address maps to a closed port.
    Unreachable,
}

struct Route {
    name: &'static str,
    identity: Identity,
    /// Injector flags before `--`, as the webhook writes them for `$(VAR)` composition.
    flags: &'static [&'static str],
    /// An argument after the program's own (`$1`, index 4 of the argv), as stored in the spec.
    argument: Option<&'static str>,
    vars: &'static [(&'static str, &'static str)],
    fault: Fault,
    code: i32,
    /// Proof that the run took this path.
    says: &'static str,
}

/// Every failing path also holds `P` (readable, so its value is in memory when the run fails).
const ROUTES: &[Route] = &[
    Route {
        name: "success",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("J", "leak-json@azurekeyvault?key=user"),
            ("B", "leak-b64@azurekeyvault?encoding=base64"),
        ],
        fault: Fault::None,
        code: 0,
        says: "",
    },
    Route {
        name: "not found",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("X", "no-such@azurekeyvault"),
        ],
        fault: Fault::None,
        code: 1,
        says: "X: secret no-such in vault myvault: not found",
    },
    Route {
        name: "forbidden",
        flags: &[],
        argument: None,
        identity: Identity::Reader,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("X", "leak-json@azurekeyvault"),
        ],
        fault: Fault::None,
        code: 1,
        says: "X: secret leak-json in vault myvault: forbidden",
    },
    Route {
        name: "throttled until the deadline",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[("P", "leak-plain@azurekeyvault")],
        fault: Fault::Throttled,
        code: 1,
        says: "P: secret leak-plain in vault myvault: throttled until the deadline",
    },
    Route {
        name: "unreachable",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[("P", "leak-plain@azurekeyvault")],
        fault: Fault::Unreachable,
        code: 1,
        says: "P: secret leak-plain in vault myvault: unreachable",
    },
    Route {
        name: "key= on a non-JSON value",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("X", "leak-notjson@azurekeyvault?key=user"),
        ],
        fault: Fault::None,
        code: 1,
        says: "X: secret leak-notjson in vault myvault: bad format (key=user",
    },
    Route {
        name: "bad base64",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("X", "leak-notb64@azurekeyvault?encoding=base64"),
        ],
        fault: Fault::None,
        code: 1,
        says: "X: secret leak-notb64 in vault myvault: bad format (encoding=base64",
    },
    Route {
        name: "parse error",
        flags: &[],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("X", "bad_name@azurekeyvault"),
        ],
        fault: Fault::None,
        code: 1,
        says: "X: bad placeholder",
    },
    Route {
        name: "composed value",
        flags: &["--compose-env=U", "--capture=AKV_ENV_REF_P"],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("J", "leak-json@azurekeyvault?key=user"),
            ("B", "leak-b64@azurekeyvault?encoding=base64"),
            ("AKV_ENV_REF_P", "leak-plain@azurekeyvault"),
            ("U", "postgres://u:$(AKV_ENV_REF_P)@db"),
        ],
        fault: Fault::None,
        code: 0,
        says: "",
    },
    Route {
        name: "composed argument",
        flags: &["--compose-arg=4", "--capture=AKV_ENV_REF_P"],
        argument: Some("--password=$(AKV_ENV_REF_P)"),
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("J", "leak-json@azurekeyvault?key=user"),
            ("B", "leak-b64@azurekeyvault?encoding=base64"),
            ("AKV_ENV_REF_P", "leak-plain@azurekeyvault"),
        ],
        fault: Fault::None,
        code: 0,
        says: "",
    },
    Route {
        name: "composed argument, vault refuses",
        flags: &["--compose-arg=4", "--capture=AKV_ENV_REF_P"],
        argument: Some("--password=$(AKV_ENV_REF_P)"),
        identity: Identity::Reader,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("AKV_ENV_REF_P", "leak-json@azurekeyvault?key=user"),
        ],
        fault: Fault::None,
        code: 1,
        says: "AKV_ENV_REF_P: secret leak-json in vault myvault: forbidden",
    },
    Route {
        name: "composed value, then raw placeholder text left elsewhere",
        flags: &["--compose-env=U", "--capture=AKV_ENV_REF_P"],
        argument: None,
        identity: Identity::ClientSecret,
        vars: &[
            ("P", "leak-plain@azurekeyvault"),
            ("AKV_ENV_REF_P", "leak-plain@azurekeyvault"),
            ("U", "postgres://u:$(AKV_ENV_REF_P)@db"),
            ("X", "x:leak-json@azurekeyvault@db"),
        ],
        fault: Fault::None,
        code: 1,
        says: "env var X still holds Key Vault placeholder text after resolution",
    },
];

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The program proves it got the values by printing only their hashes (a removed capture and a
/// missing argument as distinct words).
/// Writes its own argv (`/proc/self/cmdline`, as anyone on the node could read it) to
/// `$ARGV_OUT`, then prints its pids and a digest of each value it was handed.
const PROGRAM: &str = r#"cat /proc/$$/cmdline >"$ARGV_OUT"; echo "pid $$ $PPID"; for v in "$P" "$J" "$B" "$U" "${AKV_ENV_REF_P-capture-removed}" "${1-no-argument}"; do printf '%s' "$v" | sha256sum; done"#;

/// Exec mode, and supervisor mode with an interval no run reaches (the checks have their own
/// tests; here the point is what the supervisor and its resolving child print and expose).
const MODES: [(&str, &[&str]); 2] = [
    ("exec", &[]),
    (
        "supervised",
        &["--restart-on-change=10m", "--restart-grace-period=1s"],
    ),
];

/// The index of [`Route::argument`] in the program's argv: `sh -c PROGRAM sh ARGUMENT`.
const ARGUMENT_INDEX: usize = 4;

struct Run {
    pid: u32,
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The argv of the injector and every process under it, sampled every 20 ms: best effort
    /// (a run may end between two samples), so it is a second look, not the proof.
    cmdlines: Vec<Vec<u8>>,
    /// The program's argv as it read it itself, if it ran.
    program_argv: Option<Vec<u8>>,
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
}

/// The argv of `pid` and of every process under it (the supervisor's children and theirs).
fn cmdlines_under(pid: u32, out: &mut Vec<Vec<u8>>) {
    if let Ok(b) = std::fs::read(format!("/proc/{pid}/cmdline"))
        && !b.is_empty()
    {
        out.push(b);
    }
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    for child in children.unwrap_or_default().split_whitespace() {
        if let Ok(child) = child.parse() {
            cmdlines_under(child, out);
        }
    }
}

/// The argv of a process just spawned and not yet reaped: `spawn` returns once the exec has
/// begun, before the kernel fills in the new argv (it reads empty until then), so this waits
/// for it, unless the process has already run to its end (a zombie's argv reads empty too).
fn first_cmdline(pid: u32) -> Option<Vec<u8>> {
    loop {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !argv.is_empty() {
            return Some(argv);
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name, which may itself hold ") ".
        if stat.rsplit_once(") ")?.1.starts_with('Z') {
            return None;
        }
        std::thread::yield_now();
    }
}

async fn run(
    v: &Vault,
    path: &Route,
    mode_flags: &[&str],
    level: &str,
    closed: std::net::SocketAddr,
) -> Run {
    let root = tempfile::tempdir_in(v.path()).unwrap();
    let argv_out = root.path().join("program-argv");
    let dirs = ["home", "tmp", "cwd"].map(|d| root.path().join(d));
    for d in &dirs {
        std::fs::create_dir(d).unwrap();
    }
    let resolve = match path.fault {
        Fault::Unreachable => format!(
            "myvault.vault.azure.net={closed},login.test={}",
            v.kv.https_addr()
        ),
        _ => v.resolve_map(),
    };
    let mut program = vec!["sh", "-c", PROGRAM];
    if let Some(argument) = path.argument {
        program.extend(["sh", argument]);
    }
    let flags = [mode_flags, path.flags].concat();
    let mut c = v.command_with_flags(path.identity, "2s", &resolve, &flags, program);
    c.envs(path.vars.iter().copied())
        .env("AKV_ENV_LOG", level)
        .env("ARGV_OUT", &argv_out)
        .env("HOME", &dirs[0])
        .env("TMPDIR", &dirs[1])
        .current_dir(&dirs[2])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut cmdlines: Vec<_> = first_cmdline(pid).into_iter().collect();
    let mut wait = tokio::spawn(child.wait_with_output());
    let out = loop {
        tokio::select! {
            out = &mut wait => break out.unwrap().unwrap(),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        cmdlines_under(pid, &mut cmdlines);
    };
    let files = dirs
        .iter()
        .flat_map(|d| scan::files_under(d))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            (f, bytes)
        })
        .collect();
    Run {
        pid,
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
        cmdlines,
        program_argv: std::fs::read(&argv_out).ok(),
        files,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_leaks_on_any_path_at_any_log_level() {
    let v = Vault::start(bins::injector().unwrap(), Options::default())
        .await
        .unwrap();
    let json = format!(r#"{{"user":"{FIELD}","other":"{OTHER}"}}"#);
    let b64 = scan::forms(DECODED.as_bytes())[1].clone();
    let b64 = String::from_utf8(b64).unwrap();
    for (name, value) in [
        ("leak-plain", PLAIN),
        ("leak-json", json.as_str()),
        ("leak-b64", b64.as_str()),
        ("leak-notjson", NOT_JSON),
        ("leak-notb64", NOT_B64),
    ] {
        v.kv.upsert_secret("myvault", name, value, SecretAttributes::default());
    }
    // The values, and the identities' secrets, which are as sensitive.
    let secrets = [
        PLAIN, FIELD, OTHER, DECODED, NOT_JSON, NOT_B64, "s3cret-a", "s3cret-r",
    ];
    let needles: Vec<(&str, Vec<u8>)> = secrets
        .iter()
        .flat_map(|s| scan::forms(s.as_bytes()).into_iter().map(move |f| (*s, f)))
        .collect();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let mut problems = Vec::new();
    // Per mode, in how many runs the sampler saw the injector's own argv.
    let mut injector_argv_read = std::collections::BTreeMap::<&str, usize>::new();
    for path in ROUTES {
        match path.fault {
            Fault::Throttled => v.kv.set_throttle(Some(Throttle {
                limit: 0,
                window: Duration::from_secs(60),
            })),
            Fault::None | Fault::Unreachable => v.kv.set_throttle(None),
        }
        for ((mode, mode_flags), level) in MODES
            .iter()
            .flat_map(|m| LEVELS.iter().map(move |l| (m, *l)))
        {
            let case = format!("path {:?} at level {level}, {mode}", path.name);
            let r = run(&v, path, mode_flags, level, closed).await;
            let err = String::from_utf8_lossy(&r.stderr);
            // First prove the run took the path, or the scan below proves nothing.
            if r.code != Some(path.code) {
                problems.push(format!(
                    "{case}: exit {:?}, expected {}: {err}",
                    r.code, path.code
                ));
                continue;
            }
            if !err.contains(path.says) {
                problems.push(format!(
                    "{case}: stderr does not say {:?}: {err}",
                    path.says
                ));
            }
            if path.code == 0 {
                let out = String::from_utf8_lossy(&r.stdout);
                // Proof of the mode: exec leaves the program our pid; a supervisor is its parent.
                let (exec, supervised) = (format!("pid {} ", r.pid), format!(" {}\n", r.pid));
                let pid_line = out.lines().next().unwrap_or_default().to_owned() + "\n";
                let took_mode = match *mode {
                    "exec" => pid_line.starts_with(&exec),
                    _ => !pid_line.starts_with(&exec) && pid_line.ends_with(&supervised),
                };
                if !took_mode {
                    problems.push(format!("{case}: not run in this mode: {pid_line}"));
                }
                if ![PLAIN, FIELD, DECODED]
                    .iter()
                    .all(|s| out.contains(&sha(s)))
                {
                    problems.push(format!("{case}: the values did not arrive: {out}"));
                }
                // The composed value or argument arrived whole, and the capture was removed.
                let composed = path.vars.iter().any(|(n, _)| *n == "U");
                if composed && !out.contains(&sha(&format!("postgres://u:{PLAIN}@db"))) {
                    problems.push(format!("{case}: the composed value did not arrive: {out}"));
                }
                if path.argument.is_some() && !out.contains(&sha(&format!("--password={PLAIN}"))) {
                    problems.push(format!(
                        "{case}: the composed argument did not arrive: {out}"
                    ));
                }
                if !path.flags.is_empty() && !out.contains(&sha("capture-removed")) {
                    problems.push(format!("{case}: the capture reached the program: {out}"));
                }
                if out.contains(&sha("leak-plain@azurekeyvault")) {
                    problems.push(format!("{case}: the program saw a raw placeholder: {out}"));
                }
                if level == "trace" && !err.contains("TRACE") {
                    problems.push(format!("{case}: trace logging was not on: {err}"));
                }
                if r.program_argv
                    .as_ref()
                    .is_none_or(|a| !a.starts_with(b"sh\0-c\0"))
                {
                    problems.push(format!("{case}: the program's argv was not captured"));
                }
            }
            let injector_argv = v.injector.as_os_str().as_encoded_bytes();
            if r.cmdlines.iter().any(|c| c.starts_with(injector_argv)) {
                *injector_argv_read.entry(*mode).or_default() += 1;
            }
            let mut places: Vec<(String, &[u8])> =
                vec![("stdout".into(), &r.stdout), ("stderr".into(), &r.stderr)];
            // Before exec the argv is the injector's, as stored in the spec: no value at all.
            // After exec it is the program's, where a composed argument is delivered by design
            // (and checked above): every other word is scanned.
            let program_argv: Vec<Vec<u8>> = r
                .cmdlines
                .iter()
                .filter(|c| !c.starts_with(injector_argv))
                .chain(&r.program_argv)
                .map(|c| {
                    c.split(|&b| b == 0)
                        .enumerate()
                        .filter(|(i, _)| !(path.argument.is_some() && *i == ARGUMENT_INDEX))
                        .flat_map(|(_, word)| word.iter().copied().chain([0]))
                        .collect()
                })
                .collect();
            for (i, c) in r.cmdlines.iter().enumerate() {
                if c.starts_with(injector_argv) {
                    places.push((format!("/proc/PID/cmdline sample {i} (injector)"), c));
                }
            }
            for (i, c) in program_argv.iter().enumerate() {
                places.push((format!("program argv sample {i}"), c));
            }
            for (f, bytes) in &r.files {
                places.push((format!("file {}", f.display()), bytes));
            }
            for (place, bytes) in &places {
                for (secret, form) in &needles {
                    if scan::contains(bytes, form) {
                        problems.push(format!(
                            "{case}: {secret:?} (as {:?}) in {place}",
                            String::from_utf8_lossy(form)
                        ));
                    }
                }
            }
        }
    }
    for (mode, _) in MODES {
        if injector_argv_read.get(mode).is_none_or(|&n| n == 0) {
            problems.push(format!("{mode}: the sampler never saw the injector's argv"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
