//! The generated `Admission` trait, implemented by converting and forwarding
//! to the node.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{AdmissionService, convert, limits};
use crate::engine::{AdmitRequest, LeaseId, Wait};
use crate::gpu::Health;
use crate::node::{AdmitFailure, EventKind, PreloadFailure};
use crate::proto::vision::v1 as pb;
use pb::admission_server::Admission as AdmissionApi;

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// The caller's trace context (W3C `traceparent` in the metadata): our
/// server spans join the caller's trace.
fn join_callers_trace(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    let parent = crate::telemetry::otel::remote_parent(metadata);
    let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(span, parent);
}

impl AdmissionService {
    /// Admit's work, inside its span.
    async fn admit_in_span(
        &self,
        req: pb::AdmitRequest,
        span: &tracing::Span,
    ) -> Result<pb::Lease, Status> {
        limits::field("token", &req.token, limits::MAX_TOKEN_BYTES)?;
        limits::field("model", &req.model, limits::MAX_MODEL_BYTES)?;
        limits::field("task_type", &req.task_type, limits::MAX_TASK_BYTES)?;
        if req.token.is_empty() {
            return Err(Status::permission_denied(
                "missing token: send the VISION_TOKEN that Allocate put in this container's environment",
            ));
        }
        if req.model.is_empty() {
            return Err(Status::invalid_argument("model is required"));
        }
        let admit = AdmitRequest {
            token: req.token,
            model: req.model,
            task_type: (!req.task_type.is_empty()).then_some(req.task_type),
            priority: req.priority,
            wait: match req.timeout_ms {
                None => Wait::Default,
                Some(0) => Wait::NoQueue,
                Some(ms) => Wait::For(Duration::from_millis(ms)),
            },
        };
        match self.node.admit(&admit, span).await {
            Ok(lease) => Ok(convert::lease(&lease)),
            Err(AdmitFailure::Refused(e)) => Err(convert::admit_error(&e)),
            Err(AdmitFailure::Rejected(r)) => Err(convert::rejection(&r, &admit.model)),
            Err(AdmitFailure::RuntimeUnavailable(d)) => Err(convert::runtime_down(&d)),
            Err(AdmitFailure::Abandoned) => {
                Err(Status::unavailable("the daemon is shutting down; retry"))
            }
        }
    }
}

