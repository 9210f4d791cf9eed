//! Status snapshots for the pure mappings' unit tests.

use crate::engine::{Counters, GpuId, GpuStatus, ModelId, ResidentStatus, Status};

/// A healthy, empty GPU; [`status`] numbers it.
pub fn gpu(name: &str, total_mib: u64) -> GpuStatus {
    GpuStatus {
        id: GpuId(0),
        uuid: String::new(),
        name: name.into(),
        healthy: true,
        total_mib,
        reserve_mib: 0,
        external_mib: 0,
        usable_mib: total_mib,
        carved_mib: 0,
        weights_mib: 0,
        working_mib: 0,
        free_mib: total_mib,
        overcommitted_since: None,
        residents: Vec::new(),
    }
}

pub fn resident(name: &str, loading: bool) -> ResidentStatus {
    ResidentStatus {
        model: ModelId(0),
        name: name.into(),
        weights_mib: 100,
        loading,
        pins: 0,
        idle_since: None,
    }
}

/// A status of these GPUs, numbered in order with UUIDs `GPU-<index>`.
pub fn status(mut gpus: Vec<GpuStatus>) -> Status {
    for (i, g) in gpus.iter_mut().enumerate() {
        g.id = GpuId(i as u32);
        g.uuid = format!("GPU-{i}");
    }
    Status {
        gpus,
        queued: 0,
        waiting_on_load: 0,
        leases: 0,
        allocations: 0,
        queue_limit: 256,
        models: Vec::new(),
        counters: Counters::default(),
    }
}
