//! Multinomial logistic regression with an L2 penalty over a dense block (sentence embeddings) and an
//! optional sparse block (n-gram TF-IDF), fitted by full-batch L-BFGS.
//!
//! Hand-written (see [`crate::lbfgs`]) because no crate fits a softmax model over mixed dense/sparse
//! features without densifying them; the objective is convex, so the loop is short and deterministic.

use crate::lbfgs::{self, LbfgsOptions};

/// Rows of sparse features in compressed-row form.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    /// Row `i` is `indices[indptr[i]..indptr[i+1]]` (with `values` alongside).
    pub indptr: Vec<usize>,
    /// Column of each stored value.
    pub indices: Vec<u32>,
    /// The stored values.
    pub values: Vec<f32>,
}

impl Csr {
    /// An empty matrix with no rows.
    pub fn new() -> Self {
        Csr { indptr: vec![0], indices: Vec::new(), values: Vec::new() }
    }

    /// Appends a row.
    pub fn push_row(&mut self, row: &[(u32, f32)]) {
        for &(j, v) in row {
            self.indices.push(j);
            self.values.push(v);
        }
        self.indptr.push(self.indices.len());
    }

    /// Row `i` as (columns, values).
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }
}

/// A feature matrix: `n` rows of a dense block (row-major) and, when `sparse_dim > 0`, a sparse block.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// Number of rows.
    pub n: usize,
    /// Width of the dense block.
    pub dense_dim: usize,
    /// Dense block, `n * dense_dim` values.
    pub dense: Vec<f32>,
    /// Width of the sparse block (0 = no sparse block).
    pub sparse_dim: usize,
    /// Sparse block (`n` rows when `sparse_dim > 0`).
    pub sparse: Csr,
}

impl Features {
    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Features {
        let mut dense = Vec::with_capacity(idx.len() * self.dense_dim);
        let mut sparse = Csr::new();
        for &i in idx {
            dense.extend_from_slice(&self.dense[i * self.dense_dim..(i + 1) * self.dense_dim]);
            if self.sparse_dim > 0 {
                let (j, v) = self.sparse.row(i);
                let row: Vec<(u32, f32)> = j.iter().copied().zip(v.iter().copied()).collect();
                sparse.push_row(&row);
            }
        }
        Features { n: idx.len(), dense_dim: self.dense_dim, dense, sparse_dim: self.sparse_dim, sparse }
    }

    fn sparse_row(&self, i: usize) -> (&[u32], &[f32]) {
        if self.sparse_dim > 0 {
            self.sparse.row(i)
        } else {
            (&[], &[])
        }
    }
}

/// The fitted head: `logits = W_dense x_dense + W_sparse^T x_sparse + bias`.
#[derive(Debug, Clone)]
pub struct LinearHead {
    /// Number of classes.
    pub classes: usize,
    /// Width of the dense input.
    pub dense_dim: usize,
    /// Width of the sparse input.
    pub sparse_dim: usize,
    /// `classes x dense_dim`, row-major.
    pub w_dense: Vec<f32>,
    /// `sparse_dim x classes`, row-major (one row per feature, so a sparse lookup is contiguous).
    pub w_sparse: Vec<f32>,
    /// One bias per class.
    pub bias: Vec<f32>,
}

/// Dot product with sixteen partial sums so the compiler emits SIMD code.
#[inline]
pub(crate) fn dot32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Softmax in place; returns log of the normaliser (for the loss).
fn softmax(v: &mut [f32]) -> f32 {
    let m = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut z = 0f32;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        z += *x;
    }
    for x in v.iter_mut() {
        *x /= z;
    }
    m + z.ln()
}

impl LinearHead {
    /// A zero-initialised head.
    pub fn zeros(classes: usize, dense_dim: usize, sparse_dim: usize) -> Self {
        LinearHead {
            classes,
            dense_dim,
            sparse_dim,
            w_dense: vec![0.0; classes * dense_dim],
            w_sparse: vec![0.0; classes * sparse_dim],
            bias: vec![0.0; classes],
        }
    }

    /// Logits of one row into `out` (length `classes`).
    pub fn logits_row(&self, dense: &[f32], sp_idx: &[u32], sp_val: &[f32], out: &mut [f32]) {
        let c = self.classes;
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.bias[k] + dot32(&self.w_dense[k * self.dense_dim..(k + 1) * self.dense_dim], dense);
        }
        for (&j, &v) in sp_idx.iter().zip(sp_val) {
            let j = j as usize;
            if j < self.sparse_dim {
                for (o, w) in out.iter_mut().zip(&self.w_sparse[j * c..(j + 1) * c]) {
                    *o += v * w;
                }
            }
        }
    }

    /// Logits of every row of `x`, row-major `n x classes`.
    pub fn logits(&self, x: &Features) -> Vec<f32> {
        let mut out = vec![0f32; x.n * self.classes];
        for i in 0..x.n {
            let (j, v) = x.sparse_row(i);
            let d = &x.dense[i * x.dense_dim..(i + 1) * x.dense_dim];
            self.logits_row(d, j, v, &mut out[i * self.classes..(i + 1) * self.classes]);
        }
        out
    }

    /// Class probabilities of every row, row-major `n x classes`.
    pub fn probs(&self, x: &Features) -> Vec<f32> {
        let mut out = self.logits(x);
        for row in out.chunks_mut(self.classes.max(1)) {
            softmax(row);
        }
        out
    }

    fn to_flat(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.w_dense.len() + self.w_sparse.len() + self.bias.len());
        v.extend_from_slice(&self.w_dense);
        v.extend_from_slice(&self.w_sparse);
        v.extend_from_slice(&self.bias);
        v
    }

    fn from_flat(classes: usize, dense_dim: usize, sparse_dim: usize, v: &[f32]) -> Self {
        let (a, b) = (classes * dense_dim, classes * dense_dim + classes * sparse_dim);
        LinearHead {
            classes,
            dense_dim,
            sparse_dim,
            w_dense: v[..a].to_vec(),
            w_sparse: v[a..b].to_vec(),
            bias: v[b..].to_vec(),
        }
    }
}

