//! Submission through libslurm: one RPC to slurmctld instead of one sbatch
//! process per job (issue #9); and the poller's read of the queue
//! (`slurm_load_jobs`, as root) instead of one squeue process per round.
//!
//! Authority: each call runs on a thread of this module's own pool that has
//! taken the user's groups, gid and uid for the length of the call
//! (`as_user::as_identity`). munged reads the credentials of the thread
//! that connects to it, so the RPC reaches slurmctld authenticated as the
//! user, exactly as sbatch run as the user does: slurmctld applies the
//! user's limits, refuses root-only fields, and refuses a descriptor whose
//! `user_id` is not the caller's. Every field of the descriptor comes from
//! the validated `JobOptions`; none that only root may set (priority,
//! negative nice, admin comment, reboot, ...) is ever written.
//!
//! libslurm has no stable ABI and is not thread-safe everywhere: the
//! bindings are built against SLURM 22.05's headers (the build refuses
//! another release), `load` compares `slurm_api_version()` with the library
//! the build linked, and only the pool's threads call into it.
//!
//! What libslurm logs during a call (sbatch prints the same lines as
//! `sbatch: error: ...`, e.g. slurmctld's "invalid partition specified:
//! x") belongs in that call's answer. libslurm has one log stream for the
//! process, a FILE on descriptor `log_fd`; each pool thread unshares its
//! descriptor table (`unshare(CLONE_FILES)`), closes every descriptor it
//! inherited (the bridge's database, keys, sockets: a thread that runs as
//! a user holds none of them) and puts its own pipe at `log_fd`. So a line
//! libslurm logs lands in the pipe of the thread that logged it.

use std::collections::HashMap;
use std::ffi::{c_char, CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use odyssey_slurm_sys as ffi;

use super::job::{MailType, Memory, MiB, Submission};
use super::parse::{Queue, QueueEntry};
use super::{as_user, SbatchOutcome, SlurmError};

/// The name SLURM errors carry for this path.
const COMMAND: &str = "libslurm";

/// A loaded libslurm and the threads that call it.
pub struct Libslurm {
    calls: Mutex<mpsc::Sender<Call>>,
    /// e.g. "API 38.0.0, slurm.conf /etc/slurm/slurm.conf, 4 threads".
    pub description: String,
    /// `SLURM_SUBMIT_HOST` for every job, as sbatch sets it.
    submit_host: String,
    /// The descriptor number libslurm logs to (see the module comment).
    log_fd: RawFd,
    /// The last queue slurmctld sent and its update time: a later round
    /// passes that time, and slurmctld answers "no change" without the jobs
    /// when nothing changed since.
    queue: Mutex<Option<(nix::libc::time_t, Queue)>>,
}

impl std::fmt::Debug for Libslurm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Libslurm({})", self.description)
    }
}

/// A call, and the channel its answer goes back on: a std channel, whose
/// wake-up is a futex, so a pool thread (whose descriptor table holds
/// nothing of the runtime's) can answer the waiting request directly.
enum Call {
    /// A submission (or will-run question), as the user.
    Submit { submission: Box<Submission>, dry_run: bool, reply: mpsc::SyncSender<Result<SbatchOutcome, SlurmError>> },
    /// Every job slurmctld holds (the poller's round), as the bridge.
    LoadJobs { reply: mpsc::SyncSender<Result<Queue, SlurmError>> },
    /// One job, as the bridge.
    LoadJob { job: u32, reply: mpsc::SyncSender<Result<Option<QueueEntry>, SlurmError>> },
}

/// `slurm_init` may run once per process: the first `load` decides.
static LOADED: OnceLock<Result<Arc<Libslurm>, String>> = OnceLock::new();

impl Libslurm {
    /// Loads libslurm for `conf` (or `$SLURM_CONF`, or SLURM's default) with
    /// `threads` calling threads; an error says why it cannot be used (the
    /// caller falls back to sbatch).
    pub fn load(conf: Option<&Path>, threads: usize) -> Result<Arc<Libslurm>, String> {
        LOADED.get_or_init(|| Libslurm::init(conf, threads.max(1))).clone()
    }

