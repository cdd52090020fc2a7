//! Small vs large vs routed, measured on the user's own prompts: each model answers every prompt, and
//! the answers are scored against the expected ones; quality, latency and cost come out as a Markdown
//! table, machine-readable JSON and a chart (quality against cost and against latency).
//!
//! This module holds what is independent of how the answers were obtained (the test cases, scoring,
//! the summary, the report); `rightmodel eval route` asks a running gateway for the answers, so the
//! numbers include everything a client would see (routing, queueing, upstream round trips).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use rightmodel_core::answer::{choice_letter, contains_answer, exact_match, f1};
use rightmodel_core::chart::{self, LegendEntry, Mark};
use rightmodel_core::markdown::cell;
use rightmodel_core::wire::ChatMessage;
use serde::{Deserialize, Serialize};

use crate::conversation::Conversation;
use crate::data::parse_prompt_line;
use crate::error::RouterError;
use crate::metrics::nearest_rank;
use crate::report::{write_atomic, write_png};

/// One prompt and the answers that count as right.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The conversation sent to each model.
    pub messages: Vec<ChatMessage>,
    /// Accepted answers (at least one).
    pub expected: Vec<String>,
    /// Line of the data file it came from (1-based), for messages.
    pub line: usize,
}

/// How an answer is scored against the expected ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// The answer contains an expected answer as whole words (after SQuAD normalisation): 1 or 0. With
    /// the case at hand ([`Scoring::score_case`]), copies of the prompt in the answer do not count.
    Contains,
    /// The answer equals an expected answer after normalisation: 1 or 0.
    Exact,
    /// Best token F1 against the expected answers, in [0, 1].
    F1,
    /// The option letter the answer picks (`A`-`H`) equals the expected letter: 1 or 0.
    Choice,
}

impl std::str::FromStr for Scoring {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "contains" => Ok(Scoring::Contains),
            "exact" => Ok(Scoring::Exact),
            "f1" => Ok(Scoring::F1),
            "choice" => Ok(Scoring::Choice),
            other => Err(format!("unknown scoring `{other}` (contains, exact, f1 or choice)")),
        }
    }
}

impl std::fmt::Display for Scoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scoring::Contains => "contains",
            Scoring::Exact => "exact",
            Scoring::F1 => "f1",
            Scoring::Choice => "choice",
        })
    }
}

impl Scoring {
    /// The quality of `answer` in [0, 1].
    pub fn score(self, answer: &str, expected: &[String]) -> f64 {
        match self {
            Scoring::Contains => f64::from(u8::from(contains_answer(answer, expected))),
            Scoring::Exact => f64::from(exact_match(answer, expected)),
            Scoring::F1 => f64::from(f1(answer, expected)),
            Scoring::Choice => {
                let picked = choice_letter(answer);
                let right = expected.iter().any(|e| picked.is_some() && choice_letter(e) == picked);
                f64::from(u8::from(right))
            }
        }
    }
}

impl Case {
    /// The text of every message of the case, one per line: what an answer could copy back.
    pub fn prompt_text(&self) -> String {
        self.messages.iter().map(ChatMessage::text).collect::<Vec<_>>().join("\n")
    }
}

impl Scoring {
    /// The quality of `answer` to `case` in [0, 1]: as [`Scoring::score`], except that `contains`
    /// gives no credit for an echo of the prompt: copies of whole messages at the answer's start are
    /// dropped first ([`strip_leading_echo`], however short), then [`contains_not_echoed`] applies.
    pub fn score_case(self, answer: &str, case: &Case) -> f64 {
        match self {
            Scoring::Contains => {
                let texts: Vec<String> = case.messages.iter().map(ChatMessage::text).collect();
                let answer = strip_leading_echo(answer, &texts);
                f64::from(u8::from(contains_not_echoed(answer, &case.prompt_text(), &case.expected)))
            }
            other => other.score(answer, &case.expected),
        }
    }
}

/// Shortest stretch of an answer, in characters, that counts as an echo of the prompt when the prompt
/// holds it too: long enough that a short answer ("negative", "Paris") is never taken for one.
pub const MIN_ECHO_CHARS: usize = 20;

/// `contains` scoring that does not reward echoes: an expected answer that the prompt itself contains
/// (as in "Is this review positive or negative?") counts only when it is found in the answer after every
/// stretch of [`MIN_ECHO_CHARS`] or more characters that the answer copies from the prompt has been cut
/// out ([`strip_echo`]). An expected answer that the prompt does not contain is looked for in the whole
/// answer, as [`contains_answer`] does.
pub fn contains_not_echoed(answer: &str, prompt: &str, expected: &[String]) -> bool {
    let mut stripped: Option<String> = None;
    expected.iter().any(|e| {
        let one = std::slice::from_ref(e);
        if contains_answer(prompt, one) {
            contains_answer(stripped.get_or_insert_with(|| strip_echo(answer, prompt)), one)
        } else {
            contains_answer(answer, one)
        }
    })
}

