//! The `vision.v1.Admission` gRPC service: a thin adapter that checks the
//! caller, converts, and forwards to [`Node`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::core::Waiter;
use super::{Access, Node, convert};
use crate::engine::{Admission, AdmitRequest, GpuId, Lease, LeaseId, Rejection, TicketId, Wait};
use crate::gpu::{FaultHandle, Health};
use crate::proto::vision::v1 as pb;
use pb::admission_server::Admission as AdmissionApi;
use pb::watch_event::Event as Body;

/// The service behind one socket.
#[derive(Clone)]
pub struct AdmissionService {
    node: Arc<Node>,
    access: Access,
    /// Fault injection for `SetGpuFault`: present only on the admin socket
    /// of a daemon whose GPUs are simulated.
    faults: Option<FaultHandle>,
}

/// The longest `SetGpuFault` reason accepted (it is echoed in events and logs).
const MAX_FAULT_REASON: usize = 256;

impl AdmissionService {
    pub fn new(node: Arc<Node>, access: Access) -> AdmissionService {
        AdmissionService {
            node,
            access,
            faults: None,
        }
    }

    /// Serves `SetGpuFault` through `faults` (simulated GPUs); without it the
    /// call answers FAILED_PRECONDITION.
    pub fn with_faults(mut self, faults: Option<FaultHandle>) -> AdmissionService {
        self.faults = faults;
        self
    }

    pub fn into_server(self) -> pb::admission_server::AdmissionServer<AdmissionService> {
        pb::admission_server::AdmissionServer::new(self)
    }

    /// The caller's token: required and known on the task socket; optional
    /// on the admin socket (where `None` means "everything").
    fn caller<'a>(&self, token: &'a str) -> Result<Option<&'a str>, Status> {
        match (self.access, token.is_empty()) {
            (Access::Admin, true) => Ok(None),
            (Access::Task, true) => Err(Status::permission_denied(
                "missing token: send the VISION_TOKEN that Allocate put in this container's environment",
            )),
            (_, false) => {
                if self.node.read(|e| e.allocation(token).is_some()) {
                    Ok(Some(token))
                } else {
                    Err(Status::permission_denied(
                        "unknown token: use the VISION_TOKEN that Allocate put in this container's environment",
                    ))
                }
            }
        }
    }

    fn admin_only(&self, call: &str) -> Result<(), Status> {
        match self.access {
            Access::Admin => Ok(()),
            Access::Task => Err(Status::permission_denied(format!(
                "{call} is an operator call, served only on the admin socket ({})",
                self.node.info().admin_socket
            ))),
        }
    }

    /// A GPU named by UUID or index; "" means any.
    fn gpu_arg(&self, gpu: &str) -> Result<Option<GpuId>, Status> {
        if gpu.is_empty() {
            return Ok(None);
        }
        self.node
            .read(|e| {
                e.gpu_by_uuid(gpu).or_else(|| {
                    gpu.parse::<u32>()
                        .ok()
                        .map(GpuId)
                        .filter(|g| e.gpu(*g).is_some())
                })
            })
            .map(Some)
            .ok_or_else(|| {
                Status::invalid_argument(format!("unknown GPU {gpu:?}: give a UUID or an index"))
            })
    }
}

