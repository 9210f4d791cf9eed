//! `visionctl`: the operator's and scripts' client of vision-node-daemon.
//!
//! Where it connects: `--socket PATH`; else `$VISION_SOCKET` (set in pods by
//! Allocate); else, under `--state-dir` (default `/var/lib/vision-node-daemon`,
//! `--dev` = `./.vision-dev`), the admin socket for operator commands and the
//! task socket for admit / release / keepalive. `fault` (simulated GPUs
//! only) is an operator command on the admin socket. Token: `--token`, then
//! `$VISION_TOKEN`, then the state dir's `dev-token`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tonic::transport::Channel;
use vision_node_daemon::config::duration;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

use pb::admission_client::AdmissionClient;

#[path = "visionctl/render.rs"]
mod render;

#[derive(Parser, Debug)]
#[command(
    name = "visionctl",
    version,
    about = "Inspect and drive vision-node-daemon over its Unix sockets"
)]
struct Cli {
    /// Socket to use (overrides $VISION_SOCKET and --state-dir).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The daemon's state directory.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Use the dev daemon's state directory (./.vision-dev).
    #[arg(long, global = true)]
    dev: bool,
    /// Allocation token (default: $VISION_TOKEN, then <state>/dev-token).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Output format.
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
    /// The model catalog and where each model is resident.
    Models,
    /// Ask for a lease for one task of MODEL; prints the lease.
    Admit {
        model: String,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// How long to wait (e.g. 5s, 500ms; 0 = never queue). Default: the daemon's.
        #[arg(long)]
        timeout: Option<String>,
        #[arg(long)]
        task_type: Option<String>,
    },
    /// End a lease.
    Release { lease: u64 },
    /// Extend a lease by its TTL.
    Keepalive { lease: u64 },
    /// Load MODEL ahead of demand (waits until it is loaded).
    Preload {
        model: String,
        /// GPU UUID or index.
        #[arg(long)]
        gpu: Option<String>,
    },
    /// Unload idle copies of MODEL.
    Evict {
        model: String,
        #[arg(long)]
        gpu: Option<String>,
    },
    /// Stream state changes until interrupted.
    Watch,
    /// Simulated GPUs only: mark GPU (UUID or index) faulted, as an Xid error
    /// would (its leases are revoked), or healthy again with --clear.
    Fault {
        gpu: String,
        /// Mark the GPU healthy again.
        #[arg(long)]
        clear: bool,
        /// Why (shown in the gpu_health event).
        #[arg(long, conflicts_with = "clear")]
        reason: Option<String>,
    },
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

    fn token(&self) -> Result<String, String> {
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
                format!(
                    "no token: pass --token, set VISION_TOKEN, or run the dev daemon ({}: {e})",
                    path.display()
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
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("visionctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(path: &Path) -> Result<AdmissionClient<Channel>, String> {
    uds::client::connect(path)
        .await
        .map(AdmissionClient::new)
        .map_err(|e| {
            format!(
                "cannot connect to {}: {e} (is the daemon running? see --socket/--state-dir/--dev)",
                path.display()
            )
        })
}

fn status_err(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn run(cli: &Cli) -> Result<(), String> {
    let json = cli.output == Output::Json;
    match &cli.command {
        Command::Status => {
            let mut c = connect(&cli.socket(false)).await?;
            let s = c
                .status(pb::StatusRequest {
                    token: cli.token_if_any(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print(json, &s, render::status)
        }
        Command::Models => {
            let mut c = connect(&cli.socket(false)).await?;
            let m = c
                .list_models(pb::ListModelsRequest {})
                .await
                .map_err(status_err)?
                .into_inner();
            print(json, &m, render::models)
        }
        Command::Admit {
            model,
            priority,
            timeout,
            task_type,
        } => {
            let timeout_ms = match timeout {
                Some(t) => Some(
                    duration::parse(t)
                        .map_err(|e| format!("--timeout {t:?}: {e}"))?
                        .as_millis() as u64,
                ),
                None => None,
            };
            let mut c = connect(&cli.socket(true)).await?;
            let req = pb::AdmitRequest {
                token: cli.token()?,
                model: model.clone(),
                task_type: task_type.clone().unwrap_or_default(),
                priority: *priority,
                timeout_ms,
            };
            let r = c.admit(traced(req)).await.map_err(status_err)?.into_inner();
            let lease = r.lease.ok_or("the daemon answered without a lease")?;
            print(json, &lease, render::lease)
        }
        Command::Release { lease } => {
            let mut c = connect(&cli.socket(true)).await?;
            c.release(pb::ReleaseRequest {
                token: cli.token()?,
                lease_id: *lease,
            })
            .await
            .map_err(status_err)?;
            print(json, &serde_json::json!({ "released": lease }), |_| {
                format!("released lease {lease}\n")
            })
        }
        Command::Keepalive { lease } => {
            let mut c = connect(&cli.socket(true)).await?;
            let r = c
                .keep_alive(pb::KeepAliveRequest {
                    token: cli.token()?,
                    lease_id: *lease,
                })
                .await
                .map_err(status_err)?
                .into_inner();
            print(json, &r, |r| {
                format!("lease {lease} expires in {}\n", render::ms(r.expires_in_ms))
            })
        }
        Command::Preload { model, gpu } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::PreloadRequest {
                model: model.clone(),
                gpu: gpu.clone().unwrap_or_default(),
            };
            let r = c.preload(req).await.map_err(status_err)?.into_inner();
            print(json, &r, |r| {
                format!(
                    "{model} loaded on GPU {} ({}) in {}\n",
                    r.gpu_index,
                    r.gpu_uuid,
                    render::ms(r.duration_ms)
                )
            })
        }
        Command::Evict { model, gpu } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::EvictRequest {
                model: model.clone(),
                gpu: gpu.clone().unwrap_or_default(),
            };
            let r = c.evict(req).await.map_err(status_err)?.into_inner();
            print(json, &r, |r| {
                format!("{model} evicted from {}\n", r.gpu_uuids.join(", "))
            })
        }
        Command::Fault { gpu, clear, reason } => {
            let mut c = connect(&cli.socket(false)).await?;
            let req = pb::SetGpuFaultRequest {
                gpu: gpu.clone(),
                faulted: !clear,
                reason: reason.clone().unwrap_or_default(),
            };
            let r = c.set_gpu_fault(req).await.map_err(status_err)?.into_inner();
            let state = if *clear { "healthy again" } else { "faulted" };
            print(json, &r, |r| {
                format!("GPU {} ({}) {state}\n", r.gpu_index, r.gpu_uuid)
            })
        }
        Command::Watch => {
            let mut c = connect(&cli.socket(false)).await?;
            let mut stream = c
                .watch(pb::WatchRequest {
                    token: cli.token_if_any(),
                })
                .await
                .map_err(status_err)?
                .into_inner();
            while let Some(ev) = stream.message().await.map_err(status_err)? {
                if json {
                    println!("{}", serde_json::to_string(&ev).map_err(|e| e.to_string())?);
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
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", table(value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
