//! What health kubelet is told: Unhealthy at once, Healthy again only after
//! the GPU has stayed healthy for `recovery` (NVIDIA's plugin never recovers
//! a device; flapping would bounce scheduling). Pure: time is an argument.

use std::time::Duration;

use crate::engine::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GpuState {
    advertised: bool,
    /// Healthy again since, while still advertised Unhealthy.
    healthy_since: Option<Time>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Advertised {
    recovery: Duration,
    gpus: Vec<GpuState>,
}

impl Advertised {
    /// All GPUs start as the inventory reported them (no hysteresis at start).
    pub(crate) fn new(initial: &[bool], recovery: Duration) -> Advertised {
        Advertised {
            recovery,
            gpus: initial
                .iter()
                .map(|&h| GpuState {
                    advertised: h,
                    healthy_since: None,
                })
                .collect(),
        }
    }

    /// What kubelet should see now, per GPU.
    pub(crate) fn healthy(&self) -> Vec<bool> {
        self.gpus.iter().map(|g| g.advertised).collect()
    }

    /// The engine's current health of every GPU at `now`; returns whether
    /// the advertised health changed.
    pub(crate) fn observe(&mut self, actual: &[bool], now: Time) -> bool {
        let mut changed = false;
        for (g, &healthy) in self.gpus.iter_mut().zip(actual) {
            match (healthy, g.advertised) {
                (false, true) => {
                    g.advertised = false;
                    g.healthy_since = None;
                    changed = true;
                }
                (false, false) => g.healthy_since = None,
                (true, false) => {
                    let since = *g.healthy_since.get_or_insert(now);
                    if now.saturating_since(since) >= self.recovery {
                        g.advertised = true;
                        g.healthy_since = None;
                        changed = true;
                    }
                }
                (true, true) => {}
            }
        }
        changed
    }

    /// When a recovering GPU is due to be advertised Healthy.
    pub(crate) fn next_recovery(&self) -> Option<Time> {
        self.gpus
            .iter()
            .filter_map(|g| g.healthy_since)
            .min()
            .map(|since| since + self.recovery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn unhealthy_is_advertised_at_once_and_healthy_only_after_the_recovery_period() {
        let mut a = Advertised::new(&[true, true], Duration::from_secs(60));
        assert!(a.observe(&[false, true], t(1_000)));
        assert_eq!(a.healthy(), vec![false, true]);
        assert!(
            !a.observe(&[true, true], t(2_000)),
            "healthy again, but not for long enough"
        );
        assert_eq!(a.next_recovery(), Some(t(62_000)));
        assert!(!a.observe(&[true, true], t(61_999)));
        assert!(a.observe(&[true, true], t(62_000)));
        assert_eq!(a.healthy(), vec![true, true]);
        assert_eq!(a.next_recovery(), None);
    }

    #[test]
    fn a_relapse_restarts_the_recovery_period() {
        let mut a = Advertised::new(&[true], Duration::from_secs(10));
        a.observe(&[false], t(0));
        a.observe(&[true], t(1_000));
        a.observe(&[false], t(5_000));
        a.observe(&[true], t(6_000));
        assert!(
            !a.observe(&[true], t(11_000)),
            "10 s since 1 s, but it relapsed at 5 s"
        );
        assert!(a.observe(&[true], t(16_000)));
    }
}
