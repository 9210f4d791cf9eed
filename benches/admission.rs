//! Admission throughput over Unix sockets: the daemon against a no-op server
//! of the same proto, with the same Rust tonic client, in one run (issue 11).
//!
//! - **The daemon**: the release binary as a child process (`--dev` with the
//!   bench config below, a temp state dir, `RUST_LOG=warn`), called on its
//!   task socket with the dev token. Its own API is not linked in, so the
//!   bench measures exactly what a pod sees.
//! - **The no-op**: this binary re-executed as a child (`--noop-server PATH`):
//!   `vision.v1.Admission` served with plain tonic on a Unix socket, every
//!   call answered at once. No shim, no engine, no tracing.
//! - **Callers** run sequential Admit + Release pairs: 1 (one connection),
//!   16 (4 connections × 4) and 64 (4 connections × 16). Each round measures
//!   both servers back to back, in alternating order (ABBA), so both see the
//!   same noise from other work on the machine; figures are medians over
//!   the rounds. "daemon ÷ no-op" is the daemon's time per pair over the
//!   no-op's (the inverse ratio of pairs/s), as in the issue.
//! - Besides pairs/s, each server's CPU time per pair (utime + stime of the
//!   child, from /proc): other load on the machine disturbs it less.
//! - **Watch fan-out** (daemon, 16 callers): no Watch stream vs 100 open
//!   ones read as fast as events come, either of another pod (they see
//!   node-level events only) or of the admitting pod itself (each sees every
//!   lease event: 200 messages per pair); and vs one Watch stream whose
//!   reader never reads, on a connection with a 1 KiB window so that it is
//!   stuck from the start. The second pod's token comes from Allocate,
//!   through the tests' fake kubelet.
//!
//! Run: `cargo bench --bench admission` (about a minute and a half).
//! Figures and the machine: benches/README.md.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use vision_node_daemon::proto::vision::v1 as pb;

use pb::admission_client::AdmissionClient;
use support::{channel, cpu_secs, machine_line, median, memory, wait_for};

/// Rounds per figure; each round measures both sides once.
const ROUNDS: usize = 9;
/// Rounds of the Watch fan-out figures (each opens 100 streams).
const FAN_ROUNDS: usize = 5;
/// Load before a measurement starts (connections warm, copies loaded).
const WARMUP: Duration = Duration::from_millis(150);
/// One measurement: short, so that bursts of other work on a shared
/// machine hit both sides of a round alike.
const WINDOW: Duration = Duration::from_millis(600);
/// (connections, callers per connection).
const LOADS: [(usize, usize); 3] = [(1, 1), (4, 4), (4, 16)];
const WATCHERS: usize = 100;
const MODEL: &str = "bench-model";

/// The dev config's two simulated L4s, with slots for 64 callers and one
/// small model that every caller shares (one warm copy, 64 at a time), so
/// that admission never queues: the bench measures the call path.
const CONFIG: &str = "\
node_name: bench-node
gpus:
  backend: simulated
  reserve_mib: 512
  simulated:
    - { name: \"NVIDIA L4 (simulated)\", memory_mib: 24576, count: 2 }
devices:
  slots_per_gpu: 64
admission:
  queue_limit: 256
  default_timeout: 30s
  lease_ttl: 60s
cluster:
  publish: off
runtime:
  kind: bookkeeping
  simulate_load_time: false
models:
  - name: bench-model
    weights_mib: 12
    working_mib: 64
    max_concurrency: 64
    load_ms: 150
    task_ms: 15
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--noop-server") {
        noop::serve(PathBuf::from(&args[i + 1]));
        return;
    }
    // `cargo test --benches` runs bench targets too; only run under `cargo
    // bench` (it passes --bench) and not in list mode.
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `-- --profile SECS`: only load the daemon (16 callers) for SECS
    // seconds, for `perf record -p <pid>`.
    let profile = args
        .iter()
        .position(|a| a == "--profile")
        .and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    match profile {
        Some(secs) => rt.block_on(profile_load(Duration::from_secs(secs))),
        None => rt.block_on(run()),
    }
}