/// `answer` after any copies of whole `messages` it starts with (compared case-insensitively, the
/// whitespace around them ignored): a short prompt echoed before the reply ("Yes or no: is 9 prime?")
/// is below [`MIN_ECHO_CHARS`], yet no more an answer than a long one.
pub fn strip_leading_echo<'a>(answer: &'a str, messages: &[String]) -> &'a str {
    let mut rest = answer.trim_start();
    loop {
        let before = rest.len();
        for m in messages.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
            if let Some(after) = strip_prefix_ignoring_case(rest, m) {
                rest = after.trim_start();
            }
        }
        if rest.len() == before {
            return rest;
        }
    }
}

/// `text` after `prefix` when it starts with it, letter case aside.
fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let mut at = text.char_indices();
    for p in prefix.chars() {
        let (_, t) = at.next()?;
        if !t.to_lowercase().eq(p.to_lowercase()) {
            return None;
        }
    }
    Some(at.next().map_or("", |(i, _)| &text[i..]))
}

/// `answer`, lower-cased, with every maximal stretch of at least [`MIN_ECHO_CHARS`] characters that
/// also occurs in `prompt` (compared lower-cased) replaced by a space. Stretches are taken greedily from
/// the left, each as long as it can be.
pub fn strip_echo(answer: &str, prompt: &str) -> String {
    let a: Vec<char> = answer.to_lowercase().chars().collect();
    let p_text = prompt.to_lowercase();
    let p: Vec<char> = p_text.chars().collect();
    let windows: std::collections::HashSet<&[char]> = p.windows(MIN_ECHO_CHARS).collect();
    let in_prompt = |from: usize, to: usize| p_text.contains(&a[from..to].iter().collect::<String>());
    let mut out = String::with_capacity(answer.len());
    let mut i = 0;
    while i < a.len() {
        let start = i + MIN_ECHO_CHARS;
        if start > a.len() || !windows.contains(&a[i..start]) {
            out.push(a[i]);
            i += 1;
            continue;
        }
        // The longest echo from `i`: whether a[i..j] occurs in the prompt only turns false as j grows.
        let (mut lo, mut hi) = (start, a.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if in_prompt(i, mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        out.push(' ');
        i = lo;
    }
    out
}

/// The accepted answers of a JSON line: `answer` (or `expected`) as a string, a number or a list of them.
fn expected_of(v: &serde_json::Value) -> Result<Vec<String>, String> {
    let field = v.get("answer").or_else(|| v.get("expected")).ok_or("no `answer` field")?;
    let one = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let all: Vec<String> = match field {
        serde_json::Value::Array(a) => {
            a.iter().map(|x| one(x).ok_or("`answer` lists a non-text value")).collect::<Result<_, _>>()?
        }
        x => vec![one(x).ok_or("`answer` must be text, a number or a list of them")?],
    };
    let all: Vec<String> = all.into_iter().filter(|s| !s.trim().is_empty()).collect();
    if all.is_empty() {
        return Err("`answer` is empty".into());
    }
    Ok(all)
}

fn chat_of(c: &Conversation) -> Vec<ChatMessage> {
    c.messages.iter().map(|m| ChatMessage::new(&m.role, m.content.clone())).collect()
}

/// Reads the test cases: JSON lines `{"prompt": "...", "answer": "..."}` (or `"messages": [...]`, and
/// `answer` as a list of accepted answers), or a CSV with `prompt` and `answer` columns (several accepted
/// answers separated by `|`). Errors name the file and line.
pub fn read_cases(path: &Path) -> Result<Vec<Case>, RouterError> {
    crate::data::check_input_file(path, "a .jsonl or .csv file of test cases")?;
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut out = Vec::new();
    if is_csv {
        let mut rdr = csv::ReaderBuilder::new().from_path(path).map_err(|e| RouterError::data(path.display(), e))?;
        let headers = rdr.headers().map_err(|e| RouterError::data(path.display(), e))?.clone();
        let col = |name: &str| {
            headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
                RouterError::data(path.display(), format!("no column `{name}` (the CSV needs `prompt` and `answer`)"))
            })
        };
        let (p, a) = (col("prompt")?, col("answer")?);
        for rec in rdr.records() {
            let rec = rec.map_err(|e| RouterError::data(path.display(), e))?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let expected: Vec<String> = rec
                .get(a)
                .unwrap_or("")
                .split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let prompt = rec.get(p).unwrap_or("");
            if expected.is_empty() || prompt.trim().is_empty() {
                return Err(RouterError::data(format!("{}:{line}", path.display()), "empty `prompt` or `answer`"));
            }
            out.push(Case { messages: chat_of(&Conversation::parse_cell(prompt)), expected, line: line as usize });
        }
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| RouterError::data(path.display(), e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), i + 1);
            let conversation = parse_prompt_line(line).map_err(|e| RouterError::data(at(), e))?;
            if conversation.last_user().trim().is_empty() {
                return Err(RouterError::data(at(), "the prompt is empty"));
            }
            let v: serde_json::Value =
                serde_json::from_str(line.trim_start_matches('\u{feff}')).map_err(|e| RouterError::data(at(), e))?;
            let expected = expected_of(&v).map_err(|e| RouterError::data(at(), e))?;
            out.push(Case { messages: chat_of(&conversation), expected, line: i + 1 });
        }
    }
    if out.is_empty() {
        return Err(RouterError::data(path.display(), "no test cases"));
    }
    Ok(out)
}

