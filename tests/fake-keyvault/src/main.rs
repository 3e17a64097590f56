//! `fake-keyvault`: runs the local Key Vault and token service for scripts outside the Rust tests.
//! Prints `key=value` lines on stdout when ready; logs (never secret values) go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use fake_keyvault::relay::DelayRelay;
use fake_keyvault::{FakeKeyVault, Options, Seed, Throttle, check_rate};

/// A local Azure Key Vault and Microsoft Entra token service for tests.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// HTTPS address: vault data plane for `<vault>.vault.azure.net`, token service for other hosts.
    #[arg(long, env = "FAKE_KEYVAULT_LISTEN", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Plain-HTTP address of the managed-identity endpoints (IMDS and App Service style).
    #[arg(long, env = "FAKE_KEYVAULT_HTTP_LISTEN", default_value = "127.0.0.1:0")]
    http_listen: SocketAddr,
    /// Seed file (YAML or JSON): identities, vaults, secrets, certificates, keys, access policies.
    #[arg(long, env = "FAKE_KEYVAULT_SECRETS")]
    secrets: PathBuf,
    /// Where to write the CA certificate (PEM) clients must trust.
    #[arg(long, env = "FAKE_KEYVAULT_CA_OUT")]
    ca_out: PathBuf,
    /// Throttle GETs per vault as N/SECONDS, e.g. 4000/10 (Key Vault's limit for secret GETs).
    #[arg(long, env = "FAKE_KEYVAULT_THROTTLE", value_parser = Throttle::parse)]
    throttle: Option<Throttle>,
    /// Milliseconds added to every vault response.
    #[arg(long, env = "FAKE_KEYVAULT_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Share (0 to 1) of vault requests answered 500.
    #[arg(long, env = "FAKE_KEYVAULT_ERROR_RATE", default_value_t = 0.0, value_parser = |s: &str| rate("--error-rate", s))]
    error_rate: f64,
    /// Share (0 to 1) of vault requests whose connection is dropped unanswered.
    #[arg(long, env = "FAKE_KEYVAULT_DROP_RATE", default_value_t = 0.0, value_parser = |s: &str| rate("--drop-rate", s))]
    drop_rate: f64,
    /// Offer only http/1.1 in TLS ALPN (by default h2 and http/1.1, like Key Vault).
    #[arg(long, env = "FAKE_KEYVAULT_HTTP1_ONLY")]
    http1_only: bool,
    /// Round-trip time added by a relay in front of the HTTPS port (TCP and TLS handshakes pay
    /// it too); `https_addr` is then the relay's. For benchmarks: netem is missing here.
    #[arg(long, env = "FAKE_KEYVAULT_RTT_MS", default_value_t = 0)]
    rtt_ms: u64,
    /// On SIGUSR1, append one line of round-trip facts since the last one to this file
    /// (connections, protocols, requests, tokens) and start counting afresh.
    #[arg(long, env = "FAKE_KEYVAULT_RECORD_OUT")]
    record_out: Option<PathBuf>,
}

fn rate(knob: &str, text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{knob} `{text}` is not a number"))?;
    check_rate(knob, value)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let seed = Seed::from_file(&args.secrets)
        .with_context(|| format!("--secrets {}", args.secrets.display()))?;
    let vaults: Vec<String> = seed.vaults.keys().cloned().collect();
    let opts = Options {
        seed,
        throttle: args.throttle,
        latency: Duration::from_millis(args.latency_ms),
        error_rate: args.error_rate,
        drop_rate: args.drop_rate,
        http1_only: args.http1_only,
    };
    let (kv, relay) = if args.rtt_ms > 0 {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let kv = FakeKeyVault::start_on(any, args.http_listen, opts).await?;
        let rtt = Duration::from_millis(args.rtt_ms);
        let relay = DelayRelay::start(args.listen, kv.https_addr(), rtt)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        (kv, Some(relay))
    } else {
        (
            FakeKeyVault::start_on(args.listen, args.http_listen, opts).await?,
            None,
        )
    };
    let https_addr = relay.as_ref().map_or(kv.https_addr(), DelayRelay::addr);
    std::fs::write(&args.ca_out, kv.ca_pem())
        .with_context(|| format!("--ca-out {}", args.ca_out.display()))?;

    let mut ready = String::new();
    for vault in &vaults {
        ready.push_str(&format!("vault_url={}\n", kv.vault_url(vault)));
    }
    ready.push_str(&format!("https_addr={https_addr}\n"));
    ready.push_str(&format!("http_addr={}\n", kv.http_addr()));
    ready.push_str(&format!("tenant={}\n", kv.tenant()));
    ready.push_str(&format!("authority_host={}\n", kv.authority_host()));
    ready.push_str(&format!("token_url={}\n", kv.token_url()));
    ready.push_str(&format!(
        "imds_url=http://{}/metadata/identity/oauth2/token\n",
        kv.http_addr()
    ));
    ready.push_str(&format!(
        "identity_endpoint=http://{}/msi/token\n",
        kv.http_addr()
    ));
    ready.push_str(&format!("identity_header={}\n", kv.identity_header()));
    ready.push_str(&format!("ca={}\n", args.ca_out.display()));
    print!("{ready}");
    use std::io::Write as _;
    std::io::stdout().flush()?;

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); break; }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = usr1.recv() => {
                let Some(path) = &args.record_out else { continue };
                let line = format!("{}\n", kv.summary());
                kv.take_records();
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)
                    .with_context(|| format!("--record-out {}", path.display()))?;
                f.write_all(line.as_bytes())?;
            }
        }
    }
    drop(relay);
    drop(kv);
    Ok(())
}