async fn profile_load(secs: Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Target::daemon(dir.path()).await;
    println!("daemon pid {} under 16 callers for {secs:?}", daemon.pid);
    let end = Instant::now() + secs;
    while Instant::now() < end {
        let s = daemon.measure(4, 4).await;
        println!(
            "{:.0} pairs/s, {:.1} µs CPU/pair",
            s.rate(),
            s.cpu_us_per_pair()
        );
    }
}

async fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Target::daemon(dir.path()).await;
    let noop = Target::noop(dir.path()).await;
    println!("{}", machine_line());
    println!("daemon pid {}, idle: {}", daemon.pid, memory(daemon.pid));
    println!();
    println!(
        "{:>26} | {:>14} | {:>14} | {:>14} | {:>22}",
        "callers", "daemon pairs/s", "no-op pairs/s", "daemon ÷ no-op", "CPU µs/pair (d / n)"
    );
    for (conns, per_conn) in LOADS {
        let mut d = Vec::new();
        let mut n = Vec::new();
        for round in 0..ROUNDS {
            // ABBA: whichever side goes first alternates by round.
            if round % 2 == 0 {
                d.push(daemon.measure(conns, per_conn).await);
                n.push(noop.measure(conns, per_conn).await);
            } else {
                n.push(noop.measure(conns, per_conn).await);
                d.push(daemon.measure(conns, per_conn).await);
            }
        }
        let ratios: Vec<f64> = d.iter().zip(&n).map(|(d, n)| n.rate() / d.rate()).collect();
        let label = if conns * per_conn == 1 {
            "1 (sequential pairs)".to_owned()
        } else {
            format!("{} ({conns} conns × {per_conn})", conns * per_conn)
        };
        println!(
            "{label:>26} | {:>14.0} | {:>14.0} | {:>13.2}× | {:>9.1} / {:>9.1}",
            median(d.iter().map(Sample::rate)),
            median(n.iter().map(Sample::rate)),
            median(ratios.into_iter()),
            median(d.iter().map(Sample::cpu_us_per_pair)),
            median(n.iter().map(Sample::cpu_us_per_pair)),
        );
    }
    println!("daemon after the load: {}", memory(daemon.pid));
    println!();
    fan_out(&daemon).await;
    drop(noop);
    drop(daemon);
}

/// Watch fan-out and a stuck Watch reader, on the daemon at 16 callers.
async fn fan_out(daemon: &Target) {
    println!("Watch fan-out, daemon at 16 callers (4 conns × 4):");
    let other = daemon
        .other_token
        .clone()
        .expect("the daemon has a second pod");
    fan(daemon, "another pod's", &other).await;
    fan(daemon, "the admitting pod's", &daemon.token).await;
    let w = Watchers::open(daemon, WATCHERS, &daemon.token).await;
    println!(
        "  daemon with {WATCHERS} idle Watch streams open: {}",
        memory(daemon.pid)
    );
    w.close().await;
    stuck_reader(daemon).await;
}

/// 16 callers with and without `WATCHERS` streams of `token`, alternating.
async fn fan(daemon: &Target, whose: &str, token: &str) {
    let (conns, per_conn) = (4, 4);
    let mut none = Vec::new();
    let mut many = Vec::new();
    for round in 0..FAN_ROUNDS {
        let with = async {
            let watchers = Watchers::open(daemon, WATCHERS, token).await;
            let s = daemon.measure(conns, per_conn).await;
            let events = watchers.close().await;
            (s, events)
        };
        if round % 2 == 0 {
            none.push(daemon.measure(conns, per_conn).await);
            many.push(with.await);
        } else {
            many.push(with.await);
            none.push(daemon.measure(conns, per_conn).await);
        }
    }
    let drops: Vec<f64> = none
        .iter()
        .zip(&many)
        .map(|(a, (b, _))| 100.0 * (1.0 - b.rate() / a.rate()))
        .collect();
    println!(
        "  {WATCHERS} streams of {whose} token: {:>7.0} vs {:>7.0} pairs/s without, drop {:.1} %; CPU/pair {:.1} vs {:.1} µs; {:.0} events/s delivered",
        median(many.iter().map(|(s, _)| s.rate())),
        median(none.iter().map(Sample::rate)),
        median(drops.into_iter()),
        median(many.iter().map(|(s, _)| s.cpu_us_per_pair())),
        median(none.iter().map(Sample::cpu_us_per_pair)),
        median(many.iter().map(|(s, e)| *e as f64 / s.secs)),
    );
}

