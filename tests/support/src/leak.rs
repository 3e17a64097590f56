//! Looks for secret values where they must not be, in every form a value takes on its way out.
//!
//! A value can leave raw, base64-encoded (a token, a JWT-like blob, a Kubernetes Secret's data;
//! standard or URL-safe alphabet, padded or not), hex-encoded (a debug dump of bytes) or
//! percent-encoded (a URL or form body). Each check here looks for all of them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// What a URL encoder escapes: everything but RFC 3986's unreserved characters.
const URL_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The forms of `value` with their names, raw first, then base64 standard (so index 1 is
/// always the standard padded base64), without duplicates (a form equal to an earlier one is
/// left out: `abc` percent-encoded is `abc`).
pub fn named_forms(value: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let candidates = [
        ("raw", value.to_vec()),
        ("base64", STANDARD.encode(value).into_bytes()),
        (
            "base64 unpadded",
            STANDARD_NO_PAD.encode(value).into_bytes(),
        ),
        ("base64url", URL_SAFE.encode(value).into_bytes()),
        (
            "base64url unpadded",
            URL_SAFE_NO_PAD.encode(value).into_bytes(),
        ),
        ("hex", hex::encode(value).into_bytes()),
        ("hex upper", hex::encode_upper(value).into_bytes()),
        (
            "percent-encoded",
            percent_encoding::percent_encode(value, URL_ESCAPED)
                .to_string()
                .into_bytes(),
        ),
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (name, form) in candidates {
        if !out.iter().any(|(_, f)| *f == form) {
            out.push((name, form));
        }
    }
    out
}

/// The forms of `value` ([`named_forms`] without the names).
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    named_forms(value).into_iter().map(|(_, f)| f).collect()
}

/// Whether `needle` occurs in `hay` (an empty needle never does: it would prove nothing).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A value found somewhere: where, which value (by index, never the value itself) and in
/// which form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    pub place: String,
    pub value_index: usize,
    pub form: &'static str,
}

/// Every value of `values` found in `bytes`, in any of its forms (one [`Leak`] per value: the
/// first form found).
pub fn find_in_bytes(place: &str, bytes: &[u8], values: &[&str]) -> Vec<Leak> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let (form, _) = named_forms(v.as_bytes())
                .into_iter()
                .find(|(_, f)| contains(bytes, f))?;
            Some(Leak {
                place: place.to_string(),
                value_index: i,
                form,
            })
        })
        .collect()
}

/// Every value found in any regular file under `dir` (symlinks not followed), and how many
/// files were read. Unlike [`files_under`], a directory or file that cannot be read is an
/// error: a scan that silently read nothing would prove nothing.
pub fn find_in_dir(dir: &Path, values: &[&str]) -> std::io::Result<(Vec<Leak>, usize)> {
    let context = |what: String| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let mut leaks = Vec::new();
    let mut files = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let listing = format!("listing {}", d.display());
        for entry in std::fs::read_dir(&d).map_err(context(listing.clone()))? {
            let entry = entry.map_err(context(listing.clone()))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(context(format!("the type of {}", path.display())))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes =
                    std::fs::read(&path).map_err(context(format!("reading {}", path.display())))?;
                files += 1;
                leaks.extend(find_in_bytes(&path.display().to_string(), &bytes, values));
            }
        }
    }
    Ok((leaks, files))
}

/// Every regular file under `dir`, sorted; a missing directory has none (for directories a
/// run may or may not have created).
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
            (
                "padded",
                b"hunter2",
                &[
                    "hunter2",
                    "aHVudGVyMg==",
                    "aHVudGVyMg",
                    "68756e74657232",
                    "68756E74657232",
                ],
            ),
            // Bytes whose encoding holds + and /: the URL-safe forms differ.
            (
                "url-safe",
                b"\xfb\xff\xbf",
                &["+/+/", "-_-_", "fbffbf", "%FB%FF%BF"],
            ),
            // Characters a URL must escape; unreserved ones stay.
            ("percent", b"a b/c-d", &["a%20b%2Fc-d"]),
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
            assert_eq!(
                got[1],
                STANDARD.encode(value).as_bytes(),
                "{name}: then base64"
            );
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
    fn find_in_bytes_names_the_value_and_the_form() {
        let values = ["s3cr3t-value", "tok-123"];
        let leak = |value_index, form| Leak {
            place: "log".into(),
            value_index,
            form,
        };
        // (case, text, leaks)
        let cases: &[(&str, &[u8], Vec<Leak>)] = &[
            ("clean", b"nothing here, tok-12", vec![]),
            ("raw", b"a tok-123 b", vec![leak(1, "raw")]),
            (
                "base64",
                b"token=czNjcjN0LXZhbHVl;",
                vec![leak(0, "base64")],
            ),
            ("a hex prefix", b"73336372337400", vec![]),
            (
                "hex",
                b"bytes 7333637233742d76616c7565",
                vec![leak(0, "hex")],
            ),
            (
                "both",
                b"tok-123 czNjcjN0LXZhbHVl",
                vec![leak(0, "base64"), leak(1, "raw")],
            ),
        ];
        for (name, text, want) in cases {
            assert_eq!(&find_in_bytes("log", text, &values), want, "{name}");
        }
    }

    #[test]
    fn find_in_dir_reads_every_file_and_fails_on_a_missing_dir() {
        let values = ["s3cr3t-value", "tok-123"];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), b"xx s3cr3t-value yy").unwrap();
        std::fs::write(dir.path().join("encoded"), b"dG9rLTEyMw").unwrap();
        std::fs::write(dir.path().join("clean"), b"tok-12").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let (mut leaks, files) = find_in_dir(dir.path(), &values).unwrap();
        leaks.sort_by_key(|l| l.value_index);
        assert_eq!(files, 3);
        assert_eq!(leaks.len(), 2, "{leaks:?}");
        assert!(leaks[0].place.ends_with("a/b/f") && leaks[0].form == "raw");
        assert!(leaks[1].place.ends_with("encoded") && leaks[1].form == "base64 unpadded");
        let missing = find_in_dir(&dir.path().join("missing"), &values).unwrap_err();
        assert!(missing.to_string().contains("missing"), "{missing}");
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
