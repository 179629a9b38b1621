//! The only code that talks to SLURM: its commands (sbatch, scancel,
//! squeue, sinfo, scontrol, sdiag) and libslurm (`libslurm`: submissions and
//! the queue).
//! Nothing here knows HTTP.

pub mod hostlist;
pub mod job;
pub mod libslurm;
pub mod parse;
pub mod poller;
pub mod probe;

mod as_user;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub use as_user::Identity;
pub use job::Submission;
pub use libslurm::Libslurm;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Why a SLURM command gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run {command}: {reason}")]
    Spawn { command: &'static str, reason: String, errno: Option<i32> },
    #[error("{command} did not finish within {timeout:?}")]
    Timeout { command: &'static str, timeout: Duration },
    /// SLURM answered and refused: the request is at fault.
    #[error("{stderr}")]
    Rejected { command: &'static str, stderr: String },
    /// The controller could not be reached.
    #[error("{command}: slurmctld does not answer: {stderr}")]
    Unreachable { command: &'static str, stderr: String },
    #[error("slurmctld is not up: {0}")]
    ControllerDown(String),
    #[error("{command} printed something unexpected: {output:?}")]
    Unexpected { command: &'static str, output: String },
    /// The user cannot enter the job's working directory: sbatch, running
    /// as them, could not `chdir` there.
    #[error("cannot enter {dir} as {user}: {reason}")]
    WorkingDir { dir: String, user: String, reason: String },
    /// scancel found the job already ending or ended.
    #[error("job {0} already ended")]
    AlreadyEnded(i64),
    /// The request may have reached slurmctld, but its answer did not come
    /// back (a lost connection or a timed-out read).
    #[error("{command}: slurmctld's answer was lost: {detail}")]
    NoAnswer { command: &'static str, detail: String },
}

/// How to reach the cluster: which slurm.conf, how long to wait, and where
/// the commands are.
#[derive(Debug, Clone)]
pub struct Slurm {
    conf: Option<PathBuf>,
    timeout: Duration,
    /// Absolute paths, found once. Besides sparing a PATH search per call,
    /// an absolute program lets std spawn with posix_spawn (vfork) even
    /// though sbatch gets its own PATH; a bare name there means fork(),
    /// which copies the bridge's page tables on every submission (the same
    /// reason `as_user` switches the spawning thread's ids rather than
    /// using a pre_exec hook).
    bin_dir: Option<PathBuf>,
    /// Submissions go through libslurm when it is set, through sbatch
    /// otherwise.
    libslurm: Option<Arc<Libslurm>>,
}

/// The directory on PATH that holds sbatch.
fn find_bin_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("sbatch").is_file())
}

/// What `scontrol ping` says when the controller answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// e.g. "Slurmctld(primary) at vm is UP".
    pub summary: String,
}

/// Messages that mean the controller was not reached, not that it refused.
const UNREACHABLE: &[&str] =
    &["Unable to contact slurm controller", "Socket timed out", "Connection refused", "Zero Bytes were transmitted"];

impl Slurm {
    pub fn new(conf: Option<PathBuf>, timeout: Duration) -> Self {
        Slurm { conf, timeout, bin_dir: find_bin_dir(), libslurm: None }
    }

    /// The same, submitting through `libslurm`.
    pub fn with_libslurm(self, libslurm: Arc<Libslurm>) -> Self {
        Slurm { libslurm: Some(libslurm), ..self }
    }

    /// "libslurm" or "sbatch": how submissions reach SLURM.
    pub fn submit_path(&self) -> &'static str {
        match self.libslurm {
            Some(_) => "libslurm",
            None => "sbatch",
        }
    }

    /// Submits (or, `dry_run`, asks when the job would start) with the
    /// submission's user's authority, through libslurm or sbatch.
    pub async fn submit(&self, submission: &Submission, dry_run: bool) -> Result<SbatchOutcome, SlurmError> {
        match &self.libslurm {
            Some(libslurm) => libslurm.submit(submission, dry_run, self.timeout).await,
            None => self.sbatch(submission, dry_run).await,
        }
    }

    fn command(&self, program: &'static str) -> Command {
        let mut command = match &self.bin_dir {
            Some(dir) => Command::new(dir.join(program)),
            None => Command::new(program),
        };
        if let Some(conf) = &self.conf {
            command.env("SLURM_CONF", conf);
        }
        // Epoch seconds in every time field (squeue, scontrol).
        command.env("SLURM_TIME_FORMAT", "%s");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        command
    }

    /// Runs a command to completion within the timeout, as root or as a
    /// user (`as_user`); stdout on success.
    async fn run(
        &self,
        program: &'static str,
        mut command: Command,
        stdin: Option<&str>,
        as_user: Option<AsUser<'_>>,
    ) -> Result<(String, String), SlurmError> {
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let spawned = match as_user {
            Some(AsUser { identity, dir, env_file }) => as_user::spawn_as(&mut command, identity, dir, env_file),
            None => as_user::spawn(&mut command),
        };
        let mut child = spawned.map_err(|e| SlurmError::Spawn {
            command: program,
            reason: e.to_string(),
            errno: e.raw_os_error(),
        })?;
        let work = async {
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                pipe.write_all(text.as_bytes()).await?;
                drop(pipe);
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| SlurmError::Timeout { command: program, timeout: self.timeout })?
            .map_err(|e| SlurmError::Spawn { command: program, reason: e.to_string(), errno: None })?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            let message = clean_stderr(&stderr, &stdout);
            if UNREACHABLE.iter().any(|m| stderr.contains(m)) {
                return Err(SlurmError::Unreachable { command: program, stderr: message });
            }
            return Err(SlurmError::Rejected { command: program, stderr: message });
        }
        Ok((stdout, stderr))
    }

    async fn output(&self, program: &'static str, args: &[&str]) -> Result<String, SlurmError> {
        let mut command = self.command(program);
        command.args(args);
        self.run(program, command, None, None).await.map(|(stdout, _)| stdout)
    }

    /// Asks the controller whether it is up (`scontrol ping`).
    pub async fn ping(&self) -> Result<Controller, SlurmError> {
        let stdout = match self.output("scontrol", &["ping"]).await {
            Ok(stdout) => stdout,
            // scontrol ping exits 1 when the controller is down, with its
            // verdict on stdout.
            Err(SlurmError::Rejected { stderr, .. }) => stderr,
            Err(e) => return Err(e),
        };
        parse::ping(&stdout)
    }

    /// `sbatch --parsable` (or `--test-only` when `dry_run`) run as the
    /// submission's user: the SLURM job id, or for a dry run SLURM's
    /// estimate line.
    ///
    /// sbatch gets no `--uid`: it runs with the user's uid, gid and groups
    /// (`as_user`), so munge vouches for the user, slurmctld refuses
    /// root-only options, and every file sbatch opens it opens with the
    /// user's rights. `--ignore-pbs` stops `#PBS` parsing; `#SBATCH` lines
    /// were neutralised before (`jobspec::directives`).
    async fn sbatch(&self, submission: &Submission, dry_run: bool) -> Result<SbatchOutcome, SlurmError> {
        let identity = &submission.identity;
        let mut command = self.command("sbatch");
        command
            .env_clear()
            .env("PATH", job::JOB_PATH)
            .env("HOME", &identity.home)
            .env("USER", &identity.name)
            .env("LOGNAME", &identity.name)
            .env("SLURM_TIME_FORMAT", "%s")
            .arg("--parsable")
            .arg("--ignore-pbs")
            .arg(format!("--chdir={}", submission.working_dir.display()))
            .args(submission.options.sbatch_args());
        if let Some(conf) = &self.conf {
            command.env("SLURM_CONF", conf);
        }
        // The job's whole environment, so sbatch's own never leaks into it.
        let env_file = as_user::env_memfd(&submission.environment()).map_err(|e| SlurmError::Spawn {
            command: "sbatch",
            reason: format!("job environment: {e}"),
            errno: None,
        })?;
        // sbatch takes a number from 3 up as an open descriptor.
        command.arg(format!("--export-file={}", std::os::fd::AsRawFd::as_raw_fd(&env_file)));
        let env_file = Some(env_file);
        if dry_run {
            command.arg("--test-only");
        }
        let as_user = AsUser { identity, dir: Some(&submission.working_dir), env_file: env_file.as_ref() };
        let result = self.run("sbatch", command, Some(&submission.script), Some(as_user)).await;
        drop(env_file);
        let (stdout, stderr) = result.map_err(|e| match e {
            // The child's chdir (as the user) is the one step of the spawn
            // that fails with these: sbatch itself was found at start-up.
            SlurmError::Spawn { reason, errno: Some(errno), .. } if as_user::is_chdir_errno(errno) => {
                SlurmError::WorkingDir {
                    dir: submission.working_dir.display().to_string(),
                    user: identity.name.clone(),
                    reason,
                }
            }
            other => other,
        })?;
        if dry_run {
            // "sbatch: Job 12 to start at ... using 2 processors on nodes c1 in partition debug"
            let line = stderr.lines().rfind(|l| l.contains("to start at")).unwrap_or(stderr.as_str());
            return Ok(SbatchOutcome::DryRun(line.trim_start_matches("sbatch: ").to_owned()));
        }
        parse::parsable_job_id(&stdout)
            .map(SbatchOutcome::Submitted)
            .ok_or(SlurmError::Unexpected { command: "sbatch", output: stdout })
    }

    /// `scancel --user=<owner> <id>`, run as the job's owner: SLURM signals
    /// every step and records CANCELLED, and only if the job with that id is
    /// still the owner's (an id SLURM reused for someone else's job is
    /// refused by slurmctld, not by the bridge's bookkeeping).
    pub async fn scancel(&self, slurm_job_id: i64, owner: &Identity) -> Result<(), SlurmError> {
        let mut command = self.command("scancel");
        command.arg(format!("--user={}", owner.name)).arg(slurm_job_id.to_string());
        let as_user = AsUser { identity: owner, dir: None, env_file: None };
        match self.run("scancel", command, None, Some(as_user)).await {
            Ok(_) => Ok(()),
            // The job ended between the poll and the scancel.
            Err(SlurmError::Rejected { stderr, .. }) if stderr.contains("already completing or completed") => {
                Err(SlurmError::AlreadyEnded(slurm_job_id))
            }
            Err(e) => Err(e),
        }
    }

    /// Every job slurmctld still holds, in the compact form the poller
    /// reads: through libslurm where it is loaded (no process, no text, and
    /// "no change" when nothing changed), else `squeue`.
    pub async fn squeue_all(&self) -> Result<parse::Queue, SlurmError> {
        if let Some(libslurm) = &self.libslurm {
            return libslurm.load_jobs(self.timeout).await;
        }
        self.squeue_all_by_command().await
    }

    /// `squeue_all` through the squeue command, whatever the submission path.
    pub async fn squeue_all_by_command(&self) -> Result<parse::Queue, SlurmError> {
        let stdout = self.output("squeue", &["-h", "-t", "all", "-O", parse::SQUEUE_FORMAT]).await?;
        parse::squeue(&stdout).map(std::sync::Arc::new)
    }

    /// `(slurm job id, comment)` of every job slurmctld holds: finds a job by
    /// the tag the bridge put into its comment.
    pub async fn squeue_comments(&self) -> Result<Vec<(i64, String)>, SlurmError> {
        let stdout = self.output("squeue", &["-h", "-t", "all", "-O", "JobID:|,Comment:|"]).await?;
        Ok(parse::comments(&stdout))
    }

    /// `scontrol show job -o <id>`; `None` once SLURM has forgotten the job.
    pub async fn show_job(&self, slurm_job_id: i64) -> Result<Option<parse::JobDetail>, SlurmError> {
        match self.output("scontrol", &["show", "job", "-o", &slurm_job_id.to_string()]).await {
            Ok(stdout) => Ok(Some(parse::show_job(&stdout))),
            Err(SlurmError::Rejected { stderr, .. }) if stderr.contains("Invalid job id") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The nodes SLURM gave one job, `None` once SLURM has forgotten it or
    /// while it has none: through libslurm where it is loaded (one small
    /// RPC, no process), else `scontrol show job`.
    pub async fn job_nodes(&self, slurm_job_id: i64) -> Result<Option<String>, SlurmError> {
        if let Some(libslurm) = &self.libslurm {
            let Ok(job) = u32::try_from(slurm_job_id) else { return Ok(None) };
            return Ok(libslurm.load_job(job, self.timeout).await?.and_then(|entry| entry.nodes));
        }
        Ok(self.show_job(slurm_job_id).await?.and_then(|detail| detail.nodes))
    }

    /// How long slurmctld keeps a finished job (`MinJobAge`): a job that
    /// reached SLURM less than this long ago is still listed by squeue.
    pub async fn min_job_age(&self) -> Result<Duration, SlurmError> {
        let stdout = self.output("scontrol", &["show", "config"]).await?;
        parse::config_seconds(&stdout, "MinJobAge")
            .map(Duration::from_secs)
            .ok_or(SlurmError::Unexpected { command: "scontrol", output: "no MinJobAge in show config".into() })
    }

    /// The scheduler's statistics (`sdiag`).
    pub async fn sdiag(&self) -> Result<parse::SchedulerStats, SlurmError> {
        Ok(parse::sdiag(&self.output("sdiag", &[]).await?))
    }

    /// Every partition (`scontrol show partition -o`).
    pub async fn partitions(&self) -> Result<Vec<parse::Partition>, SlurmError> {
        Ok(parse::partitions(&self.output("scontrol", &["show", "partition", "-o"]).await?))
    }

    /// Sets the priority of pending jobs, as the operator
    /// (`scontrol update JobId=<a,b,...> Priority=<p>`): one command for
    /// every job that gets the same value.
    pub async fn set_priority(&self, slurm_job_ids: &[i64], priority: u32) -> Result<(), SlurmError> {
        let ids: Vec<String> = slurm_job_ids.iter().map(i64::to_string).collect();
        let job = format!("JobId={}", ids.join(","));
        let priority = format!("Priority={priority}");
        match self.output("scontrol", &["update", &job, &priority]).await {
            Ok(_) => Ok(()),
            // A job that started or ended since the poll keeps its place.
            Err(SlurmError::Rejected { stderr, .. })
                if stderr.contains("Job is no longer pending")
                    || stderr.contains("already completing or completed") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Drains a node with a reason (`scontrol update NodeName=n State=DRAIN`):
    /// running jobs finish, no new ones start there.
    pub async fn drain_node(&self, node: &NodeName, reason: &str) -> Result<(), SlurmError> {
        let node = format!("NodeName={}", node.as_str());
        let reason = format!("Reason={reason}");
        self.output("scontrol", &["update", &node, "State=DRAIN", &reason]).await.map(|_| ())
    }

    /// Resumes a drained node (`State=RESUME`).
    pub async fn resume_node(&self, node: &NodeName) -> Result<(), SlurmError> {
        let node = format!("NodeName={}", node.as_str());
        self.output("scontrol", &["update", &node, "State=RESUME"]).await.map(|_| ())
    }

    /// What a machine needs to join as a dynamic node (`scontrol show config`).
    pub async fn join_config(&self) -> Result<parse::JoinConfig, SlurmError> {
        let stdout = self.output("scontrol", &["show", "config"]).await?;
        parse::join_config(&stdout).ok_or(SlurmError::Unexpected {
            command: "scontrol",
            output: "show config names no SlurmctldHost, SlurmctldPort or SlurmdSpoolDir".into(),
        })
    }

    /// Removes a dynamic node (`scontrol delete NodeName=`); SLURM refuses
    /// while jobs run there. A node SLURM does not know is already gone.
    pub async fn delete_node(&self, node: &NodeName) -> Result<(), SlurmError> {
        let arg = format!("NodeName={}", node.as_str());
        match self.output("scontrol", &["delete", &arg]).await {
            Ok(_) => Ok(()),
            Err(SlurmError::Rejected { stderr, .. }) if stderr.contains("Invalid node name") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// SLURM ids of the jobs running (or completing) on a node.
    pub async fn jobs_on(&self, node: &NodeName) -> Result<Vec<i64>, SlurmError> {
        let stdout = self
            .output("squeue", &["-h", "-w", node.as_str(), "-t", "RUNNING,COMPLETING,CONFIGURING", "-o", "%A"])
            .await?;
        Ok(stdout.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Requeues jobs (`scontrol requeue`): they run again elsewhere, under
    /// the same id. The bridge submits with `--no-requeue` (its own retries
    /// decide what runs again), so the jobs are made requeueable first: a
    /// leaving worker's jobs did nothing wrong. A job that ended meanwhile
    /// is not an error.
    pub async fn requeue(&self, slurm_job_ids: &[i64]) -> Result<(), SlurmError> {
        if slurm_job_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = slurm_job_ids.iter().map(i64::to_string).collect();
        let job = format!("JobId={}", ids.join(","));
        let _ = self.output("scontrol", &["update", &job, "Requeue=1"]).await;
        match self.output("scontrol", &["requeue", &ids.join(",")]).await {
            Ok(_) => Ok(()),
            Err(SlurmError::Rejected { stderr, .. })
                if stderr.contains("already completing or completed") || stderr.contains("Invalid job id") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Every node, from sinfo.
    pub async fn sinfo_nodes(&self) -> Result<Vec<parse::NodeInfo>, SlurmError> {
        let stdout = self.output("sinfo", &["-h", "-N", "-O", parse::SINFO_FORMAT]).await?;
        Ok(parse::sinfo(&stdout))
    }
}

/// A node's name as SLURM knows it: letters, digits, '-', '_' and '.', so
/// it is one argument and never a host list or an option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(name: &str) -> Option<NodeName> {
        let shaped = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('-');
        shaped.then(|| NodeName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a command runs as, where, and the one descriptor it inherits.
struct AsUser<'a> {
    identity: &'a Identity,
    dir: Option<&'a std::path::Path>,
    env_file: Option<&'a std::os::fd::OwnedFd>,
}

/// What sbatch answered.
#[derive(Debug, Clone, PartialEq)]
pub enum SbatchOutcome {
    Submitted(i64),
    DryRun(String),
}

/// SLURM's own words, without the "sbatch: error: " prefixes, on one line.
pub(super) fn clean_stderr(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            let l = l.split_once(": error: ").map_or(l, |(_, rest)| rest);
            l.strip_prefix("error: ").unwrap_or(l)
        })
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("; ")
}
