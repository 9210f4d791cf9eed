//! For the cluster publisher's tests: a fake Kubernetes API at the HTTP
//! layer (`tower_test::mock::pair` behind a real `kube::Client`) that
//! records every request and answers like the API server, and a real
//! `node::Node` over a real engine with made-up GPUs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vision_node_daemon::cluster::residency::{self, REFRESH};
use vision_node_daemon::cluster::{self, Settings, Stats};
use vision_node_daemon::config::{EvictionPolicy, ModelSpec};
use vision_node_daemon::engine::{
    self, AdmitRequest, AllocKind, Engine, GpuId, GpuSpec, LeaseId, Wait,
};
use vision_node_daemon::gpu::Health;
use vision_node_daemon::node::{Node, NodeInfo, PreloadFailure, Registration};
use vision_node_daemon::runtime::{self, LoadRequest, Loaded, LoadedCopy, ModelRuntime};

pub const NODE: &str = "gpu-node-1";
pub const DOMAIN: &str = "vision.ai";
pub const INTERVAL: Duration = Duration::from_secs(10);
pub const SLOTS_PER_GPU: u32 = 4;
pub const NODE_PATH: &str = "/api/v1/nodes/gpu-node-1";
pub const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// Which kind of write a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Labels,
    Annotations,
    Event,
    Other,
}

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: http::Method,
    pub path: String,
    /// In wire order.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Value,
    /// When it arrived (tokio time: exact under `pause`).
    pub at: Instant,
}

impl Recorded {
    pub fn kind(&self) -> Kind {
        let manager = self
            .query
            .iter()
            .find(|(k, _)| k == "fieldManager")
            .map(|(_, v)| v.as_str());
        match (self.path.as_str(), manager) {
            (NODE_PATH, Some(cluster::LABEL_MANAGER)) => Kind::Labels,
            (NODE_PATH, Some(cluster::ANNOTATION_MANAGER)) => Kind::Annotations,
            (p, _) if p.starts_with(EVENTS_PATH) => Kind::Event,
            _ => Kind::Other,
        }
    }

    /// Checks that this is a forced server-side apply of our Node under
    /// `manager` that sends exactly `field` = `want` and nothing else. For
    /// annotations, `want` leaves out the stamp (`<domain>/residency-time`,
    /// wall-clock time): it is checked to be RFC 3339 instead.
    pub fn assert_apply(&self, manager: &str, field: &str, want: &BTreeMap<String, String>) {
        assert_eq!(self.method, http::Method::PATCH, "{self:?}");
        assert_eq!(self.path, NODE_PATH);
        let mut query = self.query.clone();
        query.sort();
        assert_eq!(
            query,
            [
                ("fieldManager".to_owned(), manager.to_owned()),
                ("force".to_owned(), "true".to_owned())
            ]
        );
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        let mut body = self.body.clone();
        if field == "annotations" {
            let time = format!("{DOMAIN}/residency-time");
            let stamp = body["metadata"][field]
                .as_object_mut()
                .and_then(|m| m.remove(&time));
            let stamp = stamp.as_ref().and_then(Value::as_str).unwrap_or("missing");
            assert!(
                stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
                "{time}: {stamp}"
            );
        }
        assert_eq!(
            body,
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, field: want}})
        );
    }

    pub fn labels(&self) -> BTreeMap<String, String> {
        self.string_map("labels")
    }

    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.string_map("annotations")
    }

    fn string_map(&self, field: &str) -> BTreeMap<String, String> {
        serde_json::from_value(self.body["metadata"][field].clone()).expect("a string map")
    }

    /// The residency annotation, parsed.
    pub fn residency(&self) -> Value {
        serde_json::from_str(&self.annotations()[&format!("{DOMAIN}/residency")])
            .expect("residency is JSON")
    }
}

/// The test's side of the fake API.
pub struct FakeApi {
    requests: mpsc::UnboundedReceiver<Recorded>,
    failures: Arc<Mutex<VecDeque<Kind>>>,
}

