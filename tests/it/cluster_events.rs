//! Kubernetes Events on the Node, against a fake API server at the HTTP
//! layer, with paused time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster_support::*;
use serde_json::json;

/// Checks an `events.k8s.io/v1` create regarding our Node.
fn assert_event(r: &Recorded, type_: &str, reason: &str, action: &str, note: &str) {
    assert_eq!(r.method, http::Method::POST, "{r:?}");
    assert_eq!(r.path, EVENTS_PATH);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let b = &r.body;
    assert_eq!(b["apiVersion"], "events.k8s.io/v1");
    assert_eq!(b["kind"], "Event");
    assert_eq!(b["type"], type_);
    assert_eq!(b["reason"], reason);
    assert_eq!(b["action"], action);
    assert_eq!(b["note"], note);
    assert_eq!(
        b["regarding"],
        json!({"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": NODE})
    );
    assert_eq!(b["reportingController"], "vision-node-daemon");
    assert_eq!(b["reportingInstance"], NODE);
    assert!(
        b["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with(&format!("{NODE}."))),
        "{b}"
    );
    assert!(b["eventTime"].is_string(), "{b}");
    assert_eq!(b["series"], serde_json::Value::Null);
}

fn two_gpus(failing: &[&str]) -> TestNode {
    TestNode::with_failing_models(&[("NVIDIA L4", 24576), ("NVIDIA L4", 24576)], failing)
}

#[tokio::test(start_paused = true)]
async fn kubelet_registration_and_gpu_faults_are_node_events_but_admissions_are_not() {
    let node = two_gpus(&[]);
    let (client, mut api) = fake_api();
    let (publisher, stats) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    assert_eq!(api.next().await.kind(), Kind::Annotations);

    node.registered("vision.ai/slot", true);
    assert_event(
        &api.next().await,
        "Normal",
        "DevicePluginRegistered",
        "Register",
        "vision.ai/slot: registered with kubelet (endpoint vision.ai/slot.sock)",
    );

    // Routine work and a failed registration attempt: no Events (the
    // annotation write they cause comes only at the end of the interval).
    node.registered("vision.ai/vram", false);
    node.preload("yolo", 0).await.expect("loaded");
    for _ in 0..20 {
        let (token, lease) = node.admit_warm("yolo").await;
        node.release(&token, lease).await;
    }
    api.assert_quiet(Duration::from_secs(5)).await;

    node.set_health(1, false, "Xid 79: GPU has fallen off the bus");
    assert_eq!(api.next().await.kind(), Kind::Labels);
    let uuid = gpu_uuid(1);
    assert_event(
        &api.next().await,
        "Warning",
        "GpuUnhealthy",
        "HealthCheck",
        &format!(
            "GPU 1 ({uuid}) is unhealthy: Xid 79: GPU has fallen off the bus; \
             its models were dropped and its leases revoked"
        ),
    );

    node.set_health(1, true, "");
    assert_eq!(api.next().await.kind(), Kind::Labels);
    assert_event(
        &api.next().await,
        "Normal",
        "GpuRecovered",
        "HealthCheck",
        &format!("GPU 1 ({uuid}) is healthy again"),
    );

    // Only the coalesced annotation write is left (and its heartbeat).
    let a = api.next().await;
    assert_eq!(a.kind(), Kind::Annotations);
    api.assert_only_restamps(Duration::from_secs(120), &a).await;
    assert_eq!(stats.events_published.load(Ordering::Relaxed), 3);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_model_load_is_a_warning_event() {
    let node = two_gpus(&["clip"]);
    let (client, mut api) = fake_api();
    let (publisher, _) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    assert_eq!(api.next().await.kind(), Kind::Annotations);

    node.preload("clip", 0)
        .await
        .expect_err("the runtime fails it");
    assert_event(
        &api.next().await,
        "Warning",
        "ModelLoadFailed",
        "LoadModel",
        &format!(
            "model clip (600 MiB) failed to load on GPU 0 ({}): model runtime refused: CUDA error: out of memory",
            gpu_uuid(0)
        ),
    );
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_repeated_fault_is_counted_on_its_first_event_and_another_gpu_gets_its_own() {
    let node = two_gpus(&[]);
    let (client, mut api) = fake_api();
    let (publisher, _) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    assert_eq!(api.next().await.kind(), Kind::Annotations);
    let mut next_event = async || loop {
        let r = api.next().await;
        if r.kind() == Kind::Event {
            return r;
        }
    };

    node.set_health(0, false, "Xid 79");
    let first = next_event().await;
    assert_eq!(first.method, http::Method::POST);
    node.set_health(0, true, "");
    assert_eq!(next_event().await.body["reason"], "GpuRecovered");

    // The same fault again: a PATCH of the first Event's series.
    node.set_health(0, false, "Xid 79");
    let repeat = next_event().await;
    assert_eq!(repeat.method, http::Method::PATCH);
    let name = first.body["metadata"]["name"].as_str().expect("a name");
    assert_eq!(repeat.path, format!("{EVENTS_PATH}/{name}"));
    assert_eq!(repeat.body["series"]["count"], 2);
    assert_eq!(repeat.body["note"], first.body["note"]);

    // Another GPU's fault is an Event of its own, with its own note.
    node.set_health(1, false, "Xid 79");
    let other = next_event().await;
    assert_eq!(other.method, http::Method::POST);
    assert!(
        other.body["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("GPU 1 ")),
        "{}",
        other.body
    );
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_event_is_retried_after_backoff() {
    let node = two_gpus(&[]);
    let (client, mut api) = fake_api();
    api.fail_next(Kind::Event);
    let (publisher, stats) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    assert_eq!(api.next().await.kind(), Kind::Annotations);

    node.registered("vision.ai/slot", true);
    let failed = api.next().await;
    assert_eq!(failed.kind(), Kind::Event);
    let retry = api.next().await;
    assert_eq!(retry.kind(), Kind::Event);
    assert_eq!(retry.at, failed.at + Duration::from_secs(1));
    assert_eq!(retry.body["reason"], "DevicePluginRegistered");
    assert_eq!(stats.publish_errors.load(Ordering::Relaxed), 1);
    assert_eq!(stats.events_published.load(Ordering::Relaxed), 1);
    node.stop(publisher).await;
}
