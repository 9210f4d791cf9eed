//! Calls that wait: an admission for its lease, a preload for its load.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::Span;

use super::Node;
use super::event::{GpuRef, LeaseInfo, LoadError};
use super::reach::RuntimeDown;
use super::state::{Admitted, Answer};
use crate::engine::{AdminError, AdmitError, AdmitRequest, GpuId, Rejection, TicketId};

/// Why an admission ended without a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmitFailure {
    /// Refused at once.
    Refused(AdmitError),
    /// Queued, then rejected.
    Rejected(Rejection),
    /// The model runtime is unreachable: refused at once, or withdrawn from
    /// the queue when the runtime was lost.
    RuntimeUnavailable(RuntimeDown),
    /// Its answer was dropped unsent (the node went away).
    Abandoned,
}

/// A finished preload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preloaded {
    pub gpu: GpuRef,
    pub took: Duration,
}

/// Why a preload did not load its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreloadFailure {
    /// Refused at once.
    Refused(AdminError),
    /// The model runtime is unreachable.
    RuntimeUnavailable(RuntimeDown),
    /// The runtime's load failed.
    Failed(LoadError),
    /// The load was dropped unanswered (GPU failure or shutdown).
    Abandoned,
}

impl Node {
    /// Admits a task: a lease at once, or after waiting in the queue or on a
    /// load. Dropping the future (the caller went away) leaves the queue; a
    /// lease granted in that instant is given straight back. Evictions and
    /// the load it causes are recorded under `span`.
    pub async fn admit(
        self: &Arc<Node>,
        req: &AdmitRequest,
        span: &Span,
    ) -> Result<LeaseInfo, AdmitFailure> {
        let (tx, rx) = oneshot::channel();
        let req = AdmitRequest {
            token: super::token::key(&req.token),
            ..req.clone()
        };
        let admitted = self.with_state(span, |s, now| s.admit(&req, tx, span, now))?;
        let ticket = match admitted {
            Admitted::Granted(lease) => return Ok(lease),
            Admitted::Pending(ticket) => ticket,
        };
        let pending = Pending {
            node: Arc::clone(self),
            ticket,
            rx: Some(rx),
        };
        match pending.answer().await {
            Some(Ok(lease)) => Ok(self.lease_info(&lease)),
            Some(Err(failure)) => Err(failure),
            None => Err(AdmitFailure::Abandoned),
        }
    }

    /// Operator: loads `model` ahead of demand (on `gpu`, or where it needs
    /// the fewest evictions) and answers when it is loaded. The load is a
    /// child of `span`.
    pub async fn preload(
        &self,
        model: &str,
        gpu: Option<GpuId>,
        span: &Span,
    ) -> Result<Preloaded, PreloadFailure> {
        let (tx, rx) = oneshot::channel();
        let gpu = self.with_state(span, |s, now| s.preload(model, gpu, tx, now))?;
        match rx.await {
            Ok(Ok(took)) => Ok(Preloaded { gpu, took }),
            Ok(Err(e)) => Err(PreloadFailure::Failed(e)),
            Err(_) => Err(PreloadFailure::Abandoned),
        }
    }
}

/// A pending admission's answer, cancelled if dropped unanswered.
struct Pending {
    node: Arc<Node>,
    ticket: TicketId,
    rx: Option<oneshot::Receiver<Answer>>,
}

impl Pending {
    async fn answer(mut self) -> Option<Answer> {
        let outcome = self.rx.as_mut()?.await.ok();
        self.rx = None;
        outcome
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let ticket = self.ticket;
        // Under the lock: grants are made under it, so none can slip in
        // between looking and cancelling.
        self.node.with_state(&Span::current(), |s, now| {
            let granted = match rx.try_recv() {
                Ok(Ok(lease)) => Some(lease),
                _ => None,
            };
            s.cancel(ticket, granted, now)
        });
    }
}
