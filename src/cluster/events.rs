//! Kubernetes Events on the Node: which daemon events a human should see in
//! `kubectl describe node`, as a pure mapping.
//!
//! Only rare, node-level state changes qualify. Admissions, leases and
//! routine loads and evictions happen many times a second on a busy node:
//! as Events they would flood etcd and bury the ones that matter.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use crate::gpu::Health;
use crate::node::EventKind;

/// The API server refuses an `events.k8s.io/v1` note over 1 KiB.
pub(crate) const NOTE_MAX_BYTES: usize = 1024;

/// One Kubernetes Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventSpec {
    pub(crate) type_: EventType,
    /// Machine-readable, CamelCase (`GpuUnhealthy`).
    pub(crate) reason: &'static str,
    /// What the daemon was doing (`events.k8s.io/v1` requires one).
    pub(crate) action: &'static str,
    /// For the human: which GPU, model or resource, and why. At most
    /// [`NOTE_MAX_BYTES`].
    pub(crate) note: String,
}

/// The Event a daemon event deserves, if any:
///
/// | daemon event | type | reason |
/// |---|---|---|
/// | `Kubelet`, registered | Normal | `DevicePluginRegistered` |
/// | `GpuHealth`, unhealthy | Warning | `GpuUnhealthy` |
/// | `GpuHealth`, healthy | Normal | `GpuRecovered` |
/// | `ModelLoadFailed` | Warning | `ModelLoadFailed` |
/// | `PoolOvercommitted` | Warning | `GpuPoolOvercommitted` |
/// | `RuntimeLost` | Warning | `ModelRuntimeLost` |
/// | `RuntimeBack` | Normal | `ModelRuntimeRecovered` |
/// | `RuntimeDrifted` | Warning | `ModelRuntimeDrifted` |
/// | `ModelOutgrewCatalog` | Warning | `ModelOutgrewCatalog` |
///
/// Everything else — admissions, leases, queue changes, successful loads,
/// evictions, a pool draining, a registration attempt failing (retried
/// with backoff, and logged) — gets none.
pub(crate) fn event_for(kind: &EventKind) -> Option<EventSpec> {
    let (type_, reason, action, note) = match kind {
        EventKind::Kubelet(k) if k.registered => (
            EventType::Normal,
            "DevicePluginRegistered",
            "Register",
            format!(
                "{}: registered with kubelet (endpoint {})",
                k.resource, k.endpoint
            ),
        ),
        EventKind::GpuHealth {
            gpu,
            health: Health::Unhealthy(why),
        } => (
            EventType::Warning,
            "GpuUnhealthy",
            "HealthCheck",
            format!(
                "GPU {} ({}) is unhealthy: {}; its models were dropped and its leases revoked",
                gpu.id.0,
                gpu.uuid,
                if why.is_empty() {
                    "no reason given"
                } else {
                    why
                }
            ),
        ),
        EventKind::GpuHealth {
            gpu,
            health: Health::Healthy,
        } => (
            EventType::Normal,
            "GpuRecovered",
            "HealthCheck",
            format!("GPU {} ({}) is healthy again", gpu.id.0, gpu.uuid),
        ),
        EventKind::ModelLoadFailed { copy, error, .. } => (
            EventType::Warning,
            "ModelLoadFailed",
            "LoadModel",
            format!(
                "model {} ({} MiB) failed to load on GPU {} ({}): {error}",
                copy.model, copy.weights_mib, copy.gpu.id.0, copy.gpu.uuid
            ),
        ),
        EventKind::PoolOvercommitted {
            gpu,
            committed_mib,
            usable_mib,
        } => (
            EventType::Warning,
            "GpuPoolOvercommitted",
            "AccountMemory",
            format!(
                "GPU {} ({}) pool is over-committed: {committed_mib} MiB committed of {usable_mib} MiB usable; \
                 admissions there wait until it drains",
                gpu.id.0, gpu.uuid
            ),
        ),
        EventKind::RuntimeLost { runtime, reason } => (
            EventType::Warning,
            "ModelRuntimeLost",
            "CheckRuntime",
            format!(
                "model runtime {runtime} is unreachable: {reason}; admissions are refused \
                 (UNAVAILABLE) and idle models were dropped until it answers again"
            ),
        ),
        EventKind::RuntimeBack {
            runtime,
            adopted,
            dropped,
        } => (
            EventType::Normal,
            "ModelRuntimeRecovered",
            "CheckRuntime",
            format!(
                "model runtime {runtime} answers again: {adopted} model cop{} it holds adopted, \
                 {dropped} it lost dropped",
                if *adopted == 1 { "y" } else { "ies" }
            ),
        ),
        EventKind::RuntimeDrifted {
            runtime,
            adopted,
            dropped,
        } => (
            EventType::Warning,
            "ModelRuntimeDrifted",
            "Reconcile",
            format!(
                "model runtime {runtime} was changed directly: {adopted} model cop{} it loaded \
                 adopted, {dropped} it unloaded dropped (their leases revoked); load and unload \
                 through the daemon to keep its admission accounting exact",
                if *adopted == 1 { "y" } else { "ies" }
            ),
        ),
        EventKind::ModelOutgrewCatalog {
            copy,
            catalog_mib,
            measured_mib,
        } => (
            EventType::Warning,
            "ModelOutgrewCatalog",
            "MeasureModel",
            format!(
                "model {} on GPU {} ({}) took {measured_mib} MiB, more than its catalog's \
                 {catalog_mib} MiB; the ledger counts what was measured: raise its weights_mib",
                copy.model, copy.gpu.id.0, copy.gpu.uuid
            ),
        ),
        _ => return None,
    };
    Some(EventSpec {
        type_,
        reason,
        action,
        note: truncate(note, NOTE_MAX_BYTES),
    })
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The reference our Events are `regarding`: the Node, as kubelet writes it.
///
/// A Node is cluster-scoped, so the reference has no namespace and the
/// Recorder posts to `default`. The `uid` is the node *name*, not the
/// object's UID: that is what kubelet puts in its own node events, and
/// `kubectl describe node` searches events by both the real UID and the
/// name. It also spares a GET of the Node (and the RBAC for it) before the
/// first Event, and keeps Events flowing when the label writes fail.
pub(crate) fn node_reference(node_name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node_name.into()),
        uid: Some(node_name.into()),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::{GpuId, LeaseId, Outcome, RevokeReason};
    use crate::node::{
        GpuRef, LeaseInfo, LoadError, ModelCopy, QueueDepth, Registration, UnloadCause,
    };

    fn gpu(i: u32) -> GpuRef {
        GpuRef {
            id: GpuId(i),
            uuid: format!("GPU-{i}"),
        }
    }

    fn health(healthy: bool, reason: &str) -> EventKind {
        EventKind::GpuHealth {
            gpu: gpu(1),
            health: if healthy {
                Health::Healthy
            } else {
                Health::Unhealthy(reason.into())
            },
        }
    }

    fn copy(model: &str, weights_mib: u64) -> ModelCopy {
        ModelCopy {
            model: model.into(),
            gpu: gpu(0),
            weights_mib,
        }
    }

    #[test]
    fn a_gpu_fault_is_a_warning_with_its_reason() {
        let e = event_for(&health(false, "Xid 79 (fell off the bus)")).expect("an event");
        assert_eq!(e.type_, EventType::Warning);
        assert_eq!(e.reason, "GpuUnhealthy");
        assert_eq!(e.action, "HealthCheck");
        assert_eq!(
            e.note,
            "GPU 1 (GPU-1) is unhealthy: Xid 79 (fell off the bus); its models were dropped and its leases revoked"
        );
    }

    #[test]
    fn a_gpu_recovery_is_normal() {
        let e = event_for(&health(true, "")).expect("an event");
        assert_eq!(
            (e.type_, e.reason, e.note.as_str()),
            (
                EventType::Normal,
                "GpuRecovered",
                "GPU 1 (GPU-1) is healthy again"
            )
        );
    }

    #[test]
    fn only_a_successful_kubelet_registration_is_an_event() {
        let k = |registered| {
            EventKind::Kubelet(Registration {
                resource: "vision.ai/slot".into(),
                endpoint: "vision-slot.sock".into(),
                registered,
            })
        };
        let e = event_for(&k(true)).expect("an event");
        assert_eq!(
            (e.type_, e.reason),
            (EventType::Normal, "DevicePluginRegistered")
        );
        assert_eq!(
            e.note,
            "vision.ai/slot: registered with kubelet (endpoint vision-slot.sock)"
        );
        assert_eq!(event_for(&k(false)), None);
    }

    #[test]
    fn a_failed_model_load_is_a_warning() {
        let e = event_for(&EventKind::ModelLoadFailed {
            copy: copy("sam", 2400),
            took: Duration::from_millis(30),
            error: LoadError::Runtime(crate::runtime::Error::Refused("out of memory".into())),
        })
        .expect("an event");
        assert_eq!((e.type_, e.reason), (EventType::Warning, "ModelLoadFailed"));
        assert_eq!(
            e.note,
            "model sam (2400 MiB) failed to load on GPU 0 (GPU-0): model runtime refused: out of memory"
        );
        let timed_out = event_for(&EventKind::ModelLoadFailed {
            copy: copy("sam", 2400),
            took: Duration::from_secs(60),
            error: LoadError::TimedOut(Duration::from_secs(60)),
        })
        .expect("an event");
        assert!(
            timed_out.note.ends_with(": load timed out after 1m"),
            "{}",
            timed_out.note
        );
    }

    #[test]
    fn only_entering_overcommit_is_an_event() {
        let e = event_for(&EventKind::PoolOvercommitted {
            gpu: gpu(0),
            committed_mib: 30000,
            usable_mib: 24000,
        })
        .expect("an event");
        assert_eq!(
            (e.type_, e.reason),
            (EventType::Warning, "GpuPoolOvercommitted")
        );
        assert!(e.note.contains("30000 MiB committed of 24000 MiB usable"));
        assert_eq!(event_for(&EventKind::PoolDrained { gpu: gpu(0) }), None);
    }

    #[test]
    fn losing_the_model_runtime_is_a_warning_and_its_return_normal() {
        let lost = event_for(&EventKind::RuntimeLost {
            runtime: "triton",
            reason: "connection refused".into(),
        })
        .expect("an event");
        assert_eq!(
            (lost.type_, lost.reason),
            (EventType::Warning, "ModelRuntimeLost")
        );
        assert!(
            lost.note
                .starts_with("model runtime triton is unreachable: connection refused;"),
            "{}",
            lost.note
        );
        let back = event_for(&EventKind::RuntimeBack {
            runtime: "triton",
            adopted: 1,
            dropped: 2,
        })
        .expect("an event");
        assert_eq!(
            (back.type_, back.reason),
            (EventType::Normal, "ModelRuntimeRecovered")
        );
        assert_eq!(
            back.note,
            "model runtime triton answers again: 1 model copy it holds adopted, 2 it lost dropped"
        );
        let drift = event_for(&EventKind::RuntimeDrifted {
            runtime: "triton",
            adopted: 2,
            dropped: 0,
        })
        .expect("an event");
        assert_eq!(
            (drift.type_, drift.reason),
            (EventType::Warning, "ModelRuntimeDrifted")
        );
        assert!(
            drift
                .note
                .starts_with("model runtime triton was changed directly: 2 model copies it loaded"),
            "{}",
            drift.note
        );
    }

    #[test]
    fn a_model_that_outgrew_its_catalog_entry_is_a_warning_with_both_sizes() {
        let e = event_for(&EventKind::ModelOutgrewCatalog {
            copy: copy("sam", 2400),
            catalog_mib: 2400,
            measured_mib: 3100,
        })
        .expect("an event");
        assert_eq!(
            (e.type_, e.reason),
            (EventType::Warning, "ModelOutgrewCatalog")
        );
        assert!(
            e.note
                .contains("took 3100 MiB, more than its catalog's 2400 MiB"),
            "{}",
            e.note
        );
    }

    #[test]
    fn admissions_leases_and_routine_residency_changes_are_not_events() {
        let lease = LeaseInfo {
            id: LeaseId(1),
            model: "yolo".into(),
            gpu: gpu(0),
            warm: true,
            waited: Duration::ZERO,
            expires_in: Duration::from_secs(60),
            ttl: Duration::from_secs(60),
            runtime_endpoint: String::new(),
            runtime_model: String::new(),
            working_mib: 100,
        };
        for kind in [
            EventKind::LeaseGranted(lease.clone()),
            EventKind::LeaseReleased(lease.clone()),
            EventKind::LeaseExpired(lease.clone()),
            EventKind::LeaseRevoked {
                lease,
                reason: RevokeReason::GpuUnhealthy,
            },
            EventKind::ModelLoading(copy("yolo", 12)),
            EventKind::ModelLoaded {
                copy: copy("yolo", 12),
                took: Duration::from_millis(5),
            },
            EventKind::ModelUnloaded {
                copy: copy("yolo", 12),
                reason: UnloadCause::Evicted { for_model: None },
            },
            EventKind::ModelUnloaded {
                copy: copy("yolo", 12),
                reason: UnloadCause::RuntimeLost,
            },
            EventKind::Queue(QueueDepth::default()),
            EventKind::AdmissionRejected {
                model: "yolo".into(),
                outcome: Outcome::DeadlineExceeded,
            },
        ] {
            assert_eq!(event_for(&kind), None, "{kind:?}");
        }
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let e = event_for(&health(false, &"é".repeat(2000))).expect("an event");
        assert!(e.note.len() <= NOTE_MAX_BYTES);
        assert!(e.note.ends_with('é'));
    }

    #[test]
    fn events_regard_the_node_by_name_like_kubelet() {
        let r = node_reference("n1");
        assert_eq!(r.kind.as_deref(), Some("Node"));
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.name.as_deref(), Some("n1"));
        assert_eq!(r.uid.as_deref(), Some("n1"));
        assert_eq!(r.namespace, None);
    }
}
