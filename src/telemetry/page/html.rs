//! The status page's HTML, rendered on the server: the page works with
//! JavaScript off (a snapshot that refreshes itself every few seconds), and
//! with it on the live part is swapped for each fresh rendering that
//! `/events` sends. One renderer for both, so they never disagree.

use std::fmt::Write;

use super::view::{GpuView, Level, PageView, PodView, ResidentView};

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// Seconds between reloads of the page when JavaScript is off.
const NOSCRIPT_REFRESH_S: u32 = 5;

/// The whole page.
pub fn page(v: &PageView) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{node} · vision-node-daemon</title>
<noscript><meta http-equiv="refresh" content="{NOSCRIPT_REFRESH_S}"></noscript>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>vision-node-daemon <span class="node">{node}</span></h1>
<p class="meta">{version} · {backend} GPUs · <span id="conn" class="snapshot" title="Without JavaScript the page reloads every {NOSCRIPT_REFRESH_S} s">snapshot</span></p>
</header>
<main id="live" aria-live="polite">
"#,
        node = esc(&v.node),
        version = esc(&v.version),
        backend = esc(&v.gpu_backend),
    );
    o.push_str(&live(v));
    let _ = write!(
        o,
        r#"</main>
<footer>For scripts: <a href="status.json">status.json</a> · <a href="metrics">metrics</a> · <a href="readyz">readyz</a></footer>
<script>{JS}</script>
</body>
</html>
"#
    );
    o
}

/// The part that changes: what `<main id="live">` holds.
pub fn live(v: &PageView) -> String {
    let mut o = String::with_capacity(12 * 1024);
    summary(&mut o, v);
    let _ = writeln!(o, r#"<section id="gpus"><h2>GPUs</h2><div class="gpus">"#);
    for g in &v.gpus {
        gpu(&mut o, g);
    }
    let _ = writeln!(o, "</div></section>");
    pods(&mut o, &v.pods);
    events(&mut o, v);
    let _ = writeln!(
        o,
        r#"<p class="taken">as of <time datetime="{at}">{short}</time></p>"#,
        at = esc(&v.taken_at),
        short = esc(clock(&v.taken_at))
    );
    o
}

fn summary(o: &mut String, v: &PageView) {
    let c = &v.counters;
    let q = &v.queue;
    let leases: usize = v.pods.iter().map(|p| p.leases.len()).sum();
    let hit = match c.hit_rate() {
        Some(r) => format!("{:.0}%", r * 100.0),
        None => "–".to_owned(),
    };
    let queue_class = if q.capacity > 0 && q.queued * 10 >= q.capacity * 8 {
        " warn"
    } else {
        ""
    };
    let _ = writeln!(
        o,
        r#"<section id="summary" class="tiles">
<div class="tile{queue_class}" id="queue"><span class="label">Queue</span><span class="value">{queued}<small> / {cap}</small></span><span class="sub">{loading} waiting on a load</span></div>
<div class="tile" id="leases"><span class="label">Leases</span><span class="value">{leases}</span><span class="sub">{pods}</span></div>
<div class="tile" id="hit-rate"><span class="label">Warm hit rate</span><span class="value">{hit}</span><span class="sub">{warm} warm, {cold} cold, {rejected} refused</span></div>
<div class="tile{load_class}" id="loads"><span class="label">Loads</span><span class="value">{loads}</span><span class="sub">{failed} failed · {evictions} evictions</span></div>
<div class="tile{lost_class}" id="lost"><span class="label">Leases lost</span><span class="value">{lost}</span><span class="sub">{expired} expired, {revoked} revoked</span></div>
</section>"#,
        queued = q.queued,
        cap = q.capacity,
        loading = q.waiting_on_load,
        pods = match v.pods.len() {
            1 => "1 pod".to_owned(),
            n => format!("{n} pods"),
        },
        warm = c.granted_warm,
        cold = c.granted_cold,
        rejected = c.rejected,
        loads = c.loads_started,
        failed = c.loads_failed,
        evictions = c.evictions,
        load_class = if c.loads_failed > 0 { " warn" } else { "" },
        lost = c.expired + c.revoked,
        expired = c.expired,
        revoked = c.revoked,
        lost_class = if c.expired + c.revoked > 0 {
            " warn"
        } else {
            ""
        },
    );
}

/// Percent of `part` in `whole`, for a bar segment's width.
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / whole as f64).min(100.0)
    }
}

