//! Conjugate gradient (Hestenes and Stiefel, 1952) on the 2-D Poisson system
//! A x = b: the 5-point Laplacian on an n x n grid with zero boundary values
//! (4 on the diagonal, -1 for each neighbour), b = 1. The operator is applied
//! without storing the matrix. Ranks own bands of grid rows; each product
//! exchanges the band's first and last rows with the neighbours by
//! non-blocking sends and receives, and each dot product is all-reduced.
//!
//! Verification on rank 0: the gathered solution must solve the system
//! (true residual at most 10 tol) and agree with a serial CG's solution
//! (sums in another order move it only by rounding).

use mpi::traits::*;

use super::{giga_rate, max_abs_diff, max_over_ranks, share_verdict, sum_over_ranks, Outcome, RunOptions};
use crate::params::CgParams as Params;

/// First grid row and row count of rank `rank`'s band.
pub fn band(n: usize, ranks: usize, rank: usize) -> (usize, usize) {
    let start = n * rank / ranks;
    (start, n * (rank + 1) / ranks - start)
}

/// `out = A p` over a band of `rows` grid rows of width `n`; `p` carries one
/// halo row above and below (zeros at the global boundary).
#[inline]
pub fn apply(p: &[f64], out: &mut [f64], rows: usize, n: usize) {
    for i in 0..rows {
        let up = &p[i * n..(i + 1) * n];
        let mid = &p[(i + 1) * n..(i + 2) * n];
        let down = &p[(i + 2) * n..(i + 3) * n];
        let o = &mut out[i * n..(i + 1) * n];
        // The first and last columns have one horizontal neighbour (the
        // boundary is zero); the loop between has no branch and vectorises.
        if n == 1 {
            o[0] = 4.0 * mid[0] - up[0] - down[0];
            continue;
        }
        o[0] = 4.0 * mid[0] - up[0] - down[0] - mid[1];
        for (((o, m), a), b) in o[1..n - 1].iter_mut().zip(mid.windows(3)).zip(&up[1..n - 1]).zip(&down[1..n - 1]) {
            *o = 4.0 * m[1] - a - b - m[0] - m[2];
        }
        o[n - 1] = 4.0 * mid[n - 1] - up[n - 1] - down[n - 1] - mid[n - 2];
    }
}

/// Four running sums: one sum is a chain of dependent adds, and the loop
/// would wait on the add's latency (issue #16: 1.5x on a 1024 grid).
const LANES: usize = 4;

fn total(lanes: [f64; LANES]) -> f64 {
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (a4, b4) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut lanes = [0.0; LANES];
    for (x, y) in a4.remainder().iter().zip(b4.remainder()) {
        lanes[0] += x * y;
    }
    for (x, y) in a4.zip(b4) {
        for k in 0..LANES {
            lanes[k] += x[k] * y[k];
        }
    }
    total(lanes)
}

/// `ap = A p` and the local `p . Ap`, row by row, so each row of the product
/// is summed while it is in the cache (one pass over memory less).
fn apply_dot(p: &[f64], ap: &mut [f64], rows: usize, n: usize) -> f64 {
    let mut sum = 0.0;
    for i in 0..rows {
        let out = &mut ap[i * n..(i + 1) * n];
        apply(&p[i * n..(i + 3) * n], out, 1, n);
        sum += dot(&p[(i + 1) * n..(i + 2) * n], out);
    }
    sum
}

/// `x += alpha p`, `r -= alpha Ap`, and the local `r . r` in the same pass.
fn update(x: &mut [f64], r: &mut [f64], p: &[f64], ap: &[f64], alpha: f64) -> f64 {
    let len = x.len();
    assert!(r.len() == len && p.len() == len && ap.len() == len);
    let mut lanes = [0.0; LANES];
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: i + LANES <= len in the loop, the length of all four slices
    // (checked above); unaligned loads and stores.
    unsafe {
        use std::arch::x86_64::*;
        // Explicit SSE2, lanes 0-1 and 2-3 in two registers: LLVM kept the
        // zipped chunk iterators' positions on the stack and reloaded them
        // in every pass (issue #16).
        let a = _mm_set1_pd(alpha);
        let (mut low, mut high) = (_mm_setzero_pd(), _mm_setzero_pd());
        let at = |s: &[f64], i: usize| _mm_loadu_pd(s.as_ptr().add(i));
        while i + LANES <= len {
            for (half, sum) in [(0, &mut low), (2, &mut high)] {
                let k = i + half;
                _mm_storeu_pd(x.as_mut_ptr().add(k), _mm_add_pd(at(x, k), _mm_mul_pd(a, at(p, k))));
                let rk = _mm_sub_pd(at(r, k), _mm_mul_pd(a, at(ap, k)));
                _mm_storeu_pd(r.as_mut_ptr().add(k), rk);
                *sum = _mm_add_pd(*sum, _mm_mul_pd(rk, rk));
            }
            i += LANES;
        }
        _mm_storeu_pd(lanes.as_mut_ptr(), low);
        _mm_storeu_pd(lanes.as_mut_ptr().add(2), high);
    }
    for i in i..len {
        x[i] += alpha * p[i];
        r[i] -= alpha * ap[i];
        lanes[0] += r[i] * r[i];
    }
    total(lanes)
}

