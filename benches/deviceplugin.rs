//! Device plugin latencies, over real Unix sockets with the fake kubelet of
//! the tests:
//! - a GPU health change → the kubelet's ListAndWatch stream receiving it
//!   (goal < 50 ms);
//! - `vision-node-daemon` process start → its first Register at kubelet
//!   (simulated GPUs; goal < 100 ms).
//!
//! Run: `cargo bench --bench deviceplugin`. Figures: benches/README.md.

#[allow(dead_code, unused_imports)]
#[path = "../tests/it/kubelet_support/mod.rs"]
mod kubelet_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_support::{DEADLINE, FakeKubelet};
use vision_node_daemon::config::{Config, RuntimeKind};
use vision_node_daemon::daemon::{Daemon, KubeletOptions, Options};
use vision_node_daemon::gpu::Health;

const HEALTH_ROUNDS: usize = 200;
const START_ROUNDS: usize = 20;

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  (n = {})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    )
}

async fn health_to_kubelet() -> (Vec<Duration>, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(&dir.path().join("device-plugins")).await;
    let mut config = Config::dev();
    config.runtime.kind = RuntimeKind::Bookkeeping {
        simulate_load_time: false,
    };
    config.devices.health_recovery = Duration::ZERO;
    let daemon = Daemon::start(Options {
        config,
        state_dir: dir.path().join("state"),
        dev_token: false,
        kubelet: KubeletOptions {
            dir: dir.path().join("device-plugins"),
            pod_resources_socket: dir.path().join("pod-resources.sock"),
            reconcile_interval: Duration::from_secs(3600),
        },
        http_addr: None,
        ready_needs_kubelet: false,
    })
    .await
    .unwrap();
    let _ = kubelet.devices("vision.ai/slot", DEADLINE).await;
    let faults = daemon.faults().unwrap().clone();
    let (mut down, mut up) = (Vec::new(), Vec::new());
    for _ in 0..HEALTH_ROUNDS {
        let t = Instant::now();
        faults
            .set_health(1, Health::Unhealthy("bench".into()))
            .unwrap();
        let d = kubelet.devices("vision.ai/slot", DEADLINE).await;
        down.push(t.elapsed());
        assert_eq!(d.iter().filter(|d| d.health == "Unhealthy").count(), 8);
        let t = Instant::now();
        faults.set_health(1, Health::Healthy).unwrap();
        let d = kubelet.devices("vision.ai/slot", DEADLINE).await;
        up.push(t.elapsed());
        assert!(d.iter().all(|d| d.health == "Healthy"));
    }
    daemon.shutdown().await;
    (down, up)
}

async fn start_to_register() -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..START_ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("device-plugins");
        let kubelet = FakeKubelet::start(&plugins).await;
        let t = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
            .args(["--dev", "--http-addr", "127.0.0.1:0", "--state-dir"])
            .arg(dir.path().join("state"))
            .arg("--kubelet-dir")
            .arg(&plugins)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        kubelet.next_registration(DEADLINE).await;
        out.push(t.elapsed());
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    out
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench too; only run
    // when asked by cargo bench (it passes --bench) and not in list mode.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (down, up) = rt.block_on(health_to_kubelet());
    println!(
        "GPU unhealthy → kubelet ListAndWatch: {}",
        percentiles(down)
    );
    println!("GPU healthy (recovery 0) → kubelet:   {}", percentiles(up));
    let start = rt.block_on(start_to_register());
    println!(
        "process start → first Register:      {}",
        percentiles(start)
    );
}
