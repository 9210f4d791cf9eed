//! The simulation report: what happened, how evenly models were served, how
//! the policy's load cost compares with the offline bounds, and how fast the
//! engine decided. `Serialize` gives `simulate --json`; `text` the rest.
//!
//! Everything but the timing is a function of the seed and the options, so
//! two runs print byte-identical reports except the lines starting with
//! [`TIMING_PREFIX`] (in JSON: the `engine` object).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{EvictionPolicy, ModelSpec};
use crate::engine::{Counters, Outcome};

use super::bound::{Bounds, offline_bounds};
use super::run::Tally;
use super::{Options, Scenario, policy_name};

/// Report lines that hold wall-clock measurements start with this; nothing
/// else in the text report varies between runs of the same seed.
pub const TIMING_PREFIX: &str = "engine:";

/// What a model load costs, for the policy-vs-bounds comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
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

/// The policy's cost against the offline bounds, for one [`Cost`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostComparison {
    pub cost: Cost,
    /// What the simulated policy paid (every load it started).
    pub policy: u64,
    pub compulsory: u64,
    /// No offline policy pays less (FOO-L).
    pub lower: u64,
    /// An offline schedule pays this (FOO-U).
    pub upper: u64,
    /// `(upper − lower) / lower`: how precisely the pooled optimum is known.
    pub gap: Option<f64>,
    /// `policy / lower`: the policy is at most this far from optimal. (The
    /// upper bound is a schedule of the pooled cache, which the real GPUs
    /// may not be able to follow, so it gives no "at least".)
    pub ratio: Option<f64>,
}

impl CostComparison {
    fn new(cost: Cost, policy: u64, b: Bounds) -> CostComparison {
        let ratio = |to: u64| match (policy, to) {
            (0, _) => Some(1.0),
            (_, 0) => None,
            (p, b) => Some(p as f64 / b as f64),
        };
        CostComparison {
            cost,
            policy,
            compulsory: b.compulsory,
            lower: b.lower,
            upper: b.upper,
            gap: b.gap(),
            ratio: ratio(b.lower),
        }
    }
}

/// The bounds section: the pooled cache (less, at each grant, the working
/// memory of the tasks running then), and one comparison per [`Cost`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundReport {
    /// `Σ (total − reserve)`: the pooled cache the bounds assume.
    pub capacity_mib: u64,
    /// Granted admissions the bounds cover (at most `bound::MAX_POINTS`).
    pub points: usize,
    pub load_ms: CostComparison,
    pub mib: CostComparison,
    pub loads: CostComparison,
}

impl BoundReport {
    pub fn comparisons(&self) -> [&CostComparison; 3] {
        [&self.load_ms, &self.mib, &self.loads]
    }
}

/// Nearest-rank percentiles of the queue wait, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// How the requests for one catalog model (all its variants) fared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelStats {
    /// The catalog entry's name (without `#variant`).
    pub name: String,
    pub requests: u64,
    pub granted: u64,
    pub warm: u64,
    pub grant_ratio: Option<f64>,
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
                let requests: u64 = tally.requests_by_model[range.clone()].iter().sum();
                let granted = w.len() as u64;
                ModelStats {
                    name: name
                        .rsplit_once('#')
                        .map_or(name.as_str(), |(n, _)| n)
                        .to_owned(),
                    requests,
                    granted,
                    warm: tally.warm_by_model[range].iter().sum(),
                    grant_ratio: (requests > 0).then(|| granted as f64 / requests as f64),
                    wait_ms: Percentiles::of(w),
                }
            })
            .collect()
    }
}

/// Where the GPUs' memory went over the arrival period: shares of the
/// usable MiB·s (usable memory × time, summed over GPUs), adding up to 1.
/// Says what a policy spends memory on besides the tasks themselves — loads,
/// idle copies, memory held free for the head reservation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemoryUse {
    /// Working memory of running tasks (leases).
    pub tasks: f64,
    /// Weights of copies with at least one running task.
    pub copies_in_use: f64,
    /// Weights of copies being loaded.
    pub loading_weights: f64,
    /// Working memory of admissions waiting for a load (held for them).
    pub load_waiters: f64,
    /// Weights of ready copies with no task.
    pub idle_copies: f64,
    /// Free memory (including memory the engine left free for the head
    /// reservation, `held_for_head`) and VRAM carve-outs, which the
    /// simulator does not make.
    pub free: f64,
    /// Part of `free`: memory the head reservation kept free on its GPU.
    pub held_for_head: f64,
}

/// How evenly the catalog models were served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    /// The lowest per-model grant ratio divided by the overall one (models
    /// with requests only); 1 means every model got its share.
    pub min_over_overall: Option<f64>,
    /// The model with the lowest grant ratio.
    pub lowest: Option<String>,
}

