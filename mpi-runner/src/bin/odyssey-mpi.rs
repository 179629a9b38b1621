//! `odyssey-mpi <kernel> [params]`: run a verified kernel across MPI ranks.
//!
//! Parameters are checked before MPI starts, so a bad value costs one line on
//! stderr and exit code 2, not a cluster allocation's worth of ranks.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use mpi::traits::*;
use mpi_runner::kernels::allreduce;
use mpi_runner::report::{KernelResult, Placement};

/// Longest node name we carry; MPI_MAX_PROCESSOR_NAME is 256 in OpenMPI.
const NAME_LEN: usize = 256;

#[derive(Parser)]
#[command(name = "odyssey-mpi", version, about = "Verified MPI kernels for Cloud Odyssey")]
struct Cli {
    /// Write the JSON result here (rank 0 only); the directory must exist.
    #[arg(long, global = true)]
    output: Option<PathBuf>,
    /// Print the JSON result on stdout instead of the human-readable report.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    kernel: Kernel,
}

#[derive(Subcommand)]
enum Kernel {
    /// Element-wise sum of a vector over all ranks, checked against a serial sum.
    Allreduce {
        /// Elements per vector.
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// Repetitions, for timing.
        #[arg(long, default_value_t = 10)]
        iters: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Kernel::Allreduce { n, iters } = cli.kernel;
    let params = allreduce::Params { n, iters };
    if let Err(msg) = params.validate() {
        eprintln!("odyssey-mpi: {msg}");
        return ExitCode::from(2);
    }
    if let Some(dir) = cli.output.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            eprintln!("odyssey-mpi: output directory {} does not exist", dir.display());
            return ExitCode::from(2);
        }
    }
    match run(&cli, params) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("odyssey-mpi: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the kernel; `Ok(false)` when the result failed verification.
fn run(cli: &Cli, params: allreduce::Params) -> anyhow::Result<bool> {
    let Some(universe) = mpi::initialize() else { bail!("MPI was already initialised") };
    let world = universe.world();
    let placement = gather_placement(&world)?;
    let outcome = allreduce::run(&world, params);
    let verified = outcome.error_norm <= allreduce::tolerance(world.size(), params.n);
    if world.rank() != 0 {
        return Ok(verified);
    }
    let placement = placement.expect("rank 0 gathers the placement");
    let bytes = (params.n * std::mem::size_of::<f64>()) as f64 * f64::from(params.iters);
    let result = KernelResult {
        kernel: "allreduce",
        params: serde_json::to_value(params)?,
        ranks: world.size(),
        nodes: KernelResult::nodes_of(&placement),
        placement,
        wall_time_s: outcome.wall_time_s,
        bandwidth_gb_s: if outcome.wall_time_s > 0.0 { bytes / outcome.wall_time_s / 1e9 } else { 0.0 },
        error_norm: outcome.error_norm,
        verified,
    };
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &cli.output {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("write {}", path.display()))?;
    }
    if cli.json {
        println!("{json}");
    } else {
        for p in &result.placement {
            println!("rank {} of {} on {} (pid {})", p.rank, result.ranks, p.node, p.pid);
        }
        println!(
            "allreduce: n={} iters={} ranks={} nodes={} time={:.6}s error={:.3e} {}",
            params.n,
            params.iters,
            result.ranks,
            result.nodes.join(","),
            result.wall_time_s,
            result.error_norm,
            if verified { "VERIFIED" } else { "FAILED VERIFICATION" }
        );
    }
    if !verified {
        eprintln!("odyssey-mpi: allreduce result differs from the serial sum by {:e}", result.error_norm);
    }
    Ok(verified)
}

/// Gathers every rank's node name and pid on rank 0, in rank order.
fn gather_placement<C: Communicator>(world: &C) -> anyhow::Result<Option<Vec<Placement>>> {
    let name = mpi::environment::processor_name().context("processor name is not UTF-8")?;
    let mut name_buf = [0u8; NAME_LEN];
    let len = name.len().min(NAME_LEN);
    name_buf[..len].copy_from_slice(&name.as_bytes()[..len]);
    let pid = std::process::id();
    let root = world.process_at_rank(0);
    if world.rank() != 0 {
        root.gather_into(&name_buf[..]);
        root.gather_into(&pid);
        return Ok(None);
    }
    let size = usize::try_from(world.size())?;
    let mut names = vec![0u8; NAME_LEN * size];
    let mut pids = vec![0u32; size];
    root.gather_into_root(&name_buf[..], &mut names[..]);
    root.gather_into_root(&pid, &mut pids[..]);
    let placement = names
        .chunks(NAME_LEN)
        .zip(pids)
        .enumerate()
        .map(|(rank, (raw, pid))| {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
            Placement { rank: rank as i32, node: String::from_utf8_lossy(&raw[..end]).into_owned(), pid }
        })
        .collect();
    Ok(Some(placement))
}
