//! Generated gRPC code (tonic + prost) for `proto/vision/v1/*.proto`.
//! Kept apart from our own types; the service modules convert at the edge.

#![allow(clippy::all, missing_docs)]

pub mod vision {
    pub mod v1 {
        tonic::include_proto!("vision.v1");
    }
}
