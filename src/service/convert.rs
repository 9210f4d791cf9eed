//! Engine types → wire types, and engine errors → gRPC statuses that say
//! what to do. The only place that knows both vocabularies.

use tonic::Status;

use super::NodeInfo;
use super::core::Core;
use crate::engine::{AdminError, AdmitError, Lease, LeaseError, Outcome, Rejection, Time};
use crate::proto::vision::v1 as pb;

pub(super) fn lease(core: &Core, lease: &Lease, now: Time) -> pb::Lease {
    let engine = &core.engine;
    let spec = engine.model(lease.model);
    let uuid = engine
        .gpu(lease.gpu)
        .map(|g| g.uuid.clone())
        .unwrap_or_default();
    pb::Lease {
        lease_id: lease.id.0,
        model: spec.name.clone(),
        gpu_index: lease.gpu.0,
        gpu_uuid: uuid,
        warm: lease.warm,
        waited_ms: lease.waited().as_millis() as u64,
        expires_in_ms: lease.expires_at.saturating_since(now).as_millis() as u64,
        ttl_ms: engine.settings().lease_ttl.as_millis() as u64,
        runtime_endpoint: core
            .endpoints
            .get(&(lease.gpu, lease.model))
            .cloned()
            .unwrap_or_default(),
        working_mib: spec.working_mib,
    }
}

/// Status of the whole node; `token` scopes the leases shown (task socket).
pub(super) fn status(
    core: &Core,
    info: &NodeInfo,
    token: Option<&str>,
    now: Time,
) -> pb::StatusResponse {
    let engine = &core.engine;
    let s = engine.status();
    let leases: Vec<Lease> = match token {
        Some(t) => engine.leases_of(t),
        None => engine.leases(),
    };
    let slots = match token.and_then(|t| engine.allocation(t)) {
        Some(crate::engine::AllocKind::Slots(n)) => n,
        _ => 0,
    };
    let c = &s.counters;
    let rejected = Outcome::ALL
        .iter()
        .filter(|o| !o.is_grant() && **o != Outcome::Cancelled)
        .map(|o| c.outcome(*o))
        .sum();
    pb::StatusResponse {
        node: info.node_name.clone(),
        gpu_backend: info.gpu_backend.clone(),
        gpus: s
            .gpus
            .iter()
            .map(|g| pb::GpuStatus {
                index: g.id.0,
                uuid: g.uuid.clone(),
                name: g.name.clone(),
                healthy: g.healthy,
                total_mib: g.total_mib,
                reserve_mib: g.reserve_mib,
                external_mib: g.external_mib,
                usable_mib: g.usable_mib,
                carved_mib: g.carved_mib,
                weights_mib: g.weights_mib,
                working_mib: g.working_mib,
                free_mib: g.free_mib,
                overcommitted: g.overcommitted_since.is_some(),
                residents: g
                    .residents
                    .iter()
                    .map(|r| pb::ResidentModel {
                        model: r.name.clone(),
                        weights_mib: r.weights_mib,
                        loading: r.loading,
                        pins: r.pins,
                        idle_ms: r
                            .idle_since
                            .map(|t| now.saturating_since(t).as_millis() as u64),
                    })
                    .collect(),
            })
            .collect(),
        queued: s.queued as u32,
        waiting_on_load: s.waiting_on_load as u32,
        active_leases: s.leases as u32,
        leases: leases.iter().map(|l| lease(core, l, now)).collect(),
        counters: Some(pb::Counters {
            granted_warm: c.outcome(Outcome::GrantedWarm),
            granted_cold: c.outcome(Outcome::GrantedCold),
            rejected,
            released: c.released,
            expired: c.expired,
            revoked: c.revoked,
            loads_started: c.loads_started,
            loads_failed: c.loads_failed,
            evictions: c.evictions,
            outcomes: Outcome::ALL
                .iter()
                .map(|o| (o.as_str().to_owned(), c.outcome(*o)))
                .collect(),
        }),
        slots,
    }
}

pub(super) fn list_models(core: &Core) -> pb::ListModelsResponse {
    let engine = &core.engine;
    let status = engine.status();
    pb::ListModelsResponse {
        models: engine
            .models()
            .iter()
            .map(|m| {
                let on = |loading: bool| {
                    status
                        .gpus
                        .iter()
                        .filter(|g| {
                            g.residents
                                .iter()
                                .any(|r| r.name == m.name && r.loading == loading)
                        })
                        .map(|g| g.uuid.clone())
                        .collect()
                };
                pb::ModelInfo {
                    name: m.name.clone(),
                    weights_mib: m.weights_mib,
                    working_mib: m.working_mib,
                    max_concurrency: m.max_concurrency,
                    load_ms: m.load_ms,
                    task_ms: m.task_ms,
                    task_types: m.task_types.clone(),
                    resident_on: on(false),
                    loading_on: on(true),
                }
            })
            .collect(),
    }
}

