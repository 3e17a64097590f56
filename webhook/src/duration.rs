//! `500ms`, `4s`, `5m`, `1h` for flags and env vars: small enough not to need a crate.

use std::time::Duration;

/// Parses a duration with unit suffixes (`ms`, `s`, `m`, `h`), combinable like Go's (`1h30m`);
/// a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let invalid = || format!("{text:?} is not a duration; write e.g. 500ms, 4s, 5m, 1h30m");
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        total += match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => {
                return Err(format!(
                    "{text:?} has an unknown unit {unit:?}; use ms, s, m or h"
                ));
            }
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("500ms", Duration::from_millis(500)),
            ("4s", Duration::from_secs(4)),
            ("4", Duration::from_secs(4)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            (" 2s ", Duration::from_secs(2)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m500ms", Duration::from_millis(60_500)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text:?}");
        }
        for (text, want) in [
            ("", "not a duration"),
            ("s", "not a duration"),
            ("-1s", "not a duration"),
            ("3d", "unknown unit \"d\""),
            ("1.5s", "unknown unit \".\""),
            ("5 s", "unknown unit \" s\""),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
