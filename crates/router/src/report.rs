//! Evaluation output people compare: a Markdown report and an SVG chart of quality against the share
//! of strong calls, written atomically into an output directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rightmodel_core::chart::{self, LegendEntry, Mark};
use rightmodel_core::markdown::cell;
use rightmodel_core::picture;

use crate::error::RouterError;
use crate::eval::{Comparison, CvReport};
use crate::metrics::RoutingMetrics;

/// Writes `bytes` to `path` atomically ([`rightmodel_core::fsutil::write_atomic`]: readers never see
/// a half-written file), as a [`RouterError::Write`] naming `path` on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RouterError> {
    rightmodel_core::fsutil::write_atomic(path, bytes).map_err(|e| RouterError::write(path.display(), e))
}

/// Whether a result file may replace one already at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it (`--force`, or a command that updates its own file, like `router calibrate`).
    Replace,
    /// Keep it and fail: the caller checked that the path was free before its work began, so a file
    /// there now was written by another run meanwhile, whose result must not be lost silently.
    Keep,
}

/// Writes `bytes` to `path` atomically, replacing a file there only when `existing` says so; with
/// [`Existing::Keep`] a file that appeared meanwhile is kept and the error says so.
pub fn write_result(path: &Path, bytes: &[u8], existing: Existing) -> Result<(), RouterError> {
    match existing {
        Existing::Replace => write_atomic(path, bytes),
        Existing::Keep => rightmodel_core::fsutil::write_atomic_new(path, bytes).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                RouterError::write(
                    path.display(),
                    "another run wrote this file while this one worked; it was kept and this run's result \
                     was not saved (--force replaces it)",
                )
            } else {
                RouterError::write(path.display(), e)
            }
        }),
    }
}

/// What tables show where a metric is undefined (the strong model does not beat the weak one).
pub const UNDEFINED: &str = "n/a";

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", 100.0 * x)).unwrap_or_else(|| "not reached".into())
}

/// `m`'s APGR as tables show it: three decimals, or [`UNDEFINED`] where it is undefined
/// ([`RoutingMetrics::defined`]), never NaN or a number from an upside-down PGR scale.
pub fn apgr_cell(m: &RoutingMetrics) -> String {
    if m.defined() && m.apgr.is_finite() {
        format!("{:.3}", m.apgr)
    } else {
        UNDEFINED.to_string()
    }
}

/// A CPT of `m` (`cpt`, one of its fields) as tables show it: a percentage, `not reached`, or
/// [`UNDEFINED`] where `m`'s metrics are undefined.
pub fn cpt_cell(m: &RoutingMetrics, cpt: Option<f64>) -> String {
    if m.defined() {
        pct(cpt)
    } else {
        UNDEFINED.to_string()
    }
}

/// A mean over folds ([`CvReport::fold_mean`]) of an APGR: three decimals, or [`UNDEFINED`] when no
/// fold has it.
pub fn mean_cell(v: Option<f64>) -> String {
    v.map_or_else(|| UNDEFINED.to_string(), |x| format!("{x:.3}"))
}

/// A mean over folds of a CPT: a percentage, or [`UNDEFINED`] when `any_defined` is false (no fold has
/// defined metrics), else `not reached` when no defined fold reached it.
pub fn mean_cpt_cell(v: Option<f64>, any_defined: bool) -> String {
    if any_defined {
        pct(v)
    } else {
        UNDEFINED.to_string()
    }
}

fn row(out: &mut String, name: &str, m: &RoutingMetrics) {
    let _ =
        writeln!(out, "| {} | {} | {} | {} |", cell(name), apgr_cell(m), cpt_cell(m, m.cpt50), cpt_cell(m, m.cpt80));
}

fn table(out: &mut String, c: &Comparison) {
    out.push_str("| router | APGR | CPT(50%) | CPT(80%) |\n|---|---|---|---|\n");
    row(out, "learned (difficulty scorer)", &c.learned);
    row(out, "prompt length", &c.length);
    row(out, "random (mean of 20 draws)", &c.random);
}

