//! The shipped Python example client (grpcio, default channel options)
//! against a real daemon on its task socket: Watch, Status, Admit, KeepAlive
//! thread, Release.

use std::process::Command;

use crate::common::*;
use crate::pyenv;
use serde_json::Value;

/// Runs examples/python/vision_client.py with `args`; returns its JSON line.
async fn client(d: &Running, token: &str, args: &[&str]) -> Value {
    let stubs = pyenv::stubs("vision/v1/admission.proto");
    let mut cmd = Command::new(pyenv::python());
    cmd.arg(pyenv::repo().join("examples/python/vision_client.py"))
        .arg("--socket")
        .arg(&d.daemon.paths().task_socket)
        .arg("--token")
        .arg(token)
        .args(args)
        .env("PYTHONPATH", stubs.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python runs"))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_owned();
    serde_json::from_str(&last).unwrap_or_else(|e| {
        panic!(
            "no JSON from vision_client.py {args:?} ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_admits_releases_and_watches_with_default_grpcio_options() {
    let d = start(fast_dev_config()).await;
    let summary = client(&d, &d.token, &["demo", "yolo-v8n"]).await;
    assert_eq!(summary["node"], "dev-node", "{summary}");
    assert_eq!(summary["slots"], 16, "{summary}");
    assert_eq!(summary["gpus"], 2, "{summary}");
    let leases = summary["leases"].as_array().expect("two leases");
    assert_eq!(leases.len(), 2, "{summary}");
    assert_eq!(
        leases[0].get("warm"),
        None,
        "the first is cold (false is omitted in proto JSON): {summary}"
    );
    assert_eq!(leases[1]["warm"], true, "{summary}");
    let events: Vec<&str> = summary["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for kind in [
        "queue",
        "model_loading",
        "model_loaded",
        "lease_granted",
        "lease_released",
    ] {
        assert!(events.contains(&kind), "Watch delivered {kind}: {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| **e == "lease_released").count(),
        2,
        "{events:?}"
    );
    // Every lease went back: the daemon agrees.
    assert_eq!(d.daemon.node().engine_status().leases, 0);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_sees_clear_errors() {
    let d = start(fast_dev_config()).await;
    let refused = client(&d, "forged-token", &["run", "yolo-v8n"]).await;
    assert_eq!(refused["error"], "PERMISSION_DENIED", "{refused}");
    let unknown = client(&d, &d.token, &["run", "no-such-model"]).await;
    assert_eq!(unknown["error"], "NOT_FOUND", "{unknown}");
    assert!(
        unknown["details"]
            .as_str()
            .unwrap()
            .contains("sdxl-refiner"),
        "{unknown}"
    );
    let status = client(&d, &d.token, &["status"]).await;
    assert_eq!(status["node"], "dev-node", "{status}");
    d.daemon.shutdown().await;
}
