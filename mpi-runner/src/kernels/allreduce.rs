//! All-reduce (sum) of a vector of `n` doubles across every rank.
//!
//! Rank `r` contributes `x[i] = (r + 1) * (i + 1) + 1 / (i + 1)`, values
//! that differ per rank and per element, so a reduction that drops, repeats
//! or misplaces a contribution cannot match the serial sum.
//!
//! MPI standard 4.0, section 6.9.6 (MPI_Allreduce).

use mpi::collective::SystemOperation;
use mpi::traits::*;

use super::{giga_rate, max_abs_diff, max_over_ranks, share_verdict, Outcome, RunOptions};
use crate::params::AllreduceParams as Params;

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

/// Runs the all-reduce `params.iters` times; rank 0 compares the last
/// result with the serial reference.
pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions) -> Outcome {
    let send = contribution(world.rank(), params.n);
    let mut recv = vec![0.0; params.n];
    world.barrier();
    let start = mpi::time();
    for _ in 0..params.iters {
        world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
    }
    let wall_time_s = max_over_ranks(world, mpi::time() - start);
    if options.inject_error && world.rank() == 0 {
        recv[0] += 1.0;
    }
    let tolerance = tolerance(world.size(), params.n);
    let local_error = if world.rank() == 0 { max_abs_diff(&recv, &serial(world.size(), params.n)) } else { 0.0 };
    let (error_norm, verified) = share_verdict(world, local_error, local_error <= tolerance);
    let bytes = (params.n * std::mem::size_of::<f64>()) as f64 * f64::from(params.iters);
    Outcome {
        wall_time_s,
        error_norm,
        tolerance,
        verified,
        gflop_s: None,
        bandwidth_gb_s: giga_rate(bytes, wall_time_s),
        details: serde_json::json!({}),
    }
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
}
