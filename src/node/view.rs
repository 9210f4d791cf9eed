//! Read-only views of the node, in our own types; the gRPC adapter turns
//! them into wire types.

use std::time::Duration;

use crate::config::ModelSpec;
use crate::engine::{Status, Time};

use super::event::LeaseInfo;

/// A status snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeStatus {
    /// When it was taken (idle times are relative to it).
    pub(crate) at: Time,
    /// GPUs, pools, residents, queue and counters.
    pub(crate) engine: Status,
    /// The caller's own leases, or every lease for the operator.
    pub(crate) leases: Vec<LeaseInfo>,
    /// Slots of the caller's allocation; 0 for the operator.
    pub(crate) slots: u32,
    pub(crate) runtime: RuntimeStatus,
    /// Catalog vs measured memory, per catalog model.
    pub(crate) memory: Vec<ModelMemory>,
}

/// Whether the model runtime answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuntimeStatus {
    /// `bookkeeping`, `grpc` or `triton`.
    pub(crate) kind: &'static str,
    pub(crate) reachable: bool,
    /// Why not, while unreachable.
    pub(crate) reason: String,
    /// How long it has been unreachable.
    pub(crate) down_for: Duration,
}

/// What one model's copies really occupy, against its catalog entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ModelMemory {
    pub(crate) model: String,
    /// The catalog's `weights_mib`.
    pub(crate) catalog_mib: u64,
    /// What the last measured load of it took (the ledger counts this for
    /// that copy); `None` when never measured.
    pub(crate) measured_mib: Option<u64>,
    /// What the last unload of it gave back; `None` when never measured.
    pub(crate) returned_mib: Option<u64>,
}

/// A catalog model and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelResidency {
    pub(crate) spec: ModelSpec,
    /// UUIDs of the GPUs holding a ready copy.
    pub(crate) resident_on: Vec<String>,
    /// UUIDs of the GPUs where a copy is loading.
    pub(crate) loading_on: Vec<String>,
}
