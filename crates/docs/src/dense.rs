//! Row-major matrices of unit vectors and brute-force dot products.
//!
//! A collection holds thousands to a few hundred thousand vectors; scanning them all costs well under a
//! millisecond per thousand rows, which is simpler and exact compared to an approximate index.

/// `rows x dim` f32 matrix stored row-major.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    dim: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// An empty matrix of vectors of length `dim`.
    pub fn new(dim: usize) -> Self {
        Matrix { dim, data: Vec::new() }
    }

    /// A matrix over `data` (length a multiple of `dim`).
    pub fn from_flat(dim: usize, data: Vec<f32>) -> Option<Self> {
        (data.len().checked_rem(dim) == Some(0)).then_some(Matrix { dim, data })
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The flat row-major data.
    pub fn as_flat(&self) -> &[f32] {
        &self.data
    }

    /// Appends a row (must have length `dim`).
    pub fn push(&mut self, row: &[f32]) {
        debug_assert_eq!(row.len(), self.dim);
        self.data.extend_from_slice(row);
    }

    /// Dot product of `q` with every row.
    pub fn dots(&self, q: &[f32]) -> Vec<f32> {
        if self.dim == 0 {
            return Vec::new();
        }
        self.data.chunks_exact(self.dim).map(|r| dot(r, q)).collect()
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise the loop (a plain
/// `zip().map().sum()` is a serial dependency chain on f32).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Normalises `v` to unit length in place (leaves a zero vector alone).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 1.0 - i as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-4);
        let m = Matrix::from_flat(19, [a.clone(), b.clone()].concat()).unwrap();
        assert_eq!(m.rows(), 2);
        assert!((m.dots(&b)[0] - naive).abs() < 1e-4);
    }
}