/// The Markdown report of a cross-validation. `title` heads it, `notes` are appended as-is
/// (data file, excluded groups, command line).
pub fn markdown(report: &CvReport, title: &str, notes: &str, chart_file: &str) -> String {
    let mut s = String::new();
    let p = &report.pooled.learned;
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "Weak model alone: {:.1}%, strong model alone: {:.1}% (gap {:.1} points). Metrics as in RouteLLM: \
         threshold sweep over {} equal-count score bins; APGR = area under PGR vs strong-call share; \
         CPT(x%) = strong-call share needed to recover x% of the gap.\n",
        100.0 * p.weak_quality,
        100.0 * p.strong_quality,
        100.0 * (p.strong_quality - p.weak_quality),
        report.config.bins
    );
    for w in report.warnings() {
        let _ = writeln!(s, "**Warning:** {w}.\n");
    }
    if report.grouped {
        let _ = writeln!(
            s,
            "Cross-validation: {} folds by group (every group's rows are held out together; the model \
             never saw the held-out groups).\n",
            report.config.folds
        );
    } else {
        let _ = writeln!(
            s,
            "Cross-validation: {} folds of random rows (the data has no group column, so held-out \
             prompts may share topics with training prompts; expect lower numbers on new traffic).\n",
            report.config.folds
        );
    }
    s.push_str("## All held-out scores pooled\n\n");
    table(&mut s, &report.pooled);
    s.push_str("\n## Per fold\n\n");
    s.push_str("| fold | rows | learned APGR | CPT(50%) | CPT(80%) | length APGR | random APGR | held-out groups |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for f in &report.folds {
        let m = &f.metrics;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.fold,
            f.rows,
            apgr_cell(&m.learned),
            cpt_cell(&m.learned, m.learned.cpt50),
            cpt_cell(&m.learned, m.learned.cpt80),
            apgr_cell(&m.length),
            apgr_cell(&m.random),
            cell(&f.groups.join(", "))
        );
    }
    let mean = |f: &dyn Fn(&Comparison) -> Option<f64>| report.fold_mean(f);
    let any_defined = report.undefined_folds().len() < report.folds.len();
    let _ = writeln!(
        s,
        "| mean{} | | {} | {} | {} | {} | {} | |",
        mean_label(report),
        mean_cell(mean(&|c| Some(c.learned.apgr))),
        mean_cpt_cell(mean(&|c| c.learned.cpt50), any_defined),
        mean_cpt_cell(mean(&|c| c.learned.cpt80), any_defined),
        mean_cell(mean(&|c| Some(c.length.apgr))),
        mean_cell(mean(&|c| Some(c.random.apgr))),
    );
    let _ = writeln!(s, "\n## Quality vs strong-call share (pooled)\n\n![curve]({chart_file})\n");
    s.push_str("| strong share | learned quality | length quality | random quality |\n|---|---|---|---|\n");
    let c = &report.pooled;
    for ((a, b), r) in c.learned.curve.iter().zip(&c.length.curve).zip(&c.random.curve) {
        let _ = writeln!(
            s,
            "| {:.0}% / {:.0}% / {:.0}% | {:.2}% | {:.2}% | {:.2}% |",
            100.0 * a.strong_share,
            100.0 * b.strong_share,
            100.0 * r.strong_share,
            100.0 * a.quality,
            100.0 * b.quality,
            100.0 * r.quality
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Run\n\n{notes}");
    }
    s
}

/// What follows "mean" in the per-fold tables: nothing when every fold counts, else which folds the
/// mean is over (`" of 4 folds"`), since undefined ones are left out.
pub fn mean_label(report: &CvReport) -> String {
    let left_out = report.undefined_folds().len();
    if left_out == 0 {
        String::new()
    } else {
        let n = report.folds.len() - left_out;
        format!(" of {n} fold{}", if n == 1 { "" } else { "s" })
    }
}

/// Draws the pooled quality-vs-strong-share curves of the three routers onto `root`.
fn draw_curves<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    c: &Comparison,
    title: &str,
) -> Result<(), RouterError> {
    let err = |e: &dyn std::fmt::Display| RouterError::Eval(format!("plot: {e}"));
    root.fill(&WHITE).map_err(|e| err(&e))?;
    // The legend has a column of its own: over the plot it hid the curves' ends and the levels.
    let (plot, legend_area) = root.split_horizontally(CHART.0 - LEGEND_WIDTH);
    let (w, s) = (100.0 * c.learned.weak_quality, 100.0 * c.learned.strong_quality);
    let (mut lo, mut hi) = (w.min(s), w.max(s));
    for m in [&c.learned, &c.length, &c.random] {
        for p in &m.curve {
            lo = lo.min(100.0 * p.quality);
            hi = hi.max(100.0 * p.quality);
        }
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..100.0, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("strong model calls (%)")
        .y_desc("quality (%)")
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(|e| err(&e))?;
    let series: [(&str, &RoutingMetrics, RGBColor); 3] = [
        ("learned", &c.learned, BLUE),
        ("prompt length", &c.length, RGBColor(230, 140, 0)),
        ("random", &c.random, RGBColor(120, 120, 120)),
    ];
    let mut legend = Vec::new();
    for (name, m, color) in series {
        let pts: Vec<(f64, f64)> = m.curve.iter().map(|p| (100.0 * p.strong_share, 100.0 * p.quality)).collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(|e| err(&e))?;
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
        legend.push(LegendEntry::new(format!("{name} (APGR {})", apgr_cell(m)), Mark::Line(color.to_rgba(), 2)));
    }
    for (name, v, color) in [("weak alone", w, RGBColor(200, 0, 0)), ("strong alone", s, RGBColor(0, 150, 0))] {
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, v), (100.0, v)], 6, 4, color.stroke_width(1)))
            .map_err(|e| err(&e))?;
        legend.push(LegendEntry::new(format!("{name} ({v:.1}%)"), Mark::Dashed(color.to_rgba())));
    }
    // Level with the plot's top, below the title.
    chart::draw_legend(&legend_area.margin(60, 0, 0, 0), &legend, 15).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Chart size in pixels: the plot, then the legend's column.