/// What a CG solve found.
pub struct Solve {
    pub x: Vec<f64>,
    pub iterations: u32,
    /// Residual norm relative to b's, after each iteration.
    pub history: Vec<f64>,
}

/// CG over one band. `reduce` sums a local value over the bands; `exchange`
/// fills the halo rows of a vector laid out as `p` is.
pub fn solve(
    params: Params,
    rows: usize,
    reduce: &dyn Fn(f64) -> f64,
    exchange: &mut dyn FnMut(&mut [f64]),
    progress: &dyn Fn(&str),
) -> Solve {
    let n = params.n;
    let len = rows * n;
    let mut x = vec![0.0; len];
    let mut r = vec![1.0; len];
    // p with a halo row on each side.
    let mut p = vec![0.0; len + 2 * n];
    p[n..n + len].copy_from_slice(&r);
    let mut ap = vec![0.0; len];
    let b_norm = reduce(len as f64).sqrt();
    let mut rr = reduce(dot(&r, &r));
    let mut history = Vec::new();
    let report_every = (params.max_iters / 10).max(1);
    let mut iterations = 0;
    while iterations < params.max_iters {
        exchange(&mut p);
        let alpha = rr / reduce(apply_dot(&p, &mut ap, rows, n));
        let rr_next = reduce(update(&mut x, &mut r, &p[n..n + len], &ap, alpha));
        iterations += 1;
        let relative = rr_next.sqrt() / b_norm;
        history.push(relative);
        if iterations % report_every == 0 {
            progress(&format!("cg: iteration {iterations}, relative residual {relative:.3e}"));
        }
        if relative < params.tol {
            break;
        }
        let beta = rr_next / rr;
        rr = rr_next;
        for (pi, ri) in p[n..n + len].iter_mut().zip(&r) {
            *pi = ri + beta * *pi;
        }
    }
    Solve { x, iterations, history }
}

/// ||b - A x|| / ||b|| over the whole grid.
pub fn true_residual(x: &[f64], n: usize) -> f64 {
    let mut padded = vec![0.0; x.len() + 2 * n];
    padded[n..n + x.len()].copy_from_slice(x);
    let mut ax = vec![0.0; x.len()];
    apply(&padded, &mut ax, n, n);
    let r2: f64 = ax.iter().map(|v| (1.0 - v) * (1.0 - v)).sum();
    (r2 / x.len() as f64).sqrt()
}

/// The serial reference: the same CG on the whole grid in one process.
pub fn serial(params: Params) -> Solve {
    solve(params, params.n, &|v| v, &mut |_| {}, &|_| {})
}

