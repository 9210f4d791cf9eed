//! Node annotations: what is warm where, as a pure function of the status.
//!
//! A scheduler extender or a router reads these to send work to a node that
//! already holds the model. They change with every load, eviction and lease,
//! which is why they are annotations (no selector watches them) and why the
//! publisher rate-limits them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Status;

/// Annotation key → value, sorted.
pub(crate) type Annotations = BTreeMap<String, String>;

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
}

/// The annotations this node should carry:
///
/// - `<domain>/residency` — compact JSON, one object per GPU in index order:
///   `{"uuid","healthy","free_mib","models":[MRU first],"loading":[..]}`;
/// - `<domain>/queue-depth` — admissions waiting (for a slot, for memory or
///   on a load).
pub(crate) fn node_annotations(status: &Status, domain: &str) -> Annotations {
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
        })
        .collect();
    // Strings, integers and booleans cannot fail to serialise; the fallback
    // only keeps this function total.
    let residency = serde_json::to_string(&gpus).unwrap_or_else(|_| "[]".to_owned());
    let mut annotations = Annotations::new();
    annotations.insert(format!("{domain}/residency"), residency);
    annotations.insert(
        format!("{domain}/queue-depth"),
        (status.queued + status.waiting_on_load).to_string(),
    );
    annotations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_support::{gpu, resident, status};

    #[test]
    fn residency_lists_ready_and_loading_models_per_gpu() {
        let mut s = status(vec![gpu("L4", 24576), gpu("L4", 24576)]);
        s.gpus[0].free_mib = 1000;
        s.gpus[0].residents = vec![
            resident("clip", false),
            resident("sam", true),
            resident("yolo", false),
        ];
        s.gpus[1].healthy = false;
        s.gpus[1].free_mib = 0;
        s.queued = 2;
        s.waiting_on_load = 3;
        let a = node_annotations(&s, "vision.ai");
        assert_eq!(
            a["vision.ai/residency"],
            concat!(
                r#"[{"uuid":"GPU-0","healthy":true,"free_mib":1000,"models":["clip","yolo"],"loading":["sam"]},"#,
                r#"{"uuid":"GPU-1","healthy":false,"free_mib":0,"models":[],"loading":[]}]"#
            )
        );
        assert_eq!(a["vision.ai/queue-depth"], "5");
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn a_node_without_gpus_has_an_empty_residency() {
        let a = node_annotations(&status(vec![]), "d");
        assert_eq!(a["d/residency"], "[]");
        assert_eq!(a["d/queue-depth"], "0");
    }
}
