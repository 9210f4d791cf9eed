//! `vision-scheduler-extender`: the kube-scheduler HTTP extender that sends
//! pods to nodes where their models are warm (see `vision_node_daemon::extender`).
//!
//! `vision-scheduler-extender --listen ADDR [--config FILE]` serves
//! `/filter`, `/prioritize`, `/healthz`, `/readyz` and `/metrics` until
//! SIGTERM. The config file is the daemons' own (the chart mounts the same
//! ConfigMap): the extender reads its `domain`, `gpus.reserve_mib` and
//! `models`, and validates all of it as `vision-node-daemon check-config`
//! does. `check-config FILE` prints what the extender would use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use vision_node_daemon::config::{self, Config};
use vision_node_daemon::extender::{self, Extender, NodeCacheMode, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "vision-scheduler-extender",
    version,
    about = "kube-scheduler HTTP extender: scores nodes by the models the vision-node-daemons keep warm",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file (the daemons' schema) and print what the extender uses from it.
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Where to serve /filter, /prioritize, /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// The daemons' config file: domain, gpus.reserve_mib and the model
    /// catalog come from it [default: the embedded dev config].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where node views come from for nodeCacheCapable: true requests:
    /// `watch` (a metadata-only watch of Nodes; needs the Kubernetes API) or
    /// `off` (only nodeCacheCapable: false requests are answered).
    #[arg(long, value_enum, default_value = "watch")]
    node_cache: CacheArg,
    /// Residency annotations stamped longer ago count as unknown (the
    /// daemons re-stamp every 60 s), e.g. `3m`.
    #[arg(long, default_value = "3m", value_parser = duration_arg)]
    max_age: Duration,
    /// Largest request body accepted (bytes); larger ones get a 413.
    #[arg(long, default_value_t = extender::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CacheArg {
    Watch,
    Off,
}

fn duration_arg(s: &str) -> Result<Duration, config::duration::DurationError> {
    config::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        None => run(cli.run),
    }
}

fn load(file: Option<&Path>) -> Result<Config, ExitCode> {
    match file {
        None => Ok(Config::dev()),
        Some(file) => config::load_shared_file(file).map_err(|errors| {
            eprint!("{errors}");
            ExitCode::FAILURE
        }),
    }
}

fn check_config(file: &Path) -> ExitCode {
    let cfg = match load(Some(file)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("# vision-scheduler-extender reads from {}:", file.display());
    println!("domain: {}", cfg.domain);
    println!("pod annotation: {}/models", cfg.domain);
    println!("gpus.reserve_mib: {}", cfg.gpus.reserve_mib);
    println!("models:");
    for m in &cfg.models {
        println!(
            "  - {}: needs {} MiB on one GPU ({} weights + {} working)",
            m.name,
            m.weights_mib + m.working_mib,
            m.weights_mib,
            m.working_mib
        );
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    let Some(listen) = args.listen else {
        eprintln!(
            "vision-scheduler-extender: --listen ADDR is required (e.g. --listen 0.0.0.0:8888)"
        );
        return ExitCode::FAILURE;
    };
    let cfg = match load(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = Settings {
        max_age: args.max_age,
        max_body_bytes: args.max_body_bytes,
        node_cache: match args.node_cache {
            CacheArg::Watch => NodeCacheMode::Watch,
            CacheArg::Off => NodeCacheMode::Off,
        },
        ..Settings::from_config(&cfg)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vision-scheduler-extender: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(listen, settings))
}

async fn serve(listen: SocketAddr, settings: Settings) -> ExitCode {
    let extender = Arc::new(Extender::new(&settings));
    let watch = match settings.node_cache {
        NodeCacheMode::Off => None,
        NodeCacheMode::Watch => match kube::Client::try_default().await {
            Ok(client) => Some(tokio::spawn(Arc::clone(&extender).watch_nodes(client))),
            Err(e) => {
                tracing::error!(error = %e,
                    "--node-cache watch needs the Kubernetes API (in a pod, or KUBECONFIG); use --node-cache off to answer nodeCacheCapable: false requests only");
                return ExitCode::FAILURE;
            }
        },
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = match extender::http::serve(listen, Arc::clone(&extender), async move {
        let _ = rx.await;
    })
    .await
    {
        Ok((addr, handle)) => {
            tracing::info!(%addr, domain = %settings.domain, models = settings.models.len(),
                node_cache = ?settings.node_cache, max_age_s = settings.max_age.as_secs(),
                "vision-scheduler-extender serving");
            handle
        }
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            if let Some(w) = watch {
                w.abort();
            }
            return ExitCode::FAILURE;
        }
    };
    let mut server = server;
    let served = tokio::select! {
        signal = wait_for_signal() => {
            match signal {
                Ok(signal) => tracing::info!(signal, "signal received; finishing calls in flight"),
                Err(e) => tracing::error!(error = %e, "cannot listen for signals; shutting down"),
            }
            let _ = tx.send(());
            server.await
        }
        early = &mut server => early,
    };
    if let Some(w) = watch {
        w.abort();
    }
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "HTTP server failed");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "HTTP server task failed");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (kubelet stopping the pod) or SIGINT (Ctrl-C).
async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
