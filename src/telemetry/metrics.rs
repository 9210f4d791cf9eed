//! Prometheus metrics.
//!
//! Two kinds: histograms the shell observes as things happen (admission
//! wait, load duration) and a collector that reads the engine's own counters
//! and ledgers at scrape time — so `/metrics` and `visionctl status` report
//! the same numbers by construction.
//!
//! Every family is listed in [`families`], with its help text; the
//! README's table is generated from that list. Every series exists from
//! the first scrape: the histograms are created for every catalog model
//! (and registrations for every device plugin) when the registry is built.

pub(crate) mod families;

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::engine::{GpuStatus, Outcome, Status};
use families::{Family, Kind};

/// Seconds a granted admission waited (queue plus load).
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Seconds a model load took.
const LOAD_BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// The `model` label of admissions for names outside the catalog.
pub(crate) const UNKNOWN_MODEL: &str = "_unknown";

const MIB: u64 = 1024 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    model: String,
    warm: String,
}

/// What the shell observes as it happens. A leaf: the shell feeds it and
/// knows it; it knows nothing of the shell.
#[derive(Debug)]
pub(crate) struct Metrics {
    admission_wait: MetricFamily<WaitLabels, Histogram>,
    load_duration: MetricFamily<ModelLabel, Histogram>,
    kubelet_registrations: MetricFamily<ResourceLabel, Counter>,
    runtime_unavailable: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            admission_wait: MetricFamily::new_with_constructor(|| Histogram::new(WAIT_BUCKETS)),
            load_duration: MetricFamily::new_with_constructor(|| Histogram::new(LOAD_BUCKETS)),
            kubelet_registrations: MetricFamily::default(),
            runtime_unavailable: Counter::default(),
        }
    }
}

impl Metrics {
    /// A granted admission for `model` (a catalog name) waited `seconds`.
    pub(crate) fn observe_wait(&self, model: &str, warm: bool, seconds: f64) {
        self.admission_wait
            .get_or_create(&wait_labels(model, warm))
            .observe(seconds);
    }

    /// A load of `model` (a catalog name) succeeded after `seconds`.
    pub(crate) fn observe_load(&self, model: &str, seconds: f64) {
        self.load_duration
            .get_or_create(&ModelLabel {
                model: model.to_owned(),
            })
            .observe(seconds);
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

    /// Creates every series that the snapshot's catalog and plugins call
    /// for, at zero, so that they exist before anything happens.
    fn create_series(&self, snapshot: &Snapshot) {
        for model in &snapshot.engine.models {
            for warm in [true, false] {
                let _ = self.admission_wait.get_or_create(&wait_labels(model, warm));
            }
            let _ = self.load_duration.get_or_create(&ModelLabel {
                model: model.clone(),
            });
        }
        for (resource, _) in &snapshot.kubelet_registered {
            let _ = self.kubelet_registrations.get_or_create(&ResourceLabel {
                resource: resource.clone(),
            });
        }
    }
}

fn wait_labels(model: &str, warm: bool) -> WaitLabels {
    WaitLabels {
        model: model.to_owned(),
        warm: warm.to_string(),
    }
}

/// The daemon's version and the commit it was built from.
pub(crate) fn build_info() -> (&'static str, &'static str) {
    (env!("CARGO_PKG_VERSION"), env!("VISION_GIT_COMMIT"))
}

/// What `/metrics` reads at scrape time from the parts that own it, so that
/// `/metrics` and `visionctl status` report the same numbers by construction.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The engine's counters and ledgers (with the catalog's names).
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
    metrics.create_series(&source.snapshot());
    let mut reg = Registry::with_prefix(families::PREFIX);
    let wait = families::ADMISSION_WAIT;
    reg.register(wait.name, wait.help, metrics.admission_wait.clone());
    let load = families::MODEL_LOAD_DURATION;
    reg.register(load.name, load.help, metrics.load_duration.clone());
    let unavailable = families::RUNTIME_UNAVAILABLE;
    reg.register(
        unavailable.name,
        unavailable.help,
        metrics.runtime_unavailable.clone(),
    );
    let registrations = families::KUBELET_REGISTRATIONS;
    reg.register(
        registrations.name,
        registrations.help,
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

type EncodeResult = Result<(), std::fmt::Error>;

fn metric_type(f: &Family) -> MetricType {
    match f.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    }
}

/// A family without labels.
fn single(enc: &mut DescriptorEncoder, f: Family, v: u64) -> EncodeResult {
    let me = enc.encode_descriptor(f.name, f.help, None, metric_type(&f))?;
    match f.kind {
        Kind::Counter => ConstCounter::new(v).encode(me),
        _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(me),
    }
}

/// A family with one series per label set.
fn labelled<'a>(
    enc: &mut DescriptorEncoder,
    f: Family,
    series: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> EncodeResult {
    let mut me = enc.encode_descriptor(f.name, f.help, None, metric_type(&f))?;
    for (labels, v) in series {
        debug_assert_eq!(
            labels.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            f.labels,
            "{}",
            f.name
        );
        let e = me.encode_family(&labels)?;
        match f.kind {
            Kind::Counter => ConstCounter::new(v).encode(e)?,
            _ => ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX)).encode(e)?,
        }
    }
    Ok(())
}

