//! A thundering herd: many `akv-env` processes started at once against one throttled vault,
//! as a rollout of many pods would. [`run`] starts them; [`summarise`] (pure) turns what
//! happened into the figures the benchmark reports.

use std::fmt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_keyvault::{Access, Throttle};
use tokio::task::JoinSet;

use crate::pod::{Identity, Vault};

/// What each pod's program does: exit 3 if any placeholder reached it unresolved, 4 if a value
/// is wrong, 0 otherwise. It never prints a value.
pub const CHECK: &str = r#"case "$DB|$API_USER" in *@azurekeyvault*) exit 3;; esac; [ "$DB" = hunter2 ] && [ "$API_USER" = u2 ] || exit 4"#;

/// The placeholders every pod holds: two distinct objects, so two GETs per pod.
pub const PLACEHOLDERS: [(&str, &str); 2] = [
    ("DB", "db-password@azurekeyvault"),
    ("API_USER", "api-config@azurekeyvault?key=user"),
];

/// The program's exit code when it saw a placeholder instead of a value.
pub const UNRESOLVED: i32 = 3;
/// The program's exit code when a value was not the one stored.
pub const WRONG_VALUE: i32 = 4;

/// How one pod ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOutcome {
    /// Exit code; `None` when it could not be started or was killed by a signal.
    pub code: Option<i32>,
    /// From the start of the herd to this pod's exit (its program exits as soon as it starts).
    pub ended: Duration,
    /// akv-env's stderr (failure lines name variables and objects, never values).
    pub stderr: String,
}

/// Starts `pods` injectors at once, pod `i` as identity `Identity::ROTATION[i % 3]`, each
/// running [`CHECK`], and waits for all of them.
pub async fn run(vault: &Vault, pods: usize, timeout: &str) -> Vec<PodOutcome> {
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut outcomes = Vec::with_capacity(pods);
    for i in 0..pods {
        let mut c = vault.command(
            Identity::ROTATION[i % Identity::ROTATION.len()],
            timeout,
            ["sh", "-c", CHECK],
        );
        for (name, value) in PLACEHOLDERS {
            c.env(name, value);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match c.spawn() {
            Ok(child) => {
                set.spawn(async move {
                    let out = child.wait_with_output().await;
                    let ended = start.elapsed();
                    match out {
                        Ok(out) => PodOutcome {
                            code: out.status.code(),
                            ended,
                            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                        },
                        Err(e) => PodOutcome {
                            code: None,
                            ended,
                            stderr: format!("waiting for the pod: {e}"),
                        },
                    }
                });
            }
            Err(e) => outcomes.push(PodOutcome {
                code: None,
                ended: start.elapsed(),
                stderr: format!("could not start akv-env: {e}"),
            }),
        }
    }
    while let Some(done) = set.join_next().await {
        outcomes.push(done.unwrap_or_else(|e| PodOutcome {
            code: None,
            ended: start.elapsed(),
            stderr: format!("pod task failed: {e}"),
        }));
    }
    outcomes
}

/// The herd's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct HerdReport {
    pub pods: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Programs that started with a placeholder still in their environment (must be 0).
    pub unresolved: usize,
    /// Programs that started with a wrong value (must be 0).
    pub wrong_value: usize,
    /// Every vault data-plane request, whatever its answer.
    pub vault_requests: usize,
    /// GETs answered 200: the requests the throttle had to let through.
    pub vault_ok: usize,
    /// 401 challenges (unauthenticated first requests; not counted by the throttle).
    pub vault_challenges: usize,
    pub vault_throttled: usize,
    /// Any other answer, or 0 for a dropped connection.
    pub vault_other: usize,
    pub token_grants: usize,
    /// From the start of the herd to the last successful pod's exit.
    pub time_to_last_start: Duration,
    /// `(ceil(vault_ok / limit) - 1) × window`: no client could do better through this throttle.
    pub lower_bound: Duration,
    /// Up to three distinct failure texts, to say why.
    pub failures: Vec<String>,
}

