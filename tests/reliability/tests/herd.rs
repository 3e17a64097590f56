//! A scaled-down thundering herd: 100 real `akv-env` processes at once against a vault that
//! lets 40 GETs through per second. Every one must start its program with real values, none
//! with a placeholder, and each must fetch each of its objects exactly once. No time asserts:
//! the figures are in BENCHMARKS.md (`scripts/bench-herd.sh`).

use std::time::Duration;

use akv_env_reliability::{bins, herd, pod::Vault};
use fake_keyvault::{Options, Throttle};

/// The local Key Vault letting `limit` GETs through per second, and the injector under test.
async fn throttled_vault(limit: u32) -> (Vault, Throttle) {
    let throttle = Throttle {
        limit,
        window: Duration::from_secs(1),
    };
    let options = Options {
        throttle: Some(throttle),
        ..Default::default()
    };
    let vault = Vault::start(bins::injector().unwrap(), options)
        .await
        .unwrap();
    (vault, throttle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_rides_out_the_throttle_and_nobody_starts_unresolved() {
    const PODS: usize = 100;
    let (vault, throttle) = throttled_vault(40).await;
    let outcomes = herd::run(&vault, PODS, "120s").await;
    let report = herd::summarise(
        &outcomes,
        &vault.kv.accesses(),
        vault.kv.token_grants().len(),
        throttle,
    );
    assert_eq!(report.pods, PODS, "{report}");
    assert_eq!(
        report.unresolved, 0,
        "a program started unresolved:\n{report}"
    );
    assert_eq!(
        report.wrong_value, 0,
        "a program got a wrong value:\n{report}"
    );
    assert_eq!(report.succeeded, PODS, "not every pod started:\n{report}");
    assert!(
        report.vault_throttled > 0,
        "the vault never throttled, so this proved nothing:\n{report}"
    );
    assert_eq!(
        report.vault_ok,
        PODS * herd::PLACEHOLDERS.len(),
        "each pod must read each object exactly once:\n{report}"
    );
    assert_eq!(report.vault_other, 0, "{report}");
    assert!(
        report.token_grants >= PODS,
        "one token per pod at least:\n{report}"
    );
}

/// Scaled down from the 1,000-supervisor run in BENCHMARKS.md: 60 supervisors checking two
/// objects every 2 s against a vault that lets 20 GETs through per second (60 per second
/// wanted), so many checks are throttled. No check may restart a pod; throttled checks are
/// logged and retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_of_supervisors_rides_out_throttled_checks_without_a_restart() {
    let (vault, _) = throttled_vault(20).await;
    let supervised = herd::SupervisedHerd {
        pods: 60,
        every_s: 2,
        observe: Duration::from_secs(6),
    };
    let report = herd::run_supervised(&vault, &supervised, "120s").await;
    assert_eq!(report.up, supervised.pods, "{report}");
    assert!(
        report.throttled > 0 && report.failed_check_lines > 0,
        "no check was throttled, so this proved nothing:\n{report}"
    );
    assert!(
        report.ok > 0,
        "no check got through, so nothing was checked:\n{report}"
    );
    assert_eq!(report.ended_while_watched, 0, "{report}");
    assert_eq!(report.restart_lines, 0, "{report}");
    // SIGTERM forwarded to every program (a shell's `exec sleep`, killed by it): 128 + 15.
    assert_eq!(
        report.exit_codes.get("Some(143)"),
        Some(&supervised.pods),
        "{report}"
    );
}
