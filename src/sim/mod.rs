//! The workload simulator: synthetic traffic through the real [`Engine`],
//! and how its model loads compare with an offline lower bound.
//!
//! `vision-node-daemon simulate` is how an operator (or a reviewer of an
//! eviction-policy change) sees what the admission engine would do with a
//! node's GPUs and catalog before any pod runs. The report leads with what a
//! capacity planner reads first — the share of requests granted, rejections
//! by reason, queue waits, then the hit rate, how busy the GPUs were and how
//! evenly models were served — and ends with the policy's load cost against
//! offline bounds on the optimum. Because the engine is a
//! pure state machine with time as an argument, the simulator drives the
//! very code the daemon runs, with a virtual clock: ten minutes of traffic
//! replay in milliseconds, and a seed names one run exactly.
//!
//! # Scenarios
//! - `default`: a realistically loaded node — the dev config's two
//!   simulated L4s 70 % busy (GPU-time with a task or a load running) with
//!   seed 1, every request granted: two variants of each catalog model at
//!   0.55 requests/s.
//! - `overload`: the first design's default, about four times what two L4s
//!   can serve; waits sit at the timeout and the queue is full. It is where
//!   fairness and queueing under pressure show.
//!
//! Every flag overrides its scenario's value; a seed names one run exactly.
//!
//! # Layout
//! - `rng`: SplitMix64 + xoshiro256**, exponential and Zipf sampling —
//!   written here so a seed's workload never changes with a dependency.
//! - `workload`: the expanded catalog (`--variants`), the GPUs, the lazily
//!   generated arrival and fault streams.
//! - `run`: the discrete-event loop that plays the clients, the model
//!   runtime and the GPU faults around the engine, and measures it.
//! - [`bound`]: offline lower and upper bounds on the optimal load cost
//!   (FOO's interval LP; the derivation is in its docs).
//! - `report`: what a run found, `Serialize` for `--json`; `text` prints it.
//!
//! [`Engine`]: crate::engine::Engine

pub mod bound;
pub mod plot;
mod report;
pub(crate) mod rng;
mod run;
#[cfg(test)]
mod tests;
mod text;
mod timeline;
pub(crate) mod workload;

use std::time::Duration;

pub use report::{
    Cost, CostComparison, Fairness, MemoryUse, ModelStats, Percentiles, Report, TIMING_PREFIX,
};

use crate::config::{Config, EvictionPolicy};
use crate::engine;

/// A named workload: the node's load, not its GPUs or catalog (those come
/// from the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// About 70 % of GPU-time busy on the dev config's two L4s.
    Default,
    /// About four times what the dev config's two L4s can serve.
    Overload,
}

impl Scenario {
    pub const ALL: [Scenario; 2] = [Scenario::Default, Scenario::Overload];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Default => "default",
            Scenario::Overload => "overload",
        }
    }

    /// Parses a scenario name as the CLI spells it.
    pub fn parse(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| format!("`{s}` is not a scenario; use `default` or `overload`"))
    }

    /// The scenario's options, seed 1.
    pub fn options(self) -> Options {
        let overload = Options {
            scenario: self,
            seed: 1,
            duration: Duration::from_secs(600),
            rate_per_s: 20.0,
            zipf: 1.0,
            variants: 8,
            pods: 16,
            slots: 4,
            timeout: None,
            faults_per_hour: 0.0,
            fault_duration: Duration::from_secs(30),
            policy: None,
        };
        match self {
            Scenario::Overload => overload,
            Scenario::Default => Options {
                rate_per_s: DEFAULT_RATE_PER_S,
                variants: DEFAULT_VARIANTS,
                ..overload
            },
        }
    }
}

/// The default scenario's arrival rate: with seed 1, 70 % of GPU-time busy
/// on the dev config (benches/README.md has the measurement and the spread
/// over seeds).
pub const DEFAULT_RATE_PER_S: f64 = 0.55;
/// The default scenario's variants per catalog model: eight models whose
/// weights fit the two L4s, but not beside every task's working memory.
pub const DEFAULT_VARIANTS: u32 = 2;

