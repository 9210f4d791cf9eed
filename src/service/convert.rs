//! Our types → wire types, and our errors → gRPC statuses that say what
//! to do. The only place that knows both vocabularies.

use tonic::Status;

use super::limits;

use crate::engine::{AdminError, AdmitError, LeaseError, Outcome, Rejection, RevokeReason};
use crate::node::{
    Clock, Event, EventKind, LeaseInfo, ModelCopy, ModelResidency, NodeInfo, NodeStatus,
    RuntimeDown,
};
use crate::proto::vision::v1 as pb;
use pb::watch_event::Event as Body;

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

pub(super) fn lease(l: &LeaseInfo) -> pb::Lease {
    pb::Lease {
        lease_id: l.id.0,
        model: l.model.clone(),
        gpu_index: l.gpu.id.0,
        gpu_uuid: l.gpu.uuid.clone(),
        warm: l.warm,
        waited_ms: ms(l.waited),
        expires_in_ms: ms(l.expires_in),
        ttl_ms: ms(l.ttl),
        runtime_endpoint: l.runtime_endpoint.clone(),
        working_mib: l.working_mib,
        runtime_model: l.runtime_model.clone(),
    }
}

/// One event as a Watch stream carries it; `missed` counts the events this
/// stream lost just before it.
pub(super) fn watch_event(ev: &Event, missed: u64, clock: Clock) -> pb::WatchEvent {
    pb::WatchEvent {
        seq: ev.seq,
        at_ms: ev.at.as_millis(),
        time_unix_ms: clock.unix_ms(ev.at),
        missed,
        event: Some(event_kind(&ev.kind)),
    }
}

fn lease_event(l: &LeaseInfo, reason: &str) -> pb::LeaseEvent {
    pb::LeaseEvent {
        lease: Some(lease(l)),
        reason: reason.to_owned(),
    }
}

fn model_event(copy: &ModelCopy, reason: String, took: std::time::Duration) -> pb::ModelEvent {
    pb::ModelEvent {
        model: copy.model.clone(),
        gpu_index: copy.gpu.id.0,
        gpu_uuid: copy.gpu.uuid.clone(),
        weights_mib: copy.weights_mib,
        reason,
        duration_ms: ms(took),
    }
}

/// The Watch API's words for why a lease was revoked.
fn revoke_reason(r: RevokeReason) -> &'static str {
    match r {
        RevokeReason::GpuUnhealthy => "gpu_unhealthy",
        RevokeReason::AllocationReleased => "allocation_released",
        RevokeReason::RuntimeLost => "runtime_lost",
    }
}

