//! Where a job runs and writes: its working directory and output files.

use std::path::{Path, PathBuf};

use super::checks::path;
use super::{JobRequest, SpecError};
use crate::config::Limits;

/// The working directory (default: the user's home) and the stdout and
/// stderr patterns, absolute, SLURM's %-patterns still in.
pub(super) struct Places {
    pub working_dir: PathBuf,
    pub stdout: String,
    pub stderr: String,
}

pub(super) fn places(request: &JobRequest, home: &Path, limits: &Limits) -> Result<Places, SpecError> {
    let working_dir = match &request.working_dir {
        Some(dir) => {
            path("working_dir", dir, limits)?;
            PathBuf::from(dir)
        }
        None => home.to_path_buf(),
    };
    let default_out = if request.array.is_some() { "slurm-%A_%a.out" } else { "slurm-%j.out" };
    let stdout = output_path("stdout", request.stdout.as_deref(), &working_dir, default_out, limits)?;
    let stderr = match &request.stderr {
        Some(_) => output_path("stderr", request.stderr.as_deref(), &working_dir, default_out, limits)?,
        None => stdout.clone(),
    };
    Ok(Places { working_dir, stdout, stderr })
}

fn output_path(
    field: &str,
    value: Option<&str>,
    working_dir: &Path,
    default: &str,
    limits: &Limits,
) -> Result<String, SpecError> {
    match value {
        Some(p) => {
            path(field, p, limits)?;
            Ok(p.to_owned())
        }
        None => Ok(working_dir.join(default).display().to_string()),
    }
}

/// An output path with SLURM's patterns filled in for one (non-array) job.
pub fn resolve_output(pattern: &str, slurm_job_id: i64, name: &str, user: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'j' | 'A' => out.push_str(&slurm_job_id.to_string()),
            'x' => out.push_str(name),
            'u' => out.push_str(user),
            '%' => out.push('%'),
            // %N, %n, %t, %s, %a... differ per node, task or array index:
            // no single file to serve.
            _ => return None,
        }
    }
    Some(out)
}
