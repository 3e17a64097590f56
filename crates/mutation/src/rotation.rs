//! `akv-env.io/restart-on-change`: the pod annotation that puts its wrapped containers' injector
//! in supervisor mode, turned into injector flags. Pure.

use std::collections::BTreeMap;
use std::time::Duration;

/// Pod annotation: check interval for supervisor mode, e.g. `"15m"`.
pub const ANNOTATION_RESTART_ON_CHANGE: &str = "akv-env.io/restart-on-change";
/// Pod annotation: a certificate this close to expiry counts as changed, e.g. `"72h"`.
pub const ANNOTATION_CERT_EXPIRY_MARGIN: &str = "akv-env.io/cert-expiry-margin";

/// The longest interval or margin the injector takes (its duration flags stop at 24 h).
const MAX: Duration = Duration::from_secs(86_400);
/// The pod's grace period when it sets none (Kubernetes' default).
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// `15m`, `90s`, `1h30m`, `2h`: whole numbers with `h`, `m`, `s` (Go's units for these).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty; use e.g. 15m".into());
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "{t:?}: unknown unit {c:?}; use h, m or s, e.g. 15m"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{t:?}: a unit without a number; use e.g. 15m"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!("{t:?}: a number without a unit; use e.g. 15m"));
    }
    if total == 0 {
        return Err(format!("{t:?}: must be more than 0"));
    }
    Ok(Duration::from_secs(total))
}

/// The injector flags a pod's annotations ask for, in seconds so the injector's own grammar
/// reads them. `floor`: the operator's lowest interval; a shorter one is raised to it, with a
/// warning. `grace_seconds`: the pod's `terminationGracePeriodSeconds`.
pub fn injector_flags(
    annotations: &BTreeMap<String, String>,
    floor: Duration,
    grace_seconds: Option<i64>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    let Some(text) = annotations.get(ANNOTATION_RESTART_ON_CHANGE) else {
        return Ok(Vec::new());
    };
    let bad = |key: &str, e: String| format!("pod annotation `{key}`: {e}");
    let mut every = parse_interval(text).map_err(|e| bad(ANNOTATION_RESTART_ON_CHANGE, e))?;
    if every < floor {
        warnings.push(format!(
            "annotation `{ANNOTATION_RESTART_ON_CHANGE}`: {} s is below this cluster's floor; \
             checking every {} s",
            every.as_secs(),
            floor.as_secs()
        ));
        every = floor;
    }
    if every > MAX {
        return Err(bad(
            ANNOTATION_RESTART_ON_CHANGE,
            format!("{text:?} is more than 24h"),
        ));
    }
    // The kubelet's own grace applies to the container; the supervisor gives the program the
    // same time after its SIGTERM for a restart (at least 1 s, at most 24 h).
    let grace = grace_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .clamp(1, MAX.as_secs() as i64);
    let mut flags = vec![
        format!("--restart-on-change={}s", every.as_secs()),
        format!("--restart-grace-period={grace}s"),
    ];
    if let Some(text) = annotations.get(ANNOTATION_CERT_EXPIRY_MARGIN) {
        let margin = parse_interval(text).map_err(|e| bad(ANNOTATION_CERT_EXPIRY_MARGIN, e))?;
        if margin > MAX {
            return Err(bad(
                ANNOTATION_CERT_EXPIRY_MARGIN,
                format!("{text:?} is more than 24h"),
            ));
        }
        flags.push(format!("--cert-expiry-margin={}s", margin.as_secs()));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_like_go() {
        let ok = [("15m", 900), ("90s", 90), ("1h30m", 5400), ("2h", 7200)];
        for (text, secs) in ok {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        let bad = [
            ("", "empty"),
            ("15", "without a unit"),
            ("m", "without a number"),
            ("1d", "unknown unit 'd'"),
            ("0s", "more than 0"),
            ("-5m", "unknown unit '-'"),
        ];
        for (text, want) in bad {
            let e = parse_interval(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn annotations_become_flags() {
        let a = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let floor = Duration::from_secs(60);
        type Case<'a> = (
            &'a str,
            BTreeMap<String, String>,
            Option<i64>,
            Result<&'a [&'a str], &'a str>,
            usize,
        );
        let cases: &[Case] = &[
            ("no annotation", a(&[]), None, Ok(&[]), 0),
            (
                "interval and default grace",
                a(&[(ANNOTATION_RESTART_ON_CHANGE, "15m")]),
                None,
                Ok(&["--restart-on-change=900s", "--restart-grace-period=30s"]),
                0,
            ),
            (
                "below the floor is raised, with a warning",
                a(&[(ANNOTATION_RESTART_ON_CHANGE, "1s")]),
                Some(10),
                Ok(&["--restart-on-change=60s", "--restart-grace-period=10s"]),
                1,
            ),
            (
                "grace 0 becomes 1 s; margin passed on",
                a(&[
                    (ANNOTATION_RESTART_ON_CHANGE, "5m"),
                    (ANNOTATION_CERT_EXPIRY_MARGIN, "12h"),
                ]),
                Some(0),
                Ok(&[
                    "--restart-on-change=300s",
                    "--restart-grace-period=1s",
                    "--cert-expiry-margin=43200s",
                ]),
                0,
            ),
            (
                "margin alone does nothing",
                a(&[(ANNOTATION_CERT_EXPIRY_MARGIN, "12h")]),
                None,
                Ok(&[]),
                0,
            ),
            (
                "bad interval",
                a(&[(ANNOTATION_RESTART_ON_CHANGE, "soon")]),
                None,
                Err(
                    "pod annotation `akv-env.io/restart-on-change`: \"soon\": a unit without a number",
                ),
                0,
            ),
            (
                "too long",
                a(&[(ANNOTATION_RESTART_ON_CHANGE, "25h")]),
                None,
                Err("more than 24h"),
                0,
            ),
        ];
        for (name, annotations, grace, want, warned) in cases {
            let mut warnings = Vec::new();
            let got = injector_flags(annotations, floor, *grace, &mut warnings);
            match want {
                Ok(flags) => assert_eq!(got.unwrap(), *flags, "{name}"),
                Err(text) => {
                    let e = got.unwrap_err();
                    assert!(e.contains(text), "{name}: {e}");
                }
            }
            assert_eq!(warnings.len(), *warned, "{name}: {warnings:?}");
        }
    }
}