/// What to simulate; the CLI's flags. [`Scenario::options`] gives a
/// scenario's values; `Default` is the default scenario's.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Which named workload these options started from.
    pub scenario: Scenario,
    /// Names the whole workload: same seed, same requests at the same times.
    pub seed: u64,
    /// Arrivals stop after this much simulated time (the run then drains).
    pub duration: Duration,
    /// Mean arrivals per second (Poisson).
    pub rate_per_s: f64,
    /// Zipf exponent of model popularity (0 = uniform).
    pub zipf: f64,
    /// Fine-tunes per catalog entry (`sd3b#0` …), sharing the base's figures.
    pub variants: u32,
    /// Pods sending tasks, each with its own slot allocation.
    pub pods: u32,
    /// Slots per pod: how many of its tasks may hold a lease at once.
    pub slots: u32,
    /// How long an admission may wait; `None` = the config's default timeout.
    pub timeout: Option<Duration>,
    /// Mean GPU faults per hour (Poisson); 0 = none.
    pub faults_per_hour: f64,
    /// How long a faulty GPU stays unhealthy.
    pub fault_duration: Duration,
    /// Eviction policy; `None` = the config's.
    pub policy: Option<EvictionPolicy>,
}

impl Default for Options {
    fn default() -> Options {
        Scenario::Default.options()
    }
}

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "the config lists no simulated GPUs (gpus.simulated); the simulator needs at least one"
    )]
    NoSimulatedGpus,
    #[error("the config's model catalog is empty")]
    NoModels,
    #[error("--{option} {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
    #[error("building the engine: {0}")]
    Engine(#[from] engine::BuildError),
    #[error("allocating the simulated pods' slots: {0}")]
    Alloc(#[from] engine::AllocError),
}

impl Options {
    /// Every flag's problem, the first one found.
    fn validate(&self) -> Result<(), Error> {
        let bad = |option, problem: &str| {
            Err(Error::BadOption {
                option,
                problem: problem.to_owned(),
            })
        };
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return bad("rate", "must be a positive number of arrivals per second");
        }
        if !(self.zipf.is_finite() && self.zipf >= 0.0) {
            return bad("zipf", "must be a finite exponent ≥ 0 (0 = uniform)");
        }
        if !(self.faults_per_hour.is_finite() && self.faults_per_hour >= 0.0) {
            return bad("faults-per-hour", "must be a finite rate ≥ 0");
        }
        if self.variants == 0 {
            return bad("variants", "must be at least 1");
        }
        if self.pods == 0 {
            return bad("pods", "must be at least 1");
        }
        if self.slots == 0 {
            return bad("slots", "must be at least 1");
        }
        Ok(())
    }
}

/// Parses a policy name as the config spells it (`lru`, `greedy-dual-size`).
pub fn parse_policy(s: &str) -> Result<EvictionPolicy, String> {
    match s {
        "lru" => Ok(EvictionPolicy::Lru),
        "greedy-dual-size" => Ok(EvictionPolicy::GreedyDualSize),
        _ => Err(format!(
            "`{s}` is not an eviction policy; use `lru` or `greedy-dual-size`"
        )),
    }
}

/// The config spelling of a policy.
pub fn policy_name(p: EvictionPolicy) -> &'static str {
    match p {
        EvictionPolicy::Lru => "lru",
        EvictionPolicy::GreedyDualSize => "greedy-dual-size",
    }
}

/// Runs one simulation of `options` against `config`'s GPUs and catalog.
pub fn run(config: &Config, options: &Options) -> Result<Report, Error> {
    run_with_progress(config, options, &mut |_| {})
}

/// [`run`], reporting the share (0..=1) of the arrival period simulated as
/// it goes (a few hundred times per run).
pub fn run_with_progress(
    config: &Config,
    options: &Options,
    progress: &mut dyn FnMut(f64),
) -> Result<Report, Error> {
    options.validate()?;
    run::simulate(config, options, progress)
}
