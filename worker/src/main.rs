//! `odyssey-worker`: a machine joins the Cloud Odyssey cluster as a worker
//! (a SLURM dynamic node) with a one-time token, over mutual TLS from then
//! on, reports its health, and leaves cleanly.
//!
//!   odyssey-worker join --bridge https://head:8080 --token T [--features gpu]
//!   odyssey-worker leave [--timeout 300]
//!   odyssey-worker run        (after a reboot: the same worker again)
//!   odyssey-worker status

mod agent;
mod api;
mod daemons;
mod machine;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "odyssey-worker",
    version,
    about = "Join a Cloud Odyssey cluster as a worker, report health, leave cleanly"
)]
struct Cli {
    /// Where the worker keeps its key, certificate and state (0700).
    #[arg(long, env = "ODYSSEY_WORKER_DIR", default_value = "/var/lib/odyssey-worker", global = true)]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join with a one-time token, start munged and slurmd, wait until the
    /// node is idle in SLURM, then keep running as the worker's agent.
    Join {
        /// The bridge's public URL (https://...).
        #[arg(long, env = "ODYSSEY_URL")]
        bridge: String,
        /// The join token an admin issued (`POST /v1/workers/tokens`).
        #[arg(long, env = "ODYSSEY_JOIN_TOKEN")]
        token: String,
        /// The node name; the host name if absent.
        #[arg(long)]
        name: Option<String>,
        /// Node features, comma-separated (added to the token's).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// A PEM CA that signed the bridge's certificate (else the system's).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
        /// Exit once the node is idle instead of staying as the agent.
        #[arg(long)]
        no_agent: bool,
    },
    /// Run the agent of a worker that already joined (after a restart).
    Run {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Drain the node, wait for its jobs (requeue them after --timeout),
    /// stop slurmd, remove the node from SLURM and give up the certificate.
    Leave {
        /// Seconds to wait for running jobs before requeueing them.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// What the bridge says about this worker.
    Status,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// CPUs to offer (default: all of this machine's).
    #[arg(long)]
    cpus: Option<u32>,
    /// Memory to offer in MiB (default: 90 % of this machine's).
    #[arg(long)]
    memory_mb: Option<u64>,
    /// The health plugin's spool on this machine (`%n` is the node name).
    #[arg(long, default_value = DEFAULT_HEALTH_SPOOL)]
    health_spool: String,
    /// Seconds between heartbeats.
    #[arg(long, default_value_t = 5.0)]
    heartbeat: f64,
}

/// The SPANK plugin's default spool (`spool=` in plugstack.conf).
pub const DEFAULT_HEALTH_SPOOL: &str = "/var/spool/odyssey-health/%n";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Join { bridge, token, name, features, ca_file, run, no_agent } => (|| {
            let name = match name {
                Some(name) => name,
                None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
            };
            let worker = agent::join(&cli.state_dir, &bridge, &token, &name, &features, ca_file.as_deref())?;
            let settings = settings(&run)?;
            agent::start(&worker, &settings)?;
            if !no_agent {
                agent::run(&worker, &settings)?;
            }
            Ok(())
        })(),
        Command::Run { run } => (|| {
            let worker = state::Worker::load(&cli.state_dir)?;
            let settings = settings(&run)?;
            agent::start(&worker, &settings)?;
            agent::run(&worker, &settings)
        })(),
        Command::Leave { timeout } => {
            state::Worker::load(&cli.state_dir).and_then(|w| agent::leave(&w, Duration::from_secs(timeout)))
        }
        Command::Status => state::Worker::load(&cli.state_dir).and_then(|w| {
            let me = api::Endpoint::new(&w)?.get("/worker/v1/self")?;
            println!("{}", serde_json::to_string_pretty(&me)?);
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("odyssey-worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn settings(run: &RunArgs) -> anyhow::Result<agent::Settings> {
    anyhow::ensure!(
        run.heartbeat.is_finite() && (0.5..=300.0).contains(&run.heartbeat),
        "--heartbeat must be 0.5 to 300 seconds"
    );
    Ok(agent::Settings {
        cpus: run.cpus.unwrap_or_else(machine::cpus),
        memory_mb: run.memory_mb.unwrap_or_else(|| machine::memory_mb() * 9 / 10),
        health_spool: run.health_spool.clone(),
        heartbeat: Duration::from_secs_f64(run.heartbeat),
    })
}
