//! vision-node-daemon: a per-node agent that owns a Kubernetes node's GPU memory.
//!
//! # Layout
//! - [`config`]: the YAML configuration — serde wire types, validation into
//!   domain types, errors that name the key path and the line.
//! - [`gpu`]: GPU discovery behind the [`gpu::Inventory`] trait, with two real
//!   implementations: NVML (`nvml-wrapper`) and a simulated inventory with a
//!   fault-injection handle.
//! - [`engine`]: the pure admission core — per-GPU pool ledgers, LRU residency
//!   with pins, the priority queue, leases and pod allocations. Synchronous, no
//!   I/O, no clock: time comes in as an argument and decisions go out as data.
//! - [`extender`]: `vision-scheduler-extender`, the kube-scheduler HTTP
//!   extender that scores nodes by the residency the daemons publish; its
//!   pure scoring is shared with the fleet simulator.
//! - [`fleet`]: the fleet simulator — many nodes' engines, pods placed by
//!   kube-scheduler's scoring with or without the extender's.
//! - [`sim`]: the workload simulator that replays synthetic traffic through the
//!   real engine and compares its load cost with an offline lower bound.
//! - [`kubelet`]: the kubelet API constants (version, health strings,
//!   paths, the 4 MiB ListAndWatch limit) that go with the generated
//!   `proto::k8s` types.
//! - [`uds`]: gRPC over Unix sockets — safe bind/cleanup, a shim that lets
//!   clients sending an invalid `:authority` (grpcio, grpc-java) past h2, and
//!   our own client.
//!
//! The async shell wraps these pieces; none of them depends on tokio:
//! - [`node`]: owns the engine and all of the shell's bookkeeping behind
//!   one lock, turns the engine's effects into domain events, runs
//!   model loads through the [`runtime`] and applies GPU health.
//! - `service`: the admission gRPC API, a thin tonic adapter over the node
//!   (the only place events become protobuf).
//! - `deviceplugin`: the kubelet device plugins, one `Plugin` per resource.
//! - [`cluster`]: node labels, residency annotations and Kubernetes Events.
//! - [`telemetry`]: traces, Prometheus metrics (a leaf), probes.
//! - [`daemon`]: build (everything that can fail), then spawn; shutdown.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod daemon;
mod deviceplugin;
pub mod engine;
pub mod extender;
pub mod fleet;
pub mod gpu;
pub mod kubelet;
pub mod node;
pub mod proto;
pub mod runtime;
mod service;
mod shutdown;
pub mod sim;
pub mod telemetry;
pub mod uds;
