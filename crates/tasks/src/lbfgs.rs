//! Limited-memory BFGS for smooth convex objectives (the logistic-regression head).
//!
//! Written by hand because the head's objective mixes a dense and a sparse block of parameters kept in one
//! flat `Vec<f32>`; the Rust optimisation crates (argmin, linfa) want ndarray types and would add a
//! numeric stack for ~100 lines of textbook code (Nocedal & Wright, algorithm 7.4/7.5).

use std::collections::VecDeque;

/// Stopping rules and memory size.
#[derive(Debug, Clone, Copy)]
pub struct LbfgsOptions {
    /// Number of correction pairs kept.
    pub memory: usize,
    /// Maximum number of iterations (each costs one or a few objective evaluations).
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub grad_tol: f64,
    /// Stop when the objective improves by less than this (relative) over an iteration.
    pub rel_tol: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        LbfgsOptions { memory: 10, max_iter: 300, grad_tol: 1e-5, rel_tol: 1e-7 }
    }
}

/// What the optimiser ended with.
#[derive(Debug, Clone, Copy)]
pub struct LbfgsReport {
    /// Iterations run.
    pub iterations: usize,
    /// Final objective value.
    pub value: f64,
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Eight partial sums let the compiler vectorise the reduction.
    let mut acc = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += (x[k] * y[k]) as f64;
        }
    }
    let mut s: f64 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (*x * *y) as f64;
    }
    s
}

/// Minimises `f` from `x` in place. `f(x, grad)` returns the objective and writes its gradient.
/// `on_iter(iteration, value)` is called after every iteration (progress reporting).
pub fn minimize(
    x: &mut [f32],
    mut f: impl FnMut(&[f32], &mut [f32]) -> f64,
    opts: LbfgsOptions,
    mut on_iter: impl FnMut(usize, f64),
) -> LbfgsReport {
    let n = x.len();
    let mut g = vec![0f32; n];
    let mut fx = f(x, &mut g);
    let mut pairs: VecDeque<(Vec<f32>, Vec<f32>, f64)> = VecDeque::with_capacity(opts.memory);
    let mut d = vec![0f32; n];
    let mut x_new = vec![0f32; n];
    let mut g_new = vec![0f32; n];
    let mut iterations = 0;
    for it in 0..opts.max_iter {
        if g.iter().fold(0f32, |m, v| m.max(v.abs())) as f64 <= opts.grad_tol {
            break;
        }
        // Two-loop recursion: d = -H g.
        d.copy_from_slice(&g);
        let mut alphas = Vec::with_capacity(pairs.len());
        for (s, y, rho) in pairs.iter().rev() {
            let a = rho * dot(s, &d);
            for (di, yi) in d.iter_mut().zip(y) {
                *di -= (a as f32) * yi;
            }
            alphas.push(a);
        }
        if let Some((s, y, _)) = pairs.back() {
            let gamma = (dot(s, y) / dot(y, y).max(1e-30)) as f32;
            d.iter_mut().for_each(|v| *v *= gamma);
        }
        for ((s, y, rho), a) in pairs.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            for (di, si) in d.iter_mut().zip(s) {
                *di += ((a - b) as f32) * si;
            }
        }
        d.iter_mut().for_each(|v| *v = -*v);
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            pairs.clear();
            for (di, gi) in d.iter_mut().zip(&g) {
                *di = -gi;
            }
            slope = dot(&g, &d);
        }
        // First step of a fresh memory is scaled so that it moves by about one unit.
        let mut step = if pairs.is_empty() { (1.0 / dot(&g, &g).sqrt().max(1e-12)).min(1.0) } else { 1.0 };
        // Backtracking line search with the Armijo condition.
        let mut accepted = false;
        let mut f_new = fx;
        for _ in 0..30 {
            for ((xn, xi), di) in x_new.iter_mut().zip(x.iter()).zip(&d) {
                *xn = xi + (step as f32) * di;
            }
            f_new = f(&x_new, &mut g_new);
            if f_new.is_finite() && f_new <= fx + 1e-4 * step * slope {
                accepted = true;
                break;
            }
            step *= 0.5;
        }
        iterations = it + 1;
        if !accepted {
            break;
        }
        let s: Vec<f32> = x_new.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f32> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            if pairs.len() == opts.memory {
                pairs.pop_front();
            }
            pairs.push_back((s, y, 1.0 / sy));
        }
        x.copy_from_slice(&x_new);
        g.copy_from_slice(&g_new);
        let improvement = fx - f_new;
        fx = f_new;
        on_iter(iterations, fx);
        if improvement.abs() <= opts.rel_tol * fx.abs().max(1e-12) {
            break;
        }
    }
    LbfgsReport { iterations, value: fx }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic() {
        // f(x) = sum_i (i+1) (x_i - i)^2, minimum at x_i = i.
        let mut x = vec![0f32; 20];
        let r = minimize(
            &mut x,
            |x, g| {
                let mut v = 0.0;
                for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                    let c = (i + 1) as f32;
                    let t = xi - i as f32;
                    v += (c * t * t) as f64;
                    *gi = 2.0 * c * t;
                }
                v
            },
            LbfgsOptions { grad_tol: 1e-4, rel_tol: 0.0, ..Default::default() },
            |_, _| {},
        );
        assert!(r.value < 1e-6, "value {}", r.value);
        for (i, xi) in x.iter().enumerate() {
            assert!((xi - i as f32).abs() < 1e-3, "x[{i}] = {xi}");
        }
    }
}
