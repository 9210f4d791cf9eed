//! The `v1beta1.DevicePlugin` service (one instance per resource) and the
//! state both plugins share.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::allocate::{self, Plan};
use super::devices::{DeviceView, Layout, Resource};
use super::preferred::preferred;
use super::store::{Record, Store, VramRecord};
use crate::engine::GpuId;
use crate::kubelet;
use crate::proto::k8s::deviceplugin::v1beta1 as pb;
use crate::service::Node;

/// What both plugins share: the layout, the engine, the persisted allocations
/// and the device lists kubelet is streamed.
pub struct Shared {
    pub node: Arc<Node>,
    pub layout: Layout,
    pub domain: String,
    /// `<state>/pods` on the host: mounted into containers.
    pub host_pods_dir: PathBuf,
    pub container_socket_dir: PathBuf,
    pub cdi: bool,
    pub store: Store,
    /// The persisted allocations; the lock also serialises writes of the file.
    records: Mutex<Vec<Record>>,
    /// Current device list per resource (slot, vram), fed by the health publisher.
    lists: [watch::Sender<Vec<DeviceView>>; 2],
}

/// What Allocate hands containers besides the token.
#[derive(Debug, Clone)]
pub struct Mounts {
    pub domain: String,
    pub host_pods_dir: PathBuf,
    pub container_socket_dir: PathBuf,
    pub cdi: bool,
}

fn index(r: Resource) -> usize {
    match r {
        Resource::Slot => 0,
        Resource::Vram => 1,
    }
}

impl Shared {
    pub fn new(
        node: Arc<Node>,
        layout: Layout,
        mounts: Mounts,
        store: Store,
        healthy: &[bool],
    ) -> Shared {
        let lists = Resource::ALL.map(|r| watch::channel(layout.devices(r, healthy)).0);
        Shared {
            node,
            layout,
            domain: mounts.domain,
            host_pods_dir: mounts.host_pods_dir,
            container_socket_dir: mounts.container_socket_dir,
            cdi: mounts.cdi,
            store,
            records: Mutex::new(Vec::new()),
            lists,
        }
    }

    /// Publishes new device lists (only the ones that changed wake kubelet).
    pub fn publish(&self, healthy: &[bool]) {
        for r in Resource::ALL {
            let list = self.layout.devices(r, healthy);
            self.lists[index(r)].send_if_modified(|cur| {
                let changed = *cur != list;
                if changed {
                    *cur = list;
                }
                changed
            });
        }
    }

    pub fn devices(&self, r: Resource) -> watch::Receiver<Vec<DeviceView>> {
        self.lists[index(r)].subscribe()
    }

