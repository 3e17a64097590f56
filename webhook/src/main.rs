//! `akv-env-webhook`: the binary edge. Parses flags, sets up logging, wires the parts, reports
//! errors and exits.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use akv_env_webhook::admission::Admitter;
use akv_env_webhook::cli::{
    Cli, Command, FloorArgs, InjectArgs, LogFormat, MigrateArgs, ServeArgs,
};
use akv_env_webhook::lookup::{Disabled, EntrypointSource, Registries};
use akv_env_webhook::metrics::Metrics;
use akv_env_webhook::namespaces::{KubeNamespaces, NamespaceSource, NoNamespaces};
use akv_env_webhook::server::{Server, Settings};
use akv_env_webhook::tls::CertStore;
use akv_registry::ImageResolver;
use anyhow::{Context, bail};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Reviews allocate many small short-lived objects (JSON trees, patches); mimalloc serves them
/// from per-thread pages. With glibc's or musl's malloc a third of a review's CPU went there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("akv-env-webhook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await,
            Command::Inject(args) => inject(*args).await,
            Command::Migrate(args) => migrate(args),
            Command::Floor(args) => floor(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("akv-env-webhook: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let (certs, first) = CertStore::new(args.tls_cert.clone(), args.tls_key.clone());
    if let Err(error) = first {
        // cert-manager may issue the certificate after the pod starts: not ready until it has.
        tracing::error!(%error, "no serving certificate yet; not ready until it can be loaded");
    }
    let kube = match kube::Client::try_default().await {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::warn!(%error, "no Kubernetes API access: namespace annotations and imagePullSecrets will not be read");
            None
        }
    };
    let entrypoints: Arc<dyn EntrypointSource> = if args.image_lookup {
        let mut options = args.registry.options().map_err(anyhow::Error::msg)?;
        options.acr = acr(&args)?;
        let resolver = ImageResolver::new(options);
        Arc::new(Registries::new(resolver, kube.clone()))
    } else {
        Arc::new(Disabled {
            reason: "this webhook does not read images (--image-lookup=false)".to_owned(),
        })
    };
    let namespaces: Arc<dyn NamespaceSource> = match kube {
        Some(client) => Arc::new(KubeNamespaces::new(
            client,
            args.namespace_cache_ttl,
            args.namespace_selector.clone(),
        )),
        None => Arc::new(NoNamespaces),
    };
    let admitter = Arc::new(Admitter {
        config: args.mutation.config(),
        entrypoints: entrypoints.clone(),
        namespaces,
        metrics: Arc::new(Metrics::new(entrypoints)),
        timeout: args.admission_timeout,
    });
    let settings = Settings {
        listen: args.listen,
        health_listen: args.health_listen,
        body_limit: args.body_limit,
        cert_reload_interval: args.cert_reload_interval,
        shutdown_grace: args.shutdown_grace,
        limits: args.limits.limits(),
    };
    let server = Server::start(settings, admitter, certs).await?;
    wait_for_signal().await?;
    tracing::info!("signal received; finishing in-flight reviews");
    server.stop();
    server.wait().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// ACR credentials from the webhook's own identity, if one is configured.
fn acr(args: &ServeArgs) -> anyhow::Result<Option<akv_registry::AcrAuth>> {
    let ca = match &args.acr.acr_ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let proxy = akv_env_webhook::acr::proxy_from_env()?;
    let http = akv_env_webhook::acr::http_client(ca.as_deref(), proxy.as_ref())?
        .build()
        .context("cannot build the HTTPS client for ACR")?;
    let auth = akv_env_webhook::acr::acr_auth(&args.acr.settings(), http)?;
    match &auth {
        Some(_) => {
            tracing::info!(identity = ?args.acr.acr_identity, "ACR lookups use the webhook's Entra identity")
        }
        None => tracing::info!("no Entra identity for ACR: pull secrets and anonymous access only"),
    }
    Ok(auth)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The manifest file, or standard input for `-`.
fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// `migrate`: rewritten manifests on stdout, what could not be converted on stderr.
fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.file)?;
    let migrated = akv_env_webhook::migrate::migrate(&input).map_err(anyhow::Error::msg)?;
    print!("{}", migrated.yaml);
    for note in &migrated.notes {
        eprintln!("not converted: {note}");
    }
    eprintln!(
        "akv-env-webhook migrate: {} placeholder(s) rewritten, {} thing(s) not converted",
        migrated.converted,
        migrated.notes.len()
    );
    Ok(if migrated.notes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn inject(args: InjectArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.file)?;
    if args.check {
        return Ok(check(&input, &args));
    }
    let source: Box<dyn EntrypointSource> = if args.image_lookup {
        Box::new(Registries::new(
            ImageResolver::new(args.registry.options().map_err(anyhow::Error::msg)?),
            None,
        ))
    } else {
        Box::new(Disabled {
            reason: "image lookups are off; pass --image-lookup to read it from the registry"
                .to_owned(),
        })
    };
    let config = args.config();
    match akv_env_webhook::inject::inject(
        &input,
        &config,
        args.namespace_vault.as_deref(),
        source.as_ref(),
    )
    .await
    {
        Ok(injected) => {
            for warning in &injected.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", injected.yaml);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("error: {problem}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `inject --check`: findings on stdout, problems on stderr; 1 for problems, else 2 for
/// unwrapped containers, else 0.
fn check(input: &str, args: &InjectArgs) -> ExitCode {
    let report = akv_env_webhook::inject::check(input, &args.check_options());
    for problem in &report.problems {
        eprintln!("error: {problem}");
    }
    for namespace in &report.assumed_enabled {
        eprintln!(
            "note: namespace {namespace:?} has no Namespace document in the input and \
             --enabled-namespace was not given: assumed enabled"
        );
    }
    for finding in &report.unwrapped {
        println!("{finding}");
    }
    let summary = format!(
        "{} pod template(s), {} container(s) with placeholders",
        report.templates, report.with_placeholders
    );
    if !report.problems.is_empty() {
        println!(
            "akv-env check: FAILED: {summary}, {} unwrapped, {} problem(s)",
            report.unwrapped.len(),
            report.problems.len()
        );
        ExitCode::FAILURE
    } else if !report.unwrapped.is_empty() {
        println!(
            "akv-env check: FAILED: {summary}, {} would start with unwrapped placeholders",
            report.unwrapped.len()
        );
        ExitCode::from(2)
    } else {
        println!("akv-env check: ok: {summary}, all wrapped at admission");
        ExitCode::SUCCESS
    }
}

async fn floor(args: FloorArgs) -> anyhow::Result<ExitCode> {
    let (certs, first) = CertStore::new(args.tls_cert, args.tls_key);
    if let Err(error) = first {
        bail!(error);
    }
    let settings = Settings {
        listen: args.listen,
        health_listen: "127.0.0.1:0".parse().expect("a socket address"),
        body_limit: 3 * 1024 * 1024,
        cert_reload_interval: Duration::from_secs(3600),
        shutdown_grace: Duration::from_secs(5),
        limits: akv_env_webhook::limits::Limits::default(),
    };
    let server = Server::floor(settings, certs).await?;
    wait_for_signal().await?;
    server.stop();
    server.wait().await;
    Ok(ExitCode::SUCCESS)
}
