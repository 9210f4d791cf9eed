//! `simulate --plot FILE.svg`: the run as pictures. Queue depth, warm hit
//! rate and pool use per GPU over simulated time, and how each model's
//! requests ended, drawn with `plotters` into one SVG (text as SVG text,
//! no fonts needed at build or run time).

use plotters::prelude::*;

/// What the simulator samples while it runs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Timeline {
    /// The GPUs, in the engine's order (`GPU 0`, …).
    pub gpus: Vec<String>,
    /// One sample per interval of simulated time, oldest first.
    pub samples: Vec<Sample>,
}

/// The state at the end of one interval, and what happened during it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sample {
    /// Simulated seconds since the start.
    pub t_s: f64,
    /// Admissions queued for a slot or memory at the sample.
    pub queued: u64,
    /// Admissions waiting on a model load at the sample.
    pub waiting_on_load: u64,
    /// Grants during the interval whose model was warm, and all grants.
    pub granted_warm: u64,
    pub granted: u64,
    /// Used share (0..=1, more when over-committed) of each GPU's pool.
    pub pool_used: Vec<f64>,
}

impl Sample {
    /// Warm grants among the interval's grants, when there were any.
    pub fn hit_rate(&self) -> Option<f64> {
        (self.granted > 0).then(|| self.granted_warm as f64 / self.granted as f64)
    }
}

/// How one model's requests ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelOutcomes {
    pub model: String,
    pub granted_warm: u64,
    pub granted_cold: u64,
    /// Requests that ended without a lease.
    pub refused: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

fn err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError(e.to_string())
}

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 900;
/// Colours of the series: GPUs, then the outcome parts.
const PALETTE: [RGBColor; 8] = [
    RGBColor(47, 128, 237),
    RGBColor(242, 153, 74),
    RGBColor(124, 92, 255),
    RGBColor(31, 157, 85),
    RGBColor(214, 69, 69),
    RGBColor(0, 150, 170),
    RGBColor(140, 110, 60),
    RGBColor(110, 110, 110),
];
const WARM: RGBColor = RGBColor(31, 157, 85);
const COLD: RGBColor = RGBColor(47, 128, 237);
const REFUSED: RGBColor = RGBColor(214, 69, 69);

/// The SVG document for a run: `title` on top, four panels below.
pub fn svg(
    title: &str,
    timeline: &Timeline,
    models: &[ModelOutcomes],
) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root
            .titled(title, ("sans-serif", 22).into_font())
            .map_err(err)?;
        let panels = root.split_evenly((2, 2));
        let end = timeline.samples.last().map_or(1.0, |s| s.t_s).max(1.0);
        let (unit, scale) = time_unit(end);

        // Queue depth.
        let max_q = timeline
            .samples
            .iter()
            .map(|s| s.queued.max(s.waiting_on_load))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let mut c = chart(
            &panels[0],
            "Queue depth",
            0.0..end / scale,
            0.0..max_q * 1.1,
        )?;
        axes(&mut c, &format!("time ({unit})"), "admissions", |v| {
            format!("{v:.0}")
        })?;
        line(
            &mut c,
            timeline
                .samples
                .iter()
                .map(|s| (s.t_s / scale, s.queued as f64)),
            PALETTE[0],
            "queued",
        )?;
        line(
            &mut c,
            timeline
                .samples
                .iter()
                .map(|s| (s.t_s / scale, s.waiting_on_load as f64)),
            PALETTE[1],
            "waiting on a load",
        )?;
        legend(&mut c)?;

        // Warm hit rate per interval (gaps where nothing was granted).
        let mut c = chart(&panels[1], "Warm hit rate", 0.0..end / scale, 0.0..1.05)?;
        axes(
            &mut c,
            &format!("time ({unit})"),
            "warm grants / grants",
            |v| format!("{:.0}%", v * 100.0),
        )?;
        line(
            &mut c,
            timeline
                .samples
                .iter()
                .filter_map(|s| s.hit_rate().map(|r| (s.t_s / scale, r))),
            PALETTE[3],
            "per interval",
        )?;

        // Pool use per GPU.
        let max_pool = timeline
            .samples
            .iter()
            .flat_map(|s| s.pool_used.iter().copied())
            .fold(1.0f64, f64::max);
        let mut c = chart(
            &panels[2],
            "Pool use per GPU",
            0.0..end / scale,
            0.0..max_pool * 1.05,
        )?;
        axes(&mut c, &format!("time ({unit})"), "used / pool", |v| {
            format!("{:.0}%", v * 100.0)
        })?;
        for (i, gpu) in timeline.gpus.iter().enumerate() {
            line(
                &mut c,
                timeline
                    .samples
                    .iter()
                    .filter_map(|s| s.pool_used.get(i).map(|u| (s.t_s / scale, *u))),
                PALETTE[i % PALETTE.len()],
                gpu,
            )?;
        }
        legend(&mut c)?;

        outcomes(&panels[3], models)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Seconds, minutes or hours, whichever keeps the axis readable.
