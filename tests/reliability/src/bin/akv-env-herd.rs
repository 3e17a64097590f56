//! `akv-env-herd`: a rollout of many pods at once against one throttled local Key Vault.
//!
//! Embeds the fake Key Vault (so it can count every request and every 429), starts PODS real
//! `akv-env` processes at once, each with its own identity's environment, and prints the
//! figures as `key=value` lines. Exit code 1 if any pod failed or started unresolved.
//!
//! With `--supervise-every`, the pods run in supervisor mode (`--restart-on-change`) and stay
//! up: the driver watches their version checks for `--observe` seconds and exits 1 if any pod
//! ended or restarted meanwhile.

use std::path::PathBuf;
use std::time::Instant;

use akv_env_reliability::{bins, herd, pod::Vault};
use anyhow::Context as _;
use clap::Parser;
use fake_keyvault::{Options, Throttle};

#[derive(Parser)]
#[command(
    name = "akv-env-herd",
    about = "Start many akv-env processes at once against a throttled local Key Vault."
)]
struct Args {
    /// How many pods (akv-env processes) start at once.
    #[arg(long, env = "HERD_PODS", default_value_t = 1000)]
    pods: usize,

    /// The vault's throttle, N GETs per SECONDS (Key Vault's own limit is 4000/10).
    #[arg(long, env = "HERD_THROTTLE", default_value = "200/1", value_parser = Throttle::parse)]
    throttle: Throttle,

    /// Each injector's overall deadline (AKV_ENV_TIMEOUT).
    #[arg(long, env = "HERD_TIMEOUT", default_value = "120s")]
    timeout: String,

    /// Supervisor mode: each pod checks its objects' versions every this many seconds.
    #[arg(long, env = "HERD_SUPERVISE_EVERY", value_name = "SECONDS")]
    supervise_every: Option<u64>,

    /// With --supervise-every: how long to watch the checks once every program is up.
    #[arg(
        long,
        env = "HERD_OBSERVE",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    observe: u64,

    /// The akv-env binary; default: build and use target/debug/akv-env.
    #[arg(long, env = "AKV_ENV_BIN")]
    injector: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    let injector = match args.injector {
        Some(p) => p,
        None => bins::injector().context("building akv-env")?,
    };
    let vault = Vault::start(
        injector.clone(),
        Options {
            throttle: Some(args.throttle),
            ..Default::default()
        },
    )
    .await?;
    println!("injector={}", injector.display());
    println!(
        "throttle={}/{}s",
        args.throttle.limit,
        args.throttle.window.as_secs_f64()
    );
    if let Some(every_s) = args.supervise_every {
        println!("mode=supervised every_s={every_s}");
        let herd = herd::SupervisedHerd {
            pods: args.pods,
            every_s,
            observe: std::time::Duration::from_secs(args.observe),
        };
        let report = herd::run_supervised(&vault, &herd, &args.timeout).await;
        print!("{report}");
        let ok =
            report.up == args.pods && report.ended_while_watched == 0 && report.restart_lines == 0;
        return Ok(if ok {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        });
    }
    let started = Instant::now();
    let outcomes = herd::run(&vault, args.pods, &args.timeout).await;
    let wall = started.elapsed();
    let report = herd::summarise(
        &outcomes,
        &vault.kv.accesses(),
        vault.kv.token_grants().len(),
        args.throttle,
    );
    print!("{report}");
    println!("wall_s={:.2}", wall.as_secs_f64());
    Ok(if report.failed == 0 && report.unresolved == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
