//! Issue 16, item 3: a `kill -9` of the daemon binary and a restart on the
//! same state dir. Allocations (tokens) survive; leases do not, and an id
//! from before the crash must never name a lease granted after it.

use std::path::Path;
use std::process::{Command, Stdio};

use tonic::Code;
use vision_node_daemon::node::epoch;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

use crate::common::{AdmissionClient, admit, lease_of};
use crate::kubelet_support::{DEADLINE, FakeKubelet, FakePodResources, pod};

/// Kills the daemon if the test fails before it is stopped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon binary in dev mode on `dir`'s state, kubelet and PodResources.
fn spawn(dir: &Path) -> Reap {
    Reap(
        Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
            .args(["run", "--dev", "--http-addr", "127.0.0.1:0", "--state-dir"])
            .arg(dir.join("state"))
            .arg("--kubelet-dir")
            .arg(dir.join("device-plugins"))
            .arg("--pod-resources-socket")
            .arg(dir.join("pod-resources").join("kubelet.sock"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn client(path: &Path) -> AdmissionClient<tonic::transport::Channel> {
    AdmissionClient::new(uds::client::connect(path).await.expect("socket"))
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_an_old_lease_id_is_not_found_and_never_releases_a_new_lease() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = FakeKubelet::start(&dir.path().join("device-plugins")).await;
    let pods =
        FakePodResources::start(&dir.path().join("pod-resources").join("kubelet.sock")).await;
    let task = dir.path().join("state/pods/agent.sock");
    let admin = dir.path().join("state/admin.sock");

    let mut daemon = spawn(dir.path());
    kubelet.next_registration(DEADLINE).await;
    kubelet.next_registration(DEADLINE).await;
    let status = client(&admin)
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let device = format!("{}-slot-0", status.gpus[0].uuid);
    let resp = kubelet
        .allocate("vision.ai/slot", &[&device])
        .await
        .unwrap();
    let token = resp.envs["VISION_TOKEN"].clone();
    pods.set_pods(vec![pod(
        "infer-0",
        "default",
        "main",
        "vision.ai/slot",
        &[&device],
    )]);
    let mut before = lease_of(&mut client(&task).await, admit(&token, "yolo-v8n")).await;

    // kill -9 (no shutdown, no cleanup) and restart, with a live lease and
    // allocation each time; quick in CI, long with VISION_FAULTS_LONG.
    let rounds = crate::fault_suite::scale(2, 50);
    for round in 0..rounds {
        daemon.0.kill().unwrap();
        daemon.0.wait().unwrap();
        daemon = spawn(dir.path());
        kubelet.next_registration(DEADLINE).await;
        kubelet.next_registration(DEADLINE).await;

        // The pod's token survived; its lease did not. It admits again.
        let mut c = client(&task).await;
        let after = lease_of(&mut c, admit(&token, "yolo-v8n")).await;
        assert_ne!(after.lease_id, before.lease_id, "ids never repeat");
        assert_eq!(
            epoch::epoch_of(after.lease_id),
            epoch::epoch_of(before.lease_id) + 1,
            "round {round}: a run of its own: {} then {}",
            before.lease_id,
            after.lease_id
        );

        // The holder from before the crash releases its old id: NOT_FOUND,
        // and the new lease stands.
        let e = c
            .release(pb::ReleaseRequest {
                token: token.clone(),
                lease_id: before.lease_id,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{}", e.message());
        let mine = c
            .status(pb::StatusRequest {
                token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            mine.leases.iter().map(|l| l.lease_id).collect::<Vec<_>>(),
            [after.lease_id]
        );
        before = after;
    }
    eprintln!("{rounds} kill -9 restarts with a live lease and allocation");
}
