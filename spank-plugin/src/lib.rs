//! `odyssey_health`: the Cloud Odyssey SPANK plugin.
//!
//! It adds `--health-report[=MODE]` to srun, sbatch and salloc. With a mode
//! other than `off`, each step daemon writes one record per task (exit code
//! or signal, wall time) and one per node (load, MemAvailable, free space of
//! the working directory, step start and end) to a local spool, and the
//! node's pending records go to the bridge (from the node's agent:
//! `odyssey-health-flush --watch` or a joined worker's `odyssey-worker`; else
//! from a flush the step daemon starts, or the step daemon itself); what
//! cannot be sent is made durable.
//! The step sees the mode as `ODYSSEY_HEALTH_REPORT`.
//!
//! Task callbacks run in processes forked from slurmstepd, so nothing here
//! starts a thread or an async runtime (slurm-spank's `Plugin` safety note).

use std::collections::HashMap;
use std::error::Error;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use slurm_spank::{spank_log_error, spank_log_info, Context, Plugin, SpankHandle};

/// Whether a node's delivery agent runs (its lock).
pub mod agent;
/// Sending spooled records to the bridge (also `odyssey-health-flush`).
pub mod deliver;
/// The plugin's symbols for SLURM's loader, and the option's registration.
mod hooks;
/// Health reporting choices, parsed and displayed by name.
pub mod mode;
/// Task and node records, and what this node can tell about itself.
pub mod report;
/// The local spool: JSON lines, one file per job step.
pub mod spool;

pub use mode::Mode;
use report::{Known, NodeRecord, Outcome, Record, TaskRecord, NO_PER_TASK_SOURCE};

/// Where records go unless plugstack.conf says `spool=...`; `%n` is the node.
pub const DEFAULT_SPOOL: &str = "/var/spool/odyssey-health/%n";

/// The option's name on the command line: `--health-report`.
pub use odyssey_health_wire::OPTION;
/// The variable a job step sees when reporting is on.
pub const ENV_MODE: &str = "ODYSSEY_HEALTH_REPORT";

/// Plugin state for one process (srun, sbatch, or one slurmstepd). In a
/// step daemon it lives from `init` to `exit` of one job step.
#[derive(Default)]
struct OdysseyHealth {
    /// The site default from plugstack.conf (`default=MODE`), set in `init`.
    default_mode: Mode,
    /// The spool directory pattern (`spool=...`), set in `init`.
    spool: Option<String>,
    /// The bridge's `/v1/health-reports` (`url=...`); no delivery without it.
    url: Option<String>,
    /// File with the cluster's shared secret (`secret=...`), read when sending.
    secret: Option<PathBuf>,
    /// Per-request timeout (`timeout_ms=...`, default 1000).
    timeout_ms: Option<u64>,
    /// `odyssey-health-flush` (`flush=...`): when given, a step daemon hands
    /// delivery to it in a process of its own and exits at once.
    flush: Option<PathBuf>,
    /// A worker agent's directory (`worker=...`): on a machine that joined
    /// as a worker (the directory holds its certificate), the agent sends
    /// the spool over mutual TLS, and the plugin only spools.
    worker: Option<PathBuf>,
    /// The lock file of a node's delivery agent (`agent=...`, `%n` the
    /// node): while `odyssey-health-flush --watch` holds it, the plugin only
    /// spools and starts no flush.
    agent: Option<String>,
    /// The mode for this job step, settled in `init_post_opt`.
    mode: Mode,
    /// Set in `init_post_opt` of a step daemon that reports.
    step: Option<Step>,
}

/// What a reporting step daemon keeps between callbacks.
struct Step {
    job_id: u32,
    step_id: u32,
    node: String,
    workdir: PathBuf,
    file: PathBuf,
    started: f64,
    /// Start time of each task, by global task id (task_post_fork).
    task_started: HashMap<u32, f64>,
    /// Tasks of this step on this node, for the end-of-step summary.
    local_tasks: u32,
    /// One per task that ended, in the order they ended.
    summaries: Vec<report::TaskSummary>,
}

