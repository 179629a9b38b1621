//! What a job runs: the user's script, a command (quoted into a script),
//! or a kernel (an srun of odyssey-mpi, its parameters checked first).

use std::path::Path;

use mpi_runner::params::{KernelSpec, PartsError};

use super::limits::MAX_COMMAND_WORDS;
use super::{bad, JobRequest, SpecError};
use crate::config::Limits;

/// The kernel a request names, its parameters checked against its rank
/// count; None for a script or command job.
pub(super) fn kernel(request: &JobRequest) -> Result<Option<KernelSpec>, SpecError> {
    match &request.kernel {
        Some(name) => {
            if request.script.is_some() || request.command.is_some() {
                return Err(bad("kernel", "give one of script, command or kernel"));
            }
            if request.array.is_some() {
                return Err(bad("array", "a kernel job cannot be an array"));
            }
            let spec = KernelSpec::from_parts(name, request.params.clone()).map_err(|e| match e {
                PartsError::UnknownKernel(_) => bad("kernel", e.to_string()),
                PartsError::Params { .. } => bad("params", e.to_string()),
            })?;
            // sbatch runs one task per node unless told otherwise.
            let ranks = request.ntasks.or(request.nodes).unwrap_or(1);
            spec.validate(ranks as usize).map_err(|e| bad("params", format!("{e} (for {ranks} ranks)")))?;
            Ok(Some(spec))
        }
        None if request.params.is_some() => Err(bad("params", "params go with a kernel")),
        None => Ok(None),
    }
}

/// The batch script: the user's (checked, not yet neutralised), a command
/// quoted for sh, or a kernel's srun writing its result to `result_path`.
pub(super) fn script(
    request: &JobRequest,
    kernel: Option<&KernelSpec>,
    mpi_binary: &Path,
    result_path: Option<&str>,
    limits: &Limits,
) -> Result<String, SpecError> {
    match (&request.script, &request.command, kernel) {
        (_, _, Some(spec)) => Ok(kernel_script(spec, mpi_binary, result_path.unwrap_or_default())),
        (Some(_), Some(_), None) => Err(bad("script", "give either script or command, not both")),
        (None, None, None) => Err(bad("script", "give a script (starting with #!), a command or a kernel")),
        (Some(script), None, None) => {
            if script.len() > limits.max_script_bytes {
                return Err(bad("script", format!("is longer than {} bytes", limits.max_script_bytes)));
            }
            if !script.starts_with("#!") {
                return Err(bad("script", "must start with an interpreter line such as #!/bin/bash"));
            }
            if script.contains('\0') {
                return Err(bad("script", "contains a NUL byte"));
            }
            Ok(script.clone())
        }
        (None, Some(argv), None) => {
            if argv.is_empty() || argv.len() > MAX_COMMAND_WORDS {
                return Err(bad("command", format!("must have 1 to {MAX_COMMAND_WORDS} words")));
            }
            for (idx, word) in argv.iter().enumerate() {
                if word.contains('\0') || word.len() > limits.max_field_bytes {
                    return Err(bad(format!("command[{idx}]"), "contains a NUL byte or is too long"));
                }
            }
            let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
            Ok(format!("#!/bin/sh\nexec {}\n", words.join(" ")))
        }
    }
}

/// Single-quotes a word for sh: the only character that needs care inside
/// single quotes is the single quote itself.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The batch script of a kernel job: one srun of odyssey-mpi over the
/// allocation, writing its result where the bridge collects it. A rank that
/// dies ends the step (`--kill-on-bad-exit`), rather than leaving the others
/// waiting for it until the time limit.
fn kernel_script(spec: &KernelSpec, mpi_binary: &Path, result_path: &str) -> String {
    let (before, after) = result_path.split_once("%j").unwrap_or((result_path, ""));
    let output = format!("{}\"$SLURM_JOB_ID\"{}", shell_quote(before), shell_quote(after));
    let args: Vec<String> = spec.to_args().iter().map(|a| shell_quote(a)).collect();
    format!(
        "#!/bin/sh\n# Cloud Odyssey kernel job: {}\nexec srun --mpi=pmix --kill-on-bad-exit=1 {} --output {output} {}\n",
        spec.name(),
        shell_quote(&mpi_binary.display().to_string()),
        args.join(" ")
    )
}
