//! Human-readable output for visionctl, in the spirit of nvidia-smi and
//! kubectl: aligned tables (comfy-table), one name per thing (`lease 7`,
//! `GPU 1`), sizes in MiB as the daemon counts them.

use std::fmt::Write;

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use pb::watch_event::Event as Body;
use vision_node_daemon::proto::vision::v1 as pb;

use crate::output;

/// `1234` → `1.2 s`, `80` → `80 ms`, `90000` → `1m30s`. The unit is chosen
/// after rounding, so 59 960 ms reads `1m00s` as 60 000 ms does, not `60.0 s`.
pub fn ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..59_950 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => {
            let s = (ms + 500) / 1000;
            format!("{}m{:02}s", s / 60, s % 60)
        }
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

/// A borderless table: columns two spaces apart, the columns in `right`
/// right-aligned (numbers), no trailing blanks.
fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    for i in 0..header.len() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
            if right.contains(&i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut out = String::new();
    for line in t.to_string().lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `GPU 1`.
fn gpu(index: u32) -> String {
    format!("GPU {index}")
}

pub fn status(s: &pb::StatusResponse) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node {}   {} GPUs ({})   leases {}   queued {}   waiting on a load {}",
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
    let rows = s
        .gpus
        .iter()
        .map(|g| {
            let health = match (g.healthy, g.overcommitted) {
                (false, _) => "UNHEALTHY",
                (true, true) => "OVERCOMMITTED",
                (true, false) => "ok",
            };
            let used = g.carved_mib + g.weights_mib + g.working_mib;
            vec![
                g.index.to_string(),
                g.name.clone(),
                health.to_owned(),
                mib(g.usable_mib),
                mib(g.carved_mib),
                mib(g.weights_mib),
                mib(g.working_mib),
                mib(g.free_mib),
                format!(
                    "{} {:>3}%",
                    bar(used, g.usable_mib, 10),
                    (used * 100).checked_div(g.usable_mib).unwrap_or(0)
                ),
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "GPU", "NAME", "HEALTH", "USABLE", "CARVED", "WEIGHTS", "WORKING", "FREE", "POOL",
        ],
        &[0, 3, 4, 5, 6, 7],
        rows,
    ));
    let _ = writeln!(o);
    let rows = s
        .gpus
        .iter()
        .map(|g| {
            vec![
                g.index.to_string(),
                g.uuid.clone(),
                mib(g.total_mib),
                mib(g.reserve_mib),
                mib(g.external_mib),
            ]
        })
        .collect();
    o.push_str(&table(
        &["GPU", "UUID", "TOTAL", "RESERVE", "EXTERNAL"],
        &[0, 2, 3, 4],
        rows,
    ));
    let residents: Vec<Vec<String>> = s
        .gpus
        .iter()
        .flat_map(|g| {
            g.residents.iter().map(move |r| {
                let mut state = if r.loading {
                    "loading".to_owned()
                } else if let Some(idle) = r.idle_ms {
                    format!("idle {}", ms(idle))
                } else {
                    "in use".to_owned()
                };
                if r.weights_mib != r.catalog_mib && r.catalog_mib > 0 {
                    let _ = write!(state, " (measured; catalog {})", mib(r.catalog_mib));
                }
                vec![
                    r.model.clone(),
                    g.index.to_string(),
                    mib(r.weights_mib),
                    r.pins.to_string(),
                    state,
                ]
            })
        })
        .collect();
    if !residents.is_empty() {
        let _ = writeln!(o);
        o.push_str(&table(
            &["MODEL", "GPU", "WEIGHTS", "PINS", "STATE"],
            &[1, 2, 3],
            residents,
        ));
    }
    for g in s.gpus.iter().filter(|g| g.residents_omitted > 0) {
        let _ = writeln!(
            o,
            "… and {} more resident on GPU {}",
            g.residents_omitted, g.index
        );
    }
    let measured: Vec<Vec<String>> = s
        .memory
        .iter()
        .filter(|m| m.measured_mib.is_some() || m.returned_mib.is_some())
        .map(|m| {
            let or_dash = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), mib);
            let outgrown = m
                .measured_mib
                .is_some_and(|v| v * 100 > m.catalog_mib * 110);
            vec![
                m.model.clone(),
                mib(m.catalog_mib),
                or_dash(m.measured_mib),
                or_dash(m.returned_mib),
                if outgrown { "OUTGREW CATALOG" } else { "" }.to_owned(),
            ]
        })
        .collect();
    if !measured.is_empty() {
        let _ = writeln!(o);
        o.push_str(&table(
            &["MODEL", "CATALOG", "MEASURED", "RETURNED", ""],
            &[1, 2, 3],
            measured,
        ));
    }
    if !s.leases.is_empty() {
        let _ = writeln!(o);
        let rows = s
            .leases
            .iter()
            .map(|l| {
                vec![
                    l.lease_id.to_string(),
                    l.model.clone(),
                    l.gpu_index.to_string(),
                    if l.warm { "yes" } else { "no" }.to_owned(),
                    ms(l.waited_ms),
                    ms(l.expires_in_ms),
                    mib(l.working_mib),
                ]
            })
            .collect();
        o.push_str(&table(
            &[
                "LEASE",
                "MODEL",
                "GPU",
                "WARM",
                "WAITED",
                "EXPIRES IN",
                "WORKING",
            ],
            &[0, 2, 4, 5, 6],
            rows,
        ));
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

/// The catalog; `gpus` (from a status call, may be empty) turns the
/// residency UUIDs into GPU indices.
pub fn models(m: &pb::ListModelsResponse, gpus: &[pb::GpuStatus]) -> String {
    let name = |uuid: &str| match output::gpu_index(uuid, gpus) {
        Some(i) => gpu(i),
        None => short_uuid(uuid),
    };
    let rows = m
        .models
        .iter()
        .map(|m| {
            let mut resident: Vec<String> = m.resident_on.iter().map(|u| name(u)).collect();
            resident.extend(
                m.loading_on
                    .iter()
                    .map(|u| format!("{} (loading)", name(u))),
            );
            vec![
                m.name.clone(),
                mib(m.weights_mib),
                mib(m.working_mib),
                m.max_concurrency.to_string(),
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
                },
            ]
        })
        .collect();
    table(
        &[
            "MODEL",
            "WEIGHTS",
            "WORKING",
            "CONCURRENCY",
            "LOAD",
            "TASK",
            "RESIDENT ON",
            "TASK TYPES",
        ],
        &[1, 2, 3, 4, 5],
        rows,
    )
}

