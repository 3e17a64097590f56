//! A thundering herd: many `akv-env` processes started at once against one throttled vault,
//! as a rollout of many pods would. [`run`] starts them; [`summarise`] (pure) turns what
//! happened into the figures the benchmark reports.

use std::collections::BTreeMap;
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

/// A herd of supervisors (`--restart-on-change`): every pod resolves [`PLACEHOLDERS`] once, its
/// program checks them like [`CHECK`], says `up` and waits; its supervisor checks both objects'
/// versions every interval (with jitter) against the throttled vault. Nothing changes in the
/// vault, so no pod may end while watched.
pub struct SupervisedHerd {
    pub pods: usize,
    /// `--restart-on-change`, in seconds.
    pub every_s: u64,
    /// How long to watch the checks once every program is up.
    pub observe: Duration,
}

/// What a herd of supervisors did while watched.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisedReport {
    pub pods: usize,
    /// Programs that said `up` (resolved and checked their values).
    pub up: usize,
    /// From the first start to the last `up`.
    pub time_to_all_up: Duration,
    pub observed: Duration,
    /// Pods whose supervisor exited while watched (a restart, or anything else): must be 0.
    pub ended_while_watched: usize,
    /// Restart lines ("new version in Key Vault") in all logs: must be 0.
    pub restart_lines: usize,
    /// Failed checks logged ("could not check"), e.g. throttled; each is retried later.
    pub failed_check_lines: usize,
    /// Vault requests while watched (version checks and their token challenges).
    pub requests: usize,
    pub ok: usize,
    pub challenges: usize,
    pub throttled: usize,
    pub other: usize,
    /// Most requests (any answer) and most 200s seen in one second while watched (sampled
    /// every 100 ms, so a second may straddle two of the vault's windows).
    pub max_requests_per_s: usize,
    pub max_ok_per_s: usize,
    /// Version checks the interval implies: pods × objects × observed / interval.
    pub expected_checks: f64,
    /// Exit codes after the final SIGTERM (forwarded: 143 is the program's death by SIGTERM).
    pub exit_codes: BTreeMap<String, usize>,
    pub failures: Vec<String>,
}

impl fmt::Display for SupervisedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "supervisors={}", self.pods)?;
        writeln!(f, "up={}", self.up)?;
        writeln!(
            f,
            "time_to_all_up_s={:.2}",
            self.time_to_all_up.as_secs_f64()
        )?;
        writeln!(f, "observed_s={:.1}", self.observed.as_secs_f64())?;
        writeln!(f, "ended_while_watched={}", self.ended_while_watched)?;
        writeln!(f, "restart_lines={}", self.restart_lines)?;
        writeln!(f, "failed_check_lines={}", self.failed_check_lines)?;
        writeln!(f, "check_requests={}", self.requests)?;
        writeln!(f, "check_200={}", self.ok)?;
        writeln!(f, "check_401_challenges={}", self.challenges)?;
        writeln!(f, "check_429={}", self.throttled)?;
        writeln!(f, "check_other={}", self.other)?;
        writeln!(f, "expected_checks={:.0}", self.expected_checks)?;
        writeln!(f, "max_requests_per_s={}", self.max_requests_per_s)?;
        writeln!(f, "max_200_per_s={}", self.max_ok_per_s)?;
        let codes: Vec<String> = self
            .exit_codes
            .iter()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        writeln!(f, "exit_codes_after_sigterm={}", codes.join(","))?;
        for failure in &self.failures {
            writeln!(f, "failure={}", failure.replace('\n', " | "))?;
        }
        Ok(())
    }
}

/// The most events in any `span` of a series of (time, cumulative count) samples. Pure.
pub fn peak(samples: &[(Duration, usize)], span: Duration) -> usize {
    let mut best = 0;
    let mut from = 0;
    for (i, &(t, n)) in samples.iter().enumerate() {
        while from < i && t - samples[from].0 > span {
            from += 1;
        }
        // Events after the earliest sample at most `span` before `t`, up to `t`.
        best = best.max(n - samples[from].1.min(n));
    }
    best
}

