//! The in-pod injector: resolve Key Vault placeholders in memory, then exec the program.
//!
//! This file is the binary's edge: it reads the command line and the environment once, wires
//! the pure parts (`envp`, `exec`) to the Key Vault library, and reports with `anyhow`.

mod alloc;
mod compose;
mod envp;
mod exec;
mod install;
mod proxy;
mod rotation;
mod settings;
mod supervise;
mod termination;

use akv_keyvault::{AuthConfig, FetchOptions, Resolver, Secret};
use akv_placeholder::Vault;
use clap::{Parser, Subcommand};
use std::{
    ffi::{OsStr, OsString},
    os::unix::ffi::OsStrExt as _,
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};
use zeroize::Zeroizing;

/// Freed small blocks are kept for reuse instead of going back to the kernel (see `alloc`).
#[global_allocator]
static ALLOCATOR: alloc::Caching = alloc::Caching::new();

const ABOUT: &str = "Resolve Azure Key Vault placeholders in the environment, then exec a program.";

const LONG_ABOUT: &str = "\
Resolve Azure Key Vault placeholders in the environment, then exec a program.

Every environment variable whose value looks like
    NAME@azurekeyvault[?vault=V&version=HEX&type=secret|certificate|key&key=FIELD&encoding=base64&part=cert|key|pem]
is fetched from Key Vault (concurrently, once per distinct object) and replaced by its value in
memory; then PROGRAM replaces akv-env (same PID, its own exit code and signals). If any
placeholder cannot be resolved, akv-env prints one line per failing variable to stderr (and to
the termination message file, which `kubectl describe pod` shows) and exits 1 without running
PROGRAM. With no placeholders it execs at once, without touching the network.

Identity (the pod's own): workload identity if AZURE_FEDERATED_TOKEN_FILE is set (with
AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST), else a service principal if
AZURE_CLIENT_SECRET is set, else none: exit 1 before any connection. Managed identity (IMDS, or
IDENTITY_ENDPOINT/IDENTITY_HEADER; AZURE_CLIENT_ID picks a user-assigned one) only with
--auth managed-identity.

Settings that decide where the token goes (--auth, --ca-file, --resolve, --authority-host,
--vault-host-suffix, --cloud) are flags only: the webhook derives them from the admitted pod
spec, and the environment, which ConfigMaps can feed, never sets them (AKV_ENV_AUTH,
AKV_ENV_CA_FILE and AKV_ENV_RESOLVE in the environment are ignored). Vaults are Key Vault or Managed HSM hosts
(vault.azure.net, vault.azure.cn, vault.usgovcloudapi.net, managedhsm.*) on port 443.

Egress proxy: HTTPS_PROXY and NO_PROXY (upper case first, then https_proxy / no_proxy; NO_PROXY
takes host names, .suffixes, IP addresses, CIDR ranges and *), as AKS' HTTP proxy feature sets
them. HTTPS to Key Vault and Entra ID goes through it as a CONNECT tunnel, TLS end to end, so
the proxy never sees a token or a value; user:pass in the URL is sent as Basic
Proxy-Authorization and never logged. Plain HTTP (the managed identity endpoint) never uses a
proxy, so HTTP_PROXY has no effect.";

const AFTER_HELP: &str = "\
Examples:
  akv-env -- /app/server --port 8080     run a program with its placeholders resolved
  akv-env install /install               copy this binary into a shared volume (init container)

Values never appear in logs, errors, argv or files.";

#[derive(Parser)]
#[command(name = "akv-env", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
#[command(args_conflicts_with_subcommands = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    settings: Settings,

    /// The program to run and its arguments (after `--`); found on the resolved PATH.
    #[arg(last = true, value_name = "PROGRAM [ARGS]")]
    program: Vec<OsString>,
}