pub(super) fn event_kind(kind: &EventKind) -> Body {
    use std::time::Duration;
    match kind {
        EventKind::LeaseGranted(l) => Body::LeaseGranted(lease_event(l, "")),
        EventKind::LeaseReleased(l) => Body::LeaseReleased(lease_event(l, "")),
        EventKind::LeaseExpired(l) => Body::LeaseExpired(lease_event(l, "expired")),
        EventKind::LeaseRevoked { lease, reason } => {
            Body::LeaseRevoked(lease_event(lease, revoke_reason(*reason)))
        }
        EventKind::ModelLoading(copy) => {
            Body::ModelLoading(model_event(copy, String::new(), Duration::ZERO))
        }
        EventKind::ModelLoaded { copy, took } => {
            Body::ModelLoaded(model_event(copy, String::new(), *took))
        }
        EventKind::ModelLoadFailed { copy, took, error } => {
            Body::ModelLoadFailed(model_event(copy, error.to_string(), *took))
        }
        EventKind::ModelUnloaded { copy, reason } => {
            Body::ModelEvicted(model_event(copy, reason.to_string(), Duration::ZERO))
        }
        EventKind::GpuHealth { gpu, health } => Body::GpuHealth(pb::GpuHealthEvent {
            gpu_index: gpu.id.0,
            gpu_uuid: gpu.uuid.clone(),
            healthy: health.is_healthy(),
            reason: match health {
                crate::gpu::Health::Healthy => String::new(),
                crate::gpu::Health::Unhealthy(r) => r.clone(),
            },
        }),
        EventKind::Queue(q) => Body::Queue(pb::QueueEvent {
            queued: q.queued as u32,
            waiting_on_load: q.waiting_on_load as u32,
        }),
        EventKind::AdmissionRejected { model, outcome } => {
            Body::AdmissionRejected(pb::AdmissionRejected {
                model: model.clone(),
                reason: outcome.as_str().to_owned(),
                code: crate::proto::code_name(outcome_code(*outcome)).to_owned(),
            })
        }
        EventKind::PoolOvercommitted {
            gpu,
            committed_mib,
            usable_mib,
        } => Body::Pool(pb::PoolEvent {
            gpu_index: gpu.id.0,
            gpu_uuid: gpu.uuid.clone(),
            overcommitted: true,
            committed_mib: *committed_mib,
            usable_mib: *usable_mib,
        }),
        EventKind::PoolDrained { gpu } => Body::Pool(pb::PoolEvent {
            gpu_index: gpu.id.0,
            gpu_uuid: gpu.uuid.clone(),
            overcommitted: false,
            committed_mib: 0,
            usable_mib: 0,
        }),
        EventKind::Kubelet(r) => Body::Kubelet(pb::KubeletEvent {
            resource: r.resource.clone(),
            registered: r.registered,
            message: if r.registered {
                format!("registered with kubelet (endpoint {})", r.endpoint)
            } else {
                format!("not registered with kubelet (endpoint {})", r.endpoint)
            },
        }),
        EventKind::RuntimeLost { runtime, reason } => Body::Runtime(pb::RuntimeEvent {
            kind: (*runtime).to_owned(),
            reachable: false,
            reason: reason.clone(),
            adopted: 0,
            dropped: 0,
            drifted: false,
        }),
        EventKind::RuntimeBack {
            runtime,
            adopted,
            dropped,
        }
        | EventKind::RuntimeDrifted {
            runtime,
            adopted,
            dropped,
        } => Body::Runtime(pb::RuntimeEvent {
            kind: (*runtime).to_owned(),
            reachable: true,
            reason: String::new(),
            adopted: *adopted as u32,
            dropped: *dropped as u32,
            drifted: matches!(kind, EventKind::RuntimeDrifted { .. }),
        }),
        EventKind::ModelOutgrewCatalog {
            copy,
            catalog_mib,
            measured_mib,
        } => Body::ModelOutgrewCatalog(pb::ModelMemoryEvent {
            model: copy.model.clone(),
            gpu_index: copy.gpu.id.0,
            gpu_uuid: copy.gpu.uuid.clone(),
            catalog_mib: *catalog_mib,
            measured_mib: *measured_mib,
        }),
    }
}

/// Residents listed per GPU in a Status answer (most recently used first).
const MAX_RESIDENTS_LISTED: usize = 256;
/// Leases listed in a Status answer (oldest first).
const MAX_LEASES_LISTED: usize = 2048;
/// The most an answer may encode to: a stock client (grpcio, grpc-go,
/// tonic) accepts 4 MiB by default; this leaves room for framing.
pub(super) const MESSAGE_BUDGET: usize = 3 << 20;
const _: () = assert!(MESSAGE_BUDGET < 4 << 20);

/// Status of the whole node; its leases are already scoped to the caller.
///
/// Bounded whatever the node's size (issue 16, item 4): at most
/// [`MAX_RESIDENTS_LISTED`] residents per GPU and [`MAX_LEASES_LISTED`]
/// leases, then halved until the answer fits [`MESSAGE_BUDGET`]; what is
/// left out is counted (`residents_omitted`, `leases_omitted`).
pub(super) fn status(s: &NodeStatus, info: &NodeInfo) -> pb::StatusResponse {
    status_within(s, info, MESSAGE_BUDGET)
}

fn status_within(s: &NodeStatus, info: &NodeInfo, budget: usize) -> pb::StatusResponse {
    let mut resp = status_listing(s, info, MAX_RESIDENTS_LISTED, MAX_LEASES_LISTED);
    while prost::Message::encoded_len(&resp) > budget {
        let residents = resp
            .gpus
            .iter()
            .map(|g| g.residents.len())
            .max()
            .unwrap_or(0);
        if residents == 0 && resp.leases.is_empty() {
            break;
        }
        for g in &mut resp.gpus {
            let keep = g.residents.len().min(residents / 2);
            g.residents_omitted += (g.residents.len() - keep) as u32;
            g.residents.truncate(keep);
        }
        let keep = resp.leases.len() / 2;
        resp.leases_omitted += (resp.leases.len() - keep) as u32;
        resp.leases.truncate(keep);
    }
    resp
}

