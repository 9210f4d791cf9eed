//! The model runtime SPI: the daemon drives a real gRPC `ModelRuntime` peer,
//! started in the test on a real Unix socket.

use std::sync::{Arc, Mutex};

use crate::common::*;
use pb::model_runtime_server::{ModelRuntime, ModelRuntimeServer};
use pb::watch_event::Event as Body;
use tokio::sync::{Semaphore, mpsc};
use tonic::{Code, Request, Response, Status};
use vision_node_daemon::config::{Config, RuntimeKind};
use vision_node_daemon::proto::vision::v1 as pb;
use vision_node_daemon::uds;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Load(String, String),
    Unload(String, String),
    List,
}

/// A model server that records calls, fails loads of models named
/// `broken*`, never answers loads of `stuck*`, and answers loads of `gated*`
/// when the test opens the gate.
#[derive(Clone)]
struct FakeRuntime {
    calls: mpsc::UnboundedSender<Call>,
    loaded: Arc<Mutex<Vec<pb::LoadedModel>>>,
    endpoint: String,
    gate: Arc<Semaphore>,
}

#[tonic::async_trait]
impl ModelRuntime for FakeRuntime {
    async fn load_model(
        &self,
        r: Request<pb::LoadModelRequest>,
    ) -> Result<Response<pb::LoadModelResponse>, Status> {
        let r = r.into_inner();
        let _ = self
            .calls
            .send(Call::Load(r.model.clone(), r.gpu_uuid.clone()));
        if r.model.starts_with("broken") {
            return Err(Status::internal("CUDA error: out of memory"));
        }
        if r.model.starts_with("stuck") {
            // A model server that never answers this load.
            std::future::pending::<()>().await;
        }
        if r.model.starts_with("gated") {
            self.gate.acquire().await.expect("gate open").forget();
        }
        self.loaded.lock().unwrap().push(pb::LoadedModel {
            model: r.model,
            gpu_uuid: r.gpu_uuid,
            size_mib: r.weights_mib,
            endpoint: self.endpoint.clone(),
            runtime_model: String::new(),
        });
        Ok(Response::new(pb::LoadModelResponse {
            endpoint: self.endpoint.clone(),
            size_mib: 0,
            runtime_model: String::new(),
        }))
    }

    async fn unload_model(
        &self,
        r: Request<pb::UnloadModelRequest>,
    ) -> Result<Response<pb::UnloadModelResponse>, Status> {
        let r = r.into_inner();
        let _ = self
            .calls
            .send(Call::Unload(r.model.clone(), r.gpu_uuid.clone()));
        self.loaded
            .lock()
            .unwrap()
            .retain(|m| !(m.model == r.model && m.gpu_uuid == r.gpu_uuid));
        Ok(Response::new(pb::UnloadModelResponse {}))
    }

    async fn list_loaded(
        &self,
        _: Request<pb::ListLoadedRequest>,
    ) -> Result<Response<pb::ListLoadedResponse>, Status> {
        let _ = self.calls.send(Call::List);
        Ok(Response::new(pb::ListLoadedResponse {
            models: self.loaded.lock().unwrap().clone(),
        }))
    }
}

struct Peer {
    calls: mpsc::UnboundedReceiver<Call>,
    /// One permit answers one `gated*` load.
    gate: Arc<Semaphore>,
    loaded: Arc<Mutex<Vec<pb::LoadedModel>>>,
    endpoint: String,
    _dir: tempfile::TempDir,
}

