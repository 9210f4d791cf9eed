//! Helpers shared by the daemon's integration tests: a daemon started
//! in-process on a temp state dir, and clients over its real Unix sockets.

use std::time::Duration;

use tempfile::TempDir;
use tonic::transport::Channel;
use vision_node_daemon::config::{Config, ModelSpec, RuntimeKind, SimulatedGpu};
use vision_node_daemon::daemon::{Daemon, Options};
use vision_node_daemon::engine::AllocKind;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

pub use pb::admission_client::AdmissionClient;

/// The dev config with loads that complete at once (tests wait on results,
/// not on simulated load time).
pub fn fast_dev_config() -> Config {
    let mut c = Config::dev();
    c.runtime.kind = RuntimeKind::Bookkeeping {
        simulate_load_time: false,
    };
    c
}

/// One simulated GPU of `mib` and the given models.
pub fn small_config(mib: u64, models: Vec<ModelSpec>) -> Config {
    let mut c = fast_dev_config();
    c.gpus.simulated = vec![SimulatedGpu {
        name: "Test GPU".into(),
        memory_mib: mib,
        count: 1,
    }];
    c.gpus.reserve_mib = 0;
    c.models = models;
    c
}

pub fn model(name: &str, weights_mib: u64, working_mib: u64, max_concurrency: u32) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        weights_mib,
        working_mib,
        max_concurrency,
        load_ms: 10,
        task_ms: 10,
        task_types: vec![],
    }
}

pub struct Running {
    pub daemon: Daemon,
    pub dir: TempDir,
    pub token: String,
}

/// The kubelet paths of a test: `<dir>/device-plugins`, `<dir>/pod-resources/kubelet.sock`.
pub fn kubelet_options(dir: &std::path::Path) -> vision_node_daemon::daemon::KubeletOptions {
    vision_node_daemon::daemon::KubeletOptions {
        dir: dir.join("device-plugins"),
        pod_resources_socket: dir.join("pod-resources").join("kubelet.sock"),
        reconcile_interval: Duration::from_millis(50),
        kubelet: vision_node_daemon::daemon::KubeletPresence::Expected,
    }
}

pub async fn start(config: Config) -> Running {
    let dir = tempfile::tempdir().expect("temp dir");
    start_in(config, dir).await
}

/// Starts a daemon whose state and kubelet paths are under `dir`.
pub async fn start_in(config: Config, dir: TempDir) -> Running {
    let daemon = Daemon::start(Options {
        config,
        state_dir: dir.path().join("state"),
        dev_token: true,
        kubelet: kubelet_options(dir.path()),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        ready_needs_kubelet: true,
    })
    .await
    .expect("daemon starts");
    let token = daemon.dev_token().expect("dev token").to_owned();
    Running { daemon, dir, token }
}

impl Running {
    pub async fn task(&self) -> AdmissionClient<Channel> {
        AdmissionClient::new(
            uds::client::connect(&self.daemon.paths().task_socket)
                .await
                .expect("task socket"),
        )
    }

    pub async fn admin(&self) -> AdmissionClient<Channel> {
        AdmissionClient::new(
            uds::client::connect(&self.daemon.paths().admin_socket)
                .await
                .expect("admin socket"),
        )
    }

    /// Every event of the node, on the admin socket.
    pub async fn admin_watch(&self) -> tonic::Streaming<pb::WatchEvent> {
        self.admin()
            .await
            .watch(pb::WatchRequest::default())
            .await
            .expect("watch")
            .into_inner()
    }

    /// `n` callers admitting `model` for `token` (60 s timeout), each on a
    /// connection of its own as separate pods' processes are; aborting the
    /// set kills them mid-call.
    pub async fn waiting_callers(
        &self,
        token: &str,
        model: &str,
        n: usize,
    ) -> tokio::task::JoinSet<Result<tonic::Response<pb::AdmitResponse>, tonic::Status>> {
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..n {
            let mut own = self.task().await;
            let req = with_timeout(admit(token, model), 60_000);
            callers.spawn(async move { own.admit(req).await });
        }
        callers
    }

    /// A second pod's slot allocation, as Allocate makes it; its token.
    pub fn allocate(&self, slots: u32) -> String {
        self.daemon
            .node()
            .allocate(AllocKind::Slots(slots))
            .expect("an allocation")
    }
}

/// The node's status, on the admin socket.
pub async fn admin_status(d: &Running) -> pb::StatusResponse {
    d.admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .expect("status")
        .into_inner()
}

pub fn admit(token: &str, model: &str) -> pb::AdmitRequest {
    pb::AdmitRequest {
        token: token.into(),
        model: model.into(),
        ..Default::default()
    }
}

pub fn with_timeout(mut r: pb::AdmitRequest, ms: u64) -> pb::AdmitRequest {
    r.timeout_ms = Some(ms);
    r
}

/// Reads the Watch stream until `pred` matches an event; fails after 10 s.
pub async fn next_matching(
    stream: &mut tonic::Streaming<pb::WatchEvent>,
    mut pred: impl FnMut(&pb::watch_event::Event) -> bool,
) -> pb::watch_event::Event {
    let wait = async {
        loop {
            let ev = stream
                .message()
                .await
                .expect("stream ok")
                .expect("stream open");
            let body = ev.event.expect("event body");
            if pred(&body) {
                return body;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the event arrives within 10 s")
}

/// A plain HTTP/1.1 GET over TCP: (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    // axum may answer chunked; the bodies checked here are small, so strip chunk framing.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    (code, body)
}

/// The value of the sample `name{labels}` in OpenMetrics text, if present.
/// `labels` must be written as the encoder orders them.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].trim().parse().ok())
}

/// Admits and returns the lease; panics (failing the test) on a refusal.
pub async fn lease_of(c: &mut AdmissionClient<Channel>, req: pb::AdmitRequest) -> pb::Lease {
    c.admit(req)
        .await
        .unwrap_or_else(|s| panic!("admission refused: {s:?}"))
        .into_inner()
        .lease
        .expect("a granted admission carries its lease")
}

/// Releases a lease; panics (failing the test) on an error.
pub async fn release(c: &mut AdmissionClient<Channel>, token: &str, lease_id: u64) {
    c.release(pb::ReleaseRequest {
        token: token.to_owned(),
        lease_id,
    })
    .await
    .unwrap_or_else(|s| panic!("release refused: {s:?}"));
}