/// Fails when an expected answer cannot score under `scoring`: one that names no option letter for
/// `choice`, or one that normalises to nothing ("The", "?") for the others (it could never be found,
/// and an empty answer would equal it). Every model would silently score 0 on such a case.
pub fn check_expected(path: &Path, cases: &[Case], scoring: Scoring) -> Result<(), RouterError> {
    for c in cases {
        for e in &c.expected {
            let bad = match scoring {
                Scoring::Choice => {
                    choice_letter(e).is_none().then_some("names no option letter (A-H) for --scoring choice")
                }
                _ => rightmodel_core::answer::normalize_answer(e)
                    .is_empty()
                    .then_some("is empty once punctuation and articles are dropped"),
            };
            if let Some(why) = bad {
                return Err(RouterError::data(
                    format!("{}:{}", path.display(), c.line),
                    format!("the answer `{e}` {why}"),
                ));
            }
        }
    }
    Ok(())
}

/// One model's answer to one case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// Index of the case among those read (0-based; blank lines are skipped, see [`Case::line`]).
    pub case: usize,
    /// The model asked for (a name, or `auto`).
    pub model: String,
    /// The model that answered (`x-rightmodel-model`), when the request succeeded.
    pub served: Option<String>,
    /// The answer's text.
    pub answer: String,
    /// Its quality in [0, 1] (0 for a failed request).
    pub quality: f64,
    /// Wall-clock time of the request in milliseconds, as the client saw it (until the failure, for a
    /// failed one).
    pub latency_ms: f64,
    /// Time to the first answer text in milliseconds, when the answer was streamed (`--stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// What the gateway billed (`x-rightmodel-cost-usd`, or a stream's `rightmodel.cost_usd`); `None` when the server does not say (another
    /// OpenAI-compatible server) or the request failed.
    pub cost_usd: Option<f64>,
    /// Why the request failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One model's numbers over all cases.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelSummary {
    /// The model asked for.
    pub model: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed (they score 0).
    pub errors: usize,
    /// Mean quality over all requests.
    pub quality: f64,
    /// Median latency of the requests that succeeded (a failure ends early and would make a dead
    /// model look fastest); `None` when none did.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency of the requests that succeeded; `None` when none did.
    pub p95_ms: Option<f64>,
    /// Median time to the first answer text (streamed answers that succeeded only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile time to the first answer text (streamed answers that succeeded only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_p95_ms: Option<f64>,
    /// Total cost; `None` when an answered request's cost is unknown.
    pub cost_usd: Option<f64>,
    /// Cost per 1,000 requests; `None` when the cost is unknown.
    pub cost_per_1k_usd: Option<f64>,
    /// How many answers each served model gave (for `auto`: the routing mix).
    pub served: BTreeMap<String, usize>,
}

/// Summarises `outcomes` per model, in the order of `models`.
pub fn summarize(models: &[String], outcomes: &[Outcome]) -> Vec<ModelSummary> {
    models
        .iter()
        .map(|m| {
            let mine: Vec<&Outcome> = outcomes.iter().filter(|o| &o.model == m).collect();
            let n = mine.len();
            let answered = mine.iter().filter(|o| o.error.is_none());
            let mut lat: Vec<f64> = answered.clone().map(|o| o.latency_ms).collect();
            lat.sort_by(f64::total_cmp);
            let mut ttft: Vec<f64> = answered.filter_map(|o| o.ttft_ms).collect();
            ttft.sort_by(f64::total_cmp);
            let known = mine.iter().all(|o| o.error.is_some() || o.cost_usd.is_some());
            // `+ 0.0`: a float sum of nothing is -0.0, which printed as `-0.000000` for a model that never answered.
            let cost = known.then(|| mine.iter().filter_map(|o| o.cost_usd).sum::<f64>() + 0.0);
            let mut served = BTreeMap::new();
            for o in &mine {
                if let Some(s) = &o.served {
                    *served.entry(s.clone()).or_insert(0) += 1;
                }
            }
            ModelSummary {
                model: m.clone(),
                requests: n,
                errors: mine.iter().filter(|o| o.error.is_some()).count(),
                quality: if n == 0 { 0.0 } else { mine.iter().map(|o| o.quality).sum::<f64>() / n as f64 },
                p50_ms: (!lat.is_empty()).then(|| nearest_rank(&lat, 0.5)),
                p95_ms: (!lat.is_empty()).then(|| nearest_rank(&lat, 0.95)),
                ttft_p50_ms: (!ttft.is_empty()).then(|| nearest_rank(&ttft, 0.5)),
                ttft_p95_ms: (!ttft.is_empty()).then(|| nearest_rank(&ttft, 0.95)),
                cost_usd: cost,
                cost_per_1k_usd: cost.map(|c| if n == 0 { 0.0 } else { 1000.0 * c / n as f64 }),
                served,
            }
        })
        .collect()
}

