//! Human-readable tables for visionctl, in the spirit of nvidia-smi.

use std::fmt::Write;

use pb::watch_event::Event as Body;
use vision_node_daemon::proto::vision::v1 as pb;

/// `1234` → `1.2 s`, `80` → `80 ms`, `90000` → `1m30s`.
pub fn ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

fn mib(v: u64) -> String {
    format!("{v} MiB")
}

/// `[######....]` for `used` of `total`.
fn bar(used: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((used.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

pub fn status(s: &pb::StatusResponse) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {}   gpus: {} ({})   leases: {}   queued: {}   waiting on load: {}",
        s.node,
        s.gpus.len(),
        s.gpu_backend,
        s.active_leases,
        s.queued,
        s.waiting_on_load
    );
    if let Some(r) = &s.runtime {
        let _ = if r.reachable {
            writeln!(o, "runtime {}: reachable", r.kind)
        } else {
            writeln!(
                o,
                "runtime {}: UNREACHABLE for {}: {} (admissions refused)",
                r.kind,
                ms(r.unreachable_ms),
                r.reason
            )
        };
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "GPU  NAME                        HEALTH      USABLE     CARVED    WEIGHTS    WORKING       FREE  POOL"
    );
    for g in &s.gpus {
        let health = match (g.healthy, g.overcommitted) {
            (false, _) => "UNHEALTHY",
            (true, true) => "OVERCOMMIT",
            (true, false) => "ok",
        };
        let used = g.carved_mib + g.weights_mib + g.working_mib;
        let _ = writeln!(
            o,
            "{:>3}  {:<26}  {:<10} {:>10} {:>10} {:>10} {:>10} {:>10}  {} {:>3}%",
            g.index,
            truncate(&g.name, 26),
            health,
            mib(g.usable_mib),
            mib(g.carved_mib),
            mib(g.weights_mib),
            mib(g.working_mib),
            mib(g.free_mib),
            bar(used, g.usable_mib, 10),
            (used * 100).checked_div(g.usable_mib).unwrap_or(0)
        );
        let _ = writeln!(
            o,
            "     {}   total {}, reserve {}, external {}",
            g.uuid,
            mib(g.total_mib),
            mib(g.reserve_mib),
            mib(g.external_mib)
        );
        for r in &g.residents {
            let state = if r.loading {
                "loading".to_owned()
            } else if let Some(idle) = r.idle_ms {
                format!("idle {}", ms(idle))
            } else {
                "in use".to_owned()
            };
            let measured = if r.weights_mib != r.catalog_mib && r.catalog_mib > 0 {
                format!("  (measured; catalog {})", mib(r.catalog_mib))
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "       {:<24} {:>10}  pins {:>2}  {}{}",
                truncate(&r.model, 24),
                mib(r.weights_mib),
                r.pins,
                state,
                measured
            );
        }
        if g.residents_omitted > 0 {
            let _ = writeln!(o, "       … and {} more resident", g.residents_omitted);
        }
    }
    let measured: Vec<&pb::ModelMemory> = s
        .memory
        .iter()
        .filter(|m| m.measured_mib.is_some() || m.returned_mib.is_some())
        .collect();
    if !measured.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "MODEL                        CATALOG   MEASURED   RETURNED"
        );
        let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), mib);
        for m in measured {
            let outgrown = m
                .measured_mib
                .is_some_and(|v| v * 100 > m.catalog_mib * 110);
            let _ = writeln!(
                o,
                "{:<24} {:>11} {:>10} {:>10}{}",
                truncate(&m.model, 24),
                mib(m.catalog_mib),
                or_dash(m.measured_mib),
                or_dash(m.returned_mib),
                if outgrown { "  OUTGREW CATALOG" } else { "" }
            );
        }
    }
    if !s.leases.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "LEASE  MODEL                     GPU  WARM  WAITED     EXPIRES IN  WORKING"
        );
        for l in &s.leases {
            let _ = writeln!(
                o,
                "{:>5}  {:<24} {:>4}  {:<4}  {:<9}  {:<10}  {}",
                l.lease_id,
                truncate(&l.model, 24),
                l.gpu_index,
                if l.warm { "yes" } else { "no" },
                ms(l.waited_ms),
                ms(l.expires_in_ms),
                mib(l.working_mib)
            );
        }
        if s.leases_omitted > 0 {
            let _ = writeln!(o, "… and {} more leases", s.leases_omitted);
        }
    }
    if let Some(c) = &s.counters {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "granted: {} warm, {} cold   rejected: {}   released: {}   expired: {}   revoked: {}   loads: {} ({} failed)   evictions: {}",
            c.granted_warm,
            c.granted_cold,
            c.rejected,
            c.released,
            c.expired,
            c.revoked,
            c.loads_started,
            c.loads_failed,
            c.evictions
        );
    }
    o
}

