//! The simulator's own pseudo-random numbers: SplitMix64 seeding xoshiro256**.
//!
//! Written out here (about fifty lines) instead of taken from `rand` so that
//! a seed names the same workload forever: `rand` documents that its
//! generators' output and its distributions' sampling may change between
//! releases, and a report that changes with a dependency bump is useless for
//! comparing policies or engine versions. Both algorithms are the published
//! reference ones (Vigna, <https://prng.di.unimi.it/>); the distributions
//! below are textbook (inverse transform, Lemire's unbiased range reduction).

/// SplitMix64: a tiny generator used only to expand one `u64` seed into
/// well-mixed state words, as the xoshiro authors recommend.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// xoshiro256**: fast, 256 bits of state, passes BigCrush; plenty for
/// workload synthesis (it is not meant to be unpredictable).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The next independent stream from `seeder`: four SplitMix64 outputs
    /// (never all zero, which xoshiro cannot leave).
    pub fn from_seeder(seeder: &mut SplitMix64) -> Rng {
        let s = [
            seeder.next_u64(),
            seeder.next_u64(),
            seeder.next_u64(),
            seeder.next_u64(),
        ];
        Rng { s }
    }

    /// A single stream from a seed (tests).
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Rng {
        Rng::from_seeder(&mut SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject).
    /// `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Exponential with the given mean (inverse transform). Poisson arrivals
    /// are exponential gaps; so are the task durations.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 − unit() is in (0, 1], so the logarithm is finite.
        -(1.0 - self.unit()).ln() * mean
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v
    }
}

/// Zipf(s) over `n` ranks: rank `r` (1-based) has weight `1 / r^s`.
///
/// Sampling is a binary search over the cumulative weights, O(log n), exact
/// for any `s ≥ 0` (`s = 0` is uniform); `n` is the number of model variants,
/// small enough that the table costs nothing.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// Cumulative weights; the last entry is the total.
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n ≥ 1`, `s` finite and `≥ 0` (the caller validates).
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cdf = (1..=n)
            .map(|r| {
                total += (r as f64).powf(-s);
                total
            })
            .collect();
        Zipf { cdf }
    }

    /// A rank in `0..n` (0 = most popular).
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self.cdf.last().expect("Zipf over at least one rank");
        let u = rng.unit() * total;
        // The first rank whose cumulative weight exceeds u; min() guards the
        // last rank against rounding.
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// The probability of rank `r` (tests).
    #[cfg(test)]
    pub fn probability(&self, r: usize) -> f64 {
        let total = *self.cdf.last().expect("Zipf over at least one rank");
        let below = if r == 0 { 0.0 } else { self.cdf[r - 1] };
        (self.cdf[r] - below) / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_output() {
        // First outputs of the reference splitmix64.c seeded with 0.
        let mut s = SplitMix64::new(0);
        assert_eq!(s.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(s.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
        let a: Vec<u64> = {
            let mut r = Rng::seeded(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::seeded(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::seeded(43);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn unit_values_lie_in_the_half_open_interval_with_mean_one_half() {
        let mut r = Rng::seeded(1);
        let n = 200_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
            sum += u;
        }
        let mean = sum / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    }

    #[test]
    fn below_is_uniform_over_its_range() {
        let mut r = Rng::seeded(2);
        let mut counts = [0u32; 7];
        let n = 70_000;
        for _ in 0..n {
            counts[r.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn exponential_samples_have_the_requested_mean() {
        let mut r = Rng::seeded(3);
        let n = 200_000;
        let sum: f64 = (0..n).map(|_| r.exponential(250.0)).sum();
        let mean = sum / n as f64;
        assert!((mean - 250.0).abs() < 250.0 * 0.01, "mean {mean}");
    }

    #[test]
    fn poisson_arrivals_at_a_rate_count_about_rate_times_duration() {
        // 20/s for 1000 s: 20 000 expected, standard deviation ~141.
        let mut r = Rng::seeded(4);
        let (mut t, mut count) = (0.0, 0u32);
        loop {
            t += r.exponential(1.0 / 20.0);
            if t >= 1000.0 {
                break;
            }
            count += 1;
        }
        assert!((19_500..20_500).contains(&count), "{count} arrivals");
    }

    #[test]
    fn permutations_hold_every_index_once_and_depend_on_the_seed() {
        let p = Rng::seeded(5).permutation(32);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..32).collect::<Vec<_>>());
        assert_ne!(p, Rng::seeded(6).permutation(32));
        assert_ne!(
            p, sorted,
            "a 32-element shuffle is almost surely not identity"
        );
    }

    #[test]
    fn zipf_frequencies_follow_the_power_law() {
        let z = Zipf::new(10, 1.0);
        let harmonic: f64 = (1..=10).map(|r| 1.0 / r as f64).sum();
        assert!((z.probability(0) - 1.0 / harmonic).abs() < 1e-12);
        let mut r = Rng::seeded(7);
        let n = 200_000;
        let mut counts = [0u32; 10];
        for _ in 0..n {
            counts[z.sample(&mut r)] += 1;
        }
        for (rank, &c) in counts.iter().enumerate() {
            let want = z.probability(rank) * n as f64;
            assert!(
                (c as f64 - want).abs() < want * 0.05 + 30.0,
                "rank {rank}: {c} vs {want:.0}"
            );
        }
        assert!(counts[0] > 2 * counts[1] - 2 * counts[1] / 10, "{counts:?}");
    }

    #[test]
    fn zipf_with_exponent_zero_is_uniform() {
        let z = Zipf::new(4, 0.0);
        for r in 0..4 {
            assert!((z.probability(r) - 0.25).abs() < 1e-12);
        }
    }
}
