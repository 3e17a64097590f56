//! Supervisor mode (`--restart-on-change`): instead of replacing itself with the program,
//! akv-env stays as its parent and does a PID 1's duties, so it can restart the container
//! when a resolved object gets a new version.
//!
//! The values never enter this process: it starts a second akv-env (itself, with
//! `--report-fd`) which resolves the placeholders, writes which object versions it used to a
//! pipe, and execs the program (same PID). The supervisor only ever holds identifiers,
//! versions and expiry times.
//!
//! PID 1 duties: every catchable signal is blocked here and taken with `sigwaitinfo`; all but
//! SIGCHLD are forwarded to the child; SIGCHLD reaps every exited process (the supervisor is a
//! child subreaper, so orphans come to it even when it is not PID 1); when the child ends, the
//! supervisor exits with its code, or 128+signal. A restart for a new version exits with
//! [`RESTART_EXIT_CODE`].

use crate::rotation::{self, Flags};
use akv_keyvault::{Resolver, Tracked};
use nix::{
    errno::Errno,
    fcntl::{FcntlArg, FdFlag, OFlag, fcntl},
    libc,
    spawn::{PosixSpawnAttr, PosixSpawnFlags, posix_spawn},
    sys::{
        signal::{SigSet, SigmaskHow, Signal, pthread_sigmask},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::{Pid, pipe2},
};
use std::{
    ffi::{CString, OsString},
    io::{BufRead as _, BufReader, Write as _},
    os::{
        fd::{AsRawFd as _, OwnedFd, RawFd},
        unix::ffi::OsStrExt as _,
    },
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

/// Exit status after a restart for a new version: EX_TEMPFAIL, "try again".
pub const RESTART_EXIT_CODE: u8 = 75;

/// One line of the report the resolving child writes before it execs the program.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// The environment variable the value went into.
    pub var: String,
    pub object: Tracked,
}

/// Child side: marks the report descriptor close-on-exec, so the program never inherits it.
pub fn claim_report_fd(fd: RawFd) -> Result<(), String> {
    fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
    )
    .map(drop)
    .map_err(|e| format!("--report-fd {fd}: {}", e.desc()))
}

/// Child side: writes which object versions were used, one JSON line each. Best effort: a
/// supervisor that went away cannot read it anyway.
pub fn write_report(fd: RawFd, lines: &[ReportLine]) {
    let mut text = String::new();
    for line in lines {
        if let Ok(json) = serde_json::to_string(line) {
            text.push_str(&json);
            text.push('\n');
        }
    }
    // Not an OwnedFd: it must stay open until exec closes it (that close is the end marker).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        match nix::unistd::write(borrowed, rest) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

/// The signals a supervisor takes: every one (the kernel ignores SIGKILL/SIGSTOP in masks).
fn all_signals() -> SigSet {
    SigSet::all()
}

/// Runs the supervisor: never returns until the child has ended.
/// `make_resolver` builds the pod identity's Key Vault client for the checks, and what names
/// the proxy in their failures.
pub fn run(
    flags: &Flags,
    every: std::time::Duration,
    make_resolver: impl FnOnce() -> Result<(Resolver, crate::proxy::Blame), String> + Send + 'static,
) -> ExitCode {
    // Before any thread exists, so every thread inherits the mask.
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&all_signals()), None) {
        eprintln!("akv-env: cannot block signals: {}", e.desc());
        return ExitCode::FAILURE;
    }
    // Orphans of the program come to us, not to a PID 1 that may not reap them.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "could not become a child subreaper");
    }
    // The supervisor holds an access token: keep others (same uid) out of its memory.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "could not mark the process non-dumpable");
    }
    let (child, report) = match spawn_resolver_child() {
        Ok(pair) => pair,
        Err(msg) => {
            eprintln!("akv-env: {msg}");
            return ExitCode::from(126);
        }
    };
    let state = Arc::new(State {
        child,
        restarting: AtomicBool::new(false),
        ended: AtomicBool::new(false),
    });
    let checker_state = state.clone();
    let settings = rotation::CheckSettings::from_flags(flags, every);
    let spawned = std::thread::Builder::new()
        .name("akv-env-check".into())
        .spawn(move || {
            let lines = read_report(report);
            rotation::check_loop(settings, lines, make_resolver, &Restarter(checker_state));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the version checker; supervising without it");
    }
    let code = wait_and_forward(&state);
    state.ended.store(true, Ordering::SeqCst);
    code
}

struct State {
    child: Pid,
    restarting: AtomicBool,
    ended: AtomicBool,
}

/// What the checker may do to the child: end it for a restart.
pub struct Restarter(Arc<State>);

impl Restarter {
    /// SIGTERM now; SIGKILL after `grace` if it is still running.
    pub fn restart(&self, grace: std::time::Duration) {
        let s = &self.0;
        s.restarting.store(true, Ordering::SeqCst);
        let _ = nix::sys::signal::kill(s.child, Signal::SIGTERM);
        let step = std::time::Duration::from_millis(50);
        let start = std::time::Instant::now();
        while start.elapsed() < grace {
            if s.ended.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(step.min(grace.saturating_sub(start.elapsed())));
        }
        if !s.ended.load(Ordering::SeqCst) {
            tracing::warn!(
                pid = s.child.as_raw(),
                grace_s = grace.as_secs_f64(),
                "program still running after the grace period; SIGKILL"
            );
            let _ = nix::sys::signal::kill(s.child, Signal::SIGKILL);
        }
    }
}