const UP: i32 = 1;
const DOWN: i32 = 2;

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions, progress: &dyn Fn(&str)) -> Outcome {
    let n = params.n;
    let (ranks, rank) = (world.size() as usize, world.rank() as usize);
    let (_, rows) = band(n, ranks, rank);
    let above = (rank > 0).then(|| world.process_at_rank(rank as i32 - 1));
    let below = (rank + 1 < ranks).then(|| world.process_at_rank(rank as i32 + 1));
    let mut exchange = |p: &mut [f64]| {
        let len = rows * n;
        let (top, rest) = p.split_at_mut(n);
        let (body, bottom) = rest.split_at_mut(len);
        mpi::request::scope(|scope| {
            let mut requests = Vec::with_capacity(4);
            if let Some(q) = &above {
                requests.push(q.immediate_receive_into_with_tag(scope, &mut top[..], DOWN));
                requests.push(q.immediate_send_with_tag(scope, &body[..n], UP));
            }
            if let Some(q) = &below {
                requests.push(q.immediate_receive_into_with_tag(scope, &mut bottom[..], UP));
                requests.push(q.immediate_send_with_tag(scope, &body[len - n..], DOWN));
            }
            for request in requests {
                request.wait();
            }
        });
    };
    world.barrier();
    let start = mpi::time();
    let result = solve(params, rows, &|v| sum_over_ranks(world, v), &mut exchange, progress);
    let wall_time_s = max_over_ranks(world, mpi::time() - start);

    let converged = result.history.last().is_some_and(|r| *r < params.tol);
    // Gather the bands (padded to the largest: bands differ by a row at most) on rank 0.
    let widest = n.div_ceil(ranks) * n;
    let mut mine = result.x.clone();
    mine.resize(widest, 0.0);
    if options.corrupts(world) {
        mine[0] += 1.0;
    }
    let root = world.process_at_rank(0);
    let tolerance = (100.0 * params.tol).max(1e-9);
    let (error_norm, verified) = if rank == 0 {
        let mut all = vec![0.0; widest * ranks];
        root.gather_into_root(&mine[..], &mut all[..]);
        let x: Vec<f64> =
            (0..ranks).flat_map(|r| all[r * widest..r * widest + band(n, ranks, r).1 * n].to_vec()).collect();
        let reference = serial(params);
        let scale = reference.x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let error = max_abs_diff(&x, &reference.x) / scale;
        share_verdict(world, error, error <= tolerance && (!converged || true_residual(&x, n) <= 10.0 * params.tol))
    } else {
        root.gather_into(&mine[..]);
        share_verdict(world, 0.0, false)
    };
    let iters = f64::from(result.iterations);
    let points = (n * n) as f64;
    Outcome {
        wall_time_s,
        error_norm,
        tolerance,
        verified,
        // Per iteration: the operator (9 per point), two dots (4), three vector updates (6).
        gflop_s: giga_rate(points * iters * 19.0, wall_time_s),
        bandwidth_gb_s: None,
        details: serde_json::json!({
            "iterations": result.iterations,
            "converged": converged,
            "residual_history": result.history,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fused_passes_equal_the_separate_ones() {
        // Lengths around the lanes, and a grid whose rows are not a multiple of them.
        for len in [0, 1, 3, 4, 5, 9] {
            let a: Vec<f64> = (0..len).map(|i| i as f64 + 0.5).collect();
            let b: Vec<f64> = (0..len).map(|i| 2.0 - i as f64).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-12, "len {len}");
        }
        let (rows, n) = (5, 7);
        let p: Vec<f64> = (0..(rows + 2) * n).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
        let (mut fused, mut separate) = (vec![0.0; rows * n], vec![0.0; rows * n]);
        let pap = apply_dot(&p, &mut fused, rows, n);
        apply(&p, &mut separate, rows, n);
        assert_eq!(fused, separate);
        assert!((pap - dot(&p[n..n + rows * n], &separate)).abs() < 1e-9);
        let (mut x, mut r) = (vec![1.0; rows * n], p[..rows * n].to_vec());
        let rr = update(&mut x, &mut r, &p[n..n + rows * n], &separate, 0.25);
        for i in 0..rows * n {
            assert_eq!(x[i], 1.0 + 0.25 * p[n + i]);
            assert_eq!(r[i], p[i] - 0.25 * separate[i]);
        }
        assert!((rr - dot(&r, &r)).abs() < 1e-9);
    }

    #[test]
    fn bands_cover_the_grid() {
        for ranks in 1..7 {
            let mut next = 0;
            for r in 0..ranks {
                let (start, rows) = band(13, ranks, r);
                assert_eq!(start, next);
                // The gather pads every band to this: none is wider.
                assert!(rows <= 13usize.div_ceil(ranks));
                next += rows;
            }
            assert_eq!(next, 13);
        }
    }

    #[test]
    fn serial_cg_solves_the_system() {
        let params = Params { n: 20, max_iters: 500, tol: 1e-10 };
        let solve = serial(params);
        assert!(solve.iterations < 500);
        assert!(true_residual(&solve.x, 20) < 1e-9);
        assert!(solve.history.windows(2).filter(|w| w[1] > w[0]).count() < solve.history.len() / 2);
    }
}