/// 16 callers with and without one Watch stream that is never read.
async fn stuck_reader(daemon: &Target) {
    let (conns, per_conn) = (4, 4);
    let mut free = Vec::new();
    let mut stuck = Vec::new();
    let mut report = String::new();
    for round in 0..FAN_ROUNDS {
        let with = async {
            let slow = SlowReader::open(daemon).await;
            let s = daemon.measure(conns, per_conn).await;
            (s, slow)
        };
        let slow = if round % 2 == 0 {
            free.push(daemon.measure(conns, per_conn).await);
            let (s, slow) = with.await;
            stuck.push(s);
            slow
        } else {
            let (s, slow) = with.await;
            stuck.push(s);
            free.push(daemon.measure(conns, per_conn).await);
            slow
        };
        if round == 0 {
            report = slow.drain().await;
        }
    }
    let drops: Vec<f64> = free
        .iter()
        .zip(&stuck)
        .map(|(a, b)| 100.0 * (1.0 - b.rate() / a.rate()))
        .collect();
    println!(
        "  one Watch reader that never reads: {:>7.0} vs {:>7.0} pairs/s without, drop {:.1} %",
        median(stuck.iter().map(Sample::rate)),
        median(free.iter().map(Sample::rate)),
        median(drops.into_iter()),
    );
    println!("  the stuck reader, reading afterwards: {report}");
}

/// One measurement: pairs completed in `secs`, and the server's CPU seconds.
struct Sample {
    pairs: u64,
    secs: f64,
    cpu_secs: f64,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.pairs as f64 / self.secs
    }
    fn cpu_us_per_pair(&self) -> f64 {
        self.cpu_secs * 1e6 / self.pairs.max(1) as f64
    }
}

/// A server under test: a child process with a socket and a token.
struct Target {
    name: &'static str,
    pid: u32,
    socket: PathBuf,
    token: String,
    /// Opened once, reused by every measurement.
    conns: Vec<Channel>,
    /// A second pod's token (daemon only).
    other_token: Option<String>,
    _process: Process,
}

enum Process {
    /// Held only to keep the daemon running; dropping it stops it.
    #[allow(dead_code)]
    Daemon(Box<support::Daemon>),
    Noop(Child),
}

impl Drop for Process {
    fn drop(&mut self) {
        // The daemon's own Drop sends SIGTERM; the no-op also exits when its
        // stdin (our pipe) closes.
        if let Process::Noop(child) = self {
            support::terminate(child);
        }
    }
}

impl Target {
    async fn daemon(dir: &Path) -> Target {
        let mut daemon = support::Daemon::start(dir, CONFIG).await;
        let other = daemon.allocate(1).await;
        let (pid, socket, token) = (daemon.pid(), daemon.task_socket(), daemon.token.clone());
        let mut target = Target::connect(
            "daemon",
            pid,
            socket,
            token,
            Process::Daemon(Box::new(daemon)),
        )
        .await;
        target.other_token = Some(other);
        target
    }

    async fn noop(dir: &Path) -> Target {
        let socket = dir.join("noop.sock");
        let child = Command::new(std::env::current_exe().expect("own path"))
            .arg("--noop-server")
            .arg(&socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the no-op server");
        wait_for("the no-op server's socket", || {
            socket.exists().then_some(())
        })
        .await;
        Target::connect(
            "no-op",
            child.id(),
            socket,
            "noop-token".to_owned(),
            Process::Noop(child),
        )
        .await
    }

    async fn connect(
        name: &'static str,
        pid: u32,
        socket: PathBuf,
        token: String,
        process: Process,
    ) -> Target {
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(channel(&socket, None).await);
        }
        let target = Target {
            name,
            pid,
            socket,
            token,
            conns,
            other_token: None,
            _process: process,
        };
        // One pair, so that a server that cannot admit fails the bench here.
        let mut c = AdmissionClient::new(target.conns[0].clone());
        pair(&mut c, &target.token, target.name).await;
        target
    }