#[derive(Subcommand)]
enum Command {
    /// Copy this executable to DIR/akv-env (mode 0755, atomic rename); for the init container.
    Install {
        /// Target directory, e.g. the shared emptyDir volume.
        dir: PathBuf,
        /// PEM of the cluster's CA bundle, written to DIR/ca-bundle.pem (the webhook sets it on
        /// the init container it adds; wrapped containers get --ca-file pointing there).
        #[arg(
            long,
            env = "AKV_ENV_CA_BUNDLE",
            hide_env_values = true,
            value_name = "PEM"
        )]
        ca_bundle: Option<String>,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct Settings {
    /// Vault for placeholders without `vault=`: a name (myvault) or a URL (https://myvault.vault.azure.cn).
    #[arg(long, env = "AKV_ENV_DEFAULT_VAULT", value_name = "VAULT")]
    default_vault: Option<String>,

    /// Give up after this long overall, in Go's syntax: "60s", "1500ms", "2m", "1m30s".
    #[arg(long, env = "AKV_ENV_TIMEOUT", default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    timeout: Duration,

    /// File for the failure lines besides stderr, written if it exists: the container's
    /// `terminationMessagePath` (the webhook passes one other than the default), which the
    /// kubelet shows in `kubectl describe pod`.
    #[arg(long, value_name = "FILE", default_value = termination::DEFAULT_PATH)]
    termination_message_path: PathBuf,

    /// Log filter (tracing syntax: "warn", "debug", "akv_keyvault=trace"); logs go to stderr.
    #[arg(
        long,
        env = "AKV_ENV_LOG",
        default_value = "warn",
        value_name = "FILTER"
    )]
    log: String,

    #[command(flatten)]
    rotation: rotation::Flags,

    #[command(flatten)]
    compose: compose::ComposeFlags,

    #[command(flatten)]
    trust: settings::Trust,
}

