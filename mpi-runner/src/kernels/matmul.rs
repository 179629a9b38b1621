//! Dense matrix multiply C = A B by SUMMA (van de Geijn and Watts, 1997) on a
//! `rows x cols` process grid: every matrix is split in equal blocks, rank
//! (r, c) owning block (r, c) of each. For each panel of `kb` columns of A and
//! rows of B, the owners broadcast them along process rows and columns, and
//! every rank adds the panel product to its block of C.
//!
//! The local product (blocked i-k-j) accumulates each C element over k in
//! increasing order, exactly as the serial reference does, so the gathered C
//! equals the serial one up to rounding.

use mpi::topology::Color;
use mpi::traits::*;

use super::{gather_blocks, giga_rate, max_abs_diff, max_over_ranks, share_verdict, Outcome, RunOptions};
use crate::params::{gcd, grid_dims, MatmulParams as Params};

/// Element (i, j) of A: small values in [-0.5, 0.5) that vary in both indices.
pub fn a(i: usize, j: usize) -> f64 {
    ((i * 31 + j * 17) % 97) as f64 / 97.0 - 0.5
}

/// Element (i, j) of B.
pub fn b(i: usize, j: usize) -> f64 {
    ((i * 13 + j * 29) % 89) as f64 / 89.0 - 0.5
}

/// `c (m x n) += a (m x k) * b (k x n)`, all row-major. Every `c[i][j]`
/// adds up `a[i][p] * b[p][j]` for p in order, so the result is the plain
/// i-k-j loop's to the bit; the loops are blocked as the fastest C variant
/// tried (issue #16): panels of b of `KB x JB` (256 KiB, about an L2), and
/// four rows of c per pass over a row of b, so each load of b feeds four
/// multiply-adds.
pub fn gemm_acc(c: &mut [f64], a: &[f64], b: &[f64], m: usize, k: usize, n: usize) {
    const KB: usize = 128;
    const JB: usize = 256;
    let (c, a, b) = (&mut c[..m * n], &a[..m * k], &b[..k * n]);
    for j0 in (0..n).step_by(JB) {
        let j1 = (j0 + JB).min(n);
        for p0 in (0..k).step_by(KB) {
            let p1 = (p0 + KB).min(k);
            let mut quads = c.chunks_exact_mut(4 * n);
            for (q, quad) in (&mut quads).enumerate() {
                let (c0, rest) = quad.split_at_mut(n);
                let (c1, rest) = rest.split_at_mut(n);
                let (c2, c3) = rest.split_at_mut(n);
                let (c0, c1, c2, c3) = (&mut c0[j0..j1], &mut c1[j0..j1], &mut c2[j0..j1], &mut c3[j0..j1]);
                let rows = &a[4 * q * k..(4 * q + 4) * k];
                for p in p0..p1 {
                    let (a0, a1, a2, a3) = (rows[p], rows[k + p], rows[2 * k + p], rows[3 * k + p]);
                    let brow = &b[p * n + j0..p * n + j1];
                    // Equal lengths, so the loop below has no bounds checks.
                    let w = brow.len();
                    let (c0, c1, c2, c3) = (&mut c0[..w], &mut c1[..w], &mut c2[..w], &mut c3[..w]);
                    for (j, &bj) in brow.iter().enumerate() {
                        c0[j] += a0 * bj;
                        c1[j] += a1 * bj;
                        c2[j] += a2 * bj;
                        c3[j] += a3 * bj;
                    }
                }
            }
            let first = m / 4 * 4;
            for (r, row) in quads.into_remainder().chunks_exact_mut(n).enumerate() {
                let row = &mut row[j0..j1];
                for p in p0..p1 {
                    let aik = a[(first + r) * k + p];
                    for (cij, bpj) in row.iter_mut().zip(&b[p * n + j0..p * n + j1]) {
                        *cij += aik * bpj;
                    }
                }
            }
        }
    }
}

/// A `rows x cols` block of a matrix, from global row `r0` and column `c0`.
fn generate(f: fn(usize, usize) -> f64, r0: usize, c0: usize, rows: usize, cols: usize) -> Vec<f64> {
    (0..rows).flat_map(|i| (0..cols).map(move |j| f(r0 + i, c0 + j))).collect()
}

