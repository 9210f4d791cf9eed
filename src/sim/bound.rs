//! A sound lower bound on the load cost of any offline policy, to say how
//! far the engine's eviction policy is from optimal.
//!
//! # Why a bound and not Belady
//! With equal sizes and costs, Belady's rule (evict the copy needed furthest
//! in the future) is optimal. With sizes and costs that vary, as model
//! weights and load times do, it is not, and the exact optimum is NP-hard.
//! So we compute a lower bound `LB ≤ OPT` instead; the report's
//! `policy / LB` is then an upper bound on the policy's true ratio
//! (`policy / OPT ≤ policy / LB`): "load cost ≤ X× optimal" is a claim
//! that cannot overstate how good the policy is.
//!
//! # The relaxed problem
//! - The trace is the admissions that were granted, in grant order: model
//!   `m_t` at time point `t = 0..n−1`.
//! - All GPUs are pooled into one cache of `C = Σ (total_mib − reserve_mib)`
//!   MiB, and working memory is ignored. Any multi-GPU schedule projects
//!   onto a pooled one: call a model present at a point when some GPU holds
//!   a copy (loading or ready); the present models fit in `C` because each
//!   GPU's copies fit in its pool, and a model that is absent somewhere
//!   between two of its requests must be loaded again before the second, so
//!   the projection pays at most the loads the real schedule paid (duplicate
//!   copies on two GPUs only cost the real schedule more). Relaxing can only
//!   lower the optimum, so a bound for the pooled problem bounds the real one.
//! - Each model's first request is a compulsory load, cost `c_m`.
//! - Between consecutive requests of one model, at points `p < k`, lies an
//!   interval `i` with `L_i = k − p − 1` points strictly inside, size
//!   `s_i = weights_mib` and cost `c_i` (the reload cost). Keeping the model
//!   for the whole interval saves the reload; `x_i ∈ [0, 1]` is the kept
//!   fraction.
//! - At point `t` the requested model itself must be resident, and no
//!   interval of `m_t` contains `t`, so the other models' kept fractions
//!   share `C_t = C − s_{m_t}`:
//!
//!   `OPT ≥ compulsory + min Σ_i c_i (1 − x_i)  s.t.  Σ_{i ∋ t} s_i x_i ≤ C_t  ∀t`.
//!
//!   (Leaving out `s_{m_t}` would also be sound but much weaker: two models
//!   that each fill the cache could then "both" stay.)
//!
//! # The dual bound
//! Weak duality: for prices `λ_t ≥ 0`, adding `λ_t (Σ_{i∋t} s_i x_i − C_t)`
//! (never positive at a feasible `x`) and minimising over the box `[0, 1]`
//! term by term gives a lower bound. With the same price `λ` at every point
//! of a set `S` and 0 elsewhere, and `S` = the points inside at least one
//! interval that can contribute (so each such interval lies wholly in `S`):
//!
//!   `LB(λ) = compulsory + Σ_i min(c_i, λ·w_i) − λ·K`, `w_i = s_i·L_i`,
//!   `K = Σ_{t∈S} C_t`.
//!
//! (`S` = every point, `T = n`, is also valid but subtracts capacity at
//! points where nothing competes for it.) Intervals with `L_i = 0`, `c_i = 0`
//! or `s_i = 0` add nothing for any `λ` and are skipped. `LB` is concave and
//! piecewise linear in `λ` with breakpoints `λ_i = c_i / w_i`; just above a
//! breakpoint its slope is `Σ_{i: λ_i > λ} w_i − K`, decreasing in `λ`, so
//! the maximum is at `λ = 0` (`LB(0) = compulsory`) or at a breakpoint.
//! [`lower_bound`] sorts the breakpoints (exact rational comparison) and
//! evaluates every one in one sweep: O(n log n). Values are exact integers
//! rounded down (still sound), computed in `u128`/`i128` because
//! `C·|S|` alone can exceed `u64` on long runs.

use std::cmp::Ordering;

/// What [`lower_bound`] found for one cost function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Σ of the first-request costs: a bound by itself.
    pub compulsory: u64,
    /// `max_λ LB(λ)`, rounded down; `≥ compulsory`.
    pub value: u64,
}

