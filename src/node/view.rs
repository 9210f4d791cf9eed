//! Read-only views of the node, in our own types; the gRPC adapter turns
//! them into wire types.

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
