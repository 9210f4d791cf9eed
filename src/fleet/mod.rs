//! The fleet simulator: `vision-node-daemon simulate --fleet`.
//!
//! What is warm routing worth? A fleet of nodes, each a real
//! [`Engine`](crate::engine::Engine), receives pods (jobs) that each run one
//! model for a number of tasks and leave. Every pod is placed the way
//! kube-scheduler would place it:
//!
//! - `spread`: kube-scheduler's default scoring, blind to models —
//!   `NodeResourcesFit` least-allocated over the pods' equal CPU and memory
//!   requests, ties broken at random among the best;
//! - `warm`: the same plus the `vision-scheduler` profile's extender, whose
//!   filter and score are **the extender's own functions**
//!   ([`crate::extender::score`]) applied to the views
//!   ([`crate::extender::view`]) of the annotations each node last
//!   *published*: the daemon's own annotation function
//!   ([`crate::cluster::residency::node_annotations`]) under the daemon's
//!   own rules — one write per `cluster.annotation_interval` at most, an
//!   unchanged state re-stamped every [`REFRESH`] — so the extender sees
//!   them as stale as it would in a cluster.
//!
//! The run reports cold loads, MiB loaded, the wait from a pod's start to
//! its first granted task, grants, rejections and annotation writes per
//! node per second. Like `simulate`, it is deterministic for a seed: the
//! pods (arrival, model, task count, task times) are drawn from streams
//! seeded only by `--seed`, so both routings see the same pods.
//!
//! # Layout
//! - `world`: the discrete-event loop around the engines.
//! - `publish`: one node's annotation publisher, the daemon's rules.
//! - `place`: the two routings (kube-scheduler's score ± the extender).
//! - [`report`]: what a run found, as text or JSON.
//!
//! [`REFRESH`]: crate::cluster::residency::REFRESH

mod place;
mod publish;
pub mod report;
#[cfg(test)]
mod tests;
mod world;

use std::time::Duration;

pub use report::Report;

use crate::config::{Config, EvictionPolicy};
use crate::engine;
use crate::extender::score::{Catalog, PodModels};
use crate::extender::view::NodeView;

/// How pods are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// kube-scheduler's default scoring: least allocated, model-blind.
    Spread,
    /// The same plus the extender's filter and score (weight
    /// [`Options::extender_weight`]).
    Warm,
}

impl Routing {
    pub fn name(self) -> &'static str {
        match self {
            Routing::Spread => "spread",
            Routing::Warm => "warm",
        }
    }
}

/// Parses `spread` or `warm`.
pub fn parse_routing(s: &str) -> Result<Routing, String> {
    match s {
        "spread" => Ok(Routing::Spread),
        "warm" => Ok(Routing::Warm),
        _ => Err(format!("`{s}` is not a routing; use `spread` or `warm`")),
    }
}

/// The extender's score, as the fleet calls it: the function itself, not a
/// copy (a test checks the pointer).
pub type ScoreFn = fn(&PodModels, &NodeView, &Catalog, i64, i64) -> i64;

/// The score `warm` routing uses.
pub const EXTENDER_SCORE: ScoreFn = crate::extender::score::score;

/// The extender's weight in the chart's scheduler configuration
/// (`extender.weight` in values.yaml): kube-scheduler adds
/// `score × weight × 10` to its own 0..100 node scores.
///
/// 1, the least kube-scheduler takes: the extender's 0..100 then weighs as
/// much as the least-allocated score, which keeps spreading pods among
/// equally warm nodes. With 2 or more, pods crowd onto whichever warm node
/// has the fewest pods until its annotations catch up (the simulator's p99
/// first-task wait after warm-up: 0.9 s at weight 1, 3.2 s at 2, 5.4 s at 5).
pub const DEFAULT_EXTENDER_WEIGHT: i64 = 1;

/// What to simulate. The CLI's flags, with the defaults of the goal run:
/// 100 nodes × 4 L4-sized GPUs, the seed models × 16 variants, Zipf s = 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub seed: u64,
    /// Pods arrive for this long (simulated); the run then drains.
    pub duration: Duration,
    /// The first stretch, left out of the measured figures (caches start
    /// empty); the whole run is reported beside them.
    pub warmup: Duration,
    /// Mean pod arrivals per second (Poisson).
    pub rate_per_s: f64,
    /// Zipf exponent of model popularity.
    pub zipf: f64,
    /// Fine-tunes per catalog model.
    pub variants: u32,
    pub nodes: u32,
    pub gpus_per_node: u32,
    /// Mean tasks one pod runs (geometric, at least 1).
    pub tasks_per_pod: f64,
    pub routing: Routing,
    pub extender_weight: i64,
    /// How long an admission may wait; `None` = the config's default.
    pub timeout: Option<Duration>,
    pub policy: Option<EvictionPolicy>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            seed: 1,
            duration: Duration::from_secs(3600),
            warmup: Duration::from_secs(600),
            rate_per_s: DEFAULT_RATE_PER_S,
            zipf: 1.0,
            variants: 16,
            nodes: 100,
            gpus_per_node: 4,
            tasks_per_pod: 20.0,
            routing: Routing::Warm,
            extender_weight: DEFAULT_EXTENDER_WEIGHT,
            timeout: None,
            policy: None,
        }
    }
}

/// Pod arrivals per second that keep the default fleet about 60 % busy
/// (GPUs running a task or a load, time-averaged; see the report).
pub const DEFAULT_RATE_PER_S: f64 = 8.0;

/// Why a fleet simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error(
        "the config lists no simulated GPUs (gpus.simulated); the fleet's nodes take the first entry's size"
    )]
    NoSimulatedGpus,
    #[error("the config's model catalog is empty")]
    NoModels,
    #[error("--{option} {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
    #[error("building a node's engine: {0}")]
    Engine(#[from] engine::BuildError),
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        let bad = |option, problem: &str| {
            Err(Error::BadOption {
                option,
                problem: problem.to_owned(),
            })
        };
        if !(self.rate_per_s.is_finite() && self.rate_per_s > 0.0) {
            return bad("rate", "must be a positive number of pods per second");
        }
        if !(self.zipf.is_finite() && self.zipf >= 0.0) {
            return bad("zipf", "must be a finite exponent ≥ 0 (0 = uniform)");
        }
        if !(self.tasks_per_pod.is_finite() && self.tasks_per_pod >= 1.0) {
            return bad("tasks-per-pod", "must be a mean of at least 1");
        }
        if self.variants == 0 {
            return bad("variants", "must be at least 1");
        }
        if self.warmup >= self.duration {
            return bad("warmup", "must be shorter than --duration");
        }
        if !(1..=10_000).contains(&self.nodes) {
            return bad("nodes", "must be between 1 and 10000");
        }
        if !(1..=64).contains(&self.gpus_per_node) {
            return bad("gpus-per-node", "must be between 1 and 64");
        }
        if !(0..=1000).contains(&self.extender_weight) {
            return bad("extender-weight", "must be between 0 and 1000");
        }
        Ok(())
    }
}

/// Runs one fleet simulation of `options` with `config`'s catalog, GPU
/// size, admission settings and annotation interval.
pub fn run(config: &Config, options: &Options) -> Result<Report, Error> {
    options.validate()?;
    world::simulate(config, options)
}
