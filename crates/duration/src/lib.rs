//! Durations as Go's `time.ParseDuration` reads them (`300ms`, `1.5h`, `1h30m`, `2m0.5s`), for
//! every duration flag and env var of the webhook and the injector.
//!
//! Kubernetes users write durations this way (the chart's values, cert-manager, Prometheus), and
//! the chart's schema checks them with the same grammar, so a value the schema accepts is one the
//! binaries accept. The parsing itself is the `go-duration` crate (a port tested against Go's
//! cases); this crate only adds what our flags need: no negative durations, `std` types, and
//! errors that quote the input.

use std::time::Duration;

use go_duration::{GoDuration, GoDurationParseError};

/// The JSON-schema (ECMA regex) pattern for the durations [`parse`] accepts; the chart's
/// `values.schema.json` uses exactly this, and tests/chart checks the two agree.
pub const SCHEMA_PATTERN: &str = r"^\+?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// Why a text is not a duration; the message quotes it and shows the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} has no unit; write e.g. {text}s (units: ns, us, ms, s, m, h)")]
    MissingUnit { text: String },
    #[error("{text:?} has an unknown unit {unit:?}; use ns, us, ms, s, m or h (e.g. 1h30m)")]
    UnknownUnit { text: String, unit: String },
    #[error("{text:?} is negative; a duration here must be 0 or more")]
    Negative { text: String },
    #[error("{text:?} is not a duration; write e.g. 500ms, 4s, 1.5h or 1h30m (Go's syntax)")]
    Invalid { text: String },
}

/// Parses a Go duration (surrounding whitespace ignored; negative ones refused).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    // Go's special case: a bare `0` (optionally signed) needs no unit.
    let nanos = if matches!(trimmed, "0" | "+0" | "-0") {
        0
    } else {
        trimmed
            .parse::<GoDuration>()
            .map_err(|e| match e {
                GoDurationParseError::MissingUnit => DurationError::MissingUnit {
                    text: trimmed.to_owned(),
                },
                GoDurationParseError::UnknownUnit(unit) => DurationError::UnknownUnit {
                    text: trimmed.to_owned(),
                    unit,
                },
                GoDurationParseError::InvalidDuration => DurationError::Invalid {
                    text: trimmed.to_owned(),
                },
            })?
            .nanoseconds()
    };
    let nanos = u64::try_from(nanos).map_err(|_| DurationError::Negative {
        text: trimmed.to_owned(),
    })?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats like Go's `Duration.String()` (`1h30m0s`, `1.5s`, `500ms`), so what the binaries
/// print reads back through [`parse`] and through the chart's schema.
pub fn format(duration: Duration) -> String {
    let nanos = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
    GoDuration(nanos).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    #[test]
    fn accepts_gos_grammar() {
        for (text, nanos) in [
            ("0", 0),
            ("0s", 0),
            ("+5s", 5 * S),
            ("500ms", 500 * MS),
            ("4s", 4 * S),
            ("10m", 600 * S),
            ("1.5h", 5400 * S),
            ("1h30m", 5400 * S),
            ("2m0.5s", 120 * S + 500 * MS),
            (".5s", 500 * MS),
            ("1.s", S),
            ("300us", 300_000),
            ("300µs", 300_000),
            ("300μs", 300_000),
            ("7ns", 7),
            ("2160h", 2160 * 3600 * S),
            (" 2s ", 2 * S),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_nanos(nanos)), "{text:?}");
        }
    }

    #[test]
    fn refuses_everything_else_quoting_the_input() {
        for (text, want) in [
            ("", "\"\" is not a duration"),
            ("90", "\"90\" has no unit; write e.g. 90s"),
            ("5x", "unknown unit \"x\""),
            ("3d", "unknown unit \"d\""),
            ("5 s", "unknown unit \" s\""),
            ("-1s", "\"-1s\" is negative"),
            ("1h-30m", "unknown unit \"h-\""),
            (".s", "is not a duration"),
            ("s", "is not a duration"),
            ("9999999999h", "is not a duration"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn formats_the_way_go_does_and_reads_back() {
        for (nanos, text) in [
            (0, "0s"),
            (500 * MS, "500ms"),
            (4 * S, "4s"),
            (600 * S, "10m0s"),
            (5400 * S, "1h30m0s"),
            (1500 * MS, "1.5s"),
        ] {
            let duration = Duration::from_nanos(nanos);
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration), "{text} reads back");
        }
    }
}
