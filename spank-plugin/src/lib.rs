//! `odyssey_health`: the Cloud Odyssey SPANK plugin.
//!
//! It adds `--health-report=MODE` to srun, sbatch and salloc. This release
//! registers and validates the option and passes the chosen mode to the job
//! step as `ODYSSEY_HEALTH_REPORT`; collecting and delivering per-task
//! health records comes with issue #4.
//!
//! Task callbacks run in processes forked from slurmstepd, so nothing here
//! starts a thread or an async runtime (slurm-spank's `Plugin` safety note).

use std::error::Error;

use slurm_spank::{Context, Plugin, SpankHandle, SpankOption, SPANK_PLUGIN};

/// Health reporting choices, parsed and displayed by name.
pub mod mode;

pub use mode::Mode;

// The loader checks the major and minor version against the running SLURM:
// this build targets 22.05 (cluster-notes.md, "Rust crates against these versions").
SPANK_PLUGIN!(b"odyssey_health", 0x160500, OdysseyHealth);

/// The option's name on the command line: `--health-report`.
pub const OPTION: &str = "health-report";
/// The variable a job step sees when reporting is on.
pub const ENV_MODE: &str = "ODYSSEY_HEALTH_REPORT";

/// Plugin state for one process (srun, sbatch, or one slurmstepd).
#[derive(Default)]
struct OdysseyHealth {
    /// The site default from plugstack.conf (`default=MODE`), set in `init`.
    default_mode: Mode,
    /// The mode for this job step, settled in `init_post_opt`.
    mode: Mode,
}

unsafe impl Plugin for OdysseyHealth {
    fn init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        for arg in spank.plugin_argv()? {
            match arg.split_once('=') {
                Some(("default", value)) => {
                    self.default_mode = value.parse().map_err(|e| format!("plugstack.conf argument {arg:?}: {e}"))?;
                }
                _ => return Err(format!("unknown plugstack.conf argument {arg:?} (expected default=MODE)").into()),
            }
        }
        // sbatch and salloc ignore a static option table; registering here
        // works in every context that parses options (cluster-notes.md,
        // "SPANK plugins here").
        if matches!(spank.context()?, Context::Local | Context::Remote | Context::Allocator) {
            spank.register_option(
                SpankOption::new(OPTION)
                    .takes_value("MODE")
                    .usage("Per-task health report for this job: off, summary or full (Cloud Odyssey)"),
            )?;
        }
        Ok(())
    }

    fn init_post_opt(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        self.mode = match spank.get_option_value(OPTION)? {
            // Forwarded from sbatch/salloc to an inner srun without a value,
            // the option arrives as the literal "(null)" (cluster-notes.md).
            Some(value) if value != "(null)" => value.parse().map_err(|e| format!("--{OPTION}: {e}"))?,
            _ => self.default_mode,
        };
        Ok(())
    }

    fn user_init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        if self.mode != Mode::Off {
            spank.setenv(ENV_MODE, self.mode.as_str(), true)?;
        }
        Ok(())
    }
}
