//! The real NVML code path (nvml-wrapper, libloading, our inventory and
//! watcher thread) against a fake `libnvidia-ml.so.1`, plus `open`'s choice
//! of backend. No GPU needed.
//!
//! Events are awaited on channels with a generous deadline that only a
//! failing test ever reaches; nothing here sleeps to synchronise.

use std::fmt::{Debug, Write as _};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fake_driver::FakeDriver;
use tracing::field::Field;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use vision_node_daemon::config::GpuBackend;
use vision_node_daemon::gpu::{self, Backend, Health, HealthEvent, HealthSink, Inventory};

/// Only a failing test waits this long.
const DEADLINE: Duration = Duration::from_secs(10);

const UUID_0: &str = "GPU-2f6e1a3c-7b1d-4e8a-9c3f-0a1b2c3d4e5f";
const UUID_1: &str = "GPU-9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a";
/// 1200 MiB used by processes plus 300 MiB reserved by the driver.
const GPU_0: &str = "GPU-2f6e1a3c-7b1d-4e8a-9c3f-0a1b2c3d4e5f,NVIDIA L4,23034,1200,300";
const GPU_1: &str = "GPU-9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a,NVIDIA H100 80GB HBM3,81559,0";

fn two_gpus() -> FakeDriver {
    FakeDriver::new(&[GPU_0, GPU_1])
}

fn open_nvml(driver: &FakeDriver) -> Arc<dyn Inventory> {
    let opened = gpu::open(&driver.config(GpuBackend::Nvml)).expect("open NVML");
    assert_eq!(opened.inventory.backend(), Backend::Nvml);
    opened.inventory
}

fn recorder() -> (HealthSink, Receiver<HealthEvent>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: HealthSink = Arc::new(move |event| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(event);
        }
    });
    (sink, rx)
}

fn next(rx: &Receiver<HealthEvent>) -> HealthEvent {
    rx.recv_timeout(DEADLINE)
        .expect("a health event before the deadline")
}

fn unhealthy(reason: &str) -> Health {
    Health::Unhealthy(reason.to_owned())
}

#[test]
fn discovery_reports_exactly_what_the_driver_reports() {
    let driver = two_gpus();
    let gpus = open_nvml(&driver).snapshot().unwrap();

    let seen: Vec<_> = gpus
        .iter()
        .map(|g| {
            (
                g.index,
                g.uuid.as_str(),
                g.name.as_str(),
                g.total_mib,
                g.used_mib,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, UUID_0, "NVIDIA L4", 23_034, 1_500),
            (1, UUID_1, "NVIDIA H100 80GB HBM3", 81_559, 0),
        ],
        "used memory counts the driver's reservation"
    );
    assert_eq!(gpus[0].pci_bus_id.as_deref(), Some("00000000:3B:00.0"));
    assert_eq!(gpus[1].pci_bus_id.as_deref(), Some("00000000:3C:00.0"));
    assert!(gpus.iter().all(|g| g.health == Health::Healthy));
}

#[test]
fn a_failing_pci_query_leaves_the_bus_id_unknown_and_the_gpu_listed() {
    let driver = FakeDriver::new(&[&format!("{GPU_0},nopci"), GPU_1]);
    let gpus = open_nvml(&driver).snapshot().unwrap();
    assert_eq!(gpus.len(), 2);
    assert_eq!(gpus[0].pci_bus_id, None);
    assert!(gpus[1].pci_bus_id.is_some());
}

#[test]
fn memory_used_by_other_processes_shows_in_the_next_snapshot() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    driver.set_gpus(&[GPU_0, &GPU_1.replace(",81559,0", ",81559,4096")]);
    assert_eq!(inventory.snapshot().unwrap()[1].used_mib, 4_096);
}

#[test]
fn a_critical_xid_marks_the_gpu_unhealthy_through_the_sink_and_the_next_snapshot() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.raise("xid 1 79");

    let sick = unhealthy("Xid 79: GPU has fallen off the bus");
    let expected = HealthEvent {
        uuid: UUID_1.into(),
        index: 1,
        health: sick.clone(),
    };
    assert_eq!(next(&rx), expected);
    let gpus = inventory.snapshot().unwrap();
    assert_eq!(gpus[1].health, sick);
    assert_eq!(gpus[0].health, Health::Healthy);
}

