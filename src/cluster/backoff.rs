//! Exponential backoff for failed writes, with time passed in.

use std::time::Duration;

use tokio::time::Instant;

/// The first retry waits this long.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// No retry waits longer: an API server back from an outage hears from us
/// within five minutes.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One kind of write's failure streak: 1 s, 2 s, 4 s … 5 min, reset on
/// success. No jitter: one daemon writes one object, so there is no herd of
/// retries from this process to spread (the nodes of a cluster fail at
/// different moments anyway).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (≥ 1).
    pub(crate) fn delay(failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        BACKOFF_MIN
            .saturating_mul(1u32 << doublings)
            .min(BACKOFF_MAX)
    }

    /// Whether a write may be tried at `now`.
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// When the next try is allowed, while a streak lasts.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Records a failure at `now`; returns the number of failures in a row
    /// (1 for the first of a streak, the one worth a warning).
    pub(crate) fn failed(&mut self, now: Instant) -> u32 {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + Backoff::delay(self.failures));
        self.failures
    }

    /// Records a success; returns how many failures the streak it ends had.
    pub(crate) fn succeeded(&mut self) -> u32 {
        self.retry_at = None;
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_one_second_to_five_minutes() {
        let secs: Vec<u64> = (1..=12).map(|n| Backoff::delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(Backoff::delay(u32::MAX), BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_streak() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.ready(t0));
        assert_eq!(b.failed(t0), 1);
        assert_eq!(b.failed(t0), 2);
        assert_eq!(b.retry_at(), Some(t0 + Duration::from_secs(2)));
        assert!(!b.ready(t0 + Duration::from_secs(1)));
        assert!(b.ready(t0 + Duration::from_secs(2)));
        assert_eq!(b.succeeded(), 2);
        assert!(b.ready(t0));
        assert_eq!(b.failed(t0), 1);
        assert_eq!(b.retry_at(), Some(t0 + BACKOFF_MIN));
    }
}