    fn init(conf: Option<&Path>, threads: usize) -> Result<Arc<Libslurm>, String> {
        // SAFETY: a constant query with no arguments.
        let api = unsafe { ffi::slurm_api_version() } as u32;
        if api >> 16 != ffi::BUILT_API_VERSION >> 16 {
            return Err(format!(
                "the installed libslurm has API {}, the bridge was built against API {} (SLURM {})",
                version(api),
                version(ffi::BUILT_API_VERSION),
                version(ffi::SLURM_VERSION_NUMBER),
            ));
        }
        let conf = conf
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("SLURM_CONF").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/etc/slurm/slurm.conf"));
        // libslurm ends the process when it cannot read its configuration:
        // look first.
        std::fs::File::open(&conf).map_err(|e| format!("cannot read {}: {e}", conf.display()))?;
        let path = CString::new(conf.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: once per process (LOADED), before any other libslurm call;
        // libslurm copies what it needs from the path.
        unsafe { ffi::slurm_init(path.as_ptr()) };
        let log_fd = log_to_descriptor()?;
        let submit_host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().split('.').next().unwrap_or_default().to_owned())
            .map_err(|e| format!("gethostname: {e}"))?;
        let (tx, rx) = mpsc::channel::<Call>();
        let rx = Arc::new(Mutex::new(rx));
        let libslurm = Arc::new(Libslurm {
            calls: Mutex::new(tx),
            description: format!("API {}, {}, {threads} threads", version(api), conf.display()),
            submit_host,
            log_fd,
            queue: Mutex::new(None),
        });
        for n in 0..threads {
            let (rx, this) = (rx.clone(), libslurm.clone());
            std::thread::Builder::new()
                .name(format!("libslurm-{n}"))
                .spawn(move || this.serve(&rx))
                .map_err(|e| format!("cannot start a libslurm thread: {e}"))?;
        }
        Ok(libslurm)
    }

