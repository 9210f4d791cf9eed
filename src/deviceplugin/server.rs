//! The `v1beta1.DevicePlugin` service, one instance per plugin: the tonic
//! adapter in front of the [`Plugin`] and the [`Allocations`].

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::allocate::ContainerSetup;
use super::allocations::{AllocateError, Allocations};
use super::devices::DeviceView;
use super::plugin::Plugin;
use super::preferred::preferred;
use crate::kubelet;
use crate::node;
use crate::proto::k8s::deviceplugin::v1beta1 as pb;
use crate::shutdown;

/// One plugin's DevicePlugin service, for one incarnation of its server.
#[derive(Clone)]
pub(super) struct PluginService {
    pub(super) plugin: Arc<Plugin>,
    pub(super) allocations: Arc<Allocations>,
    /// Ends ListAndWatch streams when this incarnation stops serving.
    pub(super) stop: shutdown::Signal,
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

fn container_response(setup: ContainerSetup) -> pb::ContainerAllocateResponse {
    pb::ContainerAllocateResponse {
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
    }
}

fn allocate_status(e: &AllocateError) -> Status {
    match e {
        AllocateError::Plan(e) => Status::invalid_argument(e.to_string()),
        AllocateError::Record(node::AllocateError::Randomness(e)) => {
            Status::internal(format!("no randomness for a token: {e}"))
        }
        AllocateError::Record(_) | AllocateError::Persist(_) => Status::internal(e.to_string()),
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
        let mut lists = self.plugin.devices();
        let mut stop = self.stop.clone();
        let (tx, rx) = mpsc::channel(4);
        let resource = self.plugin.resource();
        tokio::spawn(async move {
            loop {
                let msg = to_pb(&lists.borrow_and_update());
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
                tokio::select! {
                    changed = lists.changed() => if changed.is_err() { return },
                    _ = stop.fired() => return,
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
            .allocations
            .node()
            .engine_status()
            .gpus
            .iter()
            .map(|g| g.free_mib)
            .collect();
        let container_responses = request
            .into_inner()
            .container_requests
            .iter()
            .map(|c| pb::ContainerPreferredAllocationResponse {
                device_i_ds: preferred(
                    self.allocations.layout(),
                    self.plugin.resource(),
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
        let allocations = Arc::clone(&self.allocations);
        let resource = self.plugin.resource();
        let span = tracing::info_span!(
            "deviceplugin.allocate",
            resource = %self.plugin.name(),
            containers = containers.len(),
            devices = containers.iter().map(Vec::len).sum::<usize>(),
            outcome = tracing::field::Empty,
        );
        let traced = span.clone();
        // The store fsyncs: keep that off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            traced.in_scope(|| allocations.allocate(resource, &containers))
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
        let setups = result.map_err(|e| allocate_status(&e))?;
        Ok(Response::new(pb::AllocateResponse {
            container_responses: setups.into_iter().map(container_response).collect(),
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<pb::PreStartContainerRequest>,
    ) -> Result<Response<pb::PreStartContainerResponse>, Status> {
        Ok(Response::new(pb::PreStartContainerResponse {}))
    }
}
