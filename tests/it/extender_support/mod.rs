//! For the extender's tests: nodes whose annotations come from real engines
//! through the daemon's own annotation function, Kubernetes objects built
//! from k8s-openapi types and encoded the way kube-scheduler sends them, a
//! minimal HTTP/1.1 client over real TCP, and a fake API server (at the
//! HTTP layer, `tower_test::mock::pair`) that serves Node metadata lists
//! and watches.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeStatus, NodeSystemInfo, Pod, PodCondition, PodSpec,
    PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use vision_node_daemon::cluster::residency::node_annotations;
use vision_node_daemon::config::Config;
use vision_node_daemon::engine::{
    AdmitRequest, Effect, Engine, GpuId, GpuSpec, Settings, Time as EngineTime, Wait,
};

pub const DOMAIN: &str = "vision.ai";

/// An engine over GPUs of these sizes with the dev catalog (yolo-v8n,
/// clip-vit-b32, sd3b, sdxl-refiner) and the dev settings (512 MiB reserve).
pub fn engine(gpus_mib: &[u64]) -> Engine {
    let config = Config::dev();
    let gpus = gpus_mib
        .iter()
        .enumerate()
        .map(|(i, &total_mib)| GpuSpec {
            uuid: format!("GPU-{i:08}-test"),
            name: "NVIDIA L4".into(),
            total_mib,
        })
        .collect();
    Engine::new(gpus, config.models.clone(), Settings::from_config(&config)).expect("engine")
}

/// Loads `model` on GPU `gpu` and, when `finish`, completes the load.
pub fn preload(e: &mut Engine, model: &str, gpu: u32, finish: bool) {
    let (_, load) = e
        .preload(model, Some(GpuId(gpu)), EngineTime::ZERO)
        .expect("preload");
    if finish {
        assert!(e.load_finished(load, Ok(()), EngineTime::ZERO));
    }
    e.drain_effects().for_each(drop);
}

/// Admits `n` tasks of `model` for one pod; returns how many were granted
/// at once (the others wait in the node's queue).
pub fn admit(e: &mut Engine, model: &str, n: u32) -> u32 {
    e.allocate_slots("pod", 64, EngineTime::ZERO)
        .expect("slots");
    let mut granted = 0;
    for _ in 0..n {
        let req = AdmitRequest {
            token: "pod".into(),
            model: model.into(),
            task_type: None,
            priority: 0,
            wait: Wait::Default,
        };
        if let Ok(vision_node_daemon::engine::Admission::Granted(_)) =
            e.admit(&req, EngineTime::ZERO)
        {
            granted += 1;
        }
    }
    granted += e
        .drain_effects()
        .filter(|f| matches!(f, Effect::Grant { .. }))
        .count() as u32;
    granted
}

/// The annotations a daemon running `e` publishes, stamped `at`.
pub fn published(e: &Engine, at: SystemTime) -> BTreeMap<String, String> {
    node_annotations(&e.status(), DOMAIN, at)
}

/// A Node as the API server holds it: labels, the daemon's annotations,
/// capacity with `<domain>/slot`, conditions, images.
pub fn node(name: &str, annotations: BTreeMap<String, String>) -> Node {
    let q = |s: &str| Quantity(s.into());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", q("16")),
        ("memory", q("64Gi")),
        ("pods", q("110")),
        ("vision.ai/slot", q("32")),
        ("vision.ai/vram", q("44")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("4711".into()),
            creation_timestamp: Some(Time("2026-11-30T08:00:00Z".parse().expect("time"))),
            labels: Some(
                [
                    ("kubernetes.io/hostname", name),
                    ("vision.ai/present", "true"),
                    ("vision.ai/gpu.product", "NVIDIA-L4"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            ),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(resources.clone()),
            capacity: Some(resources),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("kubelet is posting ready status".into()),
                ..NodeCondition::default()
            }]),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                boot_id: "b".into(),
                container_runtime_version: "containerd://2.0.0".into(),
                kernel_version: "6.1.0".into(),
                kube_proxy_version: String::new(),
                kubelet_version: "v1.33.1".into(),
                machine_id: "m".into(),
                operating_system: "linux".into(),
                os_image: "Debian GNU/Linux 12 (bookworm)".into(),
                system_uuid: "s".into(),
                ..NodeSystemInfo::default()
            }),
            ..NodeStatus::default()
        }),
    }
}