pub(super) fn admit_error(e: &AdmitError) -> Status {
    let msg = e.to_string();
    match e {
        AdmitError::UnknownToken => Status::permission_denied(format!(
            "{msg}: use the VISION_TOKEN that Allocate put in this container's environment"
        )),
        AdmitError::NotSlotAllocation => Status::failed_precondition(format!(
            "{msg}; request `<domain>/slot` in the pod spec to admit tasks"
        )),
        AdmitError::UnknownModel { .. } => Status::not_found(msg),
        AdmitError::TaskTypeNotServed { .. } => Status::invalid_argument(msg),
        AdmitError::NeverFits { .. } => Status::failed_precondition(format!(
            "{msg}; it cannot run on this node — pick a smaller model or a node with larger GPUs"
        )),
        AdmitError::NoHealthyGpu => Status::unavailable(format!(
            "{msg} on this node; retry later or on another node"
        )),
        AdmitError::NoFreeSlot { .. } => Status::resource_exhausted(format!(
            "{msg}; release a lease, or set timeout_ms > 0 to wait for one"
        )),
        AdmitError::NoCapacityNow => Status::resource_exhausted(format!(
            "{msg} (timeout_ms = 0); set timeout_ms > 0 to wait for GPU memory"
        )),
        AdmitError::QueueFull { .. } => {
            Status::resource_exhausted(format!("{msg}; retry with backoff or use another node"))
        }
        AdmitError::PodQueueFull { .. } => Status::resource_exhausted(format!(
            "{msg}; wait for one of this pod's admissions to end before asking again"
        )),
        AdmitError::PodLoadLimit { .. } => Status::resource_exhausted(format!(
            "{msg}; set timeout_ms > 0 to wait for one of them, or ask for a model that is warm"
        )),
        AdmitError::ShuttingDown => Status::unavailable(format!(
            "{msg}; retry on the restarted daemon or another node"
        )),
    }
}

pub(super) fn rejection(r: &Rejection, model: &str) -> Status {
    match r {
        Rejection::DeadlineExceeded { waited } => Status::deadline_exceeded(format!(
            "waited {} ms for GPU memory for {model:?} without getting a lease; \
             retry with a longer timeout_ms, a higher priority, or on another node",
            waited.as_millis()
        )),
        Rejection::LoadFailed { gpu, message } => Status::unavailable(format!(
            "loading {model:?} on {gpu} failed: {message}; retry (another GPU may be chosen)"
        )),
        Rejection::NoHealthyGpu => {
            Status::unavailable("every GPU on this node turned unhealthy; retry on another node")
        }
        Rejection::NoGpuFits {
            need_mib,
            largest_usable_mib,
        } => Status::failed_precondition(format!(
            "{model:?} needs {need_mib} MiB but the largest healthy GPU pool is now \
             {largest_usable_mib} MiB (other processes use the rest)"
        )),
        Rejection::AllocationReleased => Status::permission_denied(
            "this pod's allocation was released (the pod is gone from kubelet's view)",
        ),
        Rejection::ShuttingDown => {
            Status::unavailable("the daemon is shutting down; retry on the restarted daemon")
        }
    }
}

pub(super) fn lease_error(e: &LeaseError) -> Status {
    Status::not_found(format!("{e}; admit again to get a new lease"))
}

pub(super) fn admin_error(e: &AdminError) -> Status {
    let msg = e.to_string();
    match e {
        AdminError::UnknownModel(_) | AdminError::NotResident { .. } => Status::not_found(msg),
        AdminError::UnknownGpu(_) => Status::invalid_argument(msg),
        AdminError::GpuUnhealthy(_) => Status::unavailable(msg),
        AdminError::AlreadyResident { .. } => Status::already_exists(msg),
        AdminError::Pinned { .. } | AdminError::Loading { .. } => Status::failed_precondition(msg),
        AdminError::NoRoom { .. } => Status::resource_exhausted(msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_over_its_own_bounds_gets_resource_exhausted_naming_its_limit() {
        let s = admit_error(&AdmitError::PodQueueFull { limit: 32 });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("32") && s.message().contains("per_pod_queue_limit"));
        let s = admit_error(&AdmitError::PodLoadLimit { limit: 4 });
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains('4') && s.message().contains("per_pod_loads"));
    }
}
