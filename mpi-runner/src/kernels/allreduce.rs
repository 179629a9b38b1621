//! All-reduce (sum) of a vector of `n` doubles across every rank.
//!
//! Rank `r` contributes `x[i] = (r + 1) * (i + 1) + 1 / (i + 1)`, values
//! that differ per rank and per element, so a reduction that drops, repeats
//! or misplaces a contribution cannot match the serial sum.
//!
//! MPI standard 4.0, section 6.9.6 (MPI_Allreduce).

use mpi::collective::SystemOperation;
use mpi::traits::*;

/// Parameters, checked before MPI starts.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Params {
    /// Elements per vector.
    pub n: usize,
    /// How many times the reduction is repeated (for timing).
    pub iters: u32,
}

/// Largest vector we accept: 2^27 doubles is 1 GiB per buffer, two buffers
/// per rank; beyond that a typo, not a workload.
pub const MAX_N: usize = 1 << 27;

impl Params {
    pub fn validate(&self) -> Result<(), String> {
        if self.n == 0 {
            return Err("--n must be at least 1".into());
        }
        if self.n > MAX_N {
            return Err(format!("--n {} exceeds the limit of {MAX_N} elements (1 GiB per buffer)", self.n));
        }
        if self.iters == 0 {
            return Err("--iters must be at least 1".into());
        }
        Ok(())
    }
}

/// Rank `rank`'s contribution.
pub fn contribution(rank: i32, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let k = (i + 1) as f64;
            f64::from(rank + 1) * k + 1.0 / k
        })
        .collect()
}

/// The serial reference: every rank's contribution summed in one process.
pub fn serial(n_ranks: i32, n: usize) -> Vec<f64> {
    let mut sum = vec![0.0; n];
    for rank in 0..n_ranks {
        for (s, x) in sum.iter_mut().zip(contribution(rank, n)) {
            *s += x;
        }
    }
    sum
}

/// Largest absolute difference between two vectors.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Outcome of the parallel run on one rank.
pub struct Outcome {
    pub error_norm: f64,
    pub wall_time_s: f64,
}

/// Runs the all-reduce `params.iters` times and compares the last result with
/// the serial reference. Every rank checks its own copy; the worst error over
/// all ranks is reduced to every rank, so all agree on `verified`.
pub fn run<C: Communicator>(world: &C, params: Params) -> Outcome {
    let send = contribution(world.rank(), params.n);
    let mut recv = vec![0.0; params.n];
    world.barrier();
    let start = mpi::time();
    for _ in 0..params.iters {
        world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
    }
    let elapsed = mpi::time() - start;
    let local_error = max_abs_diff(&recv, &serial(world.size(), params.n));
    let mut error_norm = 0.0;
    world.all_reduce_into(&local_error, &mut error_norm, SystemOperation::max());
    let mut wall_time_s = 0.0;
    world.all_reduce_into(&elapsed, &mut wall_time_s, SystemOperation::max());
    Outcome { error_norm, wall_time_s }
}

/// Tolerance: summation order differs between MPI's tree and the serial
/// loop, so allow a few ulps of the largest sum.
pub fn tolerance(n_ranks: i32, n: usize) -> f64 {
    let largest = f64::from(n_ranks) * f64::from(n_ranks + 1) / 2.0 * n as f64 + f64::from(n_ranks);
    largest * f64::EPSILON * f64::from(n_ranks.max(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_sum_matches_closed_form() {
        let n_ranks = 6;
        let sum = serial(n_ranks, 100);
        for (i, s) in sum.iter().enumerate() {
            let k = (i + 1) as f64;
            let expect = k * 21.0 + 6.0 / k;
            assert!((s - expect).abs() <= tolerance(n_ranks, 100), "element {i}: {s} vs {expect}");
        }
    }

    #[test]
    fn a_lost_contribution_is_detected() {
        let full = serial(3, 10);
        let missing_one = serial(2, 10);
        assert!(max_abs_diff(&full, &missing_one) > tolerance(3, 10));
    }

    #[test]
    fn params_are_checked() {
        assert!(Params { n: 0, iters: 1 }.validate().is_err());
        assert!(Params { n: MAX_N + 1, iters: 1 }.validate().is_err());
        assert!(Params { n: 8, iters: 0 }.validate().is_err());
        assert!(Params { n: 8, iters: 1 }.validate().is_ok());
    }
}
