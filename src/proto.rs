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