impl AdmissionService {
    /// Admit's work, inside its span.
    async fn admit_in_span(
        &self,
        req: pb::AdmitRequest,
        span: &tracing::Span,
    ) -> Result<Response<pb::AdmitResponse>, Status> {
        if req.token.is_empty() {
            return Err(Status::permission_denied(
                "missing token: send the VISION_TOKEN that Allocate put in this container's environment",
            ));
        }
        if req.model.is_empty() {
            return Err(Status::invalid_argument("model is required"));
        }
        let engine_req = AdmitRequest {
            token: req.token.clone(),
            model: req.model.clone(),
            task_type: (!req.task_type.is_empty()).then(|| req.task_type.clone()),
            priority: req.priority,
            wait: match req.timeout_ms {
                None => Wait::Default,
                Some(0) => Wait::NoQueue,
                Some(ms) => Wait::For(Duration::from_millis(ms)),
            },
        };
        let (tx, rx) = oneshot::channel();
        let admitted = self.node.with_core(|core, now| {
            let result = core.engine.admit(&engine_req, now);
            let evicted: Vec<&str> = core
                .engine
                .pending_effects()
                .iter()
                .filter_map(|f| match f {
                    crate::engine::Effect::Unload {
                        model,
                        reason: crate::engine::UnloadReason::Evicted { .. },
                        ..
                    } => Some(core.engine.model(*model).name.as_str()),
                    _ => None,
                })
                .collect();
            if !evicted.is_empty() {
                span.record("evicted", evicted.join(",").as_str());
            }
            match &result {
                Ok(Admission::Pending(ticket)) => {
                    let model = core
                        .engine
                        .model_id(&req.model)
                        .expect("admitted models exist");
                    core.waiters.insert(
                        *ticket,
                        Waiter {
                            tx,
                            token: Arc::from(req.token.as_str()),
                            model,
                        },
                    );
                }
                Ok(Admission::Granted(lease)) => {
                    self.node
                        .metrics()
                        .observe_wait(true, lease.waited().as_secs_f64());
                    let owner: Arc<str> = Arc::from(req.token.as_str());
                    core.owners.insert(lease.id, Arc::clone(&owner));
                    let body = Body::LeaseGranted(pb::LeaseEvent {
                        lease: Some(convert::lease(core, lease, now)),
                        reason: String::new(),
                    });
                    core.emit(&self.node.events, now, Some(owner), body);
                }
                Err(_) => {}
            }
            result
        });
        let lease = match admitted.map_err(|e| convert::admit_error(&e))? {
            Admission::Granted(lease) => lease,
            Admission::Pending(ticket) => {
                let pending = PendingAdmission {
                    node: Arc::clone(&self.node),
                    ticket,
                    rx: Some(rx),
                };
                match pending.answer().await {
                    Some(Ok(lease)) => lease,
                    Some(Err(rejection)) => {
                        return Err(convert::rejection(&rejection, &req.model));
                    }
                    None => {
                        return Err(Status::unavailable("the daemon is shutting down; retry"));
                    }
                }
            }
        };
        let lease = self
            .node
            .read_core(|core, now| convert::lease(core, &lease, now));
        Ok(Response::new(pb::AdmitResponse { lease: Some(lease) }))
    }
}

/// A pending admission's answer, cancelled if the caller goes away (client
/// cancel, deadline, disconnect: tonic drops the handler's future). A lease
/// granted in the instant before the drop is given straight back.
struct PendingAdmission {
    node: Arc<Node>,
    ticket: TicketId,
    rx: Option<oneshot::Receiver<Result<Lease, Rejection>>>,
}

impl PendingAdmission {
    async fn answer(mut self) -> Option<Result<Lease, Rejection>> {
        let outcome = self.rx.as_mut()?.await.ok();
        self.rx = None;
        outcome
    }
}

impl Drop for PendingAdmission {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let ticket = self.ticket;
        self.node.with_core(|core, now| {
            core.waiters.remove(&ticket);
            core.engine.cancel(ticket, now);
            if let Ok(Ok(lease)) = rx.try_recv() {
                core.owners.remove(&lease.id);
                let _ = core.engine.release(lease.id, None, now);
            }
        });
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AdmissionApi for AdmissionService {
    async fn admit(
        &self,
        request: Request<pb::AdmitRequest>,
    ) -> Result<Response<pb::AdmitResponse>, Status> {
        // The admit span joins the caller's trace (W3C traceparent in the
        // metadata), so a pod's own trace shows its wait for the GPU.
        let parent = crate::telemetry::otel::remote_parent(request.metadata());
        let req = request.into_inner();
        let span = tracing::info_span!(
            "admit",
            otel.kind = "server",
            model = %req.model,
            task_type = %req.task_type,
            priority = req.priority,
            outcome = tracing::field::Empty,
            gpu.uuid = tracing::field::Empty,
            warm = tracing::field::Empty,
            queue_wait_ms = tracing::field::Empty,
            evicted = tracing::field::Empty,
        );
        let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
        let result = self
            .admit_in_span(req, &span)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(r) => {
                if let Some(l) = r.get_ref().lease.as_ref() {
                    span.record(
                        "outcome",
                        if l.warm {
                            "granted_warm"
                        } else {
                            "granted_cold"
                        },
                    );
                    span.record("gpu.uuid", l.gpu_uuid.as_str());
                    span.record("warm", l.warm);
                    span.record("queue_wait_ms", l.waited_ms);
                }
            }
            Err(status) => {
                span.record("outcome", format!("{:?}", status.code()).as_str());
            }
        }
        result
    }

