//! `/metrics`, `/healthz`, `/readyz` after known operations; `/metrics` and
//! the Status API (what `visionctl status` shows) agree.

use crate::common::*;
use crate::kubelet_support::{DEADLINE, FakeKubelet};
use pb::watch_event::Event as Body;
use vision_node_daemon::proto::vision::v1 as pb;

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_kubelet_registration_and_health_is_always_ok() {
    let d = start(fast_dev_config()).await;
    let addr = d.daemon.http_addr().expect("http served");
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".to_string()));
    let (code, body) = http_get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("not registered with kubelet"), "{body}");

    let mut watch = d
        .admin()
        .await
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let _kubelet = FakeKubelet::start(&d.dir.path().join("device-plugins")).await;
    // Each registration is an event; readiness follows the last of them.
    let ready = async {
        loop {
            next_matching(
                &mut watch,
                |b| matches!(b, Body::Kubelet(k) if k.registered),
            )
            .await;
            if http_get(addr, "/readyz").await == (200, "ready\n".to_string()) {
                return;
            }
        }
    };
    tokio::time::timeout(DEADLINE, ready)
        .await
        .expect("ready once both plugins registered");
    let (_, text) = http_get(addr, "/metrics").await;
    assert_eq!(
        sample(
            &text,
            "vision_kubelet_registrations_total{resource=\"vision.ai/slot\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_kubelet_registered{resource=\"vision.ai/vram\"}"
        ),
        Some(1.0)
    );
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_known_operations_and_agree_with_status() {
    let mut cfg = small_config(
        8_000,
        vec![model("big", 5_000, 2_000, 1), model("small", 100, 100, 4)],
    );
    cfg.admission.queue_limit = 1;
    let d = start(cfg).await;
    let addr = d.daemon.http_addr().unwrap();
    let mut c = d.task().await;
    let cold = lease_of(&mut c, admit(&d.token, "small")).await;
    release(&mut c, &d.token, cold.lease_id).await;
    let warm = lease_of(&mut c, admit(&d.token, "small")).await;
    assert!(warm.warm);
    let big = lease_of(&mut c, admit(&d.token, "big")).await;
    let e = c
        .admit(with_timeout(admit(&d.token, "big"), 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let _ = big;

    let (code, text) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text");
    assert_eq!(
        sample(&text, "vision_admissions_total{outcome=\"granted_cold\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "vision_admissions_total{outcome=\"granted_warm\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_admissions_total{outcome=\"no_capacity_now\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "vision_model_loads_total"), Some(2.0));
    assert_eq!(sample(&text, "vision_leases_released_total"), Some(1.0));
    assert_eq!(sample(&text, "vision_active_leases"), Some(2.0));
    assert_eq!(sample(&text, "vision_queue_depth"), Some(0.0));
    assert_eq!(
        sample(&text, "vision_admission_wait_seconds_count{warm=\"true\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "vision_admission_wait_seconds_count{warm=\"false\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "vision_model_load_duration_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "vision_cluster_publish_errors_total"),
        Some(0.0)
    );

    // The Status API — what visionctl status prints — and /metrics agree.
    let status = d
        .admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let g = &status.gpus[0];
    for (state, value) in [
        ("free", g.free_mib),
        ("weights", g.weights_mib),
        ("working", g.working_mib),
        ("usable", g.usable_mib),
    ] {
        let series = format!(
            "vision_gpu_pool_mib{{gpu=\"0\",uuid=\"{}\",state=\"{state}\"}}",
            g.uuid
        );
        assert_eq!(sample(&text, &series), Some(value as f64), "{series}");
    }
    let counters = status.counters.unwrap();
    assert_eq!(
        sample(&text, "vision_admissions_total{outcome=\"granted_warm\"}"),
        Some(counters.granted_warm as f64)
    );
    let residents = format!("vision_resident_models{{gpu=\"0\",uuid=\"{}\"}}", g.uuid);
    assert_eq!(sample(&text, &residents), Some(g.residents.len() as f64));
    d.daemon.shutdown().await;
}
