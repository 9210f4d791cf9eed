//! The workload simulator (work in progress).