    /// `conns × per_conn` callers for WARMUP + WINDOW; counts the window.
    async fn measure(&self, conns: usize, per_conn: usize) -> Sample {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for ch in &self.conns[..conns] {
            for _ in 0..per_conn {
                let mut client = AdmissionClient::new(ch.clone());
                let (stop, count, token, name) = (
                    Arc::clone(&stop),
                    Arc::clone(&count),
                    self.token.clone(),
                    self.name,
                );
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        pair(&mut client, &token, name).await;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        tokio::time::sleep(WARMUP).await;
        let (c0, cpu0, t0) = (
            count.load(Ordering::Relaxed),
            cpu_secs(self.pid),
            Instant::now(),
        );
        tokio::time::sleep(WINDOW).await;
        let (c1, cpu1, secs) = (
            count.load(Ordering::Relaxed),
            cpu_secs(self.pid),
            t0.elapsed().as_secs_f64(),
        );
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("caller task");
        }
        Sample {
            pairs: c1 - c0,
            secs,
            cpu_secs: cpu1 - cpu0,
        }
    }
}

async fn pair(client: &mut AdmissionClient<Channel>, token: &str, server: &str) {
    let lease = client
        .admit(pb::AdmitRequest {
            token: token.to_owned(),
            model: MODEL.to_owned(),
            task_type: String::new(),
            priority: 0,
            timeout_ms: None,
        })
        .await
        .unwrap_or_else(|s| panic!("{server}: Admit failed: {s}"))
        .into_inner()
        .lease
        .unwrap_or_else(|| panic!("{server}: Admit answered without a lease"));
    client
        .release(pb::ReleaseRequest {
            token: token.to_owned(),
            lease_id: lease.lease_id,
        })
        .await
        .unwrap_or_else(|s| panic!("{server}: Release failed: {s}"));
}

/// Open Watch streams, each read by its own task until closed.
struct Watchers {
    stop: Arc<AtomicBool>,
    events: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watchers {
    async fn open(daemon: &Target, n: usize, token: &str) -> Watchers {
        let stop = Arc::new(AtomicBool::new(false));
        let events = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..n {
            let mut client = AdmissionClient::new(daemon.conns[i % daemon.conns.len()].clone());
            let mut stream = client
                .watch(pb::WatchRequest {
                    token: token.to_owned(),
                })
                .await
                .expect("Watch")
                .into_inner();
            // The first event (queue depth) says the stream is live.
            stream.next().await.expect("first event").expect("event");
            let (stop, events) = (Arc::clone(&stop), Arc::clone(&events));
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(_)) = stream.next().await {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    events.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        Watchers {
            stop,
            events,
            tasks,
        }
    }

    /// Events delivered to all streams so far; closes them.
    async fn close(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.events.load(Ordering::Relaxed)
    }
}

/// A Watch stream nobody reads, on its own connection whose 1 KiB HTTP/2
/// window fills after a few events: from then on the daemon cannot send it
/// anything.
struct SlowReader {
    stream: tonic::Streaming<pb::WatchEvent>,
    _channel: Channel,
}

impl SlowReader {
    async fn open(daemon: &Target) -> SlowReader {
        let channel = channel(&daemon.socket, Some(1024)).await;
        let stream = AdmissionClient::new(channel.clone())
            .watch(pb::WatchRequest {
                token: daemon.token.clone(),
            })
            .await
            .expect("Watch")
            .into_inner();
        SlowReader {
            stream,
            _channel: channel,
        }
    }

    /// Reads what has piled up: how many events came before the first one
    /// that reports missed events, and how many it reports.
    async fn drain(mut self) -> String {
        let mut before = 0u64;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(2), self.stream.next()).await;
            match next {
                Ok(Some(Ok(ev))) if ev.missed > 0 => {
                    return format!(
                        "{before} events delivered in order, then one reporting missed = {}",
                        ev.missed
                    );
                }
                Ok(Some(Ok(_))) => before += 1,
                Ok(Some(Err(status))) => {
                    return format!("{before} events, then status {status}");
                }
                Ok(None) => return format!("{before} events, then the stream ended"),
                Err(_) => {
                    return format!("{before} events, then nothing for 2 s (no missed count)");
                }
            }
        }
    }
}

/// The no-op server: the child side of `--noop-server PATH`.
mod noop {
    use super::*;
    use pb::admission_server::{Admission, AdmissionServer};
    use tokio_stream::wrappers::UnixListenerStream;

