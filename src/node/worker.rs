//! The runtime workers: one per GPU, running that GPU's loads and unloads
//! through the [`ModelRuntime`](crate::runtime::ModelRuntime) in the
//! engine's order. Each ends after the node's shutdown has queued its
//! unloads; none unwraps.
//!
//! A worker stops waiting on a runtime call when the runtime is lost (the
//! state has answered the load's waiters already; the next reconcile
//! settles what the runtime made of it), and a call that fails as
//! unreachable makes the reachability watch check at once.
//!
//! With a [`Measure`], a worker reads the GPU's used memory before and
//! after each load and unload: what a load took and an unload gave back.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Node;
use super::event::LoadError;
use crate::engine::{GpuId, LoadId};
use crate::gpu::Inventory;
use crate::runtime::{self, LoadRequest, UnloadReason};

/// Work for one GPU's runtime worker.
#[derive(Debug)]
pub(super) enum Job {
    Load {
        load: LoadId,
        req: LoadRequest,
        /// The span that caused the load (the admission that started it, or
        /// a preload): the load's span is its child, so a cold start shows
        /// in the caller's trace.
        cause: tracing::Span,
    },
    Unload {
        model: String,
        gpu_uuid: String,
        reason: UnloadReason,
    },
    /// Shutdown: finish what is queued, then stop.
    Stop,
}

/// Where the workers read a GPU's used memory (NVML, or the simulated
/// inventory whose used memory tests set).
pub type Measure = Arc<dyn Inventory>;

/// The receiving ends of the job queues, until the workers are spawned.
#[must_use = "without workers no model is ever loaded"]
pub struct Workers {
    queues: Vec<(GpuId, mpsc::UnboundedReceiver<Job>)>,
    measure: Option<Measure>,
}

impl Workers {
    pub(super) fn new(queues: Vec<(GpuId, mpsc::UnboundedReceiver<Job>)>) -> Workers {
        Workers {
            queues,
            measure: None,
        }
    }

    /// Measures each load and unload in `inventory`'s used memory: the
    /// ledger then counts what a copy really took.
    pub fn measuring(mut self, inventory: Measure) -> Workers {
        self.measure = Some(inventory);
        self
    }

    /// Spawns one worker per GPU. Each stops after the node's shutdown has
    /// queued its unloads.
    pub fn spawn(self, node: &Arc<Node>) -> Vec<JoinHandle<()>> {
        let measure = self.measure;
        self.queues
            .into_iter()
            .map(|(gpu, rx)| {
                let worker = Worker {
                    node: Arc::clone(node),
                    gpu,
                    measure: measure.clone(),
                    up: node.up.subscribe(),
                };
                tokio::spawn(worker.run(rx))
            })
            .collect()
    }
}