    /// Submits (or, `dry_run`, asks when it would start) within `timeout`;
    /// past it the job may still reach SLURM.
    pub async fn submit(
        &self,
        submission: &Submission,
        dry_run: bool,
        timeout: Duration,
    ) -> Result<SbatchOutcome, SlurmError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.ask(Call::Submit { submission: Box::new(submission.clone()), dry_run, reply }, answer, timeout).await
    }

    /// Every job slurmctld holds, as `squeue -h -t all` lists them (one
    /// entry per record, the same fields `parse::squeue` reads), without a
    /// process or text in between; an unchanged queue costs one small RPC.
    pub async fn load_jobs(&self, timeout: Duration) -> Result<Queue, SlurmError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.ask(Call::LoadJobs { reply }, answer, timeout).await
    }

    /// One job as slurmctld holds it (`slurm_load_job`: one small RPC, no
    /// process); `None` once slurmctld has forgotten it.
    pub async fn load_job(&self, job: u32, timeout: Duration) -> Result<Option<QueueEntry>, SlurmError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.ask(Call::LoadJob { job, reply }, answer, timeout).await
    }

    /// Hands `call` to the pool and waits for its answer within `timeout`.
    async fn ask<T: Send + 'static>(
        &self,
        call: Call,
        answer: mpsc::Receiver<Result<T, SlurmError>>,
        timeout: Duration,
    ) -> Result<T, SlurmError> {
        let sent = self.calls.lock().unwrap_or_else(|e| e.into_inner()).send(call);
        sent.map_err(|_| SlurmError::Spawn {
            command: COMMAND,
            reason: "the libslurm threads stopped".into(),
            errno: None,
        })?;
        // Waiting in place: the pool thread's answer wakes this thread itself.
        let waited = crate::blocking::run(move || answer.recv_timeout(timeout)).await;
        let stopped = |reason: String| SlurmError::Spawn { command: COMMAND, reason, errno: None };
        match waited.map_err(stopped)? {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SlurmError::Timeout { command: COMMAND, timeout }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(stopped("a libslurm call panicked".into())),
        }
    }

    /// One pool thread: calls, one at a time, until the bridge exits.
    fn serve(&self, calls: &Mutex<mpsc::Receiver<Call>>) {
        let log = match private_log(self.log_fd) {
            Ok(log) => log,
            Err(e) => {
                tracing::error!("libslurm thread without its own descriptors ({e}); it takes no calls");
                return;
            }
        };
        loop {
            let next = calls.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(call) = next else { return };
            match call {
                Call::Submit { submission, dry_run, reply } => {
                    answer(&log, reply, || self.call(&submission, dry_run));
                }
                Call::LoadJobs { reply } => answer(&log, reply, || self.load_queue()),
                Call::LoadJob { job, reply } => answer(&log, reply, || load_one(job)),
            }
        }
    }

    /// The call itself, as the user.
    fn call(&self, submission: &Submission, dry_run: bool) -> Result<SbatchOutcome, SlurmError> {
        let identity = &submission.identity;
        let run = || {
            enter_check(&submission.working_dir).map_err(|e| SlurmError::WorkingDir {
                dir: submission.working_dir.display().to_string(),
                user: identity.name.clone(),
                reason: e.to_string(),
            })?;
            let mut desc = Descriptor::new(submission, &self.submit_env(submission))?;
            if dry_run {
                desc.will_run()
            } else {
                desc.submit()
            }
        };
        as_user::as_identity(identity, run).map_err(|e| SlurmError::Spawn {
            command: COMMAND,
            reason: e.to_string(),
            errno: e.raw_os_error(),
        })?
    }

    /// `slurm_load_jobs` since the last answer, as the bridge (root, like
    /// the squeue it replaces), with every record converted.
    fn load_queue(&self) -> Result<Queue, SlurmError> {
        let mut last = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let since = last.as_ref().map_or(0, |(at, _)| *at);
        let mut msg: *mut ffi::job_info_msg_t = std::ptr::null_mut();
        // SAFETY: libslurm allocates the answer, read below and then freed.
        let rc = unsafe { ffi::slurm_load_jobs(since, &mut msg, 0) };
        if rc != 0 || msg.is_null() {
            // SAFETY: errno of the calling thread.
            let errno = unsafe { ffi::slurm_get_errno() };
            if errno == ffi::slurm_err_t::SLURM_NO_CHANGE_IN_DATA as i32 {
                if let Some((_, entries)) = last.as_ref() {
                    return Ok(Arc::clone(entries));
                }
            }
            return Err(load_failure(errno));
        }
        // SAFETY: msg is libslurm's answer, alive until the free.
        let converted = unsafe {
            let answer = &*msg;
            // slurmctld names each job's user; where it does not, one lookup
            // per user, not per job.
            let mut names = HashMap::new();
            let converted: Result<Vec<QueueEntry>, SlurmError> =
                records(answer).iter().map(|job| queue_entry(job, &mut names)).collect();
            let at = answer.last_update;
            ffi::slurm_free_job_info_msg(msg);
            converted.map(|entries| (at, entries))
        };
        let (at, entries) = converted?;
        let entries = Arc::new(entries);
        *last = Some((at, Arc::clone(&entries)));
        Ok(entries)
    }

    /// The variables sbatch adds to every job's environment when it passes
    /// an environment file, as it does for the bridge: where the job was
    /// submitted from, and the SPANK options (sbatch sets them in both the
    /// job's environment and its SPANK environment). The submitting side's
    /// resource limits and umask do not travel with an environment file.
    fn submit_env(&self, submission: &Submission) -> Vec<(String, String)> {
        // SAFETY: getpriority on the calling thread; -1 is also a valid
        // answer, so errno is not consulted (sbatch's value is then wrong too).
        let nice = unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, 0) };
        let mut env = vec![
            ("SLURM_PRIO_PROCESS".to_owned(), nice.to_string()),
            ("SLURM_SUBMIT_DIR".to_owned(), submission.working_dir.display().to_string()),
            ("SLURM_SUBMIT_HOST".to_owned(), self.submit_host.clone()),
        ];
        if let Some(mode) = submission.options.health_report {
            let name = odyssey_health_wire::spank_option_name();
            env.push((format!("SLURM_SPANK_{name}"), mode.as_str().to_owned()));
        }
        env
    }
}

/// `slurm_load_job` for one job id, converted as the queue's records are.
fn load_one(job: u32) -> Result<Option<QueueEntry>, SlurmError> {
    let mut msg: *mut ffi::job_info_msg_t = std::ptr::null_mut();
    // SAFETY: libslurm allocates the answer, read below and then freed.
    let rc = unsafe { ffi::slurm_load_job(&mut msg, job, 0) };
    if rc != 0 || msg.is_null() {
        // SAFETY: errno of the calling thread.
        let errno = unsafe { ffi::slurm_get_errno() };
        if errno == ffi::slurm_err_t::ESLURM_INVALID_JOB_ID as i32 {
            return Ok(None);
        }
        return Err(load_failure(errno));
    }
    // SAFETY: msg is libslurm's answer, alive until the free. An array job
    // answers with its tasks: the one with this id is kept.
    unsafe {
        let mut names = HashMap::new();
        let found = records(&*msg).iter().find(|r| r.job_id == job).map(|r| queue_entry(r, &mut names)).transpose();
        ffi::slurm_free_job_info_msg(msg);
        found
    }
}

