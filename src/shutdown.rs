//! Shutdown as a value: one [`Trigger`], any number of [`Signal`]s.
//!
//! Every long-lived task takes a `Signal` when it is spawned and ends when
//! it fires. The trigger fires once, when the daemon begins shutting down
//! — or when it is dropped, so that a start that fails half-way stops
//! whatever it had already started (the same shape as mini-redis's
//! `shutdown.rs`, over a `watch` channel).

use tokio::sync::watch;

/// Fires the shutdown, once.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

/// Hears the shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Signal(watch::Receiver<bool>);

impl Trigger {
    pub(crate) fn new() -> Trigger {
        Trigger(watch::channel(false).0)
    }

    pub(crate) fn signal(&self) -> Signal {
        Signal(self.0.subscribe())
    }

    /// Fires; true the first time only.
    pub(crate) fn fire(&self) -> bool {
        !self.0.send_replace(true)
    }
}

impl Signal {
    /// Resolves once the trigger has fired or is gone.
    pub(crate) async fn fired(&mut self) {
        // The guard `wait_for` returns is dropped here: it must not live
        // across an await in a spawned task (it is not Send).
        let _ = self.0.wait_for(|down| *down).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_fires_with_its_trigger_and_when_the_trigger_is_dropped() {
        let trigger = Trigger::new();
        let mut signal = trigger.signal();
        assert!(trigger.fire(), "the first fire");
        assert!(!trigger.fire(), "only the first");
        signal.fired().await;

        let dropped = Trigger::new();
        let mut orphan = dropped.signal();
        drop(dropped);
        orphan.fired().await;
    }
}
