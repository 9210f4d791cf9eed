//! The node's events: every state change, in the daemon's own vocabulary.
//!
//! Watch streams, the cluster publisher and the device plugins' health
//! publisher all read this one bus. Reasons are typed; only the Watch
//! handler turns events into protobuf (`service::convert`), so changing the
//! public Watch API cannot change how Kubernetes Events are published.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::duration;
use crate::engine::{GpuId, LeaseId, Outcome, RevokeReason, Time};
use crate::gpu::Health;

/// One state change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// Increases by one per event the node emits.
    pub(crate) seq: u64,
    pub(crate) at: Time,
    /// The token whose lease or admission this is; `None` for node-level
    /// events. A pod's Watch stream sees only its own.
    pub(crate) owner: Option<Arc<str>>,
    pub(crate) kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventKind {
    LeaseGranted(LeaseInfo),
    /// Released by its holder.
    LeaseReleased(LeaseInfo),
    /// Outlived its TTL without a KeepAlive.
    LeaseExpired(LeaseInfo),
    LeaseRevoked {
        lease: LeaseInfo,
        reason: RevokeReason,
    },
    ModelLoading(ModelCopy),
    ModelLoaded {
        copy: ModelCopy,
        took: Duration,
    },
    ModelLoadFailed {
        copy: ModelCopy,
        took: Duration,
        error: LoadError,
    },
    /// A copy dropped (its load cancelled first if it was loading).
    ModelUnloaded {
        copy: ModelCopy,
        reason: UnloadCause,
    },
    GpuHealth {
        gpu: GpuRef,
        health: Health,
    },
    /// The queue depth changed.
    Queue(QueueDepth),
    /// A pending admission ended without a lease.
    AdmissionRejected {
        model: String,
        outcome: Outcome,
    },
    /// The GPU's pool holds more than it can; admissions there wait.
    PoolOvercommitted {
        gpu: GpuRef,
        committed_mib: u64,
        usable_mib: u64,
    },
    PoolDrained {
        gpu: GpuRef,
    },
    /// A device plugin's registration with kubelet.
    Kubelet(Registration),
    /// The model runtime stopped answering: loads in flight and waiting
    /// admissions were answered, idle copies dropped (see `node::reach`).
    RuntimeLost {
        runtime: &'static str,
        reason: String,
    },
    /// The model runtime answers again and residency was rebuilt from its
    /// list of copies.
    RuntimeBack {
        runtime: &'static str,
        /// Copies it holds that the ledger did not (now idle residents).
        adopted: usize,
        /// Copies the ledger held that it no longer does (dropped; their
        /// leases revoked).
        dropped: usize,
    },
    /// While it answered, the model runtime's list of copies differed from
    /// the ledger (someone loaded or unloaded models in it directly), and
    /// the ledger followed it.
    RuntimeDrifted {
        runtime: &'static str,
        /// Copies it holds that the ledger did not (now idle residents).
        adopted: usize,
        /// Copies the ledger held that it no longer does (dropped; their
        /// leases revoked).
        dropped: usize,
    },
    /// A measured copy occupies more than its catalog entry says (by more
    /// than [`OUTGROWN_PERCENT`]): the catalog wants updating, or the
    /// backend keeps more than the weights.
    ModelOutgrewCatalog {
        copy: ModelCopy,
        catalog_mib: u64,
        measured_mib: u64,
    },
}

/// How far (percent) a measured copy may exceed its catalog entry before a
/// [`EventKind::ModelOutgrewCatalog`] warning.
pub(crate) const OUTGROWN_PERCENT: u64 = 10;

/// A GPU as events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRef {
    pub id: GpuId,
    pub uuid: String,
}

/// A lease as its holder sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    pub id: LeaseId,
    pub model: String,
    pub gpu: GpuRef,
    /// The model was resident and ready when the admission was placed.
    pub warm: bool,
    /// Between asking and being granted (queue wait plus load).
    pub waited: Duration,
    /// Until the lease expires unless kept alive (from when this was taken).
    pub expires_in: Duration,
    pub ttl: Duration,
    /// Where the model runtime serves the copy ("" when it names none).
    pub runtime_endpoint: String,
    /// The runtime's name for the model (Triton's), for inference requests;
    /// "" when it names none.
    pub runtime_model: String,
    pub working_mib: u64,
}

/// One model copy on one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelCopy {
    pub(crate) model: String,
    pub(crate) gpu: GpuRef,
    pub(crate) weights_mib: u64,
}

/// Why a copy was unloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnloadCause {
    /// Evicted (idle, least valuable) to make room for this model, or for a
    /// vram carve-out or other processes' memory when `None`.
    Evicted {
        for_model: Option<String>,
    },
    /// An operator asked (`Evict`).
    Admin,
    GpuUnhealthy,
    Shutdown,
    /// The model runtime no longer holds it (lost, restarted, or unloaded
    /// behind the daemon's back): it left the ledger, nothing was unloaded.
    RuntimeLost,
}

impl fmt::Display for UnloadCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnloadCause::Evicted { for_model: Some(m) } => write!(f, "evicted for {m}"),
            UnloadCause::Evicted { for_model: None } => f.write_str("evicted for memory pressure"),
            UnloadCause::Admin => f.write_str("admin"),
            UnloadCause::GpuUnhealthy => f.write_str("gpu_unhealthy"),
            UnloadCause::Shutdown => f.write_str("shutdown"),
            UnloadCause::RuntimeLost => f.write_str("runtime_lost"),
        }
    }
}

/// Why a load did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    #[error("load timed out after {}", duration::format(*.0))]
    TimedOut(Duration),
    #[error("cancelled: the daemon is shutting down")]
    Cancelled,
    /// The runtime was lost while the load ran (the reachability watch).
    #[error("the model runtime was lost during the load: {0}")]
    RuntimeLost(String),
}

/// Admissions waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueDepth {
    /// For a slot or for memory.
    pub(crate) queued: usize,
    /// On a model load.
    pub(crate) waiting_on_load: usize,
}

/// A device plugin's registration with kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The extended resource, e.g. `vision.ai/slot`.
    pub resource: String,
    /// The plugin's socket file name in kubelet's directory.
    pub endpoint: String,
    pub registered: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unload_causes_read_as_the_watch_api_has_always_said_them() {
        let evicted = |m: Option<&str>| UnloadCause::Evicted {
            for_model: m.map(str::to_owned),
        };
        assert_eq!(evicted(Some("sdxl")).to_string(), "evicted for sdxl");
        assert_eq!(evicted(None).to_string(), "evicted for memory pressure");
        assert_eq!(UnloadCause::Admin.to_string(), "admin");
        assert_eq!(UnloadCause::GpuUnhealthy.to_string(), "gpu_unhealthy");
        assert_eq!(UnloadCause::Shutdown.to_string(), "shutdown");
        assert_eq!(UnloadCause::RuntimeLost.to_string(), "runtime_lost");
    }

    #[test]
    fn load_errors_say_what_happened() {
        assert_eq!(
            LoadError::TimedOut(Duration::from_secs(90)).to_string(),
            "load timed out after 1m30s"
        );
        assert_eq!(
            LoadError::Runtime(crate::runtime::Error::Refused("CUDA error".into())).to_string(),
            "model runtime refused: CUDA error"
        );
    }
}
