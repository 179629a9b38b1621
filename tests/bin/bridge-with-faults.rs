//! The bridge with one fault, for the crash test in `tests/bridge.rs`: it
//! exits (code 86) right after sbatch accepts a job, before the bridge
//! records the SLURM id or replies. The fault lives here, in the test crate,
//! through the bridge's `SubmitHook` seam; the bridge's own binary has no
//! such path. Takes the bridge's flags (`bridge --help`).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use bridge::config::{Cli, Settings};
use bridge::submission::SubmitHook;
use clap::Parser;

struct ExitAfterSbatch;

impl SubmitHook for ExitAfterSbatch {
    fn after_sbatch(&self, slurm_job_id: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        eprintln!("bridge-with-faults: exiting between sbatch (job {slurm_job_id}) and the reply");
        std::process::exit(86);
    }
}

fn main() -> ExitCode {
    let settings = match Settings::from_cli(&Cli::parse()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("bridge-with-faults: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        bridge::serve_with(listener, settings, bridge::shutdown_signal(), Arc::new(ExitAfterSbatch)).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bridge-with-faults: {err:#}");
            ExitCode::FAILURE
        }
    }
}
