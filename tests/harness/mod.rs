//! Test harness for the real local cluster that `slurm-conf/cluster` builds.
//!
//! Nothing here fakes SLURM: `TestCluster::ensure()` brings the cluster up
//! (idempotently), and every helper runs the real commands against it with
//! a bounded time. A failure prints the daemons' logs, and a missing
//! prerequisite fails the test with the command that fixes it; nothing skips.

pub mod app;
pub mod idp;
pub mod process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The cluster this test process uses, with the paths every test needs.
#[derive(Debug)]
pub struct TestCluster {
    pub repo: PathBuf,
    pub state_dir: PathBuf,
    pub slurm_conf: PathBuf,
    /// The "cluster filesystem": every node sees it, unlike /tmp.
    pub shared_dir: PathBuf,
    pub n_nodes: usize,
}

/// Tests that stop, kill or rebuild parts of the cluster take the write
/// side; every other test takes the read side, so they never see a cluster
/// being torn down under them.
static LIFECYCLE: RwLock<()> = RwLock::new(());
static CLUSTER: OnceLock<TestCluster> = OnceLock::new();

/// MPI jobs run one at a time across the test process. Each MPI job at 6
/// ranks already oversubscribes the 2-core machine; two at once (beside the
/// other tests' jobs) can starve Open MPI's TCP connection set-up between
/// nodes until it fails ("failed to TCP connect", open-mpi/ompi#11508).
static MPI_JOBS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Held while a test runs an MPI job (see `MPI_JOBS`).
pub fn mpi_job_slot() -> MpiSlot {
    MpiSlot(MPI_JOBS.lock().unwrap_or_else(|e| e.into_inner()))
}

// The guards below are process-wide locks between tests, held for a whole
// test on purpose, across its awaits: each test runs its own runtime, and
// the lock orders tests, not tasks. Newtypes say so (and keep clippy's
// await_holding_lock for locks that guard data).

