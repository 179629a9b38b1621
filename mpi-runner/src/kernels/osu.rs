//! OSU-style micro-benchmarks (after the OSU Micro-Benchmarks'
//! osu_latency, osu_allreduce and osu_bcast): ping-pong between rank 0 and
//! the last rank (on another node when the job spans nodes) from 1 B up to
//! `max_bytes` in powers of two, then all-reduce and broadcast sweeps over
//! every rank. Every size's last message is checked: the ping-pong echo
//! must return what was sent, the all-reduce must give the exact sum of the
//! ranks' values, and the broadcast must deliver the root's bytes.

use mpi::collective::SystemOperation;
use mpi::traits::*;

use super::{max_over_ranks, share_verdict, sum_over_ranks, Outcome, RunOptions};
use crate::params::OsuParams as Params;

/// Collective sweeps stop here: beyond it they measure bandwidth, not latency.
pub const COLLECTIVE_MAX: usize = 1 << 20;

/// Message sizes: 1, 2, 4, ... up to `max` (and `max` itself).
pub fn sizes(min: usize, max: usize) -> Vec<usize> {
    let mut out: Vec<usize> =
        std::iter::successors(Some(min), |s| s.checked_mul(2)).take_while(|s| *s <= max).collect();
    if out.last() != Some(&max) && max >= min {
        out.push(max);
    }
    out
}

/// Timed repetitions for a size, as OSU does: fewer for large messages.
pub fn repetitions(iters: u32, bytes: usize) -> u32 {
    if bytes > 64 << 10 {
        (iters / 10).max(10)
    } else {
        iters
    }
}

/// Byte `i` of the pattern for a message of `size` bytes.
fn pattern(size: usize, i: usize) -> u8 {
    ((i * 7 + size) % 251) as u8
}

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions) -> Outcome {
    let (rank, size) = (world.rank(), world.size());
    let peer = size - 1;
    let mut mismatches = 0.0;
    let mut pingpong = Vec::new();
    let mut elapsed = 0.0;
    world.barrier();
    if size >= 2 {
        for bytes in sizes(1, params.max_bytes) {
            let reps = repetitions(params.iters, bytes);
            let warmup = (reps / 10).max(2);
            let send: Vec<u8> = (0..bytes).map(|i| pattern(bytes, i)).collect();
            let mut recv = vec![0u8; bytes];
            world.barrier();
            let mut start = 0.0;
            for rep in 0..warmup + reps {
                if rep == warmup {
                    start = mpi::time();
                }
                if rank == 0 {
                    world.process_at_rank(peer).send(&send[..]);
                    world.process_at_rank(peer).receive_into(&mut recv[..]);
                } else if rank == peer {
                    world.process_at_rank(0).receive_into(&mut recv[..]);
                    world.process_at_rank(0).send(&recv[..]);
                }
            }
            let time = mpi::time() - start;
            elapsed += time;
            if rank == 0 {
                mismatches += send.iter().zip(&recv).filter(|(a, b)| a != b).count() as f64;
                let one_way = time / f64::from(reps) / 2.0;
                pingpong.push(serde_json::json!({
                    "bytes": bytes,
                    "latency_us": one_way * 1e6,
                    "bandwidth_mb_s": bytes as f64 / one_way / 1e6,
                }));
            }
        }
    }
    let expected = f64::from(size) * f64::from(size + 1) / 2.0;
    let mut allreduce = Vec::new();
    for bytes in sizes(8, params.max_bytes.min(COLLECTIVE_MAX)) {
        let count = bytes / 8;
        let send = vec![f64::from(rank + 1); count];
        let mut recv = vec![0.0; count];
        let reps = repetitions(params.iters, bytes);
        world.barrier();
        let start = mpi::time();
        for _ in 0..reps {
            world.all_reduce_into(&send[..], &mut recv[..], SystemOperation::sum());
        }
        let time = mpi::time() - start;
        elapsed += time;
        mismatches += recv.iter().filter(|v| **v != expected).count() as f64;
        let latency = max_over_ranks(world, time / f64::from(reps));
        allreduce.push(serde_json::json!({"bytes": count * 8, "latency_us": latency * 1e6}));
    }
    let mut bcast = Vec::new();
    for bytes in sizes(1, params.max_bytes.min(COLLECTIVE_MAX)) {
        let expect: Vec<u8> = (0..bytes).map(|i| pattern(bytes, i)).collect();
        let mut buf = if rank == 0 { expect.clone() } else { vec![0u8; bytes] };
        let reps = repetitions(params.iters, bytes);
        world.barrier();
        let start = mpi::time();
        for _ in 0..reps {
            world.process_at_rank(0).broadcast_into(&mut buf[..]);
        }
        let time = mpi::time() - start;
        elapsed += time;
        if options.corrupts(world) {
            buf[0] ^= 1;
        }
        mismatches += buf.iter().zip(&expect).filter(|(a, b)| a != b).count() as f64;
        let latency = max_over_ranks(world, time / f64::from(reps));
        bcast.push(serde_json::json!({"bytes": bytes, "latency_us": latency * 1e6}));
    }
    let wall_time_s = max_over_ranks(world, elapsed);
    let total = sum_over_ranks(world, mismatches);
    let (error_norm, verified) = share_verdict(world, total, total == 0.0);
    let peak = pingpong.iter().filter_map(|p| p["bandwidth_mb_s"].as_f64()).fold(0.0, f64::max);
    let pingpong = if size >= 2 {
        serde_json::json!({"ranks": [0, peer], "sizes": pingpong})
    } else {
        serde_json::json!({"skipped": "ping-pong needs at least 2 ranks"})
    };
    Outcome {
        wall_time_s,
        error_norm,
        tolerance: 0.0,
        verified,
        gflop_s: None,
        // The ping-pong's best one-way rate.
        bandwidth_gb_s: (peak > 0.0).then_some(peak / 1e3),
        details: serde_json::json!({"pingpong": pingpong, "allreduce": allreduce, "bcast": bcast}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_double_up_to_the_largest() {
        assert_eq!(sizes(1, 8), vec![1, 2, 4, 8]);
        assert_eq!(sizes(1, 6), vec![1, 2, 4, 6]);
        assert_eq!(sizes(8, 4), Vec::<usize>::new());
        assert_eq!(sizes(1, 4 << 20).len(), 23);
    }
}