/// The overall deadline, in Go's duration grammar (shared with the webhook and the chart):
/// more than 0 and at most 24h. Pure; tested below.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = akv_duration::parse(text).map_err(|e| e.to_string())?;
    if duration.is_zero() || duration > Duration::from_secs(86_400) {
        return Err(format!(
            "{:?}: must be more than 0 and at most 24h",
            text.trim()
        ));
    }
    Ok(duration)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("akv-env {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Install { dir, ca_bundle }) => match std::env::current_exe()
            .map_err(anyhow::Error::from)
            .and_then(|exe| install::install(&exe, &dir))
            .and_then(|installed| {
                let bundle = ca_bundle.filter(|pem| !pem.is_empty());
                let bundle = bundle
                    .map(|pem| install::write_ca_bundle(&dir, pem.as_bytes()))
                    .transpose()?;
                Ok((installed, bundle))
            }) {
            Ok(((target, bytes), bundle)) => {
                println!("akv-env: installed {} ({bytes} bytes)", target.display());
                if let Some(bundle) = bundle {
                    println!(
                        "akv-env: wrote the cluster CA bundle to {}",
                        bundle.display()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("akv-env: install: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => run(cli.settings, cli.program),
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("akv-env: AKV_ENV_LOG: {e}; using \"warn\"");
        tracing_subscriber::EnvFilter::new("warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Reads an env var that must be UTF-8 to be useful (ids, URLs); non-UTF-8 counts as unset.
fn var(env: &[(OsString, OsString)], name: &str) -> Option<String> {
    env.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.to_str())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn run(settings: Settings, program: Vec<OsString>) -> ExitCode {
    if program.is_empty() {
        eprintln!("akv-env: no program given; usage: akv-env -- PROGRAM [ARGS...]");
        return ExitCode::from(2);
    }
    init_logging(&settings.log);
    let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if let Some(every) = settings.rotation.supervise_every() {
        let flags = settings.rotation.clone();
        return supervise::run(&flags, every, move || {
            let (resolver, _) = build_resolver(&settings, &env)?;
            Ok((resolver, blame(&settings, &env)?))
        });
    }
    if let Some(fd) = settings.rotation.report_fd
        && let Err(e) = supervise::claim_report_fd(fd)
    {
        eprintln!("akv-env: {e}");
        return ExitCode::from(2);
    }
    let found = envp::find_placeholders(&env);
    let failures = termination::Report::new(Some(settings.termination_message_path.clone()));

    let mut report = Vec::new();
    let resolved: Vec<(usize, Secret)> = if found.is_empty() {
        tracing::debug!("no placeholders; exec without contacting Key Vault");
        Vec::new()
    } else {
        // Nobody (not even the same uid) may ptrace us or read our memory from now on.
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(error = %e, "could not mark the process non-dumpable");
        }
        match resolve(&settings, &env, found, &mut report, &failures) {
            Ok(r) => r,
            Err(code) => return code,
        }
    };

    // `$(VAR)` templates the webhook left, captures removed, and the last check for raw
    // placeholder text, before anything is handed to the program.
    let composed = match compose::apply(&settings.compose, &env, resolved, &program) {
        Ok(c) => c,
        Err(e) => {
            failures.fail(&[e.to_string()]);
            return ExitCode::FAILURE;
        }
    };
    let program_name = OsStr::from_bytes(composed.argv.as_slice()[0].as_bytes()).to_owned();
    let path = envp::path_of(&composed.env, &composed.resolved).map(|p| p.to_owned());
    let envp = match envp::build_envp(&composed.env, &composed.resolved) {
        Ok(e) => e,
        Err((i, _)) => {
            failures.fail(&[format!(
                "{}: the resolved value contains a NUL byte, which an environment variable cannot hold",
                composed.env[i].0.to_string_lossy()
            )]);
            return ExitCode::FAILURE;
        }
    };
    let argv = composed.argv;
    drop(composed.resolved);
    if let Some(fd) = settings.rotation.report_fd {
        supervise::write_report(fd, &report);
    }
    let failure = exec::exec(
        &program_name,
        path.as_deref(),
        argv.as_slice(),
        envp.as_slice(),
    );
    drop(envp);
    drop(argv);
    if settings.compose.args.contains(&0) {
        // The program's path was composed from a secret: the message would quote it.
        failures.fail(&[
            "the program (argument 0, composed with `$(VAR)`) could not be run".to_owned(),
        ]);
    } else {
        failures.fail(std::slice::from_ref(&failure.message));
    }
    ExitCode::from(failure.status as u8)
}

/// Fetches every placeholder; on any failure prints one line per failing variable.
/// The pod identity's Key Vault client and the default vault, from the settings and env.
/// What names the proxy in failures it may have caused (see `proxy::Blame`).
fn blame(settings: &Settings, env: &[(OsString, OsString)]) -> Result<proxy::Blame, String> {
    Ok(proxy::Blame::new(
        proxy::from_env(env)?,
        settings
            .trust
            .authority(var(env, "AZURE_AUTHORITY_HOST").as_deref())
            .ok()
            .flatten()
            .as_deref(),
        settings.trust.auth == Some(akv_keyvault::AuthMode::ManagedIdentity),
    ))
}

fn build_resolver(
    settings: &Settings,
    env: &[(OsString, OsString)],
) -> Result<(Resolver, Option<Vault>), String> {
    let trust = &settings.trust;
    for warning in trust.ignored_env(env) {
        tracing::warn!("{warning}");
    }
    let default_vault =
        match settings.default_vault.as_deref().filter(|s| !s.is_empty()) {
            Some(v) => Some(trust.vault_in_cloud(
                Vault::parse(v).map_err(|e| format!("AKV_ENV_DEFAULT_VAULT: {e}"))?,
            )),
            None => None,
        };
    let auth = AuthConfig {
        forced: trust.auth,
        tenant_id: var(env, "AZURE_TENANT_ID"),
        client_id: var(env, "AZURE_CLIENT_ID"),
        federated_token_file: var(env, "AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
        client_secret: var(env, "AZURE_CLIENT_SECRET").map(Zeroizing::new),
        authority_host: trust
            .authority(var(env, "AZURE_AUTHORITY_HOST").as_deref())
            .map_err(|e| e.to_string())?,
    };
    // Before any connection: no identity, a bad map or a bad policy stops here.
    auth.choose().map_err(|e| e.to_string())?;
    let mut transport = trust.transport().map_err(|e| e.to_string())?;
    transport.proxy = proxy::from_env(env)?;
    let hosts = trust.vault_hosts().map_err(|e| e.to_string())?;
    let resolver = Resolver::new(&auth, &transport, &hosts, FetchOptions::default())
        .map_err(|e| e.to_string())?;
    Ok((resolver, default_vault))
}

/// Fetches every placeholder; on any failure reports one line per failing variable to
/// `failures` (stderr and the termination message file). `report` gets which object version
/// each value came from (identifiers only).
fn resolve(
    settings: &Settings,
    env: &[(OsString, OsString)],
    found: Vec<envp::Found>,
    report: &mut Vec<supervise::ReportLine>,
    failures: &termination::Report,
) -> Result<Vec<(usize, Secret)>, ExitCode> {
    let fail = |msg: String| {
        failures.fail(&[msg]);
        ExitCode::FAILURE
    };

    // Malformed placeholders fail like unresolvable ones, but we still report all of them.
    let mut lines = Vec::new();
    let mut wanted = Vec::new();
    for f in found {
        match f.reference {
            Ok(r) => wanted.push((f.index, f.name, r)),
            Err(e) => lines.push(format!("{}: {e}", f.name.to_string_lossy())),
        }
    }
    let mut resolved = Vec::with_capacity(wanted.len());
    if !wanted.is_empty() {
        let (resolver, default_vault) = build_resolver(settings, env).map_err(fail)?;
        let blame = blame(settings, env).map_err(fail)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
        let refs: Vec<_> = wanted
            .iter()
            .map(|(_, _, r)| settings.trust.in_cloud(r))
            .collect();
        let results = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + settings.timeout;
            resolver
                .resolve_all_tracked(&refs, default_vault.as_ref(), deadline)
                .await
        });
        drop(resolver);
        drop(runtime);
        for ((index, name, _), result) in wanted.into_iter().zip(results) {
            match result {
                Ok((secret, object)) => {
                    report.push(supervise::ReportLine {
                        var: name.to_string_lossy().into_owned(),
                        object,
                    });
                    resolved.push((index, secret));
                }
                Err(e) => lines.push(format!("{}: {}", name.to_string_lossy(), blame.annotate(e))),
            }
        }
    }
    if lines.is_empty() {
        Ok(resolved)
    } else {
        failures.fail(&lines);
        Err(ExitCode::FAILURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn parses_durations() {
        let ok = [
            ("60s", 60_000),
            ("1500ms", 1500),
            ("2m", 120_000),
            ("1m30s", 90_000),
            ("1.5m", 90_000),
            (" 0.5s ", 500),
            ("24h", 86_400_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        let bad = [
            ("", "not a duration"),
            ("abc", "not a duration"),
            ("90", "has no unit; write e.g. 90s"),
            ("5d", "unknown unit \"d\""),
            ("0", "more than 0"),
            ("0s", "more than 0"),
            ("25h", "at most 24h"),
            ("-1s", "negative"),
        ];
        for (text, want) in bad {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn cli_is_consistent_and_help_names_every_setting() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for var in [
            "AKV_ENV_DEFAULT_VAULT",
            "AKV_ENV_TIMEOUT",
            "AKV_ENV_LOG",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_CLIENT_SECRET",
            "--auth",
            "--ca-file",
            "--resolve",
            "--authority-host",
            "--vault-host-suffix",
            "--cloud",
            "HTTPS_PROXY",
            "NO_PROXY",
            "install",
        ] {
            assert!(help.contains(var), "--help does not mention {var}");
        }
    }

    #[test]
    fn trust_settings_have_no_environment_fallback() {
        let cmd = Cli::command();
        for flag in [
            "auth",
            "ca_file",
            "resolve",
            "authority_host",
            "vault_host_suffixes",
            "cloud",
        ] {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_id() == flag)
                .unwrap_or_else(|| panic!("no --{flag}"));
            assert_eq!(
                arg.get_env(),
                None,
                "--{flag} must not read the environment"
            );
        }
    }
}
