//! 2-D heat equation, steady state, by Jacobi iteration: n x n unknowns with
//! the top edge held at 1 and the other edges at 0, on a Cartesian process
//! grid (MPI_Cart_create, MPI_Cart_shift). Every iteration exchanges halos
//! with the four neighbours by non-blocking sends and receives and updates
//! the block; every `check_every` iterations it also measures the largest
//! change and all-reduces it, which decides convergence (measuring it costs
//! more than the update, which is otherwise bound by memory bandwidth).
//!
//! The largest change is order-independent (a max, not a sum), and each new
//! value is computed from the same four neighbours in the same order as in
//! the serial sweep, so the parallel grid must equal the serial one exactly;
//! the tolerance allows nothing but a rounding difference.

use mpi::traits::*;

use super::{gather_blocks, giga_rate, max_abs_diff, max_over_ranks, share_verdict, Outcome, RunOptions};
use crate::params::{grid_dims, JacobiParams as Params};

/// Temperature held on the top edge.
pub const HOT: f64 = 1.0;

/// Interior row `i` (1..=rows) of a grid with a one-cell halo, rows `w`
/// wide, and its four neighbours: each slice's element j lines up with the
/// row's element j.
struct Row<'a> {
    up: &'a [f64],
    down: &'a [f64],
    left: &'a [f64],
    centre: &'a [f64],
    right: &'a [f64],
}

