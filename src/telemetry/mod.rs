//! Telemetry: logs and OTLP traces ([`otel`]), Prometheus metrics
//! ([`metrics`]) and the `/metrics`, `/healthz`, `/readyz` endpoint ([`http`]).

pub mod http;
pub mod metrics;
pub mod otel;
pub mod page;

pub use metrics::Metrics;