struct Worker {
    node: Arc<Node>,
    gpu: GpuId,
    measure: Option<Measure>,
    /// Whether the runtime answers; a call in flight is abandoned when it
    /// turns false.
    up: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Stop => break,
                Job::Unload {
                    model,
                    gpu_uuid,
                    reason,
                } => self.unload(&model, &gpu_uuid, reason).await,
                Job::Load { load, req, cause } => self.load(load, req, &cause).await,
            }
            self.node.job_done(self.gpu);
        }
        tracing::debug!(gpu = %self.gpu, "runtime worker stopped");
    }

    /// Resolves when the runtime is lost (at once if it is).
    async fn lost(&mut self) {
        let _ = self.up.wait_for(|up| !up).await;
    }

    /// The GPU's used memory now, when measuring.
    async fn used_mib(&self, uuid: &str) -> Option<u64> {
        let inventory = Arc::clone(self.measure.as_ref()?);
        let snapshot = tokio::task::spawn_blocking(move || inventory.snapshot())
            .await
            .ok()?
            .map_err(|e| tracing::debug!(error = %crate::gpu::error_chain(&e), "no memory reading"))
            .ok()?;
        snapshot
            .into_iter()
            .find(|g| g.uuid == uuid)
            .map(|g| g.used_mib)
    }

    /// A call failed as if the runtime were gone: the watch checks now.
    fn note(&self, e: &runtime::Error) {
        if matches!(e, runtime::Error::Unreachable { .. }) {
            self.node.suspect_runtime();
        }
    }

    async fn unload(&mut self, model: &str, gpu_uuid: &str, reason: UnloadReason) {
        let node = Arc::clone(&self.node);
        let runtime = node.runtime();
        let span = tracing::info_span!("model.unload", model = %model, gpu.uuid = %gpu_uuid,
            runtime = runtime.kind(), reason = reason.as_str(), outcome = tracing::field::Empty);
        let before = self.used_mib(gpu_uuid).await;
        let call = runtime
            .unload(model, gpu_uuid, reason)
            .instrument(span.clone());
        let result = tokio::select! {
            r = call => Some(r),
            _ = self.lost() => None,
        };
        let outcome = match &result {
            Some(Ok(())) => "ok",
            Some(Err(_)) => "error",
            None => "runtime_lost",
        };
        span.record("outcome", outcome);
        match result {
            Some(Ok(())) => {
                let after = self.used_mib(gpu_uuid).await;
                if let (Some(b), Some(a)) = (before, after) {
                    node.unload_returned(model, gpu_uuid, b.saturating_sub(a));
                }
            }
            Some(Err(e)) => {
                self.note(&e);
                span.in_scope(|| tracing::warn!(model = %model, gpu = %gpu_uuid, error = %e, "model runtime failed to unload"));
            }
            None => span.in_scope(|| {
                tracing::warn!(model = %model, gpu = %gpu_uuid,
                "model runtime lost during the unload; the next reconcile settles the copy")
            }),
        }
    }

    /// A failed, timed-out or cancelled load is followed by an unload, so
    /// the runtime never keeps a copy the ledger does not count — except
    /// when the runtime was lost: then the reconcile that follows its return
    /// adopts or forgets whatever it made of the load.
    async fn load(&mut self, load: LoadId, req: LoadRequest, cause: &tracing::Span) {
        let node = Arc::clone(&self.node);
        let runtime = node.runtime();
        let timeout = node.info().load_timeout;
        let mut shutdown = node.shutdown_signal();
        let started = Instant::now();
        let (name, uuid) = (req.model.clone(), req.gpu_uuid.clone());
        let span = tracing::info_span!(parent: cause, "model.load", model = %name, gpu.uuid = %uuid,
            runtime = runtime.kind(), weights_mib = req.weights_mib,
            duration_ms = tracing::field::Empty, measured_mib = tracing::field::Empty,
            outcome = tracing::field::Empty);
        let before = self.used_mib(&uuid).await;
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, runtime.load(req)).instrument(span.clone()) => match r {
                Ok(Ok(loaded)) => Ok(loaded),
                Ok(Err(e)) => {
                    self.note(&e);
                    Err(LoadError::Runtime(e))
                }
                Err(_) => Err(LoadError::TimedOut(timeout)),
            },
            _ = shutdown.fired() => Err(LoadError::Cancelled),
            _ = self.lost() => Err(LoadError::RuntimeLost("the readiness check failed".into())),
        };
        let took = started.elapsed();
        let measured = match &result {
            Ok(loaded) => match loaded.size_mib {
                Some(mib) => Some(mib),
                None => self
                    .used_mib(&uuid)
                    .await
                    .zip(before)
                    .map(|(after, before)| after.saturating_sub(before)),
            },
            Err(_) => None,
        };
        span.record("duration_ms", took.as_millis() as u64);
        if let Some(mib) = measured {
            span.record("measured_mib", mib);
        }
        span.record("outcome", if result.is_ok() { "loaded" } else { "failed" });
        node.load_finished(load, &result, took, measured);
        let cleanup = matches!(
            result,
            Err(LoadError::Runtime(_) | LoadError::TimedOut(_) | LoadError::Cancelled)
        );
        if cleanup && let Err(e) = runtime.unload(&name, &uuid, UnloadReason::LoadFailed).await {
            tracing::warn!(model = %name, gpu = %uuid, error = %e, "unload after a failed load failed");
        }
    }
}