/// The job records of a `slurm_load_job(s)` answer.
///
/// # Safety
/// `answer` is libslurm's, not yet freed: `record_count` records at
/// `job_array` (null when there are none); the slice lives as long as it.
unsafe fn records(answer: &ffi::job_info_msg_t) -> &[ffi::slurm_job_info_t] {
    if answer.job_array.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise above.
        unsafe { std::slice::from_raw_parts(answer.job_array, answer.record_count as usize) }
    }
}

/// Runs one call on a pool thread and replies with its result, carrying
/// what libslurm logged meanwhile. A panic drops the reply: the waiting side
/// reads that as one. Nobody waits any more after a timeout: the answer is
/// dropped.
fn answer<T>(
    log: &OwnedFd,
    reply: mpsc::SyncSender<Result<T, SlurmError>>,
    work: impl FnOnce() -> Result<T, SlurmError>,
) {
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    let logged = drain(log);
    if let Ok(result) = result {
        let _ = reply.try_send(result.map_err(|e| with_logged(e, &logged)));
    }
}

/// Points libslurm's log at a FILE on a descriptor of its own (a copy of
/// stderr for any thread outside the pool): errors and notices, with their
/// level, as sbatch prints them. Returns the descriptor number.
fn log_to_descriptor() -> Result<RawFd, String> {
    let fd = nix::fcntl::fcntl(2, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| format!("dup stderr: {e}"))?;
    // SAFETY: fd is a fresh descriptor this FILE now owns for the life of
    // the process; unbuffered, so each line is one write by its thread.
    unsafe {
        let fp = nix::libc::fdopen(fd, c"w".as_ptr());
        if fp.is_null() {
            return Err(format!("fdopen: {}", std::io::Error::last_os_error()));
        }
        nix::libc::setvbuf(fp, std::ptr::null_mut(), nix::libc::_IONBF, 0);
        let opts = ffi::log_options_t {
            stderr_level: ffi::LOG_LEVEL_QUIET,
            syslog_level: ffi::LOG_LEVEL_QUIET,
            logfile_level: ffi::LOG_LEVEL_INFO,
            prefix_level: true,
            buffered: false,
            raw: false,
        };
        if ffi::slurm_log_alter_with_fp(opts, nix::libc::LOG_USER as u32, fp.cast()) != 0 {
            return Err("libslurm refused its log file".into());
        }
    }
    Ok(fd)
}

/// Gives the calling thread a descriptor table of its own with nothing in
/// it but a pipe whose write end sits at `log_fd`; returns the read end.
fn private_log(log_fd: RawFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES)?;
    // SAFETY: closes descriptors in this thread's private table only; no
    // Rust object of this thread owns any of them yet.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    // Both ends above log_fd, so putting the write end there frees nothing
    // still in use.
    let above = |fd: &OwnedFd| -> std::io::Result<OwnedFd> {
        let raw = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(log_fd + 1))?;
        // SAFETY: a fresh descriptor from fcntl.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    };
    let (read, write) = (above(&read)?, above(&write)?);
    // SAFETY: dup3 onto the number libslurm's FILE writes to; the old
    // description there was this thread's copy of the shared one.
    let rc = unsafe { nix::libc::dup3(write.as_raw_fd(), log_fd, nix::libc::O_CLOEXEC) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(read)
}

/// What libslurm logged on this thread since the last drain.
fn drain(log: &OwnedFd) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = nix::unistd::read(log.as_raw_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// An error with what libslurm logged during the call in front of it, in
/// the form sbatch's stderr takes after `clean_stderr`.
fn with_logged(err: SlurmError, logged: &str) -> SlurmError {
    // "[2026-12-03T15:35:56.123] error: x" -> "error: x"
    let lines: String = logged
        .lines()
        .map(|l| l.strip_prefix('[').and_then(|l| l.split_once("] ")).map_or(l, |(_, rest)| rest))
        .map(|l| format!("{l}\n"))
        .collect();
    let prefix = super::clean_stderr(&lines, "");
    if prefix.is_empty() {
        return err;
    }
    match err {
        SlurmError::Rejected { command, stderr } => {
            SlurmError::Rejected { command, stderr: format!("{prefix}; {stderr}") }
        }
        SlurmError::Unreachable { command, stderr } => {
            SlurmError::Unreachable { command, stderr: format!("{prefix}; {stderr}") }
        }
        other => other,
    }
}

/// What sbatch's `chdir` into the working directory checks, as the user:
/// it exists, is a directory, and the user may enter it.
fn enter_check(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ENOTDIR));
    }
    nix::unistd::access(dir, nix::unistd::AccessFlags::X_OK).map_err(std::io::Error::from)
}