fn gpu(o: &mut String, g: &GpuView) {
    let (class, badge) = match (g.healthy, g.overcommitted) {
        (false, _) => (" unhealthy", r#"<span class="badge bad">unhealthy</span>"#),
        (true, true) => (
            " overcommitted",
            r#"<span class="badge warn">over-committed</span>"#,
        ),
        (true, false) => ("", r#"<span class="badge ok">healthy</span>"#),
    };
    // Over-committed, the parts add up to more than the pool: the bar
    // shows them against their sum instead.
    let scale = g
        .usable_mib
        .max(g.carved_mib + g.weights_mib + g.working_mib + g.free_mib);
    let used = g.carved_mib + g.weights_mib + g.working_mib;
    let _ = write!(
        o,
        r#"<article class="gpu{class}" data-gpu="{index}">
<h3>GPU {index} <small>{name}</small> {badge}</h3>
<p class="uuid">{uuid}</p>
<div class="bar" role="img" aria-label="pool of {usable} MiB: {carved} MiB carved, {weights} MiB weights, {working} MiB working, {free} MiB free">"#,
        index = g.index,
        name = esc(&g.name),
        uuid = esc(&g.uuid),
        usable = g.usable_mib,
        carved = g.carved_mib,
        weights = g.weights_mib,
        working = g.working_mib,
        free = g.free_mib,
    );
    for (part, mib) in [
        ("carved", g.carved_mib),
        ("weights", g.weights_mib),
        ("working", g.working_mib),
        ("free", g.free_mib),
    ] {
        if mib > 0 {
            let _ = write!(
                o,
                r#"<span class="{part}" style="width:{w:.2}%" title="{part}: {mib} MiB"></span>"#,
                w = pct(mib, scale)
            );
        }
    }
    let _ = writeln!(
        o,
        r#"</div>
<p class="pool-use">{pu:.0}% of {usable} MiB used</p>
<dl class="legend">
<div><dt><i class="carved"></i>carved</dt><dd>{carved} MiB</dd></div>
<div><dt><i class="weights"></i>weights</dt><dd>{weights} MiB</dd></div>
<div><dt><i class="working"></i>working</dt><dd>{working} MiB</dd></div>
<div><dt><i class="free"></i>free</dt><dd>{free} MiB</dd></div>
</dl>
<p class="outside">total {total} MiB · reserve {reserve} MiB · other processes {external} MiB</p>"#,
        pu = pct(used, g.usable_mib),
        usable = g.usable_mib,
        carved = g.carved_mib,
        weights = g.weights_mib,
        working = g.working_mib,
        free = g.free_mib,
        total = g.total_mib,
        reserve = g.reserve_mib,
        external = g.external_mib,
    );
    if g.residents.is_empty() {
        let _ = writeln!(o, r#"<p class="empty">no model resident</p>"#);
    } else {
        let _ = writeln!(o, r#"<ul class="residents">"#);
        for r in &g.residents {
            resident(o, r);
        }
        let _ = writeln!(o, "</ul>");
    }
    let _ = writeln!(o, "</article>");
}

fn resident(o: &mut String, r: &ResidentView) {
    let state = r.state.as_str();
    let detail = match (r.pins, r.idle_ms) {
        (0, Some(idle)) => format!("idle {}", duration(idle)),
        (0, None) => String::new(),
        (1, _) => "1 task".to_owned(),
        (n, _) => format!("{n} tasks"),
    };
    let _ = writeln!(
        o,
        r#"<li class="resident {state}" data-model="{model}" data-state="{state}"><span class="model">{model}</span><span class="state">{state}</span><span class="detail">{weights} MiB{sep}{detail}</span></li>"#,
        model = esc(&r.model),
        weights = r.weights_mib,
        sep = if detail.is_empty() { "" } else { " · " },
    );
}

fn pods(o: &mut String, pods: &[PodView]) {
    let _ = writeln!(o, r#"<section id="pods"><h2>Leases by pod</h2>"#);
    if pods.is_empty() {
        let _ = writeln!(o, r#"<p class="empty">no leases</p></section>"#);
        return;
    }
    let _ = writeln!(
        o,
        "<table><thead><tr><th>Pod</th><th>Lease</th><th>Model</th><th>GPU</th><th>Warm</th><th class=num>Waited</th><th class=num>Expires in</th></tr></thead><tbody>"
    );
    for p in pods {
        for (i, l) in p.leases.iter().enumerate() {
            let pod = if i == 0 {
                format!(
                    r#"<th scope="rowgroup" rowspan="{}">{}</th>"#,
                    p.leases.len(),
                    esc(&p.pod)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                r#"<tr data-lease="{id}">{pod}<td>lease {id}</td><td>{model}</td><td>GPU {gpu}</td><td>{warm}</td><td class=num>{held}</td><td class=num>{exp}</td></tr>"#,
                id = l.lease_id,
                model = esc(&l.model),
                gpu = l.gpu_index,
                warm = if l.warm { "warm" } else { "cold" },
                held = duration(l.waited_ms),
                exp = duration(l.expires_in_ms),
            );
        }
    }
    let _ = writeln!(o, "</tbody></table></section>");
}

fn events(o: &mut String, v: &PageView) {
    let _ = writeln!(o, r#"<section id="events"><h2>Recent events</h2>"#);
    if v.events.is_empty() {
        let _ = writeln!(o, r#"<p class="empty">none yet</p></section>"#);
        return;
    }
    let _ = writeln!(o, r#"<ol class="events">"#);
    for e in &v.events {
        let class = match e.level {
            Level::Info => "info",
            Level::Warning => "warning",
        };
        let _ = writeln!(
            o,
            r#"<li class="{class}" data-kind="{kind}"><time datetime="{at}">{short}</time> {text}</li>"#,
            kind = esc(&e.kind),
            at = esc(&e.at),
            short = esc(clock(&e.at)),
            text = esc(&e.text),
        );
    }
    let _ = writeln!(o, "</ol></section>");
}

/// `HH:MM:SS` of an RFC 3339 timestamp (the whole string if it is not one).
fn clock(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

/// `80 ms`, `1.2 s`, `1m30s`, `2h05m`.
fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::view::*;
    use super::*;

    /// A node with one busy GPU, one unhealthy one, two pods and events.
    pub(crate) fn sample() -> PageView {
        let gpu = |index: u32, healthy: bool, residents: Vec<ResidentView>| GpuView {
            index,
            uuid: format!("GPU-30060136-cde0-db2a-9930-faf2f75a680{index}"),
            name: "NVIDIA L4 (simulated)".into(),
            healthy,
            overcommitted: false,
            total_mib: 24576,
            reserve_mib: 512,
            external_mib: 0,
            usable_mib: 24064,
            carved_mib: if index == 0 { 4096 } else { 0 },
            weights_mib: residents.iter().map(|r| r.weights_mib).sum(),
            working_mib: if index == 0 { 6000 } else { 0 },
            free_mib: if index == 0 {
                24064 - 4096 - 6280 - 6000
            } else {
                24064
            },
            residents,
        };
        PageView {
            node: "gpu-node-<7>".into(),
            version: "0.1.0 (abc1234)".into(),
            gpu_backend: "simulated".into(),
            taken_at: "2026-12-02T06:10:00.000Z".into(),
            gpus: vec![
                gpu(
                    0,
                    true,
                    vec![
                        ResidentView {
                            model: "sd3b".into(),
                            weights_mib: 5700,
                            state: ResidentState::Pinned,
                            pins: 1,
                            idle_ms: None,
                        },
                        ResidentView {
                            model: "clip-vit-b32".into(),
                            weights_mib: 580,
                            state: ResidentState::Warm,
                            pins: 0,
                            idle_ms: Some(42_000),
                        },
                    ],
                ),
                gpu(1, false, vec![]),
            ],
            queue: QueueView {
                queued: 3,
                waiting_on_load: 1,
                capacity: 256,
            },
            pods: vec![PodView {
                pod: "vision/detector-0".into(),
                leases: vec![LeaseView {
                    lease_id: 7,
                    model: "sd3b".into(),
                    gpu_index: 0,
                    warm: false,
                    waited_ms: 2_500,
                    expires_in_ms: 57_500,
                }],
            }],
            counters: CountersView {
                granted_warm: 30,
                granted_cold: 10,
                rejected: 2,
                loads_started: 11,
                loads_failed: 0,
                evictions: 4,
                expired: 0,
                revoked: 1,
            },
            events: vec![
                EventView {
                    at: "2026-12-02T06:09:58.250Z".into(),
                    level: Level::Warning,
                    kind: "gpu_health".into(),
                    text: "GPU 1 UNHEALTHY: Xid 48 <injected>".into(),
                },
                EventView {
                    at: "2026-12-02T06:09:50.000Z".into(),
                    level: Level::Info,
                    kind: "lease_granted".into(),
                    text: "lease 7 granted: sd3b on GPU 0".into(),
                },
            ],
        }
    }

    #[test]
    fn the_page_is_whole_without_javascript_and_refreshes_itself() {
        let html = page(&sample());
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#));
        // Everything is inline: no external stylesheet, script or font.
        for external in ["<link", "src=", "@import", "url("] {
            assert!(!html.contains(external), "{external} in the page");
        }
        // The live part is in the page itself, not fetched later.
        assert!(html.contains(&live(&sample())));
        assert!(html.contains(r#"new EventSource("events")"#));
    }

    #[test]
    fn residents_carry_their_model_and_state_for_people_and_tests() {
        let html = live(&sample());
        assert!(html.contains(
            r#"<li class="resident pinned" data-model="sd3b" data-state="pinned"><span class="model">sd3b</span><span class="state">pinned</span><span class="detail">5700 MiB · 1 task</span></li>"#
        ), "{html}");
        assert!(html.contains(r#"data-model="clip-vit-b32" data-state="warm""#));
        assert!(html.contains("5700 MiB · 1 task"));
        assert!(html.contains("580 MiB · idle 42.0 s"));
        assert!(html.contains(r#"<span class="badge bad">unhealthy</span>"#));
        assert!(html.contains(r#"<p class="empty">no model resident</p>"#));
    }

    #[test]
    fn pool_bars_are_proportional_to_the_pool() {
        let html = live(&sample());
        // 4096 of 24064 MiB carved is 17.02 %.
        assert!(
            html.contains(r#"<span class="carved" style="width:17.02%""#),
            "{html}"
        );
        // The idle GPU's bar is all free.
        assert!(html.contains(r#"<span class="free" style="width:100.00%""#));
    }

    #[test]
    fn text_from_the_daemon_is_escaped() {
        let html = page(&sample());
        assert!(html.contains("gpu-node-&lt;7&gt;"));
        assert!(html.contains("Xid 48 &lt;injected&gt;"));
        assert!(!html.contains("<injected>"));
    }

    #[test]
    fn leases_are_grouped_under_their_pod() {
        let html = live(&sample());
        assert!(html.contains(
            r#"<tr data-lease="7"><th scope="rowgroup" rowspan="1">vision/detector-0</th><td>lease 7</td><td>sd3b</td><td>GPU 0</td><td>cold</td><td class=num>2.5 s</td><td class=num>57.5 s</td></tr>"#
        ), "{html}");
    }

    /// Writes the sample page to target/status-page-sample.html for a look
    /// in a browser (`cargo test --lib page -- --ignored`).
    #[test]
    #[ignore = "writes target/status-page-sample.html for a look in a browser; not a check"]
    fn write_sample_page() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::write(dir.join("status-page-sample.html"), page(&sample())).unwrap();
    }
}
