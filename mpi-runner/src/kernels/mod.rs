//! The kernels: each runs in parallel over a communicator and checks its
//! answer against a serial computation of the same problem on rank 0.

use mpi::collective::SystemOperation;
use mpi::traits::*;

use crate::params::KernelSpec;

/// Element-wise sum of a vector across all ranks (MPI_Allreduce).
pub mod allreduce;
/// Conjugate gradient on the 2-D Poisson system.
pub mod cg;
/// 2-D heat equation by Jacobi iteration with halo exchange.
pub mod jacobi;
/// Dense matrix multiply over a 2-D process grid (SUMMA).
pub mod matmul;
/// Ping-pong, all-reduce and broadcast micro-benchmarks.
pub mod osu;
/// Monte Carlo pi.
pub mod pi;

/// What a kernel run found, the same on every rank.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Slowest rank's time for the parallel computation (verification excluded).
    pub wall_time_s: f64,
    /// Distance from the serial reference, in the kernel's own norm.
    pub error_norm: f64,
    /// Largest error_norm that counts as verified.
    pub tolerance: f64,
    /// Rank 0's verdict, broadcast, so every rank exits alike.
    pub verified: bool,
    /// Floating-point rate of the parallel computation, when meaningful.
    pub gflop_s: Option<f64>,
    /// Memory or network rate of the parallel computation, when meaningful.
    pub bandwidth_gb_s: Option<f64>,
    /// Kernel-specific figures: residual history, latency tables, the estimate.
    pub details: serde_json::Value,
}

/// How a run behaves beyond its parameters.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Corrupt one value of the last rank's part of the answer after the
    /// computation, so that verification must catch it. For tests of the
    /// failure path (`odyssey-mpi --inject-error`), never for results.
    pub inject_error: bool,
}

impl RunOptions {
    /// Whether this rank corrupts its part (the last rank, when asked).
    pub fn corrupts<C: Communicator>(&self, world: &C) -> bool {
        self.inject_error && world.rank() == world.size() - 1
    }
}

/// Runs `spec` on `world`. Parameters must have been validated for its size.
pub fn run<C: Communicator>(world: &C, spec: &KernelSpec, options: RunOptions, progress: &dyn Fn(&str)) -> Outcome {
    match *spec {
        KernelSpec::Allreduce(p) => allreduce::run(world, p, options),
        KernelSpec::Pi(p) => pi::run(world, p, options),
        KernelSpec::Jacobi(p) => jacobi::run(world, p, options, progress),
        KernelSpec::Matmul(p) => matmul::run(world, p, options),
        KernelSpec::Cg(p) => cg::run(world, p, options, progress),
        KernelSpec::Osu(p) => osu::run(world, p, options),
    }
}

/// `amount` per second, in billions: GFLOP/s or GB/s.
pub fn giga_rate(amount: f64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| amount / seconds / 1e9)
}

/// The largest of every rank's `value`.
pub fn max_over_ranks<C: Communicator>(world: &C, value: f64) -> f64 {
    let mut out = 0.0;
    world.all_reduce_into(&value, &mut out, SystemOperation::max());
    out
}

/// The sum of every rank's `value`.
pub fn sum_over_ranks<C: Communicator>(world: &C, value: f64) -> f64 {
    let mut out = 0.0;
    world.all_reduce_into(&value, &mut out, SystemOperation::sum());
    out
}

/// Rank 0's `(error_norm, verified)` on every rank.
pub fn share_verdict<C: Communicator>(world: &C, error_norm: f64, verified: bool) -> (f64, bool) {
    let mut msg = [error_norm, if verified { 1.0 } else { 0.0 }];
    world.process_at_rank(0).broadcast_into(&mut msg[..]);
    (msg[0], msg[1] == 1.0)
}

/// Largest absolute difference between two slices.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Gathers equal `block_rows x block_cols` row-major blocks from a
/// `grid_rows x grid_cols` process grid (rank = row * grid_cols + col) into
/// one row-major matrix on rank 0.
pub fn gather_blocks<C: Communicator>(
    world: &C,
    block: &[f64],
    (block_rows, block_cols): (usize, usize),
    (grid_rows, grid_cols): (usize, usize),
) -> Option<Vec<f64>> {
    let root = world.process_at_rank(0);
    if world.rank() != 0 {
        root.gather_into(block);
        return None;
    }
    let mut all = vec![0.0; block.len() * grid_rows * grid_cols];
    root.gather_into_root(block, &mut all[..]);
    let cols = block_cols * grid_cols;
    let mut matrix = vec![0.0; all.len()];
    for (rank, chunk) in all.chunks(block.len()).enumerate() {
        let (gr, gc) = (rank / grid_cols, rank % grid_cols);
        for (i, row) in chunk.chunks(block_cols).enumerate() {
            let start = (gr * block_rows + i) * cols + gc * block_cols;
            matrix[start..start + block_cols].copy_from_slice(row);
        }
    }
    Some(matrix)
}
