//! 2-D heat equation, steady state, by Jacobi iteration: n x n unknowns with
//! the top edge held at 1 and the other edges at 0, on a Cartesian process
//! grid (MPI_Cart_create, MPI_Cart_shift).
//!
//! Every block keeps a halo two cells deep, so that one exchange with the
//! four neighbours serves two iterations: a pass over the block computes the
//! first iteration a row ahead into a three-row ring (the block's rows and
//! one halo row and column further, where a neighbour is) and the second
//! from the ring straight back into the block (temporal blocking, issue
//! #16). The grid crosses memory once per two iterations instead of twice,
//! which is what lets the sweep run above a single sweep's memory bound.
//! Every `check_every` iterations the second sweep of a pass also measures
//! the largest change and all-reduces it, which decides convergence; an
//! iteration that measures as the first of two runs alone, so convergence
//! is decided on exactly the iteration the serial sweep decides it.
//!
//! The largest change is order-independent (a max, not a sum), and each new
//! value is computed from the same four neighbours in the same order as in
//! the serial sweep (one iteration per pass, no ring), so the parallel grid
//! must equal the serial one exactly; the tolerance allows nothing but a
//! rounding difference.

use mpi::traits::*;
use mpi::Rank;

use super::{gather_blocks, giga_rate, max_abs_diff, max_over_ranks, share_verdict, Outcome, RunOptions};
use crate::params::{grid_dims, JacobiParams as Params};

/// Temperature held on the top edge.
pub const HOT: f64 = 1.0;

/// Depth of every block's halo: two iterations per exchange.
const HALO: usize = 2;

/// A block's interior, `rows x cols`; its storage adds a `HALO`-deep halo
/// on every side, row by row.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub rows: usize,
    pub cols: usize,
}

impl Shape {
    fn width(self) -> usize {
        self.cols + 2 * HALO
    }

    /// Storage length.
    fn len(self) -> usize {
        (self.rows + 2 * HALO) * self.width()
    }

    /// Index of interior cell (r, c); from -HALO and up to rows + HALO - 1
    /// (cols + HALO - 1) it is a halo cell.
    fn at(self, r: isize, c: isize) -> usize {
        (r + HALO as isize) as usize * self.width() + (c + HALO as isize) as usize
    }
}

/// The sides of a block with a neighbour rank; the others lie on the
/// grid's edge, whose cells never change.
#[derive(Debug, Clone, Copy, Default)]
struct Sides<T> {
    north: T,
    south: T,
    west: T,
    east: T,
}

type Neighbours = Sides<Option<Rank>>;

impl Neighbours {
    fn open(&self) -> Sides<bool> {
        Sides {
            north: self.north.is_some(),
            south: self.south.is_some(),
            west: self.west.is_some(),
            east: self.east.is_some(),
        }
    }
}

/// `len` cells of a row and their four neighbours: element j of `up` and
/// `down` lines up with the row's element j, which is `mid[j + 1]` (`mid`
/// is the row one cell wider on both sides: its left and right neighbours
/// are `mid[j]` and `mid[j + 2]`).
struct Row<'a> {
    up: &'a [f64],
    down: &'a [f64],
    mid: &'a [f64],
}

impl<'a> Row<'a> {
    /// `len` cells of row `r` of `u` (laid out as `s`) from column `c`.
    // Inlined, so the measuring sweep's lanes stay in registers across a
    // row: as a call it ran about 1.4x slower on a 512 grid (issue #16).
    #[inline(always)]
    fn of(u: &'a [f64], s: Shape, r: isize, c: isize, len: usize) -> Row<'a> {
        let (at, w) = (s.at(r, c), s.width());
        Row { up: &u[at - w..][..len], down: &u[at + w..][..len], mid: &u[at - 1..][..len + 2] }
    }
}

/// The SSE2 pieces every row loop uses, two points per instruction: one
/// place for the order of the stencil's sums, on which the bit-identity with
/// the scalar (serial) sweep rests, and for the change's maximum.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Elements j and j + 1 of `s`.
    ///
    /// # Safety
    /// `j + 1 < s.len()`.
    #[inline(always)]
    pub unsafe fn at(s: &[f64], j: usize) -> __m128d {
        // SAFETY: the caller's promise above; an unaligned load.
        unsafe { _mm_loadu_pd(s.as_ptr().add(j)) }
    }

