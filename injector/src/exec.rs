//! Replacing this process with the program, finding it on PATH like a shell does.

use nix::errno::Errno;
use std::{
    ffi::{CString, OsStr},
    os::unix::ffi::OsStrExt,
    path::PathBuf,
};

/// PATH when the environment has none (what container runtimes set by default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The files to try, in order: a name with `/` as is, otherwise each PATH entry joined with it
/// (an empty entry means the current directory, as in POSIX `execvp`).
pub fn candidates(program: &OsStr, path: Option<&OsStr>) -> Vec<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return vec![PathBuf::from(program)];
    }
    if program.is_empty() {
        return Vec::new();
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            PathBuf::from(OsStr::from_bytes(dir)).join(program)
        })
        .collect()
}

/// Why the program could not be started, with the exit status a shell would use.
#[derive(Debug, PartialEq, Eq)]
pub struct ExecFailure {
    pub status: i32,
    pub message: String,
}

/// Shell conventions: 127 for "not found", 126 for "found but cannot run".
pub fn failure(program: &OsStr, path: Option<&OsStr>, errno: Errno, searched: bool) -> ExecFailure {
    let shown = program.to_string_lossy();
    match errno {
        Errno::ENOENT | Errno::ENOTDIR if searched => ExecFailure {
            status: 127,
            message: format!(
                "{shown}: command not found in PATH ({})",
                path.map_or(DEFAULT_PATH.into(), OsStr::to_string_lossy)
            ),
        },
        Errno::ENOENT | Errno::ENOTDIR => ExecFailure {
            status: 127,
            message: format!("{shown}: no such file"),
        },
        Errno::EACCES => ExecFailure {
            status: 126,
            message: format!(
                "{shown}: permission denied (not executable, or a directory on the way is not searchable)"
            ),
        },
        Errno::ENOEXEC => ExecFailure {
            status: 126,
            message: format!("{shown}: not an executable format (a script needs a #! line)"),
        },
        other => ExecFailure {
            status: 126,
            message: format!("{shown}: cannot execute: {}", other.desc()),
        },
    }
}

/// `execve`s the first candidate that runs; returns only on failure. Like `execvp`, a missing
/// file moves on to the next PATH entry, and a permission error is reported only if nothing
/// later works.
pub fn exec(
    program: &OsStr,
    path: Option<&OsStr>,
    argv: &[CString],
    envp: &[CString],
) -> ExecFailure {
    // Rust's runtime ignores SIGPIPE and an ignored signal stays ignored across execve: give
    // the program the default it would get from a shell (and a trap on PIPE that works).
    // SAFETY: restores the default disposition; no handler code is involved.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let searched = !program.as_bytes().contains(&b'/');
    let mut saw_eacces = false;
    let mut last = Errno::ENOENT;
    for file in candidates(program, path) {
        let Ok(file) = CString::new(file.as_os_str().as_bytes()) else {
            continue;
        };
        let Err(errno) = nix::unistd::execve(&file, argv, envp);
        match errno {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ENAMETOOLONG | Errno::ELOOP if searched => {
                last = errno
            }
            Errno::EACCES if searched => saw_eacces = true,
            other => return failure(program, path, other, searched),
        }
    }
    let errno = if saw_eacces { Errno::EACCES } else { last };
    failure(program, path, errno, searched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_execvp() {
        let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
            ("absolute", "/bin/true", Some("/x"), &["/bin/true"]),
            ("relative with slash", "./run", Some("/x"), &["./run"]),
            ("searched", "true", Some("/a:/b/"), &["/a/true", "/b/true"]),
            (
                "empty entry is cwd",
                "true",
                Some("/a::/b"),
                &["/a/true", "./true", "/b/true"],
            ),
            (
                "trailing colon is cwd",
                "true",
                Some("/a:"),
                &["/a/true", "./true"],
            ),
            (
                "no PATH",
                "sh",
                None,
                &[
                    "/usr/local/sbin/sh",
                    "/usr/local/bin/sh",
                    "/usr/sbin/sh",
                    "/usr/bin/sh",
                    "/sbin/sh",
                    "/bin/sh",
                ],
            ),
            ("empty program", "", Some("/a"), &[]),
        ];
        for (name, program, path, want) in cases {
            let got = candidates(OsStr::new(program), path.map(OsStr::new));
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn exit_statuses_match_a_shell() {
        let p = OsStr::new("app");
        let cases = [
            (
                "not on PATH",
                Errno::ENOENT,
                true,
                127,
                "app: command not found in PATH (/a:/b)",
            ),
            (
                "missing file",
                Errno::ENOENT,
                false,
                127,
                "app: no such file",
            ),
            (
                "not executable",
                Errno::EACCES,
                true,
                126,
                "app: permission denied",
            ),
            (
                "bad format",
                Errno::ENOEXEC,
                false,
                126,
                "not an executable format",
            ),
            ("too big", Errno::E2BIG, false, 126, "cannot execute"),
        ];
        for (name, errno, searched, status, msg) in cases {
            let f = failure(p, Some(OsStr::new("/a:/b")), errno, searched);
            assert_eq!(f.status, status, "{name}");
            assert!(
                f.message.starts_with(msg) || f.message.contains(msg),
                "{name}: {}",
                f.message
            );
        }
    }
}
