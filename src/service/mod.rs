//! The `vision.v1.Admission` gRPC service: the tonic adapter in front of
//! the [`Node`]. It checks the caller, converts wire types to ours, calls
//! the node, and converts back — nothing more. Instantiated once per socket
//! with its [`Access`] level.
//!
//! # Layout
//! - `grpc`: the generated trait's implementation.
//! - `convert`: our types → wire types, our errors → `tonic::Status`es
//!   that say what to do. The only place that knows both vocabularies.
//! - `limits`: bounds on request strings (INVALID_ARGUMENT past them) and
//!   on every message we send back.

mod convert;
mod grpc;
mod limits;

use std::sync::Arc;

use tonic::Status;

use crate::engine::GpuId;
use crate::gpu::FaultHandle;
use crate::node::Node;
use crate::proto::vision::v1 as pb;

/// Who is on the other end of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The task socket mounted into pods: calls carry the caller's token and
    /// see only their own leases; operator calls are refused.
    Task,
    /// The admin socket (mode 0600, never mounted): everything, no token.
    Admin,
}

/// The service behind one socket.
#[derive(Clone)]
pub(crate) struct AdmissionService {
    node: Arc<Node>,
    access: Access,
    /// Fault injection for `SetGpuFault`: present only on the admin socket
    /// of a daemon whose GPUs are simulated.
    faults: Option<FaultHandle>,
}

impl AdmissionService {
    pub(crate) fn new(node: Arc<Node>, access: Access) -> AdmissionService {
        AdmissionService {
            node,
            access,
            faults: None,
        }
    }

    /// Serves `SetGpuFault` through `faults` (simulated GPUs); without it the
    /// call answers FAILED_PRECONDITION.
    pub(crate) fn with_faults(mut self, faults: Option<FaultHandle>) -> AdmissionService {
        self.faults = faults;
        self
    }

    pub(crate) fn into_server(self) -> pb::admission_server::AdmissionServer<AdmissionService> {
        pb::admission_server::AdmissionServer::new(self)
    }

    /// The caller's token: required and known on the task socket; optional
    /// on the admin socket (where `None` means "everything").
    fn caller<'a>(&self, token: &'a str) -> Result<Option<&'a str>, Status> {
        limits::field("token", token, limits::MAX_TOKEN_BYTES)?;
        match (self.access, token.is_empty()) {
            (Access::Admin, true) => Ok(None),
            (Access::Task, true) => Err(Status::permission_denied(
                "missing token: send the VISION_TOKEN that Allocate put in this container's environment",
            )),
            (_, false) if self.node.knows_token(token) => Ok(Some(token)),
            (_, false) => Err(Status::permission_denied(
                "unknown token: use the VISION_TOKEN that Allocate put in this container's environment",
            )),
        }
    }

    fn admin_only(&self, call: &str) -> Result<(), Status> {
        match self.access {
            Access::Admin => Ok(()),
            Access::Task => Err(Status::permission_denied(format!(
                "{call} is an operator call, served only on the admin socket ({})",
                self.node.info().admin_socket
            ))),
        }
    }

    /// A GPU named by UUID or index; "" means any.
    fn gpu_arg(&self, gpu: &str) -> Result<Option<GpuId>, Status> {
        limits::field("gpu", gpu, limits::MAX_GPU_BYTES)?;
        if gpu.is_empty() {
            return Ok(None);
        }
        self.node.find_gpu(gpu).map(Some).ok_or_else(|| {
            Status::invalid_argument(format!("unknown GPU {gpu:?}: give a UUID or an index"))
        })
    }
}