    /// Writes `v` to elements j and j + 1 of `s`.
    ///
    /// # Safety
    /// `j + 1 < s.len()`.
    #[inline(always)]
    pub unsafe fn put(s: &mut [f64], j: usize, v: __m128d) {
        // SAFETY: the caller's promise above; an unaligned store.
        unsafe { _mm_storeu_pd(s.as_mut_ptr().add(j), v) }
    }

    /// `0.25 * (a + b + c + d)`, summed left to right as the scalar form.
    #[inline(always)]
    pub fn average(a: __m128d, b: __m128d, c: __m128d, d: __m128d) -> __m128d {
        // SAFETY: SSE2 is part of every x86-64 processor.
        unsafe { _mm_mul_pd(_mm_set1_pd(0.25), _mm_add_pd(_mm_add_pd(_mm_add_pd(a, b), c), d)) }
    }

    /// `|new - old|` where it is above `lane`, else `lane` (max(d, lane)
    /// is `if d > lane { d } else { lane }`, the scalar form's select).
    #[inline(always)]
    pub fn most(new: __m128d, old: __m128d, lane: __m128d) -> __m128d {
        // SAFETY: SSE2 is part of every x86-64 processor.
        unsafe { _mm_max_pd(_mm_andnot_pd(_mm_set1_pd(-0.0), _mm_sub_pd(new, old)), lane) }
    }
}

/// One Jacobi sweep over the interior of `u` into `next`.
pub fn sweep(u: &[f64], next: &mut [f64], s: Shape) {
    for r in 0..s.rows as isize {
        stencil_row(&mut next[s.at(r, 0)..][..s.cols], &Row::of(u, s, r, 0, s.cols));
    }
}

/// `sweep`, also returning the largest change.
pub fn sweep_with_change(u: &[f64], next: &mut [f64], s: Shape) -> f64 {
    let mut lanes = [0.0f64; LANES];
    for r in 0..s.rows as isize {
        measuring_row(&mut next[s.at(r, 0)..][..s.cols], &Row::of(u, s, r, 0, s.cols), &mut lanes);
    }
    largest(lanes)
}

/// Two iterations in one pass over `u`, in place. Row r + 1 of the first
/// goes into `ring` (three rows of columns -1..=cols) and row r of the
/// second from the ring into `u`'s row r, which no later ring row reads,
/// both in one loop over the columns. `u`'s halo must be current two cells
/// deep, corners included. The largest change of the second iteration
/// when `measure`.
fn sweep_pair(u: &mut [f64], ring: &mut [f64], s: Shape, open: Sides<bool>, measure: bool) -> Option<f64> {
    let (cols, ring_w) = (s.cols, s.cols + 2);
    assert_eq!(ring.len(), 3 * ring_w);
    // The pass starts with the first iteration's rows -1 and 0 (row r's
    // slot is r mod 3).
    let (slot_0, slots_1_2) = ring.split_at_mut(ring_w);
    first_of_pair(u, &mut slots_1_2[ring_w..], s, -1, open);
    first_of_pair(u, slot_0, s, 0, open);
    let mut lanes = [0.0f64; LANES];
    for r in 0..s.rows as isize {
        let (prev, cur, next) = ring_rows(ring, ring_w, r);
        if r + 1 == s.rows as isize && !open.south {
            first_of_pair(u, next, s, r + 1, open);
            let row = Row { up: &prev[1..=cols], down: &next[1..=cols], mid: cur };
            let out = &mut u[s.at(r, 0)..][..cols];
            if measure {
                measuring_row(out, &row, &mut lanes);
            } else {
                stencil_row(out, &row);
            }
            continue;
        }
        // The first iteration's row r + 1: its edge columns here, the rest
        // in the column loop.
        edge_columns(u, next, s, r + 1, open);
        let (head, tail) = u.split_at_mut(s.at(r + 1, -(HALO as isize)));
        let below = &tail[HALO - 1..][..cols + 2];
        let below2 = &tail[s.width() + HALO..][..cols];
        let row_r = &mut head[s.at(r, 0)..][..cols];
        if measure {
            lanes[0] = lanes[0].max(pair_loop::<true>(row_r, below, below2, prev, cur, next));
        } else {
            pair_loop::<false>(row_r, below, below2, prev, cur, next);
        }
    }
    measure.then(|| largest(lanes))
}

