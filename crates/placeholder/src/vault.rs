use std::fmt;

use crate::error::{ErrorKind, ParseError, Quoted};

/// Which vault a placeholder reads from: a bare name in the public cloud, or a full URL for
/// sovereign clouds (`https://myvault.vault.azure.cn`) and private endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Vault {
    /// `myvault`, meaning `https://myvault.vault.azure.net`.
    Name(String),
    /// A normalised `https://host[:port]` URL: lower-case host, no trailing slash.
    Url(String),
}

/// The public cloud's Key Vault DNS suffix, used for bare vault names.
pub const PUBLIC_CLOUD_SUFFIX: &str = "vault.azure.net";

impl Vault {
    /// Parses a vault name (3-24 of `[0-9A-Za-z-]`, starting with a letter) or an `https://` URL
    /// whose first host label is such a name.
    pub fn parse(s: &str) -> Result<Vault, ParseError> {
        if s.contains("://") {
            parse_url(s).map(Vault::Url)
        } else {
            validate_vault_name(s)?;
            Ok(Vault::Name(s.to_owned()))
        }
    }

    /// The vault's base URL, without a trailing slash; a bare name is in the public cloud.
    pub fn url(&self) -> String {
        self.url_in(PUBLIC_CLOUD_SUFFIX)
    }

    /// The vault's base URL with `suffix` (e.g. `vault.azure.cn`) completing a bare name; a
    /// URL stays as it is.
    pub fn url_in(&self, suffix: &str) -> String {
        match self {
            Vault::Name(name) => format!(
                "https://{}.{}",
                name.to_ascii_lowercase(),
                suffix.trim_start_matches('.').to_ascii_lowercase()
            ),
            Vault::Url(url) => url.clone(),
        }
    }

    /// The same vault as a URL, a bare name completed with `suffix` (the cloud's): what the
    /// injector contacts.
    pub fn in_suffix(&self, suffix: &str) -> Vault {
        Vault::Url(self.url_in(suffix))
    }

    /// The vault's name: the bare name, or the first DNS label of the URL.
    pub fn name(&self) -> &str {
        match self {
            Vault::Name(name) => name,
            Vault::Url(url) => {
                let host = &url["https://".len()..];
                host.split(['.', ':']).next().unwrap_or(host)
            }
        }
    }
}

impl fmt::Display for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vault::Name(name) => f.write_str(name),
            Vault::Url(url) => f.write_str(url),
        }
    }
}

pub(crate) fn validate_vault_name(name: &str) -> Result<(), ParseError> {
    let len = name.chars().count();
    if !(3..=24).contains(&len) {
        return Err(ParseError::new(0, ErrorKind::VaultNameLength { len }));
    }
    if let Some((at, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(ParseError::new(
            at,
            ErrorKind::VaultNameChar {
                found: Quoted::char(c),
            },
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphabetic() {
        return Err(ParseError::new(0, ErrorKind::VaultNameStart));
    }
    Ok(())
}

/// Accepts `https://<vault>.<domain>[:port][/]` and returns it normalised.
fn parse_url(s: &str) -> Result<String, ParseError> {
    const SCHEME: &str = "https://";
    // `get`, not slicing: byte 8 may fall inside a multi-byte character (found by fuzzing).
    if !s
        .get(..SCHEME.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
    {
        return Err(ParseError::new(0, ErrorKind::VaultUrlScheme));
    }
    let rest = &s[SCHEME.len()..];
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(at) = authority.find(['/', '?', '#', '@']) {
        return Err(ParseError::new(SCHEME.len() + at, ErrorKind::VaultUrlExtra));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(ParseError::new(SCHEME.len(), ErrorKind::VaultUrlNoHost));
    }
    if let Some((at, c)) = host
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return Err(ParseError::new(
            SCHEME.len() + at,
            ErrorKind::VaultUrlHostChar {
                found: Quoted::char(c),
            },
        ));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 3 || labels.iter().any(|l| l.is_empty()) {
        return Err(ParseError::new(SCHEME.len(), ErrorKind::VaultUrlHost));
    }
    validate_vault_name(labels[0]).map_err(|e| e.shifted(SCHEME.len()))?;
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(ParseError::new(
                    SCHEME.len() + host.len() + 1,
                    ErrorKind::VaultUrlPort,
                ));
            }
        },
    };
    let host = host.to_ascii_lowercase();
    Ok(match port {
        Some(port) if port != 443 => format!("{SCHEME}{host}:{port}"),
        _ => format!("{SCHEME}{host}"),
    })
}
