//! visionctl, the binary, against a daemon started in-process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::Value;
use vision_node_daemon::proto::vision::v1 as pb;

/// Runs visionctl with `args` (off the async threads) and returns (exit ok, stdout, stderr).
pub(crate) async fn visionctl(state: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_visionctl"));
    cmd.arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("VISION_SOCKET")
        .env_remove("VISION_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("visionctl runs"))
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn state_dir(d: &Running) -> std::path::PathBuf {
    d.daemon.paths().admin_socket.parent().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn admit_and_release_by_script_with_the_dev_token() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    let (ok, out, err) = visionctl(
        &state,
        &["admit", "yolo-v8n", "--timeout", "5s", "--output", "json"],
    )
    .await;
    assert!(ok, "{err}");
    let lease: Value = serde_json::from_str(&out).expect("JSON lease");
    assert_eq!(lease["model"], "yolo-v8n");
    let id = lease["lease_id"].as_u64().expect("lease id");
    assert_eq!(d.daemon.node().engine_status().leases, 1);

    let (ok, out, err) = visionctl(&state, &["release", &id.to_string()]).await;
    assert!(ok, "{err}");
    assert_eq!(out, format!("released lease {id}\n"));
    assert_eq!(d.daemon.node().engine_status().leases, 0);

    let (ok, _, err) = visionctl(&state, &["release", &id.to_string()]).await;
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_table_and_json_agree_with_the_daemon() {
    let d = start(fast_dev_config()).await;
    d.task().await.admit(admit(&d.token, "sd3b")).await.unwrap();
    let state = state_dir(&d);
    let (ok, table, err) = visionctl(&state, &["status"]).await;
    assert!(ok, "{err}");
    assert!(table.contains("node dev-node"), "{table}");
    assert!(table.contains("NVIDIA L4 (simulated)"), "{table}");
    assert!(table.contains("sd3b"), "{table}");
    assert!(table.contains("pins  1"), "{table}");

    let (ok, json, _) = visionctl(&state, &["status", "-o", "json"]).await;
    assert!(ok);
    let s: Value = serde_json::from_str(&json).unwrap();
    let engine = d.daemon.node().engine_status();
    for (g, want) in s["gpus"].as_array().unwrap().iter().zip(&engine.gpus) {
        assert_eq!(g["free_mib"].as_u64().unwrap(), want.free_mib);
        assert_eq!(g["weights_mib"].as_u64().unwrap(), want.weights_mib);
        assert!(
            table.contains(&format!("{} MiB", want.free_mib)),
            "table shows free {}: {table}",
            want.free_mib
        );
    }
    assert_eq!(s["active_leases"], 1);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn preload_models_and_evict_from_the_command_line() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    let (ok, out, err) = visionctl(&state, &["preload", "clip-vit-b32", "--gpu", "1"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("clip-vit-b32 loaded on GPU 1"), "{out}");
    let uuid = out
        .split(['(', ')'])
        .nth(1)
        .expect("the GPU UUID in parentheses")
        .to_owned();
    let (ok, out, _) = visionctl(&state, &["models"]).await;
    assert!(ok);
    let clip = out
        .lines()
        .find(|l| l.starts_with("clip-vit-b32"))
        .expect("clip row");
    let tail: String = uuid.chars().skip(uuid.len() - 12).collect();
    assert!(
        clip.contains(&format!("…{tail}")),
        "resident on GPU {uuid}: {clip}"
    );
    let (ok, out, err) = visionctl(&state, &["evict", "clip-vit-b32"]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("clip-vit-b32 evicted from GPU-"), "{out}");
    let (ok, _, err) = visionctl(&state, &["evict", "clip-vit-b32"]).await;
    assert!(!ok && err.contains("not resident"), "{err}");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_events_as_lines() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    let mut child = Command::new(env!("CARGO_BIN_EXE_visionctl"))
        .arg("--state-dir")
        .arg(&state)
        .arg("watch")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("a line within 10 s")
    };
    // The first line (the queue depth) proves the stream is open before we act.
    let mut lines = vec![tokio::task::block_in_place(|| next(&rx))];
    d.task()
        .await
        .admit(admit(&d.token, "yolo-v8n"))
        .await
        .unwrap();
    while !lines.last().unwrap().contains("lease granted") {
        lines.push(tokio::task::block_in_place(|| next(&rx)));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(lines[0].contains("queue:"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("model yolo-v8n loaded")),
        "{lines:?}"
    );
    assert!(lines.last().unwrap().contains("lease granted"), "{lines:?}");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_daemon_is_reported_with_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = visionctl(dir.path(), &["status"]).await;
    assert!(!ok);
    assert!(
        err.contains("admin.sock") && err.contains("is the daemon running"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_and_clear_a_simulated_gpu_from_the_command_line() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    let (ok, out, err) = visionctl(&state, &["fault", "1", "--reason", "Xid 48"]).await;
    assert!(ok, "{err}");
    let uuid = d.daemon.node().gpus()[1].uuid.clone();
    assert_eq!(out, format!("GPU 1 ({uuid}) faulted\n"));
    let healthy = |d: &Running| d.daemon.node().engine_status().gpus[1].healthy;
    // The fault reaches the engine through the health watcher (asynchronously).
    let mut watch = d
        .admin()
        .await
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    if healthy(&d) {
        next_matching(
            &mut watch,
            |b| matches!(b, pb::watch_event::Event::GpuHealth(h) if !h.healthy),
        )
        .await;
    }
    assert!(!healthy(&d));
    let (ok, out, err) = visionctl(&state, &["fault", &uuid, "--clear", "-o", "json"]).await;
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        (r["gpu_index"].as_u64(), r["gpu_uuid"].as_str()),
        (Some(1), Some(uuid.as_str()))
    );
    d.daemon.shutdown().await;
}
