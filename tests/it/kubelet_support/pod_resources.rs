//! A fake of kubelet's PodResources API (v1) on a real Unix socket: the
//! daemon's only way to learn which pods still hold its devices, since the
//! device plugin API has no Deallocate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use vision_node_daemon::proto::k8s::podresources::v1 as pr;
use vision_node_daemon::uds;

use pr::pod_resources_lister_client::PodResourcesListerClient;
use pr::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};

use super::Served;

/// What `List`, `GetAllocatableResources` and `Get` answer.
struct PodState {
    pods: Mutex<Vec<pr::PodResources>>,
    allocatable: Mutex<Vec<pr::ContainerDevices>>,
    /// Kubelet's `KubeletPodResourcesGet` feature gate (alpha in 1.27, so
    /// off on many clusters).
    get_enabled: Mutex<bool>,
    /// How many `List` calls have been answered, to wait for a poll.
    list_calls: watch::Sender<u64>,
}

/// Kubelet's PodResources server.
pub struct FakePodResources {
    path: PathBuf,
    state: Arc<PodState>,
    /// Serving while held: dropping it stops the server.
    _server: Served,
}

impl FakePodResources {
    /// Serves `PodResourcesLister` on `path`, with no pods, nothing
    /// allocatable and `Get` enabled.
    pub async fn start(path: &Path) -> Self {
        let state = Arc::new(PodState {
            pods: Mutex::new(Vec::new()),
            allocatable: Mutex::new(Vec::new()),
            get_enabled: Mutex::new(true),
            list_calls: watch::Sender::new(0),
        });
        let svc = PodResourcesListerServer::new(Lister {
            state: Arc::clone(&state),
        });
        let server = Served::start(path, Routes::new(svc)).await;
        Self {
            path: path.to_owned(),
            state,
            _server: server,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces what `List` (and `Get`) answer from now on.
    pub fn set_pods(&self, pods: Vec<pr::PodResources>) {
        *self.state.pods.lock().expect("pods lock") = pods;
    }

    /// Replaces the devices `GetAllocatableResources` answers.
    pub fn set_allocatable(&self, devices: Vec<pr::ContainerDevices>) {
        *self.state.allocatable.lock().expect("allocatable lock") = devices;
    }

    /// Behaves like a kubelet without the `KubeletPodResourcesGet` gate.
    pub fn disable_get(&self) {
        *self.state.get_enabled.lock().expect("gate lock") = false;
    }

    /// `List` calls answered so far.
    pub fn list_calls(&self) -> u64 {
        *self.state.list_calls.borrow()
    }

    /// Waits until at least `n` `List` calls have been answered, e.g. to
    /// know that a poll after `set_pods` has seen the new pods.
    pub async fn wait_list_calls(&self, n: u64, timeout: Duration) -> u64 {
        let mut rx = self.state.list_calls.subscribe();
        let seen = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} PodResources List calls within {timeout:?}"))
            .expect("the fake holds the sender");
        *seen
    }

    /// A client for the API, as the daemon would dial it.
    pub async fn client(&self) -> PodResourcesListerClient<Channel> {
        PodResourcesListerClient::new(
            uds::client::connect(&self.path)
                .await
                .expect("the fake PodResources socket"),
        )
    }
}

/// A pod with one container holding `device_ids` of `resource`.
pub fn pod(
    name: &str,
    namespace: &str,
    container: &str,
    resource: &str,
    device_ids: &[&str],
) -> pr::PodResources {
    pr::PodResources {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        containers: vec![pr::ContainerResources {
            name: container.to_owned(),
            devices: vec![pr::ContainerDevices {
                resource_name: resource.to_owned(),
                device_ids: device_ids.iter().map(|s| (*s).to_owned()).collect(),
                topology: None,
            }],
            ..Default::default()
        }],
    }
}

struct Lister {
    state: Arc<PodState>,
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<pr::ListPodResourcesRequest>,
    ) -> Result<Response<pr::ListPodResourcesResponse>, Status> {
        let pod_resources = self.state.pods.lock().expect("pods lock").clone();
        self.state.list_calls.send_modify(|c| *c += 1);
        Ok(Response::new(pr::ListPodResourcesResponse {
            pod_resources,
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<pr::AllocatableResourcesRequest>,
    ) -> Result<Response<pr::AllocatableResourcesResponse>, Status> {
        let devices = self
            .state
            .allocatable
            .lock()
            .expect("allocatable lock")
            .clone();
        Ok(Response::new(pr::AllocatableResourcesResponse {
            devices,
            ..Default::default()
        }))
    }

    /// Kubelet answers both failures with plain Go errors, so the code is
    /// UNKNOWN (not NOT_FOUND); only the message tells them apart.
    async fn get(
        &self,
        req: Request<pr::GetPodResourcesRequest>,
    ) -> Result<Response<pr::GetPodResourcesResponse>, Status> {
        if !*self.state.get_enabled.lock().expect("gate lock") {
            return Err(Status::unknown("PodResources API Get method disabled"));
        }
        let req = req.into_inner();
        let found = self
            .state
            .pods
            .lock()
            .expect("pods lock")
            .iter()
            .find(|p| p.name == req.pod_name && p.namespace == req.pod_namespace)
            .cloned();
        match found {
            Some(pod) => Ok(Response::new(pr::GetPodResourcesResponse {
                pod_resources: Some(pod),
            })),
            None => Err(Status::unknown(format!(
                "pod {} in namespace {} not found",
                req.pod_name, req.pod_namespace
            ))),
        }
    }
}
