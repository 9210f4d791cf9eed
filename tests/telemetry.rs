//! OTLP traces end to end: an in-test collector (a real TraceService over
//! gRPC) receives the daemon's spans, with the resource and the parent link
//! from a client-supplied `traceparent`. One test: it installs the process's
//! global tracing subscriber.

mod common;
mod kubelet_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use kubelet_support::{DEADLINE, FakeKubelet};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use vision_node_daemon::config::TelemetryConfig;
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::telemetry;

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(&kv.value))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_collector_joined_to_the_callers_trace() {
    // Only the config names the endpoint; the OTEL_* variables would win.
    for k in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_SDK_DISABLED",
    ] {
        assert!(
            std::env::var_os(k).is_none(),
            "{k} is set in the test environment"
        );
    }
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    let tracing = telemetry::otel::init(
        &TelemetryConfig {
            otlp_endpoint: Some(format!("http://{addr}")),
        },
        "dev-node",
    )
    .expect("telemetry starts");
    assert!(tracing.exporting());

    let mut cfg = fast_dev_config();
    cfg.admission.lease_ttl = Duration::from_millis(300);
    let d = start(cfg).await;
    let kubelet = FakeKubelet::start(&d.dir.path().join("device-plugins")).await;

    // A pod's own trace: the admit span must become a child of this span.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut req = tonic::Request::new(admit(&d.token, "yolo-v8n"));
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    let mut c = d.task().await;
    let mut watch = c
        .watch(pb::WatchRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let lease = c.admit(req).await.unwrap().into_inner().lease.unwrap();
    assert!(!lease.warm);
    // Let it expire (lease.expire span), then allocate through kubelet (deviceplugin.allocate).
    next_matching(&mut watch, |b| {
        matches!(b, pb::watch_event::Event::LeaseExpired(_))
    })
    .await;
    let slot = kubelet.devices("vision.ai/slot", DEADLINE).await[0]
        .id
        .clone();
    kubelet.allocate("vision.ai/slot", &[&slot]).await.unwrap();

    d.daemon.shutdown().await;
    tracing.shutdown().await; // flushes the batch

    let exports = collector.0.lock().unwrap().clone();
    let resource_spans: Vec<_> = exports
        .iter()
        .flat_map(|e| e.resource_spans.iter())
        .collect();
    assert!(!resource_spans.is_empty(), "the collector received spans");
    let res = &resource_spans[0]
        .resource
        .as_ref()
        .expect("a resource")
        .attributes;
    assert_eq!(
        attr(res, "service.name").as_deref(),
        Some("vision-node-daemon")
    );
    assert_eq!(attr(res, "k8s.node.name").as_deref(), Some("dev-node"));
    assert_eq!(
        attr(res, "service.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert!(attr(res, "host.name").is_some_and(|h| !h.is_empty()));

    let spans: Vec<&Span> = resource_spans
        .iter()
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter())
        .collect();
    let named = |n: &'static str| spans.iter().copied().filter(move |s| s.name == n);
    let admit = named("admit").next().expect("an admit span");
    assert_eq!(hex(&admit.trace_id), trace_id, "joined the caller's trace");
    assert_eq!(
        hex(&admit.parent_span_id),
        parent_id,
        "child of the caller's span"
    );
    assert_eq!(
        attr(&admit.attributes, "model").as_deref(),
        Some("yolo-v8n")
    );
    assert_eq!(
        attr(&admit.attributes, "outcome").as_deref(),
        Some("granted_cold")
    );
    assert_eq!(attr(&admit.attributes, "warm").as_deref(), Some("false"));
    assert_eq!(
        attr(&admit.attributes, "gpu.uuid"),
        Some(lease.gpu_uuid.clone())
    );
    assert!(attr(&admit.attributes, "queue_wait_ms").is_some());

    let load = named("model.load").next().expect("a model.load span");
    assert_eq!(attr(&load.attributes, "model").as_deref(), Some("yolo-v8n"));
    assert_eq!(
        attr(&load.attributes, "runtime").as_deref(),
        Some("bookkeeping")
    );
    assert_eq!(attr(&load.attributes, "weights_mib").as_deref(), Some("12"));
    assert_eq!(attr(&load.attributes, "outcome").as_deref(), Some("loaded"));
    assert_eq!(
        hex(&load.trace_id),
        trace_id,
        "the load runs within the admission's trace"
    );

    let expire = named("lease.expire").next().expect("a lease.expire span");
    assert_eq!(
        attr(&expire.attributes, "lease"),
        Some(lease.lease_id.to_string())
    );
    let alloc = named("deviceplugin.allocate")
        .next()
        .expect("a deviceplugin.allocate span");
    assert_eq!(
        attr(&alloc.attributes, "resource").as_deref(),
        Some("vision.ai/slot")
    );
    assert_eq!(
        attr(&alloc.attributes, "outcome").as_deref(),
        Some("allocated")
    );
    assert!(
        named("model.unload").next().is_some(),
        "shutdown unloads (bookkeeping) are traced"
    );
}