/// `0x260000` as "38.0.0".
fn version(number: u32) -> String {
    format!("{}.{}.{}", number >> 16, (number >> 8) & 0xff, number & 0xff)
}

/// A `job_desc_msg_t` and the C strings it points into, which live exactly
/// as long as it does.
struct Descriptor {
    desc: ffi::job_desc_msg_t,
    _strings: Vec<CString>,
    _environment: Vec<*mut c_char>,
    _spank_env: Vec<*mut c_char>,
}

/// A C string of a validated value; a NUL inside is refused like sbatch
/// refuses it.
fn c_string(field: &str, value: &str) -> Result<CString, SlurmError> {
    CString::new(value).map_err(|_| SlurmError::Rejected {
        command: COMMAND,
        stderr: format!("the job's {field} contains a NUL character"),
    })
}

/// SLURM's mail flags for sbatch's `--mail-type` names.
fn mail_flags(types: &[MailType]) -> u16 {
    types.iter().fold(0u32, |flags, t| {
        flags
            | match t {
                MailType::None => 0,
                MailType::Begin => ffi::MAIL_JOB_BEGIN,
                MailType::End => ffi::MAIL_JOB_END,
                MailType::Fail => ffi::MAIL_JOB_FAIL,
                MailType::Requeue => ffi::MAIL_JOB_REQUEUE,
                MailType::All => {
                    ffi::MAIL_JOB_BEGIN
                        | ffi::MAIL_JOB_END
                        | ffi::MAIL_JOB_FAIL
                        | ffi::MAIL_JOB_REQUEUE
                        | ffi::MAIL_JOB_STAGE_OUT
                }
                MailType::InvalidDepend => ffi::MAIL_INVALID_DEPEND,
                MailType::StageOut => ffi::MAIL_JOB_STAGE_OUT,
                MailType::TimeLimit => ffi::MAIL_JOB_TIME100,
                MailType::TimeLimit90 => ffi::MAIL_JOB_TIME90,
                MailType::TimeLimit80 => ffi::MAIL_JOB_TIME80,
                MailType::TimeLimit50 => ffi::MAIL_JOB_TIME50,
                MailType::ArrayTasks => ffi::MAIL_ARRAY_TASKS,
            }
    }) as u16
}

