//! Prometheus metrics.
//!
//! Two kinds: histograms the shell observes as things happen (admission
//! wait, load duration) and a collector that reads the engine's own counters
//! and ledgers at scrape time — so `/metrics` and `visionctl status` report
//! the same numbers by construction.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::{Outcome, Status};

/// Seconds a granted admission waited (queue plus load).
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds a model load took.
const LOAD_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WarmLabel {
    warm: String,
}

/// What the shell observes as it happens. A leaf: the shell feeds it and
/// knows it; it knows nothing of the shell.
#[derive(Debug)]
pub(crate) struct Metrics {
    admission_wait: Family<WarmLabel, Histogram>,
    load_duration: Histogram,
    kubelet_registrations: Family<ResourceLabel, Counter>,
    runtime_unavailable: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            admission_wait: Family::new_with_constructor(|| Histogram::new(WAIT_BUCKETS)),
            load_duration: Histogram::new(LOAD_BUCKETS),
            kubelet_registrations: Family::default(),
            runtime_unavailable: Counter::default(),
        }
    }
}

impl Metrics {
    /// A granted admission waited `seconds`.
    pub(crate) fn observe_wait(&self, warm: bool, seconds: f64) {
        let label = WarmLabel {
            warm: warm.to_string(),
        };
        self.admission_wait.get_or_create(&label).observe(seconds);
    }

    /// A model load succeeded after `seconds`.
    pub(crate) fn observe_load(&self, seconds: f64) {
        self.load_duration.observe(seconds);
    }

    /// An admission or preload was refused, or a queued admission withdrawn,
    /// because the model runtime was unreachable.
    pub(crate) fn count_runtime_unavailable(&self) {
        self.runtime_unavailable.inc();
    }

    /// A device plugin registered with kubelet.
    pub(crate) fn count_registration(&self, resource: &str) {
        let label = ResourceLabel {
            resource: resource.to_owned(),
        };
        self.kubelet_registrations.get_or_create(&label).inc();
    }
}

/// What `/metrics` reads at scrape time from the parts that own it, so that
/// `/metrics` and `visionctl status` report the same numbers by construction.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The engine's counters and ledgers.
    pub(crate) engine: Status,
    /// (resource name, registered with kubelet now), per device plugin.
    pub(crate) kubelet_registered: Vec<(String, bool)>,
    /// Failed writes to the Kubernetes API.
    pub(crate) cluster_publish_errors: u64,
    /// The model runtime's kind and whether it answers.
    pub(crate) runtime: (&'static str, bool),
    /// Per catalog model: (name, catalog MiB, last measured MiB).
    pub(crate) model_memory: Vec<(String, u64, Option<u64>)>,
}

/// Takes a [`Snapshot`]: the narrow interface `/metrics` reads through.
pub(crate) trait Scrape: Send + Sync + 'static {
    fn snapshot(&self) -> Snapshot;
}

/// The registry `/metrics` encodes: everything under the `vision` prefix.
pub(crate) fn registry(metrics: &Metrics, source: Arc<dyn Scrape>) -> Registry {
    let mut reg = Registry::with_prefix("vision");
    reg.register(
        "admission_wait_seconds",
        "Time a granted admission waited for its lease (queue plus model load), by warm/cold",
        metrics.admission_wait.clone(),
    );
    reg.register(
        "model_load_duration_seconds",
        "Duration of model loads through the runtime",
        metrics.load_duration.clone(),
    );
    reg.register(
        "runtime_unavailable",
        "Admissions and preloads answered UNAVAILABLE because the model runtime was unreachable",
        metrics.runtime_unavailable.clone(),
    );
    reg.register(
        "kubelet_registrations",
        "Successful device plugin registrations with kubelet, by resource",
        metrics.kubelet_registrations.clone(),
    );
    reg.register_collector(Box::new(ScrapeCollector { source }));
    reg
}

/// Reads a snapshot at scrape time.
struct ScrapeCollector {
    source: Arc<dyn Scrape>,
}

