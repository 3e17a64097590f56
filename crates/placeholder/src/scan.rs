//! Placeholder text where it should not be: embedded in a longer value (the injector's last
//! check before exec) and near-miss spellings (admission warnings). Pure.

use crate::SUFFIX;

/// Does `value` contain placeholder text anywhere: an object name (`[0-9A-Za-z-]`, at least one)
/// directly followed by `@azurekeyvault`? True for whole placeholders too. This is what the
/// injector refuses to hand a program after resolution, e.g. `postgres://u:pw@azurekeyvault@db`.
pub fn contains_placeholder(value: &[u8]) -> bool {
    memchr::memmem::find_iter(value, SUFFIX.as_bytes())
        .any(|at| at > 0 && is_name_byte(value[at - 1]))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// A value that was probably meant as a placeholder but is not one, so it would be passed on
/// as it is. The message says what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearMiss {
    /// `@AzureKeyVault`: the marker is lower case.
    MarkerCase,
    /// Leading or trailing whitespace, e.g. the newline a YAML `|` block adds.
    Whitespace,
}

impl NearMiss {
    /// What to do about it, for a warning line.
    pub fn fix(self) -> &'static str {
        match self {
            NearMiss::MarkerCase => "write the marker in lower case: @azurekeyvault",
            NearMiss::Whitespace => {
                "remove the surrounding whitespace (a YAML `|` block adds a trailing newline; \
                 use a plain or `|-` scalar)"
            }
        }
    }
}

/// Whether `value`, which [`crate::is_placeholder`] rejected, looks like a misspelt placeholder.
pub fn near_miss(value: &str) -> Option<NearMiss> {
    if crate::is_placeholder(value) {
        return None;
    }
    let trimmed = value.trim();
    if trimmed != value && crate::is_placeholder(trimmed) {
        return Some(NearMiss::Whitespace);
    }
    let head = trimmed.split('?').next().unwrap_or_default();
    let tail = head.len().checked_sub(SUFFIX.len())?;
    let marker = head.get(tail..)?;
    (tail > 0 && marker.eq_ignore_ascii_case(SUFFIX)).then_some(if trimmed != value {
        NearMiss::Whitespace
    } else {
        NearMiss::MarkerCase
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_placeholders_are_found() {
        let cases = [
            ("db-password@azurekeyvault", true),
            ("postgres://app:db-password@azurekeyvault@db:5432/app", true),
            ("--password=pw@azurekeyvault?vault=kv", true),
            ("@azurekeyvault", false),
            ("mail me at x @azurekeyvault", false),
            ("plain text", false),
            ("name@AzureKeyVault", false),
            ("s3cr3t-value", false),
        ];
        for (value, want) in cases {
            assert_eq!(contains_placeholder(value.as_bytes()), want, "{value:?}");
        }
    }

    #[test]
    fn near_misses_name_the_fix() {
        let cases = [
            ("db-password@azurekeyvault", None),
            ("db-password@AzureKeyVault", Some(NearMiss::MarkerCase)),
            (
                "db-password@AZUREKEYVAULT?vault=kv",
                Some(NearMiss::MarkerCase),
            ),
            ("db-password@azurekeyvault\n", Some(NearMiss::Whitespace)),
            (" db-password@azurekeyvault ", Some(NearMiss::Whitespace)),
            // A leading space alone still ends in the marker: a malformed placeholder, refused.
            (" db-password@azurekeyvault", None),
            ("db-password@AzureKeyVault\n", Some(NearMiss::Whitespace)),
            ("@AzureKeyVault", None),
            ("plain", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(near_miss(value), want, "{value:?}");
        }
    }
}