/// The intervals and capacities of a trace, for one cost function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relaxation {
    pub compulsory: u64,
    /// `(c_i, w_i = s_i·L_i)` of every interval that can contribute.
    pub intervals: Vec<(u64, u128)>,
    /// `K = Σ_{t∈S} (C − s_{m_t})`.
    pub capacity: u128,
}

impl Relaxation {
    /// `trace[t]` is the model requested at point `t`; `size_mib[m]` and
    /// `cost[m]` describe model `m`; `capacity_mib` is the pooled `C`.
    pub fn new(trace: &[u32], size_mib: &[u64], cost: &[u64], capacity_mib: u64) -> Relaxation {
        let n = trace.len();
        let mut last: Vec<Option<usize>> = vec![None; size_mib.len()];
        let mut compulsory = 0u64;
        let mut intervals = Vec::new();
        // Coverage by contributing intervals: +1 at p+1, −1 at k.
        let mut coverage = vec![0i64; n + 1];
        for (k, &m) in trace.iter().enumerate() {
            let m = m as usize;
            let (s, c) = (size_mib[m], cost[m]);
            match last[m] {
                None => compulsory += c,
                Some(p) => {
                    let inner = (k - p - 1) as u128;
                    if inner > 0 && c > 0 && s > 0 {
                        intervals.push((c, u128::from(s) * inner));
                        coverage[p + 1] += 1;
                        coverage[k] -= 1;
                    }
                }
            }
            last[m] = Some(k);
        }
        let mut depth = 0i64;
        let mut capacity = 0u128;
        for (t, &m) in trace.iter().enumerate() {
            depth += coverage[t];
            if depth > 0 {
                // A granted model fits, so this never saturates in practice;
                // if it did, 0 keeps the bound sound (a smaller price term).
                capacity += u128::from(capacity_mib.saturating_sub(size_mib[m as usize]));
            }
        }
        Relaxation {
            compulsory,
            intervals,
            capacity,
        }
    }

    /// `LB(λ)` in floating point, straight from the formula (tests).
    #[cfg(test)]
    pub fn value_at(&self, lambda: f64) -> f64 {
        self.compulsory as f64
            + self
                .intervals
                .iter()
                .map(|&(c, w)| (c as f64).min(lambda * w as f64))
                .sum::<f64>()
            - lambda * self.capacity as f64
    }

    /// `max_λ LB(λ)`, exact and rounded down.
    pub fn maximize(mut self) -> Bound {
        // λ_i = c_i / w_i ascending; c·w products stay far below u128::MAX.
        let by_lambda = |a: &(u64, u128), b: &(u64, u128)| -> Ordering {
            (u128::from(a.0) * b.1).cmp(&(u128::from(b.0) * a.1))
        };
        self.intervals.sort_unstable_by(by_lambda);
        let compulsory = i128::from(self.compulsory);
        let capacity = self.capacity as i128;
        let mut above: i128 = self.intervals.iter().map(|&(_, w)| w as i128).sum();
        let mut saved: i128 = 0;
        let mut best = compulsory;
        let mut i = 0;
        while i < self.intervals.len() {
            // Every interval with the same λ leaves the "above" set at once.
            let (c, w) = self.intervals[i];
            while i < self.intervals.len() && by_lambda(&self.intervals[i], &(c, w)).is_eq() {
                saved += i128::from(self.intervals[i].0);
                above -= self.intervals[i].1 as i128;
                i += 1;
            }
            // LB(c/w) = compulsory + Σ_{λ_i ≤ λ} c_i + (c/w)·(Σ_{λ_i > λ} w_i − K).
            let price = (i128::from(c) * (above - capacity)).div_euclid(w as i128);
            best = best.max(compulsory + saved + price);
        }
        Bound {
            compulsory: self.compulsory,
            value: u64::try_from(best).unwrap_or(u64::MAX),
        }
    }
}

