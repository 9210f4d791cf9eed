//! The cluster publisher's label and annotation writes, against a fake API
//! server at the HTTP layer, with paused time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster_support::*;
use serde_json::json;
use tokio::time::Instant;
use vision_node_daemon::cluster;

const A100_80: &str = "NVIDIA A100-SXM4-80GB";
const A100_40: &str = "NVIDIA A100-SXM4-40GB";

/// Two 80 GB GPUs and one 40 GB.
fn three_gpus() -> TestNode {
    TestNode::new(&[(A100_80, 81920), (A100_80, 81920), (A100_40, 40960)])
}

fn labels(slots: &str) -> std::collections::BTreeMap<String, String> {
    map(&[
        ("vision.ai/present", "true"),
        ("vision.ai/gpu.count", "3"),
        ("vision.ai/gpu.product", "NVIDIA-A100-SXM4-80GB"),
        ("vision.ai/gpu.memory-mib", "40960"),
        ("vision.ai/slots", slots),
    ])
}

fn load(stat: &std::sync::atomic::AtomicU64) -> u64 {
    stat.load(Ordering::Relaxed)
}

#[tokio::test(start_paused = true)]
async fn labels_and_annotations_are_applied_at_start_under_their_own_managers() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    let (publisher, stats) = node.publish_to(client);

    let l = api.next().await;
    l.assert_apply(cluster::LABEL_MANAGER, "labels", &labels("12"));
    let a = api.next().await;
    a.assert_apply(
        cluster::ANNOTATION_MANAGER,
        "annotations",
        &map(&[
            (
                "vision.ai/residency",
                concat!(
                    r#"[{"uuid":"GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":81920,"models":[],"loading":[],"total_mib":81920,"idle_mib":0,"pins":{}},"#,
                    r#"{"uuid":"GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":81920,"models":[],"loading":[],"total_mib":81920,"idle_mib":0,"pins":{}},"#,
                    r#"{"uuid":"GPU-00000002-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":40960,"models":[],"loading":[],"total_mib":40960,"idle_mib":0,"pins":{}}]"#
                ),
            ),
            ("vision.ai/queue-depth", "0"),
            ("vision.ai/residency-version", "2"),
        ]),
    );
    assert_eq!(a.at, l.at, "both at start, no wait");

    // Nothing changes: the labels are not rewritten, the safety net
    // included, and the annotations only re-stamped (the heartbeat).
    let restamps = api.assert_only_restamps(Duration::from_secs(150), &a).await;
    assert_eq!(restamps, 2, "at REFRESH and 2 × REFRESH");
    assert_eq!(load(&stats.label_writes), 1);
    assert_eq!(load(&stats.annotation_writes), 1 + restamps);
    assert_eq!(load(&stats.publish_errors), 0);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn labels_are_not_rewritten_for_an_admission_but_are_when_a_gpu_fails() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    let (publisher, stats) = node.publish_to(client);
    let start = api.next().await.at;
    assert_eq!(api.next().await.kind(), Kind::Annotations);

    node.preload("yolo", 0).await.expect("loaded");
    let (pod_a, lease) = node.admit_warm("yolo").await;
    // Within the annotation interval, and no label changed: silence.
    api.assert_quiet(Duration::from_secs(5)).await;
    assert_eq!(load(&stats.label_writes), 1);

    node.set_health(2, false, "Xid 79: GPU has fallen off the bus");
    let fault = Instant::now();
    let l = api.next().await;
    l.assert_apply(cluster::LABEL_MANAGER, "labels", &labels("8"));
    assert_eq!(l.at, fault, "label changes are not rate limited");
    assert_eq!(api.next().await.kind(), Kind::Event);

    // The annotations follow at the end of their interval, with everything.
    let a = api.next().await;
    assert_eq!(a.kind(), Kind::Annotations);
    assert_eq!(a.at, start + INTERVAL);
    let residency = a.residency();
    assert_eq!(residency[0]["models"], json!(["yolo"]));
    assert_eq!(residency[0]["free_mib"], json!(81920 - 100 - 500));
    assert_eq!(residency[2]["healthy"], json!(false));

    node.release(&pod_a, lease).await;
    node.set_health(2, true, "");
    let l = api.next().await;
    l.assert_apply(cluster::LABEL_MANAGER, "labels", &labels("12"));
    assert_eq!(load(&stats.label_writes), 3);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn annotation_changes_within_the_interval_coalesce_into_one_write_of_the_latest_state() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    let (publisher, stats) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    let first = api.next().await;
    assert_eq!(first.kind(), Kind::Annotations);

    tokio::time::advance(Duration::from_secs(1)).await;
    node.preload("yolo", 0).await.expect("loaded");
    tokio::time::advance(Duration::from_secs(2)).await;
    node.admit_warm("yolo").await;
    tokio::time::advance(Duration::from_secs(3)).await;
    node.preload("clip", 1).await.expect("loaded");
    node.preload("yolo", 1).await.expect("loaded");

    let a = api.next().await;
    assert_eq!(a.kind(), Kind::Annotations);
    assert_eq!(
        a.at,
        first.at + INTERVAL,
        "one write, at the end of the interval"
    );
    a.assert_apply(
        cluster::ANNOTATION_MANAGER,
        "annotations",
        &map(&[
            (
                "vision.ai/residency",
                concat!(
                    r#"[{"uuid":"GPU-00000000-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":81320,"models":["yolo"],"loading":[],"total_mib":81920,"idle_mib":0,"pins":{"yolo":1}},"#,
                    r#"{"uuid":"GPU-00000001-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":81220,"models":["yolo","clip"],"loading":[],"total_mib":81920,"idle_mib":700,"pins":{}},"#,
                    r#"{"uuid":"GPU-00000002-aaaa-bbbb-cccc-ddddeeeeffff","healthy":true,"free_mib":40960,"models":[],"loading":[],"total_mib":40960,"idle_mib":0,"pins":{}}]"#
                ),
            ),
            ("vision.ai/queue-depth", "0"),
            ("vision.ai/residency-version", "2"),
        ]),
    );

    let restamps = api.assert_only_restamps(Duration::from_secs(90), &a).await;
    assert_eq!(load(&stats.annotation_writes), 2 + restamps);
    assert_eq!(load(&stats.label_writes), 1);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_change_undone_within_the_interval_writes_nothing() {
    let node = three_gpus();
    node.preload("yolo", 0).await.expect("loaded");
    let (client, mut api) = fake_api();
    let (publisher, stats) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    let a = api.next().await;
    assert_eq!(a.residency()[0]["models"], json!(["yolo"]));
    let idle = node.free_mib(0);

    let (pod_a, lease) = node.admit_warm("yolo").await;
    tokio::time::advance(Duration::from_secs(4)).await;
    node.release(&pod_a, lease).await;
    assert_eq!(node.free_mib(0), idle);

    // The state read at the end of the interval is the one written: only
    // the heartbeat, at REFRESH after the first write, writes again.
    let restamps = api.assert_only_restamps(Duration::from_secs(90), &a).await;
    assert_eq!(restamps, 1);
    assert_eq!(load(&stats.annotation_writes), 2);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_label_write_is_retried_after_backoff_with_the_latest_labels() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    for _ in 0..3 {
        api.fail_next(Kind::Labels);
    }
    let (publisher, stats) = node.publish_to(client);

    let failed = api.next().await;
    failed.assert_apply(cluster::LABEL_MANAGER, "labels", &labels("12"));
    let t0 = failed.at;
    // The other writes go on meanwhile.
    assert_eq!(api.next().await.kind(), Kind::Annotations);
    assert_eq!(load(&stats.publish_errors), 1);

    node.set_health(2, false, "Xid 48: double-bit ECC error");
    let event = api.next().await;
    assert_eq!((event.kind(), event.at), (Kind::Event, t0));

    // 1 s, 2 s, 4 s: each retry sends what is desired by then.
    for (after_s, status) in [(1, 500), (3, 500), (7, 200)] {
        let retry = api.next().await;
        retry.assert_apply(cluster::LABEL_MANAGER, "labels", &labels("8"));
        assert_eq!(retry.at, t0 + Duration::from_secs(after_s), "{status}");
    }
    let a = api.next().await;
    assert_eq!((a.kind(), a.at), (Kind::Annotations, t0 + INTERVAL));
    assert_eq!(load(&stats.publish_errors), 3);
    assert_eq!(load(&stats.label_writes), 1);

    // Succeeded: no more label writes (only the annotations' heartbeat).
    let restamps = api.assert_only_restamps(Duration::from_secs(630), &a).await;
    assert_eq!(restamps, 10);
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_annotation_write_is_retried_with_the_latest_state() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    api.fail_next(Kind::Annotations);
    let (publisher, stats) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    let failed = api.next().await;
    assert_eq!(failed.kind(), Kind::Annotations);
    assert_eq!(failed.residency()[0]["models"], json!([]));

    node.preload("yolo", 0).await.expect("loaded");
    let retry = api.next().await;
    assert_eq!(retry.kind(), Kind::Annotations);
    assert_eq!(retry.at, failed.at + cluster::backoff::BACKOFF_MIN);
    assert_eq!(retry.residency()[0]["models"], json!(["yolo"]));
    assert_eq!(load(&stats.publish_errors), 1);
    assert_eq!(load(&stats.annotation_writes), 1);

    // The interval counts from the write that succeeded.
    node.preload("clip", 0).await.expect("loaded");
    let next = api.next().await;
    assert_eq!(next.at, retry.at + INTERVAL);
    assert_eq!(next.residency()[0]["models"], json!(["clip", "yolo"]));
    node.stop(publisher).await;
}

#[tokio::test(start_paused = true)]
async fn the_publisher_ends_when_the_node_shuts_down() {
    let node = three_gpus();
    let (client, mut api) = fake_api();
    let (publisher, _) = node.publish_to(client);
    assert_eq!(api.next().await.kind(), Kind::Labels);
    node.stop(publisher).await;
}