impl Descriptor {
    /// The descriptor sbatch would send for the same options, as far as
    /// these options reach (SLURM 22.05's `slurm_opt_create_job_desc` with
    /// sbatch's defaults).
    fn new(submission: &Submission, submit_env: &[(String, String)]) -> Result<Descriptor, SlurmError> {
        let options = &submission.options;
        let mut strings: Vec<CString> = Vec::new();
        let mut keep = |field: &str, value: &str| -> Result<*mut c_char, SlurmError> {
            let s = c_string(field, value)?;
            let ptr = s.as_ptr() as *mut c_char;
            strings.push(s);
            Ok(ptr)
        };
        let mut keep_opt = |field: &str, value: Option<&str>| match value {
            Some(v) => keep(field, v),
            None => Ok(std::ptr::null_mut()),
        };
        // SAFETY: a plain C struct that slurm_init_job_desc_msg fills with
        // SLURM's "not set" values before anything reads it.
        let mut desc: ffi::job_desc_msg_t = unsafe { std::mem::zeroed() };
        // SAFETY: desc is a valid, writable descriptor.
        unsafe { ffi::slurm_init_job_desc_msg(&mut desc) };

        desc.name = keep_opt("name", Some(&options.name))?;
        desc.partition = keep_opt("partition", options.partition.as_deref())?;
        desc.features = keep_opt("constraint", options.constraint.as_deref())?;
        desc.account = keep_opt("account", options.account.as_deref())?;
        desc.qos = keep_opt("qos", options.qos.as_deref())?;
        desc.mail_user = keep_opt("mail_user", options.mail_user.as_deref())?;
        desc.array_inx = keep_opt("array", options.array.as_deref())?;
        desc.dependency = keep_opt("dependency", options.dependency().as_deref())?;
        desc.comment = keep_opt("comment", options.comment.as_deref())?;
        let exclude = (!options.exclude.is_empty()).then(|| options.exclude.join(","));
        desc.exc_nodes = keep_opt("exclude", exclude.as_deref())?;
        desc.prefer = keep_opt("prefer", options.prefer.as_deref())?;
        // The bridge retries; SLURM does not requeue on its own (sbatch
        // --no-requeue).
        desc.requeue = 0;
        desc.std_out = keep_opt("stdout", Some(&options.stdout))?;
        desc.std_err = keep_opt("stderr", Some(&options.stderr))?;
        let work_dir = submission.working_dir.display().to_string();
        desc.work_dir = keep_opt("working_dir", Some(&work_dir))?;
        // sbatch's --gres: each resource prefixed with its TRES type.
        let gres = options.gres.as_ref().map(|g| format!("gres:{}", g.replace(',', ",gres:")));
        desc.tres_per_node = keep_opt("gres", gres.as_deref())?;
        desc.script = keep_opt("script", Some(&submission.script))?;

        desc.user_id = submission.identity.uid;
        desc.group_id = submission.identity.gid;
        desc.contiguous = 0;
        desc.mail_type = mail_flags(&options.mail_types);
        if let Some(minutes) = options.time_limit {
            desc.time_limit = minutes.0;
        }
        if options.exclusive {
            desc.shared = ffi::JOB_SHARED_NONE as u16;
        }
        match options.memory {
            Some(Memory::PerNode(MiB(m))) => desc.pn_min_memory = m,
            Some(Memory::PerCpu(MiB(m))) => desc.pn_min_memory = m | ffi::MEM_PER_CPU as u64,
            None => {}
        }
        // Counts, as sbatch derives them from the same options.
        if let Some(n) = options.ntasks {
            desc.bitflags |= u64::from(ffi::JOB_NTASKS_SET);
            desc.num_tasks = n;
        }
        if let Some(n) = options.ntasks_per_node {
            desc.ntasks_per_node = n as u16;
        }
        if let Some(n) = options.cpus_per_task {
            desc.bitflags |= u64::from(ffi::JOB_CPUS_SET);
            desc.cpus_per_task = n as u16;
        }
        match (options.nodes, options.ntasks, options.ntasks_per_node) {
            // sbatch --nodes=N sets the minimum only.
            (Some(nodes), _, _) => desc.min_nodes = nodes,
            (None, Some(tasks), Some(per_node)) if per_node > 0 => desc.min_nodes = tasks.div_ceil(per_node),
            _ => {}
        }
        // Without --ntasks sbatch counts one task per node (or
        // --ntasks-per-node per node).
        let nodes = options.nodes.unwrap_or(1);
        let estimated_tasks = match (options.ntasks, options.ntasks_per_node) {
            (Some(tasks), _) => tasks,
            (None, Some(per_node)) => nodes * per_node,
            (None, None) => nodes,
        };
        desc.min_cpus = estimated_tasks * options.cpus_per_task.unwrap_or(1);

        let mut environment: Vec<*mut c_char> = Vec::new();
        let job_env = submission.environment();
        let pairs = job_env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let added = submit_env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in pairs.chain(added) {
            environment.push(keep("env", &format!("{key}={value}"))?);
        }
        desc.env_size = environment.len() as u32;
        desc.environment = environment.as_mut_ptr();

        let mut spank_env: Vec<*mut c_char> = Vec::new();
        if let Some(mode) = options.health_report {
            spank_env.push(keep("health_report", &odyssey_health_wire::spank_option_env(mode.as_str()))?);
            desc.spank_job_env_size = spank_env.len() as u32;
            desc.spank_job_env = spank_env.as_mut_ptr();
        }
        Ok(Descriptor { desc, _strings: strings, _environment: environment, _spank_env: spank_env })
    }

    fn submit(&mut self) -> Result<SbatchOutcome, SlurmError> {
        let mut response: *mut ffi::submit_response_msg_t = std::ptr::null_mut();
        // SAFETY: desc and every string it points to live in self; libslurm
        // only reads them and allocates the response, freed below.
        let rc = unsafe { ffi::slurm_submit_batch_job(&mut self.desc, &mut response) };
        if rc != 0 || response.is_null() {
            return Err(failure());
        }
        // SAFETY: a response libslurm allocated for this call.
        let job_id = unsafe { (*response).job_id };
        unsafe { ffi::slurm_free_submit_response_response_msg(response) };
        Ok(SbatchOutcome::Submitted(i64::from(job_id)))
    }