async fn serve_runtime(preloaded: Vec<(&str, usize)>) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runtime.sock");
    let endpoint = format!("unix://{}", path.display());
    let (tx, rx) = mpsc::unbounded_channel();
    let uuids = dev_gpu_uuids();
    let loaded = Arc::new(Mutex::new(
        preloaded
            .into_iter()
            .map(|(m, g)| pb::LoadedModel {
                model: m.into(),
                gpu_uuid: uuids[g].clone(),
                size_mib: 1,
                endpoint: endpoint.clone(),
                runtime_model: String::new(),
            })
            .collect(),
    ));
    let gate = Arc::new(Semaphore::new(0));
    let svc = FakeRuntime {
        calls: tx,
        loaded: Arc::clone(&loaded),
        endpoint: endpoint.clone(),
        gate: Arc::clone(&gate),
    };
    let listener = uds::UdsListener::bind(&path, 0o600).await.unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ModelRuntimeServer::new(svc))
            .serve_with_incoming(listener.incoming())
            .await
            .unwrap();
    });
    Peer {
        calls: rx,
        gate,
        loaded,
        endpoint,
        _dir: dir,
    }
}

/// The simulated dev GPUs' UUIDs (stable for name + index).
fn dev_gpu_uuids() -> Vec<String> {
    (0..2)
        .map(|i| vision_node_daemon::gpu::simulated_uuid("NVIDIA L4 (simulated)", i))
        .collect()
}

fn grpc_config(endpoint: &str) -> Config {
    let mut c = fast_dev_config();
    c.runtime.kind = RuntimeKind::Grpc {
        endpoint: endpoint.into(),
    };
    c.models.push(model("broken-model", 100, 100, 1));
    c.models.push(model("stuck-model", 100, 100, 1));
    c.models.push(model("gated-model", 100, 100, 8));
    c
}

/// The next call, ListLoaded included.
async fn next_any_call(peer: &mut Peer) -> Call {
    tokio::time::timeout(std::time::Duration::from_secs(10), peer.calls.recv())
        .await
        .expect("a runtime call within 10 s")
        .expect("runtime alive")
}