impl Fairness {
    fn of(by_model: &[ModelStats], overall: Option<f64>) -> Fairness {
        let lowest = by_model
            .iter()
            .filter_map(|m| m.grant_ratio.map(|r| (r, m)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        Fairness {
            min_over_overall: match (lowest, overall) {
                (Some((r, _)), Some(o)) if o > 0.0 => Some(r / o),
                _ => None,
            },
            lowest: lowest.map(|(_, m)| m.name.clone()),
        }
    }
}

/// What was asked: the scenario's workload as it ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub rate_per_s: f64,
    pub duration_ms: u64,
    pub zipf: f64,
    pub variants: u32,
    /// Catalog entries × variants.
    pub models: usize,
    pub base_models: usize,
    pub pods: u32,
    pub slots: u32,
    /// The admission wait that clients asked for.
    pub timeout_ms: u64,
    pub lease_ttl_ms: u64,
    pub faults_per_hour: f64,
    pub fault_duration_ms: u64,
}

/// One simulated GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GpuReport {
    pub name: String,
    pub total_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Grants {
    pub total: u64,
    pub warm: u64,
    pub cold: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejections {
    pub total: u64,
    /// Refused by `admit` at once.
    pub at_once: u64,
    /// Rejected later (`Effect::Reject`).
    pub later: u64,
    /// By the engine's outcome label; reasons that never happened are left out.
    pub by_reason: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Loads {
    pub cold_loads: u64,
    pub loaded_mib: u64,
    /// Σ load time of the loads started.
    pub load_ms: u64,
    pub evictions: u64,
    pub evicted_mib: u64,
    /// Loads that finished with nobody left waiting (their waiters timed out).
    pub unused: u64,
    /// Loads started while another GPU held a copy of the model.
    pub duplicate: u64,
    /// `load_finished` results the engine ignored (the GPU failed meanwhile).
    pub late_results: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Clients {
    /// Admissions still pending when the run drained (cancelled then).
    pub cancelled: u64,
    pub keep_alives: u64,
    pub expired: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Faults {
    pub injected: u64,
    /// Faults drawn while no GPU was healthy.
    pub skipped: u64,
    pub revoked: u64,
}

/// Wall-clock figures: the only part that differs between runs of a seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineTiming {
    pub calls: u64,
    /// Wall time spent inside engine calls.
    pub time_ms: f64,
    pub decisions_per_s: Option<f64>,
    /// Wall time of the whole run, bounds included.
    pub wall_ms: f64,
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

fn policy_label<S: serde::Serializer>(p: &EvictionPolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(policy_name(*p))
}

/// One simulation's results. See [`Report::text`] for the readable form.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Queue, hit rate and pool use over simulated time (`--plot`).
    #[serde(skip)]
    pub timeline: super::plot::Timeline,
    pub scenario: Scenario,
    pub seed: u64,
    /// The policy that ran (the option's, else the config's).
    #[serde(serialize_with = "policy_label")]
    pub policy: EvictionPolicy,
    pub workload: Workload,
    pub gpus: Vec<GpuReport>,
    pub reserve_mib: u64,
    pub requests: u64,
    /// Grants / requests.
    pub grant_ratio: Option<f64>,
    pub grants: Grants,
    pub rejections: Rejections,
    /// Over grants.
    pub queue_wait_ms: Option<Percentiles>,
    /// Warm grants / grants.
    pub hit_rate: Option<f64>,
    /// Share of GPU-time during the arrivals with a task or a load running.
    pub gpu_busy: Option<f64>,
    /// Where the memory went; `None` for a run with no time.
    pub memory_use: Option<MemoryUse>,
    pub fairness: Fairness,
    /// Per catalog entry, in catalog order.
    pub by_model: Vec<ModelStats>,
    pub loads: Loads,
    pub clients: Clients,
    pub faults: Faults,
    /// Bookkeeping that disagreed with the engine; empty in a healthy run.
    pub anomalies: Vec<String>,
    pub bound: BoundReport,
    /// Simulated time when the run had drained.
    pub simulated_ms: u64,
    /// The options as given.
    #[serde(skip)]
    pub options: Options,
    /// The engine's own counters at the end.
    #[serde(skip)]
    pub counters: Counters,
    pub engine: EngineTiming,
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
        let [load_ms, mib, loads] = Cost::ALL.map(|cost| {
            let costs: Vec<u64> = models.iter().map(|m| cost.of(m)).collect();
            let policy = match cost {
                Cost::LoadTime => tally.load_ms,
                Cost::Bytes => tally.loaded_mib,
                Cost::Count => tally.loads,
            };
            let b = offline_bounds(
                &tally.trace,
                &tally.working_at,
                &sizes,
                &costs,
                capacity_mib,
            );
            CostComparison::new(cost, policy, b)
        });
        let bound = BoundReport {
            capacity_mib,
            points: tally.trace.len().min(super::bound::MAX_POINTS),
            load_ms,
            mib,
            loads,
        };
        let o = &facts.options;
        let by_model = ModelStats::collect(models, o.variants as usize, &tally);
        let granted = tally.granted_warm + tally.granted_cold;
        let grant_ratio = (tally.requests > 0).then(|| granted as f64 / tally.requests as f64);
        let by_reason = Outcome::ALL
            .into_iter()
            .filter(|o| !o.is_grant() && *o != Outcome::Cancelled)
            .map(|o| (o.as_str(), counters.outcome(o)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let gpu_time = facts.gpus.len() as u64 * o.duration.as_millis() as u64;
        let engine_s = tally.engine_time.as_secs_f64();
        Report {
            timeline: super::plot::Timeline::default(),
            scenario: o.scenario,
            seed: o.seed,
            policy: facts.policy,
            workload: Workload {
                rate_per_s: o.rate_per_s,
                duration_ms: o.duration.as_millis() as u64,
                zipf: o.zipf,
                variants: o.variants,
                models: models.len(),
                base_models: facts.base_models,
                pods: o.pods,
                slots: o.slots,
                timeout_ms: facts.timeout.as_millis() as u64,
                lease_ttl_ms: facts.lease_ttl.as_millis() as u64,
                faults_per_hour: o.faults_per_hour,
                fault_duration_ms: o.fault_duration.as_millis() as u64,
            },
            gpus: facts
                .gpus
                .iter()
                .map(|(name, total_mib)| GpuReport {
                    name: name.clone(),
                    total_mib: *total_mib,
                })
                .collect(),
            reserve_mib: facts.reserve_mib,
            requests: tally.requests,
            grant_ratio,
            grants: Grants {
                total: granted,
                warm: tally.granted_warm,
                cold: tally.granted_cold,
            },
            rejections: Rejections {
                total: tally.refused + tally.rejected,
                at_once: tally.refused,
                later: tally.rejected,
                by_reason,
            },
            queue_wait_ms: Percentiles::of(tally.waits_ms),
            hit_rate: (granted > 0).then(|| tally.granted_warm as f64 / granted as f64),
            gpu_busy: (gpu_time > 0).then(|| tally.busy_ms as f64 / gpu_time as f64),
            memory_use: tally.memory.shares(),
            fairness: Fairness::of(&by_model, grant_ratio),
            by_model,
            loads: Loads {
                cold_loads: tally.loads,
                loaded_mib: tally.loaded_mib,
                load_ms: tally.load_ms,
                evictions: counters.evictions,
                evicted_mib: counters.evicted_mib,
                unused: tally.unused_loads,
                duplicate: tally.duplicate_loads,
                late_results: tally.late_load_results,
            },
            clients: Clients {
                cancelled: tally.cancelled,
                keep_alives: tally.keep_alives,
                expired: tally.expired,
            },
            faults: Faults {
                injected: tally.faults,
                skipped: tally.faults_skipped,
                revoked: tally.revoked,
            },
            anomalies: tally.anomalies,
            bound,
            simulated_ms: tally.end_ms,
            options: facts.options,
            counters,
            engine: EngineTiming {
                calls: tally.engine_calls,
                time_ms: engine_s * 1e3,
                decisions_per_s: (engine_s > 0.0).then(|| tally.engine_calls as f64 / engine_s),
                wall_ms: wall.elapsed().as_secs_f64() * 1e3,
            },
        }
    }

    pub fn granted(&self) -> u64 {
        self.grants.total
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

    /// The report as pretty JSON, ending in a newline.
    pub fn json(&self) -> String {
        // Plain numbers, strings, options and maps with string keys: serde_json
        // cannot fail on them.
        let mut s = serde_json::to_string_pretty(self).expect("the report serializes");
        s.push('\n');
        s
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
        let c = |policy, lower, upper| {
            CostComparison::new(
                Cost::Count,
                policy,
                Bounds {
                    compulsory: 0,
                    lower,
                    upper,
                    points: 1,
                },
            )
        };
        assert_eq!(c(6, 4, 5).ratio, Some(1.5));
        assert_eq!(c(6, 4, 5).gap, Some(0.25));
        assert_eq!(c(0, 0, 0).ratio, Some(1.0));
        assert_eq!(c(3, 0, 0).ratio, None);
    }

    #[test]
    fn fairness_is_the_lowest_model_ratio_over_the_overall_one() {
        let m = |name: &str, requests, granted| ModelStats {
            name: name.into(),
            requests,
            granted,
            warm: 0,
            grant_ratio: (requests > 0).then(|| granted as f64 / requests as f64),
            wait_ms: None,
        };
        let models = [m("a", 100, 50), m("b", 100, 20), m("c", 0, 0)];
        let f = Fairness::of(&models, Some(0.35));
        assert_eq!(f.lowest.as_deref(), Some("b"));
        assert!((f.min_over_overall.unwrap() - 0.2 / 0.35).abs() < 1e-12);
    }
}
