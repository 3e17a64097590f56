//! Scanning the environment for placeholders and building the child's environment. Pure.

use akv_keyvault::Secret;
use akv_placeholder::{ParseError, Reference};
use std::{
    ffi::{CString, OsStr, OsString},
    os::unix::ffi::OsStrExt,
};
use zeroize::Zeroize;

/// One env var whose value is a placeholder.
#[derive(Debug)]
pub struct Found {
    /// Position in the environment, so the child's env keeps the original order.
    pub index: usize,
    pub name: OsString,
    pub reference: Result<Reference, PlaceholderError>,
}

/// A placeholder that cannot be used as written.
#[derive(Debug)]
pub enum PlaceholderError {
    Parse(ParseError),
    NotUtf8,
}

impl std::error::Error for PlaceholderError {}

impl std::fmt::Display for PlaceholderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceholderError::Parse(e) => write!(f, "bad placeholder: {e}"),
            PlaceholderError::NotUtf8 => {
                f.write_str("bad placeholder: the value is not valid UTF-8")
            }
        }
    }
}

/// Every env var whose value is a placeholder, well-formed or not. Values that are not
/// placeholders are not inspected further and pass through untouched.
pub fn find_placeholders(env: &[(OsString, OsString)]) -> Vec<Found> {
    env.iter()
        .enumerate()
        .filter(|(_, (_, v))| akv_placeholder::is_placeholder_bytes(v.as_bytes()))
        .map(|(index, (name, value))| {
            let reference = match value.to_str() {
                None => Err(PlaceholderError::NotUtf8),
                Some(text) => match akv_placeholder::parse(text) {
                    Ok(Some(r)) => Ok(r),
                    Err(e) => Err(PlaceholderError::Parse(e)),
                    // is_placeholder_bytes said yes, so parse cannot say "not a placeholder".
                    Ok(None) => unreachable!("is_placeholder and parse disagree"),
                },
            };
            Found {
                index,
                name: name.clone(),
                reference,
            }
        })
        .collect()
}

/// The child's `envp`: `NAME=value` C strings, wiped when dropped (so also when exec fails).
pub struct Envp(Vec<CString>);

impl Envp {
    pub fn as_slice(&self) -> &[CString] {
        &self.0
    }
}

impl Drop for Envp {
    fn drop(&mut self) {
        for c in self.0.drain(..) {
            c.into_bytes_with_nul().zeroize();
        }
    }
}

/// Why a resolved value cannot be put into the environment.
#[derive(Debug, PartialEq, Eq)]
pub struct NulInValue;

/// Builds `envp` from the original environment, replacing the values at `resolved`'s indices.
/// Each entry is allocated once at its final size, so no reallocation leaves a copy behind.
pub fn build_envp(
    env: &[(OsString, OsString)],
    resolved: &[(usize, Secret)],
) -> Result<Envp, (usize, NulInValue)> {
    let mut out = Envp(Vec::with_capacity(env.len()));
    for (i, (name, value)) in env.iter().enumerate() {
        let value: &[u8] = match resolved.iter().find(|(idx, _)| *idx == i) {
            Some((_, secret)) => secret.expose_bytes(),
            None => value.as_bytes(),
        };
        if value.contains(&0) {
            return Err((i, NulInValue));
        }
        let name = name.as_bytes();
        let mut buf = Vec::with_capacity(name.len() + 1 + value.len() + 1);
        buf.extend_from_slice(name);
        buf.push(b'=');
        buf.extend_from_slice(value);
        buf.push(0);
        // Names from the kernel's environ cannot hold NUL; values were checked above.
        let c = CString::from_vec_with_nul(buf).map_err(|_| (i, NulInValue))?;
        out.0.push(c);
    }
    Ok(out)
}

/// The value of `PATH` in an environment list (the resolved one: a placeholder may set it).
pub fn path_of<'a>(
    env: &'a [(OsString, OsString)],
    resolved: &'a [(usize, Secret)],
) -> Option<&'a OsStr> {
    let i = env.iter().position(|(n, _)| n == "PATH")?;
    match resolved.iter().find(|(idx, _)| *idx == i) {
        Some((_, s)) => Some(OsStr::from_bytes(s.expose_bytes())),
        None => Some(env[i].1.as_os_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt as _;

    fn os(s: &[u8]) -> OsString {
        OsString::from_vec(s.to_vec())
    }

    fn env(pairs: &[(&[u8], &[u8])]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(n, v)| (os(n), os(v))).collect()
    }

    #[test]
    fn finds_placeholders_and_leaves_the_rest() {
        let e = env(&[
            (b"PATH", b"/usr/bin"),
            (b"DB", b"db-password@azurekeyvault"),
            (b"RAW", b"\xff\xfe not utf8"),
            (b"BAD", b"bad_name@azurekeyvault"),
            (b"BIN", b"\xffx@azurekeyvault"),
            (b"MAIL", b"someone@example.com"),
            (b"Q", b"c@azurekeyvault?type=certificate&part=key"),
        ]);
        let found = find_placeholders(&e);
        let summary: Vec<(usize, &OsStr, String)> = found
            .iter()
            .map(|f| {
                let r = match &f.reference {
                    Ok(r) => format!("ok {}", r.name),
                    Err(PlaceholderError::NotUtf8) => "not utf8".to_owned(),
                    Err(PlaceholderError::Parse(_)) => "parse error".to_owned(),
                };
                (f.index, f.name.as_os_str(), r)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, OsStr::new("DB"), "ok db-password".to_owned()),
                (3, OsStr::new("BAD"), "parse error".to_owned()),
                (4, OsStr::new("BIN"), "not utf8".to_owned()),
                (6, OsStr::new("Q"), "ok c".to_owned()),
            ]
        );
    }

    #[test]
    fn envp_replaces_only_resolved_values_byte_for_byte() {
        let e = env(&[
            (b"A", b"\xff\x01raw"),
            (b"S", b"s@azurekeyvault"),
            (b"EMPTY", b""),
        ]);
        let resolved = vec![(1, Secret::from_string("hunter2".into()))];
        let envp = build_envp(&e, &resolved).unwrap();
        let got: Vec<&[u8]> = envp.as_slice().iter().map(|c| c.as_bytes()).collect();
        assert_eq!(got, vec![&b"A=\xff\x01raw"[..], b"S=hunter2", b"EMPTY="]);
    }

    #[test]
    fn envp_refuses_nul_in_a_value() {
        let e = env(&[(b"A", b"x"), (b"S", b"s@azurekeyvault")]);
        let resolved = vec![(1, Secret::new(b"a\0b".to_vec()))];
        assert_eq!(build_envp(&e, &resolved).err().map(|(i, _)| i), Some(1));
    }

    #[test]
    fn path_comes_from_the_resolved_env() {
        let e = env(&[(b"HOME", b"/"), (b"PATH", b"p@azurekeyvault")]);
        assert_eq!(path_of(&e, &[]), Some(OsStr::new("p@azurekeyvault")));
        let resolved = vec![(1, Secret::from_string("/opt/bin".into()))];
        assert_eq!(path_of(&e, &resolved), Some(OsStr::new("/opt/bin")));
        assert_eq!(path_of(&e[..1], &[]), None);
    }
}