impl<'a> Row<'a> {
    // Inlined, so the measuring sweep's lanes stay in registers across a
    // row: as a call it ran about 1.4x slower on a 512 grid (issue #16).
    #[inline(always)]
    fn of(u: &'a [f64], i: usize, w: usize) -> Row<'a> {
        Row {
            up: &u[(i - 1) * w + 1..i * w - 1],
            down: &u[(i + 1) * w + 1..(i + 2) * w - 1],
            left: &u[i * w..(i + 1) * w - 2],
            centre: &u[i * w + 1..(i + 1) * w - 1],
            right: &u[i * w + 2..(i + 1) * w],
        }
    }
}

/// One Jacobi sweep over the `rows x cols` interior of `u` (which has a
/// one-cell halo, so rows are `cols + 2` wide) into `next`.
pub fn sweep(u: &[f64], next: &mut [f64], rows: usize, cols: usize) {
    let w = cols + 2;
    for i in 1..=rows {
        let Row { up, down, left, right, .. } = Row::of(u, i, w);
        stencil_row(&mut next[i * w + 1..(i + 1) * w - 1], up, down, left, right);
    }
}

/// One row of the update, two points per SSE2 instruction. Plain stores:
/// streaming (non-temporal) ones measured about 1.3x slower on this machine
/// at 2048 and 4096 (issue #16; docs/BENCHMARKS.md). The sums run in the
/// same order as the scalar form, so the values are the same to the bit.
#[inline]
fn stencil_row(out: &mut [f64], up: &[f64], down: &[f64], left: &[f64], right: &[f64]) {
    let n = out.len();
    assert!(up.len() == n && down.len() == n && left.len() == n && right.len() == n);
    let scalar = |j: usize| 0.25 * (up[j] + down[j] + left[j] + right[j]);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_add_pd, _mm_loadu_pd, _mm_mul_pd, _mm_set1_pd, _mm_storeu_pd};
        let mut j = 0;
        // SAFETY: every access is below n (checked above for all five
        // slices); loads and stores are unaligned ones.
        unsafe {
            let quarter = _mm_set1_pd(0.25);
            while j + 2 <= n {
                let sum = _mm_add_pd(
                    _mm_add_pd(
                        _mm_add_pd(_mm_loadu_pd(up.as_ptr().add(j)), _mm_loadu_pd(down.as_ptr().add(j))),
                        _mm_loadu_pd(left.as_ptr().add(j)),
                    ),
                    _mm_loadu_pd(right.as_ptr().add(j)),
                );
                _mm_storeu_pd(out.as_mut_ptr().add(j), _mm_mul_pd(quarter, sum));
                j += 2;
            }
        }
        for (j, o) in out.iter_mut().enumerate().skip(j) {
            *o = scalar(j);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (j, o) in out.iter_mut().enumerate() {
        *o = scalar(j);
    }
}

/// `sweep`, also returning the largest change.
pub fn sweep_with_change(u: &[f64], next: &mut [f64], rows: usize, cols: usize) -> f64 {
    const LANES: usize = 4;
    let w = cols + 2;
    // A running maximum per lane: a select per element vectorises, where one
    // scalar maximum (a floating-point reduction) would not.
    let mut lanes = [0.0f64; LANES];
    for i in 1..=rows {
        let Row { up, down, left, centre, right } = Row::of(u, i, w);
        let out = &mut next[i * w + 1..(i + 1) * w - 1];
        let mut j = 0;
        while j + LANES <= cols {
            for k in 0..LANES {
                let v = 0.25 * (up[j + k] + down[j + k] + left[j + k] + right[j + k]);
                let d = (v - centre[j + k]).abs();
                lanes[k] = if d > lanes[k] { d } else { lanes[k] };
                out[j + k] = v;
            }
            j += LANES;
        }
        for j in j..cols {
            let v = 0.25 * (up[j] + down[j] + left[j] + right[j]);
            let d = (v - centre[j]).abs();
            lanes[0] = if d > lanes[0] { d } else { lanes[0] };
            out[j] = v;
        }
    }
    lanes.into_iter().fold(0.0, f64::max)
}

/// Iteration `iter` (counted from 1) from `u` into `next`: the largest
/// change when this iteration measures it (every `check_every`), else None.
fn iterate(u: &[f64], next: &mut [f64], rows: usize, cols: usize, iter: u32, check_every: u32) -> Option<f64> {
    if iter % check_every == 0 {
        Some(sweep_with_change(u, next, rows, cols))
    } else {
        sweep(u, next, rows, cols);
        None
    }
}

/// A `(rows + 2) x (cols + 2)` block with its halo; the cells on the global
/// boundary hold the edge temperatures.
fn block(rows: usize, cols: usize, top_edge: bool) -> Vec<f64> {
    let mut u = vec![0.0; (rows + 2) * (cols + 2)];
    if top_edge {
        u[1..cols + 1].fill(HOT);
    }
    u
}

/// The serial reference: the same iteration on the whole grid; the grid and
/// the iteration count.
pub fn serial(params: Params) -> (Vec<f64>, u32) {
    let n = params.n;
    let mut u = block(n, n, true);
    let mut next = u.clone();
    let mut iters = 0;
    loop {
        iters += 1;
        let change = iterate(&u, &mut next, n, n, iters, params.check_every);
        std::mem::swap(&mut u, &mut next);
        if change.is_some_and(|c| c < params.tol) || iters >= params.max_iters {
            return (u, iters);
        }
    }
}

/// The interior of a block with a halo, packed row by row.
pub fn interior(u: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let w = cols + 2;
    (1..=rows).flat_map(|i| u[i * w + 1..i * w + 1 + cols].iter().copied()).collect()
}

/// Halo tags, by the direction the message travels.
const NORTH: i32 = 1;
const SOUTH: i32 = 2;
const WEST: i32 = 3;
const EAST: i32 = 4;

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions, progress: &dyn Fn(&str)) -> Outcome {
    let (grid_rows, grid_cols) = grid_dims(world.size() as usize);
    let cart = world
        .create_cartesian_communicator(&[grid_rows as i32, grid_cols as i32], &[false, false], false)
        .expect("every rank belongs to the process grid");
    let coords = cart.get_layout().coords;
    let (rows, cols) = (params.n / grid_rows, params.n / grid_cols);
    let (north, south) = cart.shift(0, 1);
    let (west, east) = cart.shift(1, 1);
    let w = cols + 2;
    let mut u = block(rows, cols, coords[0] == 0);
    let mut next = u.clone();
    let (mut send_w, mut send_e) = (vec![0.0; rows], vec![0.0; rows]);
    let (mut recv_w, mut recv_e) = (vec![0.0; rows], vec![0.0; rows]);
    // Progress about ten times per run, on iterations that measured the change.
    let report_every = ((params.max_iters / 10).max(1)).div_ceil(params.check_every) * params.check_every;

    cart.barrier();
    let start = mpi::time();
    let mut iters = 0u32;
    // Not measured yet: no convergence before the first check.
    let mut residual = f64::INFINITY;
    loop {
        // Columns are not contiguous: pack them, where there is a neighbour.
        if west.is_some() {
            send_w.iter_mut().enumerate().for_each(|(i, v)| *v = u[(i + 1) * w + 1]);
        }
        if east.is_some() {
            send_e.iter_mut().enumerate().for_each(|(i, v)| *v = u[(i + 1) * w + cols]);
        }
        {
            let (top, rest) = u.split_at_mut(w);
            let (body, bottom) = rest.split_at_mut(rows * w);
            let first = &body[..w];
            let last = &body[(rows - 1) * w..];
            mpi::request::scope(|scope| {
                let mut requests = Vec::with_capacity(8);
                if let Some(p) = north {
                    let p = cart.process_at_rank(p);
                    requests.push(p.immediate_receive_into_with_tag(scope, &mut top[1..=cols], SOUTH));
                    requests.push(p.immediate_send_with_tag(scope, &first[1..=cols], NORTH));
                }
                if let Some(p) = south {
                    let p = cart.process_at_rank(p);
                    requests.push(p.immediate_receive_into_with_tag(scope, &mut bottom[1..=cols], NORTH));
                    requests.push(p.immediate_send_with_tag(scope, &last[1..=cols], SOUTH));
                }
                if let Some(p) = west {
                    let p = cart.process_at_rank(p);
                    requests.push(p.immediate_receive_into_with_tag(scope, &mut recv_w[..], EAST));
                    requests.push(p.immediate_send_with_tag(scope, &send_w[..], WEST));
                }
                if let Some(p) = east {
                    let p = cart.process_at_rank(p);
                    requests.push(p.immediate_receive_into_with_tag(scope, &mut recv_e[..], WEST));
                    requests.push(p.immediate_send_with_tag(scope, &send_e[..], EAST));
                }
                for request in requests {
                    request.wait();
                }
            });
        }
        if west.is_some() {
            recv_w.iter().enumerate().for_each(|(i, v)| u[(i + 1) * w] = *v);
        }
        if east.is_some() {
            recv_e.iter().enumerate().for_each(|(i, v)| u[(i + 1) * w + cols + 1] = *v);
        }
        iters += 1;
        let measured = iterate(&u, &mut next, rows, cols, iters, params.check_every);
        if let Some(change) = measured {
            residual = max_over_ranks(&cart, change);
        }
        std::mem::swap(&mut u, &mut next);
        if measured.is_some() && iters % report_every == 0 {
            progress(&format!("jacobi: iteration {iters}, largest change {residual:.3e}"));
        }
        if residual < params.tol || iters >= params.max_iters {
            break;
        }
    }
    let wall_time_s = max_over_ranks(&cart, mpi::time() - start);

    let mut mine = interior(&u, rows, cols);
    if options.corrupts(&cart) {
        mine[0] += 1.0;
    }
    let gathered = gather_blocks(&cart, &mine, (rows, cols), (grid_rows, grid_cols));
    let tolerance = 4.0 * f64::EPSILON;
    let (error_norm, verified) = match gathered {
        Some(grid) => {
            let (reference, serial_iters) = serial(params);
            let error = max_abs_diff(&grid, &interior(&reference, params.n, params.n));
            share_verdict(&cart, error, error <= tolerance && serial_iters == iters)
        }
        None => share_verdict(&cart, 0.0, false),
    };
    let points = (params.n * params.n) as f64 * f64::from(iters);
    Outcome {
        wall_time_s,
        error_norm,
        tolerance,
        verified,
        // Three adds, a multiply, a subtract and a compare per point.
        gflop_s: giga_rate(points * 6.0, wall_time_s),
        // The least traffic a sweep needs: read u, write next.
        bandwidth_gb_s: giga_rate(points * 16.0, wall_time_s),
        details: serde_json::json!({
            "iterations": iters,
            "converged": residual < params.tol,
            // The last measured change (null if the run never measured one).
            "final_change": residual.is_finite().then_some(residual),
            "process_grid": [grid_rows, grid_cols],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_averages_the_four_neighbours() {
        // 1 x 1 interior: the single cell becomes the mean of its halo.
        let u = vec![0.0, 4.0, 0.0, 8.0, 0.0, 12.0, 0.0, 16.0, 0.0];
        let mut next = u.clone();
        let change = sweep_with_change(&u, &mut next, 1, 1);
        assert_eq!(next[4], 10.0);
        assert_eq!(change, 10.0);
        let mut plain = u.clone();
        sweep(&u, &mut plain, 1, 1);
        assert_eq!(plain, next);
    }

    #[test]
    fn the_serial_solution_is_hot_on_top_and_cold_below() {
        let params = Params { n: 16, max_iters: 5000, tol: 1e-10, check_every: 7 };
        let (u, iters) = serial(params);
        assert!(iters < 5000, "did not converge");
        assert_eq!(iters % 7, 0, "converges only on an iteration that checks");
        let inner = interior(&u, 16, 16);
        // Symmetric left-right, decreasing from the hot edge.
        for i in 0..16 {
            assert!((inner[i * 16] - inner[i * 16 + 15]).abs() < 1e-9);
        }
        assert!(inner[8] > inner[8 * 16 + 8] && inner[8 * 16 + 8] > inner[15 * 16 + 8]);
    }
}
