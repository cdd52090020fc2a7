//! Evaluating a saved classifier on labelled data: quality, throughput, latency and (optionally) how
//! well `in_domain` separates the data from an out-of-domain set.

use std::time::Instant;

use rightmodel_core::Embedder;
use serde::Serialize;

use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::domain::auc;
use crate::embed::embed_all;
use crate::metrics::{self, Metrics};
use crate::progress::Progress;
use crate::TaskError;

/// How to measure speed.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Texts per `predict` call for the throughput measurement.
    pub batch: usize,
    /// Single-text `predict` calls timed for latency.
    pub latency_samples: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { batch: 64, latency_samples: 100 }
    }
}

/// How `in_domain` separates the evaluation texts from out-of-domain texts.
#[derive(Debug, Clone, Serialize)]
pub struct DomainCheck {
    /// The out-of-domain file.
    pub ood_data: String,
    /// Out-of-domain texts scored.
    pub n_ood: usize,
    /// Probability that a random in-domain text scores above a random out-of-domain one.
    pub auc: f64,
    /// 10th percentile of in-domain scores.
    pub in_p10: f32,
    /// 90th percentile of out-of-domain scores.
    pub ood_p90: f32,
    /// Share of in-domain texts scoring above the out-of-domain 90th percentile.
    pub share_in_above_ood_p90: f64,
}

/// Everything `eval classify` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Classifier name.
    pub model: String,
    /// Its mode.
    pub mode: String,
    /// The evaluation file.
    pub data: String,
    /// Quality.
    pub metrics: Metrics,
    /// Texts per second classified in batches of `batch` (encoder included).
    pub throughput: f64,
    /// Batch size of the throughput run.
    pub batch: usize,
    /// Median single-text latency in milliseconds.
    pub latency_p50_ms: f64,
    /// 95th-percentile single-text latency in milliseconds.
    pub latency_p95_ms: f64,
    /// Single-text calls timed.
    pub latency_n: usize,
    /// Mean `in_domain` of the evaluation texts.
    pub in_domain_mean: f64,
    /// Separation from out-of-domain texts, when a file was given.
    pub domain: Option<DomainCheck>,
}

/// The `q` quantile (0..=1) of `v` by linear interpolation (NaN when empty).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Evaluates `clf` on `data`; `ood` is an optional (name, texts) pair of out-of-domain texts.
pub fn evaluate(
    clf: &Classifier,
    embedder: &dyn Embedder,
    data: &Dataset,
    ood: Option<(&str, &[String])>,
    opts: EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport, TaskError> {
    let texts: Vec<&str> = data.texts.iter().map(|t| t.as_str()).collect();
    // Warm-up (first-call allocations) so timings reflect steady state.
    clf.predict(embedder, &texts[..texts.len().min(2)], false)?;
    progress.start("classifying", texts.len() as u64);
    let t0 = Instant::now();
    let mut preds = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(opts.batch.max(1)) {
        preds.extend(clf.predict(embedder, chunk, false)?);
        progress.inc(chunk.len() as u64);
    }
    let secs = t0.elapsed().as_secs_f64();
    progress.finish();
    let n_lat = opts.latency_samples.min(texts.len());
    progress.start("timing single texts", n_lat as u64);
    let mut lat = Vec::with_capacity(n_lat);
    for t in texts.iter().take(n_lat) {
        let t1 = Instant::now();
        clf.predict(embedder, &[t], false)?;
        lat.push(t1.elapsed().as_secs_f64() * 1000.0);
        progress.inc(1);
    }
    progress.finish();
    let predicted: Vec<String> = preds.iter().map(|p| p.label.clone()).collect();
    let in_scores: Vec<f32> = preds.iter().map(|p| p.in_domain).collect();
    let domain = match ood {
        Some((name, ood_texts)) if !ood_texts.is_empty() => {
            let refs: Vec<&str> = ood_texts.iter().map(|t| t.as_str()).collect();
            progress.start("scoring out-of-domain texts", refs.len() as u64);
            let emb = embed_all(embedder, &refs, progress)?;
            progress.finish();
            let ood_scores = clf.domain_fit(&emb)?;
            let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let ood_p90 = quantile(&f64s(&ood_scores), 0.9) as f32;
            let above = in_scores.iter().filter(|&&s| s > ood_p90).count();
            Some(DomainCheck {
                ood_data: name.to_string(),
                n_ood: ood_scores.len(),
                auc: auc(&in_scores, &ood_scores),
                in_p10: quantile(&f64s(&in_scores), 0.1) as f32,
                ood_p90,
                share_in_above_ood_p90: above as f64 / in_scores.len().max(1) as f64,
            })
        }
        _ => None,
    };
    Ok(EvalReport {
        model: clf.name().to_string(),
        mode: clf.mode().to_string(),
        data: data.path.display().to_string(),
        metrics: metrics::score(clf.labels(), &data.labels, &predicted),
        throughput: if secs > 0.0 { texts.len() as f64 / secs } else { 0.0 },
        batch: opts.batch,
        latency_p50_ms: quantile(&lat, 0.5),
        latency_p95_ms: quantile(&lat, 0.95),
        latency_n: lat.len(),
        in_domain_mean: in_scores.iter().map(|&s| s as f64).sum::<f64>() / in_scores.len().max(1) as f64,
        domain,
    })
}

/// A latency cell: one decimal, or `n/a` when nothing was timed (NaN).
fn ms_cell(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1}")
    } else {
        "n/a".into()
    }
}

impl EvalReport {
    /// The report as Markdown (headline, speed, domain fit, per-class table, confusion matrix).
    pub fn to_markdown(&self) -> String {
        let mut s = format!("# Evaluation of `{}` ({} mode) on `{}`\n\n", self.model, self.mode, self.data);
        s.push_str(&self.metrics.to_markdown());
        s.push_str(&format!(
            "\n## Speed\n\n| throughput (texts/s, batch {}) | latency p50 (ms) | latency p95 (ms) |\n|---:|---:|---:|\n| {:.1} | {} | {} |\n",
            self.batch,
            self.throughput,
            ms_cell(self.latency_p50_ms),
            ms_cell(self.latency_p95_ms)
        ));
        s.push_str(&format!("\n## Domain fit\n\nMean `in_domain` of these texts: {:.3}\n", self.in_domain_mean));
        if let Some(d) = &self.domain {
            s.push_str(&format!(
                "\n| out-of-domain data | texts | AUC | in-domain p10 | out-of-domain p90 | in-domain share above OOD p90 |\n|---|---:|---:|---:|---:|---:|\n| {} | {} | {:.4} | {:.3} | {:.3} | {:.3} |\n",
                rightmodel_core::markdown::cell(&d.ood_data),
                d.n_ood,
                d.auc, d.in_p10, d.ood_p90, d.share_in_above_ood_p90
            ));
        }
        s
    }
}
