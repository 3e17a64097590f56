use std::fmt::{self, Write as _};

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::SUFFIX;
use crate::error::{ErrorKind, ParseError, Quoted};
use crate::vault::Vault;

/// A well-formed placeholder: which Key Vault object to read and how to turn it into a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Object name, 1-127 of `[0-9A-Za-z-]`.
    pub name: String,
    /// `None`: the default vault (pod annotation, then namespace annotation, then webhook flag).
    pub vault: Option<Vault>,
    pub kind: ObjectKind,
    /// A pinned version (32 hex characters); `None` reads the latest.
    pub version: Option<String>,
    /// `key=`: take one field of a JSON object secret.
    pub json_key: Option<String>,
    /// `encoding=`: decode the value before use.
    pub encoding: Option<Encoding>,
    /// `part=`: which part of a certificate; only with [`ObjectKind::Certificate`].
    pub part: Option<CertPart>,
}

impl Reference {
    /// A reference to the latest version of a secret in the default vault.
    pub fn secret(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            vault: None,
            kind: ObjectKind::Secret,
            version: None,
            json_key: None,
            encoding: None,
            part: None,
        }
    }

    /// The certificate part this reference yields ([`CertPart::Pem`] unless `part=` says otherwise).
    pub fn cert_part(&self) -> CertPart {
        self.part.unwrap_or(CertPart::Pem)
    }
}

/// The kind of Key Vault object (`type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ObjectKind {
    #[default]
    Secret,
    Certificate,
    Key,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Secret => "secret",
            ObjectKind::Certificate => "certificate",
            ObjectKind::Key => "key",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How to decode a secret's value (`encoding=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Base64,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
        }
    }
}

/// Which part of a certificate to yield (`part=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertPart {
    /// The certificate chain as PEM.
    Cert,
    /// The private key as PEM.
    Key,
    /// Private key and chain, PEM.
    Pem,
}

impl CertPart {
    pub fn as_str(self) -> &'static str {
        match self {
            CertPart::Cert => "cert",
            CertPart::Key => "key",
            CertPart::Pem => "pem",
        }
    }
}

/// Formats the canonical placeholder text, which [`crate::parse`] reads back as an equal reference.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SUFFIX}", self.name)?;
        let mut sep = '?';
        let mut param = |f: &mut fmt::Formatter<'_>, name: &str, value: &str| {
            f.write_char(sep)?;
            sep = '&';
            write!(f, "{name}=")?;
            write_encoded(f, value)
        };
        if let Some(vault) = &self.vault {
            param(f, "vault", &vault.to_string())?;
        }
        if self.kind != ObjectKind::Secret {
            param(f, "type", self.kind.as_str())?;
        }
        if let Some(version) = &self.version {
            param(f, "version", version)?;
        }
        if let Some(key) = &self.json_key {
            param(f, "key", key)?;
        }
        if let Some(encoding) = self.encoding {
            param(f, "encoding", encoding.as_str())?;
        }
        if let Some(part) = self.part {
            param(f, "part", part.as_str())?;
        }
        Ok(())
    }
}

/// What [`write_encoded`] escapes besides non-ASCII: what would otherwise change the parse (`&`,
/// `%`) and anything unprintable (controls, space, DEL).
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'&').add(b'%');

/// Percent-encodes what would otherwise change the parse and anything unprintable.
fn write_encoded(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    write!(f, "{}", utf8_percent_encode(value, ESCAPED))
}

/// Parses a value already known to be a placeholder (see [`crate::is_placeholder`]).
pub(crate) fn parse_placeholder(value: &str) -> Result<Reference, ParseError> {
    let (head, query) = match value.find('?') {
        Some(q) => (&value[..q], Some(q + 1)),
        None => (value, None),
    };
    let name = &head[..head.len() - SUFFIX.len()];
    validate_object_name(name)?;
    let mut reference = Reference::secret(name);
    if let Some(query_start) = query {
        let offsets = parse_query(&value[query_start..], query_start, &mut reference)?;
        check_applicability(&reference, &offsets)?;
    }
    Ok(reference)
}

