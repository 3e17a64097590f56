//! Supervisor mode's PID 1 duties on real processes: exit codes, signal forwarding, reaping.
//! No placeholders here, so no Key Vault is involved.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_akv-env");

fn supervised(script: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().env("PATH", "/usr/bin:/bin").args([
        "--restart-on-change",
        "10m",
        "--",
        "bash",
        "-c",
        script,
    ]);
    c
}

/// Waits (polling) until `f` holds; panics with `what` if it never does.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never happened: {what}");
}

/// (pid, state, ppid, comm) of every process whose parent is `parent`.
fn children_of(parent: u32) -> Vec<(u32, char, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) S ppid ..."; comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c).to_owned();
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent {
            out.push((pid, state, comm));
        }
    }
    out
}

fn kill(pid: u32, sig: i32) {
    let r = unsafe { nix::libc::kill(pid as i32, sig) };
    assert_eq!(r, 0, "kill {pid} {sig}");
}

#[test]
fn exit_status_is_the_programs_own() {
    let cases = [
        ("exit 0", 0),
        ("exit 7", 7),
        ("exit 255", 255),
        ("kill -KILL $$", 128 + 9),
        ("kill -SEGV $$", 128 + 11),
        ("kill -TERM $$", 128 + 15),
    ];
    for (script, want) in cases {
        let status = supervised(script).status().unwrap();
        assert_eq!(status.code(), Some(want), "{script}");
    }
    // A program that cannot be started: the shell's 127, as in exec mode.
    let status = Command::new(BIN)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(["--restart-on-change", "10m", "--", "no-such-program-xyz"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(127));
}

#[test]
fn every_catchable_signal_reaches_the_program() {
    let signals: &[(&str, i32)] = &[
        ("HUP", nix::libc::SIGHUP),
        ("INT", nix::libc::SIGINT),
        ("QUIT", nix::libc::SIGQUIT),
        ("USR1", nix::libc::SIGUSR1),
        ("USR2", nix::libc::SIGUSR2),
        ("PIPE", nix::libc::SIGPIPE),
        ("ALRM", nix::libc::SIGALRM),
        ("WINCH", nix::libc::SIGWINCH),
        ("CONT", nix::libc::SIGCONT),
        ("RTMIN+1", nix::libc::SIGRTMIN() + 1),
        ("TERM", nix::libc::SIGTERM),
    ];
    let mut script = String::new();
    for (name, _) in signals {
        let action = if *name == "TERM" {
            "echo TERM; exit 3".to_owned()
        } else {
            format!("echo {name}")
        };
        script.push_str(&format!("trap '{action}' {name}; "));
    }
    // bash runs traps between commands: keep each command short.
    script.push_str("echo ready; while :; do sleep 0.05; done");
    let mut child: Child = supervised(&script).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    for (name, signo) in signals {
        kill(child.id(), *signo);
        assert_eq!(lines.next().unwrap().unwrap(), *name, "signal {name}");
    }
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

#[test]
fn orphans_are_reaped() {
    // The subshell starts a short sleep and exits: the sleep is orphaned and must come to the
    // supervisor (a child subreaper), which reaps it when it ends.
    let mut child = supervised("(sleep 0.3 &); echo started; exec sleep 30")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sup = child.id();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "started");
    // The orphan is now ours: two children (the program and the orphaned sleep).
    eventually("the orphan is reparented to the supervisor", || {
        children_of(sup).len() == 2
    });
    // Once it has ended, it is reaped: no zombie stays behind.
    eventually("the orphan ends and is reaped", || {
        let kids = children_of(sup);
        kids.len() == 1 && kids.iter().all(|(_, state, _)| *state != 'Z')
    });
    kill(sup, nix::libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(128 + 15));
}
