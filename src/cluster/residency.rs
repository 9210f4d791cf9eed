//! Node annotations: what is warm where, as a pure function of the status.
//!
//! A scheduler extender or a router reads these to send work to a node that
//! already holds the model. They change with every load, eviction and lease,
//! which is why they are annotations (no selector watches them) and why the
//! publisher rate-limits them.
//!
//! # Schema (version [`SCHEMA_VERSION`])
//! - `<domain>/residency` — compact JSON, one object per GPU in index order:
//!   `{"uuid","healthy","free_mib","models":[MRU first],"loading":[..],"total_mib","idle_mib","pins":{..}}`;
//! - `<domain>/queue-depth` — admissions waiting (for a slot, for memory or
//!   on a load);
//! - `<domain>/residency-version` — the schema version, a decimal integer;
//! - `<domain>/residency-time` — when the state was read, RFC 3339 UTC to
//!   the second.
//!
//! Version 1 (no version key, no time, no `total_mib`/`idle_mib`/`pins`) is what
//! daemons before the timestamp wrote; version 2 only adds, so a reader of
//! version 1 reads version 2 unchanged. A reader must reject versions it
//! does not know rather than guess.
//!
//! # Freshness
//! The publisher writes when the state changes (at most once per
//! `cluster.annotation_interval`) and re-stamps an unchanged state every
//! [`REFRESH`]. So a live daemon's stamp is at most about [`REFRESH`] old
//! (plus the API's latency and any retry backoff), and a reader may count
//! an older one as unknown: that daemon has stopped publishing. A quiet
//! node costs one write per [`REFRESH`]; a busy one at most one per
//! interval.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::engine::Status;

/// Annotation key → value, sorted.
pub type Annotations = BTreeMap<String, String>;

/// The schema version written in `<domain>/residency-version`.
pub const SCHEMA_VERSION: u32 = 2;

/// An unchanged state is re-stamped (and written) this often.
pub const REFRESH: Duration = Duration::from_secs(60);

/// Key names after `<domain>/`.
pub const RESIDENCY: &str = "residency";
pub const QUEUE_DEPTH: &str = "queue-depth";
pub const VERSION: &str = "residency-version";
pub const TIME: &str = "residency-time";

/// One GPU in `<domain>/residency`. Field order is the JSON's key order.
#[derive(Debug, Serialize)]
struct GpuResidency<'a> {
    uuid: &'a str,
    healthy: bool,
    /// Pool memory not held by weights, running tasks or carve-outs.
    free_mib: u64,
    /// Ready copies, most recently used first (the engine's order).
    models: Vec<&'a str>,
    /// Copies being loaded: warm soon.
    loading: Vec<&'a str>,
    /// The GPU's memory (version 2): with the configured reserve, what a
    /// model can ever use here.
    total_mib: u64,
    /// Weights of ready copies no task uses (version 2): what evicting idle
    /// copies could add to `free_mib`.
    idle_mib: u64,
    /// Tasks running on each ready copy that has any (version 2), so a
    /// reader that knows the models' `max_concurrency` can tell a copy with
    /// room for another task from a saturated one; a ready copy not listed
    /// is idle.
    pins: BTreeMap<&'a str, u32>,
}

/// The annotations this node should carry, stamped `at` (see the module
/// docs for the schema).
pub fn node_annotations(status: &Status, domain: &str, at: SystemTime) -> Annotations {
    let gpus: Vec<GpuResidency<'_>> = status
        .gpus
        .iter()
        .map(|g| GpuResidency {
            uuid: &g.uuid,
            healthy: g.healthy,
            free_mib: g.free_mib,
            models: g
                .residents
                .iter()
                .filter(|r| !r.loading)
                .map(|r| r.name.as_str())
                .collect(),
            loading: g
                .residents
                .iter()
                .filter(|r| r.loading)
                .map(|r| r.name.as_str())
                .collect(),
            total_mib: g.total_mib,
            idle_mib: g
                .residents
                .iter()
                .filter(|r| !r.loading && r.pins == 0)
                .map(|r| r.weights_mib)
                .sum(),
            pins: g
                .residents
                .iter()
                .filter(|r| !r.loading && r.pins > 0)
                .map(|r| (r.name.as_str(), r.pins))
                .collect(),
        })
        .collect();
    // Strings, integers and booleans cannot fail to serialise; the fallback
    // only keeps this function total.
    let residency = serde_json::to_string(&gpus).unwrap_or_else(|_| "[]".to_owned());
    let key = |name: &str| format!("{domain}/{name}");
    let mut annotations = Annotations::new();
    annotations.insert(key(RESIDENCY), residency);
    annotations.insert(
        key(QUEUE_DEPTH),
        (status.queued + status.waiting_on_load).to_string(),
    );
    annotations.insert(key(VERSION), SCHEMA_VERSION.to_string());
    annotations.insert(key(TIME), rfc3339_seconds(at));
    annotations
}