/// A client whose requests go to the returned fake. The fake answers every
/// request at once: a forced apply with the Node it would produce, an Event
/// create with the Event; scripted failures with a 500 Status.
pub fn fake_api() -> (kube::Client, FakeApi) {
    let (svc, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<kube::client::Body>,
    >();
    let (tx, requests) = mpsc::unbounded_channel();
    let failures: Arc<Mutex<VecDeque<Kind>>> = Arc::default();
    let script = Arc::clone(&failures);
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let at = Instant::now();
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON request body")
            };
            let recorded = Recorded {
                method: parts.method.clone(),
                path: parts.uri.path().to_owned(),
                query: parts
                    .uri
                    .query()
                    .map(|q| {
                        q.split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body,
                at,
            };
            let fail = {
                let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
                let hit = script.front() == Some(&recorded.kind());
                if hit {
                    script.pop_front();
                }
                hit
            };
            let response = if fail {
                respond(
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}),
                )
            } else {
                respond(200, answer(&recorded))
            };
            send.send_response(response);
            if tx.send(recorded).is_err() {
                return;
            }
        }
    });
    (
        kube::Client::new(svc, "default"),
        FakeApi { requests, failures },
    )
}

fn respond(status: u16, body: Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(
            serde_json::to_vec(&body).expect("JSON"),
        ))
        .expect("a response")
}

/// What the API server would answer: the applied Node, the created Event.
fn answer(req: &Recorded) -> Value {
    match req.kind() {
        Kind::Labels | Kind::Annotations => {
            let mut node = req.body.clone();
            node["metadata"]["uid"] = json!("8d2f0a3c-1111-2222-3333-444455556666");
            node["metadata"]["resourceVersion"] = json!("42");
            node
        }
        _ => req.body.clone(),
    }
}

impl FakeApi {
    /// The next request; fails the test if none comes within 10 minutes
    /// (of paused time: the wait lets time run to the publisher's timers).
    pub async fn next(&mut self) -> Recorded {
        tokio::time::timeout(Duration::from_secs(600), self.requests.recv())
            .await
            .expect("a request within 10 minutes")
            .expect("the fake API is running")
    }

    /// Asserts that no request arrives for `d` (of paused time).
    pub async fn assert_quiet(&mut self, d: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(d, self.requests.recv()).await {
            panic!("expected no request for {d:?}, got {r:?}");
        }
    }

    /// Asserts that for `d` (of paused time) nothing arrives but re-stamps
    /// of `last`'s annotations, one every [`REFRESH`] after it; returns how
    /// many. (The stamps themselves are wall-clock time, which paused tokio
    /// time does not move, so only the state is compared.)
    pub async fn assert_only_restamps(&mut self, d: Duration, last: &Recorded) -> u64 {
        let end = Instant::now() + d;
        let mut at = last.at;
        let mut count = 0;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(r) = tokio::time::timeout(left, self.requests.recv()).await else {
                return count;
            };
            let r = r.expect("the fake API is running");
            assert_eq!(
                r.kind(),
                Kind::Annotations,
                "only re-stamps expected: {r:?}"
            );
            assert_eq!(r.at, at + REFRESH, "re-stamped every REFRESH");
            assert!(
                residency::same_state(&r.annotations(), &last.annotations(), DOMAIN),
                "a re-stamp of the same state: {:?} vs {:?}",
                r.annotations(),
                last.annotations()
            );
            at = r.at;
            count += 1;
        }
    }

    /// Makes the next request of `kind` fail with a 500 (queued in order).
    pub fn fail_next(&self, kind: Kind) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(kind);
    }
}

/// A catalog of two models.
pub fn models() -> Vec<ModelSpec> {
    let m = |name: &str, weights_mib, working_mib| ModelSpec {
        name: name.into(),
        weights_mib,
        working_mib,
        max_concurrency: 4,
        load_ms: 100,
        task_ms: 10,
        task_types: vec![],
    };
    vec![m("yolo", 100, 500), m("clip", 600, 600)]
}

pub fn gpu_uuid(i: usize) -> String {
    format!("GPU-0000000{i}-aaaa-bbbb-cccc-ddddeeeeffff")
}

/// A model runtime whose loads finish at once, except that loads of
/// models named in `failing` fail (as a model server out of memory would).
pub struct TestRuntime {
    pub failing: Vec<String>,
}

#[tonic::async_trait]
impl ModelRuntime for TestRuntime {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn load(&self, req: LoadRequest) -> Result<Loaded, runtime::Error> {
        if self.failing.contains(&req.model) {
            return Err(runtime::Error::Refused("CUDA error: out of memory".into()));
        }
        Ok(Loaded::default())
    }

    async fn unload(
        &self,
        _model: &str,
        _gpu_uuid: &str,
        _reason: runtime::UnloadReason,
    ) -> Result<(), runtime::Error> {
        Ok(())
    }