fn time_unit(end_s: f64) -> (&'static str, f64) {
    if end_s > 3.0 * 3600.0 {
        ("h", 3600.0)
    } else if end_s > 180.0 {
        ("min", 60.0)
    } else {
        ("s", 1.0)
    }
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

fn chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>, PlotError> {
    ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(58)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

fn axes(
    c: &mut Chart<'_, '_>,
    x: &str,
    y: &str,
    y_format: impl Fn(&f64) -> String,
) -> Result<(), PlotError> {
    c.configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .y_label_formatter(&y_format)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)
}

fn line(
    c: &mut Chart<'_, '_>,
    points: impl Iterator<Item = (f64, f64)>,
    color: RGBColor,
    label: &str,
) -> Result<(), PlotError> {
    c.draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    Ok(())
}

fn legend<'a, 'b: 'a>(c: &mut Chart<'a, 'b>) -> Result<(), PlotError> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)
}

/// One horizontal bar per model: warm, cold and refused shares of its requests.
fn outcomes(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    models: &[ModelOutcomes],
) -> Result<(), PlotError> {
    let n = models.len().max(1);
    let mut c = ChartBuilder::on(area)
        .caption("Requests per model", ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(130)
        .build_cartesian_2d(0.0..1.0f64, 0.0..n as f64)
        .map_err(err)?;
    let names: Vec<String> = models.iter().map(|m| m.model.clone()).collect();
    c.configure_mesh()
        .disable_y_mesh()
        .x_desc("share of the model's requests")
        .x_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|v| {
            // Labels sit at the bars' middles (i + 0.5).
            let i = (v - 0.5).round();
            if (v - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (part, color) in [("warm", WARM), ("cold", COLD), ("refused", REFUSED)] {
        let bars = models.iter().enumerate().filter_map(|(i, m)| {
            let total = (m.granted_warm + m.granted_cold + m.refused) as f64;
            if total == 0.0 {
                return None;
            }
            let (from, len) = match part {
                "warm" => (0.0, m.granted_warm as f64),
                "cold" => (m.granted_warm as f64, m.granted_cold as f64),
                _ => ((m.granted_warm + m.granted_cold) as f64, m.refused as f64),
            };
            let y = i as f64;
            Some(Rectangle::new(
                [(from / total, y + 0.15), ((from + len) / total, y + 0.85)],
                color.filled(),
            ))
        });
        c.draw_series(bars)
            .map_err(err)?
            .label(part)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Timeline {
        Timeline {
            gpus: vec!["GPU 0".into(), "GPU 1".into()],
            samples: (0..60)
                .map(|i| Sample {
                    t_s: 10.0 * (i + 1) as f64,
                    queued: (i % 7) as u64,
                    waiting_on_load: (i % 3) as u64,
                    granted_warm: 8 + (i % 4) as u64,
                    granted: 12,
                    pool_used: vec![0.5 + 0.005 * i as f64, 0.25],
                })
                .collect(),
        }
    }

    #[test]
    fn the_plot_is_one_svg_with_every_panel_and_series_named() {
        let models = vec![
            ModelOutcomes {
                model: "yolo-v8n".into(),
                granted_warm: 90,
                granted_cold: 5,
                refused: 5,
            },
            ModelOutcomes {
                model: "sd3b".into(),
                granted_warm: 10,
                granted_cold: 10,
                refused: 0,
            },
        ];
        let svg = svg("simulate --seed 1", &timeline(), &models).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            "simulate --seed 1",
            "Queue depth",
            "Warm hit rate",
            "Pool use per GPU",
            "Requests per model",
            "GPU 0",
            "GPU 1",
            "waiting on a load",
            "yolo-v8n",
            "sd3b",
            "refused",
            "time (min)",
        ] {
            assert!(svg.contains(text), "{text} is missing");
        }
    }

    /// `cargo test --lib sim::plot -- --ignored` writes target/plot-sample.svg.
    #[test]
    #[ignore = "writes target/plot-sample.svg for a look; not a check"]
    fn write_sample() {
        let models = vec![ModelOutcomes {
            model: "yolo-v8n".into(),
            granted_warm: 90,
            granted_cold: 5,
            refused: 5,
        }];
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        std::fs::write(
            dir.join("plot-sample.svg"),
            svg("sample", &timeline(), &models).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn an_empty_run_still_draws() {
        let svg = svg("empty", &Timeline::default(), &[]).unwrap();
        assert!(svg.contains("Queue depth"));
    }

    #[test]
    fn hit_rate_is_absent_for_intervals_without_grants() {
        let s = Sample::default();
        assert_eq!(s.hit_rate(), None);
        let s = Sample {
            granted_warm: 3,
            granted: 4,
            ..Sample::default()
        };
        assert_eq!(s.hit_rate(), Some(0.75));
    }
}
