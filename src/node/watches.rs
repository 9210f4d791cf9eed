//! Each pod's share of Watch streams (issue 16): a stream costs a task, a
//! channel and a receiver on the pod's bus channel, so one pod must not be
//! able to open them without limit.
//!
//! The count is the bus's own (receivers on the pod's channel), checked and
//! taken under the state lock, so two streams opened at once cannot both
//! take the last place, and a stream's place frees itself when its receiver
//! is dropped (the stream's task ends when the client goes).

use std::sync::Arc;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use tokio::sync::broadcast;

use super::{Node, Shared};

/// The default per pod until the daemon sets the configured one.
pub(super) const DEFAULT_PER_POD: u32 = 16;

/// Why a pod may not open another Watch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this pod already holds {limit} Watch streams, its limit (admission.watch_streams_per_pod); \
     close one, or share one stream between the pod's clients"
)]
pub struct TooManyWatches {
    pub limit: u32,
}

impl Node {
    /// Sets how many Watch streams one pod may hold open.
    pub fn set_watch_streams_per_pod(&self, limit: u32) {
        self.watch_limit.store(limit, Ordering::Relaxed);
    }

    /// From now on, the events `token` may see (its own and the node's), on
    /// a channel no other pod's events wake — if the pod has a place left.
    pub(crate) fn subscribe_pod(
        &self,
        token: &Arc<str>,
    ) -> Result<broadcast::Receiver<Shared>, TooManyWatches> {
        let limit = self.watch_limit.load(Ordering::Relaxed);
        let key: Arc<str> = Arc::from(super::token::key(token));
        let token = &key;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.streams_of(token) >= limit as usize {
            return Err(TooManyWatches { limit });
        }
        Ok(state.subscribe_pod(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_support::largest_node;

    #[tokio::test]
    async fn a_pod_gets_its_share_and_closing_one_makes_room() {
        let (node, _w) = largest_node(0);
        node.set_watch_streams_per_pod(2);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("pod-a"), Arc::from("pod-b"));
        let first = node.subscribe_pod(&a).unwrap();
        let _second = node.subscribe_pod(&a).unwrap();
        assert_eq!(
            node.subscribe_pod(&a).unwrap_err(),
            TooManyWatches { limit: 2 }
        );
        let _other = node
            .subscribe_pod(&b)
            .expect("another pod has its own share");
        drop(first);
        let _third = node.subscribe_pod(&a).expect("room again");
        assert_eq!(
            node.subscribe_pod(&a).unwrap_err(),
            TooManyWatches { limit: 2 },
            "and full again"
        );
    }
}
