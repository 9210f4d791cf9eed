//! Generated gRPC code (tonic + prost) for `proto/vision/v1/*.proto` and the
//! kubelet APIs under `proto/k8s/`. Kept apart from our own types; the
//! service modules convert at the edge.
//!
//! The kubelet modules are named by their proto packages (`v1beta1`, `v1`),
//! which are part of the gRPC paths kubelet uses and must not change.

#![allow(clippy::all, missing_docs)]

pub mod vision {
    pub mod v1 {
        tonic::include_proto!("vision.v1");
    }
}

/// Triton Inference Server's `inference.GRPCInferenceService`: the subset
/// in `proto/triton/grpc_service.proto` (the daemon is its client; the tests
/// call `ModelInfer` through it).
pub mod inference {
    tonic::include_proto!("inference");
}

/// The kubelet's gRPC APIs; constants that go with them are in
/// [`crate::kubelet`].
pub mod k8s {
    pub mod deviceplugin {
        /// Device plugin API v1beta1: `Registration` (kubelet serves it) and
        /// `DevicePlugin` (we serve it).
        pub mod v1beta1 {
            tonic::include_proto!("v1beta1");
        }
    }
    pub mod podresources {
        /// PodResources API v1: which pods hold which devices.
        pub mod v1 {
            tonic::include_proto!("v1");
        }
    }
}

/// The canonical name of a gRPC status code, as grpc/doc/statuscodes.md
/// spells it (`NOT_FOUND`): the one spelling every status this project
/// shows uses (visionctl, Watch events).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
