//! The extender's decisions as pure functions: which nodes a pod can never
//! use, and how much each node is worth to it.
//!
//! The HTTP extender and the fleet simulator (`crate::fleet`) call these
//! very functions; nothing here knows about HTTP, Kubernetes objects or
//! clocks (time comes in as Unix seconds).
//!
//! # The score, precisely
//! For a pod that declares models `M` (`<domain>/models`) and a node whose
//! view is fresh (stamped at most `max_age` ago), each model `m ∈ M` gets
//! the best [`Tier`] any *healthy* GPU of the node offers, worth
//! [`Tier::points`]:
//!
//! | tier | condition on one healthy GPU | points |
//! |---|---|---|
//! | `ReadyIdle` | `m` is a ready copy no task uses | 10 |
//! | `Ready` | a ready copy with room for another task (`pins < max_concurrency`) | 9 |
//! | `Loading` | `m` is being loaded | 8 |
//! | `Saturated` | a ready copy at `max_concurrency` (a task frees it soon, or the node loads another copy) | 6 |
//! | `FitsFree` | `free_mib ≥ need(m)` | 5 |
//! | `FitsAfterEviction` | `free_mib + idle_mib ≥ need(m)` | 3 |
//! | `Cold` | none of the above, or `m` not in the catalog | 0 |
//!
//! where `need(m)` = the catalog's weights + working memory. With `P` the
//! sum of the points and `q` the node's queue depth,
//!
//! `score = ⌊ P × H / (|M| × (H + q)) ⌋`, with `H` = [`QUEUE_HALF`] = 4,
//!
//! an integer in `0..=10` ([`MAX_PRIORITY`]): the mean of the points,
//! halved when `q` admissions wait on the node (so one warm node does not
//! take everything). A node whose view is stale, missing or unreadable, and
//! every node for a pod without models, scores 0: no evidence of warmth.
//! Equal scores leave the choice to kube-scheduler's own scoring.
//!
//! # The filter
//! A node fails only when some model of the pod can never fit on any of its
//! GPUs, healthy or not: `need(m) > total_mib − reserve_mib` for every GPU
//! (hardware does not go stale, so any readable view counts, however old).
//! A node without a readable view passes: nothing proves it cannot.

use std::collections::HashMap;

use super::view::{GpuView, NodeView};
use crate::config::ModelSpec;

/// kube-scheduler's `MaxExtenderPriority`.
pub const MAX_PRIORITY: i64 = 10;

/// The queue depth at which a node's score halves.
pub const QUEUE_HALF: i64 = 4;

/// The most models one pod may declare; more are ignored.
pub const MAX_POD_MODELS: usize = 16;

/// A model of the [`Catalog`], by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef(pub u32);

/// The model catalog, as the extender needs it: names and the memory one
/// task of each needs on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    index: HashMap<Box<str>, ModelRef>,
    models: Vec<CatalogModel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CatalogModel {
    name: Box<str>,
    weights_mib: u64,
    working_mib: u64,
    max_concurrency: u32,
}

impl Catalog {
    /// The catalog of `models` (names are unique in a validated config; a
    /// repeated name keeps its first entry).
    pub fn new(models: &[ModelSpec]) -> Catalog {
        let mut index = HashMap::with_capacity(models.len());
        let mut kept = Vec::with_capacity(models.len());
        for m in models {
            let id = ModelRef(kept.len() as u32);
            if index.insert(m.name.as_str().into(), id).is_none() {
                kept.push(CatalogModel {
                    name: m.name.as_str().into(),
                    weights_mib: m.weights_mib,
                    working_mib: m.working_mib,
                    max_concurrency: m.max_concurrency,
                });
            }
        }
        Catalog {
            index,
            models: kept,
        }
    }

    pub fn find(&self, name: &str) -> Option<ModelRef> {
        self.index.get(name).copied()
    }

    pub fn name(&self, m: ModelRef) -> &str {
        &self.models[m.0 as usize].name
    }