#[test]
fn an_application_xid_leaves_the_gpu_healthy() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    // Events are handled in order, so once the second one arrives the first
    // has been seen and ignored.
    driver.raise("xid 0 13");
    driver.raise("xid 1 79");

    assert_eq!(next(&rx).index, 1);
    assert_eq!(inventory.snapshot().unwrap()[0].health, Health::Healthy);
}

#[test]
fn a_gpu_is_reported_once_and_keeps_its_first_reason() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.raise("xid 0 79");
    driver.raise("xid 0 48");
    driver.raise("xid 1 94");

    assert_eq!(next(&rx).index, 0);
    assert_eq!(next(&rx).index, 1, "no second event for GPU 0");
    let reason = unhealthy("Xid 79: GPU has fallen off the bus");
    assert_eq!(inventory.snapshot().unwrap()[0].health, reason);
}

#[test]
fn a_double_bit_ecc_error_marks_the_gpu_unhealthy() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.raise("dbe 0");

    let event = next(&rx);
    assert_eq!(
        (event.index, event.health),
        (0, unhealthy("double-bit ECC error"))
    );
}

#[test]
fn a_gpu_without_ecc_events_still_reports_xids() {
    let driver = FakeDriver::new(&[&format!("{GPU_0},noecc"), GPU_1]);
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.raise("xid 0 48");

    assert_eq!(next(&rx).health, unhealthy("Xid 48: double-bit ECC error"));
}

#[test]
fn a_gpu_without_events_is_left_to_polling_while_the_others_are_watched() {
    let driver = FakeDriver::new(&[&format!("{GPU_0},noevents"), GPU_1]);
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.raise("xid 0 79");
    driver.raise("xid 1 79");

    assert_eq!(next(&rx).index, 1);
}

#[test]
fn every_watcher_hears_about_an_xid() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink_a, rx_a) = recorder();
    let (sink_b, rx_b) = recorder();
    let _watch_a = inventory.watch_health(sink_a).unwrap();
    let _watch_b = inventory.watch_health(sink_b).unwrap();

    driver.raise("xid 0 79");

    assert_eq!(next(&rx_a).index, 0);
    assert_eq!(next(&rx_b).index, 0);
}

#[test]
fn a_gpu_that_stops_answering_is_unhealthy_until_it_answers_again() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    assert_eq!(inventory.snapshot().unwrap()[0].used_mib, 1_500);

    driver.set_gpus(&[&format!("{GPU_0},lost"), GPU_1]);
    let gpus = inventory.snapshot().unwrap();
    match &gpus[0].health {
        Health::Unhealthy(reason) => assert!(reason.contains("fell off the bus"), "{reason}"),
        Health::Healthy => panic!("a lost GPU reads healthy"),
    }
    assert_eq!(gpus[0].used_mib, 1_500, "the last reading stands");
    assert_eq!(gpus[1].health, Health::Healthy);

    driver.set_gpus(&[GPU_0, GPU_1]);
    assert_eq!(inventory.snapshot().unwrap()[0].health, Health::Healthy);
}

#[test]
fn a_lost_gpu_reported_by_the_event_wait_is_found_and_marked_unhealthy() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, rx) = recorder();
    let _watch = inventory.watch_health(sink).unwrap();

    driver.set_gpus(&[GPU_0, &format!("{GPU_1},0,lost")]);
    driver.raise("gpulost");

    let event = next(&rx);
    assert_eq!(event.index, 1);
    assert!(matches!(&event.health, Health::Unhealthy(r) if r.starts_with("GPU lost")));
}

#[test]
fn dropping_the_health_watch_stops_its_thread_promptly() {
    let driver = two_gpus();
    let inventory = open_nvml(&driver);
    let (sink, _rx) = recorder();
    let watch = inventory.watch_health(Arc::clone(&sink)).unwrap();
    assert_eq!(
        Arc::strong_count(&sink),
        2,
        "the watcher thread holds the sink"
    );

    let started = Instant::now();
    drop(watch);

    // The thread owned the other reference; it is gone once the thread is.
    assert_eq!(Arc::strong_count(&sink), 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopping took {:?}; waits are at most {} ms",
        started.elapsed(),
        gpu::EVENT_WAIT_MS
    );
}