impl ModelSummary {
    /// Whether every request to this model failed (and there was at least one): its numbers say
    /// nothing about the model, and `eval route` fails after writing the report.
    pub fn all_failed(&self) -> bool {
        self.requests > 0 && self.errors == self.requests
    }
}

fn served_mix(s: &ModelSummary) -> String {
    let answered: usize = s.served.values().sum();
    if answered == 0 {
        return "-".into();
    }
    s.served
        .iter()
        .map(|(m, k)| format!("{m} {:.0}%", 100.0 * *k as f64 / answered as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How much of an interrupted run a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Partial {
    /// Prompts every model answered before the run was stopped: the report is over these.
    pub answered: usize,
    /// Prompts the run was to ask.
    pub total: usize,
}

impl Partial {
    /// The sentence that marks a report as partial.
    pub fn sentence(&self) -> String {
        format!(
            "**Partial run:** interrupted after {} of {} prompts were answered by every model; every number here is over those {} only.",
            self.answered, self.total, self.answered
        )
    }
}

/// The outcomes of the cases that every one of `models` models has an outcome for, in order, and how
/// many such cases there are: an interrupted run compares the models on the same prompts only.
pub fn complete_cases(outcomes: &[Outcome], models: usize) -> (Vec<Outcome>, usize) {
    let mut per_case: BTreeMap<usize, usize> = BTreeMap::new();
    for o in outcomes {
        *per_case.entry(o.case).or_default() += 1;
    }
    let complete = |case: usize| per_case.get(&case).is_some_and(|&n| n >= models);
    let kept: Vec<Outcome> = outcomes.iter().filter(|o| complete(o.case)).cloned().collect();
    let cases = per_case.values().filter(|&&n| n >= models).count();
    (kept, cases)
}

/// The Markdown report: one row per model, a link to the chart image `chart_file` when there is one (a
/// report folder; not on a terminal), and `notes` (data file, gateway, settings); marked at the top
/// when it covers only the `partial` part of an interrupted run.
pub fn markdown(
    summaries: &[ModelSummary],
    scoring: Scoring,
    notes: &str,
    chart_file: Option<&str>,
    partial: Option<Partial>,
) -> String {
    let mut s = String::from("# Small vs large vs routed\n\n");
    if let Some(p) = partial {
        let _ = writeln!(s, "{}\n", p.sentence());
    }
    // Time to first token only when answers were streamed.
    let streamed = summaries.iter().any(|m| m.ttft_p50_ms.is_some());
    let (ttft_head, ttft_rule) = if streamed { (" first token p50 ms | p95 ms |", "---:|---:|") } else { ("", "") };
    let _ = writeln!(
        s,
        "| model | quality ({scoring}) | p50 ms | p95 ms |{ttft_head} cost (USD) | per 1k requests | errors | answered by |\n|---|---:|---:|---:|{ttft_rule}---:|---:|---:|---|"
    );
    let usd = |v: Option<f64>, digits: usize| v.map_or("n/a".to_string(), |v| format!("{v:.digits$}"));
    let ms = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    for m in summaries {
        let ttft = if streamed { format!(" {} | {} |", ms(m.ttft_p50_ms), ms(m.ttft_p95_ms)) } else { String::new() };
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} | {} |{ttft} {} | {} | {} | {} |",
            cell(&m.model),
            m.quality,
            ms(m.p50_ms),
            ms(m.p95_ms),
            usd(m.cost_usd, 6),
            usd(m.cost_per_1k_usd, 4),
            m.errors,
            cell(&served_mix(m))
        );
    }
    // What each model keeps of the costliest one's quality, and at what share of its cost: only when
    // every request of both was answered and priced (failures would skew either side).
    let clean = |m: &&ModelSummary| m.requests > 0 && m.errors == 0 && m.cost_usd.is_some();
    let cost_of = |m: &ModelSummary| m.cost_usd.unwrap_or(0.0);
    if let Some(top) = summaries.iter().filter(clean).max_by(|a, b| cost_of(a).total_cmp(&cost_of(b))) {
        if cost_of(top) > 0.0 {
            s.push('\n');
            for m in summaries.iter().filter(clean).filter(|m| m.model != top.model) {
                let share = 100.0 * cost_of(m) / cost_of(top);
                let _ = if top.quality > 0.0 {
                    let kept = 100.0 * m.quality / top.quality;
                    writeln!(
                        s,
                        "- `{}` keeps {kept:.0}% of `{}`'s quality at {share:.0}% of its cost.",
                        m.model, top.model
                    )
                } else {
                    writeln!(s, "- `{}` costs {share:.0}% of `{}`.", m.model, top.model)
                };
            }
        }
    }
    if let Some(chart) = chart_file {
        let _ = writeln!(s, "\n![quality against cost and latency]({chart})");
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Run\n\n{notes}");
    }
    s
}

/// Chart size in pixels: two panels side by side, then the legend's column.
const CHART: (u32, u32) = (1340, 480);

/// Width of the legend's column at the right of the chart, in pixels.
const LEGEND_WIDTH: u32 = 240;

/// Colours of the models' points, in order.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(120, 120, 120),
];

