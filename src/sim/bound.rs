//! Offline bounds on the load cost of the best possible eviction policy, so
//! that a policy's cost is a ratio to a number that means something.
//!
//! # The problem bounded
//! - The trace is the admissions that were granted, in grant order: model
//!   `m_t` at point `t = 0..n−1`.
//! - All GPUs are pooled into one cache of `C = Σ (total_mib − reserve_mib)`
//!   MiB. An offline schedule serves the same tasks at the same times, so at
//!   point `t` the working memory `W_t` of the tasks running then is taken:
//!   weights get `C_t = C − W_t`. Any multi-GPU schedule projects onto a
//!   pooled one (a model is present when some GPU holds a copy), paying at
//!   most the loads it paid, so the pooled optimum `OPT` bounds the real one
//!   from below (copies a model needs on two GPUs, for its concurrency, only
//!   cost the real schedule more). At point `t` the requested model must be
//!   present.
//! - Loading model `m` costs `c_m` (load time, MiB or 1, per [`super::Cost`]).
//!
//! # FOO: the interval LP as a min-cost flow
//! Following Berger, Beckmann and Harchol-Balter, "Practical Bounds on
//! Optimal Caching with Variable Object Sizes" (SIGMETRICS 2018): between
//! consecutive requests of one model at `p < k` lies an interval `i` of size
//! `s_i` and cost `c_i`; keeping a fraction `x_i` of it saves `c_i x_i`:
//!
//!   `OPT ≥ compulsory + min Σ_i c_i (1 − x_i)`
//!   `s.t. Σ_{p_i < t < k_i} s_i x_i ≤ C_t − s_{m_t}  ∀t,  0 ≤ x_i ≤ 1.`
//!
//! (Intervals with nothing strictly inside cost nothing and are left out.)
//! The LP is a min-cost flow: each point `t` is two nodes `t⁻ → t⁺` joined by
//! an edge of capacity `C_t − s_{m_t}`, consecutive points by edges of
//! capacity `C`; interval `i` injects `s_i` units at `p⁺` and takes them out at `k⁻`,
//! either along the points (kept: free) or along its own edge `p⁺ → k⁻` of
//! capacity `s_i` and cost `c_i / s_i` per unit (not kept). Any cut between
//! `t⁻` and `t⁺` carries exactly the kept bytes of the intervals around `t`.
//!
//! - **Lower bound** (FOO-L): the LP optimum; `≤ OPT` because the LP relaxes it.
//! - **Upper bound** (FOO-U): round the optimum down — keep exactly the
//!   intervals kept whole. Dropping kept bytes never breaks a capacity
//!   constraint, so this is a feasible offline schedule, and its cost is
//!   `≥ OPT`. Then, as Berger et al.'s practical variant does, the
//!   intervals left out are offered back greedily (largest kept fraction,
//!   then largest cost, first), each kept whole where every point it spans
//!   still has room for it: still feasible, and closer to the LP. The report
//!   prints the gap between the two bounds.
//!
//! # Segments (PFOO)
//! The LP of a long trace is split into segments of [`SEGMENT`] points,
//! solved one by one. An interval that crosses a boundary is cut into
//! pieces; each piece gets a share of `c_i` in proportion to its points.
//! Restricting the full optimum to a segment is feasible there and costs
//! exactly its pieces' shares, so the segments' optima add up to at most the
//! full LP: still a lower bound. For the upper bound an interval is kept
//! only if every piece was kept whole; each segment's capacities then still
//! hold, so the schedule stays feasible. Bounds cover at most
//! [`MAX_POINTS`] granted admissions (the report says when it stopped).
//!
//! # Solver
//! `microlp`, a pure-Rust sparse revised simplex (Apache-2.0, maintained,
//! ~20 s to build with its `sprs`/`ndarray` dependencies) — chosen over a
//! solver of our own (the task is the model, not the algorithm), over C/C++
//! backends (HiGHS, CBC, LEMON via `mcmf`: a native toolchain in every
//! build) and over GPL graph crates. Its optimum is a float; the lower bound
//! is rounded down after taking off a relative 1e-9, the upper bound is
//! recomputed exactly from the rounded schedule. A property test checks
//! `lower ≤ OPT ≤ upper` against a brute-force optimum on small traces.

