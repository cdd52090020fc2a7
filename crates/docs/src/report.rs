//! The evaluation report: a Markdown table and a bar chart (SVG and PNG) comparing configurations.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rightmodel_core::chart::{self, LegendEntry, Mark};

use crate::eval::Metrics;
use crate::DocsError;

/// One compared configuration (or question subset).
#[derive(Debug, Clone)]
pub struct ReportRow {
    /// What it is ("hybrid (default)", "BM25 baseline", ...).
    pub name: String,
    /// Its metrics.
    pub metrics: Metrics,
}

/// Everything the report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The evaluated file as the user named it.
    pub data: String,
    /// Rows, first the headline configuration.
    pub rows: Vec<ReportRow>,
    /// Free-form lines shown under the table (index time, split, goals).
    pub notes: Vec<String>,
    /// Target per metric (hit@1, hit@5, answer in sentence, EM, F1), drawn as a black line.
    pub goals: [Option<f32>; 5],
}

/// The report as Markdown, ending with a link to the chart at `picture` when one was written (a report
/// printed without an output folder has no chart to point at).
pub fn markdown(r: &Report, picture: Option<&str>) -> String {
    let mut s = format!("# Document QA evaluation\n\nData: `{}`\n\n", r.data);
    s.push_str("| configuration | questions | hit@1 | hit@5 | answer in sentence | EM | F1 | p50 ms | p99 ms |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &r.rows {
        let m = &row.metrics;
        s.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
            rightmodel_core::markdown::cell(&row.name),
            m.questions,
            m.hit_at_1,
            m.hit_at_5,
            m.answer_in_sentence,
            m.em,
            m.f1,
            ms(m.p50_ms),
            ms(m.p99_ms)
        ));
    }
    s.push('\n');
    for n in &r.notes {
        s.push_str(&format!("- {n}\n"));
    }
    if let Some(p) = picture {
        s.push_str(&format!("\n![metrics]({p})\n"));
    }
    s
}

/// A latency cell: one decimal, or a dash when not measured (NaN).
fn ms(v: f32) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "-".into()
    }
}

/// The files [`write_report`] writes, in its folder.
pub const REPORT_FILES: [&str; 3] = ["docs_eval.md", "docs_eval.svg", "docs_eval.png"];

/// Chart size in pixels (both pictures): the bars, then the legend's column.
const CHART: (u32, u32) = (1180, 520);

/// Width of the legend's column at the right of the chart, in pixels.
const LEGEND_WIDTH: u32 = 220;

/// Writes [`REPORT_FILES`] (`docs_eval.md`, `docs_eval.svg` and `docs_eval.png`) into `dir`; returns
/// their paths in that order, so callers can say what was written. The pictures are drawn in memory and
/// every file is written by [`crate::store::write_atomic`] (a uniquely named temporary file renamed into
/// place), so readers never see a half-written file and concurrent runs into one folder do not collide.
pub fn write_report(dir: &Path, r: &Report) -> Result<[PathBuf; 3], DocsError> {
    std::fs::create_dir_all(dir).map_err(|e| DocsError::io(dir, e))?;
    let [md, svg, png] = REPORT_FILES.map(|f| dir.join(f));
    let mut svg_text = String::new();
    draw_chart(SVGBackend::with_string(&mut svg_text, CHART).into_drawing_area(), &r.rows, &r.goals)
        .map_err(|reason| DocsError::Plot { path: svg.clone(), reason })?;
    let png_bytes = png_in_memory(CHART, |root| draw_chart(root, &r.rows, &r.goals))
        .map_err(|reason| DocsError::Plot { path: png.clone(), reason })?;
    crate::store::write_atomic(&svg, svg_text.as_bytes())?;
    crate::store::write_atomic(&png, &png_bytes)?;
    crate::store::write_atomic(&md, markdown(r, Some(REPORT_FILES[1])).as_bytes())?;
    Ok([md, svg, png])
}