impl std::fmt::Debug for ScrapeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeCollector")
    }
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let me = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(me)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let me = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(me)
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.source.snapshot();
        let status = &snapshot.engine;
        let c = &status.counters;

        let mut me = enc.encode_descriptor(
            "admissions",
            "Admissions by final outcome (granted_warm, granted_cold, queue_full, deadline_exceeded, ...)",
            None,
            MetricType::Counter,
        )?;
        for o in Outcome::ALL {
            let labels = [("outcome", o.as_str())];
            ConstCounter::new(c.outcome(o)).encode(me.encode_family(&labels)?)?;
        }
        counter(
            &mut enc,
            "leases_released",
            "Leases released by their holder",
            c.released,
        )?;
        counter(
            &mut enc,
            "leases_expired",
            "Leases reclaimed after their TTL without KeepAlive",
            c.expired,
        )?;
        counter(
            &mut enc,
            "leases_revoked",
            "Leases taken away (GPU unhealthy, pod gone)",
            c.revoked,
        )?;
        counter(
            &mut enc,
            "model_loads",
            "Model loads started",
            c.loads_started,
        )?;
        counter(
            &mut enc,
            "model_load_failures",
            "Model loads that failed or timed out",
            c.loads_failed,
        )?;
        counter(
            &mut enc,
            "model_loaded_mib",
            "MiB of weights loaded",
            c.loaded_mib,
        )?;
        counter(
            &mut enc,
            "evictions",
            "Idle model copies evicted (policy, pressure or operator)",
            c.evictions,
        )?;
        gauge(
            &mut enc,
            "queue_depth",
            "Admissions waiting for a slot or GPU memory",
            status.queued as i64,
        )?;
        gauge(
            &mut enc,
            "waiting_on_load",
            "Admissions waiting for a model load",
            status.waiting_on_load as i64,
        )?;
        gauge(
            &mut enc,
            "active_leases",
            "Live leases",
            status.leases as i64,
        )?;
        gauge(
            &mut enc,
            "allocations",
            "Pod allocations (tokens) known",
            status.allocations as i64,
        )?;

        let mut me = enc.encode_descriptor(
            "gpu_pool_mib",
            "GPU pool memory by state: usable = total - reserve - external; carved (pods' vram), weights, working, free",
            None,
            MetricType::Gauge,
        )?;
        for g in &status.gpus {
            let index = g.id.0.to_string();
            for (state, v) in [
                ("total", g.total_mib),
                ("external", g.external_mib),
                ("usable", g.usable_mib),
                ("carved", g.carved_mib),
                ("weights", g.weights_mib),
                ("working", g.working_mib),
                ("free", g.free_mib),
            ] {
                let labels = [
                    ("gpu", index.as_str()),
                    ("uuid", g.uuid.as_str()),
                    ("state", state),
                ];
                ConstGauge::new(v as i64).encode(me.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "gpu_healthy",
                "1 when the GPU is healthy",
                (|g: &crate::engine::GpuStatus| i64::from(g.healthy)) as fn(&_) -> i64,
            ),
            (
                "gpu_overcommitted",
                "1 while the GPU pool holds more than it can",
                |g| i64::from(g.overcommitted_since.is_some()),
            ),
            (
                "resident_models",
                "Model copies resident or loading on the GPU",
                |g| g.residents.len() as i64,
            ),
        ] {
            let mut me = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for g in &status.gpus {
                let index = g.id.0.to_string();
                let labels = [("gpu", index.as_str()), ("uuid", g.uuid.as_str())];
                ConstGauge::new(value(g)).encode(me.encode_family(&labels)?)?;
            }
        }

        let mut me = enc.encode_descriptor(
            "kubelet_registered",
            "1 while the device plugin is registered with kubelet",
            None,
            MetricType::Gauge,
        )?;
        for (resource, registered) in &snapshot.kubelet_registered {
            let labels = [("resource", resource.as_str())];
            ConstGauge::new(i64::from(*registered)).encode(me.encode_family(&labels)?)?;
        }
        counter(
            &mut enc,
            "cluster_publish_errors",
            "Failed writes to the Kubernetes API (labels, annotations, Events)",
            snapshot.cluster_publish_errors,
        )?;

        let (kind, up) = snapshot.runtime;
        let mut me = enc.encode_descriptor(
            "runtime_up",
            "1 while the model runtime answers (always 1 for bookkeeping); 0: nothing is admitted",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(up)).encode(me.encode_family(&[("runtime", kind)])?)?;
        let mut me = enc.encode_descriptor(
            "model_weights_mib",
            "A model's weights per copy: the catalog's figure, and what its last measured load took",
            None,
            MetricType::Gauge,
        )?;
        for (model, catalog, measured) in &snapshot.model_memory {
            let labels = [("model", model.as_str()), ("source", "catalog")];
            ConstGauge::new(*catalog as i64).encode(me.encode_family(&labels)?)?;
            if let Some(m) = measured {
                let labels = [("model", model.as_str()), ("source", "measured")];
                ConstGauge::new(*m as i64).encode(me.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Encodes `reg` in the OpenMetrics text format.
pub(crate) fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}