use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOptions, SolveOutcome};

/// Points per LP segment: a segment solves in ~0.1 s (release build).
pub const SEGMENT: usize = 1_000;
/// Branch & bound nodes per segment (deterministic, unlike a time limit).
pub const NODE_LIMIT: u64 = 200;
/// The most intervals the LP may keep in part for a segment to go on to
/// branch and bound.
pub const MIP_MAX_SPLIT: usize = 32;
/// The most granted admissions the bounds cover.
pub const MAX_POINTS: usize = 20_000;

/// Lower and upper bounds on the optimal offline cost of one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bounds {
    /// Σ of the first-request costs: every policy pays these.
    pub compulsory: u64,
    /// FOO-L: no policy can pay less.
    pub lower: u64,
    /// FOO-U: a feasible offline schedule pays this.
    pub upper: u64,
    /// Points (granted admissions) covered.
    pub points: usize,
}

impl Bounds {
    /// `(upper − lower) / lower`: how precisely the optimum is known.
    pub fn gap(&self) -> Option<f64> {
        (self.lower > 0).then(|| (self.upper - self.lower) as f64 / self.lower as f64)
    }
}

/// One interval between consecutive requests of a model.
#[derive(Debug, Clone, Copy)]
struct Interval {
    /// The two requests' points: `p < k`, with `k − p ≥ 2`.
    p: usize,
    k: usize,
    size: u64,
    cost: u64,
}

/// Bounds on the cost of serving `trace` (model per point) with a pooled
/// cache of `capacity_mib`, of which `working_mib[t]` is taken at point `t`,
/// model `m` taking `size_mib[m]` and costing `cost[m]` to load. See the
/// module docs.
pub fn offline_bounds(
    trace: &[u32],
    working_mib: &[u64],
    size_mib: &[u64],
    cost: &[u64],
    capacity_mib: u64,
) -> Bounds {
    let trace = &trace[..trace.len().min(MAX_POINTS)];
    let mut last: Vec<Option<usize>> = vec![None; size_mib.len()];
    let mut compulsory = 0u64;
    let mut intervals = Vec::new();
    for (k, &m) in trace.iter().enumerate() {
        let m = m as usize;
        match last[m] {
            None => compulsory += cost[m],
            Some(p) if k - p >= 2 && cost[m] > 0 && size_mib[m] > 0 => intervals.push(Interval {
                p,
                k,
                size: size_mib[m],
                cost: cost[m],
            }),
            Some(_) => {}
        }
        last[m] = Some(k);
    }
    let capacity_at: Vec<u64> = trace
        .iter()
        .enumerate()
        .map(|(t, &m)| {
            let working = working_mib.get(t).copied().unwrap_or(0);
            capacity_mib
                .saturating_sub(working)
                .saturating_sub(size_mib[m as usize])
        })
        .collect();
    // Per interval: the smallest fraction of it any segment kept.
    let mut fraction = vec![1.0f64; intervals.len()];
    let mut lower = 0.0f64;
    let mut start = 0;
    while start < trace.len() {
        let end = (start + SEGMENT).min(trace.len());
        lower += segment(
            &intervals,
            &capacity_at,
            start,
            end,
            capacity_mib,
            &mut fraction,
        );
        start = end;
    }
    // The simplex's float error (~1e-9 relative) is absorbed by the floor,
    // but for an optimum within 1e-6 of an integer from below.
    let lower = compulsory + (lower + 1e-6).max(0.0).floor() as u64;
    let kept = round_and_repair(&intervals, &capacity_at, &fraction);
    debug_assert!(feasible(&intervals, &capacity_at, &kept));
    let reloads: u64 = intervals
        .iter()
        .zip(&kept)
        .filter(|(_, k)| !**k)
        .map(|(i, _)| i.cost)
        .sum();
    Bounds {
        compulsory,
        lower,
        // Float noise may round the LP a hair above a schedule it allows.
        upper: (compulsory + reloads).max(lower),
        points: trace.len(),
    }
}