pub fn lease(l: &pb::Lease) -> String {
    format!(
        "lease {} for {} on {} ({}): {}, waited {}, expires in {}{}\n",
        l.lease_id,
        l.model,
        gpu(l.gpu_index),
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

pub fn preloaded(p: &output::Preloaded) -> String {
    format!(
        "{} loaded on {} ({}) in {}\n",
        p.model,
        gpu(p.gpu_index),
        p.gpu_uuid,
        ms(p.duration_ms)
    )
}

pub fn evicted(e: &output::Evicted) -> String {
    let gpus: Vec<String> = e
        .gpus
        .iter()
        .map(|g| match g.gpu_index {
            Some(i) => format!("{} ({})", gpu(i), g.gpu_uuid),
            None => g.gpu_uuid.clone(),
        })
        .collect();
    format!("{} evicted from {}\n", e.model, gpus.join(", "))
}

pub fn faulted(f: &output::Faulted) -> String {
    format!(
        "{} ({}) {}\n",
        gpu(f.gpu_index),
        f.gpu_uuid,
        if f.healthy {
            "healthy again"
        } else {
            "faulted"
        }
    )
}

/// One watch event on one line, stamped with the wall-clock time (UTC),
/// or with the daemon's uptime when an older daemon sent no time.
pub fn event(ev: &pb::WatchEvent) -> String {
    let at = match output::wall_clock(ev.time_unix_ms) {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        None => format!("up {:>9.3}s", ev.at_ms as f64 / 1000.0),
    };
    let missed = if ev.missed > 0 {
        format!(" (missed {} events)", ev.missed)
    } else {
        String::new()
    };
    let what = match &ev.event {
        Some(Body::LeaseGranted(e)) => lease_event("granted", e),
        Some(Body::LeaseReleased(e)) => lease_event("released", e),
        Some(Body::LeaseExpired(e)) => lease_event("EXPIRED", e),
        Some(Body::LeaseRevoked(e)) => lease_event("REVOKED", e),
        Some(Body::ModelLoading(m)) => model_event("loading", m),
        Some(Body::ModelLoaded(m)) => model_event("loaded", m),
        Some(Body::ModelEvicted(m)) => model_event("unloaded", m),
        Some(Body::ModelLoadFailed(m)) => model_event("LOAD FAILED", m),
        Some(Body::GpuHealth(h)) => format!(
            "{} {}{}",
            gpu(h.gpu_index),
            if h.healthy { "healthy" } else { "UNHEALTHY" },
            if h.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", h.reason)
            }
        ),
        Some(Body::Queue(q)) => format!(
            "queue: {} waiting, {} waiting on a load",
            q.queued, q.waiting_on_load
        ),
        // The code the caller got, then the outcome as the metrics label it;
        // a daemon without the code gives the outcome alone.
        Some(Body::AdmissionRejected(r)) if r.code.is_empty() => {
            format!("admission for {} rejected ({})", r.model, r.reason)
        }
        Some(Body::AdmissionRejected(r)) => {
            format!(
                "admission for {} rejected: {} ({})",
                r.model, r.code, r.reason
            )
        }
        Some(Body::Pool(p)) if p.overcommitted => format!(
            "{} pool OVERCOMMITTED ({} of {}): admissions there wait",
            gpu(p.gpu_index),
            mib(p.committed_mib),
            mib(p.usable_mib)
        ),
        Some(Body::Pool(p)) => format!("{} pool drained", gpu(p.gpu_index)),
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
            "model {} on {} took {}, more than its catalog's {}",
            m.model,
            gpu(m.gpu_index),
            mib(m.measured_mib),
            mib(m.catalog_mib)
        ),
        None => "(an event this visionctl does not know)".into(),
    };
    format!("{at}  {what}{missed}")
}

