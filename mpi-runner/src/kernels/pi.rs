//! Monte Carlo pi: each rank throws its share of points into the unit square
//! from its own reproducible random stream and counts those inside the
//! quarter circle; one reduction sums the counts.
//!
//! The stream of rank r is SplitMix64 (Steele, Lea, Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014) started at a state mixed from
//! (seed, r). It is written out here, not taken from a crate, because the C
//! twin in `mpi-runner/c/pi.c` must draw the very same numbers.
//!
//! Verification is twofold: rank 0 replays every rank's stream serially and
//! must count exactly the same hits, and the estimate must lie within five
//! standard errors of pi.

use mpi::collective::SystemOperation;
use mpi::traits::*;

use super::{giga_rate, max_over_ranks, share_verdict, Outcome, RunOptions};
use crate::params::PiParams as Params;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rank `rank`'s random stream.
#[derive(Debug, Clone)]
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64, rank: u64) -> Stream {
        Stream(mix(seed ^ mix(rank.wrapping_add(1).wrapping_mul(GAMMA))))
    }

    /// A uniform double in [0, 1) from the top 53 bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(GAMMA);
        // Below 2^53, so the signed conversion (one instruction) is exact.
        ((mix(self.0) >> 11) as i64) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Samples rank `rank` of `ranks` draws: an equal share, the remainder to
/// the lowest ranks.
pub fn share(samples: u64, ranks: u64, rank: u64) -> u64 {
    samples / ranks + u64::from(rank < samples % ranks)
}

/// Points of `count` draws from `stream` inside the quarter circle.
pub fn hits(stream: &mut Stream, count: u64) -> u64 {
    let mut inside = 0;
    for _ in 0..count {
        // An empty asm statement keeps LLVM from vectorising this loop:
        // baseline x86-64 (SSE2) has no 64-bit vector multiply, and the
        // emulated one is half as fast as scalar `imul` (the C twin, built
        // by gcc, stays scalar).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the statement is empty; it reads and writes nothing.
        unsafe {
            std::arch::asm!("", options(nomem, nostack, preserves_flags))
        };
        #[allow(unused_mut)] // mutated by the asm statement on x86-64
        let mut x = stream.next_f64();
        // Another empty statement holds x in a register of its own: LLVM
        // otherwise packs x and y into one SSE2 register to square them,
        // and the shuffles cost more than the multiply they save (issue
        // #16: 5 % behind gcc's scalar loop).
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the statement is empty; x stays as it is.
        unsafe {
            std::arch::asm!("/* {0} */", inout(xmm_reg) x, options(pure, nomem, nostack, preserves_flags))
        };
        let y = stream.next_f64();
        inside += u64::from(x * x + y * y < 1.0);
    }
    inside
}

/// The serial reference: every rank's stream replayed in one process.
pub fn serial(params: Params, ranks: u64) -> u64 {
    (0..ranks).map(|r| hits(&mut Stream::new(params.seed, r), share(params.samples, ranks, r))).sum()
}

/// The estimate and its standard error for `inside` hits of `samples`.
pub fn estimate(inside: u64, samples: u64) -> (f64, f64) {
    let p = inside as f64 / samples as f64;
    (4.0 * p, 4.0 * (p * (1.0 - p) / samples as f64).sqrt())
}

pub fn run<C: Communicator>(world: &C, params: Params, options: RunOptions) -> Outcome {
    let (rank, ranks) = (world.rank() as u64, world.size() as u64);
    world.barrier();
    let start = mpi::time();
    let mut local = hits(&mut Stream::new(params.seed, rank), share(params.samples, ranks, rank));
    if options.corrupts(world) {
        local += 1;
    }
    let mut inside = 0u64;
    world.all_reduce_into(&local, &mut inside, SystemOperation::sum());
    let wall_time_s = max_over_ranks(world, mpi::time() - start);
    let (pi, std_error) = estimate(inside, params.samples);
    let sigmas = (pi - std::f64::consts::PI).abs() / std_error;
    let (error_norm, verified) = if world.rank() == 0 {
        let reference = serial(params, ranks);
        let differs = inside.abs_diff(reference) as f64;
        share_verdict(world, differs, differs == 0.0 && sigmas <= 5.0)
    } else {
        share_verdict(world, 0.0, false)
    };
    Outcome {
        wall_time_s,
        error_norm,
        tolerance: 0.0,
        verified,
        // Two draws, two multiplies, an add and a compare per sample.
        gflop_s: giga_rate(params.samples as f64 * 4.0, wall_time_s),
        bandwidth_gb_s: None,
        details: serde_json::json!({
            "pi": pi,
            "inside": inside,
            "std_error": std_error,
            "deviation_sigmas": sigmas,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for ranks in 1..8 {
            assert_eq!((0..ranks).map(|r| share(1001, ranks, r)).sum::<u64>(), 1001);
        }
    }

    #[test]
    fn streams_differ_by_rank_and_repeat_by_seed() {
        let draw = |seed, rank| (0..4).map(|_| Stream::new(seed, rank).next_f64()).collect::<Vec<_>>();
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(Stream::new(1, 0).next_f64(), Stream::new(1, 1).next_f64());
        assert_ne!(Stream::new(1, 0).next_f64(), Stream::new(2, 0).next_f64());
    }

    #[test]
    fn the_estimate_is_near_pi() {
        let params = Params { samples: 1_000_000, seed: 7 };
        let (pi, err) = estimate(serial(params, 3), params.samples);
        assert!((pi - std::f64::consts::PI).abs() < 5.0 * err, "{pi} +- {err}");
    }
}
