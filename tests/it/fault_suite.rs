//! The fault suite's protocol part (issue 16): raw bytes, broken HTTP/2 and
//! gRPC calls with random protobuf bodies on both sockets of the daemon
//! binary, with what must hold after every round: the daemon is alive and
//! answers on both sockets, no lease was granted, and its open files come
//! back to where they were (no leaked connection).
//!
//! Quick by default (CI); `VISION_FAULTS_LONG=1` runs it long (`.ci/faults-long`).
//! The other faults live beside it: `fault_connections` (idle floods under
//! a low open-files limit), `fault_restart` (`kill -9` and restart with
//! live leases and allocations), `device_plugin`'s kubelet restart loop,
//! the kill storms (`admission_service`, `model_runtime`), and the config
//! property tests (`src/config/load/tests.rs`); all of them scale with
//! `VISION_FAULTS_LONG`.
//! Deterministic: each round's bytes come from a fixed seed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

use crate::common::AdmissionClient;
use crate::kubelet_support::DEADLINE;

/// Whether the suite runs long (`VISION_FAULTS_LONG` set, not `0`).
pub fn long() -> bool {
    std::env::var("VISION_FAULTS_LONG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `quick` in CI, `long` on demand.
pub fn scale(quick: usize, long_: usize) -> usize {
    if long() { long_ } else { quick }
}

/// splitmix64: a seeded, dependency-free source of test bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const METHODS: &[&str] = &[
    "Admit",
    "Release",
    "KeepAlive",
    "Status",
    "Watch",
    "Preload",
    "Evict",
    "ListModels",
    "SetGpuFault",
    "NoSuchMethod",
];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK "literal without indexing, new name" for short names and values.
fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, value) in headers {
        b.push(0x00);
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(value.len() as u8);
        b.extend_from_slice(value.as_bytes());
    }
    b
}

/// One hostile connection's bytes.
fn hostile(rng: &mut Rng) -> Vec<u8> {
    match rng.below(4) {
        // Noise.
        0 => {
            let n = rng.below(4096) as usize;
            rng.bytes(n)
        }
        // The preface, then frames of any type, flags, stream and length.
        1 => {
            let mut out = PREFACE.to_vec();
            for _ in 0..rng.below(8) {
                let n = rng.below(512) as usize;
                let payload = rng.bytes(n);
                let (kind, flags, stream) =
                    (rng.below(12) as u8, rng.next() as u8, rng.next() as u32);
                out.extend(frame(kind, flags, stream, &payload));
            }
            out
        }
        // A preface cut short, or a frame header that promises more than
        // comes.
        2 => {
            let mut out = PREFACE[..rng.below(PREFACE.len() as u64) as usize].to_vec();
            if rng.below(2) == 0 {
                out = PREFACE.to_vec();
                out.extend_from_slice(&[0xff, 0xff, 0xff, 0x01, 0x04, 0, 0, 0, 1]);
            }
            out
        }
        // A well-formed gRPC call with a random protobuf body.
        _ => {
            let method = METHODS[rng.below(METHODS.len() as u64) as usize];
            let path = format!("/vision.v1.Admission/{method}");
            let mut out = PREFACE.to_vec();
            out.extend(frame(0x4, 0, 0, &[]));
            let block = header_block(&[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", &path),
                (":authority", "localhost"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ]);
            out.extend(frame(0x1, 0x4, 1, &block));
            let n = rng.below(2048) as usize;
            let body = rng.bytes(n);
            let mut msg = vec![0u8];
            msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
            msg.extend_from_slice(&body);
            out.extend(frame(0x0, 0x1, 1, &msg));
            out
        }
    }
}

/// Sends `bytes`, closes our side, and waits for the daemon to close its.
async fn send_and_wait_for_close(path: &Path, bytes: &[u8]) {
    let mut conn = UnixStream::connect(path).await.expect("connect");
    // The daemon may close first (a protocol error): a failed write is fine.
    let _ = conn.write_all(bytes).await;
    let _ = conn.shutdown().await;
    let mut sink = Vec::new();
    tokio::time::timeout(DEADLINE, conn.read_to_end(&mut sink))
        .await
        .expect("the daemon closes a connection whose client is done")
        .ok();
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Kills the daemon if the test fails before it is stopped.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(path: &Path) {
    tokio::time::timeout(DEADLINE, async {
        while !path.exists() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("socket appears");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_bytes_on_both_sockets_leave_the_daemon_serving_with_nothing_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut daemon = Reap(
        Command::new(env!("CARGO_BIN_EXE_vision-node-daemon"))
            .args(["run", "--dev", "--http-addr", "127.0.0.1:0", "--state-dir"])
            .arg(&state)
            .arg("--kubelet-dir")
            .arg(dir.path().join("device-plugins"))
            .arg("--pod-resources-socket")
            .arg(dir.path().join("pod-resources/kubelet.sock"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = daemon.0.id();
    let task = state.join("pods/agent.sock");
    let admin = state.join("admin.sock");
    let token_file = state.join("dev-token");
    wait_for(&token_file).await;
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let mut admin_client = AdmissionClient::new(uds::client::connect(&admin).await.unwrap());
    let mut task_client = AdmissionClient::new(uds::client::connect(&task).await.unwrap());
    // One answered call on each connection: both are accepted (a connect
    // returns once the kernel queues it, before the daemon accepts), so
    // the baseline counts their descriptors.
    admin_client
        .status(pb::StatusRequest::default())
        .await
        .unwrap();
    task_client
        .status(pb::StatusRequest {
            token: token.clone(),
        })
        .await
        .expect("task socket serves");
    let baseline = open_files(pid);

    let rounds = scale(40, 2_000);
    let per_round = 8;
    let mut rng = Rng(0x0016_1616);
    for round in 0..rounds {
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..per_round {
            let bytes = hostile(&mut rng);
            let path = if i % 2 == 0 {
                task.clone()
            } else {
                admin.clone()
            };
            calls.spawn(async move { send_and_wait_for_close(&path, &bytes).await });
        }
        while let Some(r) = calls.join_next().await {
            r.expect("a round's connection");
        }
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "the daemon died in round {round}"
        );
    }

    // Both sockets still serve; no lease came of it; every connection's
    // descriptor is closed (polled until back at the baseline, bounded).
    let all = admin_client
        .status(pb::StatusRequest::default())
        .await
        .expect("admin socket serves")
        .into_inner();
    assert_eq!(all.active_leases, 0);
    task_client
        .status(pb::StatusRequest { token })
        .await
        .expect("task socket serves");
    let settled = tokio::time::timeout(DEADLINE, async {
        loop {
            let now = open_files(pid);
            if now <= baseline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let now = open_files(pid);
    eprintln!(
        "{} hostile connections ({rounds} rounds); open files {baseline} before, {now} after",
        rounds * per_round
    );
    assert!(
        settled.is_ok(),
        "descriptors leaked: {baseline} before, {now} after"
    );
}