    /// sbatch `--test-only`'s answer, in its words.
    fn will_run(&mut self) -> Result<SbatchOutcome, SlurmError> {
        let mut response: *mut ffi::will_run_response_msg_t = std::ptr::null_mut();
        // SAFETY: as in `submit`.
        let rc = unsafe { ffi::slurm_job_will_run2(&mut self.desc, &mut response) };
        if rc != 0 || response.is_null() {
            return Err(failure());
        }
        let text = |p: *const c_char| {
            // SAFETY: NUL-terminated strings (or null) in libslurm's response.
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        // SAFETY: a response libslurm allocated for this call, read then freed.
        let line = unsafe {
            let r = &*response;
            let line = format!(
                "Job {} to start at {} using {} processors on nodes {} in partition {}",
                r.job_id,
                local_time(r.start_time),
                r.proc_cnt,
                text(r.node_list),
                text(r.part_name)
            );
            ffi::slurm_free_will_run_response_msg(response);
            line
        };
        Ok(SbatchOutcome::DryRun(line))
    }
}

/// A time as sbatch prints it by default: ISO 8601, local, to the second.
fn local_time(t: nix::libc::time_t) -> String {
    // SAFETY: localtime_r and strftime write into the buffers given.
    unsafe {
        let mut tm: nix::libc::tm = std::mem::zeroed();
        if nix::libc::localtime_r(&t, &mut tm).is_null() {
            return t.to_string();
        }
        let mut buf = [0 as c_char; 64];
        let n = nix::libc::strftime(buf.as_mut_ptr(), buf.len(), c"%Y-%m-%dT%H:%M:%S".as_ptr(), &tm);
        CStr::from_bytes_until_nul(std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n + 1))
            .map_or_else(|_| t.to_string(), |s| s.to_string_lossy().into_owned())
    }
}

/// Why `slurm_load_jobs` gave no queue, as the squeue it replaces would say.
fn load_failure(errno: i32) -> SlurmError {
    // SAFETY: SLURM's static text for an error code.
    let text = unsafe { CStr::from_ptr(ffi::slurm_strerror(errno)) }.to_string_lossy().into_owned();
    let stderr = format!("slurm_load_jobs error: {text}");
    // Not reached, answer lost or busy: the controller's trouble; anything
    // else is an answer the poller cannot use.
    match failure_of(errno, text) {
        SlurmError::Rejected { .. } => SlurmError::Unexpected { command: LOAD, output: stderr },
        _ => SlurmError::Unreachable { command: LOAD, stderr },
    }
}

fn now() -> nix::libc::time_t {
    // SAFETY: time(NULL) only reads the clock.
    unsafe { nix::libc::time(std::ptr::null_mut()) }
}

/// The name errors of the queue read carry.
const LOAD: &str = "slurm_load_jobs";

/// A static C string of libslurm's, or "".
///
/// # Safety
/// `p` is null or a NUL-terminated string that outlives the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// One job record as `squeue -O SQUEUE_FORMAT` prints it, read the way
/// `parse::squeue` reads that line (the same rules for "no value").
///
/// # Safety
/// `job` is a record of a live `slurm_load_jobs` answer.
unsafe fn queue_entry(job: &ffi::slurm_job_info_t, names: &mut HashMap<u32, String>) -> Result<QueueEntry, SlurmError> {
    let state_text = text(ffi::slurm_job_state_string(job.job_state));
    let state = state_text.parse().map_err(|_| SlurmError::Unexpected { command: LOAD, output: state_text })?;
    // squeue's Reason: the detail where SLURM gave one, else the code's name.
    let reason = if job.state_desc.is_null() {
        text(ffi::slurm_job_reason_string(u32::from(job.state_reason)))
    } else {
        text(job.state_desc)
    };
    let job_id = i64::from(job.job_id);
    let user = if job.user_name.is_null() {
        let uid = job.user_id;
        let name = names.entry(uid).or_insert_with(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        });
        name.clone()
    } else {
        text(job.user_name)
    };
    let seconds = |t: nix::libc::time_t| (t > 0).then_some(t as f64);
    Ok(QueueEntry {
        job_id,
        array_job_id: if job.array_job_id == 0 { job_id } else { i64::from(job.array_job_id) },
        state,
        reason: super::parse::non_empty(&reason),
        start: seconds(job.start_time),
        // squeue prints no end for a job without a time limit that is still
        // going (SLURM puts its end a year ahead).
        end: if job.time_limit == ffi::INFINITE && job.end_time > now() { None } else { seconds(job.end_time) },
        user,
        cpus: job.num_cpus,
        partition: text(job.partition),
        account: super::parse::non_empty(&text(job.account)),
        nodes: super::parse::non_empty(&text(job.nodes)),
        time_limit: (job.time_limit != ffi::INFINITE && job.time_limit != ffi::NO_VAL).then_some(job.time_limit),
        priority: job.priority,
    })
}

