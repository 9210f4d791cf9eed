//! Where the node's events go, and who wakes for them.
//!
//! Every event goes to one broadcast that the admin socket's Watch streams
//! and the publishers read. A pod's Watch streams read a channel of their
//! token's own, which carries that pod's lease and admission events and the
//! node-level ones (loads, health, queue depth), in order. So a pod's stream
//! never wakes for another pod's leases: with one shared broadcast, 100 open
//! streams of an idle pod cost the pods that admit 52–68 % of their
//! throughput (issue 11), each stream waking, cloning and dropping every
//! lease event.
//!
//! Events are shared (`Arc`), so a channel with many readers clones a
//! pointer per reader, not the event. A reader that falls more than the
//! channel's capacity behind loses the oldest events and learns how many
//! (`RecvError::Lagged`); nothing it does slows the sender.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::event::Event;

/// Events the shared broadcast holds for its slowest reader.
const ALL_BUFFER: usize = 1024;
/// Events a pod's channel holds for its slowest stream.
const POD_BUFFER: usize = 256;

/// An event as every reader receives it.
pub(crate) type Shared = Arc<Event>;

#[derive(Debug)]
pub(crate) struct Bus {
    /// Every event (admin Watch streams, the cluster publisher).
    all: broadcast::Sender<Shared>,
    /// A channel per token with a Watch stream open. An entry whose last
    /// stream has gone is removed by the next event sent to it.
    pods: HashMap<Arc<str>, broadcast::Sender<Shared>>,
}

impl Bus {
    pub(crate) fn new() -> Bus {
        Bus {
            all: broadcast::channel(ALL_BUFFER).0,
            pods: HashMap::new(),
        }
    }

    /// A sender for [`Bus::subscribe_all`] that needs no lock.
    pub(crate) fn all(&self) -> broadcast::Sender<Shared> {
        self.all.clone()
    }

    /// Sends `event` to every reader that may see it; nobody listening is
    /// fine. A pod channel without readers is dropped here.
    pub(crate) fn publish(&mut self, event: Event) {
        let event = Arc::new(event);
        match &event.owner {
            Some(owner) => {
                if let Some(tx) = self.pods.get(owner)
                    && tx.send(Arc::clone(&event)).is_err()
                {
                    self.pods.remove(owner);
                }
            }
            None => self
                .pods
                .retain(|_, tx| tx.send(Arc::clone(&event)).is_ok()),
        }
        let _ = self.all.send(event);
    }

    /// From now on, the events `token` may see: its own and the node's.
    pub(crate) fn subscribe_pod(&mut self, token: &Arc<str>) -> broadcast::Receiver<Shared> {
        match self.pods.get(token) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(POD_BUFFER);
                self.pods.insert(Arc::clone(token), tx);
                rx
            }
        }
    }

    /// How many Watch streams `token` has open.
    pub(crate) fn streams_of(&self, token: &str) -> usize {
        self.pods.get(token).map_or(0, |tx| tx.receiver_count())
    }

    /// Tokens with a channel (some may have no stream left until the next
    /// event reaches them).
    #[cfg(test)]
    pub(crate) fn channels(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Time;
    use crate::node::event::{EventKind, QueueDepth};

    fn event(seq: u64, owner: Option<&str>) -> Event {
        Event {
            seq,
            at: Time::from_millis(seq),
            owner: owner.map(Arc::from),
            kind: EventKind::Queue(QueueDepth::default()),
        }
    }

    fn drain(rx: &mut broadcast::Receiver<Shared>) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            seqs.push(ev.seq);
        }
        seqs
    }

    #[test]
    fn a_pod_hears_its_own_events_and_the_nodes_in_order_and_nobody_elses() {
        let mut bus = Bus::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let mut all = bus.all().subscribe();
        let mut pod_a = bus.subscribe_pod(&a);
        let mut pod_b = bus.subscribe_pod(&b);
        bus.publish(event(1, Some("a")));
        bus.publish(event(2, None));
        bus.publish(event(3, Some("b")));
        bus.publish(event(4, Some("c")));
        bus.publish(event(5, Some("a")));
        assert_eq!(drain(&mut pod_a), vec![1, 2, 5]);
        assert_eq!(drain(&mut pod_b), vec![2, 3]);
        assert_eq!(drain(&mut all), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn streams_are_counted_per_token_and_a_channel_goes_with_its_last_stream() {
        let mut bus = Bus::new();
        let a: Arc<str> = Arc::from("a");
        let first = bus.subscribe_pod(&a);
        let second = bus.subscribe_pod(&a);
        assert_eq!(bus.streams_of("a"), 2);
        assert_eq!(bus.streams_of("b"), 0);
        drop(first);
        assert_eq!(bus.streams_of("a"), 1);
        drop(second);
        assert_eq!(bus.streams_of("a"), 0);
        assert_eq!(bus.channels(), 1, "removed lazily");
        bus.publish(event(1, None));
        assert_eq!(bus.channels(), 0, "the next node-level event removes it");
        let again = bus.subscribe_pod(&a);
        drop(again);
        bus.publish(event(2, Some("a")));
        assert_eq!(bus.channels(), 0, "so does the token's own next event");
    }

    #[test]
    fn a_reader_that_falls_behind_loses_the_oldest_and_is_told_how_many() {
        let mut bus = Bus::new();
        let a: Arc<str> = Arc::from("a");
        let mut slow = bus.subscribe_pod(&a);
        let total = POD_BUFFER as u64 + 10;
        for seq in 1..=total {
            bus.publish(event(seq, Some("a")));
        }
        match slow.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(slow.try_recv().map(|e| e.seq).ok(), Some(11));
    }
}
