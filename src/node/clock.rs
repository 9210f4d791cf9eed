//! The engine's time, in the shell.

use std::time::Duration;

use crate::engine::Time;

/// Milliseconds since the daemon started, as the engine counts time.
/// `tokio::time::Instant` so that tests can pause and advance time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock {
            start: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> Time {
        Time::from_millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn instant(&self, t: Time) -> tokio::time::Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    /// Sleeps until `at`; with no deadline, forever (a branch of a
    /// `select!` that other branches end).
    pub(crate) async fn sleep_until(self, at: Option<Time>) {
        match at {
            Some(at) => tokio::time::sleep_until(self.instant(at)).await,
            None => std::future::pending().await,
        }
    }
}