/// The error of the call that just failed on this thread, as sbatch words
/// it ("Batch job submission failed: <slurm_strerror>"), classified.
fn failure() -> SlurmError {
    // SAFETY: errno of the calling thread, and SLURM's static text for it.
    let (errno, text) = unsafe {
        let errno = ffi::slurm_get_errno();
        let text = CStr::from_ptr(ffi::slurm_strerror(errno)).to_string_lossy().into_owned();
        (errno, text)
    };
    failure_of(errno, text)
}

/// A failed call's error code classified: not reached, answer lost, busy,
/// or refused (with sbatch's words).
fn failure_of(errno: i32, text: String) -> SlurmError {
    let stderr = format!("Batch job submission failed: {text}");
    use ffi::slurm_err_t as E;
    let code = |e: E| e as i32;
    if [
        code(E::SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR),
        code(E::SLURM_COMMUNICATIONS_CONNECTION_ERROR),
        nix::libc::ECONNREFUSED,
    ]
    .contains(&errno)
    {
        // Nothing was sent.
        return SlurmError::Unreachable { command: COMMAND, stderr };
    }
    if [
        code(E::SLURMCTLD_COMMUNICATIONS_SEND_ERROR),
        code(E::SLURMCTLD_COMMUNICATIONS_RECEIVE_ERROR),
        code(E::SLURMCTLD_COMMUNICATIONS_SHUTDOWN_ERROR),
        code(E::SLURM_COMMUNICATIONS_SEND_ERROR),
        code(E::SLURM_COMMUNICATIONS_RECEIVE_ERROR),
        code(E::SLURM_COMMUNICATIONS_SHUTDOWN_ERROR),
        code(E::SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT),
        code(E::SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT),
        nix::libc::ETIMEDOUT,
    ]
    .contains(&errno)
    {
        // The request may have reached slurmctld and its answer been lost.
        return SlurmError::NoAnswer { command: COMMAND, detail: text };
    }
    // Busy, not refused: sbatch sleeps and retries these itself (up to 15
    // times); the bridge answers 503 with Retry-After and lets the client
    // retry with its Idempotency-Key instead of holding a thread.
    if [code(E::ESLURM_ERROR_ON_DESC_TO_RECORD_COPY), code(E::ESLURM_NODES_BUSY), nix::libc::EAGAIN].contains(&errno) {
        return SlurmError::Unreachable { command: COMMAND, stderr };
    }
    // sbatch checks GRES itself before it sends anything and words the
    // refusal without the submission prefix; slurmctld's check gives the
    // same code.
    if errno == code(E::ESLURM_INVALID_GRES) {
        return SlurmError::Rejected { command: COMMAND, stderr: text };
    }
    SlurmError::Rejected { command: COMMAND, stderr }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as slurmctld sends it, zeroed but for what is set here.
    fn record(job_id: u32, user_id: u32) -> ffi::slurm_job_info_t {
        // SAFETY: a plain C struct; all-zero is null pointers, zero counts
        // and JOB_PENDING.
        let mut job: ffi::slurm_job_info_t = unsafe { std::mem::zeroed() };
        job.job_id = job_id;
        job.user_id = user_id;
        job.time_limit = ffi::INFINITE;
        job
    }

    #[test]
    fn a_record_without_a_user_name_is_named_once_per_user() {
        let mut names = HashMap::new();
        let (a, b) = (record(1, 0), record(2, 0));
        // SAFETY: records built above, with null strings.
        let (a, b) = unsafe { (queue_entry(&a, &mut names).unwrap(), queue_entry(&b, &mut names).unwrap()) };
        assert_eq!((a.user.as_str(), b.user.as_str()), ("root", "root"));
        assert_eq!(names.len(), 1, "one lookup for uid 0: {names:?}");
        assert_eq!(a.state, crate::job_state::JobState::Pending);
        assert_eq!((a.array_job_id, a.time_limit, a.end), (1, None, None));
        // A uid nobody has is shown as its number, as squeue shows it.
        // SAFETY: as above.
        let unknown = unsafe { queue_entry(&record(3, 4_000_000_000), &mut names).unwrap() };
        assert_eq!(unknown.user, "4000000000");
    }
}