impl Step {
    /// `<job>.<step>.<node>.<what>`: unique and stable, so the bridge can
    /// drop a record it already has.
    fn record_id(&self, what: &str) -> String {
        format!("{}.{}.{}.{what}", self.job_id, step_name(self.step_id), self.node)
    }
}

/// SLURM's step id of a batch script (SLURM_BATCH_SCRIPT in slurm.h).
const BATCH_STEP: u32 = 0xFFFF_FFFB;

fn step_name(step_id: u32) -> String {
    if step_id == BATCH_STEP {
        "batch".to_owned()
    } else {
        step_id.to_string()
    }
}

impl OdysseyHealth {
    /// Sends this node's pending spool files, this step's among them. Never
    /// slows the job by more than two timeouts: an unreachable bridge leaves
    /// the files for the next step on this node or `odyssey-health-flush`.
    fn deliver(&self, step: &Step) {
        let (Some(url), Some(secret_path)) = (&self.url, &self.secret) else { return };
        let secret = match std::fs::read(secret_path) {
            Ok(secret) => secret,
            Err(err) => {
                spank_log_error!("odyssey_health: cannot read {}: {err}", secret_path.display());
                return;
            }
        };
        let timeout = std::time::Duration::from_millis(self.timeout_ms.unwrap_or(1000));
        let target = deliver::Target { url: url.clone(), secret, timeout, budget: timeout * 2 };
        let dir = step.file.parent().unwrap_or(std::path::Path::new("/"));
        let done = deliver::deliver(dir, &target);
        if done.corrupt_lines > 0 {
            spank_log_info!("odyssey_health: skipped {} corrupt spool lines in {}", done.corrupt_lines, dir.display());
        }
        // To the SLURM log only: error() in a step daemon also reaches the
        // job's stderr, and a bridge away is no business of the job's output.
        if let Some(err) = done.error {
            spank_log_info!("odyssey_health: {} spool files left for later: {err}", done.files_left);
        }
    }

    /// Delivers through `odyssey-health-flush` in a detached process, so the
    /// step daemon exits without waiting for the bridge (a step's end, and
    /// the next job on the node, would wait for it otherwise); inline when
    /// there is no flush program or it cannot start. A flush killed with the
    /// step loses nothing: the records stay spooled for the next delivery.
    fn deliver_from_step(&self, step: &Step) {
        let (Some(flush), Some(url), Some(secret)) = (&self.flush, &self.url, &self.secret) else {
            return self.deliver(step);
        };
        let dir = step.file.parent().unwrap_or(std::path::Path::new("/"));
        let timeout_ms = self.timeout_ms.unwrap_or(1000);
        let mut spawned = std::process::Command::new(flush);
        spawned
            .arg("--spool")
            .arg(dir)
            .args(["--url", url])
            .arg("--secret")
            .arg(secret)
            .args(["--timeout-ms", &timeout_ms.to_string(), "--budget-ms", &(2 * timeout_ms).to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a signal for the step's does not reach it.
            .process_group(0);
        // SAFETY: between fork and exec the closure only makes one system
        // call. It marks every inherited descriptor above stderr close-on-exec:
        // the step daemon's connections to srun among them, which would
        // otherwise stay open in the flush and keep srun waiting for their end.
        let spawned = unsafe {
            spawned.pre_exec(|| {
                nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, nix::libc::CLOSE_RANGE_CLOEXEC);
                Ok(())
            })
        }
        .spawn();
        // Not waited for: it outlives this step daemon, and init reaps it.
        if let Err(err) = spawned {
            spank_log_info!("odyssey_health: cannot start {}: {err}; delivering in the step daemon", flush.display());
            self.deliver(step);
        }
    }

    /// Whether a process already running on this node delivers: the agent
    /// of a machine that joined as a worker (`odyssey-worker`, with its
    /// certificate), or `odyssey-health-flush --watch` holding its lock.
    /// One stat, or one open and one lock query, per step.
    fn agent_delivers(&self, node: &str) -> bool {
        self.worker.as_ref().is_some_and(|dir| dir.join("cert.pem").exists())
            || self.agent.as_deref().is_some_and(|pattern| agent::running(&agent::lock_path(pattern, node)))
    }

    /// Appends a record; a spool failure goes to the SLURM log and never
    /// fails the user's job.
    fn spool(&self, file: &std::path::Path, record: &Record, durability: spool::Durability) {
        if let Err(err) = spool::append(file, record, durability) {
            spank_log_error!("odyssey_health: cannot spool to {}: {err}", file.display());
        }
    }
}

unsafe impl Plugin for OdysseyHealth {
    /// Nothing to set up: the plugin logs through SPANK directly, so it
    /// builds no tracing subscriber in every srun and step daemon.
    fn setup(&self, _spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        Ok(())
    }

