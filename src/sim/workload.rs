//! The synthetic workload: the expanded catalog, the GPUs, and the streams
//! of arrivals and faults.
//!
//! Every random draw here comes from streams seeded only by `--seed`, and
//! the number of draws per arrival is fixed. So the request stream does not
//! depend on what the engine decides: two policies run under one seed see
//! exactly the same requests at the same times, which is what makes their
//! reports comparable.

use crate::config::{Config, ModelSpec};
use crate::engine::GpuSpec;
use crate::gpu;

use super::Options;
use super::rng::{Rng, SplitMix64, Zipf};

/// Every catalog entry as `variants` fine-tunes (`sd3b#3`) sharing the
/// base's sizes and times, in catalog order. Fine-tunes are what makes a
/// node's cache interesting: a handful of base models fits in memory, dozens
/// of their variants do not.
pub fn expand_catalog(models: &[ModelSpec], variants: u32) -> Vec<ModelSpec> {
    models
        .iter()
        .flat_map(|base| {
            (0..variants).map(move |v| ModelSpec {
                name: format!("{}#{v}", base.name),
                ..base.clone()
            })
        })
        .collect()
}

/// The config's simulated GPUs, each entry expanded `count` times, with the
/// same synthetic UUIDs the simulated inventory gives them.
pub fn gpus(config: &Config) -> Vec<GpuSpec> {
    config
        .gpus
        .simulated
        .iter()
        .flat_map(|entry| (0..entry.count).map(move |_| entry))
        .zip(0u32..)
        .map(|(entry, index)| GpuSpec {
            uuid: gpu::simulated_uuid(&entry.name, index),
            name: entry.name.clone(),
            total_mib: entry.memory_mib,
        })
        .collect()
}

/// One task a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Milliseconds since the start of the run.
    pub at_ms: u64,
    /// Index into the pods (`pod-<n>` tokens).
    pub pod: u32,
    /// Index into the expanded catalog.
    pub model: u32,
    /// How long the task runs once granted (≥ 1 ms).
    pub task_ms: u64,
}

/// Poisson arrivals with Zipf model popularity; an iterator that ends at the
/// run's duration, generated lazily so a million requests cost no memory.
#[derive(Debug, Clone)]
pub struct Arrivals {
    rng: Rng,
    zipf: Zipf,
    /// Rank → model index: which variant is most popular is itself random,
    /// so a seed does not always favour the first catalog entry.
    by_rank: Vec<u32>,
    /// Mean task time of each model, in ms.
    task_ms: Vec<f64>,
    pods: u32,
    mean_gap_ms: f64,
    end_ms: f64,
    /// Exact time of the next arrival (kept fractional; rounded down per arrival).
    next_ms: f64,
}

impl Arrivals {
    pub fn new(
        models: &[ModelSpec],
        options: &Options,
        catalog_rng: &mut Rng,
        rng: Rng,
    ) -> Arrivals {
        let by_rank = catalog_rng
            .permutation(models.len())
            .into_iter()
            .map(|m| m as u32)
            .collect();
        let mut a = Arrivals {
            rng,
            zipf: Zipf::new(models.len(), options.zipf),
            by_rank,
            task_ms: models.iter().map(|m| m.task_ms as f64).collect(),
            pods: options.pods,
            mean_gap_ms: 1000.0 / options.rate_per_s,
            end_ms: options.duration.as_secs_f64() * 1000.0,
            next_ms: 0.0,
        };
        a.next_ms = a.rng.exponential(a.mean_gap_ms);
        a
    }

    /// The model with popularity rank `rank` (0 = most popular).
    #[cfg(test)]
    pub fn model_at_rank(&self, rank: usize) -> u32 {
        self.by_rank[rank]
    }
}

impl Iterator for Arrivals {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        if self.next_ms >= self.end_ms {
            return None;
        }
        let at_ms = self.next_ms as u64;
        // Always four draws per arrival, in this order: the stream stays
        // aligned whatever the values are.
        let pod = self.rng.below(u64::from(self.pods)) as u32;
        let model = self.by_rank[self.zipf.sample(&mut self.rng)];
        let task_ms = (self.rng.exponential(self.task_ms[model as usize]).round() as u64).max(1);
        self.next_ms += self.rng.exponential(self.mean_gap_ms);
        Some(Arrival {
            at_ms,
            pod,
            model,
            task_ms,
        })
    }
}

/// GPU faults as a Poisson process: when each fault starts, and a uniform
/// draw the simulator turns into "which healthy GPU".
#[derive(Debug, Clone)]
pub struct Faults {
    rng: Rng,
    /// `None` when faults are off.
    mean_gap_ms: Option<f64>,
    end_ms: f64,
    next_ms: f64,
}

/// One fault: at `at_ms`, the `pick`-th healthy GPU (modulo their number)
/// fails. Drawing `pick` before knowing how many GPUs are healthy keeps the
/// stream aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub at_ms: u64,
    pub pick: u64,
}

