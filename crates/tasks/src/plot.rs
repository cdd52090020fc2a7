//! The confusion matrix as a PNG heat map (row-normalised, counts printed when the matrix is small).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metrics::Metrics;
use crate::TaskError;

fn err(e: impl std::fmt::Display) -> TaskError {
    TaskError::Report(format!("cannot draw the confusion matrix: {e}"))
}

/// Shortens a label to `n` characters for an axis.
fn short(label: &str, n: usize) -> String {
    if label.chars().count() <= n {
        label.to_string()
    } else {
        let s: String = label.chars().take(n.saturating_sub(1)).collect();
        format!("{s}…")
    }
}

/// Largest side of the matrix itself, in pixels, however many labels there are.
const MAX_SIDE: u32 = 4000;

/// Draws `m.confusion` as a PNG in memory and writes it to `path` with
/// [`rightmodel_core::fsutil::write_atomic`], so readers never see a half-drawn picture and a failed
/// drawing leaves `path` as it was.
pub fn confusion_png(m: &Metrics, title: &str, path: &Path) -> Result<(), TaskError> {
    // Segmented axes over 0..k-1 give k cells; a 1x1 matrix is drawn as 2x2.
    let k = m.labels.len().max(2);
    let cell: u32 = if k <= 10 {
        60
    } else if k <= 30 {
        26
    } else {
        // At most MAX_SIDE pixels a side: the picture is drawn in memory (1,000 labels at 14 pixels
        // would take 590 MB).
        (MAX_SIDE / k as u32).clamp(2, 14)
    };
    let font: u32 = if k <= 30 { 13 } else { 10 };
    let label_chars = m.labels.iter().map(|l| l.chars().count()).max().unwrap_or(4).clamp(4, 24);
    let label_px = (label_chars as u32 + 3) * font * 6 / 10 + 16;
    let side = k as u32 * cell;
    let heading = format!("{title} (rows: true, columns: predicted)");
    // Wide enough for the heading too (15 px sans-serif: about 8 px a character), which a small matrix
    // cut off ("...probe on dev.tsv (rows: true, columns: pre").
    let heading_px = heading.chars().count() as u32 * 8 + 20;
    let matrix_w = side + label_px + 50;
    let (w, h) = (matrix_w.max(heading_px), side + 110);
    let mut rgb = rightmodel_core::picture::rgb_buffer(w, h);
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(&heading, ("sans-serif", 15)).map_err(err)?;
        // The matrix keeps its own width (square cells) when the heading is wider.
        let root = if w > matrix_w { root.split_horizontally(matrix_w).0 } else { root };
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(label_px)
            .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
            .map_err(err)?;
        let labels = m.labels.clone();
        let lab_y = labels.clone();
        // Small matrices name the columns; large ones number rows and columns (the number prefixes each
        // row label) because names do not fit under narrow cells.
        let numbered = k > 12;
        let col_chars = (cell as usize * 10 / (font as usize * 6)).max(3);
        let name = move |v: &SegmentValue<usize>, row: bool, ls: &[String]| match v {
            SegmentValue::CenterOf(i) if *i < k => {
                let idx = if row { k - 1 - *i } else { *i };
                let l = ls.get(idx).cloned().unwrap_or_default();
                match (numbered, row) {
                    (true, true) => format!("{} {}", idx + 1, short(&l, label_chars)),
                    (true, false) => format!("{}", idx + 1),
                    (false, true) => short(&l, label_chars),
                    (false, false) => short(&l, col_chars),
                }
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(k)
            .y_labels(k)
            .x_label_style(("sans-serif", font))
            .y_label_style(("sans-serif", font))
            .x_label_formatter(&|v| name(v, false, &labels))
            // Rows are drawn top-down: row i of the matrix sits at y = k-1-i.
            .y_label_formatter(&|v| name(v, true, &lab_y))
            .draw()
            .map_err(err)?;
        for (i, row) in m.confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (j, &c) in row.iter().enumerate() {
                let share = if total > 0 { c as f64 / total as f64 } else { 0.0 };
                // White to dark blue.
                let shade = |base: f64| (255.0 - share * (255.0 - base)) as u8;
                let color = RGBColor(shade(8.0), shade(48.0), shade(107.0));
                let y = k - 1 - i;
                let rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(j), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(j + 1), SegmentValue::Exact(y + 1)),
                    ],
                    color.filled(),
                );
                chart.draw_series(std::iter::once(rect)).map_err(err)?;
                if k <= 12 && c > 0 {
                    let text_color = if share > 0.5 { WHITE } else { BLACK };
                    let style =
                        ("sans-serif", 14).into_font().color(&text_color).pos(Pos::new(HPos::Center, VPos::Center));
                    let at = (SegmentValue::CenterOf(j), SegmentValue::CenterOf(y));
                    chart.draw_series(std::iter::once(Text::new(c.to_string(), at, style))).map_err(err)?;
                }
            }
        }
        root.present().map_err(err)?;
    }
    let png = rightmodel_core::picture::rgb_to_png(&rgb, w, h)
        .map_err(|e| TaskError::Report(format!("cannot encode the confusion matrix as PNG: {e}")))?;
    rightmodel_core::fsutil::write_atomic(path, &png).map_err(|e| TaskError::io(path, e))
}
