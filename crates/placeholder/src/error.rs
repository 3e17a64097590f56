use std::fmt;

/// What is wrong with a placeholder, and where.
///
/// `offset` is the byte offset into the env value where the problem starts, so tools can point
/// at it. Messages quote parameter names and short enum-like values, never `key=` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(offset: usize, kind: ErrorKind) -> Self {
        Self { offset, kind }
    }

    /// The same error, found in a part of the value that starts at `base`.
    pub(crate) fn shifted(mut self, base: usize) -> Self {
        self.offset += base;
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.offset)
    }
}

impl std::error::Error for ParseError {}

/// The kinds of mistakes a placeholder can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("the object name before `@azurekeyvault` is empty")]
    EmptyName,
    #[error("the object name is {len} bytes long; Key Vault allows at most 127")]
    NameTooLong { len: usize },
    #[error("the object name contains {found}; Key Vault allows only letters, digits and `-`")]
    InvalidNameChar { found: Quoted },
    #[error("`?` is not followed by any parameter")]
    EmptyQuery,
    #[error("empty parameter (two `&` in a row, or a trailing `&`)")]
    EmptyParameter,
    #[error("parameter {param} has no value; write it as name=value")]
    MissingValue { param: Quoted },
    #[error("parameter `{param}` has an empty value")]
    EmptyValue { param: &'static str },
    #[error(
        "unknown parameter {param}; known parameters are vault, version, type, key, encoding, part"
    )]
    UnknownParameter { param: Quoted },
    #[error("parameter `{param}` is given more than once")]
    DuplicateParameter { param: &'static str },
    #[error("invalid percent-encoding (`%` must be followed by two hex digits)")]
    BadPercentEncoding,
    #[error("parameter `{param}` is not valid UTF-8 once percent-decoded")]
    NotUtf8 { param: &'static str },
    #[error("version must be 32 hex characters, got {len} characters")]
    VersionLength { len: usize },
    #[error("version must be 32 hex characters, found {found}")]
    VersionNotHex { found: Quoted },
    #[error("unknown type {found}; use secret, certificate or key")]
    UnknownType { found: Quoted },
    #[error("unknown encoding {found}; the only encoding is base64")]
    UnknownEncoding { found: Quoted },
    #[error("unknown part {found}; use cert, key or pem")]
    UnknownPart { found: Quoted },
    #[error("parameter `{param}` only applies to type={applies_to}, not type={kind}")]
    NotForType {
        param: &'static str,
        applies_to: &'static str,
        kind: &'static str,
    },
    #[error("vault name must be 3 to 24 characters, got {len}")]
    VaultNameLength { len: usize },
    #[error("vault name must start with a letter")]
    VaultNameStart,
    #[error("vault name contains {found}; allowed are letters, digits and `-`")]
    VaultNameChar { found: Quoted },
    #[error("vault URL must use https")]
    VaultUrlScheme,
    #[error("vault URL has no host")]
    VaultUrlNoHost,
    #[error(
        "vault URL host must be `<vault-name>.<key vault domain>`, e.g. myvault.vault.azure.net"
    )]
    VaultUrlHost,
    #[error("vault URL host contains {found}")]
    VaultUrlHostChar { found: Quoted },
    #[error("vault URL has an invalid port")]
    VaultUrlPort,
    #[error("vault URL must not have a path, query, fragment or user info")]
    VaultUrlExtra,
}

/// A short, printable rendering of user input for error messages: at most 32 characters,
/// control characters escaped, so a message stays one readable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub(crate) fn new(s: &str) -> Self {
        const MAX: usize = 32;
        let mut out = String::with_capacity(s.len().min(MAX) + 4);
        for (i, c) in s.chars().enumerate() {
            if i == MAX {
                out.push('…');
                break;
            }
            out.extend(c.escape_debug());
        }
        Self(out)
    }

    pub(crate) fn char(c: char) -> Self {
        Self(format!("`{}`", c.escape_debug()))
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.starts_with('`') {
            f.write_str(&self.0)
        } else {
            write!(f, "`{}`", self.0)
        }
    }
}
