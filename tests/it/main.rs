//! The integration tests, as one test crate: end to end over real Unix
//! sockets, with in-test peers (fake kubelet and PodResources, fake
//! Kubernetes API, model runtimes, Python and Triton processes).
//!
//! One crate links tonic, kube and OpenTelemetry once instead of once per
//! file. Run a part with a filter: `cargo test --test it device_plugin::`.
//! Outside it: `tests/telemetry.rs` (installs the process's global tracing
//! subscriber and OTLP exporter, which would collect every other test's
//! spans), `tests/engine_properties.rs` and `tests/simulate_cli.rs`.
//!
//! # Layout
//! - helpers: [`common`] (an in-process daemon and clients over its
//!   sockets), [`cluster_support`], [`kubelet_support`], [`uds_support`],
//!   [`extender_support`], [`pyenv`], [`triton_support`], `fake_driver`
//!   (the NVML stub);
//! - one module per subject, test names reading as sentences.

mod cluster_support;
mod common;
mod extender_support;
#[path = "nvml_stub/fake_driver.rs"]
mod fake_driver;
mod kubelet_support;
mod pyenv;
mod triton_support;
mod uds_support;

mod admission_service;
mod check_config;
mod cluster_daemon;
mod cluster_events;
mod cluster_writes;
mod daemon_cli;
mod daemon_start;
mod device_plugin;
mod extender;
mod fault_connections;
mod fault_restart;
mod fault_suite;
mod gpu_nvml;
mod hostile_input;
mod kubelet_fake;
mod kubelet_wire;
mod metrics;
mod model_runtime;
mod python_client;
mod triton;
mod triton_memory;
mod triton_reach;
mod uds_authority;
mod uds_listener;
mod uds_python;
mod visionctl;
