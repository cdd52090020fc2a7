//! Classification quality: accuracy, macro-F1, per-class scores and the confusion matrix, as data and
//! as Markdown.

use rightmodel_core::markdown::cell;
use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassScores {
    /// The class.
    pub label: String,
    /// Of the texts predicted as this class, the share that are.
    pub precision: f64,
    /// Of the texts of this class, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of texts of this class.
    pub support: usize,
}

/// Scores of a set of predictions against gold labels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    /// Number of texts scored.
    pub n: usize,
    /// Share predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean F1 over the classes that occur in the gold or predicted labels.
    pub macro_f1: f64,
    /// Scores of every class, in `labels` order.
    pub per_class: Vec<ClassScores>,
    /// Row/column order of the confusion matrix.
    pub labels: Vec<String>,
    /// `confusion[gold][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

/// Scores `predicted` against `gold`. `order` fixes the class order (usually the model's labels); labels
/// found only in the data are appended.
pub fn score(order: &[String], gold: &[String], predicted: &[String]) -> Metrics {
    let mut labels: Vec<String> = order.to_vec();
    for l in gold.iter().chain(predicted) {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    let index: std::collections::HashMap<&str, usize> =
        labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (g, p) in gold.iter().zip(predicted) {
        if let (Some(&gi), Some(&pi)) = (index.get(g.as_str()), index.get(p.as_str())) {
            confusion[gi][pi] += 1;
        }
    }
    let n = gold.len().min(predicted.len());
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let mut per_class = Vec::with_capacity(k);
    let (mut f1_sum, mut f1_count) = (0.0, 0usize);
    for i in 0..k {
        let tp = confusion[i][i] as f64;
        let support: usize = confusion[i].iter().sum();
        let predicted_i: usize = confusion.iter().map(|r| r[i]).sum();
        let precision = if predicted_i > 0 { tp / predicted_i as f64 } else { 0.0 };
        let recall = if support > 0 { tp / support as f64 } else { 0.0 };
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        if support > 0 || predicted_i > 0 {
            f1_sum += f1;
            f1_count += 1;
        }
        per_class.push(ClassScores { label: labels[i].clone(), precision, recall, f1, support });
    }
    Metrics {
        n,
        accuracy: if n > 0 { correct as f64 / n as f64 } else { 0.0 },
        macro_f1: if f1_count > 0 { f1_sum / f1_count as f64 } else { 0.0 },
        per_class,
        labels,
        confusion,
    }
}

impl Metrics {
    /// Markdown: headline numbers, the per-class table and (up to 30 classes) the confusion matrix.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "| texts | accuracy | macro-F1 |\n|---:|---:|---:|\n| {} | {:.4} | {:.4} |\n\n",
            self.n, self.accuracy, self.macro_f1
        ));
        s.push_str("| class | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|\n");
        for c in &self.per_class {
            s.push_str(&format!(
                "| {} | {:.3} | {:.3} | {:.3} | {} |\n",
                cell(&c.label),
                c.precision,
                c.recall,
                c.f1,
                c.support
            ));
        }
        if self.labels.len() <= 30 {
            s.push_str("\nConfusion matrix (rows: true class, columns: predicted):\n\n| true \\ predicted |");
            for l in &self.labels {
                s.push_str(&format!(" {} |", cell(l)));
            }
            s.push_str("\n|---|");
            s.push_str(&"---:|".repeat(self.labels.len()));
            s.push('\n');
            for (l, row) in self.labels.iter().zip(&self.confusion) {
                s.push_str(&format!("| {} |", cell(l)));
                for v in row {
                    s.push_str(&format!(" {v} |"));
                }
                s.push('\n');
            }
        } else {
            s.push_str(&format!(
                "\nThe {}x{} confusion matrix is in the PNG; the most frequent confusions:\n\n| true | predicted | count |\n|---|---|---:|\n",
                self.labels.len(),
                self.labels.len()
            ));
            for (g, p, c) in self.top_confusions(15) {
                s.push_str(&format!("| {} | {} | {} |\n", cell(g), cell(p), c));
            }
        }
        s
    }

    /// The `k` largest off-diagonal cells as (true, predicted, count).
    pub fn top_confusions(&self, k: usize) -> Vec<(&str, &str, usize)> {
        let mut v: Vec<(&str, &str, usize)> = Vec::new();
        for (i, row) in self.confusion.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                if i != j && c > 0 {
                    v.push((&self.labels[i], &self.labels[j], c));
                }
            }
        }
        v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
        v.truncate(k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn scores_a_small_case() {
        let m = score(&s(&["a", "b"]), &s(&["a", "a", "b", "b"]), &s(&["a", "b", "b", "b"]));
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
        // a: p=1, r=0.5, f1=2/3; b: p=2/3, r=1, f1=0.8
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-9);
        assert!(m.to_markdown().contains("| a | 1.000 | 0.500 | 0.667 | 2 |"));
    }
}
