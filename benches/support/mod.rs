//! What the admission and memory benches share: the release daemon as a
//! child process beside the tests' fake kubelet (so that Allocate hands out
//! real tokens), clients over its Unix sockets, and readings of the child
//! from /proc.
//!
//! The daemon is driven only through its binary and its sockets, never its
//! in-process API, so the benches measure what a pod sees.
#![allow(dead_code)]

#[path = "../../tests/it/kubelet_support/mod.rs"]
mod kubelet_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use kubelet_support::{DEADLINE, FakeKubelet};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub const SLOT: &str = "vision.ai/slot";

/// `vision-node-daemon --dev --config <yaml>` with its state under a temp
/// dir, `RUST_LOG=warn`, registered with a fake kubelet. SIGTERM on drop.
pub struct Daemon {
    child: Child,
    pub state: PathBuf,
    /// The dev token (slots for every GPU).
    pub token: String,
    pub kubelet: FakeKubelet,
    /// Slot device IDs as the kubelet saw them, not yet handed out.
    free_slots: Vec<String>,
}

impl Daemon {
    pub async fn start(dir: &Path, config_yaml: &str) -> Daemon {
        let state = dir.join("daemon");
        let plugins = dir.join("kubelet");
        let kubelet = FakeKubelet::start(&plugins).await;
        let config = dir.join("config.yaml");
        std::fs::write(&config, config_yaml).expect("write the bench config");
        let log = std::fs::File::create(dir.join("daemon.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
            .arg("--dev")
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .arg("--kubelet-dir")
            .arg(&plugins)
            .args(["--http-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the daemon");
        let token_path = state.join("dev-token");
        let token = wait_for("the daemon's dev token", || {
            std::fs::read_to_string(&token_path)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
        .await;
        let free_slots = kubelet
            .devices(SLOT, DEADLINE)
            .await
            .into_iter()
            .map(|d| d.id)
            .collect();
        Daemon {
            child,
            state,
            token: token.trim().to_owned(),
            kubelet,
            free_slots,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn task_socket(&self) -> PathBuf {
        self.state.join("pods").join("agent.sock")
    }

    /// A new pod's token with `slots` slot devices nobody else holds, from
    /// Allocate as kubelet calls it.
    pub async fn allocate(&mut self, slots: usize) -> String {
        assert!(
            self.free_slots.len() >= slots,
            "the config has too few slot devices"
        );
        let ids: Vec<String> = self.free_slots.drain(..slots).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let resp = self
            .kubelet
            .allocate(SLOT, &refs)
            .await
            .unwrap_or_else(|s| panic!("Allocate failed: {s}"));
        resp.envs
            .get("VISION_TOKEN")
            .expect("Allocate gives a token")
            .clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM, then wait: the daemon shuts down as designed.
pub fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// A tonic channel over the Unix socket at `path` (`:authority` localhost,
/// as `uds::client` sends), optionally with a small HTTP/2 receive window.
pub async fn channel(path: &Path, window: Option<u32>) -> Channel {
    let shown = path.display().to_string();
    let path: Arc<Path> = Arc::from(path);
    let mut endpoint = Endpoint::from_static("http://localhost");
    if let Some(w) = window {
        endpoint = endpoint
            .initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = Arc::clone(&path);
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(&*path).await?)) }
        }))
        .await
        .unwrap_or_else(|e| panic!("connect to {shown}: {e}"))
}

/// Polls `f` until it yields (start-up of a child; a bench, not a test).
pub async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not appear within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// utime + stime of process `pid` (all its threads), in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of proc(5)'s stat; 11 and 12 here.
    (ticks(11) + ticks(12)) as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// VmRSS and VmHWM of `pid`, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

pub fn memory(pid: u32) -> String {
    let (rss, hwm) = memory_kib(pid);
    format!(
        "VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    )
}

pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    format!(
        "machine: {} × {cpu}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    )
}

pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