fn status_listing(
    s: &NodeStatus,
    info: &NodeInfo,
    max_residents: usize,
    max_leases: usize,
) -> pb::StatusResponse {
    let now = s.at;
    let e = &s.engine;
    let c = &e.counters;
    let rejected = Outcome::ALL
        .iter()
        .filter(|o| !o.is_grant() && **o != Outcome::Cancelled)
        .map(|o| c.outcome(*o))
        .sum();
    let catalog_mib = |name: &str| {
        s.memory
            .iter()
            .find(|m| m.model == name)
            .map_or(0, |m| m.catalog_mib)
    };
    pb::StatusResponse {
        node: info.node_name.clone(),
        gpu_backend: info.gpu_backend.clone(),
        gpus: e
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
                residents_omitted: g.residents.len().saturating_sub(max_residents) as u32,
                residents: g
                    .residents
                    .iter()
                    .take(max_residents)
                    .map(|r| pb::ResidentModel {
                        model: r.name.clone(),
                        weights_mib: r.weights_mib,
                        loading: r.loading,
                        pins: r.pins,
                        idle_ms: r.idle_since.map(|t| ms(now.saturating_since(t))),
                        catalog_mib: catalog_mib(&r.name),
                    })
                    .collect(),
            })
            .collect(),
        queued: e.queued as u32,
        waiting_on_load: e.waiting_on_load as u32,
        active_leases: e.leases as u32,
        leases: s.leases.iter().take(max_leases).map(lease).collect(),
        leases_omitted: s.leases.len().saturating_sub(max_leases) as u32,
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
        slots: s.slots,
        runtime: Some(pb::RuntimeStatus {
            kind: s.runtime.kind.to_owned(),
            reachable: s.runtime.reachable,
            reason: s.runtime.reason.clone(),
            unreachable_ms: ms(s.runtime.down_for),
        }),
        memory: s
            .memory
            .iter()
            .map(|m| pb::ModelMemory {
                model: m.model.clone(),
                catalog_mib: m.catalog_mib,
                measured_mib: m.measured_mib,
                returned_mib: m.returned_mib,
            })
            .collect(),
    }
}

/// The model runtime is unreachable: UNAVAILABLE, saying for how long and why.
pub(super) fn runtime_down(d: &RuntimeDown) -> Status {
    Status::unavailable(format!(
        "{d}; nothing can be loaded or confirmed on this node now: retry with backoff, or on \
         another node"
    ))
}

/// The catalog and where each model is. The catalog is bounded (1024
/// models, names and task types of 63 bytes) and so is its answer; should
/// the GPU lists still not fit [`MESSAGE_BUDGET`], they are halved and what
/// is left out counted in `gpus_omitted`.
pub(super) fn list_models(models: &[ModelResidency]) -> pb::ListModelsResponse {
    let mut resp = list_models_full(models);
    while prost::Message::encoded_len(&resp) > MESSAGE_BUDGET {
        let longest = resp
            .models
            .iter()
            .map(|m| m.resident_on.len() + m.loading_on.len())
            .max()
            .unwrap_or(0);
        if longest == 0 {
            break;
        }
        for m in &mut resp.models {
            let (r, l) = (m.resident_on.len(), m.loading_on.len());
            m.resident_on.truncate(r.min(longest / 2));
            m.loading_on
                .truncate(l.min((longest / 2).saturating_sub(m.resident_on.len())));
            m.gpus_omitted += (r + l - m.resident_on.len() - m.loading_on.len()) as u32;
        }
    }
    resp
}

fn list_models_full(models: &[ModelResidency]) -> pb::ListModelsResponse {
    pb::ListModelsResponse {
        models: models
            .iter()
            .map(|m| pb::ModelInfo {
                name: m.spec.name.clone(),
                weights_mib: m.spec.weights_mib,
                working_mib: m.spec.working_mib,
                max_concurrency: m.spec.max_concurrency,
                load_ms: m.spec.load_ms,
                task_ms: m.spec.task_ms,
                task_types: m.spec.task_types.clone(),
                resident_on: m.resident_on.clone(),
                loading_on: m.loading_on.clone(),
                gpus_omitted: 0,
            })
            .collect(),
    }
}