fn lease_event(what: &str, e: &pb::LeaseEvent) -> String {
    match &e.lease {
        Some(l) => format!(
            "lease {} {what}: {} on {}{}{}",
            l.lease_id,
            l.model,
            gpu(l.gpu_index),
            if l.warm { " (warm)" } else { "" },
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(", {}", e.reason)
            }
        ),
        None => format!("lease {what}"),
    }
}

fn model_event(what: &str, m: &pb::ModelEvent) -> String {
    let mut s = format!(
        "model {} {what} on {} ({})",
        m.model,
        gpu(m.gpu_index),
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

/// The tail of a GPU UUID: the end differs between GPUs of one node even
/// when the prefix does not.
fn short_uuid(u: &str) -> String {
    let n = u.chars().count();
    if n <= 13 {
        return u.to_owned();
    }
    format!("…{}", u.chars().skip(n - 12).collect::<String>())
}

#[cfg(test)]
mod tests {
    //! The outputs people read, pinned: a change to any of them shows here.

    use super::*;

    #[test]
    fn durations_change_unit_after_rounding() {
        assert_eq!(ms(999), "999 ms");
        assert_eq!(ms(1_000), "1.0 s");
        assert_eq!(ms(59_949), "59.9 s");
        assert_eq!(ms(59_950), "1m00s");
        assert_eq!(ms(59_999), "1m00s");
        assert_eq!(ms(60_000), "1m00s");
        assert_eq!(ms(90_000), "1m30s");
        assert_eq!(ms(119_600), "2m00s");
    }

    fn lease(id: u64, model: &str, gpu: u32, warm: bool) -> pb::Lease {
        pb::Lease {
            lease_id: id,
            model: model.into(),
            gpu_index: gpu,
            gpu_uuid: format!("GPU-{gpu}"),
            warm,
            waited_ms: if warm { 0 } else { 8012 },
            expires_in_ms: 57_800,
            ttl_ms: 60_000,
            runtime_endpoint: String::new(),
            runtime_model: String::new(),
            working_mib: 6000,
        }
    }

    fn gpus() -> Vec<pb::GpuStatus> {
        let gpu = |index: u32, residents| pb::GpuStatus {
            index,
            uuid: format!("GPU-30060136-cde0-db2a-9930-faf2f75a680{index}"),
            name: "NVIDIA L4 (simulated)".into(),
            healthy: index == 0,
            total_mib: 24576,
            reserve_mib: 512,
            external_mib: 0,
            usable_mib: 24064,
            carved_mib: 0,
            weights_mib: 6280,
            working_mib: 6000,
            free_mib: 11784,
            overcommitted: false,
            residents,
            residents_omitted: 0,
        };
        vec![
            gpu(
                0,
                vec![
                    pb::ResidentModel {
                        model: "clip-vit-b32".into(),
                        weights_mib: 640,
                        catalog_mib: 580,
                        loading: false,
                        pins: 0,
                        idle_ms: Some(1200),
                    },
                    pb::ResidentModel {
                        model: "sd3b".into(),
                        weights_mib: 5700,
                        catalog_mib: 5700,
                        loading: false,
                        pins: 1,
                        idle_ms: None,
                    },
                ],
            ),
            gpu(
                1,
                vec![pb::ResidentModel {
                    model: "sdxl-refiner".into(),
                    weights_mib: 5800,
                    catalog_mib: 5800,
                    loading: true,
                    pins: 2,
                    idle_ms: None,
                }],
            ),
        ]
    }

    #[test]
    fn status_prints_aligned_tables_of_gpus_residents_and_leases() {
        let s = pb::StatusResponse {
            node: "dev-node".into(),
            gpu_backend: "simulated".into(),
            gpus: {
                let mut g = gpus();
                g[1].residents_omitted = 3;
                g
            },
            queued: 1,
            waiting_on_load: 2,
            active_leases: 1,
            leases: vec![lease(12, "sd3b", 0, false)],
            counters: Some(pb::Counters {
                granted_cold: 1,
                loads_started: 2,
                ..Default::default()
            }),
            slots: 0,
            runtime: Some(pb::RuntimeStatus {
                kind: "triton".into(),
                reachable: true,
                ..Default::default()
            }),
            memory: vec![
                pb::ModelMemory {
                    model: "clip-vit-b32".into(),
                    catalog_mib: 580,
                    measured_mib: Some(640),
                    returned_mib: None,
                },
                pb::ModelMemory {
                    model: "sd3b".into(),
                    catalog_mib: 5700,
                    measured_mib: None,
                    returned_mib: None,
                },
            ],
            leases_omitted: 4,
        };
        let want = "\
node dev-node   2 GPUs (simulated)   leases 1   queued 1   waiting on a load 2
runtime triton: reachable

GPU  NAME                   HEALTH        USABLE  CARVED   WEIGHTS   WORKING       FREE  POOL
  0  NVIDIA L4 (simulated)  ok         24064 MiB   0 MiB  6280 MiB  6000 MiB  11784 MiB  [#####.....]  51%
  1  NVIDIA L4 (simulated)  UNHEALTHY  24064 MiB   0 MiB  6280 MiB  6000 MiB  11784 MiB  [#####.....]  51%

GPU  UUID                                          TOTAL  RESERVE  EXTERNAL
  0  GPU-30060136-cde0-db2a-9930-faf2f75a6800  24576 MiB  512 MiB     0 MiB
  1  GPU-30060136-cde0-db2a-9930-faf2f75a6801  24576 MiB  512 MiB     0 MiB

MODEL         GPU   WEIGHTS  PINS  STATE
clip-vit-b32    0   640 MiB     0  idle 1.2 s (measured; catalog 580 MiB)
sd3b            0  5700 MiB     1  in use
sdxl-refiner    1  5800 MiB     2  loading
… and 3 more resident on GPU 1

MODEL         CATALOG  MEASURED  RETURNED
clip-vit-b32  580 MiB   640 MiB         -  OUTGREW CATALOG

LEASE  MODEL  GPU  WARM  WAITED  EXPIRES IN   WORKING
   12  sd3b     0  no     8.0 s      57.8 s  6000 MiB
… and 4 more leases

granted: 0 warm, 1 cold   rejected: 0   released: 0   expired: 0   revoked: 0   loads: 2 (0 failed)   evictions: 0
";
        assert_eq!(status(&s), want, "\n{}", status(&s));
    }

    #[test]
    fn models_names_gpus_by_index_and_stays_aligned_with_two_gpus() {
        let model = |name: &str, resident: Vec<&str>, loading: Vec<&str>| pb::ModelInfo {
            name: name.into(),
            weights_mib: 580,
            working_mib: 600,
            max_concurrency: 4,
            load_ms: 1000,
            task_ms: 10,
            task_types: vec!["embed".into()],
            resident_on: resident.into_iter().map(String::from).collect(),
            loading_on: loading.into_iter().map(String::from).collect(),
            gpus_omitted: 0,
        };
        let gpus = gpus();
        let m = pb::ListModelsResponse {
            models: vec![
                model("clip-vit-b32", vec![&gpus[0].uuid, &gpus[1].uuid], vec![]),
                model("sd3b", vec![], vec![&gpus[1].uuid]),
                model("yolo-v8n", vec!["GPU-0000-unknown-to-status-42"], vec![]),
                model("sdxl-refiner", vec![], vec![]),
            ],
        };
        let want = "\
MODEL         WEIGHTS  WORKING  CONCURRENCY   LOAD   TASK  RESIDENT ON      TASK TYPES
clip-vit-b32  580 MiB  600 MiB            4  1.0 s  10 ms  GPU 0, GPU 1     embed
sd3b          580 MiB  600 MiB            4  1.0 s  10 ms  GPU 1 (loading)  embed
yolo-v8n      580 MiB  600 MiB            4  1.0 s  10 ms  …to-status-42    embed
sdxl-refiner  580 MiB  600 MiB            4  1.0 s  10 ms  -                embed
";
        assert_eq!(models(&m, &gpus), want, "\n{}", models(&m, &gpus));
    }

    #[test]
    fn one_line_answers_name_leases_and_gpus_one_way() {
        assert_eq!(
            super::lease(&lease(3, "sd3b", 1, false)),
            "lease 3 for sd3b on GPU 1 (GPU-1): cold, waited 8.0 s, expires in 57.8 s\n"
        );
        let p = output::Preloaded {
            model: "clip-vit-b32".into(),
            gpu_index: 1,
            gpu_uuid: "GPU-1".into(),
            duration_ms: 1000,
        };
        assert_eq!(
            preloaded(&p),
            "clip-vit-b32 loaded on GPU 1 (GPU-1) in 1.0 s\n"
        );
        let e = output::Evicted {
            model: "clip-vit-b32".into(),
            gpus: vec![
                output::GpuRef {
                    gpu_index: Some(0),
                    gpu_uuid: "GPU-0".into(),
                },
                output::GpuRef {
                    gpu_index: None,
                    gpu_uuid: "GPU-9".into(),
                },
            ],
        };
        assert_eq!(
            evicted(&e),
            "clip-vit-b32 evicted from GPU 0 (GPU-0), GPU-9\n"
        );
        let f = output::Faulted {
            gpu_index: 1,
            gpu_uuid: "GPU-1".into(),
            healthy: false,
        };
        assert_eq!(faulted(&f), "GPU 1 (GPU-1) faulted\n");
    }

    #[test]
    fn watch_lines_name_leases_and_gpus_one_way() {
        let ev = |event| pb::WatchEvent {
            seq: 1,
            at_ms: 17_935,
            time_unix_ms: 1_796_191_200_123,
            missed: 0,
            event: Some(event),
        };
        let lines: Vec<String> = [
            Body::LeaseGranted(pb::LeaseEvent {
                lease: Some(lease(3, "sd3b", 0, true)),
                reason: String::new(),
            }),
            Body::LeaseRevoked(pb::LeaseEvent {
                lease: Some(lease(4, "sd3b", 1, false)),
                reason: "gpu_unhealthy".into(),
            }),
            Body::ModelLoaded(pb::ModelEvent {
                model: "sd3b".into(),
                gpu_index: 0,
                gpu_uuid: "GPU-0".into(),
                weights_mib: 5700,
                reason: String::new(),
                duration_ms: 8000,
            }),
            Body::GpuHealth(pb::GpuHealthEvent {
                gpu_index: 1,
                gpu_uuid: "GPU-1".into(),
                healthy: false,
                reason: "Xid 48".into(),
            }),
            Body::Pool(pb::PoolEvent {
                gpu_index: 1,
                gpu_uuid: "GPU-1".into(),
                overcommitted: true,
                committed_mib: 25000,
                usable_mib: 24064,
            }),
            Body::AdmissionRejected(pb::AdmissionRejected {
                model: "sd3b".into(),
                reason: "deadline_exceeded".into(),
                code: "DEADLINE_EXCEEDED".into(),
            }),
            Body::AdmissionRejected(pb::AdmissionRejected {
                model: "sd3b".into(),
                reason: "deadline_exceeded".into(),
                code: String::new(),
            }),
        ]
        .into_iter()
        .map(|b| event(&ev(b)))
        .collect();
        let old_daemon = pb::WatchEvent {
            time_unix_ms: 0,
            ..ev(Body::Queue(pb::QueueEvent::default()))
        };
        assert_eq!(
            event(&old_daemon),
            "up    17.935s  queue: 0 waiting, 0 waiting on a load"
        );
        assert_eq!(
            lines,
            [
                "2026-12-02 06:00:00.123Z  lease 3 granted: sd3b on GPU 0 (warm)",
                "2026-12-02 06:00:00.123Z  lease 4 REVOKED: sd3b on GPU 1, gpu_unhealthy",
                "2026-12-02 06:00:00.123Z  model sd3b loaded on GPU 0 (5700 MiB) in 8.0 s",
                "2026-12-02 06:00:00.123Z  GPU 1 UNHEALTHY: Xid 48",
                "2026-12-02 06:00:00.123Z  GPU 1 pool OVERCOMMITTED (25000 MiB of 24064 MiB): admissions there wait",
                "2026-12-02 06:00:00.123Z  admission for sd3b rejected: DEADLINE_EXCEEDED (deadline_exceeded)",
                "2026-12-02 06:00:00.123Z  admission for sd3b rejected (deadline_exceeded)",
            ]
        );
    }
}
