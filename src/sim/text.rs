//! The plain-text report: one fact per line, readable in a terminal.
//!
//! Only the line starting with [`TIMING_PREFIX`] holds wall-clock figures,
//! so tests (and people diffing two runs) can drop it and compare the rest
//! byte for byte.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::time::Duration;

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
        let w = &self.workload;
        let policy = policy_name(self.policy);
        let gpus: Vec<(String, u64)> = self
            .gpus
            .iter()
            .map(|g| (g.name.clone(), g.total_mib))
            .collect();
        writeln!(
            s,
            "simulate: scenario {}, seed {}, policy {policy}; {}, {} models ({} × {} variants)",
            self.scenario.name(),
            self.seed,
            gpu_summary(&gpus),
            w.models,
            w.base_models,
            w.variants
        )?;
        // What a capacity planner reads first: how much was served, what was
        // refused and why, how long it waited.
        let g = &self.grants;
        writeln!(
            s,
            "granted {} of {} requests ({}: {} warm, {} cold); rejected {}{}",
            percent(self.grant_ratio),
            self.requests,
            g.total,
            g.warm,
            g.cold,
            self.rejections.total,
            reasons(&self.rejections.by_reason)
        )?;
        let wait = self.queue_wait_ms.map_or("no grants".to_owned(), |p| {
            format!("p50 {} ms, p99 {} ms, max {} ms", p.p50, p.p99, p.max)
        });
        writeln!(
            s,
            "queue wait {wait}; hit rate {}; GPUs busy {} of the time",
            percent(self.hit_rate),
            percent(self.gpu_busy)
        )?;
        let per_model: Vec<String> = self
            .by_model
            .iter()
            .map(|m| format!("{} {}", m.name, percent(m.grant_ratio)))
            .collect();
        writeln!(
            s,
            "fairness: lowest model grant ratio ÷ overall {}{}; by model {}",
            self.fairness
                .min_over_overall
                .map_or("n/a".to_owned(), |f| format!("{f:.2}")),
            self.fairness
                .lowest
                .as_ref()
                .map_or(String::new(), |m| format!(" ({m})")),
            per_model.join(", ")
        )?;
        writeln!(
            s,
            "workload: arrivals {}/s for {}, zipf s={}, {} pods × {} slots, timeout {}, lease ttl {}; usable {} MiB in all ({} MiB reserve each); drained at {}",
            w.rate_per_s,
            duration::format(Duration::from_millis(w.duration_ms)),
            w.zipf,
            w.pods,
            w.slots,
            duration::format(Duration::from_millis(w.timeout_ms)),
            duration::format(Duration::from_millis(w.lease_ttl_ms)),
            self.bound.capacity_mib,
            self.reserve_mib,
            seconds(self.simulated_ms)
        )?;
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
                "  {:<width$} {} requests, {} granted ({}), hit rate {}, {wait}",
                m.name,
                m.requests,
                m.granted,
                percent(m.grant_ratio),
                percent(hit)
            )?;
        }
        let l = &self.loads;
        writeln!(
            s,
            "loads: {} cold loads, {} MiB loaded, {:.3} load-seconds; {} evictions ({} MiB)",
            l.cold_loads,
            l.loaded_mib,
            l.load_ms as f64 / 1000.0,
            l.evictions,
            l.evicted_mib
        )?;
        writeln!(
            s,
            "  {} loads finished with no one left waiting (every waiter timed out during the load); {} copied a model another GPU held",
            l.unused, l.duplicate
        )?;
        if let Some(m) = &self.memory_use {
            let p = |x: f64| percent(Some(x));
            writeln!(
                s,
                "memory-time: running tasks {}, copies in use {}, loads {} (weights {}, waiting tasks {}), idle copies {}, free {} (held for the head {})",
                p(m.tasks),
                p(m.copies_in_use),
                p(m.loading_weights + m.load_waiters),
                p(m.loading_weights),
                p(m.load_waiters),
                p(m.idle_copies),
                p(m.free),
                p(m.held_for_head)
            )?;
        }
        writeln!(
            s,
            "clients: {} cancelled, {} keep-alives, {} leases expired",
            self.clients.cancelled, self.clients.keep_alives, self.clients.expired
        )?;
        writeln!(
            s,
            "faults: {} injected ({} unhealthy each, {} skipped: no healthy GPU), {} leases revoked, {} late load results ignored",
            self.faults.injected,
            duration::format(Duration::from_millis(w.fault_duration_ms)),
            self.faults.skipped,
            self.faults.revoked,
            l.late_results
        )?;
        if !self.anomalies.is_empty() {
            writeln!(
                s,
                "anomalies: {} (first: {})",
                self.anomalies.len(),
                self.anomalies[0]
            )?;
        }
        let b = &self.bound;
        let covered = if b.points < self.grants.total as usize {
            format!("the first {} of {}", b.points, self.grants.total)
        } else {
            b.points.to_string()
        };
        writeln!(
            s,
            "offline optimum (FOO interval LP) over {covered} granted admissions on one pooled {} MiB cache, less the running tasks' working memory:",
            b.capacity_mib
        )?;
        for c in b.comparisons() {
            let (label, fmt): (&str, fn(u64) -> String) = match c.cost {
                Cost::LoadTime => ("load time", seconds),
                Cost::Bytes => ("MiB loaded", |v| format!("{v} MiB")),
                Cost::Count => ("loads", |v| v.to_string()),
            };
            writeln!(
                s,
                "  {label:<10} pooled optimum between {} and {} (gap {}, compulsory {}); {policy} paid {} → ≤ {} optimal",
                fmt(c.lower),
                fmt(c.upper),
                percent(c.gap),
                fmt(c.compulsory),
                fmt(c.policy),
                times(c.ratio)
            )?;
        }
        let e = &self.engine;
        let dps = e
            .decisions_per_s
            .map_or("n/a".to_owned(), |d| format!("{:.2} M", d / 1e6));
        writeln!(
            s,
            "{TIMING_PREFIX} {} calls in {:.3} ms → {dps} decisions/s; whole run {:.3} ms",
            e.calls, e.time_ms, e.wall_ms
        )
    }
}

/// ` (deadline_exceeded 30, queue_full 2)`, or nothing when there are none.
fn reasons(by_reason: &BTreeMap<&'static str, u64>) -> String {
    if by_reason.is_empty() {
        return String::new();
    }
    let mut v: Vec<(&str, u64)> = by_reason.iter().map(|(k, n)| (*k, *n)).collect();
    // Most frequent first; ties by name.
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(" ({})", parts.join(", "))
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