#[tonic::async_trait]
impl AdmissionApi for AdmissionService {
    async fn admit(
        &self,
        request: Request<pb::AdmitRequest>,
    ) -> Result<Response<pb::AdmitResponse>, Status> {
        let span = tracing::info_span!(
            "admit",
            otel.kind = "server",
            model = %limits::clip(&request.get_ref().model, limits::MAX_MODEL_BYTES),
            task_type = %limits::clip(&request.get_ref().task_type, limits::MAX_TASK_BYTES),
            priority = request.get_ref().priority,
            outcome = tracing::field::Empty,
            gpu.uuid = tracing::field::Empty,
            warm = tracing::field::Empty,
            queue_wait_ms = tracing::field::Empty,
            evicted = tracing::field::Empty,
        );
        // A pod's own trace shows its wait for the GPU.
        join_callers_trace(&span, request.metadata());
        let result = self
            .admit_in_span(request.into_inner(), &span)
            .instrument(span.clone())
            .await
            .map_err(limits::bounded);
        match &result {
            Ok(l) => {
                let outcome = if l.warm {
                    "granted_warm"
                } else {
                    "granted_cold"
                };
                span.record("outcome", outcome);
                span.record("gpu.uuid", l.gpu_uuid.as_str());
                span.record("warm", l.warm);
                span.record("queue_wait_ms", l.waited_ms);
            }
            Err(status) => {
                span.record("outcome", format!("{:?}", status.code()).as_str());
            }
        }
        let lease = result?;
        Ok(Response::new(pb::AdmitResponse { lease: Some(lease) }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token).map_err(limits::bounded)?;
        self.node
            .release(LeaseId(req.lease_id), token)
            .map_err(|e| limits::bounded(convert::lease_error(&e)))?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token).map_err(limits::bounded)?;
        let expires = self
            .node
            .keep_alive(LeaseId(req.lease_id), token)
            .map_err(|e| limits::bounded(convert::lease_error(&e)))?;
        Ok(Response::new(pb::KeepAliveResponse {
            expires_in_ms: expires.as_millis() as u64,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token).map_err(limits::bounded)?;
        let status = self.node.status(token);
        Ok(Response::new(convert::status(&status, self.node.info())))
    }

    type WatchStream = WatchStream;

    /// Domain events become wire events here, and only here.
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        // A pod's stream reads its own channel (its events and the node's),
        // within the pod's share of streams; the admin socket's reads every
        // event.
        let mut events = match self.caller(&req.token).map_err(limits::bounded)? {
            Some(token) => self
                .node
                .subscribe_pod(&Arc::from(token))
                .map_err(|e| Status::resource_exhausted(e.to_string()))?,
            None => self.node.subscribe(),
        };
        let mut shutdown = self.node.shutdown_signal();
        let (tx, rx) = mpsc::channel(64);
        // The stream opens with the current queue depth.
        let first = pb::WatchEvent {
            seq: 0,
            at_ms: self.node.clock().now().as_millis(),
            missed: 0,
            event: Some(convert::event_kind(&EventKind::Queue(
                self.node.queue_depth(),
            ))),
        };
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut missed = 0u64;
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(ev) => {
                            let out = convert::watch_event(&ev, missed);
                            missed = 0;
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => missed += n,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = shutdown.fired() => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn preload(
        &self,
        request: Request<pb::PreloadRequest>,
    ) -> Result<Response<pb::PreloadResponse>, Status> {
        self.preload_call(request).await.map_err(limits::bounded)
    }

    async fn evict(
        &self,
        request: Request<pb::EvictRequest>,
    ) -> Result<Response<pb::EvictResponse>, Status> {
        self.admin_only("Evict")?;
        let req = request.into_inner();
        limits::field("model", &req.model, limits::MAX_MODEL_BYTES)?;
        let gpu = self.gpu_arg(&req.gpu)?;
        let gpus = self
            .node
            .evict(&req.model, gpu)
            .map_err(|e| limits::bounded(convert::admin_error(&e)))?;
        Ok(Response::new(pb::EvictResponse {
            gpu_uuids: gpus.into_iter().map(|g| g.uuid).collect(),
        }))
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        Ok(Response::new(convert::list_models(&self.node.models())))
    }

    async fn set_gpu_fault(
        &self,
        request: Request<pb::SetGpuFaultRequest>,
    ) -> Result<Response<pb::SetGpuFaultResponse>, Status> {
        self.set_gpu_fault_call(request)
            .await
            .map_err(limits::bounded)
    }
}

impl AdmissionService {
    async fn preload_call(
        &self,
        request: Request<pb::PreloadRequest>,
    ) -> Result<Response<pb::PreloadResponse>, Status> {
        self.admin_only("Preload")?;
        limits::field("model", &request.get_ref().model, limits::MAX_MODEL_BYTES)?;
        let span = tracing::info_span!(
            "preload",
            otel.kind = "server",
            model = %request.get_ref().model,
            gpu.uuid = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        // The load is this span's child: an operator's trace shows it.
        join_callers_trace(&span, request.metadata());
        let req = request.into_inner();
        let gpu = self.gpu_arg(&req.gpu)?;
        let result = self
            .node
            .preload(&req.model, gpu, &span)
            .instrument(span.clone())
            .await;
        span.record("outcome", if result.is_ok() { "loaded" } else { "failed" });
        match result {
            Ok(done) => {
                span.record("gpu.uuid", done.gpu.uuid.as_str());
                Ok(Response::new(pb::PreloadResponse {
                    gpu_index: done.gpu.id.0,
                    gpu_uuid: done.gpu.uuid,
                    duration_ms: done.took.as_millis() as u64,
                }))
            }
            Err(PreloadFailure::Refused(e)) => Err(convert::admin_error(&e)),
            Err(PreloadFailure::RuntimeUnavailable(d)) => Err(convert::runtime_down(&d)),
            Err(PreloadFailure::Failed(e)) => Err(Status::unavailable(format!(
                "loading {:?} failed: {e}",
                req.model
            ))),
            Err(PreloadFailure::Abandoned) => Err(Status::unavailable(
                "the load was abandoned (GPU failure or shutdown)",
            )),
        }
    }

    async fn set_gpu_fault_call(
        &self,
        request: Request<pb::SetGpuFaultRequest>,
    ) -> Result<Response<pb::SetGpuFaultResponse>, Status> {
        self.admin_only("SetGpuFault")?;
        let req = request.into_inner();
        let Some(faults) = &self.faults else {
            return Err(Status::failed_precondition(format!(
                "SetGpuFault injects faults into simulated GPUs only, and this node's GPUs are {}: \
                 use a config with gpus.backend: simulated (or --dev) to test fault handling",
                self.node.info().gpu_backend
            )));
        };
        limits::field("reason", &req.reason, limits::MAX_REASON_BYTES)?;
        let Some(gpu) = self.gpu_arg(&req.gpu)? else {
            return Err(Status::invalid_argument(
                "gpu is required: give a GPU UUID or an index",
            ));
        };
        let uuid = self
            .node
            .gpus()
            .get(gpu.0 as usize)
            .map(|g| g.uuid.clone())
            .unwrap_or_default();
        let health = if req.faulted {
            let reason = if req.reason.is_empty() {
                "injected fault".to_owned()
            } else {
                req.reason
            };
            Health::Unhealthy(reason)
        } else {
            Health::Healthy
        };
        // The simulated inventory pushes the change to the daemon's health
        // watcher, which applies it exactly as it would an NVML Xid event.
        faults
            .set_health(gpu.0, health)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::SetGpuFaultResponse {
            gpu_index: gpu.0,
            gpu_uuid: uuid,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{Engine, GpuSpec, Settings};
    use crate::node::{Node, NodeInfo};
    use crate::service::Access;

    #[tokio::test]
    async fn set_gpu_fault_without_simulated_gpus_is_a_failed_precondition() {
        let config = crate::config::Config::dev();
        let gpus = vec![GpuSpec {
            uuid: "GPU-0".into(),
            name: "NVIDIA L4".into(),
            total_mib: 24_576,
        }];
        let engine = Engine::new(gpus, config.models.clone(), Settings::from_config(&config))
            .expect("an engine");
        let info = NodeInfo {
            node_name: "n".into(),
            gpu_backend: "nvml".into(),
            load_timeout: Duration::from_secs(10),
            admin_socket: "/run/admin.sock".into(),
        };
        let (node, _workers) = Node::new(
            engine,
            info,
            Arc::new(crate::runtime::Bookkeeping::default()),
        );
        // The admin service as a daemon on NVML GPUs builds it: no fault handle.
        let svc = AdmissionService::new(node, Access::Admin);
        let e = svc
            .set_gpu_fault(Request::new(pb::SetGpuFaultRequest {
                gpu: "0".into(),
                faulted: true,
                reason: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("simulated GPUs only"), "{e:?}");
    }
}
