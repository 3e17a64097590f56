//! Failure lines where operators look: besides stderr, the container's termination message file,
//! which the kubelet copies into `lastState.terminated.message` (shown by `kubectl describe pod`)
//! after the container exits. The kubelet bind-mounts that file at the container's
//! `terminationMessagePath` (`/dev/termination-log` unless the pod says otherwise; the webhook
//! passes any other path as `--termination-message-path`). The file is written only if it
//! exists, so outside Kubernetes nothing appears in `/dev`.
//!
//! The lines are the same as on stderr: variable, vault, object and cause, never a value.

use std::path::{Path, PathBuf};

/// Kubernetes' default `terminationMessagePath`.
pub const DEFAULT_PATH: &str = "/dev/termination-log";

/// What the kubelet reads of the file (`MaxContainerTerminationMessageLength`, 4 KiB).
pub const LIMIT: usize = 4096;

/// The message for `lines`: one `akv-env: ` line each, cut at a line boundary to fit [`LIMIT`]
/// with a last line saying how many were left out. Pure.
pub fn message(lines: &[String]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let next = format!("akv-env: {line}\n");
        let left = lines.len() - i;
        // Room must remain for the "N more" line unless this is the last line.
        let tail = if left > 1 {
            format!(
                "akv-env: ... and {} more (see the container's log)\n",
                left - 1
            )
            .len()
        } else {
            0
        };
        if out.len() + next.len() + tail > LIMIT {
            let rest = format!("akv-env: ... and {left} more (see the container's log)\n");
            if out.len() + rest.len() <= LIMIT {
                out.push_str(&rest);
            }
            return out;
        }
        out.push_str(&next);
    }
    out
}

/// Where failures are reported: stderr always, the termination message file when known.
pub struct Report {
    path: Option<PathBuf>,
}

impl Report {
    pub fn new(path: Option<PathBuf>) -> Report {
        Report {
            path: path.filter(|p| !p.as_os_str().is_empty()),
        }
    }

    /// Prints each line to stderr and writes them all to the termination message file if it
    /// exists. A file that cannot be written is mentioned on stderr only: the failure being
    /// reported matters more.
    pub fn fail(&self, lines: &[String]) {
        for line in lines {
            eprintln!("akv-env: {line}");
        }
        if let Some(path) = self.path.as_deref().filter(|p| p.exists())
            && let Err(e) = write(path, &message(lines))
        {
            eprintln!(
                "akv-env: cannot write the termination message to {}: {e}",
                path.display()
            );
        }
    }
}

fn write(path: &Path, message: &str) -> std::io::Result<()> {
    // The kubelet bind-mounts an existing file here; truncate it rather than replace it.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, message.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keeps_whole_lines_within_the_kubelets_limit() {
        let short = vec!["A: vault v: secret s: not found".to_owned()];
        assert_eq!(
            message(&short),
            "akv-env: A: vault v: secret s: not found\n"
        );
        assert_eq!(message(&[]), "");

        let many: Vec<String> = (0..200)
            .map(|i| {
                format!("VAR_{i}: vault v: secret s{i}: HTTP 403 Forbidden, the identity lacks get")
            })
            .collect();
        let got = message(&many);
        assert!(got.len() <= LIMIT, "{}", got.len());
        let lines: Vec<&str> = got.lines().collect();
        let kept = lines.len() - 1;
        assert!(kept > 10, "keeps as many whole lines as fit: {kept}");
        for (i, line) in lines[..kept].iter().enumerate() {
            assert_eq!(*line, format!("akv-env: {}", many[i]));
        }
        assert_eq!(
            lines[kept],
            format!(
                "akv-env: ... and {} more (see the container's log)",
                200 - kept
            )
        );

        // One line longer than the limit alone: only the count is written.
        let huge = vec!["x".repeat(LIMIT * 2)];
        assert_eq!(
            message(&huge),
            "akv-env: ... and 1 more (see the container's log)\n"
        );
    }

    #[test]
    fn report_writes_the_file_and_truncates_what_was_there() {
        let dir = std::env::temp_dir().join(format!("akv-env-term-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("termination-log");
        std::fs::write(&path, "x".repeat(10_000)).unwrap();
        Report::new(Some(path.clone())).fail(&["A: cause".to_owned()]);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "akv-env: A: cause\n"
        );
        // A file that does not exist is not created (outside Kubernetes there is none).
        let missing = dir.join("missing");
        Report::new(Some(missing.clone())).fail(&["B: cause".to_owned()]);
        assert!(!missing.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
