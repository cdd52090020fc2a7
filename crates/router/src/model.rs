//! The trained scorer's model: per-feature standardisation and a logistic-regression head.
//!
//! Logistic regression rather than an MLP: the signal that transfers to unseen topics is weak (see
//! the crate README), so extra capacity would mostly learn the training topics; a linear model with
//! L2 is also a few kilobytes of JSON and a single dot product at request time. No MLP was tried.

use serde::{Deserialize, Serialize};

use crate::matrix::Matrix;

/// Per-column mean and standard deviation of the training rows; constant columns get `std = 1`
/// so that they standardise to zero instead of dividing by zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Column means.
    pub mean: Vec<f32>,
    /// Column standard deviations (never zero).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits the column statistics of `x`.
    pub fn fit(x: &Matrix) -> Self {
        let (n, d) = (x.rows().max(1) as f64, x.cols());
        let mut mean = vec![0f64; d];
        for row in x.iter_rows() {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; d];
        for row in x.iter_rows() {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                let dv = f64::from(*v) - m;
                *s += dv * dv;
            }
        }
        let std = var.iter().map(|s| (s / n).sqrt()).map(|s| if s > 1e-6 { s as f32 } else { 1.0 }).collect();
        Standardizer { mean: mean.into_iter().map(|m| m as f32).collect(), std }
    }

    /// Standardises one row into `out`.
    pub fn apply_into(&self, row: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(row.iter().zip(&self.mean).zip(&self.std).map(|((v, m), s)| (v - m) / s));
    }

    /// Standardises every row of `x`.
    pub fn apply(&self, x: &Matrix) -> Matrix {
        let mut m = Matrix::with_capacity(x.rows(), x.cols());
        let mut buf = Vec::with_capacity(x.cols());
        for row in x.iter_rows() {
            self.apply_into(row, &mut buf);
            m.push_row(&buf);
        }
        m
    }
}

/// A logistic-regression head: `sigmoid(w . x + b)` on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// One weight per feature.
    pub weights: Vec<f32>,
    /// Intercept.
    pub bias: f32,
}

impl Logistic {
    /// The raw score `w . x + b`.
    pub fn logit(&self, x: &[f32]) -> f32 {
        self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + self.bias
    }

    /// The probability `sigmoid(w . x + b)` in `(0, 1)`.
    pub fn predict(&self, x: &[f32]) -> f32 {
        sigmoid(self.logit(x))
    }
}

/// The logistic function, stable for large |z|.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Standardiser and head together: what a trained scorer applies to a feature row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifficultyModel {
    /// Feature standardisation fitted on the training rows.
    pub standardizer: Standardizer,
    /// The classifier on standardised features.
    pub head: Logistic,
}

impl DifficultyModel {
    /// Difficulty of one raw feature row, in `(0, 1)`.
    pub fn score_row(&self, row: &[f32]) -> f32 {
        // Fused standardise-and-dot: no temporary vector on the request path.
        let z: f32 = row
            .iter()
            .zip(&self.standardizer.mean)
            .zip(&self.standardizer.std)
            .zip(&self.head.weights)
            .map(|(((v, m), s), w)| (v - m) / s * w)
            .sum();
        sigmoid(z + self.head.bias)
    }

    /// Difficulty of every row of `x`.
    pub fn score_matrix(&self, x: &Matrix) -> Vec<f32> {
        x.iter_rows().map(|r| self.score_row(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardizer_handles_constant_columns() {
        let x = Matrix::from_vec(3, 2, vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0]).unwrap();
        let s = Standardizer::fit(&x);
        assert_eq!(s.std[1], 1.0);
        let z = s.apply(&x);
        assert_eq!(z.row(0)[1], 0.0);
        assert!((z.row(0)[0] + z.row(2)[0]).abs() < 1e-6);
    }

    #[test]
    fn fused_score_matches_two_step() {
        let x = Matrix::from_vec(2, 2, vec![1.0, 2.0, 3.0, -1.0]).unwrap();
        let standardizer = Standardizer::fit(&x);
        let head = Logistic { weights: vec![0.5, -0.25], bias: 0.1 };
        let m = DifficultyModel { standardizer: standardizer.clone(), head: head.clone() };
        let z = standardizer.apply(&x);
        for i in 0..2 {
            assert!((m.score_row(x.row(i)) - head.predict(z.row(i))).abs() < 1e-6);
        }
        assert!(sigmoid(-100.0) >= 0.0 && sigmoid(100.0) <= 1.0);
    }
}