    /// Weights + working memory: what a cold task of `m` needs on one GPU.
    pub fn need_mib(&self, m: ModelRef) -> u64 {
        let spec = &self.models[m.0 as usize];
        spec.weights_mib + spec.working_mib
    }

    /// Most tasks one copy of `m` serves at once.
    pub fn max_concurrency(&self, m: ModelRef) -> u32 {
        self.models[m.0 as usize].max_concurrency
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// The models a pod declares, read from its `<domain>/models` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodModels {
    /// Catalog models, in the annotation's order, without repeats.
    pub known: Vec<ModelRef>,
    /// Names the catalog lacks (they score as cold everywhere).
    pub unknown: Vec<String>,
    /// Names past [`MAX_POD_MODELS`] were ignored.
    pub truncated: bool,
}

impl PodModels {
    /// Reads `"sd3b, clip-vit-b32"`: comma-separated, spaces trimmed,
    /// empty entries and repeats skipped. `None` (no annotation) and a blank
    /// annotation both mean "no models": every node passes and ties.
    pub fn parse(annotation: Option<&str>, catalog: &Catalog) -> PodModels {
        let mut pod = PodModels::default();
        let mut seen = 0usize;
        for name in annotation.unwrap_or("").split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            if seen == MAX_POD_MODELS {
                pod.truncated = true;
                break;
            }
            seen += 1;
            match catalog.find(name) {
                Some(m) if !pod.known.contains(&m) => pod.known.push(m),
                Some(_) => {}
                None if !pod.unknown.iter().any(|u| u == name) => {
                    pod.unknown.push(name.chars().take(63).collect())
                }
                None => {}
            }
        }
        pod
    }

    /// Whether the pod declares any model.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty() && self.unknown.is_empty()
    }

    fn count(&self) -> usize {
        self.known.len() + self.unknown.len()
    }
}

/// How ready a node is for one model, worst first.
///
/// A ready copy with room starts a task at once; an idle one has room for
/// more than one. A saturated copy (at `max_concurrency`) does not: the
/// node loads another copy or the task waits for one to free up, so it
/// ranks below a copy being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Cold,
    FitsAfterEviction,
    FitsFree,
    Saturated,
    Loading,
    Ready,
    ReadyIdle,
}

impl Tier {
    pub fn points(self) -> i64 {
        match self {
            Tier::ReadyIdle => 10,
            Tier::Ready => 9,
            Tier::Loading => 8,
            Tier::Saturated => 6,
            Tier::FitsFree => 5,
            Tier::FitsAfterEviction => 3,
            Tier::Cold => 0,
        }
    }
}

/// The best tier the healthy GPUs offer `m`.
pub fn tier(m: ModelRef, catalog: &Catalog, gpus: &[GpuView]) -> Tier {
    let need = catalog.need_mib(m);
    let mut best = Tier::Cold;
    for g in gpus.iter().filter(|g| g.healthy) {
        let t = if g.ready.contains(&m) {
            match g.pins(m) {
                0 => return Tier::ReadyIdle,
                p if p < catalog.max_concurrency(m) => Tier::Ready,
                _ => Tier::Saturated,
            }
        } else if g.loading.contains(&m) {
            Tier::Loading
        } else if g.free_mib >= need {
            Tier::FitsFree
        } else if g.free_mib.saturating_add(g.idle_mib) >= need {
            Tier::FitsAfterEviction
        } else {
            Tier::Cold
        };
        best = best.max(t);
    }
    best
}

/// The node's score for the pod, `0..=MAX_PRIORITY` (see the module docs).
pub fn score(
    pod: &PodModels,
    node: &NodeView,
    catalog: &Catalog,
    now_s: i64,
    max_age_s: i64,
) -> i64 {
    if pod.is_empty() {
        return 0;
    }
    let Some(r) = node.fresh(now_s, max_age_s) else {
        return 0;
    };
    let points: i64 = pod
        .known
        .iter()
        .map(|&m| tier(m, catalog, &r.gpus).points())
        .sum();
    let q = i64::from(r.queue_depth);
    let models = pod.count() as i64;
    (points * QUEUE_HALF / (models * (QUEUE_HALF + q))).clamp(0, MAX_PRIORITY)
}