/// Starts `akv-env --report-fd=N <our own arguments>` with our environment, signals unblocked
/// and at their defaults. Returns its pid and the read end of the report pipe.
fn spawn_resolver_child() -> Result<(Pid, OwnedFd), String> {
    let exe =
        std::env::current_exe().unwrap_or_else(|_| std::path::PathBuf::from("/proc/self/exe"));
    let (read, write) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {}", e.desc()))?;
    // The child must inherit the write end; it marks it close-on-exec itself.
    fcntl(&write, FcntlArg::F_SETFD(FdFlag::empty()))
        .map_err(|e| format!("cannot share the pipe: {}", e.desc()))?;
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let report_arg = OsString::from(format!("--report-fd={}", write.as_raw_fd()));
    args.insert(1.min(args.len()), report_arg);
    let cstr = |s: &[u8]| CString::new(s).map_err(|_| "an argument contains a NUL byte".to_owned());
    let argv: Vec<CString> = args
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = std::os::unix::ffi::OsStringExt::into_vec(k);
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            cstr(&b)
        })
        .collect::<Result<_, _>>()?;
    let path = cstr(exe.as_os_str().as_bytes())?;
    let mut attr = PosixSpawnAttr::init().map_err(|e| format!("posix_spawn: {}", e.desc()))?;
    let mut defaults = SigSet::all();
    defaults.remove(Signal::SIGKILL);
    defaults.remove(Signal::SIGSTOP);
    attr.set_sigmask(&SigSet::empty())
        .and_then(|()| attr.set_sigdefault(&defaults))
        .and_then(|()| {
            attr.set_flags(
                PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
            )
        })
        .map_err(|e| format!("posix_spawn attributes: {}", e.desc()))?;
    let actions = nix::spawn::PosixSpawnFileActions::init()
        .map_err(|e| format!("posix_spawn: {}", e.desc()))?;
    let pid = posix_spawn(path.as_c_str(), &actions, &attr, &argv, &envp).map_err(|e| {
        format!(
            "cannot start {} to resolve the placeholders: {}",
            exe.display(),
            e.desc()
        )
    })?;
    drop(write);
    Ok((pid, read))
}

/// Reads the child's report until the pipe closes (at its exec, or its exit).
fn read_report(fd: OwnedFd) -> Vec<ReportLine> {
    let file = std::fs::File::from(fd);
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<ReportLine>(&line) {
            Ok(l) => out.push(l),
            Err(e) => tracing::warn!(error = %e, "unreadable line in the version report; ignored"),
        }
    }
    out
}

/// The exit status a shell would give for a child's end: its code, or 128 + the signal.
pub fn exit_code_of(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) as u8),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as i32).min(255) as u8),
        _ => None,
    }
}

/// The signal loop: forward, reap, and return the exit status when our child ends.
fn wait_and_forward(state: &State) -> ExitCode {
    let set = all_signals();
    loop {
        let signo = unsafe { libc::sigwaitinfo(set.as_ref(), std::ptr::null_mut()) };
        if signo < 0 {
            // EINTR (e.g. a stop/continue); nothing to do.
            continue;
        }
        if signo == libc::SIGCHLD {
            if let Some(code) = reap(state.child) {
                return exit(state, code);
            }
            continue;
        }
        // Forward as is (realtime signals too); the child may have gone already.
        let r = unsafe { libc::kill(state.child.as_raw(), signo) };
        if r != 0 {
            tracing::debug!(signo, "could not forward a signal");
        }
    }
}

/// Reaps every exited process; `Some(code)` once our own child is among them.
fn reap(child: Pid) -> Option<u8> {
    let mut ours = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return ours,
            Ok(status) => {
                if status.pid() == Some(child)
                    && let Some(code) = exit_code_of(status)
                {
                    ours = Some(code);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return ours,
        }
    }
}

fn exit(state: &State, code: u8) -> ExitCode {
    state.ended.store(true, Ordering::SeqCst);
    if state.restarting.load(Ordering::SeqCst) {
        eprintln!(
            "akv-env: program ended (status {code}) for a restart onto a new version; exiting {RESTART_EXIT_CODE}"
        );
        let _ = std::io::stderr().flush();
        return ExitCode::from(RESTART_EXIT_CODE);
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let p = Pid::from_raw(1);
        let cases = [
            ("exit 0", WaitStatus::Exited(p, 0), Some(0)),
            ("exit 7", WaitStatus::Exited(p, 7), Some(7)),
            (
                "SIGTERM",
                WaitStatus::Signaled(p, Signal::SIGTERM, false),
                Some(143),
            ),
            (
                "SIGKILL with core flag",
                WaitStatus::Signaled(p, Signal::SIGKILL, true),
                Some(137),
            ),
            (
                "stopped is not an end",
                WaitStatus::Stopped(p, Signal::SIGSTOP),
                None,
            ),
        ];
        for (name, status, want) in cases {
            assert_eq!(exit_code_of(status), want, "{name}");
        }
    }

    #[test]
    fn report_round_trips_without_values() {
        let line = ReportLine {
            var: "DB".into(),
            object: Tracked {
                vault_url: "https://v.vault.azure.net".into(),
                kind: akv_keyvault::TrackedKind::Certificate,
                name: "web".into(),
                pinned: false,
                version: Some("0123".into()),
                expires: Some(1_900_000_000),
            },
        };
        let (r, w) = pipe2(OFlag::O_CLOEXEC).unwrap();
        write_report(w.as_raw_fd(), std::slice::from_ref(&line));
        drop(w);
        assert_eq!(read_report(r), vec![line]);
    }
}
