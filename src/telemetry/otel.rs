//! Logs and traces: `tracing` everywhere; OTLP/gRPC export when an endpoint
//! is configured (the standard `OTEL_*` variables first, then the config's
//! `telemetry.otlp_endpoint`), off otherwise.

use opentelemetry::KeyValue;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::TelemetryConfig;

/// The OpenTelemetry scope / default `service.name`.
pub const SERVICE_NAME: &str = "vision-node-daemon";

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Export {
    Off,
    /// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set: the exporter reads it.
    FromEnv,
    /// `telemetry.otlp_endpoint` from the config.
    To(String),
}

/// Decides from the environment and the config. `OTEL_SDK_DISABLED=true`
/// turns export off (the SDK does not implement it itself).
pub(crate) fn export_from(env: &dyn Fn(&str) -> Option<String>, cfg: &TelemetryConfig) -> Export {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Export::Off;
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT") {
        return Export::FromEnv;
    }
    match &cfg.otlp_endpoint {
        Some(e) => Export::To(e.clone()),
        None => Export::Off,
    }
}

/// The tracer provider, to flush on shutdown.
#[derive(Debug)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter. The batch processor blocks on its
    /// export, which needs this runtime's workers: run it off them.
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            match tokio::task::spawn_blocking(move || p.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing traces failed"),
                Err(e) => tracing::warn!(error = %e, "trace flush task failed"),
            }
        }
    }
}

/// Installs the global subscriber: log lines on stderr filtered by
/// `RUST_LOG` (default `info`), and, when exporting, spans of this crate to
/// OTLP (filtered separately, so quieter logs do not drop spans). Must run
/// inside a tokio runtime (the tonic exporter needs its reactor).
pub fn init(cfg: &TelemetryConfig, node_name: &str) -> anyhow::Result<Tracing> {
    let export = export_from(&|k| std::env::var(k).ok(), cfg);
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let (provider, spans) = match &export {
        Export::Off => (None, None),
        Export::FromEnv | Export::To(_) => {
            let provider = provider(&export, node_name)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(SERVICE_NAME))
                .with_filter(EnvFilter::new("vision_node_daemon=info"));
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            (Some(provider), Some(layer))
        }
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()?;
    match &export {
        Export::Off => tracing::info!(
            "trace export off (no OTEL_EXPORTER_OTLP_ENDPOINT, no telemetry.otlp_endpoint)"
        ),
        Export::FromEnv => tracing::info!("exporting traces over OTLP/gRPC to the OTEL_* endpoint"),
        Export::To(e) => tracing::info!(endpoint = %e, "exporting traces over OTLP/gRPC"),
    }
    Ok(Tracing { provider })
}

fn provider(export: &Export, node_name: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Export::To(endpoint) = export {
        // Only when the env says nothing: with_endpoint overrides the env.
        builder = builder.with_endpoint(endpoint.clone());
    }
    let exporter = builder.build()?;
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attribute(KeyValue::new("k8s.node.name", node_name.to_owned()))
        .with_attribute(KeyValue::new("host.name", host_name()));
    let env_names_service = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !env_names_service {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Reads a W3C `traceparent` (and `tracestate`) from gRPC metadata.
pub(crate) struct MetadataExtractor<'a>(pub(crate) &'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The caller's trace context from its gRPC metadata (empty when none).
pub(crate) fn remote_parent(metadata: &tonic::metadata::MetadataMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_wins_over_the_config_and_can_disable_export() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://from-config:4317".into()),
        };
        assert_eq!(
            export_from(&env(&[]), &cfg),
            Export::To("http://from-config:4317".into())
        );
        assert_eq!(
            export_from(
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317")]),
                &cfg
            ),
            Export::FromEnv
        );
        assert_eq!(
            export_from(
                &env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:4317")]),
                &cfg
            ),
            Export::FromEnv
        );
        assert_eq!(
            export_from(&env(&[("OTEL_SDK_DISABLED", "true")]), &cfg),
            Export::Off
        );
        assert_eq!(
            export_from(
                &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
                &TelemetryConfig::default()
            ),
            Export::Off
        );
    }
}
