//! Pieces every report chart shares (the `png` feature): a legend drawn in an area of its own beside
//! the plot, never over points, bars or their labels, and a panel that says it has no data instead of
//! drawing an axis with nothing on it.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The error of drawing on a `DB` drawing area.
pub type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy)]
pub enum Mark {
    /// A filled dot (points of a scatter chart).
    Dot(RGBAColor),
    /// A line of the given width (a curve).
    Line(RGBAColor, u32),
    /// A thin dashed line (a reference level).
    Dashed(RGBAColor),
    /// A filled square (bars).
    Bar(RGBAColor),
}

/// One line of a legend: a mark and its label.
#[derive(Debug, Clone)]
pub struct LegendEntry {
    /// The series' name.
    pub label: String,
    /// How the series is drawn.
    pub mark: Mark,
}

impl LegendEntry {
    /// An entry labelled `label`, shown with `mark`.
    pub fn new(label: impl Into<String>, mark: Mark) -> Self {
        LegendEntry { label: label.into(), mark }
    }
}

/// Height of a legend line, in multiples of the font size.
const LINE_HEIGHT: f64 = 1.7;

/// Width of the mark before a label, in pixels.
const MARK_WIDTH: i32 = 18;

/// Draws `entries` top to bottom in `area`, which the caller has set aside for the legend (a column
/// beside the plots, or a strip below them), so the legend cannot cover what is plotted. Labels too
/// wide for the area are shortened with `…`; entries that do not fit below each other end with a
/// `+N more` line.
pub fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    font_px: u32,
) -> Result<(), DrawError<DB>> {
    let (w, h) = area.dim_in_pixel();
    let line = (f64::from(font_px) * LINE_HEIGHT).ceil() as i32;
    let pad = line / 2;
    let fits = usize::try_from(((h as i32 - 2 * pad) / line.max(1)).max(1)).unwrap_or(1);
    let shown = if entries.len() > fits { fits.saturating_sub(1) } else { entries.len() };
    let max_chars = label_chars(w.saturating_sub((2 * pad + MARK_WIDTH + 8) as u32), font_px);
    let style = TextStyle::from(("sans-serif", font_px).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, e) in entries.iter().take(shown).enumerate() {
        let y = pad + line * i as i32 + line / 2;
        draw_mark(area, e.mark, (pad, y))?;
        area.draw(&Text::new(shorten(&e.label, max_chars), (pad + MARK_WIDTH + 8, y), style.clone()))?;
    }
    if shown < entries.len() {
        let y = pad + line * shown as i32 + line / 2;
        area.draw(&Text::new(format!("+{} more", entries.len() - shown), (pad, y), style))?;
    }
    Ok(())
}

/// How many characters of a label fit in `width` pixels at `font_px` (an average sans-serif letter is
/// a little over half as wide as the font is high).
fn label_chars(width: u32, font_px: u32) -> usize {
    (f64::from(width) / (f64::from(font_px.max(1)) * 0.58)).floor().max(4.0) as usize
}

/// `label` cut to `max` characters, ending with `…` when cut.
fn shorten(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        return label.to_string();
    }
    let mut out: String = label.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Draws `mark` with its left end at `at` (vertically centred there).
fn draw_mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    mark: Mark,
    (x, y): (i32, i32),
) -> Result<(), DrawError<DB>> {
    match mark {
        Mark::Dot(c) => area.draw(&Circle::new((x + MARK_WIDTH / 2, y), 5, c.filled())),
        Mark::Line(c, width) => area.draw(&PathElement::new(vec![(x, y), (x + MARK_WIDTH, y)], c.stroke_width(width))),
        Mark::Dashed(c) => {
            area.draw(&PathElement::new(vec![(x, y), (x + 6, y)], c.stroke_width(1)))?;
            area.draw(&PathElement::new(vec![(x + 12, y), (x + MARK_WIDTH, y)], c.stroke_width(1)))
        }
        Mark::Bar(c) => area.draw(&Rectangle::new([(x + 3, y - 5), (x + MARK_WIDTH - 3, y + 5)], c.filled())),
    }
}

/// Fills `area` with a framed panel titled `title` that says `message` (e.g. "no cost data"): a chart
/// of values nobody knows would draw an axis of made-up ticks ("0.0") that reads as a measurement.
pub fn draw_no_data<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
    font_px: u32,
) -> Result<(), DrawError<DB>> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let margin = 20;
    area.draw(&Rectangle::new([(margin, margin), (w - margin, h - margin)], RGBColor(170, 170, 170).stroke_width(1)))?;
    let centred = |px: u32| TextStyle::from(("sans-serif", px).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(message.to_string(), (w / 2, h / 2), centred(font_px + 4)))?;
    area.draw(&Text::new(title.to_string(), (w / 2, h - margin - font_px as i32), centred(font_px)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_stays_in_its_area_and_says_what_it_left_out() {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (400, 120)).into_drawing_area();
            let (_, legend) = root.split_horizontally(250);
            let entries: Vec<LegendEntry> = (0..6)
                .map(|i| LegendEntry::new(format!("series {i} with a rather long name"), Mark::Dot(BLUE.to_rgba())))
                .collect();
            draw_legend(&legend, &entries, 15).unwrap();
        }
        // 120 px hold three lines of 26 px: two entries and the count of the rest.
        assert!(svg.contains("series 0") && svg.contains("series 1") && !svg.contains("series 2"), "{svg}");
        assert!(svg.contains("+4 more"), "{svg}");
        assert!(svg.contains('…') && !svg.contains("rather long name"), "{svg}");
    }

    #[test]
    fn shortening_counts_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("ééééé", 3), "éé…");
    }
}