/// The serial reference: the whole product in one process.
pub fn serial(n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    gemm_acc(&mut c, &generate(a, 0, 0, n, n), &generate(b, 0, 0, n, n), n, n, n);
    c
}

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions) -> Outcome {
    let n = params.n;
    let (grid_rows, grid_cols) = grid_dims(world.size() as usize);
    let rank = world.rank() as usize;
    let (row, col) = (rank / grid_cols, rank % grid_cols);
    let (mr, nc) = (n / grid_rows, n / grid_cols);
    // Panels never straddle two owners: their width divides both block sides.
    let kb = gcd(mr, nc);
    let row_comm = world.split_by_color(Color::with_value(row as i32)).expect("a row communicator");
    let col_comm = world.split_by_color(Color::with_value(col as i32)).expect("a column communicator");
    let a_block = generate(a, row * mr, col * nc, mr, nc);
    let b_block = generate(b, row * mr, col * nc, mr, nc);
    let mut c_block = vec![0.0; mr * nc];
    let mut a_panel = vec![0.0; mr * kb];
    let mut b_panel = vec![0.0; kb * nc];

    world.barrier();
    let start = mpi::time();
    for k0 in (0..n).step_by(kb) {
        // Columns k0..k0+kb of A live in process column k0 / nc.
        let owner = k0 / nc;
        if owner == col {
            let off = k0 % nc;
            for i in 0..mr {
                a_panel[i * kb..(i + 1) * kb].copy_from_slice(&a_block[i * nc + off..i * nc + off + kb]);
            }
        }
        row_comm.process_at_rank(owner as i32).broadcast_into(&mut a_panel[..]);
        // Rows k0..k0+kb of B live in process row k0 / mr.
        let owner = k0 / mr;
        if owner == row {
            let off = k0 % mr;
            b_panel.copy_from_slice(&b_block[off * nc..(off + kb) * nc]);
        }
        col_comm.process_at_rank(owner as i32).broadcast_into(&mut b_panel[..]);
        gemm_acc(&mut c_block, &a_panel, &b_panel, mr, kb, nc);
    }
    let wall_time_s = max_over_ranks(world, mpi::time() - start);
    if options.corrupts(world) {
        c_block[0] += 1.0;
    }

    let tolerance = n as f64 * f64::EPSILON * n as f64 * 0.25;
    let (error_norm, verified) = match gather_blocks(world, &c_block, (mr, nc), (grid_rows, grid_cols)) {
        Some(c) => {
            let error = max_abs_diff(&c, &serial(n));
            share_verdict(world, error, error <= tolerance)
        }
        None => share_verdict(world, 0.0, false),
    };
    let nf = n as f64;
    Outcome {
        wall_time_s,
        error_norm,
        tolerance,
        verified,
        gflop_s: giga_rate(2.0 * nf * nf * nf, wall_time_s),
        bandwidth_gb_s: None,
        details: serde_json::json!({"process_grid": [grid_rows, grid_cols], "panel_width": kb}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_the_definition() {
        let n = 7;
        let c = serial(n);
        for i in 0..n {
            for j in 0..n {
                let expect: f64 = (0..n).map(|k| a(i, k) * b(k, j)).sum();
                assert!((c[i * n + j] - expect).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn the_blocked_product_equals_the_plain_loop_to_the_bit() {
        // Rows not a multiple of four, columns and depth across block edges.
        let (m, k, n) = (7, 300, 261);
        let a_block = generate(a, 0, 0, m, k);
        let b_block = generate(b, 0, 0, k, n);
        let mut blocked = vec![0.5; m * n];
        gemm_acc(&mut blocked, &a_block, &b_block, m, k, n);
        let mut plain = vec![0.5; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    plain[i * n + j] += a_block[i * k + p] * b_block[p * n + j];
                }
            }
        }
        assert_eq!(blocked, plain);
    }

    #[test]
    fn panels_in_order_equal_the_whole_product() {
        // The SUMMA schedule on one process: panel by panel.
        let (n, kb) = (12, 4);
        let (a_full, b_full) = (generate(a, 0, 0, n, n), generate(b, 0, 0, n, n));
        let mut c = vec![0.0; n * n];
        for k0 in (0..n).step_by(kb) {
            let a_panel: Vec<f64> = (0..n).flat_map(|i| a_full[i * n + k0..i * n + k0 + kb].to_vec()).collect();
            gemm_acc(&mut c, &a_panel, &b_full[k0 * n..(k0 + kb) * n], n, kb, n);
        }
        assert_eq!(c, serial(n));
    }
}
