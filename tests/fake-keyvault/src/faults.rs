//! Test knobs: throttling like Key Vault's service limits, latency, errors and dropped connections.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Key Vault-style throttling: at most `limit` GETs per `window`, per vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub limit: u32,
    pub window: Duration,
}

impl Throttle {
    /// Parses `N/SECONDS`, e.g. `4000/10` (Key Vault's limit for secret GETs).
    pub fn parse(text: &str) -> Result<Throttle, String> {
        let (n, secs) = text
            .split_once('/')
            .ok_or_else(|| format!("throttle `{text}` is not N/SECONDS, e.g. 4000/10"))?;
        let limit: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("throttle `{text}`: `{n}` is not a whole number"))?;
        let secs: f64 = secs
            .trim()
            .parse()
            .map_err(|_| format!("throttle `{text}`: `{secs}` is not a number of seconds"))?;
        if !(secs.is_finite() && secs > 0.0) {
            return Err(format!(
                "throttle `{text}`: the window must be more than 0 seconds"
            ));
        }
        Ok(Throttle {
            limit,
            window: Duration::from_secs_f64(secs),
        })
    }
}

/// Counters of fixed windows, one per vault.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    per_vault: HashMap<String, (Instant, u32)>,
}

impl Windows {
    /// Counts one GET for `vault` at `now`; `Err(seconds)` when it is over the limit, with the
    /// whole seconds to the window's end for `Retry-After` (Key Vault sends whole seconds).
    pub(crate) fn take(&mut self, vault: &str, now: Instant, t: Throttle) -> Result<(), u64> {
        let entry = self.per_vault.entry(vault.to_string()).or_insert((now, 0));
        let elapsed = now.saturating_duration_since(entry.0);
        if elapsed >= t.window {
            *entry = (now, 0);
        }
        if entry.1 >= t.limit {
            let left = t
                .window
                .saturating_sub(now.saturating_duration_since(entry.0));
            return Err(left.as_secs_f64().ceil().max(1.0) as u64);
        }
        entry.1 += 1;
        Ok(())
    }

    pub(crate) fn reset(&mut self) {
        self.per_vault.clear();
    }
}

/// Checks a share (0.0 to 1.0) given for a knob, naming the knob when it is out of range.
pub fn check_rate(knob: &str, rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{knob} {rate} is not a share between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_parses() {
        type Case<'a> = (&'a str, Result<(u32, u64), &'a str>);
        let cases: &[Case] = &[
            ("4000/10", Ok((4000, 10_000))),
            ("3/0.5", Ok((3, 500))),
            ("0/1", Ok((0, 1000))),
            ("10", Err("N/SECONDS")),
            ("x/1", Err("`x` is not a whole number")),
            ("1/y", Err("`y` is not a number")),
            ("1/0", Err("more than 0")),
        ];
        for (text, want) in cases {
            match (Throttle::parse(text), want) {
                (Ok(t), Ok((limit, ms))) => {
                    assert_eq!(
                        (t.limit, t.window.as_millis() as u64),
                        (*limit, *ms),
                        "{text}"
                    )
                }
                (Err(e), Err(part)) => assert!(e.contains(part), "{text}: {e}"),
                (got, _) => panic!("{text}: got {got:?}"),
            }
        }
    }

    #[test]
    fn windows_count_per_vault_and_reset() {
        let t = Throttle {
            limit: 2,
            window: Duration::from_secs(10),
        };
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut w = Windows::default();
        // (vault, second, expected)
        let steps: &[(&str, u64, Result<(), u64>)] = &[
            ("a", 0, Ok(())),
            ("a", 1, Ok(())),
            ("a", 2, Err(8)),
            ("b", 2, Ok(())),
            ("a", 9, Err(1)),
            ("a", 10, Ok(())),
            ("a", 10, Ok(())),
            ("a", 11, Err(9)),
        ];
        for (i, (vault, s, want)) in steps.iter().enumerate() {
            assert_eq!(w.take(vault, at(*s), t), *want, "step {i}: {vault} at {s}s");
        }
    }

    #[test]
    fn rates_are_shares() {
        assert!(check_rate("error rate", 0.5).is_ok());
        assert!(
            check_rate("error rate", 1.5)
                .unwrap_err()
                .contains("error rate 1.5")
        );
        assert!(check_rate("drop rate", -0.1).is_err());
        assert!(check_rate("drop rate", f64::NAN).is_err());
    }
}