/// A running MPI job's turn (`mpi_job_slot`).
pub struct MpiSlot(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);
/// A test's share of the cluster (`TestCluster::ensure`).
pub struct SharedCluster(#[allow(dead_code)] RwLockReadGuard<'static, ()>);
/// A test's sole use of the cluster (`TestCluster::exclusive`).
pub struct ExclusiveCluster(#[allow(dead_code)] RwLockWriteGuard<'static, ()>);

/// How long any single command may run before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

impl TestCluster {
    /// The cluster, brought up on first use, shared by the test (read lock).
    pub fn ensure() -> (&'static TestCluster, SharedCluster) {
        let guard = LIFECYCLE.read().unwrap_or_else(|e| e.into_inner());
        (Self::get(), SharedCluster(guard))
    }

    /// The cluster, for a test that changes its daemons (write lock).
    pub fn exclusive() -> (&'static TestCluster, ExclusiveCluster) {
        let guard = LIFECYCLE.write().unwrap_or_else(|e| e.into_inner());
        (Self::get(), ExclusiveCluster(guard))
    }

    fn get() -> &'static TestCluster {
        CLUSTER.get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf();
            let state_dir =
                PathBuf::from(std::env::var("ODYSSEY_STATE_DIR").unwrap_or_else(|_| "/var/lib/odyssey-cluster".into()));
            let n_nodes = std::env::var("ODYSSEY_NODES").ok().and_then(|n| n.parse().ok()).unwrap_or(3);
            let cluster = TestCluster {
                slurm_conf: state_dir.join("etc/slurm.conf"),
                shared_dir: state_dir.join("shared"),
                repo,
                state_dir,
                n_nodes,
            };
            cluster.up();
            cluster
        })
    }

    /// `slurm-conf/cluster up`: idempotent, so cheap when already healthy.
    pub fn up(&self) {
        let out = self.cluster_script(&["up"]);
        assert!(out.status.success(), "cluster up failed:\n{}\n{}", text(&out.stderr), self.logs());
    }

    /// Runs `slurm-conf/cluster <args>` for this cluster.
    pub fn cluster_script(&self, args: &[&str]) -> Output {
        let script = self.repo.join("slurm-conf/cluster");
        let mut command = Command::new("bash");
        command
            .arg(script)
            .args(args)
            .env("ODYSSEY_STATE_DIR", &self.state_dir)
            .env("ODYSSEY_NODES", self.n_nodes.to_string());
        run_bounded(command)
    }

    /// A SLURM command (or anything else) with this cluster's SLURM_CONF,
    /// run from the shared scratch directory: jobs start in the submitter's
    /// directory, and the checkout may sit under /tmp, which no node shares.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.slurm_conf).current_dir(self.shared_dir.join("scratch"));
        command
    }

    /// Runs `program args` as root with the cluster's SLURM_CONF.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = self.command(program);
        command.args(args);
        run_bounded(command)
    }

    /// Runs `program args` as `user`, the way a login shell on the cluster
    /// would: `runuser` drops root before SLURM sees the request.
    pub fn run_as(&self, user: &str, program: &str, args: &[&str]) -> Output {
        let mut command = self.command("runuser");
        command.args(["-u", user, "--", program]).args(args).current_dir(self.user_dir(user));
        run_bounded(command)
    }

    /// Like `run`, but the test fails (with logs) unless it succeeds; stdout.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        self.expect_success(&out, program, args)
    }

    /// Like `run_as`, but the test fails (with logs) unless it succeeds; stdout.
    pub fn ok_as(&self, user: &str, program: &str, args: &[&str]) -> String {
        let out = self.run_as(user, program, args);
        self.expect_success(&out, program, args)
    }

    fn expect_success(&self, out: &Output, program: &str, args: &[&str]) -> String {
        assert!(
            out.status.success(),
            "`{program} {}` failed ({}):\nstdout: {}\nstderr: {}\n{}",
            args.join(" "),
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.logs()
        );
        text(&out.stdout)
    }

    /// The shared directory of a test account (shared/users/<name>).
    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.shared_dir.join("users").join(user)
    }

    /// The MPI kernel binary as installed on the shared filesystem.
    pub fn mpi_binary(&self) -> PathBuf {
        self.installed(self.shared_dir.join("bin/odyssey-mpi"), "target/release/odyssey-mpi")
    }

    /// The SPANK plugin as installed into the cluster's plugin stack.
    pub fn spank_plugin(&self) -> PathBuf {
        self.installed(self.state_dir.join("lib/odyssey_spank.so"), "target/release/libodyssey_spank.so")
    }

    /// An artifact `scripts/build.sh` installs into the cluster. A missing
    /// copy, or one older than the build, fails the test with that
    /// instruction rather than testing an old build.
    fn installed(&self, installed: PathBuf, built: &str) -> PathBuf {
        let built = self.repo.join(built);
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        match (modified(&installed), modified(&built)) {
            (None, _) => panic!("{} is missing: run scripts/build.sh (or scripts/test.sh)", installed.display()),
            (Some(i), Some(b)) if b > i => {
                panic!("{} is older than {}: run scripts/build.sh", installed.display(), built.display())
            }
            _ => installed,
        }
    }

    /// "name state" of every node, from sinfo.
    pub fn node_states(&self) -> Vec<(String, String)> {
        let out = self.ok("sinfo", &["-h", "-N", "-o", "%N %T"]);
        let mut states: Vec<(String, String)> =
            out.lines().filter_map(|l| l.split_once(' ')).map(|(n, s)| (n.to_owned(), s.trim().to_owned())).collect();
        states.sort();
        states.dedup();
        states
    }

    /// Waits (bounded) until `check` holds, polling every 200 ms.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Submits a batch job and waits until SLURM no longer lists it as
    /// pending or running; returns its id.
    pub fn sbatch_wait(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut full = vec!["--parsable"];
        full.extend_from_slice(args);
        let id = match user {
            Some(user) => self.ok_as(user, "sbatch", &full),
            None => self.ok("sbatch", &full),
        };
        let id = id.trim().split(';').next().unwrap_or_default().to_owned();
        assert!(id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty(), "sbatch printed {id:?}");
        self.wait_for(&format!("job {id} to finish"), COMMAND_TIMEOUT, || {
            let state = self.ok("squeue", &["-h", "-j", &id, "-o", "%T"]);
            !matches!(state.trim(), "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING")
        });
        id
    }

    /// The tail of every daemon log, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.cluster_script(&["logs"]);
        let queue = self.run("squeue", &["-o", "%A %u %T %M %D %R %j"]);
        format!(
            "---- squeue\n{}{}---- cluster logs\n{}{}",
            text(&queue.stdout),
            text(&queue.stderr),
            text(&out.stdout),
            text(&out.stderr)
        )
    }
}

/// Runs a command under coreutils `timeout`, so a hung SLURM command fails
/// the test instead of hanging it.
pub fn run_bounded(command: Command) -> Output {
    let mut bounded = Command::new("timeout");
    bounded.arg("--kill-after=5").arg(COMMAND_TIMEOUT.as_secs().to_string()).arg(command.get_program());
    bounded.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => bounded.env(key, value),
            None => bounded.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        bounded.current_dir(dir);
    }
    bounded.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()))
}

/// A free port below the ephemeral range, for a bridge or daemon a test
/// starts as a process (one counter for the whole test binary).
pub fn free_port() -> u16 {
    let start = 20000 + (std::process::id() as u16 % 97) * 100;
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    loop {
        let port = start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 9000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A path in the shared filesystem unique to this test run.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}
