//! What a fleet run found, as text or JSON.
//!
//! Everything in the report is a function of the options and the seed; the
//! run's wall-clock time is printed by the CLI apart from it.

use std::fmt::Write as _;

use serde::Serialize;

/// Nearest-rank percentiles, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    /// Of `values` (zeros when there are none).
    pub fn of(mut values: Vec<u64>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).max(1) - 1];
        Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// What one stretch of a run observed. Field names are the JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Simulated seconds the stretch covers.
    pub measured_s: f64,
    /// Pods created in the stretch (the wait figures are theirs).
    pub pods: u64,
    /// Of those, pods that got no task granted at all.
    pub pods_without_grant: u64,
    /// Of those, pods placed on a node whose published annotations showed
    /// a ready copy of their model with room for a task.
    pub pods_on_warm_nodes: u64,
    /// Time from a pod's creation to its placement (no free slot anywhere).
    pub schedule_wait_ms: Percentiles,
    /// Time from a pod's start on its node to its first granted task.
    pub first_task_wait_ms: Percentiles,
    /// First tasks granted on a ready copy.
    pub first_tasks_warm: u64,
    /// Model loads started in the stretch, fleet-wide.
    pub cold_loads: u64,
    pub loaded_mib: u64,
    pub grants: u64,
    pub grants_warm: u64,
    /// Admissions refused at once or rejected while waiting.
    pub rejections: u64,
    pub tasks: u64,
    pub annotation_writes: u64,
    pub annotation_writes_per_node_per_s: f64,
    /// Time-averaged share of GPUs running a task or a load.
    pub gpu_busy_fraction: f64,
    /// Time-averaged share of the fleet's pod slots in use.
    pub slot_occupancy: f64,
}

/// A fleet run's findings: the measured window — after `warmup_s`, while
/// pods arrive — at the top level (the JSON's `cold_loads`,
/// `first_task_wait_ms.p99`, …), the whole run beside it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub routing: &'static str,
    pub seed: u64,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub gpu_mib: u64,
    pub models: usize,
    pub zipf: f64,
    pub rate_per_s: f64,
    pub tasks_per_pod: f64,
    pub extender_weight: i64,
    pub annotation_interval_s: f64,
    /// Pods arrive for this long; the run then drains.
    pub duration_s: f64,
    /// The first stretch, left out of the measured window: the caches
    /// start empty.
    pub warmup_s: f64,
    /// Simulated time when the last pod left.
    pub simulated_s: f64,
    pub evictions: u64,
    #[serde(flatten)]
    pub measured: Summary,
    pub including_warmup: Summary,
    /// Things that should not happen, described (empty in a sound run).
    pub anomalies: Vec<String>,
}

impl Report {
    pub fn json(&self) -> String {
        let mut s =
            serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        s.push('\n');
        s
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let w = &mut s;
        let _ = writeln!(
            w,
            "fleet: {} nodes × {} GPUs of {} MiB, {} models, routing {} (extender weight {})",
            self.nodes,
            self.gpus_per_node,
            self.gpu_mib,
            self.models,
            self.routing,
            self.extender_weight
        );
        let _ = writeln!(
            w,
            "workload: seed {}, {:.1} pods/s for {:.0} s, Zipf s = {}, {:.0} tasks per pod (mean); drained at {:.0} s",
            self.seed,
            self.rate_per_s,
            self.duration_s,
            self.zipf,
            self.tasks_per_pod,
            self.simulated_s
        );
        let _ = writeln!(
            w,
            "measured: after a {:.0} s warm-up, {:.0} s while pods arrive",
            self.warmup_s, self.measured.measured_s
        );
        summary(w, &self.measured);
        let _ = writeln!(w, "including the warm-up:");
        summary(w, &self.including_warmup);
        let _ = writeln!(w, "evictions (whole run): {}", self.evictions);
        for a in self.anomalies.iter().take(10) {
            let _ = writeln!(w, "ANOMALY: {a}");
        }
        s
    }
}

fn summary(w: &mut String, m: &Summary) {
    let _ = writeln!(
        w,
        "  pods: {} ({} placed warm, {} without any grant); busy: {:.0} % of GPU time, {:.0} % of slots",
        m.pods,
        m.pods_on_warm_nodes,
        m.pods_without_grant,
        m.gpu_busy_fraction * 100.0,
        m.slot_occupancy * 100.0
    );
    let p = &m.first_task_wait_ms;
    let _ = writeln!(
        w,
        "  first task wait: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} of {} first tasks warm)",
        p.p50, p.p90, p.p99, p.max, m.first_tasks_warm, m.pods
    );
    let q = &m.schedule_wait_ms;
    let _ = writeln!(
        w,
        "  waiting for a slot: p50 {} ms, p99 {} ms",
        q.p50, q.p99
    );
    let _ = writeln!(
        w,
        "  cold loads: {} ({} MiB); grants {} ({} warm), rejections {}",
        m.cold_loads, m.loaded_mib, m.grants, m.grants_warm, m.rejections
    );
    let _ = writeln!(
        w,
        "  annotation writes: {} ({:.3} per node per s)",
        m.annotation_writes, m.annotation_writes_per_node_per_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).collect());
        assert_eq!(
            p,
            Percentiles {
                p50: 50,
                p90: 90,
                p99: 99,
                max: 100
            }
        );
        assert_eq!(Percentiles::of(vec![]), Percentiles::default());
    }
}
