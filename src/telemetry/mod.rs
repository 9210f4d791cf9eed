//! Telemetry: logs and OTLP traces ([`otel`]), Prometheus metrics
//! (`metrics`) and the `/metrics`, `/healthz`, `/readyz` endpoint (`http`).
//!
//! A leaf of the shell: the node feeds [`Metrics`] and the daemon hands
//! `/metrics` a snapshot source; nothing here knows the node.

pub(crate) mod http;
pub(crate) mod metrics;
pub mod otel;

pub(crate) use metrics::Metrics;