/// A pending pod of the `vision-scheduler` profile asking for one slot,
/// with `<domain>/models` when `models` is given.
pub fn pod(models: Option<&str>) -> Pod {
    let mut limits = BTreeMap::new();
    limits.insert("vision.ai/slot".to_owned(), Quantity("1".into()));
    Pod {
        metadata: ObjectMeta {
            name: Some("render-7f9c".into()),
            namespace: Some("studio".into()),
            uid: Some("0b7c3f52-5f1e-4f55-9d1e-6a4a8c1d2e3f".into()),
            creation_timestamp: Some(Time("2026-12-02T09:59:58Z".parse().expect("time"))),
            annotations: models
                .map(|m| BTreeMap::from([(format!("{DOMAIN}/models"), m.to_owned())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            scheduler_name: Some("vision-scheduler".into()),
            containers: vec![Container {
                name: "render".into(),
                image: Some("ghcr.io/example/render:1".into()),
                resources: Some(ResourceRequirements {
                    limits: Some(limits.clone()),
                    requests: Some(limits),
                    ..ResourceRequirements::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

/// An object as kube-scheduler's Go encoder writes it: objects from its
/// informers carry no TypeMeta, so no `apiVersion` and `kind`.
pub fn go_object<T: serde::Serialize>(obj: &T) -> Value {
    let mut v = serde_json::to_value(obj).expect("JSON");
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// `ExtenderArgs` for `nodeCacheCapable: false`: the whole Nodes in a
/// `v1.NodeList` (Go's empty ListMeta is `{}`), `NodeNames` null.
pub fn stateless_args(pod: &Pod, nodes: &[Node]) -> Value {
    json!({
        "Pod": go_object(pod),
        "Nodes": {"metadata": {}, "items": nodes.iter().map(go_object).collect::<Vec<_>>()},
        "NodeNames": null,
    })
}

/// `ExtenderArgs` for `nodeCacheCapable: true`: names only, `Nodes` null.
pub fn cached_args(pod: &Pod, names: &[&str]) -> Value {
    json!({"Pod": go_object(pod), "Nodes": null, "NodeNames": names})
}

/// One HTTP/1.1 exchange over a fresh TCP connection, as Go's client sends
/// it (`Content-Type: application/json`); returns status and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    // A refused oversize body may be answered before it is all sent.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").expect("chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line]).expect("hex"), 16).expect("hex");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line + 2..line + 2 + size]);
        b = &b[line + 4 + size..];
    }
}

/// A Node's metadata as the API server answers a metadata-only request.
pub fn partial(name: &str, rv: &str, annotations: &BTreeMap<String, String>) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": rv,
                     "labels": {"kubernetes.io/hostname": name}, "annotations": annotations},
    })
}

/// One request the fake API server received.
#[derive(Debug)]
pub struct ApiRequest {
    pub path: String,
    pub query: String,
    pub accept: String,
    pub watch: bool,
}

/// The fake API server: the test answers each list or watch it receives.
pub struct FakeApi {
    requests: mpsc::UnboundedReceiver<(
        ApiRequest,
        tower_test::mock::SendResponse<http::Response<kube::client::Body>>,
    )>,
}

pub fn fake_api() -> (kube::Client, FakeApi) {
    let (svc, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let query = req.uri().query().unwrap_or("").to_owned();
            let r = ApiRequest {
                path: req.uri().path().to_owned(),
                watch: query.split('&').any(|kv| kv == "watch=true"),
                query,
                accept: req
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned(),
            };
            if tx.send((r, send)).is_err() {
                return;
            }
        }
    });
    (kube::Client::new(svc, "default"), FakeApi { requests })
}

impl FakeApi {
    /// The next request and the handle to answer it.
    pub async fn next(
        &mut self,
    ) -> (
        ApiRequest,
        tower_test::mock::SendResponse<http::Response<kube::client::Body>>,
    ) {
        tokio::time::timeout(std::time::Duration::from_secs(30), self.requests.recv())
            .await
            .expect("a request within 30 s")
            .expect("the fake API is running")
    }
}

/// A 200 with a JSON body (a list, or watch events one per line).
pub fn ok(body: Vec<u8>) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(body))
        .expect("a response")
}

/// Watch events, newline-delimited, as the API server streams them.
pub fn events(events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, object) in events {
        out.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON"));
        out.push(b'\n');
    }
    out
}

/// `at` minus `secs`, for stale stamps.
pub fn ago(secs: u64) -> SystemTime {
    SystemTime::now() - std::time::Duration::from_secs(secs)
}

/// The stamp a view of `a` would be read with.
pub fn stamp(a: &BTreeMap<String, String>) -> Timestamp {
    a[&format!("{DOMAIN}/residency-time")]
        .parse()
        .expect("a stamp")
}
