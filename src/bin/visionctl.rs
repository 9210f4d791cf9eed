//! `visionctl`: the operator's and scripts' client of vision-node-daemon.
//!
//! Where it connects: `--socket PATH`; else `$VISION_SOCKET` (set in pods by
//! Allocate); else, under `--state-dir` (default `/var/lib/vision-node-daemon`,
//! `--dev` = `./.vision-dev`), the admin socket for operator commands and the
//! task socket for admit / release / keepalive. `fault` (simulated GPUs
//! only) is an operator command on the admin socket. Token: `--token`, then
//! `$VISION_TOKEN`, then the state dir's `dev-token`.
//!
//! # Output
//! One name per thing: `lease 7`, `GPU 1` (the UUID where it matters), gRPC
//! status codes spelt as gRPC spells them (`NOT_FOUND`). `-o json` turns
//! every answer into one JSON document on stdout, errors included
//! (`{"error": {"code": "NOT_FOUND", "message": …}}`, exit status 1); `watch`
//! prints one JSON object per line. A spinner shows on stderr while a call
//! waits, only when stderr is a terminal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tonic::transport::Channel;
use vision_node_daemon::config::duration;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

use pb::admission_client::AdmissionClient;

#[path = "visionctl/output.rs"]
mod output;
#[path = "visionctl/render.rs"]
mod render;
#[path = "visionctl/spinner.rs"]
mod spinner;

use output::Failure;

#[derive(Parser, Debug)]
#[command(
    name = "visionctl",
    version,
    about = "Inspect and drive vision-node-daemon over its Unix sockets"
)]
struct Cli {
    /// Socket to use (overrides $VISION_SOCKET and --state-dir).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The daemon's state directory [default: /var/lib/vision-node-daemon].
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Use the dev daemon's state directory (./.vision-dev).
    #[arg(long, global = true)]
    dev: bool,
    /// Allocation token (default: $VISION_TOKEN, then <state>/dev-token).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Output format: tables for people, JSON for scripts (errors too).
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// GPUs, pool use, resident models, queue and leases.
    Status,
    /// The model catalog and the GPUs each model is resident on.
    Models,
    /// Ask for a lease for one task of MODEL; prints the lease.
    Admit {
        /// A model of the catalog (see `visionctl models`).
        model: String,
        /// Higher runs first; equal priorities run in arrival order.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// How long to wait for a slot, GPU memory or a load (e.g. 5s, 500ms).
        /// 0 = never queue: RESOURCE_EXHAUSTED at once when no slot or memory
        /// is free (a cold model still loads first). Default: the daemon's.
        #[arg(long, value_name = "DURATION", value_parser = timeout_arg)]
        timeout: Option<Duration>,
        /// The kind of task (e.g. detect, embed); must be one the model
        /// serves when the catalog lists its task types.
        #[arg(long, value_name = "TYPE")]
        task_type: Option<String>,
    },
    /// End a lease: its working memory returns to the pool.
    Release {
        /// The lease's number, as `admit` printed it.
        lease: u64,
    },
    /// Extend a lease by its TTL.
    Keepalive {
        /// The lease's number, as `admit` printed it.
        lease: u64,
    },
    /// Load MODEL ahead of demand (waits until it is loaded).
    Preload {
        /// A model of the catalog.
        model: String,
        /// The GPU: its index (0, 1, …) or UUID. Default: the GPU needing
        /// the fewest evictions.
        #[arg(long)]
        gpu: Option<String>,
    },
    /// Unload idle copies of MODEL.
    Evict {
        /// A model of the catalog.
        model: String,
        /// Only the copy on this GPU: its index (0, 1, …) or UUID. Default:
        /// every idle copy.
        #[arg(long)]
        gpu: Option<String>,
    },
    /// Stream state changes until interrupted.
    Watch,
    /// Simulated GPUs only: mark GPU faulted, as an Xid error would (its
    /// leases are revoked), or healthy again with --clear.
    Fault {
        /// The GPU: its index (0, 1, …) or UUID.
        gpu: String,
        /// Mark the GPU healthy again.
        #[arg(long)]
        clear: bool,
        /// Why (shown in the gpu_health event).
        #[arg(long, conflicts_with = "clear")]
        reason: Option<String>,
    },
}

/// `--timeout`: a duration with its unit, or a bare `0` (never queue).
fn timeout_arg(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    duration::parse(s).map_err(|e| e.to_string())
}