    /// A failed callback's error and its causes, through SPANK's log (in
    /// srun, sbatch and salloc that is the user's terminal).
    fn report_error(&self, error: &dyn Error) {
        let mut report = error.to_string();
        let mut cause = error.source();
        while let Some(source) = cause {
            report.push_str(&format!(": {source}"));
            cause = source.source();
        }
        spank_log_error!("odyssey_health: {report}");
    }

    fn init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        for arg in spank.plugin_argv()? {
            match arg.split_once('=') {
                Some(("default", value)) => {
                    self.default_mode = value.parse().map_err(|e| format!("plugstack.conf argument {arg:?}: {e}"))?;
                }
                Some(("spool", value)) if value.starts_with('/') => self.spool = Some(value.to_owned()),
                Some(("url", value)) if value.starts_with("http://") => self.url = Some(value.to_owned()),
                Some(("secret", value)) if value.starts_with('/') => self.secret = Some(PathBuf::from(value)),
                Some(("flush", value)) if value.starts_with('/') => self.flush = Some(PathBuf::from(value)),
                Some(("worker", value)) if value.starts_with('/') => self.worker = Some(PathBuf::from(value)),
                Some(("agent", value)) if value.starts_with('/') => self.agent = Some(value.to_owned()),
                Some(("timeout_ms", value)) => {
                    self.timeout_ms =
                        Some(value.parse().map_err(|_| format!("plugstack.conf argument {arg:?}: not milliseconds"))?)
                }
                _ => {
                    return Err(format!(
                        "unknown plugstack.conf argument {arg:?} (expected default=MODE, spool=/path/%n, url=http://..., secret=/path, flush=/path, worker=/path, agent=/path/%n.lock, timeout_ms=N)"
                    )
                    .into())
                }
            }
        }
        // The option itself is registered by the init hook (hooks.rs).
        Ok(())
    }

    fn init_post_opt(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        let value = spank.get_option_value(OPTION)?.map(|v| v.into_owned());
        self.mode = match value.as_deref() {
            // Given without a value (`--health-report`): summary. Forwarded
            // so from sbatch or salloc to an inner srun, it arrives as the
            // literal "(null)" (cluster-notes.md).
            Some("(null)") => Mode::Summary,
            Some(value) => value.parse().map_err(|e| format!("--{OPTION}: {e}"))?,
            None if spank.is_option_set(OPTION) => Mode::Summary,
            None => self.default_mode,
        };
        if self.mode != Mode::Off && spank.context()? == Context::Remote {
            // The node's own short hostname, not SLURMD_NODENAME from the job's
            // environment: a step launched from a batch script inherits the
            // batch node's value on every node.
            let node = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().split('.').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let (job_id, step_id) = (spank.job_id()?, spank.job_stepid()?);
            let dir = spool::node_dir(self.spool.as_deref().unwrap_or(DEFAULT_SPOOL), &node);
            // SPANK does not say where the step runs. srun records its cwd in
            // SLURM_SUBMIT_DIR; PWD is whatever the submitting process
            // inherited and may be stale (or name a private /tmp). The first
            // that is a directory on this node.
            let workdir = ["SLURM_SUBMIT_DIR", "PWD"]
                .iter()
                .filter_map(|var| spank.getenv(var).ok().flatten())
                .find(|dir| std::path::Path::new(dir).is_dir())
                .unwrap_or_else(|| "/".to_owned());
            self.step = Some(Step {
                file: spool::step_file(&dir, job_id, &step_name(step_id)),
                job_id,
                step_id,
                node,
                workdir: PathBuf::from(workdir),
                started: report::now(),
                task_started: HashMap::new(),
                local_tasks: spank.job_local_task_count().unwrap_or(0),
                summaries: Vec::new(),
            });
        }
        Ok(())
    }

