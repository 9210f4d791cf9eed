//! Samples of a run over simulated time, for `simulate --plot`: the queue,
//! the interval's warm hit rate and each GPU's pool use, taken at fixed
//! steps of simulated time as the event loop passes them.

use super::plot::{Sample, Timeline};
use crate::engine::{Engine, Outcome};

/// Samples per run: enough for a smooth line, few enough to stay cheap.
const SAMPLES: u64 = 240;

pub(super) struct Sampler {
    every_ms: u64,
    next_ms: u64,
    /// Grants counted by the engine at the previous sample.
    warm: u64,
    granted: u64,
    /// Simulated time the arrivals run for (the progress's whole).
    duration_ms: u64,
    pub(super) timeline: Timeline,
}

impl Sampler {
    pub(super) fn new(duration_ms: u64, engine: &Engine) -> Sampler {
        let every_ms = (duration_ms / SAMPLES).max(1_000);
        Sampler {
            every_ms,
            next_ms: every_ms,
            warm: 0,
            granted: 0,
            duration_ms: duration_ms.max(1),
            timeline: Timeline {
                gpus: (0..engine.gpu_count())
                    .map(|i| format!("GPU {i}"))
                    .collect(),
                samples: Vec::new(),
            },
        }
    }

    /// Takes the samples due before the loop moves to `to_ms`: the state
    /// then is the state at each of those instants. Reports the share of
    /// the arrival period done.
    pub(super) fn before(&mut self, to_ms: u64, engine: &Engine, progress: &mut dyn FnMut(f64)) {
        if to_ms < self.next_ms {
            return;
        }
        let status = engine.status();
        let warm = status.counters.outcome(Outcome::GrantedWarm);
        let granted = warm + status.counters.outcome(Outcome::GrantedCold);
        let pool_used: Vec<f64> = status
            .gpus
            .iter()
            .map(|g| {
                let used = g.carved_mib + g.weights_mib + g.working_mib;
                used as f64 / g.usable_mib.max(1) as f64
            })
            .collect();
        while self.next_ms <= to_ms {
            self.timeline.samples.push(Sample {
                t_s: self.next_ms as f64 / 1000.0,
                queued: status.queued as u64,
                waiting_on_load: status.waiting_on_load as u64,
                granted_warm: warm - self.warm,
                granted: granted - self.granted,
                pool_used: pool_used.clone(),
            });
            // Grants between samples belong to the first sample after them.
            self.warm = warm;
            self.granted = granted;
            self.next_ms += self.every_ms;
        }
        progress((to_ms as f64 / self.duration_ms as f64).min(1.0));
    }
}