    pub fn records(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Restores saved allocations into the engine (a daemon restart keeps
    /// running pods' tokens valid). Records whose GPU is gone are dropped.
    pub fn restore(&self, saved: Vec<Record>) -> usize {
        let mut kept = Vec::new();
        for rec in saved {
            let restored = self
                .node
                .with_engine(|e, now| match (&rec.resource, &rec.vram) {
                    (Resource::Slot, _) => e
                        .allocate_slots(&rec.token, rec.device_ids.len() as u32, now)
                        .is_ok(),
                    (Resource::Vram, Some(v)) => match e.gpu_by_uuid(&v.gpu_uuid) {
                        Some(gpu) => e.allocate_vram(&rec.token, gpu, v.mib, now).is_ok(),
                        None => false,
                    },
                    (Resource::Vram, None) => false,
                });
            if restored {
                kept.push(rec);
            } else {
                tracing::warn!(resource = %rec.resource, devices = ?rec.device_ids,
                    "saved allocation no longer matches this node's GPUs; dropped");
            }
        }
        let n = kept.len();
        *self.records.lock().unwrap_or_else(PoisonError::into_inner) = kept;
        n
    }

    /// Forgets the allocations behind `tokens` (pods gone): the file is
    /// rewritten first (if that fails nothing changes and the next round
    /// retries), then the engine revokes their leases and returns their memory.
    pub fn release(&self, tokens: &[String]) -> Result<(), super::store::Error> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let remaining: Vec<Record> = records
            .iter()
            .filter(|r| !tokens.contains(&r.token))
            .cloned()
            .collect();
        self.store.save(&remaining)?;
        *records = remaining;
        for token in tokens {
            let _ = self.node.with_engine(|e, now| e.deallocate(token, now));
        }
        Ok(())
    }

    /// Allocate for every container of one request, all or nothing.
    fn allocate(
        &self,
        resource: Resource,
        containers: &[Vec<String>],
    ) -> Result<Vec<pb::ContainerAllocateResponse>, Status> {
        let mut plans = Vec::with_capacity(containers.len());
        for ids in containers {
            let plan = allocate::plan(&self.layout, resource, ids)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let token = crate::daemon::new_token().map_err(|e| Status::internal(e.to_string()))?;
            plans.push((ids.clone(), plan, token));
        }
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut added = Vec::new();
        let mut responses = Vec::new();
        for (ids, plan, token) in &plans {
            let recorded = self.node.with_engine(|e, now| match plan {
                Plan::Slots(n) => e.allocate_slots(token, *n, now),
                Plan::Vram { gpu, mib } => e.allocate_vram(token, GpuId(*gpu as u32), *mib, now),
            });
            if let Err(e) = recorded {
                self.undo(&added);
                return Err(Status::internal(format!(
                    "cannot record the allocation: {e}"
                )));
            }
            added.push(token.clone());
            records.push(Record {
                token: token.clone(),
                resource,
                device_ids: ids.clone(),
                vram: match plan {
                    Plan::Vram { gpu, mib } => Some(VramRecord {
                        gpu_uuid: self.layout.gpus[*gpu].uuid.clone(),
                        mib: *mib,
                    }),
                    Plan::Slots(_) => None,
                },
                allocated_at_ms: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            });
            let setup = allocate::setup(
                &self.layout,
                plan,
                token,
                &self.host_pods_dir,
                &self.container_socket_dir,
                self.cdi,
            );
            responses.push(pb::ContainerAllocateResponse {
                envs: setup.envs.into_iter().collect(),
                mounts: vec![pb::Mount {
                    container_path: setup.mount.0,
                    host_path: setup.mount.1,
                    read_only: true,
                }],
                devices: vec![],
                annotations: Default::default(),
                cdi_devices: setup
                    .cdi_devices
                    .into_iter()
                    .map(|name| pb::CdiDevice { name })
                    .collect(),
            });
        }
        // Persist before answering: a token kubelet hands to a container must survive a restart.
        if let Err(e) = self.store.save(&records) {
            records.retain(|r| !added.contains(&r.token));
            self.undo(&added);
            return Err(Status::internal(format!(
                "cannot persist the allocation, refused: {e}"
            )));
        }
        for (_, plan, _) in &plans {
            tracing::info!(resource = %resource, ?plan, "allocated");
        }
        Ok(responses)
    }

    fn undo(&self, tokens: &[String]) {
        for t in tokens {
            let _ = self.node.with_engine(|e, now| e.deallocate(t, now));
        }
    }
}

/// One resource's DevicePlugin service.
#[derive(Clone)]
pub struct PluginService {
    pub resource: Resource,
    pub shared: Arc<Shared>,
    /// Ends ListAndWatch streams when this plugin instance stops serving.
    pub stop: watch::Receiver<bool>,
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<pb::ListAndWatchResponse, Status>> + Send>>;

fn to_pb(list: &[DeviceView]) -> pb::ListAndWatchResponse {
    pb::ListAndWatchResponse {
        devices: list
            .iter()
            .map(|d| pb::Device {
                id: d.id.clone(),
                health: if d.healthy {
                    kubelet::HEALTHY
                } else {
                    kubelet::UNHEALTHY
                }
                .to_owned(),
                topology: None,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::device_plugin_server::DevicePlugin for PluginService {
    async fn get_device_plugin_options(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::DevicePluginOptions>, Status> {
        Ok(Response::new(pb::DevicePluginOptions {
            pre_start_required: false,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = DeviceStream;

    /// The full list now, then again on every change: fed by a watch
    /// channel, never a sleep-and-poll loop.
    async fn list_and_watch(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<Self::ListAndWatchStream>, Status> {
        let mut lists = self.shared.devices(self.resource);
        let mut stop = self.stop.clone();
        let mut shutdown = self.shared.node.shutdown_signal();
        let (tx, rx) = mpsc::channel(4);
        let resource = self.resource;
        tokio::spawn(async move {
            loop {
                let msg = to_pb(&lists.borrow_and_update());
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = lists.changed() => if changed.is_err() { return },
                    _ = crate::service::stopped(&mut stop) => return,
                    _ = crate::service::stopped(&mut shutdown) => return,
                    _ = tx.closed() => {
                        tracing::debug!(%resource, "kubelet closed ListAndWatch");
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_preferred_allocation(
        &self,
        request: Request<pb::PreferredAllocationRequest>,
    ) -> Result<Response<pb::PreferredAllocationResponse>, Status> {
        let free: Vec<u64> = self
            .shared
            .node
            .read(|e| e.status().gpus.iter().map(|g| g.free_mib).collect());
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|c| pb::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    &self.shared.layout,
                    self.resource,
                    &c.available_device_i_ds,
                    &c.must_include_device_i_ds,
                    usize::try_from(c.allocation_size).unwrap_or(0),
                    &free,
                ),
            })
            .collect();
        Ok(Response::new(pb::PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        request: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let containers: Vec<Vec<String>> = request
            .into_inner()
            .container_requests
            .into_iter()
            .map(|c| c.devices_ids)
            .collect();
        let shared = Arc::clone(&self.shared);
        let resource = self.resource;
        let span = tracing::info_span!(
            "deviceplugin.allocate",
            resource = %resource.name(&shared.domain),
            containers = containers.len(),
            devices = containers.iter().map(Vec::len).sum::<usize>(),
            outcome = tracing::field::Empty,
        );
        let traced = span.clone();
        // The store fsyncs: keep that off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            traced.in_scope(|| shared.allocate(resource, &containers))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        span.record(
            "outcome",
            if result.is_ok() {
                "allocated"
            } else {
                "refused"
            },
        );
        let container_responses = result?;
        Ok(Response::new(pb::AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<pb::PreStartContainerRequest>,
    ) -> Result<Response<pb::PreStartContainerResponse>, Status> {
        Ok(Response::new(pb::PreStartContainerResponse {}))
    }
}
