//! The extender's Prometheus metrics (`vision_extender_*`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::cache::NodeCache;

/// Seconds one filter or prioritize call took inside the extender.
const DURATION_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Request {
    pub verb: &'static str,
    /// `ok`, `bad_request`, `too_large`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Verb {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeState {
    pub verb: &'static str,
    /// `fresh`, `stale`, or why the view is unreadable (`missing`,
    /// `unversioned`, `unsupported_version`, `invalid`).
    pub view: &'static str,
}

/// What the handlers count.
#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<Request, Counter>,
    pub duration: Family<Verb, Histogram>,
    pub nodes: Family<NodeState, Counter>,
    /// Nodes a filter call failed (no GPU could ever hold a model).
    pub failed_nodes: Counter,
    /// Pods naming models the catalog lacks (per call).
    pub unknown_pod_models: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
            nodes: Family::default(),
            failed_nodes: Counter::default(),
            unknown_pod_models: Counter::default(),
        }
    }
}

/// A registry of `metrics` (shared) and, when there is one, the cache.
pub fn registry(metrics: &Metrics, cache: Option<Arc<NodeCache>>) -> Registry {
    let mut reg = Registry::with_prefix("vision_extender");
    reg.register(
        "requests",
        "Filter and prioritize calls by verb and result",
        metrics.requests.clone(),
    );
    reg.register(
        "request_duration_seconds",
        "Time to answer one filter or prioritize call, body parsing and encoding included",
        metrics.duration.clone(),
    );
    reg.register(
        "nodes",
        "Nodes scored or filtered, by the state of their residency view",
        metrics.nodes.clone(),
    );
    reg.register(
        "failed_nodes",
        "Nodes a filter call failed because no GPU there could ever hold a model of the pod",
        metrics.failed_nodes.clone(),
    );
    reg.register(
        "unknown_pod_models",
        "Calls for pods that name models the catalog does not have (they score as cold)",
        metrics.unknown_pod_models.clone(),
    );
    if let Some(cache) = cache {
        reg.register_collector(Box::new(CacheCollector(cache)));
    }
    reg
}

#[derive(Debug)]
struct CacheCollector(Arc<NodeCache>);

impl Collector for CacheCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |enc: &mut DescriptorEncoder, name, help, v: i64| {
            let g = ConstGauge::new(v);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
        };
        let counter = |enc: &mut DescriptorEncoder, name, help, v: u64| {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
        };
        let cache = &self.0;
        gauge(
            &mut enc,
            "cache_nodes",
            "Nodes in the node cache",
            cache.len() as i64,
        )?;
        gauge(
            &mut enc,
            "cache_synced",
            "1 once the node watch has listed every Node",
            i64::from(cache.synced()),
        )?;
        counter(
            &mut enc,
            "watch_events",
            "Node watch events handled",
            cache.events(),
        )?;
        counter(
            &mut enc,
            "watch_errors",
            "Node watch errors (each retried with backoff)",
            cache.errors(),
        )
    }
}

/// Encodes `reg` in the OpenMetrics text format.
pub fn encode(reg: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, reg);
    out
}
