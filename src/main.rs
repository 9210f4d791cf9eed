//! `vision-node-daemon`: the node agent's entry point.
//!
//! Subcommands: `run` (the default) runs the daemon; `check-config FILE`
//! validates a configuration and prints the effective config; `simulate`
//! replays a synthetic workload through the real admission engine and prints
//! a report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vision_node_daemon::config::{self, EvictionPolicy};
use vision_node_daemon::{daemon, fleet, sim, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "vision-node-daemon",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s flags, so that `vision-node-daemon --dev` runs the daemon.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Config file (YAML; see config/example.yaml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Development mode: the embedded dev config (simulated GPUs) unless
    /// --config is given, state dir ./.vision-dev, and a dev token in
    /// <state>/dev-token for visionctl.
    #[arg(long)]
    dev: bool,
    /// Where the sockets and state live [default: /var/lib/vision-node-daemon; --dev: ./.vision-dev].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// kubelet's device-plugin directory [default: /var/lib/kubelet/device-plugins; --dev: <state>/device-plugins].
    #[arg(long, value_name = "DIR")]
    kubelet_dir: Option<PathBuf>,
    /// kubelet's PodResources socket [default: /var/lib/kubelet/pod-resources/kubelet.sock; --dev: <state>/pod-resources/kubelet.sock].
    #[arg(long, value_name = "PATH")]
    pod_resources_socket: Option<PathBuf>,
    /// Where the status page, /metrics, /healthz and /readyz are served
    /// [default: 0.0.0.0:9464; --dev: 127.0.0.1:9464, this machine only].
    #[arg(long, value_name = "ADDR")]
    http_addr: Option<SocketAddr>,
}

impl RunArgs {
    /// `--http-addr`, else loopback in dev mode and every interface outside.
    fn http_addr(&self) -> SocketAddr {
        match (self.http_addr, self.dev) {
            (Some(addr), _) => addr,
            (None, true) => DEV_HTTP_ADDR,
            (None, false) => DEFAULT_HTTP_ADDR,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default subcommand).
    Run(RunArgs),
    /// Validate a config file, print the effective config (exit 0) or every error (exit 1).
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
    /// Replay a synthetic workload through the real admission engine and
    /// report grants, rejections, waits, hit rate, fairness, and the load
    /// cost against offline bounds on the optimum.
    Simulate(SimulateArgs),
}

/// `simulate` flags: a scenario, and any of its values overridden.
#[derive(clap::Args, Debug)]
struct SimulateArgs {
    /// Config file for GPUs, catalog and admission settings (default: the embedded dev config).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The workload: `default` (a node about 70 % busy) or `overload`
    /// (about four times what the dev config's two L4s serve).
    #[arg(long, default_value = "default", value_parser = sim::Scenario::parse)]
    scenario: sim::Scenario,
    /// Seed of the workload: the same seed replays the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long arrivals continue (simulated time), e.g. `10m` [scenario: 10m; --fleet: 1h].
    #[arg(long, value_parser = duration_arg)]
    duration: Option<Duration>,
    /// Mean arrivals per second (Poisson) [default: 0.55, overload: 20; --fleet: 8 pods/s].
    #[arg(long)]
    rate: Option<f64>,
    /// Zipf exponent of model popularity, 0 = uniform [scenario: 1].
    #[arg(long)]
    zipf: Option<f64>,
    /// Fine-tuned variants per catalog model, same sizes and times [default: 2, overload: 8; --fleet: 16].
    #[arg(long)]
    variants: Option<u32>,
    /// Pods sending tasks [scenario: 16].
    #[arg(long)]
    pods: Option<u32>,
    /// Slots per pod, its concurrent leases [scenario: 4].
    #[arg(long)]
    slots: Option<u32>,
    /// How long an admission may wait (default: the config's default_timeout).
    #[arg(long, value_parser = duration_arg)]
    timeout: Option<Duration>,
    /// Mean GPU faults per hour, Poisson [scenario: 0].
    #[arg(long)]
    faults_per_hour: Option<f64>,
    /// How long a faulty GPU stays unhealthy [scenario: 30s].
    #[arg(long, value_parser = duration_arg)]
    fault_duration: Option<Duration>,
    /// Eviction policy: `lru` or `greedy-dual-size` (default: the config's).
    #[arg(long, value_parser = sim::parse_policy)]
    policy: Option<EvictionPolicy>,
    /// Also draw queue depth, hit rate and pool use per GPU over time, and
    /// how each model's requests ended, into this SVG file.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "fleet")]
    plot: Option<PathBuf>,
    /// Output format: a text report for people, or JSON for scripts (as
    /// visionctl's -o).
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Simulate a fleet of nodes, pods placed by kube-scheduler with or
    /// without the scheduler extender (--routing), instead of one node.
    #[arg(long, conflicts_with_all = ["pods", "slots", "faults_per_hour", "fault_duration"])]
    fleet: bool,
    #[command(flatten)]
    fleet_args: FleetArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

/// `simulate --fleet` flags; defaults match `fleet::Options::default()`.
#[derive(clap::Args, Debug)]
struct FleetArgs {
    /// Nodes in the fleet, each a real admission engine.
    #[arg(long, default_value_t = 100, requires = "fleet")]
    nodes: u32,
    /// GPUs per node, each the size of the config's first simulated GPU.
    #[arg(long, default_value_t = 4, requires = "fleet")]
    gpus_per_node: u32,
    /// How pods are placed: `spread` (kube-scheduler's default scoring) or
    /// `warm` (plus the extender's, fed by the published annotations).
    #[arg(long, default_value = "warm", value_parser = fleet::parse_routing, requires = "fleet")]
    routing: fleet::Routing,
    /// Mean tasks a pod runs before it leaves.
    #[arg(long, default_value_t = 20.0, requires = "fleet")]
    tasks_per_pod: f64,
    /// The first stretch of simulated time, left out of the measured figures.
    #[arg(long, default_value = "10m", value_parser = duration_arg, requires = "fleet")]
    warmup: Duration,
    /// The extender's weight in kube-scheduler's configuration.
    #[arg(long, default_value_t = fleet::DEFAULT_EXTENDER_WEIGHT, requires = "fleet")]
    extender_weight: i64,
}

fn duration_arg(s: &str) -> Result<Duration, config::duration::DurationError> {
    config::duration::parse(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Simulate(args)) => simulate(args),
    }
}

/// Runs the daemon until SIGTERM or SIGINT. A bad config exits non-zero
/// before any socket is bound.
fn run(args: RunArgs) -> ExitCode {
    let config = match (&args.config, args.dev) {
        (Some(file), _) => match config::load_file(file) {
            Ok(cfg) => cfg,
            Err(errors) => {
                eprint!("{errors}");
                return ExitCode::FAILURE;
            }
        },
        (None, true) => config::Config::dev(),
        (None, false) => {
            eprintln!(
                "vision-node-daemon: no config: pass --config FILE (see config/example.yaml), or --dev for simulated GPUs"
            );
            return ExitCode::FAILURE;
        }
    };
    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        PathBuf::from(if args.dev {
            DEV_STATE_DIR
        } else {
            DEFAULT_STATE_DIR
        })
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vision-node-daemon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let http_addr = args.http_addr();
    let mut kubelet = daemon::KubeletOptions::standard();
    if args.dev {
        kubelet.kubelet = daemon::KubeletPresence::AbsentInDev;
        kubelet.dir = state_dir.join("device-plugins");
        kubelet.pod_resources_socket = state_dir.join("pod-resources").join("kubelet.sock");
    }
    if let Some(dir) = args.kubelet_dir {
        kubelet.dir = dir;
    }
    if let Some(socket) = args.pod_resources_socket {
        kubelet.pod_resources_socket = socket;
    }
    let options = daemon::Options {
        config,
        state_dir,
        dev_token: args.dev,
        kubelet,
        http_addr: Some(http_addr),
        ready_needs_kubelet: !args.dev,
    };
    runtime.block_on(async move {
        // Inside the runtime: the OTLP exporter needs its reactor.
        let tracing =
            match telemetry::otel::init(&options.config.telemetry, &options.config.node_name) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("vision-node-daemon: cannot set up logging and tracing: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
        // Listen before starting: a SIGTERM that arrives while the daemon
        // starts is acted on once it has, not lost to the default action.
        let signals = Signals::listen();
        let daemon = match daemon::Daemon::start(options).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("cannot start: {e:#}");
                tracing.shutdown().await;
                return ExitCode::FAILURE;
            }
        };
        match signals {
            Ok(signals) => {
                let signal = signals.next().await;
                tracing::info!(signal, "signal received");
            }
            Err(e) => tracing::error!(error = %e, "cannot listen for signals; shutting down"),
        }
        daemon.shutdown().await;
        tracing.shutdown().await;
        ExitCode::SUCCESS
    })
}

const DEFAULT_STATE_DIR: &str = "/var/lib/vision-node-daemon";
const DEV_STATE_DIR: &str = "./.vision-dev";
/// In a cluster Prometheus scrapes the pod's IP; a dev daemon on a laptop
/// keeps its status page and metrics to the machine.
const DEFAULT_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 9464);
const DEV_HTTP_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// SIGTERM (kubelet stopping the pod) and SIGINT (Ctrl-C), caught from
/// the moment `listen` returns.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The first of them to arrive (since `listen`).
    async fn next(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match vision_node_daemon::config::load_file(file) {
        Ok(cfg) => {
            print!("{}", cfg.effective_yaml());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// A progress bar on stderr while a simulation runs, only when stderr is a
/// terminal and the run is long enough to wait for.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn start(options: &sim::Options) -> Progress {
        use std::io::IsTerminal;
        // Arrivals simulated in total; a short run finishes before a bar
        // could say anything.
        let arrivals = options.rate_per_s * options.duration.as_secs_f64();
        if !std::io::stderr().is_terminal() || arrivals < 100_000.0 {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(1000),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "simulating {wide_bar} {percent:>3}% of the arrivals, {elapsed} (about {eta} left)",
        ) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    fn set(&self, done: f64) {
        if let Some(bar) = &self.0 {
            bar.set_position((done * 1000.0) as u64);
        }
    }

    fn finish(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Writes the run's plot to `path`, titled with the run's flags.
fn write_plot(
    path: &std::path::Path,
    args: &SimulateArgs,
    report: &sim::Report,
) -> Result<(), String> {
    let by_model: Vec<sim::plot::ModelOutcomes> = report
        .by_model
        .iter()
        .map(|m| sim::plot::ModelOutcomes {
            model: m.name.clone(),
            granted_warm: m.warm,
            granted_cold: m.granted - m.warm,
            refused: m.requests - m.granted,
        })
        .collect();
    let title = format!(
        "simulate --seed {} --duration {} --rate {} (policy {})",
        args.seed,
        config::duration::format(report.options.duration),
        report.options.rate_per_s,
        match report.policy {
            EvictionPolicy::Lru => "lru",
            EvictionPolicy::GreedyDualSize => "greedy-dual-size",
        }
    );
    let svg = sim::plot::svg(&title, &report.timeline, &by_model).map_err(|e| e.to_string())?;
    std::fs::write(path, svg)
        .map_err(|e| format!("cannot write the plot to {}: {e}", path.display()))?;
    eprintln!("plot written to {}", path.display());
    Ok(())
}

/// A failed `simulate`: the message on stderr, or under `-o json` one JSON
/// object on stdout, as visionctl prints failures.
fn simulate_failed(output: Output, message: &str) -> ExitCode {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "error": { "code": "INVALID_ARGUMENT", "message": message.trim_end() }
            })
        ),
        Output::Table => eprintln!("simulate: {}", message.trim_end()),
    }
    ExitCode::FAILURE
}

