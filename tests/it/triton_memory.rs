//! Measured memory: what a Triton load really took, in the ledger instead
//! of the catalog's figure. The "real" figure is the GPU's used memory that
//! the test sets while Triton loads, as a real load would raise it: on
//! simulated GPUs through the inventory's fault handle
//! (`runtime.measure_memory: on`), and on the NVML backend through the fake
//! driver's `gpus.conf` (`auto`, the default: the NVML measuring path end to
//! end, nvml-wrapper included).

use std::time::Duration;

use vision_node_daemon::config::{GpuBackend, MeasureMemory};
use vision_node_daemon::proto::vision::v1 as pb;

use crate::common::*;
use crate::fake_driver::FakeDriver;
use crate::triton_support::{ModelDef, TRITONS, Triton, admin_status, config};
use crate::visionctl::{state_dir, visionctl};

/// Polls the admin status until `done` holds; 30 s at most.
async fn status_until(d: &Running, what: &str, done: impl Fn(&pb::StatusResponse) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = admin_status(d).await;
        if done(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within 30 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn memory<'a>(s: &'a pb::StatusResponse, model: &str) -> &'a pb::ModelMemory {
    s.memory
        .iter()
        .find(|m| m.model == model)
        .expect("every catalog model is listed")
}

/// Where the test sets the GPU's used memory.
enum Gpus {
    /// One simulated GPU of 8192 MiB; the daemon measures because
    /// `measure_memory: on`.
    Simulated,
    /// One GPU behind the fake NVML driver; `measure_memory` stays `auto`.
    Nvml(FakeDriver),
}

const NVML_GPU: &str = "GPU-5a1b2c3d-0000-4e8a-9c3f-0a1b2c3d4e5f,NVIDIA L4,8192";

impl Gpus {
    fn nvml() -> Gpus {
        Gpus::Nvml(FakeDriver::new(&[&format!("{NVML_GPU},0")]))
    }

    fn set_used_mib(&self, d: &Running, mib: u64) {
        match self {
            Gpus::Simulated => d
                .daemon
                .faults()
                .expect("simulated GPUs")
                .set_used_mib(0, mib)
                .expect("set used memory"),
            Gpus::Nvml(driver) => driver.set_gpus(&[&format!("{NVML_GPU},{mib}")]),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_measured_load_puts_its_real_size_in_the_ledger_and_an_outgrown_model_raises_a_warning() {
    measured_load(Gpus::Simulated).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nvml_loads_are_measured_by_default_from_the_drivers_used_memory() {
    measured_load(Gpus::nvml()).await;
}

async fn measured_load(gpus: Gpus) {
    let _slot = TRITONS.acquire().await.unwrap();
    let triton = Triton::start(&[ModelDef::slow("big", 2.0)]).await;
    // The catalog says 1000 MiB.
    let mut cfg = config(&triton, 8192, &[("big-model", "big")]);
    match &gpus {
        Gpus::Simulated => cfg.runtime.measure_memory = MeasureMemory::On,
        Gpus::Nvml(driver) => {
            assert_eq!(cfg.runtime.measure_memory, MeasureMemory::Auto);
            cfg.gpus = driver.config(GpuBackend::Nvml);
        }
    }
    let d = start(cfg).await;
    let mut events = d
        .admin()
        .await
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut c = d.task().await;

    let waiting = {
        let mut c = c.clone();
        let req = admit(&d.token, "big-model");
        tokio::spawn(async move { c.admit(req).await })
    };
    triton.wait_state("big", "LOADING").await;
    // What the load really puts on the GPU.
    gpus.set_used_mib(&d, 1500);
    let lease = waiting
        .await
        .expect("task")
        .expect("granted")
        .into_inner()
        .lease
        .expect("lease");

    let ev = next_matching(&mut events, |e| {
        matches!(e, pb::watch_event::Event::ModelOutgrewCatalog(_))
    })
    .await;
    let pb::watch_event::Event::ModelOutgrewCatalog(outgrew) = ev else {
        unreachable!()
    };
    assert_eq!(
        (
            outgrew.model.as_str(),
            outgrew.catalog_mib,
            outgrew.measured_mib
        ),
        ("big-model", 1000, 1500)
    );
    let s = admin_status(&d).await;
    let r = &s.gpus[0].residents[0];
    assert_eq!(
        (r.weights_mib, r.catalog_mib),
        (1500, 1000),
        "the ledger counts what was measured"
    );
    assert_eq!(s.gpus[0].weights_mib, 1500);
    assert_eq!(memory(&s, "big-model").measured_mib, Some(1500));
    let http = d.daemon.http_addr().expect("http");
    let (_, metrics) = http_get(http, "/metrics").await;
    for (source, mib) in [("catalog", 1000.0), ("measured", 1500.0)] {
        let series = format!(r#"vision_model_weights_mib{{model="big-model",source="{source}"}}"#);
        assert_eq!(sample(&metrics, &series), Some(mib), "{series}\n{metrics}");
    }
    // visionctl status shows both figures, and flags the outgrowth.
    let (ok, table, err) = visionctl(&state_dir(&d), &["status"]).await;
    assert!(ok, "{err}");
    let resident = table
        .lines()
        .find(|l| l.trim_start().starts_with("big-model") && l.contains("pins"))
        .unwrap_or_else(|| panic!("a resident line for big-model:\n{table}"));
    assert!(
        resident.contains("1500 MiB") && resident.contains("(measured; catalog 1000 MiB)"),
        "{resident}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("big-model") && l.contains("OUTGREW CATALOG"))
        .unwrap_or_else(|| panic!("a memory row for big-model:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..6],
        ["big-model", "1000", "MiB", "1500", "MiB", "-"],
        "catalog, measured, nothing returned yet: {row}"
    );
    // The measured copy is the daemon's memory, not other processes'.
    status_until(&d, "external memory back to 0", |s| {
        s.gpus[0].external_mib == 0
    })
    .await;

    release(&mut c, &d.token, lease.lease_id).await;
    d.admin()
        .await
        .evict(pb::EvictRequest {
            model: "big-model".into(),
            gpu: String::new(),
        })
        .await
        .expect("evict");
    // The unload gives nothing back (a backend that keeps its memory, as
    // Triton #3320 reports): measured, and then counted as other processes'.
    status_until(&d, "the unload measured", |s| {
        memory(s, "big-model").returned_mib.is_some()
    })
    .await;
    assert_eq!(
        memory(&admin_status(&d).await, "big-model").returned_mib,
        Some(0)
    );
    status_until(&d, "the kept memory counted as external", |s| {
        s.gpus[0].external_mib == 1500 && s.gpus[0].weights_mib == 0
    })
    .await;
    d.daemon.shutdown().await;
}
