//! Read-only views of the node, in our own types; the gRPC adapter turns
//! them into wire types.

use crate::config::ModelSpec;
use crate::engine::{Status, Time};

use super::event::LeaseInfo;

/// A status snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// When it was taken (idle times are relative to it).
    pub at: Time,
    /// GPUs, pools, residents, queue and counters.
    pub engine: Status,
    /// The caller's own leases, or every lease for the operator.
    pub leases: Vec<LeaseInfo>,
    /// Slots of the caller's allocation; 0 for the operator.
    pub slots: u32,
}

/// A catalog model and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResidency {
    pub spec: ModelSpec,
    /// UUIDs of the GPUs holding a ready copy.
    pub resident_on: Vec<String>,
    /// UUIDs of the GPUs where a copy is loading.
    pub loading_on: Vec<String>,
}