/// Draws a `size` picture with `draw` into an in-memory bitmap and returns it encoded as PNG (the
/// caller writes it); errors are the reason, as for [`draw_chart`].
fn png_in_memory(
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let (w, h) = size;
    let mut rgb = rightmodel_core::picture::rgb_buffer(w, h);
    draw(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
    rightmodel_core::picture::rgb_to_png(&rgb, w, h).map_err(|e| format!("cannot encode the chart as PNG: {e}"))
}

const METRICS: [&str; 5] = ["hit@1", "hit@5", "answer in sentence", "EM", "F1"];

fn values(m: &Metrics) -> [f32; 5] {
    [m.hit_at_1, m.hit_at_5, m.answer_in_sentence, m.em, m.f1]
}

/// Grouped bars: one group per metric, one bar per row, with the legend in a column of its own at the
/// right (over the plot it hid the tallest bars, hit@5 near 1).
fn draw_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    rows: &[ReportRow],
    goals: &[Option<f32>; 5],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plot, legend_area) = root.split_horizontally(CHART.0 - LEGEND_WIDTH);
    let n = METRICS.len() as f32;
    // Groups are centred on integers, so the axis' integer ticks name them.
    let x = -0.5f32..n - 0.5;
    let mut chart = ChartBuilder::on(&plot)
        .caption("Document QA on SQuAD", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(x, 0f32..1f32)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .x_labels(METRICS.len())
        .x_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() > 1e-3 || i < 0.0 {
                String::new()
            } else {
                METRICS.get(i as usize).map_or(String::new(), |s| s.to_string())
            }
        })
        .y_desc("share of questions")
        .draw()
        .map_err(|e| err(&e))?;
    let width = 0.8 / rows.len().max(1) as f32;
    let mut legend = Vec::with_capacity(rows.len() + 1);
    for (k, row) in rows.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let vals = values(&row.metrics);
        chart
            .draw_series((0..METRICS.len()).map(|i| {
                let x0 = i as f32 - 0.4 + k as f32 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.95, vals[i].clamp(0.0, 1.0))], color.filled())
            }))
            .map_err(|e| err(&e))?;
        legend.push(LegendEntry::new(row.name.clone(), Mark::Bar(color)));
    }
    let goal_lines: Vec<(f32, f32)> = goals.iter().enumerate().filter_map(|(i, g)| g.map(|g| (i as f32, g))).collect();
    if !goal_lines.is_empty() {
        legend.push(LegendEntry::new("goal", Mark::Line(BLACK.to_rgba(), 2)));
    }
    chart
        .draw_series(
            goal_lines
                .into_iter()
                .map(|(x, g)| PathElement::new(vec![(x - 0.45, g), (x + 0.45, g)], BLACK.stroke_width(2))),
        )
        .map_err(|e| err(&e))?;
    // Level with the plot's top, below the title.
    chart::draw_legend(&legend_area.margin(50, 0, 0, 0), &legend, 15).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_markdown_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let m = Metrics {
            questions: 10,
            hit_at_1: 0.9,
            hit_at_5: 0.97,
            answer_in_sentence: 0.8,
            em: 0.3,
            f1: 0.4,
            ..Metrics::default()
        };
        let r = Report {
            data: "squad.json".into(),
            rows: vec![
                ReportRow { name: "hybrid".into(), metrics: m.clone() },
                ReportRow { name: "bm25".into(), metrics: m },
            ],
            notes: vec!["note".into()],
            goals: [Some(0.88), None, None, None, Some(0.6)],
        };
        let [md, svg, png] = write_report(dir.path(), &r).unwrap();
        let text = std::fs::read_to_string(md).unwrap();
        assert!(text.contains("| hybrid | 10 | 0.900 | 0.970 |"));
        assert!(text.contains("![metrics](docs_eval.svg)"));
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(svg.contains("<svg"));
        // The legend is right of the bars, not over the tallest of them.
        let plot = f64::from(CHART.0 - LEGEND_WIDTH);
        for label in ["hybrid", "bm25", "goal"] {
            let x = svg
                .split("<text")
                .find(|t| {
                    t.split_once('>')
                        .is_some_and(|(_, body)| body.split("</text>").next().map(str::trim) == Some(label))
                })
                .and_then(|t| t.split("x=\"").nth(1)?.split('"').next()?.parse::<f64>().ok());
            assert!(x.is_some_and(|x| x >= plot), "{label}: {x:?}");
        }
        assert!(std::fs::read(png).unwrap().starts_with(b"\x89PNG"));
        // Printed without a report folder: no link to a chart that was not drawn.
        assert!(!markdown(&r, None).contains("!["));
    }
}