/// The ring's rows r - 1 and r of the first iteration, and the one row r + 1
/// goes into.
fn ring_rows(ring: &mut [f64], w: usize, r: isize) -> (&[f64], &[f64], &mut [f64]) {
    let (a, rest) = ring.split_at_mut(w);
    let (b, c) = rest.split_at_mut(w);
    match (r + 3) % 3 {
        0 => (c, a, b),
        1 => (a, b, c),
        _ => (b, c, a),
    }
}

/// One column loop of a pair, two points per SSE2 instruction: the first
/// iteration's row r + 1 at columns 0..cols into `next[1..=cols]` from
/// `u`'s rows r (`row_r`), r + 1
/// (`below`, columns -1..=cols) and r + 2 (`below2`), and the second
/// iteration's row r into `row_r` from the ring's rows r - 1 (`prev`), r
/// (`cur`) and the value just computed. Each value of `row_r` is read before
/// it is overwritten. The same sums in the same order as `stencil_row`.
/// With `MEASURE`, also the second iteration's largest change on the row.
#[inline(always)]
fn pair_loop<const MEASURE: bool>(
    row_r: &mut [f64],
    below: &[f64],
    below2: &[f64],
    prev: &[f64],
    cur: &[f64],
    next: &mut [f64],
) -> f64 {
    let n = row_r.len();
    assert!(
        below.len() == n + 2 && below2.len() == n && prev.len() == n + 2 && cur.len() == n + 2 && next.len() == n + 2
    );
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: every access is below the lengths checked above (n + 2 for
    // the slices read at j + 2 and written at j + 1); unaligned loads and
    // stores.
    let mut most = unsafe {
        use sse2::{at, average, most, put};
        use std::arch::x86_64::{__m128d, _mm_setzero_pd};
        let mut lanes = _mm_setzero_pd();
        // The right neighbours at j + 2 are the left ones of the next two
        // points: loaded once (LLVM does not see that the stores between
        // leave them alone; gcc reuses them by itself).
        let (mut below_left, mut cur_left) = (at(below, 0), at(cur, 0));
        // Two points at j.
        let mut step = |j: usize, lanes: &mut __m128d| {
            let (below_right, cur_right) = (at(below, j + 2), at(cur, j + 2));
            let first = average(at(row_r, j), at(below2, j), below_left, below_right);
            put(next, j + 1, first);
            let second = average(at(prev, j + 1), first, cur_left, cur_right);
            (below_left, cur_left) = (below_right, cur_right);
            if MEASURE {
                *lanes = most(second, at(cur, j + 1), *lanes);
            }
            put(row_r, j, second);
        };
        // Four points per round: two per round left the loop's own
        // instructions a fifth of the work (gcc unrolls it so by itself).
        while j + 4 <= n {
            step(j, &mut lanes);
            step(j + 2, &mut lanes);
            j += 4;
        }
        if j + 2 <= n {
            step(j, &mut lanes);
            j += 2;
        }
        let mut two = [0.0f64; 2];
        put(&mut two, 0, lanes);
        two[0].max(two[1])
    };
    #[cfg(not(target_arch = "x86_64"))]
    let mut most = 0.0f64;
    for j in j..n {
        let first = 0.25 * (row_r[j] + below2[j] + below[j] + below[j + 2]);
        next[j + 1] = first;
        let v = 0.25 * (prev[j + 1] + first + cur[j] + cur[j + 2]);
        let d = (v - cur[j + 1]).abs();
        most = if d > most { d } else { most };
        row_r[j] = v;
    }
    most
}

/// Row `r` (-1..=rows) of the first iteration of a pair, columns
/// -1..=cols, into `out`: computed where a neighbour's halo surrounds the
/// cell, the edge's value where it lies on the grid's edge.
#[inline(always)]
fn first_of_pair(u: &[f64], out: &mut [f64], s: Shape, r: isize, open: Sides<bool>) {
    if (r < 0 && !open.north) || (r == s.rows as isize && !open.south) {
        out.copy_from_slice(&u[s.at(r, -1)..][..s.cols + 2]);
        return;
    }
    stencil_row(&mut out[1..=s.cols], &Row::of(u, s, r, 0, s.cols));
    edge_columns(u, out, s, r, open);
}

/// Columns -1 and cols of row `r` of a pair's first iteration (`out[0]`
/// and `out[cols + 1]`): computed toward a neighbour, the edge's value on
/// the grid's edge.
#[inline(always)]
fn edge_columns(u: &[f64], out: &mut [f64], s: Shape, r: isize, open: Sides<bool>) {
    let first = |c: isize| 0.25 * (u[s.at(r - 1, c)] + u[s.at(r + 1, c)] + u[s.at(r, c - 1)] + u[s.at(r, c + 1)]);
    let last = s.cols as isize;
    out[0] = if open.west { first(-1) } else { u[s.at(r, -1)] };
    out[s.cols + 1] = if open.east { first(last) } else { u[s.at(r, last)] };
}

/// One row of the update, two points per SSE2 instruction. Plain stores:
/// streaming (non-temporal) ones measured about 1.3x slower on this machine
/// at 2048 and 4096 (issue #16; docs/BENCHMARKS.md). The sums run in the
/// same order as the scalar form, so the values are the same to the bit.
#[inline(always)]
fn stencil_row(out: &mut [f64], row: &Row) {
    let n = out.len();
    let Row { up, down, mid } = *row;
    assert!(up.len() == n && down.len() == n && mid.len() == n + 2);
    let scalar = |j: usize| 0.25 * (up[j] + down[j] + mid[j] + mid[j + 2]);
    #[cfg(target_arch = "x86_64")]
    {
        use sse2::{at, average, put};
        let mut j = 0;
        // SAFETY: every access is below n (n + 2 for mid; checked above).
        unsafe {
            // The right neighbours of two points are the left ones of the
            // next two: loaded once (LLVM does not see that the store
            // between leaves them alone; gcc reuses them by itself).
            let mut left = at(mid, 0);
            while j + 2 <= n {
                let right = at(mid, j + 2);
                put(out, j, average(at(up, j), at(down, j), left, right));
                left = right;
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

/// Lanes of the running maximum of the change.
const LANES: usize = 4;

/// `stencil_row`, also keeping the largest change per lane (lane k for
/// the points j with j mod 4 = k): a select per element vectorises, where
/// one scalar maximum (a floating-point reduction) would not. Explicit SSE2
/// as in `stencil_row`: LLVM vectorised the plain form only partly (scalar
/// sums, then shuffles into pairs for the maximum; gcc no better), and a
/// 1024 grid measuring every iteration ran 1.5x slower at one rank (issue
/// #16). It serves an iteration that measures alone (each one with
/// `--check-every 1`), a measuring pass's last row at the grid's south
/// edge, and the serial reference. The same sums in the same order.
#[inline(always)]
fn measuring_row(out: &mut [f64], row: &Row, lanes: &mut [f64; LANES]) {
    let Row { up, down, mid } = *row;
    let n = out.len();
    assert!(up.len() == n && down.len() == n && mid.len() == n + 2);
    let mut j = 0;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: every access is below n (n + 2 for mid; checked above), and
    // `lanes` holds four.
    unsafe {
        use sse2::{at, average, most, put};
        use std::arch::x86_64::__m128d;
        // Lanes 0 and 1, and 2 and 3.
        let (mut low, mut high) = (at(&lanes[..], 0), at(&lanes[..], 2));
        let mut left = at(mid, 0);
        // Two points at j; their change's maximum with `lane`.
        let mut step = |j: usize, lane: &mut __m128d| {
            let right = at(mid, j + 2);
            let v = average(at(up, j), at(down, j), left, right);
            *lane = most(v, at(mid, j + 1), *lane);
            put(out, j, v);
            left = right;
        };
        while j + LANES <= n {
            step(j, &mut low);
            step(j + 2, &mut high);
            j += LANES;
        }
        put(lanes, 0, low);
        put(lanes, 2, high);
    }
    #[cfg(not(target_arch = "x86_64"))]
    while j + LANES <= n {
        for k in 0..LANES {
            let v = 0.25 * (up[j + k] + down[j + k] + mid[j + k] + mid[j + k + 2]);
            let d = (v - mid[j + k + 1]).abs();
            lanes[k] = if d > lanes[k] { d } else { lanes[k] };
            out[j + k] = v;
        }
        j += LANES;
    }
    for j in j..n {
        let v = 0.25 * (up[j] + down[j] + mid[j] + mid[j + 2]);
        let d = (v - mid[j + 1]).abs();
        lanes[0] = if d > lanes[0] { d } else { lanes[0] };
        out[j] = v;
    }
}

fn largest(lanes: [f64; LANES]) -> f64 {
    lanes.into_iter().fold(0.0, f64::max)
}

/// Iteration `iter` (counted from 1) from `u` into `next`, one sweep: the
/// largest change when this iteration measures it (every `check_every`),
/// else None.
fn iterate(u: &[f64], next: &mut [f64], s: Shape, iter: u32, check_every: u32) -> Option<f64> {
    if iter % check_every == 0 {
        Some(sweep_with_change(u, next, s))
    } else {
        sweep(u, next, s);
        None
    }
}

/// Whether the pass after `done` iterations runs two of them: not when the
/// first would measure the change (it runs alone, so that convergence is
/// decided on the iteration the serial sweep decides it), nor when one
/// iteration is left, nor where a block is too thin for a two-deep halo.
fn runs_pair(done: u32, params: Params, s: Shape) -> bool {
    pairs(s) && (done + 1) % params.check_every != 0 && done + 2 <= params.max_iters
}

/// Whether blocks of this shape hold a two-deep halo for their neighbours
/// (all ranks' blocks have one shape).
fn pairs(s: Shape) -> bool {
    s.rows >= HALO && s.cols >= HALO
}

/// A block with its halo; the cells on the global boundary hold the edge
/// temperatures.
fn block(s: Shape, top_edge: bool) -> Vec<f64> {
    let mut u = vec![0.0; s.len()];
    if top_edge {
        u[s.at(-1, 0)..][..s.cols].fill(HOT);
    }
    u
}

/// The serial reference: one sweep per iteration over the whole grid; the
/// grid and the iteration count.
pub fn serial(params: Params) -> (Vec<f64>, u32) {
    let s = Shape { rows: params.n, cols: params.n };
    let mut u = block(s, true);
    let mut next = u.clone();
    let mut iters = 0;
    loop {
        iters += 1;
        let change = iterate(&u, &mut next, s, iters, params.check_every);
        std::mem::swap(&mut u, &mut next);
        if change.is_some_and(|c| c < params.tol) || iters >= params.max_iters {
            return (u, iters);
        }
    }
}

/// The interior of a block with a halo, packed row by row.
pub fn interior(u: &[f64], s: Shape) -> Vec<f64> {
    (0..s.rows as isize).flat_map(|r| u[s.at(r, 0)..][..s.cols].iter().copied()).collect()
}

/// Halo tags, by the direction the message travels.
const NORTH: i32 = 1;
const SOUTH: i32 = 2;
const WEST: i32 = 3;
const EAST: i32 = 4;

/// Packed halo columns, `depth` per storage row, toward and from the west
/// and east neighbours.
struct Columns {
    send_w: Vec<f64>,
    send_e: Vec<f64>,
    recv_w: Vec<f64>,
    recv_e: Vec<f64>,
}

/// The halo exchange, `depth` cells deep: whole storage rows with the north
/// and south neighbours first, then columns with the west and east over
/// every storage row, halo rows included, so that the corner cells carry
/// the diagonal neighbours' values (the first sweep of a pair reads them).
fn exchange<C: Communicator>(cart: &C, u: &mut [f64], s: Shape, depth: usize, to: Neighbours, buf: &mut Columns) {
    let w = s.width();
    {
        let (top, rest) = u.split_at_mut(s.at(0, -(HALO as isize)));
        let (body, bottom) = rest.split_at_mut(s.rows * w);
        let top_len = top.len();
        mpi::request::scope(|scope| {
            let mut requests = Vec::with_capacity(4);
            if let Some(p) = to.north {
                let p = cart.process_at_rank(p);
                requests.push(p.immediate_receive_into_with_tag(scope, &mut top[top_len - depth * w..], SOUTH));
                requests.push(p.immediate_send_with_tag(scope, &body[..depth * w], NORTH));
            }
            if let Some(p) = to.south {
                let p = cart.process_at_rank(p);
                requests.push(p.immediate_receive_into_with_tag(scope, &mut bottom[..depth * w], NORTH));
                requests.push(p.immediate_send_with_tag(scope, &body[(s.rows - depth) * w..], SOUTH));
            }
            for request in requests {
                request.wait();
            }
        });
    }
    if to.west.is_none() && to.east.is_none() {
        return;
    }
    // Columns are not contiguous: pack them.
    let storage_rows = s.rows + 2 * HALO;
    let (first, last) = (HALO, HALO + s.cols - depth);
    for i in 0..storage_rows {
        for k in 0..depth {
            buf.send_w[i * depth + k] = u[i * w + first + k];
            buf.send_e[i * depth + k] = u[i * w + last + k];
        }
    }
    let n = storage_rows * depth;
    mpi::request::scope(|scope| {
        let mut requests = Vec::with_capacity(4);
        if let Some(p) = to.west {
            let p = cart.process_at_rank(p);
            requests.push(p.immediate_receive_into_with_tag(scope, &mut buf.recv_w[..n], EAST));
            requests.push(p.immediate_send_with_tag(scope, &buf.send_w[..n], WEST));
        }
        if let Some(p) = to.east {
            let p = cart.process_at_rank(p);
            requests.push(p.immediate_receive_into_with_tag(scope, &mut buf.recv_e[..n], WEST));
            requests.push(p.immediate_send_with_tag(scope, &buf.send_e[..n], EAST));
        }
        for request in requests {
            request.wait();
        }
    });
    for i in 0..storage_rows {
        for k in 0..depth {
            if to.west.is_some() {
                u[i * w + HALO - depth + k] = buf.recv_w[i * depth + k];
            }
            if to.east.is_some() {
                u[i * w + HALO + s.cols + k] = buf.recv_e[i * depth + k];
            }
        }
    }
}

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions, progress: &dyn Fn(&str)) -> Outcome {
    let (grid_rows, grid_cols) = grid_dims(world.size() as usize);
    let cart = world
        .create_cartesian_communicator(&[grid_rows as i32, grid_cols as i32], &[false, false], false)
        .expect("every rank belongs to the process grid");
    let coords = cart.get_layout().coords;
    let s = Shape { rows: params.n / grid_rows, cols: params.n / grid_cols };
    let (north, south) = cart.shift(0, 1);
    let (west, east) = cart.shift(1, 1);
    let to = Neighbours { north, south, west, east };
    let mut u = block(s, coords[0] == 0);
    let mut next = u.clone();
    let mut ring = vec![0.0; 3 * (s.cols + 2)];
    // Blocks too thin for two sweeps per exchange never pair, and a
    // one-deep halo serves them.
    let depth = if pairs(s) { HALO } else { 1 };
    let column = (s.rows + 2 * HALO) * depth;
    let mut columns = Columns {
        send_w: vec![0.0; column],
        send_e: vec![0.0; column],
        recv_w: vec![0.0; column],
        recv_e: vec![0.0; column],
    };
    // Progress about ten times per run, on iterations that measured the change.
    let report_every = ((params.max_iters / 10).max(1)).div_ceil(params.check_every) * params.check_every;

    cart.barrier();
    let start = mpi::time();
    let mut iters = 0u32;
    // Not measured yet: no convergence before the first check.
    let mut residual = f64::INFINITY;
    loop {
        exchange(&cart, &mut u, s, depth, to, &mut columns);
        let measured = if runs_pair(iters, params, s) {
            iters += 2;
            sweep_pair(&mut u, &mut ring, s, to.open(), iters % params.check_every == 0)
        } else {
            iters += 1;
            let measured = iterate(&u, &mut next, s, iters, params.check_every);
            std::mem::swap(&mut u, &mut next);
            measured
        };
        if let Some(change) = measured {
            residual = max_over_ranks(&cart, change);
            if iters % report_every == 0 {
                progress(&format!("jacobi: iteration {iters}, largest change {residual:.3e}"));
            }
        }
        if residual < params.tol || iters >= params.max_iters {
            break;
        }
    }
    let wall_time_s = max_over_ranks(&cart, mpi::time() - start);

    let mut mine = interior(&u, s);
    if options.corrupts(&cart) {
        mine[0] += 1.0;
    }
    let gathered = gather_blocks(&cart, &mine, (s.rows, s.cols), (grid_rows, grid_cols));
    let tolerance = 4.0 * f64::EPSILON;
    let (error_norm, verified) = match gathered {
        Some(grid) => {
            let (reference, serial_iters) = serial(params);
            let whole = Shape { rows: params.n, cols: params.n };
            let error = max_abs_diff(&grid, &interior(&reference, whole));
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
        // The least traffic of one sweep per pass over memory (read u,
        // write next): an effective rate, which pairs may lift above what
        // the memory moves.
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
        let s = Shape { rows: 1, cols: 1 };
        let mut u = vec![0.0; s.len()];
        for (r, c, v) in [(-1, 0, 4.0), (0, -1, 8.0), (0, 1, 12.0), (1, 0, 16.0)] {
            u[s.at(r, c)] = v;
        }
        let mut next = u.clone();
        let change = sweep_with_change(&u, &mut next, s);
        assert_eq!(next[s.at(0, 0)], 10.0);
        assert_eq!(change, 10.0);
        let mut plain = u.clone();
        sweep(&u, &mut plain, s);
        assert_eq!(plain, next);
    }

    #[test]
    fn the_serial_solution_is_hot_on_top_and_cold_below() {
        let params = Params { n: 16, max_iters: 5000, tol: 1e-10, check_every: 7 };
        let (u, iters) = serial(params);
        assert!(iters < 5000, "did not converge");
        assert_eq!(iters % 7, 0, "converges only on an iteration that checks");
        let inner = interior(&u, Shape { rows: 16, cols: 16 });
        // Symmetric left-right, decreasing from the hot edge.
        for i in 0..16 {
            assert!((inner[i * 16] - inner[i * 16 + 15]).abs() < 1e-9);
        }
        assert!(inner[8] > inner[8 * 16 + 8] && inner[8 * 16 + 8] > inner[15 * 16 + 8]);
    }

    /// Two sweeps of a whole grid against one pass of two over each block
    /// of it, on a 2 x 3 process grid whose halos (corners included) are
    /// copied from the whole grid as the exchange would leave them.
    #[test]
    fn a_pass_of_two_equals_two_sweeps_to_the_bit_on_every_block() {
        let (n, grid) = (12usize, (2usize, 3usize));
        let whole = Shape { rows: n, cols: n };
        let mut u = block(whole, true);
        // An uneven start, so that every neighbour matters.
        for r in 0..n as isize {
            for c in 0..n as isize {
                u[whole.at(r, c)] = ((r * 31 + c * 17) % 23) as f64 / 7.0;
            }
        }
        let (mut once, mut twice) = (u.clone(), u.clone());
        sweep(&u, &mut once, whole);
        let change = sweep_with_change(&once, &mut twice, whole);

        let s = Shape { rows: n / grid.0, cols: n / grid.1 };
        let mut largest_change: f64 = 0.0;
        let blocks = (0..grid.0).flat_map(|i| (0..grid.1).map(move |j| (i, j)));
        // Each block twice: measuring the change, and not (another loop).
        for (bi, bj, measure) in blocks.flat_map(|(i, j)| [(i, j, true), (i, j, false)]) {
            let (r0, c0) = ((bi * s.rows) as isize, (bj * s.cols) as isize);
            let mut mine = vec![f64::NAN; s.len()];
            let reach = -(HALO as isize)..;
            for r in reach.clone().take(s.rows + 2 * HALO) {
                for c in reach.clone().take(s.cols + 2 * HALO) {
                    mine[s.at(r, c)] = u[whole.at(r0 + r, c0 + c)];
                }
            }
            let open = Sides { north: bi > 0, south: bi + 1 < grid.0, west: bj > 0, east: bj + 1 < grid.1 };
            let mut ring = vec![0.0; 3 * (s.cols + 2)];
            let change = sweep_pair(&mut mine, &mut ring, s, open, measure);
            assert_eq!(change.is_some(), measure);
            largest_change = largest_change.max(change.unwrap_or(0.0));
            for r in 0..s.rows as isize {
                for c in 0..s.cols as isize {
                    let (got, want) = (mine[s.at(r, c)], twice[whole.at(r0 + r, c0 + c)]);
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "block ({bi}, {bj}), cell ({r}, {c}), measuring: {measure}"
                    );
                }
            }
        }
        assert_eq!(largest_change, change);
    }

    #[test]
    fn an_iteration_that_measures_first_runs_alone() {
        let s = Shape { rows: 4, cols: 4 };
        let passes = |check_every, max_iters| {
            let params = Params { n: 4, max_iters, tol: 1e-6, check_every };
            let mut done = 0;
            let mut lengths = vec![];
            while done < max_iters {
                let length = if runs_pair(done, params, s) { 2 } else { 1 };
                lengths.push(length);
                done += length;
            }
            lengths
        };
        assert_eq!(passes(10, 20), vec![2; 10]);
        assert_eq!(passes(3, 9), vec![2, 1, 2, 1, 2, 1]);
        assert_eq!(passes(1, 3), vec![1, 1, 1]);
        assert_eq!(passes(10, 5), vec![2, 2, 1]);
        assert!(!pairs(Shape { rows: 1, cols: 8 }) && !pairs(Shape { rows: 8, cols: 1 }));
    }
}
