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
        sample(
            &text,
            "vision_admissions_total{model=\"small\",outcome=\"granted_cold\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_admissions_total{model=\"big\",outcome=\"granted_cold\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_admissions_total{model=\"small\",outcome=\"granted_warm\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_admissions_total{model=\"big\",outcome=\"no_capacity_now\"}"
        ),
        Some(1.0)
    );
    for model in ["big", "small"] {
        let loads = format!("vision_model_loads_total{{model=\"{model}\"}}");
        assert_eq!(sample(&text, &loads), Some(1.0), "{loads}");
        let count = format!("vision_model_load_duration_seconds_count{{model=\"{model}\"}}");
        assert_eq!(sample(&text, &count), Some(1.0), "{count}");
    }
    let bytes = "vision_model_loaded_bytes_total{model=\"big\"}";
    assert_eq!(sample(&text, bytes), Some(5_000.0 * 1024.0 * 1024.0));
    assert_eq!(sample(&text, "vision_queue_capacity"), Some(1.0));
    assert_eq!(sample(&text, "vision_leases_released_total"), Some(1.0));
    assert_eq!(sample(&text, "vision_active_leases"), Some(2.0));
    assert_eq!(sample(&text, "vision_queue_depth"), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "vision_admission_wait_seconds_count{model=\"small\",warm=\"true\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "vision_admission_wait_seconds_count{model=\"big\",warm=\"false\"}"
        ),
        Some(1.0)
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
    let mib = 1024.0 * 1024.0;
    for (part, value) in [
        ("free", g.free_mib),
        ("weights", g.weights_mib),
        ("working", g.working_mib),
        ("carved", g.carved_mib),
    ] {
        let series = format!(
            "vision_gpu_pool_bytes{{gpu=\"0\",uuid=\"{}\",part=\"{part}\"}}",
            g.uuid
        );
        assert_eq!(sample(&text, &series), Some(value as f64 * mib), "{series}");
    }
    let size = format!(
        "vision_gpu_pool_size_bytes{{gpu=\"0\",uuid=\"{}\"}}",
        g.uuid
    );
    assert_eq!(sample(&text, &size), Some(g.usable_mib as f64 * mib));
    let counters = status.counters.unwrap();
    assert_eq!(
        sample(
            &text,
            "vision_admissions_total{model=\"small\",outcome=\"granted_warm\"}"
        ),
        Some(counters.granted_warm as f64)
    );
    let residents = format!(
        "vision_gpu_resident_models{{gpu=\"0\",uuid=\"{}\"}}",
        g.uuid
    );
    assert_eq!(sample(&text, &residents), Some(g.residents.len() as f64));
    d.daemon.shutdown().await;
}

/// The metric names the dashboard's queries and the alert rules use.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("vision_") {
        let start = i + at;
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        // `vision_` alone is the prefix in prose, not a name.
        if word_start && end > start + "vision_".len() {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_the_alerts_use_only_metrics_that_are_exported() {
    let d = start(fast_dev_config()).await;
    let (_, text) = http_get(d.daemon.http_addr().unwrap(), "/metrics").await;
    d.daemon.shutdown().await;
    // Every sample's name, as a query names it (histograms by their series).
    let exported: std::collections::BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("charts/vision-node-daemon/monitoring");
    let mut checked = 0;
    for file in ["dashboard.json", "alerts.yaml", "alerts_test.yaml"] {
        let content = std::fs::read_to_string(chart.join(file)).unwrap();
        let used = names_in(&content);
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics /metrics does not export: {unknown:?}"
        );
        checked += used.len();
    }
    assert!(checked > 20, "{checked} names checked");
}
