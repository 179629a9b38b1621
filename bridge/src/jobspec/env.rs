//! A job's environment variables.

use std::collections::BTreeMap;

use super::limits::MAX_ENV_NAME_CHARS;
use super::{bad, SpecError};
use crate::config::Limits;

/// Environment names a job may not set: they steer SLURM itself.
const RESERVED_ENV_PREFIXES: &[&str] = &["SLURM_", "SBATCH_", "SPANK_", "_SLURM", "SALLOC_", "SRUN_"];

/// The job's environment: names sbatch would accept and SLURM does not
/// own, values without NUL, within the configured counts and sizes.
pub(super) fn environment(
    env: Option<&BTreeMap<String, String>>,
    limits: &Limits,
) -> Result<BTreeMap<String, String>, SpecError> {
    let env = env.cloned().unwrap_or_default();
    if env.len() > limits.max_env_entries {
        return Err(bad("env", format!("has {} entries; at most {} are allowed", env.len(), limits.max_env_entries)));
    }
    for (key, value) in &env {
        let field = format!("env.{key}");
        let valid_key = key.len() <= MAX_ENV_NAME_CHARS
            && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(bad(field, "names must be letters, digits and _, not starting with a digit"));
        }
        if let Some(prefix) = RESERVED_ENV_PREFIXES.iter().find(|p| key.starts_with(**p)) {
            return Err(bad(field, format!("names starting with {prefix} are reserved for SLURM")));
        }
        if value.contains('\0') {
            return Err(bad(field, "contains a NUL byte"));
        }
        if value.len() > limits.max_field_bytes {
            return Err(bad(field, format!("is longer than {} bytes", limits.max_field_bytes)));
        }
    }
    Ok(env)
}
