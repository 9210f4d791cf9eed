//! One GPU's memory pool: the ledger and the resident models.
//!
//! `usable = total − reserve − external`; `committed = carved + weights +
//! working`. Carve-outs (pods' `vram`) and external growth cannot be refused,
//! so `committed` may exceed `usable` for a while: the pool is then
//! over-committed and nothing new is placed on it until evictions or releases
//! bring it back under.

use lru::LruCache;

use super::types::{LoadId, ModelId, TicketId, Time};
use crate::config::EvictionPolicy;

/// What the engine knows of a GPU at construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSpec {
    pub uuid: String,
    pub name: String,
    pub total_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResidentState {
    Loading { load: LoadId, since: Time },
    Ready,
}

/// One resident (or loading) model copy.
#[derive(Debug, Clone)]
pub(crate) struct Resident {
    pub state: ResidentState,
    /// Leases plus admissions waiting on this copy's load. Never evicted while > 0.
    pub pins: u32,
    pub weights_mib: u64,
    /// When the last pin went away (or the load finished with none).
    pub idle_since: Time,
    /// GreedyDual-Size priority `H = L + cost / size`; unused under LRU.
    pub gds_h: f64,
    /// Admissions waiting for this copy's load, in placement order.
    pub waiters: Vec<TicketId>,
}

impl Resident {
    /// A copy with no pins yet; `touch` sets its eviction priority.
    pub fn new(state: ResidentState, weights_mib: u64, now: Time) -> Resident {
        Resident {
            state,
            pins: 0,
            weights_mib,
            idle_since: now,
            gds_h: 0.0,
            waiters: Vec::new(),
        }
    }

    pub fn is_evictable(&self) -> bool {
        self.pins == 0 && self.state == ResidentState::Ready
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub spec: GpuSpec,
    pub healthy: bool,
    pub reserve_mib: u64,
    /// Memory used by processes the ledger does not account for.
    pub external_mib: u64,
    /// Pods' dedicated `vram` carve-outs.
    pub carved_mib: u64,
    /// Weights of resident and loading copies.
    pub weights_mib: u64,
    /// Working memory of leases and of admissions waiting on a load here.
    pub working_mib: u64,
    /// Most recently used first. `lru` gives O(1) promote and an LRU→MRU walk.
    pub residents: LruCache<ModelId, Resident>,
    /// GreedyDual-Size inflation value `L` (the H of the last victim).
    pub gds_clock: f64,
    /// Set while `committed > usable`.
    pub overcommit_since: Option<Time>,
}

impl Pool {
    pub fn new(spec: GpuSpec, reserve_mib: u64) -> Pool {
        Pool {
            spec,
            healthy: true,
            reserve_mib,
            external_mib: 0,
            carved_mib: 0,
            weights_mib: 0,
            working_mib: 0,
            residents: LruCache::unbounded(),
            gds_clock: 0.0,
            overcommit_since: None,
        }
    }

    pub fn usable_mib(&self) -> u64 {
        self.spec
            .total_mib
            .saturating_sub(self.reserve_mib)
            .saturating_sub(self.external_mib)
    }

    pub fn committed_mib(&self) -> u64 {
        self.carved_mib + self.weights_mib + self.working_mib
    }

    pub fn free_mib(&self) -> u64 {
        self.usable_mib().saturating_sub(self.committed_mib())
    }

    /// What the pool could hold for models if every task ended and every idle
    /// copy went away: the ceiling for "can this ever fit here".
    pub fn capacity_for_models_mib(&self) -> u64 {
        self.usable_mib().saturating_sub(self.carved_mib)
    }

    /// Idle copies to evict, in policy order, so that `need_mib` fits; `None`
    /// when even evicting every idle copy (except `keep`) is not enough.
    pub fn victims_for(
        &self,
        need_mib: u64,
        keep: Option<ModelId>,
        policy: EvictionPolicy,
    ) -> Option<Vec<(ModelId, u64)>> {
        let committed = self.committed_mib();
        let usable = self.usable_mib();
        if committed + need_mib <= usable {
            return Some(Vec::new());
        }
        let mut deficit = committed + need_mib - usable;
        let mut victims = Vec::new();
        let mut take = |id: ModelId, r: &Resident| {
            victims.push((id, r.weights_mib));
            deficit = deficit.saturating_sub(r.weights_mib);
            deficit == 0
        };
        let candidates = self
            .residents
            .iter()
            .rev()
            .filter(|(id, r)| r.is_evictable() && Some(**id) != keep);
        match policy {
            EvictionPolicy::Lru => {
                for (id, r) in candidates {
                    if take(*id, r) {
                        return Some(victims);
                    }
                }
            }
            EvictionPolicy::GreedyDualSize => {
                // Stable sort: equal H keeps LRU order (oldest first).
                let mut by_h: Vec<(&ModelId, &Resident)> = candidates.collect();
                by_h.sort_by(|a, b| a.1.gds_h.total_cmp(&b.1.gds_h));
                for (id, r) in by_h {
                    if take(*id, r) {
                        return Some(victims);
                    }
                }
            }
        }
        None
    }

    /// Memory that evicting every idle copy would leave free.
    pub fn free_after_evicting_idle_mib(&self) -> u64 {
        let idle: u64 = self
            .residents
            .iter()
            .filter(|(_, r)| r.is_evictable())
            .map(|(_, r)| r.weights_mib)
            .sum();
        self.usable_mib()
            .saturating_sub(self.committed_mib().saturating_sub(idle))
    }

    /// Memory that would stay free or reclaimable (idle copies) after
    /// placing `need_mib` for `model` with `victims` evicted: what a
    /// reservation for queued work can still count on.
    pub fn headroom_after(&self, model: ModelId, need_mib: u64, victims: &[(ModelId, u64)]) -> u64 {
        let evicted: u64 = victims.iter().map(|v| v.1).sum();
        let idle: u64 = self
            .residents
            .iter()
            // The placed model's copy is pinned by the placement.
            .filter(|(m, r)| r.is_evictable() && **m != model)
            .map(|(_, r)| r.weights_mib)
            .sum();
        let committed = (self.committed_mib() + need_mib).saturating_sub(evicted);
        (self.usable_mib() + idle.saturating_sub(evicted)).saturating_sub(committed)
    }

    /// Removes one copy from the ledger; returns it.
    pub fn remove_resident(&mut self, model: ModelId) -> Option<Resident> {
        let r = self.residents.pop(&model)?;
        self.weights_mib -= r.weights_mib;
        Some(r)
    }

    /// Marks a use of `model` for the eviction policy (MRU; GDS `H = L + c/s`).
    pub fn touch(&mut self, model: ModelId, cost: f64, policy: EvictionPolicy) {
        let clock = self.gds_clock;
        if let Some(r) = self.residents.get_mut(&model)
            && policy == EvictionPolicy::GreedyDualSize
        {
            r.gds_h = clock + cost / r.weights_mib.max(1) as f64;
        }
    }

    /// Records an eviction for GreedyDual-Size's inflation clock.
    pub fn note_victim(&mut self, h: f64, policy: EvictionPolicy) {
        if policy == EvictionPolicy::GreedyDualSize && h > self.gds_clock {
            self.gds_clock = h;
        }
    }
}