/// `Err(reason)` when some model of the pod can never fit on any GPU of the
/// node (see the module docs); the reason names the model and the numbers.
pub fn filter(
    pod: &PodModels,
    node: &NodeView,
    catalog: &Catalog,
    reserve_mib: u64,
) -> Result<(), String> {
    let Ok(r) = &node.state else {
        return Ok(());
    };
    let Some(largest) = r.gpus.iter().map(|g| g.total_mib).max() else {
        return Err(format!(
            "the node publishes no GPUs, so no model of {} can run here",
            names(pod, catalog)
        ));
    };
    let room = largest.saturating_sub(reserve_mib);
    for &m in &pod.known {
        let need = catalog.need_mib(m);
        if need > room {
            return Err(format!(
                "model {} needs {need} MiB on one GPU (weights + working memory); the largest GPU here holds {room} MiB ({largest} MiB − {reserve_mib} MiB reserve)",
                catalog.name(m)
            ));
        }
    }
    Ok(())
}

fn names(pod: &PodModels, catalog: &Catalog) -> String {
    let mut all: Vec<&str> = pod.known.iter().map(|&m| catalog.name(m)).collect();
    all.extend(pod.unknown.iter().map(String::as_str));
    all.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extender::view::{Residency, Unreadable};

    fn spec(name: &str, weights_mib: u64, working_mib: u64) -> ModelSpec {
        ModelSpec {
            name: name.into(),
            weights_mib,
            working_mib,
            max_concurrency: 2,
            load_ms: 1000,
            task_ms: 100,
            task_types: vec![],
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(&[spec("big", 6000, 6000), spec("small", 100, 400)])
    }

    fn m(name: &str) -> ModelRef {
        catalog().find(name).expect("in the catalog")
    }

    fn gpu(free_mib: u64, idle_mib: u64) -> GpuView {
        GpuView {
            healthy: true,
            total_mib: 24576,
            free_mib,
            idle_mib,
            ready: vec![],
            loading: vec![],
            pins: vec![],
        }
    }

    /// A GPU with a ready copy of `m` running `pins` tasks.
    fn ready(m: ModelRef, pins: u32) -> GpuView {
        let mut g = gpu(0, if pins == 0 { 6000 } else { 0 });
        g.ready = vec![m];
        if pins > 0 {
            g.pins = vec![(m, pins)];
        }
        g
    }

    fn warm(m: ModelRef) -> GpuView {
        ready(m, 0)
    }

    fn node(queue_depth: u32, gpus: Vec<GpuView>) -> NodeView {
        NodeView {
            state: Ok(Residency {
                stamp_s: 1000,
                queue_depth,
                gpus,
            }),
        }
    }

    fn pod(annotation: &str) -> PodModels {
        PodModels::parse(Some(annotation), &catalog())
    }

    fn score_of(p: &PodModels, n: &NodeView) -> i64 {
        score(p, n, &catalog(), 1000, 120)
    }

    #[test]
    fn each_tier_beats_the_next_and_the_points_map_to_0_through_10() {
        let c = catalog();
        let big = m("big");
        let mut loading = gpu(0, 0);
        loading.loading = vec![big];
        let cases = [
            (warm(big), Tier::ReadyIdle, 10),
            (ready(big, 1), Tier::Ready, 9),
            (loading, Tier::Loading, 8),
            (ready(big, 2), Tier::Saturated, 6),
            (gpu(12000, 0), Tier::FitsFree, 5),
            (gpu(6000, 6000), Tier::FitsAfterEviction, 3),
            (gpu(6000, 5999), Tier::Cold, 0),
        ];
        for (g, want, points) in cases {
            assert_eq!(tier(big, &c, std::slice::from_ref(&g)), want);
            assert_eq!(score_of(&pod("big"), &node(0, vec![g])), points);
        }
    }

    #[test]
    fn the_best_healthy_gpu_counts_and_an_unhealthy_one_does_not() {
        let c = catalog();
        let mut sick = warm(m("big"));
        sick.healthy = false;
        let gpus = vec![sick, gpu(20000, 0), gpu(0, 0)];
        assert_eq!(tier(m("big"), &c, &gpus), Tier::FitsFree);
    }

    #[test]
    fn queue_depth_discounts_a_warm_node_by_half_at_four() {
        let g = warm(m("big"));
        let p = pod("big");
        let scores: Vec<i64> = [0, 1, 2, 4, 12, 36, u32::MAX]
            .into_iter()
            .map(|q| score_of(&p, &node(q, vec![g.clone()])))
            .collect();
        assert_eq!(scores, [10, 8, 6, 5, 2, 1, 0]);
    }

    #[test]
    fn several_models_score_their_mean() {
        let g = warm(m("big"));
        // big idle and ready (10) + small fits once the idle big copy goes (3).
        assert_eq!(score_of(&pod("big, small"), &node(0, vec![g.clone()])), 6);
        // An unknown model counts as cold: (10 + 0) / 2.
        assert_eq!(score_of(&pod("big,mystery"), &node(0, vec![g])), 5);
    }

    #[test]
    fn stale_unknown_or_modelless_means_zero_for_every_node() {
        let n = node(0, vec![warm(m("big"))]);
        let c = catalog();
        assert_eq!(score(&pod("big"), &n, &c, 1000 + 120, 120), 10);
        assert_eq!(score(&pod("big"), &n, &c, 1000 + 121, 120), 0);
        assert_eq!(score(&PodModels::parse(None, &c), &n, &c, 1000, 120), 0);
        assert_eq!(score(&pod(" , "), &n, &c, 1000, 120), 0);
        let unreadable = NodeView {
            state: Err(Unreadable::Unversioned),
        };
        assert_eq!(score(&pod("big"), &unreadable, &c, 1000, 120), 0);
    }

    #[test]
    fn the_filter_fails_a_node_only_when_no_gpu_could_ever_hold_a_model() {
        let c = catalog();
        let mut small_gpu = gpu(0, 0);
        small_gpu.total_mib = 8192;
        let mut sick_big_gpu = gpu(0, 0);
        sick_big_gpu.healthy = false;
        // Full and unhealthy today, but big enough: passes.
        assert_eq!(
            filter(
                &pod("big"),
                &node(9, vec![small_gpu.clone(), sick_big_gpu]),
                &c,
                512
            ),
            Ok(())
        );
        let why = filter(
            &pod("small,big"),
            &node(0, vec![small_gpu.clone()]),
            &c,
            512,
        )
        .expect_err("12000 MiB never fits in 8192 − 512");
        assert_eq!(
            why,
            "model big needs 12000 MiB on one GPU (weights + working memory); the largest GPU here holds 7680 MiB (8192 MiB − 512 MiB reserve)"
        );
        assert_eq!(
            filter(&pod("small"), &node(0, vec![small_gpu]), &c, 512),
            Ok(())
        );
        // Unknown models and unreadable nodes: nothing proves a misfit.
        assert_eq!(
            filter(&pod("mystery"), &node(0, vec![gpu(0, 0)]), &c, 512),
            Ok(())
        );
        assert_eq!(filter(&pod("big"), &NodeView::unknown(), &c, 512), Ok(()));
        assert!(filter(&pod("big"), &node(0, vec![]), &c, 512).is_err());
    }

    #[test]
    fn the_pod_annotation_is_trimmed_deduplicated_and_bounded() {
        let c = catalog();
        let p = PodModels::parse(Some(" small ,big,,small, ghost ,ghost"), &c);
        assert_eq!(p.known, vec![m("small"), m("big")]);
        assert_eq!(p.unknown, vec!["ghost".to_owned()]);
        assert!(!p.truncated);
        let many: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        let p = PodModels::parse(Some(&many.join(",")), &c);
        assert_eq!(p.unknown.len(), MAX_POD_MODELS);
        assert!(p.truncated);
        let long = "x".repeat(10_000);
        assert_eq!(PodModels::parse(Some(&long), &c).unknown[0].len(), 63);
    }
}