const CHART: (u32, u32) = (1200, 560);

/// Width of the legend's column at the right of the chart, in pixels.
const LEGEND_WIDTH: u32 = 300;

/// Renders the pooled quality-vs-strong-share curves of the three routers as SVG.
pub fn curve_svg(c: &Comparison, title: &str) -> Result<String, RouterError> {
    let mut svg = String::new();
    draw_curves(SVGBackend::with_string(&mut svg, CHART).into_drawing_area(), c, title)?;
    Ok(svg)
}

/// Renders the same chart as a PNG file at `path`, written by [`write_png`].
pub fn curve_png(path: &Path, c: &Comparison, title: &str) -> Result<(), RouterError> {
    write_png(path, CHART, |area| draw_curves(area, c, title))
}

/// Draws a `size` picture with `draw` in memory, encodes it as PNG and writes it to `path` with
/// [`write_atomic`], so readers never see a half-drawn picture, a failed drawing writes nothing (`path`
/// keeps what it had), and concurrent runs into one folder do not share a temporary file.
pub fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), RouterError>,
) -> Result<(), RouterError> {
    let (w, h) = size;
    let mut rgb = picture::rgb_buffer(w, h);
    draw(BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area())?;
    let png = picture::rgb_to_png(&rgb, w, h)
        .map_err(|e| RouterError::write(path.display(), format_args!("cannot encode the chart as PNG: {e}")))?;
    write_atomic(path, &png)
}

/// The files [`write_report`] writes into its folder (`curve.png` only when a font is available).
pub const REPORT_FILES: [&str; 4] = ["report.md", "curve.svg", "curve.png", "report.json"];

/// The files of [`REPORT_FILES`] that already exist in `dir` (in that order), so a caller can refuse to
/// replace an earlier report, or the user's own `report.md`, without being told to.
pub fn existing_report_files(dir: &Path) -> Vec<PathBuf> {
    REPORT_FILES.iter().map(|f| dir.join(f)).filter(|p| p.symlink_metadata().is_ok()).collect()
}

