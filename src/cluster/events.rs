//! Kubernetes Events on the Node: which daemon events a human should see in
//! `kubectl describe node`, as a pure mapping.
//!
//! Only rare, node-level state changes qualify. Admissions, leases and
//! routine loads and evictions happen many times a second on a busy node:
//! as Events they would flood etcd and bury the ones that matter.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use crate::proto::vision::v1::watch_event::Event as Body;

/// The API server refuses an `events.k8s.io/v1` note over 1 KiB.
pub const NOTE_MAX_BYTES: usize = 1024;

/// One Kubernetes Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub type_: EventType,
    /// Machine-readable, CamelCase (`GpuUnhealthy`).
    pub reason: &'static str,
    /// What the daemon was doing (`events.k8s.io/v1` requires one).
    pub action: &'static str,
    /// For the human: which GPU, model or resource, and why. At most
    /// [`NOTE_MAX_BYTES`].
    pub note: String,
}

/// The Event a daemon event deserves, if any:
///
/// | daemon event | type | reason |
/// |---|---|---|
/// | `Kubelet` with `registered` | Normal | `DevicePluginRegistered` |
/// | `GpuHealth`, unhealthy | Warning | `GpuUnhealthy` |
/// | `GpuHealth`, healthy | Normal | `GpuRecovered` |
/// | `ModelLoadFailed` | Warning | `ModelLoadFailed` |
/// | `Pool` with `overcommitted` | Warning | `GpuPoolOvercommitted` |
///
/// Everything else — admissions, leases, queue changes, successful loads,
/// evictions, a pool draining, a registration attempt failing (retried
/// with backoff, and logged) — gets none.
pub fn event_for(body: &Body) -> Option<EventSpec> {
    let (type_, reason, action, note) = match body {
        Body::Kubelet(k) if k.registered => (
            EventType::Normal,
            "DevicePluginRegistered",
            "Register",
            format!("{}: {}", k.resource, k.message),
        ),
        Body::GpuHealth(h) if !h.healthy => (
            EventType::Warning,
            "GpuUnhealthy",
            "HealthCheck",
            format!(
                "GPU {} ({}) is unhealthy: {}; its models were dropped and its leases revoked",
                h.gpu_index,
                h.gpu_uuid,
                if h.reason.is_empty() {
                    "no reason given"
                } else {
                    &h.reason
                }
            ),
        ),
        Body::GpuHealth(h) => (
            EventType::Normal,
            "GpuRecovered",
            "HealthCheck",
            format!("GPU {} ({}) is healthy again", h.gpu_index, h.gpu_uuid),
        ),
        Body::ModelLoadFailed(m) => (
            EventType::Warning,
            "ModelLoadFailed",
            "LoadModel",
            format!(
                "model {} ({} MiB) failed to load on GPU {} ({}): {}",
                m.model, m.weights_mib, m.gpu_index, m.gpu_uuid, m.reason
            ),
        ),
        Body::Pool(p) if p.overcommitted => (
            EventType::Warning,
            "GpuPoolOvercommitted",
            "AccountMemory",
            format!(
                "GPU {} ({}) pool is over-committed: {} MiB committed of {} MiB usable; \
                 admissions there wait until it drains",
                p.gpu_index, p.gpu_uuid, p.committed_mib, p.usable_mib
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
pub fn node_reference(node_name: &str) -> ObjectReference {
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
    use super::*;
    use crate::proto::vision::v1 as pb;

    fn health(healthy: bool, reason: &str) -> Body {
        Body::GpuHealth(pb::GpuHealthEvent {
            gpu_index: 1,
            gpu_uuid: "GPU-1".into(),
            healthy,
            reason: reason.into(),
        })
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
            Body::Kubelet(pb::KubeletEvent {
                resource: "vision.ai/slot".into(),
                registered,
                message: "registered with kubelet (endpoint vision-slot.sock)".into(),
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
        let e = event_for(&Body::ModelLoadFailed(pb::ModelEvent {
            model: "sam".into(),
            gpu_index: 0,
            gpu_uuid: "GPU-0".into(),
            weights_mib: 2400,
            reason: "out of memory".into(),
            duration_ms: 30,
        }))
        .expect("an event");
        assert_eq!((e.type_, e.reason), (EventType::Warning, "ModelLoadFailed"));
        assert_eq!(
            e.note,
            "model sam (2400 MiB) failed to load on GPU 0 (GPU-0): out of memory"
        );
    }

    #[test]
    fn only_entering_overcommit_is_an_event() {
        let p = |overcommitted| {
            Body::Pool(pb::PoolEvent {
                gpu_index: 0,
                gpu_uuid: "GPU-0".into(),
                overcommitted,
                committed_mib: 30000,
                usable_mib: 24000,
            })
        };
        let e = event_for(&p(true)).expect("an event");
        assert_eq!(
            (e.type_, e.reason),
            (EventType::Warning, "GpuPoolOvercommitted")
        );
        assert!(e.note.contains("30000 MiB committed of 24000 MiB usable"));
        assert_eq!(event_for(&p(false)), None);
    }

    #[test]
    fn admissions_leases_and_routine_residency_changes_are_not_events() {
        let lease = pb::LeaseEvent::default();
        let model = pb::ModelEvent::default();
        for body in [
            Body::LeaseGranted(lease.clone()),
            Body::LeaseReleased(lease.clone()),
            Body::LeaseExpired(lease.clone()),
            Body::LeaseRevoked(lease),
            Body::ModelLoading(model.clone()),
            Body::ModelLoaded(model.clone()),
            Body::ModelEvicted(model),
            Body::Queue(pb::QueueEvent::default()),
            Body::AdmissionRejected(pb::AdmissionRejected::default()),
        ] {
            assert_eq!(event_for(&body), None, "{body:?}");
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
