//! Restart on rotation: the flags, the pure decision "has this object changed?", and the check
//! loop the supervisor runs (every interval, with jitter; a failed check never restarts).

use crate::proxy::Blame;
use crate::supervise::{ReportLine, Restarter};
use akv_keyvault::{CheckError, Current, FailureKind, Resolver, Tracked, TrackedKind};
use rand::Rng as _;
use std::{collections::BTreeMap, time::Duration};

/// Supervisor-mode flags. Argv only (no env fallback): the webhook derives them from the pod's
/// annotations, with the operator's floor applied; a ConfigMap must not turn polling up.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Flags {
    /// Stay as the program's parent and restart it when a resolved object gets a new version;
    /// check this often (with jitter): "15m", "300s". Off by default (akv-env execs).
    #[arg(long, value_name = "DURATION", value_parser = crate::parse_duration)]
    pub restart_on_change: Option<Duration>,

    /// With --restart-on-change: how long the program has after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::parse_duration)]
    pub restart_grace_period: Duration,

    /// With --restart-on-change: a certificate whose version in use comes within this long of
    /// its expiry while the program runs also counts as changed (once), e.g. "1440m".
    #[arg(long, value_name = "DURATION", value_parser = crate::parse_duration)]
    pub cert_expiry_margin: Option<Duration>,

    /// Internal: set by the supervisor on the akv-env it starts; write the object versions used
    /// to this file descriptor, then exec.
    #[arg(long, value_name = "FD", hide = true)]
    pub report_fd: Option<i32>,
}

impl Flags {
    /// The check interval when this process is to supervise (not the resolving child).
    pub fn supervise_every(&self) -> Option<Duration> {
        match self.report_fd {
            Some(_) => None,
            None => self.restart_on_change,
        }
    }
}

/// What the check loop needs, fixed at start.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub every: Duration,
    pub grace: Duration,
    pub cert_margin: Option<Duration>,
    /// Longest wait for one answer.
    pub request_timeout: Duration,
}

impl CheckSettings {
    pub fn from_flags(flags: &Flags, every: Duration) -> CheckSettings {
        CheckSettings {
            every,
            grace: flags.restart_grace_period,
            cert_margin: flags.cert_expiry_margin,
            request_timeout: (every / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }
}

/// Jitter is ±10 % of the interval: a change is seen within 1.1 intervals.
const JITTER: f64 = 0.1;

/// Next wait: the interval ±10 %; the first one is drawn from 0.5..1.1 intervals, so pods
/// started together (a rollout) spread their checks at once.
pub fn next_wait(every: Duration, first: bool, unit: f64) -> Duration {
    let (lo, hi) = if first {
        (0.5, 1.0 + JITTER)
    } else {
        (1.0 - JITTER, 1.0 + JITTER)
    };
    every.mul_f64(lo + (hi - lo) * unit.clamp(0.0, 1.0))
}

/// One object the program uses, and the variables it went into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub vars: Vec<String>,
    pub object: Tracked,
    /// The version in use was already within the certificate margin when the program started.
    pub started_in_margin: bool,
}

/// Distinct unpinned objects, with the variables that use them.
pub fn watched(lines: Vec<ReportLine>, now: i64, margin: Option<Duration>) -> Vec<Watched> {
    let mut by: BTreeMap<(String, TrackedKind, String), Watched> = BTreeMap::new();
    for l in lines {
        if l.object.pinned {
            continue;
        }
        let key = (
            l.object.vault_url.clone(),
            l.object.kind,
            l.object.name.to_ascii_lowercase(),
        );
        let started_in_margin = in_margin(&l.object, l.object.expires, now, margin);
        by.entry(key)
            .or_insert_with(|| Watched {
                vars: Vec::new(),
                object: l.object,
                started_in_margin,
            })
            .vars
            .push(l.var);
    }
    by.into_values().collect()
}

fn in_margin(object: &Tracked, expires: Option<i64>, now: i64, margin: Option<Duration>) -> bool {
    match (object.kind, expires, margin) {
        (TrackedKind::Certificate, Some(exp), Some(m)) => exp - now <= m.as_secs() as i64,
        _ => false,
    }
}

/// The answer to "should the program restart for this object?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// Key Vault's current version is another one.
    NewVersion {
        old: String,
        new: String,
    },
    /// A certificate came within the margin of its expiry while the program ran.
    Expiring {
        version: String,
        expires: i64,
    },
}