impl Faults {
    pub fn new(options: &Options, mut rng: Rng) -> Faults {
        let mean_gap_ms =
            (options.faults_per_hour > 0.0).then(|| 3_600_000.0 / options.faults_per_hour);
        let next_ms = mean_gap_ms.map_or(f64::INFINITY, |m| rng.exponential(m));
        Faults {
            rng,
            mean_gap_ms,
            end_ms: options.duration.as_secs_f64() * 1000.0,
            next_ms,
        }
    }
}

impl Iterator for Faults {
    type Item = Fault;

    fn next(&mut self) -> Option<Fault> {
        let mean = self.mean_gap_ms?;
        if self.next_ms >= self.end_ms {
            return None;
        }
        let fault = Fault {
            at_ms: self.next_ms as u64,
            pick: self.rng.next_u64(),
        };
        self.next_ms += self.rng.exponential(mean);
        Some(fault)
    }
}

/// The run's independent streams, all from one seed: the popularity
/// permutation, arrivals, faults. Adding a stream at the end never changes
/// the earlier ones.
pub fn streams(seed: u64) -> (Rng, Rng, Rng) {
    let mut seeder = SplitMix64::new(seed);
    let catalog = Rng::from_seeder(&mut seeder);
    let arrivals = Rng::from_seeder(&mut seeder);
    let faults = Rng::from_seeder(&mut seeder);
    (catalog, arrivals, faults)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn options() -> Options {
        Options {
            duration: Duration::from_secs(600),
            ..super::super::Scenario::Overload.options()
        }
    }

    fn arrivals(seed: u64, options: &Options) -> (Vec<ModelSpec>, Arrivals) {
        let models = expand_catalog(&Config::dev().models, options.variants);
        let (mut catalog, rng, _) = streams(seed);
        let a = Arrivals::new(&models, options, &mut catalog, rng);
        (models, a)
    }

    #[test]
    fn variants_share_the_base_models_sizes_and_get_distinct_names() {
        let base = Config::dev().models;
        let models = expand_catalog(&base, 3);
        assert_eq!(models.len(), base.len() * 3);
        assert_eq!(models[0].name, format!("{}#0", base[0].name));
        assert_eq!(models[5].name, format!("{}#2", base[1].name));
        assert_eq!(models[5].weights_mib, base[1].weights_mib);
        assert_eq!(models[5].load_ms, base[1].load_ms);
    }

    #[test]
    fn gpus_expand_the_count_of_each_simulated_entry() {
        let config = Config::dev();
        let want: u32 = config.gpus.simulated.iter().map(|g| g.count).sum();
        let gpus = gpus(&config);
        assert_eq!(gpus.len(), want as usize);
        assert_ne!(gpus[0].uuid, gpus[1].uuid);
    }

    #[test]
    fn arrivals_come_at_the_requested_rate_in_time_order() {
        let options = options();
        let (_, a) = arrivals(1, &options);
        let all: Vec<Arrival> = a.collect();
        // 20/s for 600 s: 12 000 expected, sd ~110.
        assert!((11_600..12_400).contains(&all.len()), "{}", all.len());
        assert!(all.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(
            all.iter()
                .all(|a| a.at_ms < 600_000 && a.pod < options.pods)
        );
    }

    #[test]
    fn task_times_average_to_the_models_task_time() {
        let options = Options {
            duration: Duration::from_secs(3600),
            ..super::super::Scenario::Overload.options()
        };
        let (models, a) = arrivals(2, &options);
        let mut sum = vec![0u64; models.len()];
        let mut count = vec![0u64; models.len()];
        for x in a {
            sum[x.model as usize] += x.task_ms;
            count[x.model as usize] += 1;
        }
        let busiest = (0..models.len()).max_by_key(|&m| count[m]).expect("models");
        let mean = sum[busiest] as f64 / count[busiest] as f64;
        let want = models[busiest].task_ms as f64;
        assert!(count[busiest] > 5_000, "{}", count[busiest]);
        assert!((mean - want).abs() < want * 0.05 + 0.5, "{mean} vs {want}");
    }

    #[test]
    fn the_most_popular_model_is_the_permutations_first_rank() {
        let (models, a) = arrivals(3, &options());
        let top = a.model_at_rank(0);
        let mut count = vec![0u32; models.len()];
        for x in a {
            count[x.model as usize] += 1;
        }
        let busiest = (0..models.len()).max_by_key(|&m| count[m]).expect("models");
        assert_eq!(busiest as u32, top);
    }

    #[test]
    fn faults_are_off_at_rate_zero_and_poisson_otherwise() {
        let (_, _, rng) = streams(4);
        assert_eq!(Faults::new(&options(), rng.clone()).count(), 0);
        let on = Options {
            duration: Duration::from_secs(100 * 3600),
            faults_per_hour: 6.0,
            ..super::super::Scenario::Overload.options()
        };
        let n = Faults::new(&on, rng).count();
        // 600 expected, sd ~24.
        assert!((520..680).contains(&n), "{n} faults");
    }
}