const DEFAULT_STATE_DIR: &str = "/var/lib/vision-node-daemon";
const DEV_STATE_DIR: &str = "./.vision-dev";

impl Cli {
    fn state_dir(&self) -> PathBuf {
        match (&self.state_dir, self.dev) {
            (Some(d), _) => d.clone(),
            (None, true) => PathBuf::from(DEV_STATE_DIR),
            (None, false) => PathBuf::from(DEFAULT_STATE_DIR),
        }
    }

    /// The socket for a command: explicit, from the pod's env, or by role.
    fn socket(&self, task_call: bool) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        if let Some(s) = std::env::var_os("VISION_SOCKET") {
            return PathBuf::from(s);
        }
        let state = self.state_dir();
        if task_call {
            state.join("pods").join("agent.sock")
        } else {
            state.join("admin.sock")
        }
    }

    fn token(&self) -> Result<String, Failure> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        if let Ok(t) = std::env::var("VISION_TOKEN") {
            return Ok(t);
        }
        let path = self.state_dir().join("dev-token");
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_owned())
            .map_err(|e| {
                Failure::new(
                    tonic::Code::Unauthenticated,
                    format!(
                        "no token: pass --token, set VISION_TOKEN, or run the dev daemon ({}: {e})",
                        path.display()
                    ),
                )
            })
    }

    /// The token when one is available (scopes status/watch on a task socket).
    fn token_if_any(&self) -> String {
        self.token().unwrap_or_default()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if json => {
            println!("{}", f.json());
            ExitCode::FAILURE
        }
        Err(f) => {
            eprintln!("visionctl: {f}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(path: &Path) -> Result<AdmissionClient<Channel>, Failure> {
    uds::client::connect(path)
        .await
        .map(AdmissionClient::new)
        .map_err(|e| {
            Failure::new(
                tonic::Code::Unavailable,
                format!(
                    "cannot connect to {}: {e} (is the daemon running? see --socket/--state-dir/--dev)",
                    path.display()
                ),
            )
        })
}

async fn run(cli: &Cli) -> Result<(), Failure> {
    let json = cli.output == Output::Json;
    match &cli.command {
        Command::Status => {
            let mut c = connect(&cli.socket(false)).await?;
            let s = c
                .status(pb::StatusRequest {
                    token: cli.token_if_any(),
                })
                .await?
                .into_inner();
            print(json, &s, render::status)
        }
        Command::Models => {
            let mut c = connect(&cli.socket(false)).await?;
            let m = c.list_models(pb::ListModelsRequest {}).await?.into_inner();
            // GPU indices for the table; without them (a task socket that
            // wants a token) the table names GPUs by their UUIDs' tails.
            let gpus = match json {
                true => Vec::new(),
                false => c
                    .status(pb::StatusRequest {
                        token: cli.token_if_any(),
                    })
                    .await
                    .map(|s| s.into_inner().gpus)
                    .unwrap_or_default(),
            };
            print(json, &m, |m| render::models(m, &gpus))
        }
        Command::Admit {
            model,
            priority,
            timeout,
            task_type,
        } => {
            let mut c = connect(&cli.socket(true)).await?;
            let req = pb::AdmitRequest {
                token: cli.token()?,
                model: model.clone(),
                task_type: task_type.clone().unwrap_or_default(),
                priority: *priority,
                timeout_ms: timeout.map(|t| t.as_millis() as u64),
            };
            let wait = spinner::Spinner::start(format!(
                "waiting for a lease for {model} (queue, GPU memory or a model load)"
            ));
            let answer = c.admit(traced(req)).await;
            wait.finish();
            let lease = answer?.into_inner().lease.ok_or_else(|| {
                Failure::new(tonic::Code::Internal, "the daemon answered without a lease")
            })?;
            print(json, &lease, render::lease)
        }
        Command::Release { lease } => {
            let mut c = connect(&cli.socket(true)).await?;
            c.release(pb::ReleaseRequest {
                token: cli.token()?,
                lease_id: *lease,
            })
            .await?;
            let out = output::Released { lease_id: *lease };
            print(json, &out, |_| format!("released lease {lease}\n"))
        }
        Command::Keepalive { lease } => {
            let mut c = connect(&cli.socket(true)).await?;
            let r = c
                .keep_alive(pb::KeepAliveRequest {
                    token: cli.token()?,
                    lease_id: *lease,
                })
                .await?
                .into_inner();
            let out = output::KeptAlive {
                lease_id: *lease,
                expires_in_ms: r.expires_in_ms,
            };
            print(json, &out, |r| {
                format!("lease {lease} expires in {}\n", render::ms(r.expires_in_ms))
            })
        }
        Command::Preload { model, gpu } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::PreloadRequest {
                model: model.clone(),
                gpu: gpu.clone().unwrap_or_default(),
            };
            let wait = spinner::Spinner::start(match gpu {
                Some(g) => format!("loading {model} on GPU {g}"),
                None => format!("loading {model}"),
            });
            let answer = c.preload(req).await;
            wait.finish();
            let r = answer?.into_inner();
            let out = output::Preloaded {
                model: model.clone(),
                gpu_index: r.gpu_index,
                gpu_uuid: r.gpu_uuid,
                duration_ms: r.duration_ms,
            };
            print(json, &out, render::preloaded)
        }
        Command::Evict { model, gpu } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::EvictRequest {
                model: model.clone(),
                gpu: gpu.clone().unwrap_or_default(),
            };
            let r = c.evict(req).await?.into_inner();
            // GPU indices for the answer (the response names UUIDs only).
            let gpus = c
                .status(pb::StatusRequest::default())
                .await
                .map(|s| s.into_inner().gpus)
                .unwrap_or_default();
            let out = output::Evicted {
                model: model.clone(),
                gpus: r
                    .gpu_uuids
                    .iter()
                    .map(|u| output::GpuRef::from_uuid(u, &gpus))
                    .collect(),
            };
            print(json, &out, render::evicted)
        }
        Command::Fault { gpu, clear, reason } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::SetGpuFaultRequest {
                gpu: gpu.clone(),
                faulted: !clear,
                reason: reason.clone().unwrap_or_default(),
            };
            let r = c.set_gpu_fault(req).await?.into_inner();
            let out = output::Faulted {
                gpu_index: r.gpu_index,
                gpu_uuid: r.gpu_uuid,
                healthy: *clear,
            };
            print(json, &out, render::faulted)
        }
        Command::Watch => {
            let mut c = connect(&cli.socket(false)).await?;
            let mut stream = c
                .watch(pb::WatchRequest {
                    token: cli.token_if_any(),
                })
                .await?
                .into_inner();
            while let Some(ev) = stream.message().await? {
                if json {
                    println!("{}", output::to_json_line(&ev)?);
                } else {
                    println!("{}", render::event(&ev));
                }
            }
            Ok(())
        }
    }
}

