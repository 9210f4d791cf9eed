//! The simulation report: what happened, how it compares with the offline
//! bound, and how fast the engine decided — as text or JSON.
//!
//! Everything but the timing is a function of the seed and the options, so
//! two runs print byte-identical reports except the lines starting with
//! [`TIMING_PREFIX`] (the JSON keeps its timing in one `"engine"` line).

use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{EvictionPolicy, ModelSpec};
use crate::engine::{Counters, Outcome};

use super::Options;
use super::bound::{Bound, lower_bound};
use super::run::Tally;

/// Report lines that hold wall-clock measurements start with this; nothing
/// else in the text report varies between runs of the same seed.
pub const TIMING_PREFIX: &str = "engine:";

/// What a model load costs, for the policy-vs-bound comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Load time in ms: the headline, and GreedyDual-Size's own cost.
    LoadTime,
    /// MiB of weights moved onto GPUs.
    Bytes,
    /// Number of loads.
    Count,
}

impl Cost {
    pub const ALL: [Cost; 3] = [Cost::LoadTime, Cost::Bytes, Cost::Count];

    fn of(self, m: &ModelSpec) -> u64 {
        match self {
            Cost::LoadTime => m.load_ms,
            Cost::Bytes => m.weights_mib,
            Cost::Count => 1,
        }
    }

    /// JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Cost::LoadTime => "load_ms",
            Cost::Bytes => "mib",
            Cost::Count => "loads",
        }
    }
}

/// The policy's cost against the lower bound, for one [`Cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostComparison {
    pub cost: Cost,
    /// What the simulated policy paid (every load it started).
    pub policy: u64,
    pub bound: Bound,
}

impl CostComparison {
    /// `policy / bound`: an upper bound on the policy's ratio to the
    /// optimum. `None` when the bound is 0 but the policy paid something.
    pub fn ratio(&self) -> Option<f64> {
        match (self.policy, self.bound.value) {
            (0, _) => Some(1.0),
            (_, 0) => None,
            (p, b) => Some(p as f64 / b as f64),
        }
    }
}

/// Nearest-rank percentiles of the queue wait, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Percentiles {
    fn of(mut values: Vec<u64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: f64| values[((p * values.len() as f64).ceil() as usize).max(1) - 1];
        Some(Percentiles {
            p50: rank(0.50),
            p99: rank(0.99),
            max: values[values.len() - 1],
        })
    }
}

/// How the requests for one catalog model (all its variants) fared: the
/// place to see whether small, fast models wait behind large ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStats {
    /// The catalog entry's name (without `#variant`).
    pub name: String,
    pub requests: u64,
    pub granted: u64,
    pub warm: u64,
    pub wait_ms: Option<Percentiles>,
}

impl ModelStats {
    /// Per catalog entry; `models` is the expanded catalog, `variants` per entry.
    fn collect(models: &[ModelSpec], variants: usize, tally: &Tally) -> Vec<ModelStats> {
        let bases = models.len() / variants.max(1);
        let mut waits: Vec<Vec<u64>> = vec![Vec::new(); bases];
        for (&m, &w) in tally.trace.iter().zip(&tally.waits_ms) {
            waits[m as usize / variants].push(w);
        }
        waits
            .into_iter()
            .enumerate()
            .map(|(b, w)| {
                let range = b * variants..(b + 1) * variants;
                let name = &models[b * variants].name;
                ModelStats {
                    name: name
                        .rsplit_once('#')
                        .map_or(name.as_str(), |(n, _)| n)
                        .to_owned(),
                    requests: tally.requests_by_model[range.clone()].iter().sum(),
                    granted: w.len() as u64,
                    warm: tally.warm_by_model[range].iter().sum(),
                    wait_ms: Percentiles::of(w),
                }
            })
            .collect()
    }
}

/// The run's setup, as resolved from the config and the options.
#[derive(Debug, Clone)]
pub(super) struct RunFacts {
    pub options: Options,
    pub policy: EvictionPolicy,
    pub timeout: Duration,
    pub lease_ttl: Duration,
    pub base_models: usize,
    /// `(name, total_mib)` per GPU.
    pub gpus: Vec<(String, u64)>,
    pub reserve_mib: u64,
}

