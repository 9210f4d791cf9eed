//! Where kube-scheduler would put a pod.
//!
//! Every pod requests the same CPU and memory and one `<domain>/slot`, so
//! kube-scheduler's default scoring reduces to `NodeResourcesFit`'s
//! least-allocated score of the pod count (the balanced-allocation score
//! is the same on every node), and its filters to "a slot is free". The
//! `vision-scheduler` profile adds the extender: its filter, and its score
//! times `weight × 10` (`MaxNodeScore / MaxExtenderPriority`). The highest
//! total wins; ties are broken uniformly at random, as kube-scheduler's
//! `selectHost` does.

use crate::extender::score::{self, Catalog, MAX_PRIORITY, PodModels};
use crate::extender::view::NodeView;
use crate::sim::rng::Rng;

use super::{EXTENDER_SCORE, Routing};

/// kube-scheduler's `MaxNodeScore`.
const MAX_NODE_SCORE: i64 = 100;

/// `NodeResourcesFit` least-allocated: the share of the node left free
/// once the pod is on it, 0..=100 (integer arithmetic, as kube-scheduler's).
pub fn least_allocated(pods: u32, capacity: u32) -> i64 {
    let (pods, capacity) = (i64::from(pods), i64::from(capacity));
    ((capacity - pods - 1).max(0) * MAX_NODE_SCORE) / capacity.max(1)
}

/// What placing one pod needs to know about the fleet.
pub struct Fleet<'a> {
    /// Pods running on each node.
    pub pods: &'a [u32],
    /// Pods a node can hold (its `<domain>/slot` allocatable).
    pub capacity: u32,
    /// Each node's view of its last published annotations.
    pub views: &'a [NodeView],
    pub catalog: &'a Catalog,
    pub reserve_mib: u64,
    pub now_s: i64,
    pub max_age_s: i64,
    pub weight: i64,
}

/// The extender's score of every node for `pod`, as the placement uses it.
#[cfg(test)]
pub fn extender_scores(fleet: &Fleet<'_>, pod: &PodModels) -> Vec<i64> {
    fleet
        .views
        .iter()
        .map(|v| EXTENDER_SCORE(pod, v, fleet.catalog, fleet.now_s, fleet.max_age_s))
        .collect()
}

/// The node kube-scheduler would bind `pod` to, or `None` when no node
/// passes the filters (no free slot anywhere, or no GPU ever big enough).
pub fn choose(fleet: &Fleet<'_>, pod: &PodModels, routing: Routing, rng: &mut Rng) -> Option<u32> {
    let mut best: Option<(i64, u32)> = None;
    let mut ties = 0u64;
    for (n, &pods) in fleet.pods.iter().enumerate() {
        if pods >= fleet.capacity {
            continue;
        }
        let mut total = least_allocated(pods, fleet.capacity);
        if routing == Routing::Warm {
            let view = &fleet.views[n];
            if score::filter(pod, view, fleet.catalog, fleet.reserve_mib).is_err() {
                continue;
            }
            let s = EXTENDER_SCORE(pod, view, fleet.catalog, fleet.now_s, fleet.max_age_s);
            debug_assert!((0..=MAX_PRIORITY).contains(&s));
            total += s * fleet.weight * (MAX_NODE_SCORE / MAX_PRIORITY);
        }
        match best {
            Some((b, _)) if total < b => {}
            Some((b, _)) if total == b => {
                // Reservoir sampling: each of the k tied nodes wins with 1/k.
                ties += 1;
                if rng.below(ties) == 0 {
                    best = Some((total, n as u32));
                }
            }
            _ => {
                best = Some((total, n as u32));
                ties = 1;
            }
        }
    }
    best.map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_allocated_is_kube_schedulers_integer_share() {
        assert_eq!(least_allocated(0, 32), 96);
        assert_eq!(least_allocated(31, 32), 0);
        assert_eq!(least_allocated(15, 32), 50);
    }
}