/// The status code a caller gets for an admission that ended in `outcome`,
/// the same as [`admit_error`] and [`rejection`] answer with (a test keeps
/// them in step), so that a Watch event names the code the caller saw.
pub(crate) fn outcome_code(outcome: Outcome) -> tonic::Code {
    use tonic::Code;
    match outcome {
        Outcome::GrantedWarm | Outcome::GrantedCold => Code::Ok,
        Outcome::Cancelled => Code::Cancelled,
        Outcome::UnknownToken | Outcome::AllocationReleased => Code::PermissionDenied,
        Outcome::UnknownModel => Code::NotFound,
        Outcome::TaskTypeNotServed => Code::InvalidArgument,
        Outcome::NotSlotAllocation | Outcome::NeverFits | Outcome::NoGpuFits => {
            Code::FailedPrecondition
        }
        Outcome::NoFreeSlot
        | Outcome::NoCapacityNow
        | Outcome::QueueFull
        | Outcome::PodQueueFull
        | Outcome::PodLoadLimit => Code::ResourceExhausted,
        Outcome::NoHealthyGpu | Outcome::ShuttingDown | Outcome::LoadFailed => Code::Unavailable,
        Outcome::DeadlineExceeded => Code::DeadlineExceeded,
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
        // The catalog and a model's task types are listed, cut short: a
        // node may serve a thousand models.
        AdmitError::UnknownModel { name, known } => Status::not_found(format!(
            "unknown model {name:?}; this node serves {}",
            limits::listing(known, "ListModels")
        )),
        AdmitError::TaskTypeNotServed {
            model,
            task_type,
            served,
        } => Status::invalid_argument(format!(
            "model {model:?} does not serve task type {task_type:?}; it serves {}",
            limits::listing(served, "ListModels")
        )),
        AdmitError::NeverFits { .. } => Status::failed_precondition(format!(
            "{msg}; it cannot run on this node — pick a smaller model or a node with larger GPUs"
        )),
        AdmitError::NoHealthyGpu => Status::unavailable(format!(
            "{msg} on this node; retry later or on another node"
        )),
        AdmitError::NoFreeSlot { .. } => Status::resource_exhausted(format!(
            "{msg}; release a lease, or admit with a timeout above 0 to wait for one"
        )),
        AdmitError::NoCapacityNow => Status::resource_exhausted(format!(
            "{msg} (the timeout is 0); admit with a timeout above 0 to wait for GPU memory"
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
             retry with a longer timeout, a higher priority, or on another node",
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
    use std::time::Duration;

    use prost::Message;

    use super::*;
    use crate::engine::GpuId;
    use crate::node::test_support::largest_node;

    /// Every refusal and every rejection, one value of each variant (the
    /// matches below are exhaustive, so a new variant must be added here).
    fn refusals() -> Vec<AdmitError> {
        let all = vec![
            AdmitError::UnknownToken,
            AdmitError::NotSlotAllocation,
            AdmitError::UnknownModel {
                name: "m".into(),
                known: vec![],
            },
            AdmitError::TaskTypeNotServed {
                model: "m".into(),
                task_type: "t".into(),
                served: vec![],
            },
            AdmitError::NeverFits {
                model: "m".into(),
                need_mib: 2,
                largest_usable_mib: 1,
            },
            AdmitError::NoHealthyGpu,
            AdmitError::NoFreeSlot { slots: 1 },
            AdmitError::NoCapacityNow,
            AdmitError::QueueFull { limit: 1 },
            AdmitError::PodQueueFull { limit: 1 },
            AdmitError::PodLoadLimit { limit: 1 },
            AdmitError::ShuttingDown,
        ];
        for e in &all {
            match e {
                AdmitError::UnknownToken
                | AdmitError::NotSlotAllocation
                | AdmitError::UnknownModel { .. }
                | AdmitError::TaskTypeNotServed { .. }
                | AdmitError::NeverFits { .. }
                | AdmitError::NoHealthyGpu
                | AdmitError::NoFreeSlot { .. }
                | AdmitError::NoCapacityNow
                | AdmitError::QueueFull { .. }
                | AdmitError::PodQueueFull { .. }
                | AdmitError::PodLoadLimit { .. }
                | AdmitError::ShuttingDown => {}
            }
        }
        all
    }

    fn rejections() -> Vec<Rejection> {
        let all = vec![
            Rejection::DeadlineExceeded {
                waited: Duration::from_millis(5),
            },
            Rejection::LoadFailed {
                gpu: GpuId(0),
                message: "boom".into(),
            },
            Rejection::NoHealthyGpu,
            Rejection::NoGpuFits {
                need_mib: 2,
                largest_usable_mib: 1,
            },
            Rejection::AllocationReleased,
            Rejection::ShuttingDown,
        ];
        for r in &all {
            match r {
                Rejection::DeadlineExceeded { .. }
                | Rejection::LoadFailed { .. }
                | Rejection::NoHealthyGpu
                | Rejection::NoGpuFits { .. }
                | Rejection::AllocationReleased
                | Rejection::ShuttingDown => {}
            }
        }
        all
    }

    #[test]
    fn an_outcomes_code_is_the_code_its_caller_got() {
        for e in refusals() {
            let outcome = Outcome::from(&e);
            assert_eq!(outcome_code(outcome), admit_error(&e).code(), "{e:?}");
        }
        for r in rejections() {
            let outcome = Outcome::from(&r);
            assert_eq!(outcome_code(outcome), rejection(&r, "m").code(), "{r:?}");
        }
    }

    #[test]
    fn a_rejection_event_names_its_outcome_and_its_code_as_grpc_spells_it() {
        let kind = EventKind::AdmissionRejected {
            model: "sd3b".into(),
            outcome: Outcome::DeadlineExceeded,
        };
        let Body::AdmissionRejected(r) = event_kind(&kind) else {
            panic!("not an admission_rejected event");
        };
        assert_eq!(r.model, "sd3b");
        assert_eq!(r.reason, "deadline_exceeded");
        assert_eq!(r.code, "DEADLINE_EXCEEDED");
    }

    #[test]
    fn only_a_drift_is_marked_drifted_and_both_say_reachable() {
        let back = EventKind::RuntimeBack {
            runtime: "triton",
            adopted: 1,
            dropped: 2,
        };
        let drift = EventKind::RuntimeDrifted {
            runtime: "triton",
            adopted: 3,
            dropped: 0,
        };
        let fields = |k| match event_kind(&k) {
            Body::Runtime(r) => (r.reachable, r.drifted, r.adopted, r.dropped),
            _ => panic!("not a runtime event"),
        };
        assert_eq!(fields(back), (true, false, 1, 2));
        assert_eq!(fields(drift), (true, true, 3, 0));
    }

    #[tokio::test]
    async fn status_and_the_catalog_fit_one_grpc_message_at_the_largest_config() {
        let (node, _workers) = largest_node(3000);
        let s = node.status(None);
        let residents: usize = s.engine.gpus.iter().map(|g| g.residents.len()).sum();
        assert_eq!(residents, 64 * 1024, "every model on every GPU");

        let resp = status(&s, node.info());
        let bytes = resp.encoded_len();
        assert!(bytes <= MESSAGE_BUDGET, "{bytes} bytes");
        for g in &resp.gpus {
            assert_eq!(
                (g.residents.len(), g.residents_omitted),
                (MAX_RESIDENTS_LISTED, 1024 - MAX_RESIDENTS_LISTED as u32)
            );
        }
        assert_eq!(resp.leases.len(), MAX_LEASES_LISTED);
        assert_eq!(resp.leases_omitted, 3000 - MAX_LEASES_LISTED as u32);
        assert_eq!(resp.active_leases, 3000, "the totals are whole");

        let models = list_models(&node.models());
        let bytes = models.encoded_len();
        assert!(bytes <= MESSAGE_BUDGET, "{bytes} bytes");
        assert_eq!(models.models.len(), 1024);
        assert!(
            models
                .models
                .iter()
                .all(|m| m.resident_on.len() == 64 && m.gpus_omitted == 0)
        );
    }

    #[tokio::test]
    async fn a_status_over_its_budget_is_halved_and_counts_what_it_leaves_out() {
        let (node, _workers) = largest_node(100);
        let s = node.status(None);
        let resp = status_within(&s, node.info(), 200_000);
        assert!(resp.encoded_len() <= 200_000);
        let listed: u32 = resp.gpus.iter().map(|g| g.residents.len() as u32).sum();
        let omitted: u32 = resp.gpus.iter().map(|g| g.residents_omitted).sum();
        assert_eq!(listed + omitted, 64 * 1024);
        assert!(listed > 0);
        assert_eq!(resp.leases.len() as u32 + resp.leases_omitted, 100);
    }

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