/// Pure: the figures from the pods' outcomes and the vault's records.
pub fn summarise(
    outcomes: &[PodOutcome],
    accesses: &[Access],
    token_grants: usize,
    throttle: Throttle,
) -> HerdReport {
    let count = |f: &dyn Fn(&PodOutcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
    let status = |s: u16| accesses.iter().filter(|a| a.status == s).count();
    let vault_ok = status(200);
    let vault_challenges = status(401);
    let vault_throttled = status(429);
    let mut failures: Vec<String> = Vec::new();
    for o in outcomes.iter().filter(|o| o.code != Some(0)) {
        let text = format!("exit {:?}: {}", o.code, o.stderr.trim());
        if failures.len() < 3 && !failures.contains(&text) {
            failures.push(text);
        }
    }
    // Fixed windows from the first GET: the last of N GETs cannot pass before the start of
    // window ceil(N / limit), i.e. (ceil(N / limit) - 1) whole windows after the first.
    let lower_bound = match (vault_ok, throttle.limit) {
        (0, _) => Duration::ZERO,
        (_, 0) => Duration::MAX,
        (n, limit) => throttle.window * (n.div_ceil(limit as usize) as u32 - 1),
    };
    HerdReport {
        pods: outcomes.len(),
        succeeded: count(&|o| o.code == Some(0)),
        failed: count(&|o| o.code != Some(0)),
        unresolved: count(&|o| o.code == Some(UNRESOLVED)),
        wrong_value: count(&|o| o.code == Some(WRONG_VALUE)),
        vault_requests: accesses.len(),
        vault_ok,
        vault_challenges,
        vault_throttled,
        vault_other: accesses.len() - vault_ok - vault_challenges - vault_throttled,
        token_grants,
        time_to_last_start: outcomes
            .iter()
            .filter(|o| o.code == Some(0))
            .map(|o| o.ended)
            .max()
            .unwrap_or_default(),
        lower_bound,
        failures,
    }
}

impl fmt::Display for HerdReport {
    /// `key=value` lines, easy to read and to grep from a script.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "pods={}", self.pods)?;
        writeln!(f, "succeeded={}", self.succeeded)?;
        writeln!(f, "failed={}", self.failed)?;
        writeln!(f, "started_unresolved={}", self.unresolved)?;
        writeln!(f, "started_wrong_value={}", self.wrong_value)?;
        writeln!(f, "vault_requests={}", self.vault_requests)?;
        writeln!(f, "vault_200={}", self.vault_ok)?;
        writeln!(f, "vault_401_challenges={}", self.vault_challenges)?;
        writeln!(f, "vault_429={}", self.vault_throttled)?;
        writeln!(f, "vault_other={}", self.vault_other)?;
        writeln!(f, "token_grants={}", self.token_grants)?;
        writeln!(
            f,
            "time_to_last_start_s={:.2}",
            self.time_to_last_start.as_secs_f64()
        )?;
        writeln!(
            f,
            "throttle_lower_bound_s={:.2}",
            self.lower_bound.as_secs_f64()
        )?;
        for failure in &self.failures {
            writeln!(f, "failure={}", failure.replace('\n', " | "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fake_keyvault::ObjectKind;

    fn access(status: u16) -> Access {
        Access {
            identity: None,
            vault: "myvault".into(),
            kind: ObjectKind::Secret,
            name: "db-password".into(),
            version: None,
            status,
        }
    }

    fn pod(code: Option<i32>, ms: u64) -> PodOutcome {
        PodOutcome {
            code,
            ended: Duration::from_millis(ms),
            stderr: String::new(),
        }
    }

    #[test]
    fn summarise_counts_and_bounds() {
        let throttle = Throttle {
            limit: 2,
            window: Duration::from_secs(1),
        };
        struct Case {
            name: &'static str,
            pods: Vec<PodOutcome>,
            statuses: Vec<u16>,
            /// succeeded, failed, unresolved, wrong value
            counts: (usize, usize, usize, usize),
            /// 200s, 401s, 429s, other
            vault: (usize, usize, usize, usize),
            last_start_ms: u64,
            bound_ms: u64,
        }
        let cases = [
            Case {
                name: "all good",
                pods: vec![pod(Some(0), 10), pod(Some(0), 30)],
                statuses: vec![401, 200, 429, 200, 200, 200, 200],
                counts: (2, 0, 0, 0),
                vault: (5, 1, 1, 0),
                last_start_ms: 30,
                // 5 GETs at 2 per window: the last passes at the start of the third window.
                bound_ms: 2000,
            },
            Case {
                name: "failures do not count as starts",
                pods: vec![
                    pod(Some(0), 10),
                    pod(Some(1), 90),
                    pod(Some(UNRESOLVED), 5),
                    pod(Some(WRONG_VALUE), 6),
                    pod(None, 7),
                ],
                statuses: vec![200, 0, 500],
                counts: (1, 4, 1, 1),
                vault: (1, 0, 0, 2),
                last_start_ms: 10,
                bound_ms: 0,
            },
            Case {
                name: "nothing",
                pods: vec![],
                statuses: vec![],
                counts: (0, 0, 0, 0),
                vault: (0, 0, 0, 0),
                last_start_ms: 0,
                bound_ms: 0,
            },
        ];
        for c in cases {
            let accesses: Vec<Access> = c.statuses.iter().map(|&s| access(s)).collect();
            let r = summarise(&c.pods, &accesses, 7, throttle);
            assert_eq!(
                (r.succeeded, r.failed, r.unresolved, r.wrong_value),
                c.counts,
                "{}",
                c.name
            );
            assert_eq!(
                (
                    r.vault_ok,
                    r.vault_challenges,
                    r.vault_throttled,
                    r.vault_other
                ),
                c.vault,
                "{}",
                c.name
            );
            assert_eq!(r.vault_requests, c.statuses.len(), "{}", c.name);
            assert_eq!(r.pods, c.pods.len(), "{}", c.name);
            assert_eq!(r.token_grants, 7, "{}", c.name);
            assert_eq!(
                r.time_to_last_start,
                Duration::from_millis(c.last_start_ms),
                "{}",
                c.name
            );
            assert_eq!(
                r.lower_bound,
                Duration::from_millis(c.bound_ms),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn failures_are_sampled_once_each_and_printed_on_one_line() {
        let mut pods = vec![pod(Some(0), 1)];
        for _ in 0..5 {
            pods.push(PodOutcome {
                code: Some(1),
                ended: Duration::ZERO,
                stderr: "akv-env: DB: secret db-password in vault myvault: unreachable\nsecond\n"
                    .into(),
            });
        }
        pods.push(pod(Some(UNRESOLVED), 1));
        let r = summarise(
            &pods,
            &[],
            0,
            Throttle {
                limit: 1,
                window: Duration::from_secs(1),
            },
        );
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        let text = r.to_string();
        assert!(
            text.contains("failure=exit Some(1): akv-env: DB: secret db-password in vault myvault: unreachable | second\n"),
            "{text}"
        );
        assert!(text.contains("started_unresolved=1\n"), "{text}");
    }
}