fn simulate(args: SimulateArgs) -> ExitCode {
    let cfg = match &args.config {
        None => config::Config::dev(),
        Some(file) => match config::load_file(file) {
            Ok(cfg) => cfg,
            Err(errors) => return simulate_failed(args.output, &errors.to_string()),
        },
    };
    if args.fleet {
        return simulate_fleet(&cfg, &args);
    }
    let base = args.scenario.options();
    let options = sim::Options {
        seed: args.seed,
        duration: args.duration.unwrap_or(base.duration),
        rate_per_s: args.rate.unwrap_or(base.rate_per_s),
        zipf: args.zipf.unwrap_or(base.zipf),
        variants: args.variants.unwrap_or(base.variants),
        pods: args.pods.unwrap_or(base.pods),
        slots: args.slots.unwrap_or(base.slots),
        timeout: args.timeout.or(base.timeout),
        faults_per_hour: args.faults_per_hour.unwrap_or(base.faults_per_hour),
        fault_duration: args.fault_duration.unwrap_or(base.fault_duration),
        policy: args.policy.or(base.policy),
        ..base
    };
    let progress = Progress::start(&options);
    let result = sim::run_with_progress(&cfg, &options, &mut |done| progress.set(done));
    progress.finish();
    if let (Ok(report), Some(path)) = (&result, &args.plot)
        && let Err(e) = write_plot(path, &args, report)
    {
        return simulate_failed(args.output, &e);
    }
    match result {
        Ok(report) if args.output == Output::Json => {
            print!("{}", report.json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        Err(e) => simulate_failed(args.output, &e.to_string()),
    }
}

fn simulate_fleet(cfg: &config::Config, args: &SimulateArgs) -> ExitCode {
    let defaults = fleet::Options::default();
    let f = &args.fleet_args;
    let options = fleet::Options {
        seed: args.seed,
        duration: args.duration.unwrap_or(defaults.duration),
        warmup: f.warmup,
        rate_per_s: args.rate.unwrap_or(defaults.rate_per_s),
        zipf: args.zipf.unwrap_or(1.0),
        variants: args.variants.unwrap_or(defaults.variants),
        nodes: f.nodes,
        gpus_per_node: f.gpus_per_node,
        tasks_per_pod: f.tasks_per_pod,
        routing: f.routing,
        extender_weight: f.extender_weight,
        timeout: args.timeout,
        policy: args.policy,
    };
    let wall = std::time::Instant::now();
    match fleet::run(cfg, &options) {
        Ok(report) if args.output == Output::Json => {
            print!("{}", report.json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.text());
            println!("simulated in {:.2} s", wall.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => simulate_failed(args.output, &format!("--fleet: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn http_addr(args: &[&str]) -> String {
        let cli = super::Cli::try_parse_from(args).unwrap();
        cli.run.http_addr().to_string()
    }

    #[test]
    fn dev_mode_serves_http_on_loopback_only_unless_told_otherwise() {
        assert_eq!(http_addr(&["d", "--dev"]), "127.0.0.1:9464");
        assert_eq!(http_addr(&["d", "--config", "c.yaml"]), "0.0.0.0:9464");
        assert_eq!(
            http_addr(&["d", "--dev", "--http-addr", "0.0.0.0:9000"]),
            "0.0.0.0:9000"
        );
    }
}
