//! The runtime workers: one per GPU, running that GPU's loads and unloads
//! through the [`ModelRuntime`](crate::runtime::ModelRuntime) in the
//! engine's order. Each ends after the node's shutdown has queued its
//! unloads; none unwraps.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::Node;
use super::event::LoadError;
use crate::engine::{GpuId, LoadId, ModelId};
use crate::runtime::LoadRequest;

/// Work for one GPU's runtime worker.
#[derive(Debug)]
pub(super) enum Job {
    Load {
        load: LoadId,
        model: ModelId,
        req: LoadRequest,
        /// The span that caused the load (the admission that started it, or
        /// a preload): the load's span is its child, so a cold start shows
        /// in the caller's trace.
        cause: tracing::Span,
    },
    Unload {
        model: String,
        gpu_uuid: String,
    },
    /// Shutdown: finish what is queued, then stop.
    Stop,
}

/// The receiving ends of the job queues, until the workers are spawned.
#[must_use = "without workers no model is ever loaded"]
pub struct Workers(pub(super) Vec<(GpuId, mpsc::UnboundedReceiver<Job>)>);

impl Workers {
    /// Spawns one worker per GPU. Each stops after the node's shutdown has
    /// queued its unloads.
    pub fn spawn(self, node: &Arc<Node>) -> Vec<JoinHandle<()>> {
        self.0
            .into_iter()
            .map(|(gpu, rx)| tokio::spawn(run(Arc::clone(node), gpu, rx)))
            .collect()
    }
}

/// A failed, timed-out or cancelled load is followed by an unload, so the
/// runtime never keeps a copy the ledger does not count.
async fn run(node: Arc<Node>, gpu: GpuId, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = rx.recv().await {
        match job {
            Job::Stop => break,
            Job::Unload { model, gpu_uuid } => unload(&node, &model, &gpu_uuid).await,
            Job::Load {
                load,
                model,
                req,
                cause,
            } => self::load(&node, gpu, load, model, req, &cause).await,
        }
    }
    tracing::debug!(%gpu, "runtime worker stopped");
}

async fn unload(node: &Node, model: &str, gpu_uuid: &str) {
    let runtime = node.runtime();
    let span = tracing::info_span!("model.unload", model = %model, gpu.uuid = %gpu_uuid,
        runtime = runtime.kind(), outcome = tracing::field::Empty);
    let result = runtime
        .unload(model, gpu_uuid)
        .instrument(span.clone())
        .await;
    span.record("outcome", if result.is_ok() { "ok" } else { "error" });
    if let Err(e) = result {
        span.in_scope(|| tracing::warn!(model = %model, gpu = %gpu_uuid, error = %e, "model runtime failed to unload"));
    }
}

async fn load(
    node: &Node,
    gpu: GpuId,
    load: LoadId,
    model: ModelId,
    req: LoadRequest,
    cause: &tracing::Span,
) {
    let runtime = node.runtime();
    let timeout = node.info().load_timeout;
    let mut shutdown = node.shutdown_signal();
    let started = Instant::now();
    let (name, uuid) = (req.model.clone(), req.gpu_uuid.clone());
    let span = tracing::info_span!(parent: cause, "model.load", model = %name, gpu.uuid = %uuid,
        runtime = runtime.kind(), weights_mib = req.weights_mib,
        duration_ms = tracing::field::Empty, outcome = tracing::field::Empty);
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, runtime.load(req)).instrument(span.clone()) => match r {
            Ok(Ok(loaded)) => Ok(loaded),
            Ok(Err(e)) => Err(LoadError::Runtime(e)),
            Err(_) => Err(LoadError::TimedOut(timeout)),
        },
        _ = shutdown.fired() => Err(LoadError::Cancelled),
    };
    let took = started.elapsed();
    span.record("duration_ms", took.as_millis() as u64);
    span.record("outcome", if result.is_ok() { "loaded" } else { "failed" });
    node.load_finished(load, gpu, model, &result, took);
    if result.is_err()
        && let Err(e) = runtime.unload(&name, &uuid).await
    {
        tracing::warn!(model = %name, gpu = %uuid, error = %e, "unload after a failed load failed");
    }
}
