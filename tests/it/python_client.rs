//! The shipped Python example (examples/python/vision_client.py, on the
//! vision-node-client package in clients/python, with grpcio's defaults)
//! against a real daemon on its task socket: Status, Watch, Admit with the
//! lease kept alive, Release.

use std::process::Command;

use crate::common::*;
use crate::pyenv;
use serde_json::Value;

/// Runs examples/python/vision_client.py with `args`; returns its JSON line.
async fn client(d: &Running, token: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(pyenv::python());
    cmd.arg(pyenv::repo().join("examples/python/vision_client.py"))
        .args(args)
        .arg("--socket")
        .arg(&d.daemon.paths().task_socket)
        .arg("--token")
        .arg(token)
        // The package from the source tree: its only dependencies, grpcio and
        // protobuf, are in the test venv.
        .env("PYTHONPATH", pyenv::repo().join("clients/python/src"))
        .env_remove("NVIDIA_VISIBLE_DEVICES")
        .env_remove("CUDA_VISIBLE_DEVICES");
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
async fn the_python_example_admits_releases_and_watches() {
    let d = start(fast_dev_config()).await;
    let summary = client(&d, &d.token, &["yolo-v8n", "--tasks", "2", "--watch"]).await;
    assert_eq!(summary["node"], "dev-node", "{summary}");
    assert_eq!(summary["slots"], 16, "{summary}");
    assert_eq!(summary["gpus"], 2, "{summary}");
    let leases = summary["leases"].as_array().expect("two leases");
    assert_eq!(leases.len(), 2, "{summary}");
    assert_eq!(leases[0]["warm"], false, "{summary}");
    assert_eq!(leases[1]["warm"], true, "{summary}");
    let gpu = leases[0]["gpu_index"].clone();
    assert_eq!(
        leases[0]["cuda_device"], gpu,
        "no visibility limits: the node's numbering"
    );
    let stats = &summary["stats"];
    assert_eq!(
        (&stats["tasks"], &stats["succeeded"]),
        (&2.into(), &2.into()),
        "{summary}"
    );
    assert_eq!(stats["warm_ratio"], 0.5, "{summary}");
    let events: Vec<&str> = summary["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events[0], "QueueChanged", "{events:?}");
    for kind in [
        "ModelLoading",
        "ModelLoaded",
        "LeaseGranted",
        "LeaseReleased",
    ] {
        assert!(events.contains(&kind), "Watch delivered {kind}: {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| **e == "LeaseReleased").count(),
        2,
        "{events:?}"
    );
    // Every lease went back: the daemon agrees.
    assert_eq!(d.daemon.node().engine_status().leases, 0);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_reports_refusals_with_the_daemons_words() {
    let d = start(fast_dev_config()).await;
    let refused = client(&d, "forged-token", &["yolo-v8n"]).await;
    assert_eq!(refused["error"], "PERMISSION_DENIED", "{refused}");
    let unknown = client(&d, &d.token, &["no-such-model"]).await;
    assert_eq!(unknown["error"], "NOT_FOUND", "{unknown}");
    assert!(
        unknown["details"]
            .as_str()
            .unwrap()
            .contains("sdxl-refiner"),
        "{unknown}"
    );
    d.daemon.shutdown().await;
}
