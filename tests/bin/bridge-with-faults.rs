//! The bridge with one fault, for the crash tests in `tests/bridge.rs`: it
//! exits (code 86) in the middle of a submission, where `ODYSSEY_FAULT`
//! says: `after-sbatch` (SLURM accepted the job; the bridge has not recorded
//! its id or replied) or `before-sbatch` (the job is recorded; sbatch never
//! ran). The fault lives here, in the test crate, through the bridge's
//! `SubmitHook` seam; the bridge's own binary has no such path. Takes the
//! bridge's flags (`bridge --help`).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use bridge::config::{Cli, Settings};
use bridge::submission::SubmitHook;
use clap::Parser;

#[derive(PartialEq)]
enum Fault {
    AfterSbatch,
    BeforeSbatch,
}

impl SubmitHook for Fault {
    fn after_sbatch(&self, slurm_job_id: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if *self == Fault::AfterSbatch {
            eprintln!("bridge-with-faults: exiting between sbatch (job {slurm_job_id}) and the reply");
            std::process::exit(86);
        }
        Box::pin(std::future::ready(()))
    }

    fn before_sbatch(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        if *self == Fault::BeforeSbatch {
            eprintln!("bridge-with-faults: exiting between recording a job and its sbatch");
            std::process::exit(86);
        }
        Box::pin(std::future::ready(()))
    }
}

fn main() -> ExitCode {
    let fault = match std::env::var("ODYSSEY_FAULT").as_deref() {
        Ok("after-sbatch") => Fault::AfterSbatch,
        Ok("before-sbatch") => Fault::BeforeSbatch,
        other => {
            eprintln!("bridge-with-faults: set ODYSSEY_FAULT to after-sbatch or before-sbatch, not {other:?}");
            return ExitCode::from(2);
        }
    };
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
        bridge::serve_with(listener, settings, bridge::shutdown_signal(), Arc::new(fault)).await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bridge-with-faults: {err:#}");
            ExitCode::FAILURE
        }
    }
}