/// Writes `report.md`, `curve.svg`, `curve.png` and `report.json` (the numbers, machine-readable)
/// into `dir` and returns the paths written, so callers can say exactly what is there. The PNG needs a
/// system font; when it cannot be drawn the SVG alone is kept (and the PNG is not in the list).
///
/// With [`Existing::Keep`] the Markdown report is written first and only where none is: of two runs
/// into one folder, the one that comes second writes nothing and fails, instead of the two results
/// mixing or the later one replacing the earlier.
pub fn write_report(
    dir: &Path,
    report: &CvReport,
    title: &str,
    notes: &str,
    existing: Existing,
) -> Result<Vec<PathBuf>, RouterError> {
    std::fs::create_dir_all(dir).map_err(|e| RouterError::write(dir.display(), e))?;
    let [md, svg, png, json_path] = REPORT_FILES.map(|f| dir.join(f));
    let md_text = markdown(report, title, notes, "curve.svg");
    if existing == Existing::Keep {
        // The claim on the folder (see above); the rest of the files then belong to this run.
        write_result(&md, md_text.as_bytes(), existing)?;
    }
    write_atomic(&svg, curve_svg(&report.pooled, title)?.as_bytes())?;
    let png_written = match curve_png(&png, &report.pooled, title) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "curve.png not written; curve.svg has the same chart");
            false
        }
    };
    let json = serde_json::to_string_pretty(report).map_err(|e| RouterError::write(dir.display(), e))?;
    write_atomic(&json_path, json.as_bytes())?;
    if existing == Existing::Replace {
        // Last, so that a report being replaced never points at a chart not yet drawn.
        write_atomic(&md, md_text.as_bytes())?;
    }
    Ok([Some(md), Some(svg), png_written.then_some(png), Some(json_path)].into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Outcome;
    use crate::eval::tests::report_of;

    #[test]
    fn undefined_metrics_read_n_a_with_a_warning() {
        let helped: Vec<Outcome> =
            (0..8).map(|i| Outcome { weak: if i < 6 { 1.0 } else { 0.0 }, strong: 1.0 }).collect();
        let tie: Vec<Outcome> = (0..8).map(|i| Outcome { weak: if i < 6 { 1.0 } else { 0.0 }, strong: 0.75 }).collect();
        let md = markdown(&report_of(&[helped.clone(), tie.clone()]), "t", "", "curve.svg");
        assert!(md.contains("**Warning:** in fold(s) 2 of 2, the strong model does not beat"), "{md}");
        assert!(md.contains("| 2 | 8 | n/a | n/a | n/a | n/a | n/a |"), "{md}");
        assert!(md.contains("| mean of 1 fold |"), "{md}");
        assert!(!md.to_lowercase().contains("nan"), "{md}");
        // Pooled strong 87.5% vs weak 75%: defined; the fold of ties alone is not.
        assert!(!md.contains("on this data"), "{md}");
        let md = markdown(&report_of(&[tie.clone(), tie]), "t", "", "curve.svg");
        assert!(md.contains("**Warning:** the strong model does not beat the weak one on this data"), "{md}");
        assert!(md.contains("| learned (difficulty scorer) | n/a | n/a | n/a |"), "{md}");
        assert!(md.contains("| mean of 0 folds | | n/a | n/a | n/a | n/a | n/a | |"), "{md}");
        assert!(!md.to_lowercase().contains("nan"), "{md}");
    }

    #[test]
    fn the_curve_legend_sits_right_of_the_plot_and_a_pipe_in_a_group_keeps_the_table() {
        let helped: Vec<Outcome> =
            (0..8).map(|i| Outcome { weak: if i < 6 { 1.0 } else { 0.0 }, strong: 1.0 }).collect();
        let mut report = report_of(&[helped.clone(), helped]);
        let svg = curve_svg(&report.pooled, "t").unwrap();
        let plot = f64::from(CHART.0 - LEGEND_WIDTH);
        for label in ["learned (APGR", "prompt length (APGR", "random (APGR", "weak alone (", "strong alone ("] {
            let x = svg
                .split("<text")
                .filter(|t| t.contains(label))
                .find_map(|t| t.split("x=\"").nth(1)?.split('"').next()?.parse::<f64>().ok());
            assert!(x.is_some_and(|x| x >= plot), "{label}: {x:?}");
        }
        report.folds[0].groups = vec!["a|b".into(), "c".into()];
        let md = markdown(&report, "t", "", "curve.svg");
        assert!(md.contains("| a\\|b, c |"), "{md}");
    }

    #[test]
    fn an_undefined_cv_apgr_is_saved_as_null_and_read_back() {
        use crate::scorer::CvSummary;
        let none = CvSummary { folds: 5, apgr: None, cpt50: None, cpt80: None };
        let json = serde_json::to_string(&none).unwrap();
        assert!(json.contains("\"apgr\":null"), "{json}");
        assert_eq!(serde_json::from_str::<CvSummary>(&json).unwrap(), none);
        let old = r#"{"folds": 5, "apgr": 0.61, "cpt50": 0.4, "cpt80": null}"#;
        assert_eq!(serde_json::from_str::<CvSummary>(old).unwrap().apgr, Some(0.61));
    }

    #[test]
    fn existing_report_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        assert!(existing_report_files(dir.path()).is_empty());
        std::fs::write(dir.path().join("report.md"), "mine").unwrap();
        std::fs::write(dir.path().join("notes.md"), "other").unwrap();
        assert_eq!(existing_report_files(dir.path()), vec![dir.path().join("report.md")]);
        assert!(existing_report_files(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn a_result_another_run_wrote_meanwhile_is_kept_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.json");
        write_result(&path, b"first", Existing::Keep).unwrap();
        let e = write_result(&path, b"second", Existing::Keep).unwrap_err().to_string();
        assert!(e.contains("another run") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        write_result(&path, b"third", Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"third");
    }
}
