//! How well each model has been served lately: the figure that decides who
//! gets the head reservation under contention (see [`super::dispatch`]).
//!
//! Per model, two exponentially decayed counts with the same half-life:
//! `demand` (admissions that competed for node capacity) and `served`
//! (those that got a lease). Their ratio is the model's recent grant ratio;
//! decaying both by one factor leaves it unchanged, so each model decays
//! lazily, on its own updates, and ratios compare at any time.
//!
//! What counts as demand is chosen so that a pod cannot move the figure by
//! asking for more than its own bounds allow: grants; admissions refused
//! because the *node* was full (`QueueFull`, `NoCapacityNow`); and pending
//! admissions that ended unserved after competing (they had a free slot of
//! their pod when a pass tried them). A pod's admissions refused by its own
//! bounds, or waiting only for its own slot, never count.

use super::types::{ModelId, Time};

/// How fast old history fades: a minute ago weighs half as much as now.
pub(super) const HALF_LIFE_MS: f64 = 60_000.0;

/// The decayed counts of one model.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    demand: f64,
    served: f64,
    /// When both were last decayed.
    at: Time,
}

impl Counts {
    fn decay_to(&mut self, now: Time) {
        if now > self.at {
            let f = (-((now.as_millis() - self.at.as_millis()) as f64) / HALF_LIFE_MS).exp2();
            self.demand *= f;
            self.served *= f;
            self.at = now;
        }
    }
}

/// Every model's service record, plus the model whose turn it is.
#[derive(Debug, Clone)]
pub(super) struct Fairness {
    counts: Vec<Counts>,
    /// After its head is placed, a model keeps the head for its next blocked
    /// admission until this time: the copy it just loaded serves a batch
    /// before another model's head may evict it.
    turn: Option<(ModelId, Time)>,
}

impl Fairness {
    pub fn new(models: usize) -> Fairness {
        Fairness {
            counts: vec![Counts::default(); models],
            turn: None,
        }
    }

    /// An admission of `model` that competed for capacity ended, served or not.
    pub fn record(&mut self, model: ModelId, served: bool, now: Time) {
        if let Some(c) = self.counts.get_mut(model.0 as usize) {
            c.decay_to(now);
            c.demand += 1.0;
            if served {
                c.served += 1.0;
            }
        }
    }

    /// The model's recent grant ratio in millionths; a model with no
    /// recorded demand yet counts as never served (0).
    pub fn ratio_ppm(&self, model: ModelId) -> u64 {
        match self.counts.get(model.0 as usize) {
            Some(c) if c.demand > 0.0 => (c.served / c.demand * 1e6) as u64,
            _ => 0,
        }
    }

    /// Whether `model`'s turn runs at `now`.
    pub fn has_turn(&self, model: ModelId, now: Time) -> bool {
        self.turn
            .is_some_and(|(m, until)| m == model && now <= until)
    }

    /// The first moment after `now` at which the running turn has ended.
    pub fn turn_end(&self, now: Time) -> Option<Time> {
        self.turn
            .filter(|&(_, until)| now <= until)
            .map(|(_, until)| Time::from_millis(until.as_millis() + 1))
    }

    /// `model`'s head was placed at `now`: a turn for it, unless one runs.
    pub fn start_turn(&mut self, model: ModelId, until: Time, now: Time) {
        if !self.has_turn(model, now) {
            self.turn = Some((model, until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_ignores_decay_and_weighs_recent_history_more() {
        let mut f = Fairness::new(1);
        let m = ModelId(0);
        assert_eq!(f.ratio_ppm(m), 0, "no history: never served");
        f.record(m, true, Time::from_millis(0));
        f.record(m, false, Time::from_millis(0));
        assert_eq!(f.ratio_ppm(m), 500_000);
        // One half-life later a miss weighs twice the old ones: 0.5 / 2.0.
        f.record(m, false, Time::from_millis(60_000));
        assert_eq!(f.ratio_ppm(m), 250_000);
    }

    #[test]
    fn a_turn_lasts_until_its_end_and_is_not_restarted_while_it_runs() {
        let mut f = Fairness::new(2);
        let (a, b) = (ModelId(0), ModelId(1));
        f.start_turn(a, Time::from_millis(100), Time::from_millis(0));
        f.start_turn(a, Time::from_millis(500), Time::from_millis(50));
        assert!(f.has_turn(a, Time::from_millis(100)));
        assert!(!f.has_turn(a, Time::from_millis(101)));
        assert!(!f.has_turn(b, Time::from_millis(50)));
    }
}