/// One simulation's results. See [`Report::text`] for the readable form.
#[derive(Debug, Clone)]
pub struct Report {
    /// Queue, hit rate and pool use over simulated time (`--plot`).
    pub timeline: super::plot::Timeline,
    pub options: Options,
    /// The policy that ran (the option's, else the config's).
    pub policy: EvictionPolicy,
    /// The admission wait that clients asked for.
    pub timeout: Duration,
    pub lease_ttl: Duration,
    pub base_models: usize,
    /// Catalog entries × variants.
    pub models: usize,
    /// `(name, total_mib)` per GPU.
    pub gpus: Vec<(String, u64)>,
    pub reserve_mib: u64,
    /// `Σ (total − reserve)`: the pooled capacity of the bound.
    pub capacity_mib: u64,
    /// Simulated time when the run had drained.
    pub simulated_ms: u64,
    pub requests: u64,
    pub granted_warm: u64,
    pub granted_cold: u64,
    /// Refused by `admit` at once.
    pub refused: u64,
    /// Rejected later (`Effect::Reject`).
    pub rejected: u64,
    pub cancelled: u64,
    /// Over grants; `None` when nothing was granted.
    pub wait_ms: Option<Percentiles>,
    /// Per catalog entry, in catalog order.
    pub by_model: Vec<ModelStats>,
    pub cold_loads: u64,
    pub loaded_mib: u64,
    /// Σ load time of the loads started, ms.
    pub load_ms: u64,
    pub late_load_results: u64,
    /// Loads started while another GPU held a copy of the model.
    pub duplicate_loads: u64,
    /// Loads that finished with nobody left waiting (their waiters timed out).
    pub unused_loads: u64,
    pub keep_alives: u64,
    pub expired: u64,
    pub revoked: u64,
    pub faults: u64,
    pub faults_skipped: u64,
    /// Bookkeeping that disagreed with the engine; empty in a healthy run.
    pub anomalies: Vec<String>,
    /// The engine's own counters at the end.
    pub counters: Counters,
    /// Against the bound, in [`Cost::ALL`] order.
    pub comparisons: [CostComparison; 3],
    pub engine_calls: u64,
    /// Wall time spent inside engine calls.
    pub engine_time: Duration,
    /// Wall time of the whole run, bound included.
    pub wall_time: Duration,
}

impl Report {
    pub(super) fn build(
        facts: RunFacts,
        models: &[ModelSpec],
        tally: Tally,
        counters: Counters,
        wall: Instant,
    ) -> Report {
        let capacity_mib = facts
            .gpus
            .iter()
            .map(|(_, total)| total.saturating_sub(facts.reserve_mib))
            .sum();
        let sizes: Vec<u64> = models.iter().map(|m| m.weights_mib).collect();
        let comparisons = Cost::ALL.map(|cost| {
            let costs: Vec<u64> = models.iter().map(|m| cost.of(m)).collect();
            CostComparison {
                cost,
                policy: match cost {
                    Cost::LoadTime => tally.load_ms,
                    Cost::Bytes => tally.loaded_mib,
                    Cost::Count => tally.loads,
                },
                bound: lower_bound(&tally.trace, &sizes, &costs, capacity_mib),
            }
        });
        let by_model = ModelStats::collect(models, facts.options.variants as usize, &tally);
        Report {
            timeline: super::plot::Timeline::default(),
            by_model,
            options: facts.options,
            policy: facts.policy,
            timeout: facts.timeout,
            lease_ttl: facts.lease_ttl,
            base_models: facts.base_models,
            models: models.len(),
            gpus: facts.gpus,
            reserve_mib: facts.reserve_mib,
            capacity_mib,
            simulated_ms: tally.end_ms,
            requests: tally.requests,
            granted_warm: tally.granted_warm,
            granted_cold: tally.granted_cold,
            refused: tally.refused,
            rejected: tally.rejected,
            cancelled: tally.cancelled,
            wait_ms: Percentiles::of(tally.waits_ms),
            cold_loads: tally.loads,
            loaded_mib: tally.loaded_mib,
            load_ms: tally.load_ms,
            late_load_results: tally.late_load_results,
            unused_loads: tally.unused_loads,
            duplicate_loads: tally.duplicate_loads,
            keep_alives: tally.keep_alives,
            expired: tally.expired,
            revoked: tally.revoked,
            faults: tally.faults,
            faults_skipped: tally.faults_skipped,
            anomalies: tally.anomalies,
            counters,
            comparisons,
            engine_calls: tally.engine_calls,
            engine_time: tally.engine_time,
            wall_time: wall.elapsed(),
        }
    }

    pub fn granted(&self) -> u64 {
        self.granted_warm + self.granted_cold
    }

    /// Warm grants / grants.
    pub fn hit_rate(&self) -> Option<f64> {
        let g = self.granted();
        (g > 0).then(|| self.granted_warm as f64 / g as f64)
    }

    /// Engine calls per second of wall time spent inside the engine.
    pub fn decisions_per_second(&self) -> Option<f64> {
        let s = self.engine_time.as_secs_f64();
        (s > 0.0).then(|| self.engine_calls as f64 / s)
    }

    /// Admissions that ended without a lease, by the engine's outcome
    /// labels, in [`Outcome::ALL`] order (zeros included).
    pub fn rejections(&self) -> Vec<(Outcome, u64)> {
        Outcome::ALL
            .into_iter()
            .filter(|o| !o.is_grant() && *o != Outcome::Cancelled)
            .map(|o| (o, self.counters.outcome(o)))
            .collect()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).collect()).expect("values");
        assert_eq!(
            p,
            Percentiles {
                p50: 50,
                p99: 99,
                max: 100
            }
        );
        let one = Percentiles::of(vec![7]).expect("a value");
        assert_eq!(
            one,
            Percentiles {
                p50: 7,
                p99: 7,
                max: 7
            }
        );
        assert_eq!(Percentiles::of(vec![]), None);
    }

    #[test]
    fn a_ratio_needs_a_positive_bound_unless_the_policy_paid_nothing() {
        let c = |policy, value| CostComparison {
            cost: Cost::Count,
            policy,
            bound: Bound {
                compulsory: 0,
                value,
            },
        };
        assert_eq!(c(6, 4).ratio(), Some(1.5));
        assert_eq!(c(0, 0).ratio(), Some(1.0));
        assert_eq!(c(3, 0).ratio(), None);
    }
}