/// The lower bound on the cost of serving `trace` with a pooled cache of
/// `capacity_mib`, where loading model `m` costs `cost[m]` and takes
/// `size_mib[m]`. See the module docs for the derivation.
pub fn lower_bound(trace: &[u32], size_mib: &[u64], cost: &[u64], capacity_mib: u64) -> Bound {
    Relaxation::new(trace, size_mib, cost, capacity_mib).maximize()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn when_everything_fits_the_bound_is_the_compulsory_loads() {
        let trace = [0, 1, 2, 0, 1, 2, 2, 0, 1];
        let sizes = [4, 5, 6];
        let costs = [10, 20, 30];
        let b = lower_bound(&trace, &sizes, &costs, 15);
        assert_eq!(
            b,
            Bound {
                compulsory: 60,
                value: 60
            }
        );
    }

    #[test]
    fn two_models_that_each_fill_the_cache_reload_on_every_alternation() {
        // a b a b a b with room for one: the optimum reloads each request.
        let trace = [0, 1, 0, 1, 0, 1];
        let b = lower_bound(&trace, &[8, 8], &[3, 5], 8);
        assert_eq!(b.compulsory, 8);
        assert_eq!(b.value, 3 + 5 + 2 * 3 + 2 * 5);
    }

    #[test]
    fn alternating_models_that_half_fit_give_the_lp_optimum() {
        // s = 4 each, C = 6: the LP keeps half of each interval (2 MiB of
        // the 2 left beside the requested model), so it pays 1/2 per reload:
        // 2 compulsory + 4 × 1/2 = 4, below the integral optimum of 6.
        let trace = [0, 1, 0, 1, 0, 1];
        let b = lower_bound(&trace, &[4, 4], &[1, 1], 6);
        assert_eq!(b.value, 4);
    }

    #[test]
    fn a_model_requested_back_to_back_costs_nothing_more() {
        let b = lower_bound(&[0, 0, 0, 1, 1], &[10, 10], &[7, 9], 10);
        assert_eq!(b.value, 16);
    }

    #[test]
    fn an_empty_trace_costs_nothing() {
        assert_eq!(lower_bound(&[], &[1], &[1], 1).value, 0);
    }

    /// The exact offline optimum of the pooled problem (subsets of ≤ 4 models).
    fn brute_force_optimum(trace: &[u32], sizes: &[u64], costs: &[u64], cap: u64) -> u64 {
        let models = sizes.len();
        let size = |mask: usize| -> u64 {
            (0..models)
                .filter(|m| mask >> m & 1 == 1)
                .map(|m| sizes[m])
                .sum()
        };
        let mut dp = vec![u64::MAX; 1 << models];
        dp[0] = 0;
        for &m in trace {
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

    fn small_instance() -> impl Strategy<Value = (Vec<u32>, Vec<u64>, Vec<u64>, u64)> {
        (1usize..=4).prop_flat_map(|models| {
            (
                prop::collection::vec(0..models as u32, 0..14),
                prop::collection::vec(1u64..=10, models),
                prop::collection::vec(0u64..=10, models),
                0u64..=20,
            )
                .prop_map(|(trace, sizes, costs, extra)| {
                    // Every model fits alone: the pooled cache is at least the largest.
                    let cap = sizes.iter().copied().max().unwrap_or(1) + extra;
                    (trace, sizes, costs, cap)
                })
        })
    }

    proptest! {
        #[test]
        fn the_sweep_finds_the_maximum_a_brute_force_scan_finds(
            (trace, sizes, costs, cap) in small_instance()
        ) {
            let r = Relaxation::new(&trace, &sizes, &costs, cap);
            let got = r.clone().maximize().value as f64;
            // Every breakpoint, plus a fine grid, evaluated straight from the formula.
            let mut candidates: Vec<f64> = r.intervals.iter().map(|&(c, w)| c as f64 / w as f64).collect();
            let top = candidates.iter().copied().fold(1.0, f64::max);
            candidates.extend((0..=2000).map(|k| top * 1.5 * k as f64 / 2000.0));
            let scan = candidates.iter().map(|&l| r.value_at(l)).fold(f64::MIN, f64::max);
            prop_assert!(got <= scan + 1e-6, "sweep {got} above the formula's maximum {scan}");
            prop_assert!(got > scan - 1.0 - 1e-6, "sweep {got} misses the maximum {scan}");
        }

        #[test]
        fn the_bound_never_exceeds_the_exact_offline_optimum(
            (trace, sizes, costs, cap) in small_instance()
        ) {
            let b = lower_bound(&trace, &sizes, &costs, cap);
            let opt = brute_force_optimum(&trace, &sizes, &costs, cap);
            prop_assert!(b.compulsory <= b.value);
            prop_assert!(b.value <= opt, "bound {} > optimum {opt}", b.value);
        }
    }
}