    fn task_post_fork(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        if let Some(step) = self.step.as_mut() {
            step.task_started.insert(spank.task_global_id()?, report::now());
        }
        Ok(())
    }

    fn task_exit(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        let Some(step) = self.step.as_mut() else { return Ok(()) };
        let task = spank.task_global_id()?;
        let outcome = Outcome::from_wait_status(spank.task_exit_status()?);
        let at = report::now();
        let record = TaskRecord {
            id: step.record_id(&format!("task{task}")),
            job_id: step.job_id,
            step_id: step.step_id,
            node: step.node.clone(),
            task,
            pid: spank.task_pid().unwrap_or(0),
            outcome,
            wall_time_s: step
                .task_started
                .get(&task)
                .map_or(Known::unknown("task start not seen"), |t| Known::Value(at - t)),
            peak_memory_bytes: Known::unknown(NO_PER_TASK_SOURCE),
            user_cpu_s: Known::unknown(NO_PER_TASK_SOURCE),
            system_cpu_s: Known::unknown(NO_PER_TASK_SOURCE),
            oom_killed: Known::unknown("no OOM evidence per task without a memory cgroup"),
            at,
        };
        step.summaries.push(report::TaskSummary {
            task,
            outcome,
            peak_memory_bytes: record.peak_memory_bytes.clone(),
            oom_killed: record.oom_killed.clone(),
        });
        // The node's last task: its line for srun's terminal. A step
        // daemon's error() is the one message srun relays (as
        // "slurmstepd-<node>: error: ..."); a batch script's step has no srun,
        // and its output file is the user's.
        if step.summaries.len() == step.local_tasks as usize && step.step_id != BATCH_STEP {
            spank_log_error!("odyssey_health: {}", report::node_summary(&step.node, &step.summaries));
        }
        let file = step.file.clone();
        // Made durable with the node record, or by the deliverer (spool.rs).
        self.spool(&file, &Record::Task(record), spool::Durability::Buffered);
        Ok(())
    }

    fn exit(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        if spank.context()? != Context::Remote {
            return Ok(());
        }
        let Some(step) = self.step.take() else { return Ok(()) };
        let record = NodeRecord {
            id: step.record_id("node"),
            job_id: step.job_id,
            step_id: step.step_id,
            node: step.node.clone(),
            load: report::load_average(),
            mem_available_bytes: report::mem_available(),
            workdir_free_bytes: report::free_space(&step.workdir),
            step_start: step.started,
            step_end: report::now(),
            tasks: step.summaries.len() as u32,
            tasks_ok: step.summaries.iter().filter(|t| t.outcome.ok()).count() as u32,
            at: report::now(),
        };
        // A process of its own delivers (the node's agent, or a flush
        // started here), off the step's path, and makes durable what it
        // cannot send (`spool::deliver_with`); delivering here, the step
        // daemon makes the file durable itself first.
        let by_agent = self.agent_delivers(&step.node);
        let durability =
            if by_agent || self.flush.is_some() { spool::Durability::Buffered } else { spool::Durability::Sync };
        self.spool(&step.file, &Record::Node(record), durability);
        if !by_agent {
            self.deliver_from_step(&step);
        }
        Ok(())
    }

    fn user_init(&mut self, spank: &mut SpankHandle) -> Result<(), Box<dyn Error>> {
        if self.mode != Mode::Off {
            spank.setenv(ENV_MODE, self.mode.as_str(), true)?;
        }
        Ok(())
    }
}
