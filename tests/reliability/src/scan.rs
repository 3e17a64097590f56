//! Looking for leaked values: the forms a value can take on its way out, and where to look.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// The value itself and its base64 encodings (standard and URL-safe, padded or not), without
/// duplicates: a leak through a token, a JWT-like blob or a debug dump of bytes shows up.
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![value.to_vec()];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        let encoded = engine.encode(value).into_bytes();
        if !out.contains(&encoded) {
            out.push(encoded);
        }
    }
    out
}

/// Whether `needle` occurs in `hay` (an empty needle never does: it would prove nothing).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir`, depth first; a missing directory has none.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_cover_the_encodings_without_duplicates() {
        // (case, value, encodings that must be among the forms)
        let cases: &[(&str, &[u8], &[&str])] = &[
            // 7 bytes: padding differs, URL-safe alphabet equals standard here.
            ("padded", b"hunter2", &["aHVudGVyMg==", "aHVudGVyMg"]),
            // Bytes whose encoding holds + and /: the URL-safe forms differ.
            ("url-safe", b"\xfb\xff\xbf", &["+/+/", "-_-_"]),
        ];
        for (name, value, want) in cases {
            let got = forms(value);
            for w in want.iter() {
                assert!(
                    got.iter().any(|g| g == w.as_bytes()),
                    "{name}: {w} missing from {got:?}"
                );
            }
            assert_eq!(got[0], *value, "{name}: the raw value comes first");
            let mut dedup = got.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), got.len(), "{name}: duplicates in {got:?}");
        }
    }

    #[test]
    fn contains_finds_needles_and_never_an_empty_one() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"abc hunter2 def", b"hunter2", true),
            (b"hunter", b"hunter2", false),
            (b"anything", b"", false),
            (b"", b"x", false),
            (b"\x00\xffx", b"\xffx", true),
        ];
        for (hay, needle, want) in cases {
            assert_eq!(contains(hay, needle), *want, "{hay:?} / {needle:?}");
        }
    }

    #[test]
    fn files_under_walks_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("top"), "1").unwrap();
        std::fs::write(dir.path().join("a/b/deep"), "2").unwrap();
        let got = files_under(dir.path());
        assert_eq!(
            got,
            vec![dir.path().join("a/b/deep"), dir.path().join("top")]
        );
        assert!(files_under(&dir.path().join("missing")).is_empty());
    }
}
