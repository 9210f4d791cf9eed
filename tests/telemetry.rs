//! OTLP traces end to end: an in-test collector (a real TraceService over
//! gRPC) receives the daemon's spans, with the resource and the parent link
//! from a client-supplied `traceparent`, and each model load as the child
//! of the admission or preload that caused it — also when another call
//! started it. One test: it installs the process's global tracing subscriber.

// The tests' shared helpers, of which this test uses a part.
#[allow(dead_code, unused_imports)]
#[path = "it/common/mod.rs"]
mod common;
#[allow(dead_code, unused_imports)]
#[path = "it/kubelet_support/mod.rs"]
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

/// A request carrying the W3C trace context of a caller's span.
fn traced<T>(msg: T, trace_id: &str, parent_id: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    req
}

/// A node that holds one of `a` and `b` at a time: `b` queues behind a
/// lease on `a`, and its load is started by the Release of that lease.
async fn queued_load(queued_trace: &str, queued_parent: &str) {
    let d = start(small_config(
        1000,
        vec![model("a", 600, 300, 1), model("b", 600, 300, 1)],
    ))
    .await;
    let mut c = d.task().await;
    let held = lease_of(&mut c, admit(&d.token, "a")).await;
    let mut watch = d
        .admin()
        .await
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut waiting_client = d.task().await;
    let req = traced(
        with_timeout(admit(&d.token, "b"), 60_000),
        queued_trace,
        queued_parent,
    );
    let waiting = tokio::spawn(async move { waiting_client.admit(req).await });
    next_matching(
        &mut watch,
        |b| matches!(b, pb::watch_event::Event::Queue(q) if q.queued == 1),
    )
    .await;
    release(&mut c, &d.token, held.lease_id).await;
    let lease = waiting.await.unwrap().unwrap().into_inner().lease.unwrap();
    assert_eq!(lease.model, "b");
    d.daemon.shutdown().await;
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

    // An operator's preload: its load is the preload's child.
    let preload_trace = "0af7651916cd43dd8448eb211c80319c";
    let preload_parent = "b7ad6b7169203331";
    d.admin()
        .await
        .preload(traced(
            pb::PreloadRequest {
                model: "clip-vit-b32".into(),
                gpu: String::new(),
            },
            preload_trace,
            preload_parent,
        ))
        .await
        .unwrap();
    d.daemon.shutdown().await;

    // A queued admission whose load another call (a Release) starts.
    let queued_trace = "5b8efff798038103d269b633813fc60c";
    let queued_parent = "eee19b7ec3c1b174";
    queued_load(queued_trace, queued_parent).await;

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

    let load_of = |model: &str| {
        named("model.load")
            .find(|s| attr(&s.attributes, "model").as_deref() == Some(model))
            .unwrap_or_else(|| panic!("a model.load span for {model}"))
    };
    let load = load_of("yolo-v8n");
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
    assert_eq!(
        load.parent_span_id, admit.span_id,
        "the load is the child of the admission that caused it"
    );

    let preload = named("preload").next().expect("a preload span");
    assert_eq!(hex(&preload.trace_id), preload_trace);
    assert_eq!(hex(&preload.parent_span_id), preload_parent);
    assert_eq!(
        attr(&preload.attributes, "outcome").as_deref(),
        Some("loaded")
    );
    let preloaded = load_of("clip-vit-b32");
    assert_eq!(hex(&preloaded.trace_id), preload_trace);
    assert_eq!(
        preloaded.parent_span_id, preload.span_id,
        "a preload's load is the preload's child"
    );

    let queued = named("admit")
        .find(|s| hex(&s.trace_id) == queued_trace)
        .expect("the queued admission's span");
    let started_by_release = load_of("b");
    assert_eq!(
        hex(&started_by_release.trace_id),
        queued_trace,
        "a load started by another call runs in the trace of the admission it serves"
    );
    assert_eq!(started_by_release.parent_span_id, queued.span_id);

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
