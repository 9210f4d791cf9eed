//! One node's annotation publisher, by the daemon's rules
//! (`cluster::publisher`), on the simulator's clock.
//!
//! - A node event marks the annotations stale. While the window is open
//!   (no write within `annotation_interval`), the state is read and written
//!   at once; otherwise it is read and written when the window opens — the
//!   latest state wins, and a state equal to the one written is not written.
//! - An unchanged state is re-stamped and written once [`REFRESH`] has
//!   passed since the last write (the heartbeat).
//!
//! The API server is taken to accept every write at once, and the
//! extender's watch to see it at once: the only staleness is the daemon's.
//!
//! [`REFRESH`]: crate::cluster::residency::REFRESH

use crate::cluster::residency::{self, Annotations};

#[derive(Debug)]
pub struct Publisher {
    interval_ms: u64,
    refresh_ms: u64,
    /// What the API server holds.
    written: Option<Annotations>,
    written_at_ms: Option<u64>,
    /// A node event since the last read.
    stale: bool,
    /// A check at the window's opening is scheduled.
    pub check_scheduled: bool,
    pub writes: u64,
}

/// What the publisher wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing to do.
    Idle,
    /// Read the state now and [`Publisher::offer`] it.
    ReadNow,
    /// Check again at this time (the window opens).
    CheckAt(u64),
}

impl Publisher {
    pub fn new(interval_ms: u64, refresh_ms: u64) -> Publisher {
        Publisher {
            interval_ms,
            refresh_ms,
            written: None,
            written_at_ms: None,
            stale: true,
            check_scheduled: false,
            writes: 0,
        }
    }

    /// A node event: the state may have changed.
    pub fn event(&mut self) {
        self.stale = true;
    }

    fn restamp_due(&self, now_ms: u64) -> bool {
        self.written_at_ms
            .is_none_or(|at| now_ms >= at + self.refresh_ms)
    }

    /// What to do at `now_ms`.
    pub fn next(&self, now_ms: u64) -> Next {
        if !self.stale && !self.restamp_due(now_ms) {
            return Next::Idle;
        }
        match self.written_at_ms.map(|at| at + self.interval_ms) {
            Some(opens) if now_ms < opens => Next::CheckAt(opens),
            _ => Next::ReadNow,
        }
    }

    /// The state read at `now_ms`: written (returns true) unless it equals
    /// what was written and no re-stamp is due.
    pub fn offer(&mut self, read: Annotations, now_ms: u64, domain: &str) -> bool {
        self.stale = false;
        let unchanged = !self.restamp_due(now_ms)
            && self
                .written
                .as_ref()
                .is_some_and(|w| residency::same_state(w, &read, domain));
        if unchanged {
            return false;
        }
        self.written = Some(read);
        self.written_at_ms = Some(now_ms);
        self.writes += 1;
        true
    }

    /// The annotations the API server holds.
    pub fn written(&self) -> Option<&Annotations> {
        self.written.as_ref()
    }

    /// When the next heartbeat is due, after a write.
    pub fn refresh_at(&self) -> Option<u64> {
        self.written_at_ms.map(|at| at + self.refresh_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(q: &str, time: &str) -> Annotations {
        [("d/queue-depth", q), ("d/residency-time", time)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn one_write_per_interval_the_latest_state_and_a_heartbeat_when_quiet() {
        let mut p = Publisher::new(10_000, 60_000);
        assert_eq!(p.next(0), Next::ReadNow);
        assert!(p.offer(state("0", "t0"), 0, "d"));
        assert_eq!(p.next(1), Next::Idle);
        p.event();
        assert_eq!(p.next(3_000), Next::CheckAt(10_000));
        assert_eq!(p.next(10_000), Next::ReadNow);
        // The same state with a newer stamp: not written.
        assert!(!p.offer(state("0", "t10"), 10_000, "d"));
        p.event();
        assert_eq!(p.next(12_000), Next::ReadNow, "the window stays open");
        assert!(p.offer(state("1", "t12"), 12_000, "d"));
        assert_eq!(p.refresh_at(), Some(72_000));
        assert_eq!(p.next(71_999), Next::Idle);
        assert_eq!(p.next(72_000), Next::ReadNow);
        assert!(p.offer(state("1", "t72"), 72_000, "d"), "the heartbeat");
        assert_eq!(p.writes, 3);
        assert_eq!(p.written(), Some(&state("1", "t72")));
    }
}
