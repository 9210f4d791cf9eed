//! Issue 16, item 2: idle connections must not lock the daemon out. The
//! daemon binary runs as a child under a 256 open-files limit (soft and
//! hard, so it cannot raise it), behind a fake kubelet; the test floods its
//! task socket with connections that never say a word.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

use crate::common::AdmissionClient;
use crate::kubelet_support::{DEADLINE, FakeKubelet, FakePodResources};

const OPEN_FILES: u64 = 256;
/// More than the open-files limit: without a cap, the daemon runs out.
const FLOOD: usize = 400;

/// Kills the daemon if the test fails before it is stopped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_socket(path: &std::path::Path) {
    tokio::time::timeout(DEADLINE, async {
        while UnixStream::connect(path).await.is_err() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never accepted", path.display()));
}

/// Whether the daemon closed `conn` (EOF or reset) within `limit`.
async fn closed_within(conn: &mut UnixStream, limit: Duration) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(limit, conn.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_flood_on_the_task_socket_never_blocks_the_admin_or_the_kubelet_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(&dir.path().join("device-plugins")).await;
    let pod_resources = dir.path().join("pod-resources").join("kubelet.sock");
    let _pods = FakePodResources::start(&pod_resources).await;
    let state = dir.path().join("state");
    let script = format!("ulimit -n {OPEN_FILES} && exec \"$0\" \"$@\"");
    let _child = Reap(
        Command::new("sh")
            .args(["-c", &script, env!("CARGO_BIN_EXE_vision-node-daemon")])
            .args(["run", "--dev", "--http-addr", "127.0.0.1:0", "--state-dir"])
            .arg(&state)
            .arg("--kubelet-dir")
            .arg(dir.path().join("device-plugins"))
            .arg("--pod-resources-socket")
            .arg(&pod_resources)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let task = state.join("pods/agent.sock");
    let admin = state.join("admin.sock");
    wait_for_socket(&admin).await;
    kubelet.next_registration(DEADLINE).await;
    kubelet.next_registration(DEADLINE).await;

    // The flood: connections that never send the HTTP/2 preface, each
    // watched for the daemon closing it.
    let started = Instant::now();
    let mut watching = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let mut conn = UnixStream::connect(&task).await.expect("connect queues");
        // The server sends its SETTINGS at once; closed means EOF or reset.
        watching.spawn(async move {
            let mut sink = Vec::new();
            let _ = conn.read_to_end(&mut sink).await;
        });
    }
    // The daemon keeps its cap of them and closes the rest at once.
    let cap = vision_node_daemon::daemon::task_connection_cap(OPEN_FILES);
    assert!(cap < FLOOD);
    for _ in 0..FLOOD - cap {
        tokio::time::timeout(DEADLINE, watching.join_next())
            .await
            .expect("connections over the cap are closed at once");
    }
    eprintln!(
        "{FLOOD} connections, {} closed over the cap of {cap} within {:?}",
        FLOOD - cap,
        started.elapsed()
    );
    assert!(
        watching.try_join_next().is_none(),
        "the {cap} within the cap are held (until their handshake timeout)"
    );
    assert_eq!(watching.len(), cap);

    // A new task-socket connection is turned away at once, not queued.
    let started = Instant::now();
    let mut extra = UnixStream::connect(&task).await.unwrap();
    assert!(closed_within(&mut extra, DEADLINE).await);
    eprintln!("over-cap connection closed after {:?}", started.elapsed());

    // The admin socket answers while the task socket is full...
    let started = Instant::now();
    let mut admin_client =
        AdmissionClient::new(uds::client::connect(&admin).await.expect("admin connects"));
    let status = tokio::time::timeout(DEADLINE, admin_client.status(pb::StatusRequest::default()))
        .await
        .expect("the admin socket answers during the flood")
        .unwrap();
    assert!(!status.into_inner().gpus.is_empty());
    eprintln!("admin Status during the flood: {:?}", started.elapsed());

    // ...and so do both plugin sockets, dialled by kubelet, also after a
    // kubelet restart.
    for resource in ["vision.ai/slot", "vision.ai/vram"] {
        tokio::time::timeout(DEADLINE, kubelet.options(resource))
            .await
            .expect("the plugin socket answers during the flood");
    }
    let kubelet = kubelet.restart().await;
    kubelet.next_registration(DEADLINE).await;
    kubelet.next_registration(DEADLINE).await;
    tokio::time::timeout(DEADLINE, kubelet.options("vision.ai/slot"))
        .await
        .expect("the plugin socket answers after a kubelet restart");

    // The handshake timeout closes every silent connection (a real wait on
    // each one's EOF, bounded), and the task socket serves again.
    let started = Instant::now();
    tokio::time::timeout(uds::guard::HANDSHAKE_TIMEOUT + DEADLINE, async {
        while watching.join_next().await.is_some() {}
    })
    .await
    .expect("every silent connection is closed at its handshake timeout");
    eprintln!("silent connections closed after {:?}", started.elapsed());
    let token = std::fs::read_to_string(state.join("dev-token")).unwrap();
    let mut task_client =
        AdmissionClient::new(uds::client::connect(&task).await.expect("task connects"));
    task_client
        .status(pb::StatusRequest {
            token: token.trim().to_owned(),
        })
        .await
        .expect("the task socket serves once the flood is gone");
}