/// Whether two annotation sets describe the same state: equal apart from
/// the stamp (`<domain>/residency-time`).
pub fn same_state(a: &Annotations, b: &Annotations, domain: &str) -> bool {
    let time = format!("{domain}/{TIME}");
    let rest = |m: &'_ Annotations| m.iter().filter(|(k, _)| **k != time).count();
    rest(a) == rest(b)
        && a.iter()
            .filter(|(k, _)| **k != time)
            .all(|(k, v)| b.get(k) == Some(v))
}

/// `at` as RFC 3339 UTC, whole seconds (`2026-12-02T10:00:00Z`); times
/// before 1970 read as the epoch.
fn rfc3339_seconds(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_support::{gpu, resident, status};

    /// 2026-12-02T10:00:00Z.
    fn noon() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_205_600)
    }

    #[test]
    fn residency_lists_ready_and_loading_models_per_gpu() {
        let mut s = status(vec![gpu("L4", 24576), gpu("L4", 24576)]);
        s.gpus[0].free_mib = 1000;
        s.gpus[0].residents = vec![
            resident("clip", false),
            resident("sam", true),
            resident("yolo", false),
        ];
        s.gpus[0].residents[0].pins = 1;
        s.gpus[1].healthy = false;
        s.gpus[1].free_mib = 0;
        s.queued = 2;
        s.waiting_on_load = 3;
        let a = node_annotations(&s, "vision.ai", noon());
        assert_eq!(
            a["vision.ai/residency"],
            concat!(
                r#"[{"uuid":"GPU-0","healthy":true,"free_mib":1000,"models":["clip","yolo"],"loading":["sam"],"total_mib":24576,"idle_mib":100,"pins":{"clip":1}},"#,
                r#"{"uuid":"GPU-1","healthy":false,"free_mib":0,"models":[],"loading":[],"total_mib":24576,"idle_mib":0,"pins":{}}]"#
            )
        );
        assert_eq!(a["vision.ai/queue-depth"], "5");
        assert_eq!(a["vision.ai/residency-version"], "2");
        assert_eq!(a["vision.ai/residency-time"], "2026-12-02T10:00:00Z");
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn a_node_without_gpus_has_an_empty_residency() {
        let a = node_annotations(&status(vec![]), "d", noon());
        assert_eq!(a["d/residency"], "[]");
        assert_eq!(a["d/queue-depth"], "0");
    }

    #[test]
    fn the_same_state_at_another_time_is_the_same_state() {
        let mut s = status(vec![gpu("L4", 24576)]);
        let a = node_annotations(&s, "d", noon());
        let later = node_annotations(&s, "d", noon() + REFRESH);
        assert_ne!(a, later);
        assert!(same_state(&a, &later, "d"));
        s.queued = 1;
        assert!(!same_state(&a, &node_annotations(&s, "d", noon()), "d"));
        let mut fewer = a.clone();
        fewer.remove("d/residency-version");
        assert!(!same_state(&a, &fewer, "d") && !same_state(&fewer, &a, "d"));
    }

    #[test]
    fn the_stamp_drops_fractions_of_a_second_and_survives_a_clock_before_1970() {
        let s = status(vec![]);
        let late = noon() + Duration::from_millis(999);
        assert_eq!(
            node_annotations(&s, "d", late)["d/residency-time"],
            "2026-12-02T10:00:00Z"
        );
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(
            node_annotations(&s, "d", before)["d/residency-time"],
            "1970-01-01T00:00:00Z"
        );
    }
}