    async fn list_loaded(&self) -> Result<Vec<LoadedCopy>, runtime::Error> {
        Ok(Vec::new())
    }
}

/// A real node over GPUs `(name, total_mib)` (no reserve), with its runtime
/// workers running, called as the gRPC adapter and the device plugins call
/// it: every change goes through the same code, and emits the same node
/// events, as in the daemon.
pub struct TestNode {
    pub node: Arc<Node>,
}

impl TestNode {
    pub fn new(gpus: &[(&str, u64)]) -> TestNode {
        TestNode::with_failing_models(gpus, &[])
    }

    pub fn with_failing_models(gpus: &[(&str, u64)], failing: &[&str]) -> TestNode {
        let specs = gpus
            .iter()
            .enumerate()
            .map(|(i, (name, total_mib))| GpuSpec {
                uuid: gpu_uuid(i),
                name: (*name).into(),
                total_mib: *total_mib,
            })
            .collect();
        let settings = engine::Settings {
            reserve_mib: 0,
            queue_limit: 16,
            default_timeout: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(3600),
            policy: EvictionPolicy::Lru,
            ..engine::Settings::default()
        };
        let engine = Engine::new(specs, models(), settings).expect("an engine");
        let info = NodeInfo {
            node_name: NODE.into(),
            gpu_backend: "simulated".into(),
            load_timeout: Duration::from_secs(60),
            admin_socket: String::new(),
        };
        let runtime = Arc::new(TestRuntime {
            failing: failing.iter().map(|m| (*m).to_owned()).collect(),
        });
        let (node, workers) = Node::new(engine, info, runtime);
        // Ended by the node's shutdown.
        drop(workers.spawn(&node));
        TestNode { node }
    }

    /// Starts publishing through `client`.
    pub fn publish_to(&self, client: kube::Client) -> (tokio::task::JoinHandle<()>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let settings = Settings {
            node_name: NODE.into(),
            domain: DOMAIN.into(),
            annotation_interval: INTERVAL,
            slots_per_gpu: SLOTS_PER_GPU,
        };
        let handle = cluster::spawn(Arc::clone(&self.node), client, settings, Arc::clone(&stats));
        (handle, stats)
    }

    /// `visionctl preload`: loads `model` on `gpu`; Ok once it is ready.
    pub async fn preload(&self, model: &str, gpu: usize) -> Result<(), PreloadFailure> {
        let gpu = GpuId(gpu as u32);
        self.node
            .preload(model, Some(gpu), &tracing::Span::none())
            .await
            .map(|_| ())
    }

    /// A pod's slot allocation (as Allocate makes it) and one warm
    /// admission on it; returns the token and the lease id.
    pub async fn admit_warm(&self, model: &str) -> (String, u64) {
        let token = self
            .node
            .allocate(AllocKind::Slots(1))
            .expect("an allocation");
        let req = AdmitRequest {
            token: token.clone(),
            model: model.into(),
            task_type: None,
            priority: 0,
            wait: Wait::NoQueue,
        };
        let lease = self
            .node
            .admit(&req, &tracing::Span::none())
            .await
            .expect("admitted");
        assert!(lease.warm, "a warm admission");
        (token, lease.id.0)
    }

    pub async fn release(&self, token: &str, lease_id: u64) {
        self.node
            .release(LeaseId(lease_id), Some(token))
            .expect("released");
    }

    /// A GPU fault or recovery, as the GPU reconciler applies it.
    pub fn set_health(&self, gpu: usize, healthy: bool, reason: &str) {
        let health = if healthy {
            Health::Healthy
        } else {
            Health::Unhealthy(reason.into())
        };
        let changed = self.node.set_gpu_health(&gpu_uuid(gpu), &health);
        assert!(changed, "health changed");
    }

    /// A device plugin's registration with kubelet, as the plugin reports it.
    pub fn registered(&self, resource: &str, registered: bool) {
        self.node.kubelet_registration(Registration {
            resource: resource.into(),
            endpoint: format!("{resource}.sock"),
            registered,
        });
    }

    pub fn free_mib(&self, gpu: usize) -> u64 {
        self.node.engine_status().gpus[gpu].free_mib
    }

    /// Shuts the node down and waits for the publisher to end.
    pub async fn stop(&self, publisher: tokio::task::JoinHandle<()>) {
        self.node.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(10), publisher)
            .await
            .expect("the publisher ends on shutdown")
            .expect("the publisher did not panic");
    }
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