pub fn models(m: &pb::ListModelsResponse) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "MODEL                     WEIGHTS    WORKING  CONC  LOAD     TASK     RESIDENT ON          TASK TYPES"
    );
    for m in &m.models {
        let mut resident: Vec<String> = m.resident_on.iter().map(|u| short_uuid(u)).collect();
        resident.extend(
            m.loading_on
                .iter()
                .map(|u| format!("{} (loading)", short_uuid(u))),
        );
        let _ = writeln!(
            o,
            "{:<24} {:>9} {:>10}  {:>4}  {:<7}  {:<7}  {:<20} {}",
            truncate(&m.name, 24),
            mib(m.weights_mib),
            mib(m.working_mib),
            m.max_concurrency,
            ms(m.load_ms),
            ms(m.task_ms),
            if resident.is_empty() {
                "-".to_owned()
            } else {
                resident.join(", ")
            },
            if m.task_types.is_empty() {
                "any".to_owned()
            } else {
                m.task_types.join(", ")
            }
        );
    }
    o
}

pub fn lease(l: &pb::Lease) -> String {
    format!(
        "lease {} for {} on GPU {} ({}) — {}, waited {}, expires in {}{}\n",
        l.lease_id,
        l.model,
        l.gpu_index,
        l.gpu_uuid,
        if l.warm { "warm" } else { "cold" },
        ms(l.waited_ms),
        ms(l.expires_in_ms),
        match (l.runtime_endpoint.is_empty(), l.runtime_model.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!(", runtime {}", l.runtime_endpoint),
            (false, false) => format!(", runtime {} model {}", l.runtime_endpoint, l.runtime_model),
        }
    )
}

pub fn event(ev: &pb::WatchEvent) -> String {
    let at = format!("{:>9.3}s", ev.at_ms as f64 / 1000.0);
    let missed = if ev.missed > 0 {
        format!(" (missed {} events)", ev.missed)
    } else {
        String::new()
    };
    let what = match &ev.event {
        Some(Body::LeaseGranted(e)) => lease_event("lease granted", e),
        Some(Body::LeaseReleased(e)) => lease_event("lease released", e),
        Some(Body::LeaseExpired(e)) => lease_event("lease EXPIRED", e),
        Some(Body::LeaseRevoked(e)) => lease_event("lease REVOKED", e),
        Some(Body::ModelLoading(m)) => model_event("loading", m),
        Some(Body::ModelLoaded(m)) => model_event("loaded", m),
        Some(Body::ModelEvicted(m)) => model_event("unloaded", m),
        Some(Body::ModelLoadFailed(m)) => model_event("LOAD FAILED", m),
        Some(Body::GpuHealth(h)) => format!(
            "GPU {} {} {}",
            h.gpu_index,
            if h.healthy { "healthy" } else { "UNHEALTHY" },
            h.reason
        ),
        Some(Body::Queue(q)) => format!(
            "queue: {} waiting, {} waiting on a load",
            q.queued, q.waiting_on_load
        ),
        Some(Body::AdmissionRejected(r)) => {
            format!("admission for {} rejected: {}", r.model, r.reason)
        }
        Some(Body::Pool(p)) if p.overcommitted => format!(
            "GPU {} pool OVER-COMMITTED ({} of {} MiB): admissions there wait",
            p.gpu_index, p.committed_mib, p.usable_mib
        ),
        Some(Body::Pool(p)) => format!("GPU {} pool drained", p.gpu_index),
        Some(Body::Kubelet(k)) => format!("{}: {}", k.resource, k.message),
        Some(Body::Runtime(r)) if r.reachable => format!(
            "model runtime {} reachable: {} adopted, {} dropped",
            r.kind, r.adopted, r.dropped
        ),
        Some(Body::Runtime(r)) => format!(
            "model runtime {} UNREACHABLE: {} (admissions refused)",
            r.kind, r.reason
        ),
        Some(Body::ModelOutgrewCatalog(m)) => format!(
            "model {} on GPU {} took {}, more than its catalog's {}",
            m.model,
            m.gpu_index,
            mib(m.measured_mib),
            mib(m.catalog_mib)
        ),
        None => "(unknown event)".into(),
    };
    format!("{at}  {what}{missed}")
}

fn lease_event(what: &str, e: &pb::LeaseEvent) -> String {
    match &e.lease {
        Some(l) => format!(
            "{what} {} {} on GPU {}{}{}",
            l.lease_id,
            l.model,
            l.gpu_index,
            if l.warm { " (warm)" } else { "" },
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e.reason)
            }
        ),
        None => what.to_owned(),
    }
}

fn model_event(what: &str, m: &pb::ModelEvent) -> String {
    let mut s = format!(
        "model {} {what} on GPU {} ({})",
        m.model,
        m.gpu_index,
        mib(m.weights_mib)
    );
    if m.duration_ms > 0 {
        let _ = write!(s, " in {}", ms(m.duration_ms));
    }
    if !m.reason.is_empty() {
        let _ = write!(s, ": {}", m.reason);
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// The tail of a GPU UUID: the end differs between GPUs of one node even
/// when the prefix does not.
fn short_uuid(u: &str) -> String {
    let n = u.chars().count();
    if n <= 13 {
        return u.to_owned();
    }
    format!("…{}", u.chars().skip(n - 12).collect::<String>())
}