/// A W3C `traceparent` (version 00, sampled) with fresh random IDs, so the
/// daemon's admit span roots a trace of its own per command.
fn traceparent() -> String {
    let mut ids = [0u8; 24];
    // Without randomness the IDs are zero, which W3C readers treat as absent.
    let _ = getrandom::fill(&mut ids);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!("00-{}-{}-01", hex(&ids[..16]), hex(&ids[16..]))
}

fn traced<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = traceparent().parse() {
        req.metadata_mut().insert("traceparent", v);
    }
    req
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<(), Failure> {
    if json {
        println!("{}", output::to_json(value)?);
    } else {
        print!("{}", table(value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn traceparent_is_w3c_version_00_sampled_with_fresh_ids() {
        let a = super::traceparent();
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.len(), 4, "{a}");
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(parts[1].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, super::traceparent());
    }

    #[test]
    fn every_command_and_argument_has_help() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        let mut check = |path: String, cmd: &clap::Command| {
            if cmd.get_about().is_none() {
                missing.push(path.clone());
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
        };
        check("visionctl".into(), &cli);
        for sub in cli.get_subcommands() {
            check(format!("visionctl {}", sub.get_name()), sub);
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn timeout_zero_needs_no_unit_and_other_numbers_do() {
        use std::time::Duration;
        assert_eq!(super::timeout_arg("0"), Ok(Duration::ZERO));
        assert_eq!(super::timeout_arg("0s"), Ok(Duration::ZERO));
        assert_eq!(
            super::timeout_arg("1500ms"),
            Ok(Duration::from_millis(1500))
        );
        assert!(super::timeout_arg("5").unwrap_err().contains("no unit"));
    }
}
