//! Resident memory of the release daemon (issue 11, item 3): idle, with
//! 10 000 active leases over 1 000 tokens, after admission churn beside
//! those leases, and with 100 open Watch streams.
//!
//! The daemon runs as a child process (`--dev` with the config below, a
//! temp state dir, `RUST_LOG=warn`), registered with the tests' fake
//! kubelet; the 1 000 tokens come from Allocate as kubelet calls it, 10
//! slot devices each, and each token then holds 10 leases (TTL one hour, so
//! none expires while measuring). Readings are VmRSS and VmHWM from
//! /proc/PID/status. Goals: < 20 MiB idle, < 40 MiB with 10 000 leases.
//!
//! Run: `cargo bench --bench memory` (under a minute). Figures:
//! benches/README.md.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use vision_node_daemon::proto::vision::v1 as pb;

use pb::admission_client::AdmissionClient;
use support::{Daemon, channel, machine_line, memory, memory_kib};

const TOKENS: usize = 1000;
const LEASES_PER_TOKEN: usize = 10;
const WATCHERS: usize = 100;
const CHURN: Duration = Duration::from_secs(3);

/// The dev config's two simulated L4s with 5 100 slot devices each (10 000
/// for the pods, the rest for the churn), and one small model whose copy
/// serves every lease at once.
const CONFIG: &str = "\
node_name: bench-node
gpus:
  backend: simulated
  reserve_mib: 512
  simulated:
    - { name: \"NVIDIA L4 (simulated)\", memory_mib: 24576, count: 2 }
devices:
  slots_per_gpu: 5100
admission:
  queue_limit: 256
  default_timeout: 30s
  lease_ttl: 1h
cluster:
  publish: off
runtime:
  kind: bookkeeping
  simulate_load_time: false
models:
  - name: bench-model
    weights_mib: 12
    working_mib: 1
    max_concurrency: 20000
    load_ms: 150
    task_ms: 15
";

/// The embedded dev config, for the idle figure the issue quotes.
const DEV_CONFIG: &str = include_str!("../config/dev.yaml");

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs bench targets too; only run under `cargo
    // bench` (it passes --bench) and not in list mode.
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    println!("{}", machine_line());
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let daemon = Daemon::start(dir.path(), DEV_CONFIG).await;
        settle().await;
        println!(
            "idle, dev config:                   {}",
            memory(daemon.pid())
        );
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut daemon = Daemon::start(dir.path(), CONFIG).await;
    settle().await;
    println!(
        "idle, 10 200 slot devices:          {}",
        memory(daemon.pid())
    );
    let idle = memory_kib(daemon.pid()).0;

    let t = Instant::now();
    let mut tokens = Vec::with_capacity(TOKENS);
    for _ in 0..TOKENS {
        tokens.push(daemon.allocate(LEASES_PER_TOKEN).await);
    }
    let allocated = t.elapsed();
    println!(
        "{TOKENS} allocations ({:.1} s):           {}",
        allocated.as_secs_f64(),
        memory(daemon.pid())
    );
    let after_allocations = memory_kib(daemon.pid()).0;

    let t = Instant::now();
    let conns = [
        channel(&daemon.task_socket(), None).await,
        channel(&daemon.task_socket(), None).await,
        channel(&daemon.task_socket(), None).await,
        channel(&daemon.task_socket(), None).await,
    ];
    let tokens = Arc::new(tokens);
    let mut tasks = Vec::new();
    for caller in 0..16 {
        let mut client = AdmissionClient::new(conns[caller % conns.len()].clone());
        let tokens = Arc::clone(&tokens);
        tasks.push(tokio::spawn(async move {
            for token in tokens.iter().skip(caller).step_by(16) {
                for _ in 0..LEASES_PER_TOKEN {
                    admit(&mut client, token).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("admitting task");
    }
    println!(
        "{} leases ({:.1} s):                {}",
        TOKENS * LEASES_PER_TOKEN,
        t.elapsed().as_secs_f64(),
        memory(daemon.pid())
    );
    let with_leases = memory_kib(daemon.pid()).0;

    let churner = daemon.allocate(16).await;
    let pairs = churn(&conns, &churner).await;
    println!(
        "after {pairs} Admit+Release pairs beside them ({CHURN:?}): {}",
        memory(daemon.pid())
    );

    let mut streams = Vec::new();
    for i in 0..WATCHERS {
        let mut client = AdmissionClient::new(conns[i % conns.len()].clone());
        let mut s = client
            .watch(pb::WatchRequest {
                token: tokens[i].clone(),
            })
            .await
            .expect("Watch")
            .into_inner();
        s.next().await.expect("first event").expect("event");
        streams.push(s);
    }
    println!(
        "and {WATCHERS} open Watch streams:         {}",
        memory(daemon.pid())
    );
    println!(
        "RSS per allocation: {:.0} bytes; per lease: {:.0} bytes",
        after_allocations.saturating_sub(idle) as f64 * 1024.0 / TOKENS as f64,
        with_leases.saturating_sub(after_allocations) as f64 * 1024.0
            / (TOKENS * LEASES_PER_TOKEN) as f64
    );
    println!("{}", support::load_average());
}

/// Lets start-up finish (plugins registered, first ListAndWatch sent).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn admit(client: &mut AdmissionClient<tonic::transport::Channel>, token: &str) -> u64 {
    client
        .admit(pb::AdmitRequest {
            token: token.to_owned(),
            model: "bench-model".to_owned(),
            task_type: String::new(),
            priority: 0,
            timeout_ms: Some(0),
        })
        .await
        .unwrap_or_else(|s| panic!("Admit failed: {s}"))
        .into_inner()
        .lease
        .expect("a lease")
        .lease_id
}

/// 16 callers of one more pod run Admit+Release pairs for CHURN.
async fn churn(conns: &[tonic::transport::Channel], token: &str) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for caller in 0..16 {
        let mut client = AdmissionClient::new(conns[caller % conns.len()].clone());
        let (stop, count, token) = (Arc::clone(&stop), Arc::clone(&count), token.to_owned());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let lease_id = admit(&mut client, &token).await;
                client
                    .release(pb::ReleaseRequest {
                        token: token.clone(),
                        lease_id,
                    })
                    .await
                    .unwrap_or_else(|s| panic!("Release failed: {s}"));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(CHURN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("churn task");
    }
    count.load(Ordering::Relaxed)
}
