//! Shared by the `uds_*` integration tests: a tiny `ModelRuntime` service and
//! tonic servers on Unix sockets, with and without `uds::listener` + shim.
// Each test crate uses a different subset.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use vision_node_daemon::proto::vision::v1::model_runtime_server::{
    ModelRuntime, ModelRuntimeServer,
};
use vision_node_daemon::proto::vision::v1::{
    ListLoadedRequest, ListLoadedResponse, LoadModelRequest, LoadModelResponse, LoadedModel,
    UnloadModelRequest, UnloadModelResponse,
};
use vision_node_daemon::uds;

pub const MODEL: &str = "yolo-v8n";

/// ListLoaded answers one fixed model; its `endpoint` reports the caller's
/// uid as the handler sees it through `UdsConnectInfo`.
pub struct TestRuntime;

#[tonic::async_trait]
impl ModelRuntime for TestRuntime {
    async fn load_model(
        &self,
        _: Request<LoadModelRequest>,
    ) -> Result<Response<LoadModelResponse>, Status> {
        Err(Status::unimplemented("test runtime"))
    }

    async fn unload_model(
        &self,
        _: Request<UnloadModelRequest>,
    ) -> Result<Response<UnloadModelResponse>, Status> {
        Err(Status::unimplemented("test runtime"))
    }

    async fn list_loaded(
        &self,
        req: Request<ListLoadedRequest>,
    ) -> Result<Response<ListLoadedResponse>, Status> {
        let peer = req
            .extensions()
            .get::<UdsConnectInfo>()
            .and_then(|info| info.peer_cred)
            .map_or_else(
                || "no peer credentials".to_owned(),
                |c| format!("uid={}", c.uid()),
            );
        Ok(Response::new(ListLoadedResponse {
            models: vec![LoadedModel {
                model: MODEL.to_owned(),
                gpu_uuid: "GPU-00000000-test".to_owned(),
                size_mib: 6,
                endpoint: peer,
                runtime_model: String::new(),
            }],
        }))
    }
}

/// A running tonic server; [`Served::stop`] shuts it down gracefully.
pub struct Served {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Served {
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("server task").expect("server");
    }
}

/// The production path: `uds::UdsListener` (socket accepting once this
/// returns) and the authority shim.
pub async fn serve_shimmed(path: &Path) -> Served {
    let listener = uds::UdsListener::bind(path, uds::TASK_SOCKET_MODE)
        .await
        .expect("bind");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(
        Server::builder()
            .add_service(ModelRuntimeServer::new(TestRuntime))
            .serve_with_incoming_shutdown(listener.incoming(), async {
                let _ = rx.await;
            }),
    );
    Served { shutdown: tx, task }
}

/// The control: plain tonic on a Unix socket, as CRATE_NOTES §1 shows it.
pub async fn serve_plain(path: &Path) -> Served {
    let listener = tokio::net::UnixListener::bind(path).expect("bind");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(
        Server::builder()
            .add_service(ModelRuntimeServer::new(TestRuntime))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
                let _ = rx.await;
            }),
    );
    Served { shutdown: tx, task }
}

/// Our uid, as the owner of a file we created.
pub fn own_uid(created_by_us: &Path) -> u32 {
    std::fs::metadata(created_by_us).expect("stat").uid()
}