#[test]
fn the_nvml_backend_with_no_gpus_is_an_error() {
    let driver = FakeDriver::new(&[]);
    let err = gpu::open(&driver.config(GpuBackend::Nvml)).unwrap_err();
    assert!(
        matches!(
            err,
            gpu::Error::NoGpus {
                backend: Backend::Nvml
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_nvml_backend_without_a_driver_says_which_library_failed() {
    let driver = two_gpus();
    let mut cfg = driver.config(GpuBackend::Nvml);
    let missing = driver
        .library()
        .with_file_name("missing")
        .join("libnvidia-ml.so.1");
    cfg.nvml_library = Some(missing.clone());

    let err = gpu::open(&cfg).unwrap_err();

    match &err {
        gpu::Error::NvmlInit { library, .. } => assert_eq!(library, &missing.display().to_string()),
        other => panic!("expected NvmlInit, got {other:?}"),
    }
    assert!(gpu::error_chain(&err).contains("cannot open shared object file"));
}

#[test]
fn auto_uses_nvml_when_the_library_loads() {
    let driver = two_gpus();
    let opened = gpu::open(&driver.config(GpuBackend::Auto)).unwrap();
    assert_eq!(opened.inventory.backend(), Backend::Nvml);
    assert!(opened.faults.is_none());
    assert_eq!(opened.fallback_reason, None);
}

/// Collects WARN events (fields rendered as `name=value`) on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() != tracing::Level::WARN {
            return;
        }
        let mut text = String::new();
        event.record(&mut |field: &Field, value: &dyn Debug| {
            let _ = write!(text, "{}={:?} ", field.name(), value);
        });
        if let Ok(mut warnings) = self.0.lock() {
            warnings.push(text);
        }
    }
}

#[test]
fn auto_with_a_missing_library_falls_back_to_simulated_gpus_with_one_warning() {
    let driver = two_gpus();
    let mut cfg = driver.config(GpuBackend::Auto);
    cfg.nvml_library = Some(driver.library().with_file_name("no-such-libnvidia-ml.so.1"));
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());

    let opened = tracing::subscriber::with_default(subscriber, || gpu::open(&cfg)).unwrap();

    assert_eq!(opened.inventory.backend(), Backend::Simulated);
    assert!(opened.faults.is_some());
    let reason = opened.fallback_reason.expect("a fallback reason");
    assert!(
        reason.contains("cannot open shared object file"),
        "{reason}"
    );
    let gpus = opened.inventory.snapshot().unwrap();
    assert_eq!(gpus.len(), 1);
    assert_eq!(gpus[0].name, "Simulated GPU");

    let warnings = warnings.0.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot open shared object file"),
        "{}",
        warnings[0]
    );
}

#[test]
fn auto_falls_back_when_nvml_reports_no_gpus() {
    let driver = FakeDriver::new(&[]);
    let opened = gpu::open(&driver.config(GpuBackend::Auto)).unwrap();
    assert_eq!(opened.inventory.backend(), Backend::Simulated);
    let reason = opened.fallback_reason.unwrap();
    assert!(reason.contains("no GPUs"), "{reason}");
}

#[test]
fn auto_with_nothing_to_fall_back_to_returns_the_nvml_error() {
    let driver = two_gpus();
    let mut cfg = driver.config(GpuBackend::Auto);
    cfg.nvml_library = Some(driver.library().with_file_name("no-such-libnvidia-ml.so.1"));
    cfg.simulated.clear();
    let err = gpu::open(&cfg).unwrap_err();
    assert!(matches!(err, gpu::Error::NvmlInit { .. }), "{err:?}");
}

#[test]
fn auto_refuses_to_fake_gpus_when_the_library_loads_but_the_driver_is_broken() {
    let driver = two_gpus();
    // Without gpus.conf the stub's nvmlInit answers NVML_ERROR_DRIVER_NOT_LOADED.
    std::fs::remove_file(driver.library().with_file_name("gpus.conf")).unwrap();
    let err = gpu::open(&driver.config(GpuBackend::Auto)).unwrap_err();
    assert!(matches!(err, gpu::Error::NvmlInit { .. }), "{err:?}");
    let chain = gpu::error_chain(&err);
    assert!(chain.to_lowercase().contains("driver"), "{chain}");
}