    type WatchStream = WatchStream;
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token)?;
        self.node
            .with_core(|core, now| {
                let lease = core.engine.lease(LeaseId(req.lease_id));
                core.engine.release(LeaseId(req.lease_id), token, now)?;
                if let Some(lease) = lease {
                    let owner = core.owners.remove(&lease.id);
                    let body = Body::LeaseReleased(pb::LeaseEvent {
                        lease: Some(convert::lease(core, &lease, now)),
                        reason: String::new(),
                    });
                    core.emit(&self.node.events, now, owner, body);
                }
                Ok(())
            })
            .map_err(|e| convert::lease_error(&e))?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn keep_alive(
        &self,
        request: Request<pb::KeepAliveRequest>,
    ) -> Result<Response<pb::KeepAliveResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token)?;
        let expires = self
            .node
            .with_engine(|e, now| {
                e.keep_alive(LeaseId(req.lease_id), token, now)
                    .map(|t| t.saturating_since(now))
            })
            .map_err(|e| convert::lease_error(&e))?;
        Ok(Response::new(pb::KeepAliveResponse {
            expires_in_ms: expires.as_millis() as u64,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let req = request.into_inner();
        let token = self.caller(&req.token)?;
        Ok(Response::new(self.node.status_pb(token)))
    }

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        let token: Option<Arc<str>> = self.caller(&req.token)?.map(Arc::from);
        let mut events = self.node.subscribe();
        let mut shutdown = self.node.shutdown_signal();
        let (tx, rx) = mpsc::channel(64);
        // The stream opens with the current queue depth.
        let (queued, waiting) = self
            .node
            .read(|e| (e.queued() as u32, e.waiting_on_load() as u32));
        let first = pb::WatchEvent {
            seq: 0,
            at_ms: self.node.clock().now().as_millis(),
            missed: 0,
            event: Some(Body::Queue(pb::QueueEvent {
                queued,
                waiting_on_load: waiting,
            })),
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
                            let visible = match (&token, &ev.owner) {
                                (None, _) | (_, None) => true,
                                (Some(mine), Some(owner)) => mine == owner,
                            };
                            if !visible {
                                continue;
                            }
                            let out = pb::WatchEvent { seq: ev.seq, at_ms: ev.at.as_millis(), missed, event: Some(ev.body) };
                            missed = 0;
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => missed += n,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = super::stopped(&mut shutdown) => return,
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
        self.admin_only("Preload")?;
        let req = request.into_inner();
        let gpu = self.gpu_arg(&req.gpu)?;
        let (tx, rx) = oneshot::channel();
        let (gpu, uuid) = self
            .node
            .with_core(|core, now| {
                let (gpu, load) = core.engine.preload(&req.model, gpu, now)?;
                core.preloads.entry(load).or_default().push(tx);
                let uuid = core
                    .engine
                    .gpu(gpu)
                    .map(|g| g.uuid.clone())
                    .unwrap_or_default();
                Ok((gpu, uuid))
            })
            .map_err(|e| convert::admin_error(&e))?;
        match rx.await {
            Ok(Ok(took)) => Ok(Response::new(pb::PreloadResponse {
                gpu_index: gpu.0,
                gpu_uuid: uuid,
                duration_ms: took.as_millis() as u64,
            })),
            Ok(Err(message)) => Err(Status::unavailable(format!(
                "loading {:?} failed: {message}",
                req.model
            ))),
            Err(_) => Err(Status::unavailable(
                "the load was abandoned (GPU failure or shutdown)",
            )),
        }
    }

    async fn evict(
        &self,
        request: Request<pb::EvictRequest>,
    ) -> Result<Response<pb::EvictResponse>, Status> {
        self.admin_only("Evict")?;
        let req = request.into_inner();
        let gpu = self.gpu_arg(&req.gpu)?;
        let uuids = self
            .node
            .with_engine(|e, now| {
                let gpus = e.evict(&req.model, gpu, now)?;
                Ok(gpus
                    .iter()
                    .filter_map(|g| e.gpu(*g).map(|s| s.uuid.clone()))
                    .collect())
            })
            .map_err(|e| convert::admin_error(&e))?;
        Ok(Response::new(pb::EvictResponse { gpu_uuids: uuids }))
    }

    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        Ok(Response::new(
            self.node.with_core(|core, _| convert::list_models(core)),
        ))
    }

    async fn set_gpu_fault(
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
        if req.reason.len() > MAX_FAULT_REASON {
            return Err(Status::invalid_argument(format!(
                "reason is {} bytes; at most {MAX_FAULT_REASON} are accepted",
                req.reason.len()
            )));
        }
        let Some(gpu) = self.gpu_arg(&req.gpu)? else {
            return Err(Status::invalid_argument(
                "gpu is required: give a GPU UUID or an index",
            ));
        };
        let uuid = self
            .node
            .read(|e| e.gpu(gpu).map(|g| g.uuid.clone()))
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