/// Reads a chart's x value off a model's summary (`None`: not known).
type XOf = fn(&ModelSummary) -> Option<f64>;

/// Draws quality against cost per 1k requests (left) and against p50 latency (right), with one legend
/// for both in a column of its own at the right, where it covers no point and no name. A panel with
/// no model's value (no gateway said what a request cost) says so instead of drawing an empty axis.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    summaries: &[ModelSummary],
) -> Result<(), RouterError> {
    let err = |e: &dyn std::fmt::Display| RouterError::Eval(format!("plot: {e}"));
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (plots, legend) = root.split_horizontally(CHART.0 - LEGEND_WIDTH);
    let panels = plots.split_evenly((1, 2));
    let axes: [(&str, &str, XOf); 2] = [
        ("cost per 1,000 requests (USD)", "no cost data", |m| m.cost_per_1k_usd),
        ("median latency (ms)", "no latency data", |m| m.p50_ms),
    ];
    for (panel, (x_desc, none, x_of)) in panels.iter().zip(axes) {
        if summaries.iter().all(|m| x_of(m).is_none()) {
            chart::draw_no_data(panel, x_desc, none, 15).map_err(|e| err(&e))?;
        } else {
            draw_panel(panel, summaries, x_desc, x_of)?;
        }
    }
    let entries: Vec<LegendEntry> = summaries
        .iter()
        .enumerate()
        .map(|(i, m)| LegendEntry::new(m.model.clone(), Mark::Dot(COLOURS[i % COLOURS.len()].to_rgba())))
        .collect();
    let legend = legend.margin(20, 0, 0, 0);
    chart::draw_legend(&legend, &entries, 15).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Draws one panel: quality against the x value `x_of` reads (models without one are left out), each
/// point named a little above and right of it.
fn draw_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, plotters::coord::Shift>,
    summaries: &[ModelSummary],
    x_desc: &str,
    x_of: XOf,
) -> Result<(), RouterError> {
    let err = |e: &dyn std::fmt::Display| RouterError::Eval(format!("plot: {e}"));
    let max_q = summaries.iter().map(|m| m.quality).fold(0.0, f64::max);
    let y_hi = (100.0 * max_q * 1.15).clamp(5.0, 100.0);
    let x_hi = summaries.iter().filter_map(x_of).fold(0.0, f64::max).max(1e-9) * 1.25;
    let mut chart = ChartBuilder::on(panel)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("quality (%)")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, m) in summaries.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let Some(x) = x_of(m) else { continue };
        let p = (x, 100.0 * m.quality);
        chart.draw_series(std::iter::once(Circle::new(p, 6, colour.filled()))).map_err(|e| err(&e))?;
        // The name a little above and right of its point, so neither hides the other.
        let name = EmptyElement::at(p) + Text::new(m.model.clone(), (8, -18), ("sans-serif", 15).into_font());
        chart.draw_series(std::iter::once(name)).map_err(|e| err(&e))?;
    }
    Ok(())
}

/// The chart as SVG.
pub fn chart_svg(summaries: &[ModelSummary]) -> Result<String, RouterError> {
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, CHART).into_drawing_area(), summaries)?;
    Ok(svg)
}

/// The chart as a PNG file at `path`, written by [`crate::report::write_png`] (drawn in memory, then written atomically).
pub fn chart_png(path: &Path, summaries: &[ModelSummary]) -> Result<(), RouterError> {
    write_png(path, CHART, |area| draw(area, summaries))
}