fn validate_object_name(name: &str) -> Result<(), ParseError> {
    if name.is_empty() {
        return Err(ParseError::new(0, ErrorKind::EmptyName));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(ParseError::new(
            at,
            ErrorKind::InvalidNameChar {
                found: Quoted::char(c),
            },
        ));
    }
    if name.len() > 127 {
        return Err(ParseError::new(
            127,
            ErrorKind::NameTooLong { len: name.len() },
        ));
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    Vault,
    Version,
    Type,
    Key,
    Encoding,
    Part,
}

impl Param {
    const ALL: [Param; 6] = [
        Param::Vault,
        Param::Version,
        Param::Type,
        Param::Key,
        Param::Encoding,
        Param::Part,
    ];

    fn name(self) -> &'static str {
        match self {
            Param::Vault => "vault",
            Param::Version => "version",
            Param::Type => "type",
            Param::Key => "key",
            Param::Encoding => "encoding",
            Param::Part => "part",
        }
    }

    fn from_name(name: &str) -> Option<Param> {
        Param::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Where each parameter appeared, for errors found after the whole query is read.
#[derive(Default)]
struct Offsets([Option<usize>; 6]);

impl Offsets {
    fn get(&self, p: Param) -> Option<usize> {
        self.0[p as usize]
    }
}

fn parse_query(query: &str, base: usize, reference: &mut Reference) -> Result<Offsets, ParseError> {
    if query.is_empty() {
        return Err(ParseError::new(base - 1, ErrorKind::EmptyQuery));
    }
    let mut offsets = Offsets::default();
    let single = !query.contains('&');
    let mut start = base;
    for piece in query.split('&') {
        let at = start;
        start += piece.len() + 1;
        if piece.is_empty() {
            return Err(ParseError::new(at, ErrorKind::EmptyParameter));
        }
        let (param, raw, value_at) = match piece.split_once('=') {
            Some((name, raw)) => match Param::from_name(name) {
                Some(param) => (param, raw, at + name.len() + 1),
                None => {
                    return Err(ParseError::new(
                        at,
                        ErrorKind::UnknownParameter {
                            param: Quoted::new(name),
                        },
                    ));
                }
            },
            // akv2k8s' `name@azurekeyvault?field` form: a lone bare token is `key=field`.
            None if single => (Param::Key, piece, at),
            None => {
                return Err(ParseError::new(
                    at,
                    ErrorKind::MissingValue {
                        param: Quoted::new(piece),
                    },
                ));
            }
        };
        if offsets.get(param).is_some() {
            return Err(ParseError::new(
                at,
                ErrorKind::DuplicateParameter {
                    param: param.name(),
                },
            ));
        }
        offsets.0[param as usize] = Some(at);
        if raw.is_empty() {
            return Err(ParseError::new(
                value_at,
                ErrorKind::EmptyValue {
                    param: param.name(),
                },
            ));
        }
        let value = percent_decode(raw, param).map_err(|e| e.shifted(value_at))?;
        apply(reference, param, value).map_err(|e| e.shifted(value_at))?;
    }
    Ok(offsets)
}

fn apply(reference: &mut Reference, param: Param, value: String) -> Result<(), ParseError> {
    let err = |kind| Err(ParseError::new(0, kind));
    match param {
        Param::Vault => reference.vault = Some(Vault::parse(&value)?),
        Param::Version => {
            if value.len() != 32 {
                return err(ErrorKind::VersionLength {
                    len: value.chars().count(),
                });
            }
            if let Some((at, c)) = value.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
                return Err(ParseError::new(
                    at,
                    ErrorKind::VersionNotHex {
                        found: Quoted::char(c),
                    },
                ));
            }
            reference.version = Some(value);
        }
        Param::Type => {
            reference.kind = match value.as_str() {
                "secret" => ObjectKind::Secret,
                "certificate" => ObjectKind::Certificate,
                "key" => ObjectKind::Key,
                other => {
                    return err(ErrorKind::UnknownType {
                        found: Quoted::new(other),
                    });
                }
            }
        }
        Param::Key => reference.json_key = Some(value),
        Param::Encoding => {
            reference.encoding = match value.as_str() {
                "base64" => Some(Encoding::Base64),
                other => {
                    return err(ErrorKind::UnknownEncoding {
                        found: Quoted::new(other),
                    });
                }
            }
        }
        Param::Part => {
            reference.part = match value.as_str() {
                "cert" => Some(CertPart::Cert),
                "key" => Some(CertPart::Key),
                "pem" => Some(CertPart::Pem),
                other => {
                    return err(ErrorKind::UnknownPart {
                        found: Quoted::new(other),
                    });
                }
            }
        }
    }
    Ok(())
}

/// `part=` makes sense only for certificates; `key=` and `encoding=` only for secrets (a
/// certificate or key yields PEM, which is neither JSON nor base64 to decode).
fn check_applicability(reference: &Reference, offsets: &Offsets) -> Result<(), ParseError> {
    let rules: [(Param, ObjectKind); 3] = [
        (Param::Part, ObjectKind::Certificate),
        (Param::Key, ObjectKind::Secret),
        (Param::Encoding, ObjectKind::Secret),
    ];
    for (param, applies_to) in rules {
        if let Some(at) = offsets.get(param)
            && reference.kind != applies_to
        {
            return Err(ParseError::new(
                at,
                ErrorKind::NotForType {
                    param: param.name(),
                    applies_to: applies_to.as_str(),
                    kind: reference.kind.as_str(),
                },
            ));
        }
    }
    Ok(())
}

/// Decodes `%XX` escapes. Stricter than the `percent-encoding` crate, which passes a `%` without
/// two hex digits through: here that is an error at its offset.
fn percent_decode(raw: &str, param: Param) -> Result<String, ParseError> {
    let bytes = raw.as_bytes();
    for at in memchr::memchr_iter(b'%', bytes) {
        let escape = bytes.get(at + 1..at + 3);
        if !escape.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err(ParseError::new(at, ErrorKind::BadPercentEncoding));
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            ParseError::new(
                0,
                ErrorKind::NotUtf8 {
                    param: param.name(),
                },
            )
        })
}