/// Mean cross-entropy plus `l2/2 * |W|^2` and its gradient over rows `lo..hi`, accumulated (unnormalised)
/// into `grad`; returns the summed loss of those rows.
fn partial_loss(head: &LinearHead, x: &Features, y: &[u32], lo: usize, hi: usize, grad: &mut [f32]) -> f64 {
    let (c, d) = (head.classes, head.dense_dim);
    let (gd, rest) = grad.split_at_mut(c * d);
    let (gs, gb) = rest.split_at_mut(c * head.sparse_dim);
    let mut p = vec![0f32; c];
    let mut loss = 0f64;
    for (i, &yi) in y.iter().enumerate().take(hi).skip(lo) {
        let (sj, sv) = x.sparse_row(i);
        let xd = &x.dense[i * d..(i + 1) * d];
        head.logits_row(xd, sj, sv, &mut p);
        let yi = yi as usize;
        let logit_y = p[yi];
        let lse = softmax(&mut p);
        loss += (lse - logit_y) as f64;
        p[yi] -= 1.0;
        for (k, &r) in p.iter().enumerate() {
            if r != 0.0 {
                for (g, xv) in gd[k * d..(k + 1) * d].iter_mut().zip(xd) {
                    *g += r * xv;
                }
            }
            gb[k] += r;
        }
        for (&j, &v) in sj.iter().zip(sv) {
            let j = j as usize;
            for (g, &r) in gs[j * c..(j + 1) * c].iter_mut().zip(&p) {
                *g += v * r;
            }
        }
    }
    loss
}

/// Regularisation and solver settings of one fit.
#[derive(Debug, Clone, Copy)]
pub struct FitConfig {
    /// L2 strength on the mean loss (lambda; C = 1 / (lambda n)).
    pub l2: f32,
    /// Solver stopping rules.
    pub lbfgs: LbfgsOptions,
    /// Worker threads over the rows.
    pub threads: usize,
}

/// Fits the head on `x` with integer labels `y` (< `classes`), starting from `warm` when given (for a
/// regularisation path).
pub fn fit(
    x: &Features,
    y: &[u32],
    classes: usize,
    cfg: &FitConfig,
    warm: Option<&LinearHead>,
    on_iter: impl FnMut(usize, f64),
) -> LinearHead {
    let (l2, opts) = (cfg.l2, cfg.lbfgs);
    let (d, v) = (x.dense_dim, x.sparse_dim);
    let mut theta = match warm {
        Some(h) if h.classes == classes && h.dense_dim == d && h.sparse_dim == v => h.to_flat(),
        _ => LinearHead::zeros(classes, d, v).to_flat(),
    };
    let n = x.n.max(1);
    let threads = cfg.threads.clamp(1, (x.n / 512).max(1));
    let reg_len = classes * (d + v);
    let objective = |theta: &[f32], grad: &mut [f32]| -> f64 {
        let head = LinearHead::from_flat(classes, d, v, theta);
        let chunk = x.n.div_ceil(threads);
        let parts: Vec<(f64, Vec<f32>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let head = &head;
                    s.spawn(move || {
                        let mut g = vec![0f32; theta.len()];
                        let lo = (t * chunk).min(x.n);
                        let hi = ((t + 1) * chunk).min(x.n);
                        let l = partial_loss(head, x, y, lo, hi, &mut g);
                        (l, g)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or((f64::NAN, Vec::new()))).collect()
        });
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut loss = 0f64;
        for (l, g) in parts {
            loss += l;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        let inv = 1.0 / n as f32;
        grad.iter_mut().for_each(|g| *g *= inv);
        let mut reg = 0f64;
        for (g, w) in grad[..reg_len].iter_mut().zip(&theta[..reg_len]) {
            *g += l2 * w;
            reg += (w * w) as f64;
        }
        loss / n as f64 + 0.5 * l2 as f64 * reg
    };
    lbfgs::minimize(&mut theta, objective, opts, on_iter);
    LinearHead::from_flat(classes, d, v, &theta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_three_blobs() {
        // Three classes along the axes of a 3-d dense block plus one sparse indicator per class.
        let mut x = Features { dense_dim: 3, sparse_dim: 3, sparse: Csr::new(), ..Default::default() };
        let mut y = Vec::new();
        for i in 0..90 {
            let k = i % 3;
            let mut row = [0.1f32; 3];
            row[k] = 1.0 + (i as f32 * 0.01);
            x.dense.extend_from_slice(&row);
            x.sparse.push_row(&[(k as u32, 1.0)]);
            y.push(k as u32);
        }
        x.n = 90;
        let cfg = FitConfig { l2: 1e-3, lbfgs: LbfgsOptions::default(), threads: 2 };
        let head = fit(&x, &y, 3, &cfg, None, |_, _| {});
        let p = head.probs(&x);
        for (i, row) in p.chunks(3).enumerate() {
            let best = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
            assert_eq!(best, y[i] as usize);
        }
    }
}
