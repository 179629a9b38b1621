//! Collating a kernel job's result: rank 0 of `odyssey-mpi` writes its JSON
//! into the job's working directory, which the job's user controls, so the
//! bridge (root) reads it as it would any untrusted file (`owned_file`): no
//! symbolic link, no FIFO or device, owned by the job's uid, bounded in
//! size, and parsed strictly.

use std::io::Read;

use mpi_runner::report::KernelResult;

use crate::store::jobs::{Collated, Uncollated};

/// Largest result file read; the biggest real ones (OSU tables, CG
/// residual histories) are tens of KiB.
pub const MAX_RESULT_BYTES: u64 = 4 << 20;

/// Reads and checks the result of one finished kernel job (blocking I/O).
pub fn collate(job: &Uncollated) -> Collated {
    let Some(slurm_id) = job.slurm_job_id else {
        return Collated::Missing("the job never reached SLURM".into());
    };
    let path = job.result_path.replace("%j", &slurm_id.to_string());
    let file = match crate::owned_file::open_owned(&path, job.uid, Some(MAX_RESULT_BYTES)) {
        Ok(file) => file,
        Err(crate::owned_file::OwnedFileError::NotFound { .. }) => {
            return Collated::Missing(format!(
                "odyssey-mpi wrote no result: the job ended {} before rank 0 finished",
                job.state
            ))
        }
        Err(e) => return Collated::Missing(format!("the result is unusable: {e}")),
    };
    let mut json = String::new();
    if let Err(e) = file.take(MAX_RESULT_BYTES).read_to_string(&mut json) {
        return Collated::Missing(format!("cannot read the result {path}: {e}"));
    }
    match serde_json::from_str::<KernelResult>(&json) {
        Ok(result) => {
            let error = (!result.verified).then(|| {
                format!(
                    "{} failed verification: error norm {:e} exceeds tolerance {:e}",
                    result.kernel, result.error_norm, result.tolerance
                )
            });
            // Stored compact, as parsed: nothing but the result's own fields.
            let json = serde_json::to_string(&result).unwrap_or(json);
            Collated::Result { json, verified: result.verified, error }
        }
        Err(e) => Collated::Missing(format!("the result {path} is not a kernel result: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &std::path::Path) -> Uncollated {
        Uncollated {
            id: 1,
            slurm_job_id: Some(42),
            result_path: dir.join("odyssey-result-%j.json").display().to_string(),
            uid: nix::unistd::getuid().as_raw(),
            state: crate::job_state::JobState::Failed,
        }
    }

    fn result(verified: bool) -> String {
        serde_json::json!({
            "kernel": "jacobi", "params": {"n": 8}, "ranks": 2, "nodes": ["c1"], "placement": [],
            "wall_time_s": 0.1, "gflop_s": null, "bandwidth_gb_s": 1.0, "error_norm": if verified { 0.0 } else { 1.0 },
            "tolerance": 1e-15, "verified": verified, "details": {}
        })
        .to_string()
    }

    #[test]
    fn results_are_read_checked_and_explained() {
        let dir = std::env::temp_dir().join(format!("odyssey-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("odyssey-result-42.json");
        let job = job(&dir);

        assert_eq!(
            collate(&job),
            Collated::Missing("odyssey-mpi wrote no result: the job ended FAILED before rank 0 finished".into())
        );

        std::fs::write(&file, result(true)).unwrap();
        let Collated::Result { verified: true, error: None, .. } = collate(&job) else { panic!("{:?}", collate(&job)) };

        std::fs::write(&file, result(false)).unwrap();
        let Collated::Result { verified: false, error: Some(error), .. } = collate(&job) else { panic!() };
        assert_eq!(error, "jacobi failed verification: error norm 1e0 exceeds tolerance 1e-15");

        std::fs::write(&file, "{\"kernel\": 1}").unwrap();
        let Collated::Missing(why) = collate(&job) else { panic!() };
        assert!(why.contains("is not a kernel result"), "{why}");

        // A link to a file the user could not read must not be followed.
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", &file).unwrap();
        let Collated::Missing(why) = collate(&job) else { panic!() };
        assert!(why.contains("is not a regular file"), "{why}");

        // Nor a file of someone else.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, result(true)).unwrap();
        let Collated::Missing(why) = collate(&Uncollated { uid: 12345, ..job.clone() }) else { panic!() };
        assert!(why.contains("belongs to uid"), "{why}");

        // A FIFO would block a plain open forever.
        std::fs::remove_file(&file).unwrap();
        nix::unistd::mkfifo(&file, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let Collated::Missing(why) = collate(&job) else { panic!() };
        assert!(why.contains("not a regular file"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