/// The upper bound's schedule: the intervals every segment kept whole, then
/// the others offered back greedily where they still fit.
fn round_and_repair(intervals: &[Interval], capacity_at: &[u64], fraction: &[f64]) -> Vec<bool> {
    let mut kept: Vec<bool> = fraction.iter().map(|&f| f >= 1.0 - 1e-6).collect();
    // Room left at each point beside the intervals kept whole (never below
    // zero: the LP kept at least them).
    let mut room: Vec<i128> = capacity_at.iter().map(|&c| i128::from(c)).collect();
    for (iv, _) in intervals.iter().zip(&kept).filter(|(_, k)| **k) {
        for r in &mut room[iv.p + 1..iv.k] {
            *r -= i128::from(iv.size);
        }
    }
    let mut offered: Vec<usize> = (0..intervals.len()).filter(|&i| !kept[i]).collect();
    offered.sort_by(|&a, &b| {
        fraction[b]
            .total_cmp(&fraction[a])
            .then(intervals[b].cost.cmp(&intervals[a].cost))
            .then(a.cmp(&b))
    });
    for i in offered {
        let iv = intervals[i];
        let span = &mut room[iv.p + 1..iv.k];
        if span.iter().all(|&r| r >= i128::from(iv.size)) {
            span.iter_mut().for_each(|r| *r -= i128::from(iv.size));
            kept[i] = true;
        }
    }
    kept
}

/// Whether keeping `kept` respects every point's capacity (a debug check).
fn feasible(intervals: &[Interval], capacity_at: &[u64], kept: &[bool]) -> bool {
    let mut used = vec![0u64; capacity_at.len()];
    for (iv, _) in intervals.iter().zip(kept).filter(|(_, k)| **k) {
        for u in &mut used[iv.p + 1..iv.k] {
            *u += iv.size;
        }
    }
    used.iter().zip(capacity_at).all(|(u, c)| u <= c)
}

/// Solves the segment `[start, end)`; returns a proven lower bound on its
/// optimum and lowers `fraction` to the part of each interval it kept.
///
/// The LP relaxation first. Where it keeps some intervals only in part, and
/// not too many, the same flow with whole-or-nothing intervals is solved by
/// branch and bound within [`NODE_LIMIT`] nodes: its proven bound (at least
/// the LP's) is the lower bound, and its schedule is the one rounded.
fn segment(
    intervals: &[Interval],
    capacity_at: &[u64],
    start: usize,
    end: usize,
    capacity_mib: u64,
    fraction: &mut [f64],
) -> f64 {
    let flow = |whole: bool| flow_problem(intervals, capacity_at, start, end, capacity_mib, whole);
    let (lp, outer) = flow(false);
    if outer.is_empty() {
        return 0.0;
    }
    let Some(relaxed) = lp.solve().ok().and_then(|o| o.into_solution().ok()) else {
        // The LP is always feasible (drop everything); a solver failure
        // gives no bound for this segment and keeps nothing.
        for (i, _) in &outer {
            fraction[*i] = 0.0;
        }
        return 0.0;
    };
    let dropped: Vec<f64> = outer.iter().map(|(_, v)| relaxed.var_value(*v)).collect();
    let split = dropped
        .iter()
        .filter(|&&d| d > 1e-6 && d < 1.0 - 1e-6)
        .count();
    let mut bound = relaxed.objective();
    let mut dropped = dropped;
    if split > 0 && split <= MIP_MAX_SPLIT {
        let (mip, outer_mip) = flow(true);
        let mut options = SolveOptions::default();
        options.node_limit = Some(NODE_LIMIT);
        if let Ok(outcome) = mip.solve_with(options) {
            let stats = match &outcome {
                SolveOutcome::Solution(s) => s.stats(),
                SolveOutcome::Interrupted(i) => i.stats(),
            };
            bound = bound.max(stats.best_bound.unwrap_or(0.0));
            if let SolveOutcome::Solution(s) = outcome {
                dropped = outer_mip.iter().map(|(_, v)| s.var_value(*v)).collect();
            }
        }
    }
    for ((i, _), d) in outer.iter().zip(&dropped) {
        fraction[*i] = fraction[*i].min((1.0 - d).clamp(0.0, 1.0));
    }
    bound.max(0.0)
}