/// Starts the supervisors, waits until every program is up, clears the vault's records, watches
/// for `observe`, then stops every pod with SIGTERM and reads what they logged.
pub async fn run_supervised(
    vault: &Vault,
    herd: &SupervisedHerd,
    timeout: &str,
) -> SupervisedReport {
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
    let every = format!("--restart-on-change={}s", herd.every_s);
    let flags = [every.as_str(), "--restart-grace-period=1s"];
    // The program never outlives the run by long, whatever happens to its supervisor.
    let program = format!(
        "{CHECK}; echo up; exec sleep {}",
        herd.observe.as_secs() + 300
    );
    let start = Instant::now();
    let mut children = Vec::with_capacity(herd.pods);
    let mut failures: Vec<String> = Vec::new();
    let mut ups = JoinSet::new();
    for i in 0..herd.pods {
        let mut c = vault.command_with_flags(
            Identity::ROTATION[i % Identity::ROTATION.len()],
            timeout,
            &vault.resolve_map(),
            &flags,
            ["sh", "-c", &program],
        );
        for (name, value) in PLACEHOLDERS {
            c.env(name, value);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match c.spawn() {
            Ok(mut child) => {
                let stdout = child.stdout.take().expect("piped");
                ups.spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stdout).lines();
                    matches!(lines.next_line().await, Ok(Some(l)) if l == "up")
                        .then(|| start.elapsed())
                });
                children.push(child);
            }
            Err(e) => failures.push(format!("could not start akv-env: {e}")),
        }
    }
    let mut up = 0;
    let mut time_to_all_up = Duration::ZERO;
    while let Some(done) = ups.join_next().await {
        if let Ok(Some(at)) = done {
            up += 1;
            time_to_all_up = time_to_all_up.max(at);
        }
    }

    // Watch: only checks from here on; nothing changes in the vault.
    vault.kv.clear_records();
    let watch = Instant::now();
    let mut samples = vec![(Duration::ZERO, 0, 0)];
    while watch.elapsed() < herd.observe {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let accesses = vault.kv.accesses();
        let ok = accesses.iter().filter(|a| a.status == 200).count();
        samples.push((watch.elapsed(), accesses.len(), ok));
    }
    let observed = watch.elapsed();
    let accesses = vault.kv.accesses();
    let mut ended_while_watched = 0;
    for child in &mut children {
        if !matches!(child.try_wait(), Ok(None)) {
            ended_while_watched += 1;
        }
    }

    // Stop every pod as the kubelet would: SIGTERM to the supervisor, which forwards it.
    for child in &children {
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let mut exit_codes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut restart_lines, mut failed_check_lines) = (0, 0);
    for mut child in children {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut err).await;
        }
        let code = match child.wait().await {
            Ok(status) => format!("{:?}", status.code()),
            Err(e) => format!("wait failed: {e}"),
        };
        *exit_codes.entry(code).or_default() += 1;
        restart_lines += err.matches("new version in Key Vault").count();
        failed_check_lines += err.matches("could not check for a new version").count();
        let restarted = err.contains("new version in Key Vault");
        if (restarted || err.contains("ERROR")) && failures.len() < 3 {
            failures.push(err.trim().to_owned());
        }
    }
    let status = |s: u16| accesses.iter().filter(|a| a.status == s).count();
    let (ok, challenges, throttled) = (status(200), status(401), status(429));
    let series = |f: fn(&(Duration, usize, usize)) -> usize| -> Vec<(Duration, usize)> {
        samples.iter().map(|s| (s.0, f(s))).collect()
    };
    SupervisedReport {
        pods: herd.pods,
        up,
        time_to_all_up,
        observed,
        ended_while_watched,
        restart_lines,
        failed_check_lines,
        requests: accesses.len(),
        ok,
        challenges,
        throttled,
        other: accesses.len() - ok - challenges - throttled,
        max_requests_per_s: peak(&series(|s| s.1), Duration::from_secs(1)),
        max_ok_per_s: peak(&series(|s| s.2), Duration::from_secs(1)),
        expected_checks: (herd.pods * PLACEHOLDERS.len()) as f64 * observed.as_secs_f64()
            / herd.every_s as f64,
        exit_codes,
        failures,
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

    #[test]
    fn peak_is_the_most_events_in_any_span() {
        let s = |v: &[(u64, usize)]| -> Vec<(Duration, usize)> {
            v.iter()
                .map(|&(ms, n)| (Duration::from_millis(ms), n))
                .collect()
        };
        let second = Duration::from_secs(1);
        for (name, samples, want) in [
            ("nothing", s(&[(0, 0)]), 0),
            (
                "steady 10/s",
                s(&[(0, 0), (500, 5), (1000, 10), (1500, 15), (2000, 20)]),
                10,
            ),
            (
                "a burst",
                s(&[
                    (0, 0),
                    (500, 1),
                    (1000, 2),
                    (1100, 40),
                    (1500, 41),
                    (3000, 42),
                ]),
                40,
            ),
            ("all at once", s(&[(0, 0), (100, 7)]), 7),
        ] {
            assert_eq!(peak(&samples, second), want, "{name}");
        }
    }
}
