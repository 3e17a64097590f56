//! The `name@azurekeyvault?param=value&...` placeholder grammar.
//!
//! Both binaries use this crate: the webhook validates every placeholder at admission so a typo
//! is refused before any pod starts, and the injector resolves the same references inside the
//! pod. It is pure (no I/O, no async, no allocation on the "not a placeholder" path) because it
//! runs on every env var of every admitted pod.
//!
//! ```
//! use akv_placeholder::{parse, ObjectKind, Vault};
//!
//! let r = parse("db-password@azurekeyvault?vault=prod-kv").unwrap().unwrap();
//! assert_eq!(r.name, "db-password");
//! assert_eq!(r.vault, Some(Vault::Name("prod-kv".into())));
//! assert_eq!(r.kind, ObjectKind::Secret);
//!
//! // Anything that does not end in `@azurekeyvault` (before the query) is left alone.
//! assert_eq!(parse("postgres://db:5432").unwrap(), None);
//! ```

mod error;
pub mod expand;
mod reference;
mod scan;
mod vault;

pub use error::{ErrorKind, ParseError};
pub use reference::{CertPart, Encoding, ObjectKind, Reference};
pub use scan::{NearMiss, contains_placeholder, near_miss};
pub use vault::Vault;

/// The marker that makes an env value a placeholder.
pub const SUFFIX: &str = "@azurekeyvault";

/// Is this env value a placeholder (possibly a malformed one)?
///
/// True when the part before the first `?` ends with [`SUFFIX`]. This is the whole test; it
/// never allocates, and [`parse`] returns `Ok(None)` exactly when it is false.
#[inline]
pub fn is_placeholder(value: &str) -> bool {
    is_placeholder_bytes(value.as_bytes())
}

/// [`is_placeholder`] for env values that need not be UTF-8 (the injector reads raw bytes).
#[inline]
pub fn is_placeholder_bytes(value: &[u8]) -> bool {
    let suffix = SUFFIX.as_bytes();
    // Most values are not placeholders: short ones are decided by their length, the rest by
    // one vectorised scan for `?` and a 14-byte comparison.
    if value.len() < suffix.len() {
        return false;
    }
    let head = match memchr::memchr(b'?', value) {
        Some(query_start) => &value[..query_start],
        None => value,
    };
    head.ends_with(suffix)
}

/// Parses an env value.
///
/// - `Ok(None)`: not a placeholder; the caller must leave the value alone, byte for byte.
/// - `Ok(Some(reference))`: a well-formed placeholder.
/// - `Err(error)`: a placeholder with a mistake; the error says what and at which byte.
pub fn parse(value: &str) -> Result<Option<Reference>, ParseError> {
    if !is_placeholder(value) {
        return Ok(None);
    }
    reference::parse_placeholder(value).map(Some)
}