/// The next load or unload: ListLoaded is also the daemon's reachability
/// check and reconcile, so it comes whenever they are due.
async fn next_call(peer: &mut Peer) -> Call {
    loop {
        match next_any_call(peer).await {
            Call::List => continue,
            call => return call,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_admission_loads_through_the_runtime_and_the_lease_names_its_endpoint() {
    let mut peer = serve_runtime(vec![]).await;
    let d = start(grpc_config(&peer.endpoint)).await;
    assert_eq!(
        next_any_call(&mut peer).await,
        Call::List,
        "ListLoaded at start"
    );
    let mut c = d.task().await;
    let lease = lease_of(&mut c, admit(&d.token, "clip-vit-b32")).await;
    assert_eq!(
        next_call(&mut peer).await,
        Call::Load("clip-vit-b32".into(), lease.gpu_uuid.clone())
    );
    assert_eq!(lease.runtime_endpoint, peer.endpoint);
    assert!(!lease.warm);
    d.daemon.shutdown().await;
    assert_eq!(
        next_call(&mut peer).await,
        Call::Unload("clip-vit-b32".into(), lease.gpu_uuid),
        "shutdown unloads through the runtime"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_load_fails_its_admission_rolls_back_and_unloads() {
    let mut peer = serve_runtime(vec![]).await;
    let d = start(grpc_config(&peer.endpoint)).await;
    assert_eq!(next_any_call(&mut peer).await, Call::List);
    let mut c = d.task().await;
    let e = c.admit(admit(&d.token, "broken-model")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("CUDA error: out of memory"),
        "{}",
        e.message()
    );
    let Call::Load(_, gpu) = next_call(&mut peer).await else {
        panic!("expected the load")
    };
    assert_eq!(
        next_call(&mut peer).await,
        Call::Unload("broken-model".into(), gpu),
        "a failed load is followed by an unload"
    );
    let status = d
        .admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        status
            .gpus
            .iter()
            .all(|g| g.residents.is_empty() && g.weights_mib == 0 && g.working_mib == 0)
    );
    assert_eq!(status.counters.unwrap().loads_failed, 1);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn residency_is_rebuilt_from_list_loaded_at_start() {
    let mut peer = serve_runtime(vec![("sd3b", 1)]).await;
    let d = start(grpc_config(&peer.endpoint)).await;
    assert_eq!(next_any_call(&mut peer).await, Call::List);
    let mut c = d.task().await;
    let lease = lease_of(&mut c, admit(&d.token, "sd3b")).await;
    assert!(lease.warm, "the copy the runtime already held serves warm");
    assert_eq!(lease.gpu_uuid, dev_gpu_uuids()[1]);
    while let Ok(call) = peer.calls.try_recv() {
        assert_eq!(call, Call::List, "no load was needed");
    }
    assert_eq!(peer.loaded.lock().unwrap().len(), 1);
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_runtime_fails_admissions_clearly_and_the_daemon_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("unix://{}", dir.path().join("nobody.sock").display());
    let d = start(grpc_config(&endpoint)).await;
    let mut c = d.task().await;
    let e = c.admit(admit(&d.token, "yolo-v8n")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("unreachable") || e.message().contains("load"),
        "{}",
        e.message()
    );
    let status = c
        .status(pb::StatusRequest {
            token: d.token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node, "dev-node");
    d.daemon.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_that_outlives_the_load_timeout_fails_and_is_unloaded() {
    let mut peer = serve_runtime(vec![]).await;
    let mut cfg = grpc_config(&peer.endpoint);
    cfg.runtime.load_timeout = std::time::Duration::from_millis(200);
    let d = start(cfg).await;
    assert_eq!(next_any_call(&mut peer).await, Call::List);
    let mut c = d.task().await;
    let e = c.admit(admit(&d.token, "stuck-model")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("timed out"), "{}", e.message());
    let Call::Load(_, gpu) = next_call(&mut peer).await else {
        panic!("expected the load")
    };
    assert_eq!(
        next_call(&mut peer).await,
        Call::Unload("stuck-model".into(), gpu)
    );
    let status = d
        .admin()
        .await
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(status.gpus.iter().all(|g| g.residents.is_empty()));
    d.daemon.shutdown().await;
}

/// Callers killed while they wait on a load (their connections dropped
/// mid-call): they leave the load, their working memory and slots come back
/// at once, and when the load ends nobody is granted a lease for them; the
/// copy is idle and serves the next caller warm.
#[tokio::test(flavor = "multi_thread")]
async fn callers_killed_while_their_load_runs_leave_nothing_behind() {
    const CALLERS: usize = 8;
    let mut peer = serve_runtime(vec![]).await;
    let d = start(grpc_config(&peer.endpoint)).await;
    let token = d.allocate(CALLERS as u32);
    let mut watch = d.admin_watch().await;
    let mut callers = d.waiting_callers(&token, "gated-model", CALLERS).await;
    let Call::Load(model, _) = next_call(&mut peer).await else {
        panic!("expected the load")
    };
    assert_eq!(model, "gated-model");
    next_matching(
        &mut watch,
        |b| matches!(b, Body::Queue(q) if q.waiting_on_load as usize == CALLERS),
    )
    .await;
    callers.abort_all();
    while callers.join_next().await.is_some() {}
    next_matching(
        &mut watch,
        |b| matches!(b, Body::Queue(q) if q.waiting_on_load == 0 && q.queued == 0),
    )
    .await;
    let status = admin_status(&d).await;
    assert!(
        status.gpus.iter().all(|g| g.working_mib == 0),
        "their working memory is back while the load runs: {:?}",
        status.gpus
    );
    assert_eq!(
        status.counters.unwrap().outcomes["cancelled"],
        CALLERS as u64
    );

    peer.gate.add_permits(1);
    next_matching(
        &mut watch,
        |b| matches!(b, Body::ModelLoaded(m) if m.model == "gated-model"),
    )
    .await;
    let status = admin_status(&d).await;
    assert!(status.leases.is_empty(), "no lease for a dead caller");
    let pins: Vec<u32> = status
        .gpus
        .iter()
        .flat_map(|g| g.residents.iter().map(|r| r.pins))
        .collect();
    assert_eq!(pins, [0], "one idle copy");
    let mut c = d.task().await;
    let next = lease_of(&mut c, admit(&token, "gated-model")).await;
    assert!(next.warm, "the copy they asked for serves the next caller");
    d.daemon.shutdown().await;
}