/// The segment's min-cost flow: per interval piece, the share of it dropped
/// (`whole`: 0 or 1) at its share of the reload cost; the variables of the
/// pieces, with their interval's index.
fn flow_problem(
    intervals: &[Interval],
    capacity_at: &[u64],
    start: usize,
    end: usize,
    capacity_mib: u64,
    whole: bool,
) -> (Problem, Vec<(usize, microlp::Variable)>) {
    // Nodes: 0 = entry, then t⁻ = 1 + 2(t − start), t⁺ = t⁻ + 1, then exit.
    let points = end - start;
    let nodes = 2 * points + 2;
    let (entry, exit) = (0, nodes - 1);
    let minus = |t: usize| 1 + 2 * (t - start);
    let plus = |t: usize| 2 + 2 * (t - start);
    let mut problem = Problem::new(OptimizationDirection::Minimize);
    let mut rows: Vec<Vec<(microlp::Variable, f64)>> = vec![Vec::new(); nodes];
    let mut supply = vec![0.0f64; nodes];
    let mut arc = |problem: &mut Problem, from: usize, to: usize, cap: u64| {
        let v = problem.add_var(0.0, (0.0, cap as f64));
        rows[from].push((v, -1.0));
        rows[to].push((v, 1.0));
    };
    arc(&mut problem, entry, minus(start), capacity_mib);
    for (t, &capacity) in capacity_at.iter().enumerate().take(end).skip(start) {
        arc(&mut problem, minus(t), plus(t), capacity);
        let next = if t + 1 < end { minus(t + 1) } else { exit };
        arc(&mut problem, plus(t), next, capacity_mib);
    }
    let mut outer = Vec::new();
    for (i, iv) in intervals.iter().enumerate() {
        // Its points strictly inside, within this segment.
        let (first, last) = ((iv.p + 1).max(start), (iv.k - 1).min(end - 1));
        if first > last {
            continue;
        }
        let inside = (iv.k - iv.p - 1) as f64;
        let share = iv.cost as f64 * (last + 1 - first) as f64 / inside;
        let from = if iv.p >= start { plus(iv.p) } else { entry };
        let to = if iv.k < end { minus(iv.k) } else { exit };
        // `dropped` = 1 sends all its bytes around the points, at its share
        // of the reload cost.
        let dropped = if whole {
            problem.add_binary_var(share)
        } else {
            problem.add_var(share, (0.0, 1.0))
        };
        let size = iv.size as f64;
        rows[from].push((dropped, -size));
        rows[to].push((dropped, size));
        supply[from] += size;
        supply[to] -= size;
        outer.push((i, dropped));
    }
    for (node, row) in rows.into_iter().enumerate() {
        if !row.is_empty() {
            // Inflow − outflow = −supply.
            problem.add_constraint(row.as_slice(), ComparisonOp::Eq, -supply[node]);
        }
    }
    (problem, outer)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn when_everything_fits_both_bounds_are_the_compulsory_loads() {
        let trace = [0, 1, 2, 0, 1, 2, 2, 0, 1];
        let b = offline_bounds(&trace, &[], &[4, 5, 6], &[10, 20, 30], 15);
        assert_eq!((b.compulsory, b.lower, b.upper), (60, 60, 60));
        assert_eq!(b.gap(), Some(0.0));
    }

    #[test]
    fn two_models_that_each_fill_the_cache_reload_on_every_alternation() {
        // a b a b a b with room for one: every request after the first two loads.
        let b = offline_bounds(&[0, 1, 0, 1, 0, 1], &[], &[8, 8], &[3, 5], 8);
        assert_eq!(b.compulsory, 8);
        assert_eq!((b.lower, b.upper), (24, 24));
    }

    #[test]
    fn where_the_lp_keeps_halves_branch_and_bound_proves_the_whole_answer() {
        // s = 4 each, C = 6: the LP keeps half of each interval (2 MiB beside
        // the requested model) and would pay 2 + 4 × 1/2 = 4; no whole
        // interval fits, so every alternation reloads: 6, and branch and
        // bound proves it.
        let b = offline_bounds(&[0, 1, 0, 1, 0, 1], &[], &[4, 4], &[1, 1], 6);
        assert_eq!((b.lower, b.upper), (6, 6));
    }

    #[test]
    fn a_model_requested_back_to_back_costs_nothing_more() {
        let b = offline_bounds(&[0, 0, 0, 1, 1], &[], &[10, 10], &[7, 9], 10);
        assert_eq!((b.lower, b.upper), (16, 16));
    }

    #[test]
    fn an_empty_trace_costs_nothing() {
        let b = offline_bounds(&[], &[], &[1], &[1], 1);
        assert_eq!((b.lower, b.upper, b.points), (0, 0, 0));
    }

    #[test]
    fn segments_keep_both_bounds_sound_on_a_long_trace() {
        // 3 000 points, 4 models of 4 MiB in a cache of 9: two fit beside the
        // requested one. Cut into three segments, the bounds still bracket
        // the single-LP bounds.
        let trace: Vec<u32> = (0..3_000u32).map(|i| (i * 7 + i / 5) % 4).collect();
        let b = offline_bounds(&trace, &[], &[4; 4], &[1; 4], 9);
        assert!(b.lower <= b.upper);
        assert!(b.lower > b.compulsory, "{b:?}");
        assert!(b.gap().is_some_and(|g| g < 0.5), "{b:?}");
    }

    /// The exact offline optimum of the pooled problem (subsets of ≤ 4 models).
    fn brute_force_optimum(
        trace: &[u32],
        working: &[u64],
        sizes: &[u64],
        costs: &[u64],
        cap: u64,
    ) -> u64 {
        let models = sizes.len();
        let size = |mask: usize| -> u64 {
            (0..models)
                .filter(|m| mask >> m & 1 == 1)
                .map(|m| sizes[m])
                .sum()
        };
        let mut dp = vec![u64::MAX; 1 << models];
        dp[0] = 0;
        for (t, &m) in trace.iter().enumerate() {
            let cap = cap.saturating_sub(working[t]);
            let mut next = vec![u64::MAX; 1 << models];
            for (from, &cost) in dp.iter().enumerate() {
                if cost == u64::MAX {
                    continue;
                }
                for (to, slot) in next.iter_mut().enumerate() {
                    if to >> m & 1 == 0 || size(to) > cap {
                        continue;
                    }
                    let loads: u64 = (0..models)
                        .filter(|x| to >> x & 1 == 1 && from >> x & 1 == 0)
                        .map(|x| costs[x])
                        .sum();
                    *slot = (*slot).min(cost + loads);
                }
            }
            dp = next;
        }
        dp.into_iter().min().unwrap_or(0)
    }

    type Instance = (Vec<u32>, Vec<u64>, Vec<u64>, Vec<u64>, u64);

    fn small_instance() -> impl Strategy<Value = Instance> {
        (1usize..=4).prop_flat_map(|models| {
            (
                prop::collection::vec((0..models as u32, 0u64..=6), 0..14),
                prop::collection::vec(1u64..=10, models),
                prop::collection::vec(0u64..=10, models),
                0u64..=20,
            )
                .prop_map(|(points, sizes, costs, extra)| {
                    // Every model fits alone beside the most working memory.
                    let cap = sizes.iter().copied().max().unwrap_or(1) + 6 + extra;
                    let (trace, working) = points.into_iter().unzip();
                    (trace, working, sizes, costs, cap)
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            rng_seed: proptest::test_runner::RngSeed::Fixed(9),
            ..ProptestConfig::default()
        })]

        #[test]
        fn the_bounds_bracket_the_exact_offline_optimum(
            (trace, working, sizes, costs, cap) in small_instance()
        ) {
            let b = offline_bounds(&trace, &working, &sizes, &costs, cap);
            let opt = brute_force_optimum(&trace, &working, &sizes, &costs, cap);
            prop_assert!(b.compulsory <= b.lower);
            prop_assert!(b.lower <= opt, "lower {} > optimum {opt}", b.lower);
            prop_assert!(opt <= b.upper, "upper {} < optimum {opt}", b.upper);
        }
    }
}