    struct Noop {
        next_lease: AtomicU64,
    }

    type WatchStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

    #[tonic::async_trait]
    impl Admission for Noop {
        async fn admit(
            &self,
            request: Request<pb::AdmitRequest>,
        ) -> Result<Response<pb::AdmitResponse>, Status> {
            let req = request.into_inner();
            // A lease the size of the daemon's, so both send as many bytes.
            Ok(Response::new(pb::AdmitResponse {
                lease: Some(pb::Lease {
                    lease_id: self.next_lease.fetch_add(1, Ordering::Relaxed),
                    model: req.model,
                    gpu_index: 0,
                    gpu_uuid: "GPU-00000000-0000-0000-0000-000000000000".into(),
                    warm: true,
                    waited_ms: 0,
                    expires_in_ms: 60_000,
                    ttl_ms: 60_000,
                    runtime_endpoint: String::new(),
                    working_mib: 64,
                    runtime_model: String::new(),
                }),
            }))
        }

        async fn release(
            &self,
            _: Request<pb::ReleaseRequest>,
        ) -> Result<Response<pb::ReleaseResponse>, Status> {
            Ok(Response::new(pb::ReleaseResponse {}))
        }

        async fn keep_alive(
            &self,
            _: Request<pb::KeepAliveRequest>,
        ) -> Result<Response<pb::KeepAliveResponse>, Status> {
            Ok(Response::new(pb::KeepAliveResponse {
                expires_in_ms: 60_000,
            }))
        }

        async fn status(
            &self,
            _: Request<pb::StatusRequest>,
        ) -> Result<Response<pb::StatusResponse>, Status> {
            Err(Status::unimplemented("no-op server"))
        }

        type WatchStream = WatchStream;
        async fn watch(
            &self,
            _: Request<pb::WatchRequest>,
        ) -> Result<Response<WatchStream>, Status> {
            Err(Status::unimplemented("no-op server"))
        }

        async fn preload(
            &self,
            _: Request<pb::PreloadRequest>,
        ) -> Result<Response<pb::PreloadResponse>, Status> {
            Err(Status::unimplemented("no-op server"))
        }

        async fn evict(
            &self,
            _: Request<pb::EvictRequest>,
        ) -> Result<Response<pb::EvictResponse>, Status> {
            Err(Status::unimplemented("no-op server"))
        }

        async fn list_models(
            &self,
            _: Request<pb::ListModelsRequest>,
        ) -> Result<Response<pb::ListModelsResponse>, Status> {
            Err(Status::unimplemented("no-op server"))
        }

        async fn set_gpu_fault(
            &self,
            _: Request<pb::SetGpuFaultRequest>,
        ) -> Result<Response<pb::SetGpuFaultResponse>, Status> {
            Err(Status::unimplemented("no-op server"))
        }
    }

    /// Serves until stdin closes (the bench ended or died) or SIGTERM.
    pub fn serve(path: PathBuf) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read(&mut [0u8; 1]);
            let _ = tx.send(());
        });
        rt.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&path).expect("bind the no-op socket");
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            let stop = async move {
                tokio::select! {
                    _ = rx => {}
                    _ = term.recv() => {}
                }
            };
            tonic::transport::Server::builder()
                .add_service(AdmissionServer::new(Noop {
                    next_lease: AtomicU64::new(1),
                }))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
                .await
                .expect("serve");
            let _ = std::fs::remove_file(&path);
        });
    }
}
