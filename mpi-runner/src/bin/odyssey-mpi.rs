//! `odyssey-mpi <kernel> [params]`: run a verified kernel across MPI ranks.
//!
//! Parameters are checked before MPI starts (against the rank count SLURM or
//! the MPI launcher announces, and the memory this node has), so a bad value
//! costs one line on stderr and exit code 2, not a cluster allocation's worth
//! of ranks. Exit code 1 means the kernel ran and failed verification.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use mpi::traits::*;
use mpi_runner::kernels;
use mpi_runner::params::KernelSpec;
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
    /// Corrupt one value of the answer after computing it, so verification
    /// fails: for testing the failure path only.
    #[arg(long, global = true, hide = true)]
    inject_error: bool,
    #[command(subcommand)]
    kernel: KernelSpec,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(msg) = preflight(&cli) {
        // Every rank finds the same fault; one line says it.
        if announced_rank() == 0 {
            eprintln!("odyssey-mpi: {msg}");
        }
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(Some(true)) => ExitCode::SUCCESS,
        Ok(Some(false)) => ExitCode::from(1),
        Ok(None) => ExitCode::from(2),
        Err(err) => {
            eprintln!("odyssey-mpi: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// The first of `vars` set to a number.
fn from_env(vars: &[&str]) -> Option<usize> {
    vars.iter().find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// The rank count the launcher announces, before MPI starts: srun sets
/// SLURM_STEP_NUM_TASKS, mpirun OMPI_COMM_WORLD_SIZE; alone, one rank.
fn announced_ranks() -> usize {
    from_env(&["SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"]).unwrap_or(1)
}

/// This process's rank as the launcher announces it; alone, 0.
fn announced_rank() -> usize {
    from_env(&["SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"]).unwrap_or(0)
}

/// MemAvailable of this node, in bytes.
fn mem_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Everything that can be checked before MPI_Init.
fn preflight(cli: &Cli) -> Result<(), String> {
    let ranks = announced_ranks();
    cli.kernel.validate(ranks)?;
    if let Some(available) = mem_available() {
        cli.kernel.fits_in(ranks, available)?;
    }
    if let Some(dir) = cli.output.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(format!("output directory {} does not exist", dir.display()));
        }
    }
    Ok(())
}

/// Runs the kernel: whether its result was verified, or `None` when the
/// parameters do not fit the communicator (rank 0 said why).
fn run(cli: &Cli) -> anyhow::Result<Option<bool>> {
    let Some(universe) = mpi::initialize() else { bail!("MPI was already initialised") };
    let world = universe.world();
    let is_root = world.rank() == 0;
    // The launcher's count was a hint; the communicator's is the truth.
    if let Err(msg) = cli.kernel.validate(world.size() as usize) {
        if is_root {
            eprintln!("odyssey-mpi: {msg}");
        }
        return Ok(None);
    }
    let placement = gather_placement(&world)?;
    let human = is_root && !cli.json;
    if human {
        for p in placement.as_deref().unwrap_or_default() {
            println!("rank {} of {} on {} (pid {})", p.rank, world.size(), p.node, p.pid);
        }
        let _ = std::io::stdout().flush();
    }
    let progress = |line: &str| {
        if human {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
    };
    let options = kernels::RunOptions { inject_error: cli.inject_error };
    let outcome = kernels::run(&world, &cli.kernel, options, &progress);
    if !is_root {
        return Ok(Some(outcome.verified));
    }
    let placement = placement.expect("rank 0 gathers the placement");
    let result = KernelResult {
        kernel: cli.kernel.name().to_owned(),
        params: cli.kernel.params_json(),
        ranks: world.size(),
        nodes: KernelResult::nodes_of(&placement),
        placement,
        wall_time_s: outcome.wall_time_s,
        gflop_s: outcome.gflop_s,
        bandwidth_gb_s: outcome.bandwidth_gb_s,
        error_norm: outcome.error_norm,
        tolerance: outcome.tolerance,
        verified: outcome.verified,
        details: outcome.details,
    };
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &cli.output {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("write {}", path.display()))?;
    }
    if cli.json {
        println!("{json}");
    } else {
        let rate = match (result.gflop_s, result.bandwidth_gb_s) {
            (_, Some(gb)) => format!(" {gb:.3} GB/s"),
            (Some(gf), None) => format!(" {gf:.3} GFLOP/s"),
            (None, None) => String::new(),
        };
        println!(
            "{}: ranks={} nodes={} time={:.6}s{rate} error={:.3e} (tolerance {:.1e}) {}",
            result.kernel,
            result.ranks,
            result.nodes.join(","),
            result.wall_time_s,
            result.error_norm,
            result.tolerance,
            if result.verified { "VERIFIED" } else { "FAILED VERIFICATION" }
        );
    }
    if !result.verified {
        eprintln!(
            "odyssey-mpi: {} failed verification: error {:e} exceeds tolerance {:e}",
            result.kernel, result.error_norm, result.tolerance
        );
    }
    Ok(Some(result.verified))
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