fn per_gpu<'a>(
    gpus: &'a [GpuStatus],
    indices: &'a [String],
    value: impl Fn(&GpuStatus) -> u64 + 'a,
) -> impl Iterator<Item = (Vec<(&'a str, &'a str)>, u64)> + 'a {
    gpus.iter().zip(indices).map(move |(g, i)| {
        (
            vec![("gpu", i.as_str()), ("uuid", g.uuid.as_str())],
            value(g),
        )
    })
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> EncodeResult {
        let snapshot = self.source.snapshot();
        let status = &snapshot.engine;
        let c = &status.counters;
        let enc = &mut enc;
        use families as f;

        let (version, commit) = build_info();
        labelled(
            enc,
            f::BUILD_INFO,
            [(vec![("version", version), ("commit", commit)], 1)],
        )?;

        // Per model: the catalog's names, plus the bucket of names outside it.
        let models = &status.models;
        let model_counters = |i: usize| c.models.get(i).cloned().unwrap_or_default();
        labelled(
            enc,
            f::ADMISSIONS,
            models
                .iter()
                .enumerate()
                .flat_map(|(i, m)| {
                    let mc = model_counters(i);
                    Outcome::ALL.map(|o| {
                        (
                            vec![("model", m.as_str()), ("outcome", o.as_str())],
                            mc.outcome(o),
                        )
                    })
                })
                .chain(Outcome::ALL.map(|o| {
                    (
                        vec![("model", UNKNOWN_MODEL), ("outcome", o.as_str())],
                        c.outside_catalog[o as usize],
                    )
                })),
        )?;
        single(enc, f::QUEUE_DEPTH, status.queued as u64)?;
        single(enc, f::QUEUE_CAPACITY, status.queue_limit as u64)?;
        single(enc, f::WAITING_ON_LOAD, status.waiting_on_load as u64)?;
        single(enc, f::ACTIVE_LEASES, status.leases as u64)?;
        single(enc, f::ALLOCATIONS, status.allocations as u64)?;
        single(enc, f::LEASES_RELEASED, c.released)?;
        single(enc, f::LEASES_EXPIRED, c.expired)?;
        single(enc, f::LEASES_REVOKED, c.revoked)?;
        let per_model = |value: fn(&crate::engine::ModelCounters) -> u64| {
            models
                .iter()
                .enumerate()
                .map(move |(i, m)| (vec![("model", m.as_str())], value(&model_counters(i))))
        };
        labelled(enc, f::MODEL_LOADS, per_model(|m| m.loads_started))?;
        labelled(enc, f::MODEL_LOAD_FAILURES, per_model(|m| m.loads_failed))?;
        labelled(
            enc,
            f::MODEL_LOADED_BYTES,
            per_model(|m| m.loaded_mib.saturating_mul(MIB)),
        )?;
        labelled(enc, f::MODEL_EVICTIONS, per_model(|m| m.evictions))?;
        labelled(
            enc,
            f::MODEL_COPIES,
            models.iter().flat_map(|m| {
                let copies = |loading: bool| {
                    status
                        .gpus
                        .iter()
                        .flat_map(|g| &g.residents)
                        .filter(|r| r.name == *m && r.loading == loading)
                        .count() as u64
                };
                [
                    (
                        vec![("model", m.as_str()), ("state", "ready")],
                        copies(false),
                    ),
                    (
                        vec![("model", m.as_str()), ("state", "loading")],
                        copies(true),
                    ),
                ]
            }),
        )?;

        // Per GPU: health, then memory. The pool's size and its parts are
        // separate families, so that a sum over `part` is the pool.
        let indices: Vec<String> = status.gpus.iter().map(|g| g.id.0.to_string()).collect();
        let gpus = &status.gpus;
        let bytes = |mib: u64| mib.saturating_mul(MIB);
        labelled(
            enc,
            f::GPU_HEALTHY,
            per_gpu(gpus, &indices, |g| u64::from(g.healthy)),
        )?;
        labelled(
            enc,
            f::GPU_OVERCOMMITTED,
            per_gpu(gpus, &indices, |g| {
                u64::from(g.overcommitted_since.is_some())
            }),
        )?;
        labelled(
            enc,
            f::GPU_RESIDENT_MODELS,
            per_gpu(gpus, &indices, |g| g.residents.len() as u64),
        )?;
        labelled(
            enc,
            f::GPU_MEMORY_TOTAL,
            per_gpu(gpus, &indices, move |g| bytes(g.total_mib)),
        )?;
        labelled(
            enc,
            f::GPU_MEMORY_RESERVED,
            per_gpu(gpus, &indices, move |g| bytes(g.reserve_mib)),
        )?;
        labelled(
            enc,
            f::GPU_MEMORY_EXTERNAL,
            per_gpu(gpus, &indices, move |g| bytes(g.external_mib)),
        )?;
        labelled(
            enc,
            f::GPU_POOL_SIZE,
            per_gpu(gpus, &indices, move |g| bytes(g.usable_mib)),
        )?;
        labelled(
            enc,
            f::GPU_POOL,
            gpus.iter().zip(&indices).flat_map(|(g, i)| {
                [
                    ("carved", g.carved_mib),
                    ("weights", g.weights_mib),
                    ("working", g.working_mib),
                    ("free", g.free_mib),
                ]
                .map(|(part, mib)| {
                    (
                        vec![
                            ("gpu", i.as_str()),
                            ("uuid", g.uuid.as_str()),
                            ("part", part),
                        ],
                        bytes(mib),
                    )
                })
            }),
        )?;

        labelled(
            enc,
            f::KUBELET_REGISTERED,
            snapshot
                .kubelet_registered
                .iter()
                .map(|(r, on)| (vec![("resource", r.as_str())], u64::from(*on))),
        )?;
        single(
            enc,
            f::CLUSTER_PUBLISH_ERRORS,
            snapshot.cluster_publish_errors,
        )?;

        let (kind, up) = snapshot.runtime;
        labelled(
            enc,
            f::RUNTIME_UP,
            [(vec![("runtime", kind)], u64::from(up))],
        )?;
        // A measurement that has not happened is absent, not 0.
        labelled(
            enc,
            f::MODEL_WEIGHTS,
            snapshot
                .model_memory
                .iter()
                .flat_map(|(model, catalog, measured)| {
                    std::iter::once((
                        vec![("model", model.as_str()), ("source", "catalog")],
                        catalog * MIB,
                    ))
                    .chain(measured.map(|m| {
                        (
                            vec![("model", model.as_str()), ("source", "measured")],
                            m * MIB,
                        )
                    }))
                }),
        )?;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use crate::engine::{AdmitRequest, Engine, GpuSpec, Settings, Time, Wait};

    /// The engine of the dev config, scraped as the daemon scrapes it.
    struct Source(Mutex<Engine>);

    impl Scrape for Source {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                engine: self.0.lock().unwrap().status(),
                kubelet_registered: vec![
                    ("vision.ai/slot".into(), true),
                    ("vision.ai/vram".into(), false),
                ],
                cluster_publish_errors: 0,
                runtime: ("bookkeeping", true),
                model_memory: vec![("yolo-v8n".into(), 12, None)],
            }
        }
    }

    fn source() -> Arc<Source> {
        let cfg = Config::dev();
        let gpus = (0..2)
            .map(|i| GpuSpec {
                uuid: format!("GPU-{i}"),
                name: "Test".into(),
                total_mib: 24576,
            })
            .collect();
        let engine = Engine::new(gpus, cfg.models.clone(), Settings::from_config(&cfg)).unwrap();
        Arc::new(Source(Mutex::new(engine)))
    }

    /// `name{labels}` of every sample line.
    fn series(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned())
            .collect()
    }

    /// The families named by `# TYPE` lines.
    fn families_exported(text: &str) -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn metrics_exports_exactly_the_listed_families() {
        let metrics = Metrics::default();
        let text = encode(&registry(&metrics, source()));
        let exported = families_exported(&text);
        // OpenMetrics names a counter's family without `_total`.
        let listed: BTreeSet<String> = families::ALL
            .iter()
            .map(|f| format!("{}_{}", families::PREFIX, f.name))
            .collect();
        assert_eq!(exported, listed, "\n{text}");
        for f in families::ALL {
            let name = f.exported_name();
            let sample = match f.kind {
                Kind::Histogram => format!("{name}_count"),
                _ => name.clone(),
            };
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{sample}{{"))
                    || l.starts_with(&format!("{sample} "))),
                "{name} has no series at start:\n{text}"
            );
        }
    }

    #[test]
    fn every_series_exists_from_start_and_activity_adds_none() {
        let source = source();
        let metrics = Metrics::default();
        let reg = registry(&metrics, source.clone());
        let before = series(&encode(&reg));
        for model in ["yolo-v8n", "clip-vit-b32", "sd3b", "sdxl-refiner"] {
            for outcome in ["granted_warm", "queue_full"] {
                assert!(
                    before.contains(&format!(
                        "vision_admissions_total{{model=\"{model}\",outcome=\"{outcome}\"}}"
                    )),
                    "{model} {outcome}"
                );
            }
            assert!(before.contains(&format!(
                "vision_admission_wait_seconds_count{{model=\"{model}\",warm=\"false\"}}"
            )));
            assert!(before.contains(&format!(
                "vision_model_copies{{model=\"{model}\",state=\"loading\"}}"
            )));
        }
        assert!(
            before
                .contains("vision_admissions_total{model=\"_unknown\",outcome=\"unknown_model\"}")
        );
        assert!(before.contains("vision_kubelet_registrations_total{resource=\"vision.ai/vram\"}"));

        // Admissions (one for a name outside the catalog), a load, waits.
        {
            let mut e = source.0.lock().unwrap();
            e.allocate_slots("pod", 8, Time::from_millis(0)).unwrap();
            for model in ["sd3b", "no-such-model"] {
                let _ = e.admit(
                    &AdmitRequest {
                        token: "pod".into(),
                        model: model.into(),
                        task_type: None,
                        priority: 0,
                        wait: Wait::Default,
                    },
                    Time::from_millis(1),
                );
            }
        }
        metrics.observe_wait("sd3b", false, 8.0);
        metrics.observe_load("sd3b", 8.0);
        metrics.count_registration("vision.ai/slot");
        let text = encode(&reg);
        assert_eq!(series(&text), before, "the same series, other values");
        assert!(
            text.contains(
                "vision_admissions_total{model=\"_unknown\",outcome=\"unknown_model\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vision_model_copies{model=\"sd3b\",state=\"loading\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vision_model_loads_total{model=\"sd3b\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn memory_is_in_bytes_and_the_parts_add_up_to_the_pool() {
        let text = encode(&registry(&Metrics::default(), source()));
        let value = |series: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        };
        let gpu = "gpu=\"0\",uuid=\"GPU-0\"";
        assert_eq!(
            value(&format!("vision_gpu_memory_total_bytes{{{gpu}}}")),
            24576 * MIB
        );
        let size = value(&format!("vision_gpu_pool_size_bytes{{{gpu}}}"));
        let parts: u64 = ["carved", "weights", "working", "free"]
            .iter()
            .map(|p| value(&format!("vision_gpu_pool_bytes{{{gpu},part=\"{p}\"}}")))
            .sum();
        assert_eq!(parts, size);
        let (version, _) = build_info();
        assert!(text.contains(&format!(
            "vision_build_info{{version=\"{version}\",commit=\""
        )));
    }
}