/// Pure; tested as a table. Pinned objects are never watched. A version shared by several
/// "newest" versions (created in the same second) counts as unchanged: no restart on a guess.
pub fn decide(w: &Watched, current: &Current, now: i64, margin: Option<Duration>) -> Verdict {
    let Some(old) = &w.object.version else {
        return Verdict::Unchanged;
    };
    let newest: Vec<&str> = current.version.split(',').collect();
    if !newest.iter().any(|v| v.eq_ignore_ascii_case(old)) {
        return Verdict::NewVersion {
            old: old.clone(),
            new: current.version.clone(),
        };
    }
    if !w.started_in_margin
        && in_margin(&w.object, current.expires, now, margin)
        && let Some(expires) = current.expires
    {
        return Verdict::Expiring {
            version: old.clone(),
            expires,
        };
    }
    Verdict::Unchanged
}

/// The result of one round of checks.
#[derive(Debug)]
pub enum Round {
    Unchanged,
    Changed(Box<Watched>, Verdict),
    /// The round stopped at a failure; try again after `retry_after` at the earliest.
    Failed {
        object: String,
        /// The vault's URL, to tell whether the request went through a proxy.
        vault: String,
        error: CheckError,
    },
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One round: each watched object in turn, stopping at the first change or failure (a vault
/// that is down or throttling gets no more requests this round).
pub async fn check_round(
    resolver: &Resolver,
    watched: &[Watched],
    settings: &CheckSettings,
) -> Round {
    for w in watched {
        match resolver
            .current_version(&w.object, settings.request_timeout)
            .await
        {
            Ok(current) => match decide(w, &current, now_unix(), settings.cert_margin) {
                Verdict::Unchanged => {}
                v => return Round::Changed(Box::new(w.clone()), v),
            },
            Err(error) => {
                return Round::Failed {
                    object: describe(&w.object),
                    vault: w.object.vault_url.clone(),
                    error,
                };
            }
        }
    }
    Round::Unchanged
}

fn describe(t: &Tracked) -> String {
    format!("{} {} in {}", t.kind, t.name, t.vault_url)
}

/// Runs until a change restarts the program (the process then exits from the signal loop).
pub fn check_loop(
    settings: CheckSettings,
    report: Vec<ReportLine>,
    make_resolver: impl FnOnce() -> Result<(Resolver, Blame), String>,
    restarter: &Restarter,
) {
    let watched = watched(report, now_unix(), settings.cert_margin);
    if watched.is_empty() {
        tracing::info!("no unpinned Key Vault objects in use; nothing to check");
        return;
    }
    let (resolver, blame) = match make_resolver() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot check for new versions; the program keeps running");
            return;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime for checks");
            return;
        }
    };
    tracing::info!(
        objects = watched.len(),
        every_s = settings.every.as_secs_f64(),
        "watching Key Vault for new versions"
    );
    let mut wait = next_wait(settings.every, true, rand::rng().random());
    loop {
        std::thread::sleep(wait);
        let round = runtime.block_on(check_round(&resolver, &watched, &settings));
        let regular = next_wait(settings.every, false, rand::rng().random());
        match round {
            Round::Unchanged => {
                tracing::debug!("no new versions");
                wait = regular;
            }
            Round::Failed {
                object,
                vault,
                error,
            } => {
                // Honour Retry-After; never restart for a failed check.
                wait = error.retry_after.map_or(regular, |ra| {
                    regular.max(ra + ra.mul_f64(JITTER * rand::rng().random::<f64>()))
                });
                tracing::warn!(
                    object = %object,
                    kind = %error.kind,
                    cause = %blame.annotate(akv_keyvault::ResolveError {
                        object: object.clone(),
                        vault,
                        kind: error.kind,
                        cause: error.cause.clone(),
                    }).cause,
                    retry_in_s = wait.as_secs(),
                    throttled = error.kind == FailureKind::Throttled,
                    "could not check for a new version; the program keeps running"
                );
            }
            Round::Changed(w, verdict) => {
                let vars = w.vars.join(",");
                let object = describe(&w.object);
                match &verdict {
                    Verdict::NewVersion { old, new } => tracing::warn!(
                        vars = %vars, object = %object, old_version = %old, new_version = %new,
                        "new version in Key Vault; restarting the program"
                    ),
                    Verdict::Expiring { version, expires } => tracing::warn!(
                        vars = %vars, object = %object, version = %version, expires = expires,
                        "certificate version in use is within the expiry margin; restarting the program"
                    ),
                    Verdict::Unchanged => {}
                }
                restarter.restart(settings.grace);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(kind: TrackedKind, version: Option<&str>, expires: Option<i64>) -> Tracked {
        Tracked {
            vault_url: "https://v.vault.azure.net".into(),
            kind,
            name: "obj".into(),
            pinned: false,
            version: version.map(str::to_owned),
            expires,
        }
    }

    #[test]
    fn decides_what_counts_as_a_change() {
        use TrackedKind::*;
        let now = 1_000_000;
        let day = Duration::from_secs(86_400);
        let cur = |v: &str, exp: Option<i64>| Current {
            version: v.into(),
            expires: exp,
        };
        let w = |kind, version: Option<&str>, expires, started_in_margin| Watched {
            vars: vec!["X".into()],
            object: tracked(kind, version, expires),
            started_in_margin,
        };
        let cases = [
            (
                "same version",
                w(Secret, Some("a"), None, false),
                cur("a", None),
                Some(day),
                Verdict::Unchanged,
            ),
            (
                "version ids compare case-insensitively",
                w(Secret, Some("ab"), None, false),
                cur("AB", None),
                None,
                Verdict::Unchanged,
            ),
            (
                "new version",
                w(Secret, Some("a"), None, false),
                cur("b", None),
                None,
                Verdict::NewVersion {
                    old: "a".into(),
                    new: "b".into(),
                },
            ),
            (
                "mine among a same-second tie",
                w(Secret, Some("a"), None, false),
                cur("b,a", None),
                None,
                Verdict::Unchanged,
            ),
            (
                "tie without mine",
                w(Key, Some("a"), None, false),
                cur("b,c", None),
                None,
                Verdict::NewVersion {
                    old: "a".into(),
                    new: "b,c".into(),
                },
            ),
            (
                "unknown version in use",
                w(Secret, None, None, false),
                cur("b", None),
                None,
                Verdict::Unchanged,
            ),
            (
                "certificate far from expiry",
                w(Certificate, Some("a"), Some(now + 2 * 86_400), false),
                cur("a", Some(now + 2 * 86_400)),
                Some(day),
                Verdict::Unchanged,
            ),
            (
                "certificate entered the margin",
                w(Certificate, Some("a"), Some(now + 3600), false),
                cur("a", Some(now + 3600)),
                Some(day),
                Verdict::Expiring {
                    version: "a".into(),
                    expires: now + 3600,
                },
            ),
            (
                "certificate already in the margin at start",
                w(Certificate, Some("a"), Some(now + 3600), true),
                cur("a", Some(now + 3600)),
                Some(day),
                Verdict::Unchanged,
            ),
            (
                "no margin set",
                w(Certificate, Some("a"), Some(now + 3600), false),
                cur("a", Some(now + 3600)),
                None,
                Verdict::Unchanged,
            ),
            (
                "a secret's expiry does not count",
                w(Secret, Some("a"), Some(now + 3600), false),
                cur("a", Some(now + 3600)),
                Some(day),
                Verdict::Unchanged,
            ),
            (
                "certificate renewed",
                w(Certificate, Some("a"), Some(now + 3600), true),
                cur("b", Some(now + 400 * 86_400)),
                Some(day),
                Verdict::NewVersion {
                    old: "a".into(),
                    new: "b".into(),
                },
            ),
        ];
        for (name, watched, current, margin, want) in cases {
            assert_eq!(decide(&watched, &current, now, margin), want, "{name}");
        }
    }

    #[test]
    fn watches_distinct_unpinned_objects() {
        let mut pinned = tracked(TrackedKind::Secret, Some("p"), None);
        pinned.name = "pinned".into();
        pinned.pinned = true;
        let lines = vec![
            ReportLine {
                var: "A".into(),
                object: tracked(TrackedKind::Secret, Some("1"), None),
            },
            ReportLine {
                var: "B".into(),
                object: tracked(TrackedKind::Secret, Some("1"), None),
            },
            ReportLine {
                var: "C".into(),
                object: pinned,
            },
            ReportLine {
                var: "D".into(),
                object: tracked(TrackedKind::Certificate, Some("1"), Some(100)),
            },
        ];
        let w = watched(lines, 50, Some(Duration::from_secs(60)));
        let summary: Vec<(TrackedKind, Vec<String>, bool)> = w
            .iter()
            .map(|w| (w.object.kind, w.vars.clone(), w.started_in_margin))
            .collect();
        assert_eq!(
            summary,
            vec![
                (TrackedKind::Secret, vec!["A".into(), "B".into()], false),
                (TrackedKind::Certificate, vec!["D".into()], true),
            ]
        );
    }

    #[test]
    fn waits_stay_within_the_jitter() {
        let every = Duration::from_secs(100);
        let cases = [
            (true, 0.0, 50),
            (true, 1.0, 110),
            (false, 0.0, 90),
            (false, 0.5, 100),
            (false, 1.0, 110),
        ];
        for (first, unit, secs) in cases {
            assert_eq!(
                next_wait(every, first, unit),
                Duration::from_secs(secs),
                "{first} {unit}"
            );
        }
    }
}
