//! Helpers shared by the daemon's integration tests: a daemon started
//! in-process on a temp state dir, and clients over its real Unix sockets.
#![allow(dead_code)]

use std::time::Duration;

use tempfile::TempDir;
use tonic::transport::Channel;
use vision_node_daemon::config::{self, Config, ModelSpec, RuntimeKind, SimulatedGpu};
use vision_node_daemon::daemon::{Daemon, Options};
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
pub fn kubelet_options(dir: &std::path::Path) -> vision_node_daemon::deviceplugin::Options {
    vision_node_daemon::deviceplugin::Options {
        dir: dir.join("device-plugins"),
        pod_resources_socket: dir.join("pod-resources").join("kubelet.sock"),
        reconcile_interval: Duration::from_millis(50),
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

    /// A second pod's slot allocation, as Allocate would make it.
    pub fn allocate(&self, token: &str, slots: u32) {
        self.daemon
            .node()
            .with_engine(|e, now| e.allocate_slots(token, slots, now))
            .expect("fresh token");
    }
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

pub fn config_models() -> Vec<ModelSpec> {
    config::Config::dev().models
}
