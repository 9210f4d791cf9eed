//! The plain-text report: one fact per line, readable in a terminal.
//!
//! Only the line starting with [`TIMING_PREFIX`] holds wall-clock figures,
//! so tests (and people diffing two runs) can drop it and compare the rest
//! byte for byte.

use std::fmt::{self, Write};

use crate::config::duration;

use super::policy_name;
use super::report::{Cost, Report, TIMING_PREFIX};

impl Report {
    /// The readable report; lines starting with [`TIMING_PREFIX`] hold the
    /// only run-to-run differences.
    pub fn text(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_text(&mut s);
        s
    }

    fn write_text(&self, s: &mut String) -> fmt::Result {
        let o = &self.options;
        let policy = policy_name(self.policy);
        writeln!(
            s,
            "simulate: seed {}, policy {policy}, arrivals {}/s for {}, zipf s={}",
            o.seed,
            o.rate_per_s,
            duration::format(o.duration),
            o.zipf
        )?;
        writeln!(
            s,
            "workload: {} models ({} × {} variants), {} pods × {} slots, timeout {}, lease ttl {}",
            self.models,
            self.base_models,
            o.variants,
            o.pods,
            o.slots,
            duration::format(self.timeout),
            duration::format(self.lease_ttl)
        )?;
        writeln!(
            s,
            "gpus: {}; usable {} MiB in all ({} MiB reserve each)",
            gpu_summary(&self.gpus),
            self.capacity_mib,
            self.reserve_mib
        )?;
        writeln!(
            s,
            "requests: {} (drained at {})",
            self.requests,
            seconds(self.simulated_ms)
        )?;
        writeln!(
            s,
            "grants: {} (warm {}, cold {}), hit rate {}",
            self.granted(),
            self.granted_warm,
            self.granted_cold,
            percent(self.hit_rate())
        )?;
        writeln!(
            s,
            "loads: {} cold loads, {} MiB loaded, {:.3} load-seconds; {} evictions ({} MiB)",
            self.cold_loads,
            self.loaded_mib,
            self.load_ms as f64 / 1000.0,
            self.counters.evictions,
            self.counters.evicted_mib
        )?;
        writeln!(
            s,
            "  {} loads finished with no one left waiting (every waiter timed out during the load); {} copied a model another GPU held",
            self.unused_loads, self.duplicate_loads
        )?;
        match self.wait_ms {
            Some(w) => writeln!(
                s,
                "queue wait (ms, over grants): p50 {}, p99 {}, max {}",
                w.p50, w.p99, w.max
            )?,
            None => writeln!(s, "queue wait: no grants")?,
        }
        writeln!(s, "by model (all variants):")?;
        let width = self
            .by_model
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for m in &self.by_model {
            let hit = (m.granted > 0).then(|| m.warm as f64 / m.granted as f64);
            let wait = m.wait_ms.map_or("-".to_owned(), |w| {
                format!("wait p50 {} ms, p99 {} ms", w.p50, w.p99)
            });
            writeln!(
                s,
                "  {:<width$} {} requests, {} granted, hit rate {}, {wait}",
                m.name,
                m.requests,
                m.granted,
                percent(hit)
            )?;
        }
        let nonzero: Vec<String> = self
            .rejections()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(o, n)| format!("{} {n}", o.as_str()))
            .collect();
        let total = self.refused + self.rejected;
        match nonzero.is_empty() {
            true => writeln!(s, "rejections: {total}")?,
            false => writeln!(s, "rejections: {total} ({})", nonzero.join(", "))?,
        }
        writeln!(
            s,
            "clients: {} cancelled, {} keep-alives, {} leases expired",
            self.cancelled, self.keep_alives, self.expired
        )?;
        writeln!(
            s,
            "faults: {} injected ({} unhealthy each, {} skipped: no healthy GPU), {} leases revoked, {} late load results ignored",
            self.faults,
            duration::format(o.fault_duration),
            self.faults_skipped,
            self.revoked,
            self.late_load_results
        )?;
        if !self.anomalies.is_empty() {
            writeln!(
                s,
                "anomalies: {} (first: {})",
                self.anomalies.len(),
                self.anomalies[0]
            )?;
        }
        writeln!(
            s,
            "offline bound: {} granted admissions on one pooled {} MiB cache (a lower bound on any policy):",
            self.granted(),
            self.capacity_mib
        )?;
        for c in &self.comparisons {
            let (label, fmt): (&str, fn(u64) -> String) = match c.cost {
                Cost::LoadTime => ("load time", seconds),
                Cost::Bytes => ("MiB loaded", |v| format!("{v} MiB")),
                Cost::Count => ("loads", |v| v.to_string()),
            };
            writeln!(
                s,
                "  {label:<10} {policy} {}, optimal ≥ {} (compulsory {}) → load cost ≤ {} optimal",
                fmt(c.policy),
                fmt(c.bound.value),
                fmt(c.bound.compulsory),
                times(c.ratio())
            )?;
        }
        let dps = self
            .decisions_per_second()
            .map_or("n/a".to_owned(), |d| format!("{:.2} M", d / 1e6));
        writeln!(
            s,
            "{TIMING_PREFIX} {} calls in {:.3} ms → {dps} decisions/s; whole run {:.3} ms",
            self.engine_calls,
            self.engine_time.as_secs_f64() * 1e3,
            self.wall_time.as_secs_f64() * 1e3
        )
    }
}

/// `2 × NVIDIA L4 (24576 MiB)`, runs of identical GPUs grouped.
fn gpu_summary(gpus: &[(String, u64)]) -> String {
    let mut groups: Vec<(usize, &(String, u64))> = Vec::new();
    for g in gpus {
        match groups.last_mut() {
            Some((n, last)) if *last == g => *n += 1,
            _ => groups.push((1, g)),
        }
    }
    groups
        .iter()
        .map(|(n, (name, mib))| format!("{n} × {name} ({mib} MiB)"))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03} s", ms / 1000, ms % 1000)
}

fn percent(x: Option<f64>) -> String {
    x.map_or("n/a".to_owned(), |x| format!("{:.2}%", x * 100.0))
}

fn times(x: Option<f64>) -> String {
    x.map_or("n/a".to_owned(), |x| format!("{x:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_gpus_are_grouped() {
        let g = |n: &str, m| (n.to_owned(), m);
        let s = gpu_summary(&[g("L4", 24), g("L4", 24), g("A100", 80)]);
        assert_eq!(s, "2 × L4 (24 MiB) + 1 × A100 (80 MiB)");
    }
}
