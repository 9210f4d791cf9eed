//! visionctl, the binary, against a daemon started in-process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common::*;
use serde_json::Value;
use vision_node_daemon::config::Config;
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
    assert!(err.starts_with("visionctl: NOT_FOUND: "), "{err}");

    // Scripts get the same failure as JSON on stdout, and nothing on stderr.
    let (ok, out, err) = visionctl(&state, &["release", &id.to_string(), "-o", "json"]).await;
    assert!(!ok);
    assert_eq!(err, "");
    let e: Value = serde_json::from_str(&out).expect("a JSON error");
    assert_eq!(e["error"]["code"], "NOT_FOUND", "{out}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admit again")
    );
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
    let resident = table
        .lines()
        .find(|l| l.starts_with("sd3b "))
        .expect("a resident row for sd3b");
    assert!(resident.ends_with("1  in use"), "one pin: {table}");

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
    assert!(clip.contains("  GPU 1  "), "resident on GPU 1: {clip}");
    let (ok, out, err) = visionctl(&state, &["evict", "clip-vit-b32", "-o", "json"]).await;
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(r["model"], "clip-vit-b32");
    assert_eq!(r["gpus"][0]["gpu_index"], 1);
    assert_eq!(r["gpus"][0]["gpu_uuid"], uuid.as_str());
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
    let lease = lease_of(&mut d.task().await, admit(&d.token, "yolo-v8n")).await;
    while !lines.last().unwrap().contains(" granted: yolo-v8n") {
        lines.push(tokio::task::block_in_place(|| next(&rx)));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(lines[0].contains("queue:"), "{lines:?}");
    // Stamped with the wall clock (UTC), not the daemon's uptime.
    let stamp: k8s_openapi::jiff::Timestamp = format!("{}Z", lines[0][..23].replace(' ', "T"))
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    let skew = k8s_openapi::jiff::Timestamp::now().duration_since(stamp);
    assert!(
        skew.unsigned_abs() < std::time::Duration::from_secs(60),
        "{skew:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("model yolo-v8n loaded")),
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().contains(&format!(
            "lease {} granted: yolo-v8n on GPU ",
            lease.lease_id
        )),
        "{lines:?}"
    );
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
        (
            r["gpu_index"].as_u64(),
            r["gpu_uuid"].as_str(),
            r["healthy"].as_bool()
        ),
        (Some(1), Some(uuid.as_str()), Some(true))
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_0_means_never_queue_and_needs_no_unit() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    // sd3b's working memory (6000 MiB) fits three times on one 24 GiB GPU;
    // admit until the pod's node is full, then one more without waiting.
    let mut granted = 0;
    let refused = loop {
        let (ok, out, err) =
            visionctl(&state, &["admit", "sd3b", "--timeout", "0", "-o", "json"]).await;
        if !ok {
            break out;
        }
        assert_eq!(err, "", "no spinner or noise when stderr is not a terminal");
        granted += 1;
        assert!(granted < 32, "never refused: {out}");
    };
    let e: Value = serde_json::from_str(&refused).expect("a JSON error");
    assert_eq!(e["error"]["code"], "RESOURCE_EXHAUSTED", "{refused}");
    assert!(granted >= 2, "{granted} grants before the refusal");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_answers_name_what_they_acted_on() {
    let d = start(fast_dev_config()).await;
    let state = state_dir(&d);
    let (ok, out, err) = visionctl(&state, &["preload", "yolo-v8n", "-o", "json"]).await;
    assert!(ok, "{err}");
    assert_eq!(err, "", "silent stderr when piped");
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["model"], "yolo-v8n");
    assert!(p["gpu_uuid"].as_str().unwrap().starts_with("GPU-"));

    let (ok, out, _) = visionctl(&state, &["admit", "yolo-v8n", "-o", "json"]).await;
    assert!(ok);
    let id = serde_json::from_str::<Value>(&out).unwrap()["lease_id"]
        .as_u64()
        .unwrap();
    let (ok, out, _) = visionctl(&state, &["keepalive", &id.to_string(), "-o", "json"]).await;
    assert!(ok);
    let k: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(k["lease_id"], id);
    assert!(k["expires_in_ms"].as_u64().unwrap() > 0);
    let (ok, out, _) = visionctl(&state, &["release", &id.to_string(), "-o", "json"]).await;
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["lease_id"], id);

    // An unreachable daemon is a JSON error too.
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = visionctl(dir.path(), &["status", "-o", "json"]).await;
    assert!(!ok);
    let e: Value = serde_json::from_str(&out).expect("a JSON error");
    assert_eq!(e["error"]["code"], "UNAVAILABLE");
    d.daemon.shutdown().await;
}

/// On a terminal, a cold preload shows a spinner until the answer, which
/// replaces it. `script` (util-linux) gives visionctl a pseudo-terminal.
#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_sees_a_spinner_while_a_cold_load_waits() {
    // The dev config's load times are simulated: clip-vit-b32 takes 1 s,
    // about ten of the spinner's ticks.
    let d = start(Config::dev()).await;
    let state = state_dir(&d);
    let command = format!(
        "{} --state-dir {} preload clip-vit-b32",
        env!("CARGO_BIN_EXE_visionctl"),
        state.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("VISION_SOCKET")
        .env_remove("VISION_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("script runs"))
        .await
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    let spinning = tty.find("loading clip-vit-b32 (").expect(&tty);
    let answer = tty.find("clip-vit-b32 loaded on GPU").expect(&tty);
    assert!(spinning < answer, "{tty:?}");
    d.daemon.shutdown().await;
}