/// Writes `compare.json` (the summaries), `answers.jsonl` (every answer with its score), `compare.md`,
/// and the chart as `compare.svg` and `compare.png` into `dir`; returns the paths written, so callers
/// can say exactly what is there. The numbers come first: a chart that cannot be drawn (the PNG needs a
/// system font) is a warning, not the loss of a paid run.
pub fn write_report(
    dir: &Path,
    summaries: &[ModelSummary],
    outcomes: &[Outcome],
    scoring: Scoring,
    notes: &str,
    partial: Option<Partial>,
) -> Result<Vec<PathBuf>, RouterError> {
    std::fs::create_dir_all(dir).map_err(|e| RouterError::write(dir.display(), e))?;
    let mut written = Vec::new();
    let json = serde_json::to_string_pretty(summaries).map_err(|e| RouterError::write(dir.display(), e))?;
    write_atomic(&dir.join("compare.json"), json.as_bytes())?;
    written.push(dir.join("compare.json"));
    let mut lines = String::new();
    for o in outcomes {
        lines.push_str(&serde_json::to_string(o).map_err(|e| RouterError::write(dir.display(), e))?);
        lines.push('\n');
    }
    write_atomic(&dir.join("answers.jsonl"), lines.as_bytes())?;
    written.push(dir.join("answers.jsonl"));
    write_atomic(
        &dir.join("compare.md"),
        markdown(summaries, scoring, notes, Some("compare.svg"), partial).as_bytes(),
    )?;
    written.push(dir.join("compare.md"));
    match chart_svg(summaries) {
        Ok(svg) => {
            write_atomic(&dir.join("compare.svg"), svg.as_bytes())?;
            written.push(dir.join("compare.svg"));
        }
        Err(e) => tracing::warn!(error = %e, "compare.svg not written"),
    }
    match chart_png(&dir.join("compare.png"), summaries) {
        Ok(()) => written.push(dir.join("compare.png")),
        Err(e) => tracing::warn!(error = %e, "compare.png not written"),
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_of_the_prompt_gets_no_credit_under_contains() {
        let prompt = "Is this review positive or negative? 'The plot drags and the jokes fall flat.'";
        let case = Case {
            messages: vec![ChatMessage::new("user", prompt.to_string())],
            expected: vec!["negative".into()],
            line: 1,
        };
        let q = |answer: &str| Scoring::Contains.score_case(answer, &case);
        assert_eq!(q(prompt), 0.0, "the whole prompt echoed");
        assert_eq!(q("Is this review positive or negative?"), 0.0, "the question echoed");
        assert_eq!(q("negative"), 1.0);
        assert_eq!(q("The review is negative."), 1.0);
        assert_eq!(q("Negative. The plot drags and the jokes fall flat."), 1.0, "a right answer quoting the review");
        assert_eq!(q("Is this review positive or negative? Negative."), 1.0, "echo, then the answer");
        assert_eq!(q("positive"), 0.0);
        // An expected answer the prompt does not hold is found anywhere, as before.
        let plain = Case { expected: vec!["boring".into()], ..case.clone() };
        assert_eq!(Scoring::Contains.score_case("It is boring, and the jokes fall flat.", &plain), 1.0);
        // Other scorings are unchanged.
        assert_eq!(Scoring::Exact.score_case("Negative", &case), 1.0);
    }

    #[test]
    fn a_short_prompt_echoed_before_the_reply_gets_no_credit_under_contains() {
        // 19 characters: shorter than the stretches `strip_echo` cuts.
        let prompt = "Is 2+2=5? Yes or no";
        assert!(prompt.chars().count() < MIN_ECHO_CHARS);
        let case =
            Case { messages: vec![ChatMessage::new("user", prompt.to_string())], expected: vec!["no".into()], line: 1 };
        let q = |answer: &str| Scoring::Contains.score_case(answer, &case);
        assert_eq!(q(prompt), 0.0, "the prompt echoed alone");
        assert_eq!(q("  is 2+2=5? YES OR NO\n\nIs 2+2=5? Yes or no"), 0.0, "echoed twice, in another case");
        assert_eq!(q("Is 2+2=5? Yes or no. Yes."), 0.0);
        assert_eq!(q("Is 2+2=5? Yes or no. No."), 1.0, "echo, then the answer");
        assert_eq!(q("No."), 1.0);
        assert_eq!(q("No, 2+2=4. Is 2+2=5? Yes or no"), 1.0, "the answer first");
        assert_eq!(strip_leading_echo("ÉTÉ? oui", &["été?".into()]), "oui");
        assert_eq!(strip_leading_echo("abc", &["abcd".into(), String::new()]), "abc");
    }

    #[test]
    fn strip_echo_cuts_long_copies_only() {
        let prompt = "Is this review positive or negative? 'The plot drags.'";
        assert_eq!(strip_echo("Negative", prompt), "negative");
        assert_eq!(strip_echo("Is this review positive or negative? Negative", prompt).trim(), "negative");
    }

    fn outcome(case: usize, model: &str, served: &str, quality: f64, ms: f64, cost: f64) -> Outcome {
        Outcome {
            case,
            model: model.into(),
            served: Some(served.into()),
            answer: String::new(),
            quality,
            latency_ms: ms,
            ttft_ms: None,
            cost_usd: Some(cost),
            error: None,
        }
    }

    #[test]
    fn streamed_answers_add_time_to_first_token() {
        let models = vec!["small".to_string()];
        let mut a = outcome(0, "small", "small", 1.0, 100.0, 0.0);
        a.ttft_ms = Some(20.0);
        let mut b = outcome(1, "small", "small", 1.0, 200.0, 0.0);
        b.ttft_ms = Some(40.0);
        let s = summarize(&models, &[a.clone(), b]);
        assert_eq!((s[0].ttft_p50_ms, s[0].ttft_p95_ms), (Some(20.0), Some(40.0)));
        let md = markdown(&s, Scoring::Contains, "", None, None);
        assert!(md.contains("first token p50 ms") && md.contains(" | 200 | 20 | 40 |"), "{md}");
        // Not streamed: no such columns.
        a.ttft_ms = None;
        let md = markdown(&summarize(&models, &[a]), Scoring::Contains, "", None, None);
        assert!(!md.contains("first token"), "{md}");
    }

    #[test]
    fn scoring_modes() {
        let gold = vec!["Paris".to_string()];
        assert_eq!(Scoring::Contains.score("It is Paris.", &gold), 1.0);
        assert_eq!(Scoring::Exact.score("It is Paris.", &gold), 0.0);
        assert_eq!(Scoring::Exact.score("paris", &gold), 1.0);
        assert!((Scoring::F1.score("Paris France", &gold) - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(Scoring::Choice.score("The answer is (b).", &["B".to_string()]), 1.0);
        assert_eq!(Scoring::Choice.score("C", &["B".to_string()]), 0.0);
        assert_eq!(Scoring::Choice.score("no idea", &["B".to_string()]), 0.0);
        assert_eq!("F1".parse::<Scoring>(), Ok(Scoring::F1));
        assert!("fuzzy".parse::<Scoring>().is_err());
    }

    #[test]
    fn summary_counts_quality_latency_cost_and_the_routing_mix() {
        let models = vec!["small".to_string(), "auto".to_string()];
        let mut fail = outcome(1, "small", "small", 0.0, 0.0, 0.0);
        fail.error = Some("502".into());
        fail.served = None;
        fail.cost_usd = None;
        fail.latency_ms = 5.0;
        let outs = vec![
            outcome(0, "small", "small", 1.0, 10.0, 0.0),
            fail,
            outcome(0, "auto", "small", 1.0, 12.0, 0.0),
            outcome(1, "auto", "large", 1.0, 300.0, 0.002),
        ];
        let s = summarize(&models, &outs);
        assert_eq!(s[0].requests, 2);
        assert_eq!(s[0].errors, 1);
        assert_eq!(s[0].quality, 0.5);
        // The failure (5 ms) is not a latency: it would pass for the fastest answer.
        assert_eq!((s[0].p50_ms, s[0].p95_ms), (Some(10.0), Some(10.0)));
        assert_eq!(s[0].cost_usd, Some(0.0));
        assert_eq!(s[1].quality, 1.0);
        assert_eq!(s[1].p50_ms, Some(12.0));
        assert_eq!(s[1].p95_ms, Some(300.0));
        assert!(!s[0].all_failed() && !s[1].all_failed());
        assert!((s[1].cost_per_1k_usd.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(s[1].served.get("large"), Some(&1));
        let md = markdown(&s, Scoring::Contains, "", Some("compare.svg"), None);
        assert!(md.contains("| auto | 1.000 |") && md.contains("large 50%, small 50%"), "{md}");
        // `small` had a failure: no "keeps" line that would compare it.
        assert!(!md.contains("`small` keeps"), "{md}");
        assert!(chart_svg(&s).unwrap().contains("<svg"));
        let clean = summarize(&models, &[outs[0].clone(), outs[2].clone(), outs[3].clone()]);
        let md = markdown(&clean, Scoring::Contains, "", Some("compare.svg"), None);
        assert!(md.contains("`small` keeps 100% of `auto`'s quality at 0% of its cost"), "{md}");
        // A server that does not say what a call cost: n/a, never $0.
        let mut unpriced = outs[0].clone();
        unpriced.cost_usd = None;
        let s = summarize(&models[..1], &[unpriced]);
        assert_eq!(s[0].cost_usd, None);
        assert!(markdown(&s, Scoring::Contains, "", Some("x"), None).contains("| n/a | n/a |"));
    }

    /// The `(x, text)` of every text element of an SVG picture.
    fn svg_texts(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let x = t.split("x=\"").nth(1)?.split('"').next()?.parse().ok()?;
                let body = t.split_once('>')?.1.split("</text>").next()?;
                Some((x, body.trim().to_string()))
            })
            .collect()
    }

    #[test]
    fn the_legend_has_a_column_of_its_own_and_unknown_costs_draw_no_axis() {
        let models = vec!["small".to_string(), "large".to_string()];
        let priced = summarize(
            &models,
            &[outcome(0, "small", "small", 1.0, 50.0, 0.0), outcome(0, "large", "large", 1.0, 900.0, 0.01)],
        );
        let texts = svg_texts(&chart_svg(&priced).unwrap());
        let plots = f64::from(CHART.0 - LEGEND_WIDTH);
        for m in &models {
            // Named beside its points (in the panels) and once in the legend, right of both panels.
            assert!(texts.iter().any(|(x, t)| t == m && *x < plots), "{m}: {texts:?}");
            assert!(texts.iter().any(|(x, t)| t == m && *x >= plots), "{m}: {texts:?}");
        }
        assert!(!texts.iter().any(|(_, t)| t == "no cost data"), "{texts:?}");
        let mut unpriced = priced.clone();
        for m in &mut unpriced {
            (m.cost_usd, m.cost_per_1k_usd) = (None, None);
        }
        let texts = svg_texts(&chart_svg(&unpriced).unwrap());
        assert!(texts.iter().any(|(_, t)| t == "no cost data"), "{texts:?}");
        // The cost panel (the left half of the plots) has no tick labels: only the latency panel does.
        let half = plots / 2.0;
        assert!(!texts.iter().any(|(x, t)| *x < half && t.parse::<f64>().is_ok()), "{texts:?}");
        assert!(texts.iter().any(|(x, t)| *x >= half && *x < plots && t.parse::<f64>().is_ok()), "{texts:?}");
    }

    #[test]
    fn an_interrupted_run_reports_the_prompts_every_model_answered() {
        let models = vec!["small".to_string(), "large".to_string()];
        // Case 0 answered by both, case 1 by `small` only, case 2 by both (requests run concurrently).
        let outs = [
            outcome(0, "small", "small", 1.0, 10.0, 0.0),
            outcome(0, "large", "large", 1.0, 90.0, 0.01),
            outcome(1, "small", "small", 0.0, 10.0, 0.0),
            outcome(2, "small", "small", 0.0, 10.0, 0.0),
            outcome(2, "large", "large", 1.0, 90.0, 0.01),
        ];
        let (kept, cases) = complete_cases(&outs, models.len());
        assert_eq!(cases, 2);
        assert_eq!(kept.iter().map(|o| o.case).collect::<Vec<_>>(), vec![0, 0, 2, 2]);
        let s = summarize(&models, &kept);
        assert_eq!(s[0].requests, 2);
        let partial = Partial { answered: cases, total: 10 };
        let md = markdown(&s, Scoring::Contains, "", None, Some(partial));
        assert!(md.contains("**Partial run:** interrupted after 2 of 10 prompts"), "{md}");
        assert!(!markdown(&s, Scoring::Contains, "", None, None).contains("Partial"));
        let dir = tempfile::tempdir().unwrap();
        write_report(dir.path(), &s, &kept, Scoring::Contains, "", Some(partial)).unwrap();
        let written = std::fs::read_to_string(dir.path().join("compare.md")).unwrap();
        assert!(written.contains("interrupted after 2 of 10 prompts"), "{written}");
    }

    #[test]
    fn a_pipe_in_a_model_name_does_not_break_the_table() {
        let models = vec!["a|b".to_string()];
        let s = summarize(&models, &[outcome(0, "a|b", "x|y\nz", 1.0, 10.0, 0.0)]);
        let md = markdown(&s, Scoring::Contains, "", None, None);
        let row = md.lines().find(|l| l.starts_with("| a")).expect("the model's row");
        assert!(row.starts_with("| a\\|b | 1.000 |") && row.contains("x\\|y z 100%"), "{md}");
        let header = md.lines().find(|l| l.starts_with("| model")).expect("the header");
        let columns = |l: &str| l.matches('|').count() - l.matches("\\|").count();
        assert_eq!(columns(row), columns(header), "{md}");
    }

    #[test]
    fn a_model_whose_every_request_failed_has_no_latency() {
        let models = vec!["dead".to_string(), "ok".to_string()];
        let mut fail = outcome(0, "dead", "dead", 0.0, 1.0, 0.0);
        fail.error = Some("connection refused".into());
        fail.cost_usd = None;
        fail.served = None;
        let s = summarize(&models, &[fail, outcome(0, "ok", "ok", 1.0, 80.0, 0.001)]);
        assert!(s[0].all_failed() && !s[1].all_failed());
        assert_eq!((s[0].p50_ms, s[0].p95_ms), (None, None));
        let md = markdown(&s, Scoring::Contains, "", None, None);
        assert!(md.contains("| dead | 0.000 | n/a | n/a |") && md.contains("| ok | 1.000 | 80 | 80 |"), "{md}");
        assert!(chart_svg(&s).unwrap().contains("<svg"));
        assert!(!summarize(&models[..1], &[]).first().unwrap().all_failed(), "no request is not a failure");
    }

    #[test]
    fn reads_jsonl_and_csv_cases_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\": \"Capital of France?\", \"answer\": \"Paris\"}\n\n\
             {\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}], \"answer\": [\"4\", \"four\"]}\n\
             {\"prompt\": \"Year?\", \"answer\": 1969}\n",
        )
        .unwrap();
        let cases = read_cases(&p).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[1].expected, vec!["4", "four"]);
        assert_eq!(cases[2].expected, vec!["1969"]);
        assert_eq!(cases[0].messages[0].role, "user");

        std::fs::write(&p, "{\"prompt\": \"x\"}\n").unwrap();
        let e = read_cases(&p).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:1") && e.contains("answer"), "{e}");
        std::fs::write(&p, "").unwrap();
        assert!(read_cases(&p).unwrap_err().to_string().contains("no test cases"));

        // Expected answers that could never score under the chosen scoring are refused, with the line.
        std::fs::write(
            &p,
            "{\"prompt\": \"2+2?\\nA. 4\\nB. 5\", \"answer\": \"A\"}\n\n{\"prompt\": \"x\", \"answer\": \"Paris\"}\n",
        )
        .unwrap();
        let cases = read_cases(&p).unwrap();
        let e = check_expected(&p, &cases, Scoring::Choice).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:3") && e.contains("Paris"), "{e}");
        assert!(check_expected(&p, &cases[..1], Scoring::Choice).is_ok());
        let e = check_expected(&p, &cases, Scoring::Exact).unwrap_err().to_string();
        assert!(e.contains("c.jsonl:1") && e.contains("`A`"), "{e}");

        let c = dir.path().join("c.csv");
        std::fs::write(&c, "prompt,answer\n\"Capital of France?\",Paris|paris\n").unwrap();
        assert_eq!(read_cases(&c).unwrap()[0].expected, vec!["Paris", "paris"]);
        std::fs::write(&c, "question,answer\nx,y\n").unwrap();
        assert!(read_cases(&c).unwrap_err().to_string().contains("no column `prompt`"));
    }
}
