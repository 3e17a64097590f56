//! Looking for secret values where they must not be: texts (specs, logs) and every file under
//! a directory. Checked, not claimed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Result, io};

/// A value found somewhere: where, and which value (by index, never the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub place: String,
    pub value_index: usize,
}

/// Places in `text` where any of `values` occurs.
pub fn find_in_bytes(place: &str, bytes: &[u8], values: &[&str]) -> Vec<Leak> {
    values
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty() && bytes.windows(v.len()).any(|w| w == v.as_bytes()))
        .map(|(i, _)| Leak {
            place: place.to_string(),
            value_index: i,
        })
        .collect()
}

/// Every regular file under `dir` (symlinks not followed), and how many were read.
pub fn find_in_dir(dir: &Path, values: &[&str]) -> Result<(Vec<Leak>, usize)> {
    let mut leaks = Vec::new();
    let mut files = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(io(format!("listing {}", d.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("listing {}", d.display())))?;
            let kind = entry.file_type().map_err(io("reading a file type"))?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes =
                    std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
                files += 1;
                leaks.extend(find_in_bytes(&path.display().to_string(), &bytes, values));
            }
        }
    }
    Ok((leaks, files))
}

/// The harness's own `tracing` output, kept in memory so it can be searched.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a global subscriber at `debug` writing here (once per process; later calls
    /// return a capture that stays empty).
    pub fn install() -> LogCapture {
        let capture = LogCapture::default();
        let writer = capture.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        capture
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_values_by_index_in_bytes_and_files() {
        let values = ["s3cr3t-value", "tok-123"];
        assert_eq!(find_in_bytes("x", b"nothing here", &values), vec![]);
        assert_eq!(
            find_in_bytes("log", b"a tok-123 b", &values),
            vec![Leak {
                place: "log".into(),
                value_index: 1
            }]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"xx s3cr3t-value yy").unwrap();
        std::fs::write(dir.path().join("clean"), b"tok-12").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let (leaks, files) = find_in_dir(dir.path(), &values).unwrap();
        assert_eq!(files, 2);
        assert_eq!(leaks.len(), 1);
        assert!(leaks[0].place.ends_with("a/b/f") && leaks[0].value_index == 0);
    }
}
