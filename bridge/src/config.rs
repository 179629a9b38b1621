//! Command line, environment and config file -> validated `Settings`.
//!
//! Precedence: command line, then environment (`BRIDGE_*`), then the TOML
//! file given by `--config` (keys are the long flag names with `_`), then
//! the defaults below.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::auth::password::PasswordCost;
use crate::scheduling::{Ordering, Policy, Routing};
use crate::store::users::Role;

/// Cloud Odyssey bridge: REST service in front of a SLURM cluster.
#[derive(Debug, Parser)]
#[command(name = "bridge", version)]
pub struct Cli {
    /// TOML file with settings (keys as the long flags, `-` written `_`).
    #[arg(long, env = "BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address to serve HTTP on. Loopback by default: expose it deliberately.
    #[arg(long, env = "BRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain: serve HTTPS (with --tls-key). Without both,
    /// plain HTTP, e.g. behind a TLS-terminating proxy.
    #[arg(long, env = "BRIDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "BRIDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Address for Prometheus /metrics, kept off the API listener so it
    /// need not be exposed with it.
    #[arg(long, env = "BRIDGE_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// Directory for the database (bridge.db) and the JWT key (jwt.key).
    #[arg(long, env = "BRIDGE_DATA_DIR", default_value = "/var/lib/odyssey-bridge")]
    pub data_dir: PathBuf,

    /// slurm.conf the SLURM commands use. Unset means SLURM's own default
    /// lookup, which fails on machines with no /etc/slurm/slurm.conf.
    #[arg(long, env = "SLURM_CONF")]
    pub slurm_conf: Option<PathBuf>,

    /// Seconds between controller probes (`scontrol ping`). 5 s keeps
    /// /healthz fresh while costing slurmctld one RPC per probe.
    #[arg(long, env = "BRIDGE_SLURM_PROBE_INTERVAL", default_value_t = 5.0)]
    pub slurm_probe_interval: f64,

    /// Seconds between job polls (one squeue for everybody). 1 s: job states
    /// are at most a second old, at one cheap RPC per second.
    #[arg(long, env = "BRIDGE_POLL_INTERVAL", default_value_t = 1.0)]
    pub poll_interval: f64,

    /// Seconds any SLURM command may take before it counts as failed. SLURM's
    /// own MessageTimeout is 10 s; a request should give up sooner.
    #[arg(long, env = "BRIDGE_SLURM_TIMEOUT", default_value_t = 5.0)]
    pub slurm_timeout: f64,

    /// Lifetime of an access token in seconds (15 min: a stolen token is
    /// short-lived; refresh tokens keep sessions going).
    #[arg(long, env = "BRIDGE_ACCESS_TTL", default_value_t = 900)]
    pub access_ttl: u64,

    /// Lifetime of a refresh token in seconds (30 days).
    #[arg(long, env = "BRIDGE_REFRESH_TTL", default_value_t = 30 * 24 * 3600)]
    pub refresh_ttl: u64,

    /// Whether anyone may register (as role user). Closed means only admins
    /// create accounts (`bridge user add`).
    #[arg(long, env = "BRIDGE_REGISTRATION", value_enum, default_value_t = Registration::Open)]
    pub registration: Registration,

    /// Lowest Unix uid a job may run as: system accounts stay out of reach.
    #[arg(long, env = "BRIDGE_UID_FLOOR", default_value_t = 1000)]
    pub uid_floor: u32,
    /// Highest Unix uid a job may run as. 60000 is Debian's last uid for
    /// people (adduser.conf LAST_UID): nobody (65534) and the dynamic
    /// service ranges above stay out of reach.
    #[arg(long, env = "BRIDGE_UID_CEILING", default_value_t = 60000)]
    pub uid_ceiling: u32,
    /// PAM service that proves a Unix account (`"method": "pam"` logins);
    /// /etc/pam.d/<name> must exist (bridge/pam.d/odyssey-bridge).
    #[arg(long, env = "BRIDGE_PAM_SERVICE", default_value = "odyssey-bridge")]
    pub pam_service: String,
    /// Logins and registrations per client address per minute (429 beyond):
    /// enough for a lab behind one NAT address, far too few to guess
    /// passwords.
    #[arg(long, env = "BRIDGE_LOGIN_RATE_PER_ADDRESS", default_value_t = 60)]
    pub login_rate_per_address: u32,
    /// Logins per account name per minute, from any address (429 beyond).
    #[arg(long, env = "BRIDGE_LOGIN_RATE_PER_NAME", default_value_t = 10)]
    pub login_rate_per_name: u32,
    /// Threads that check passwords (argon2id, PAM). Each argon2id check
    /// holds --argon2-memory-kib, so this bounds their memory; 2 matches
    /// the 2 cores of a small head node.
    #[arg(long, env = "BRIDGE_CREDENTIAL_THREADS", default_value_t = 2)]
    pub credential_threads: usize,
    /// Password checks that may wait for a thread; beyond, 503 at once.
    #[arg(long, env = "BRIDGE_CREDENTIAL_QUEUE", default_value_t = 64)]
    pub credential_queue: usize,
    /// Password checks one client address may have in progress at once
    /// (429 beyond): one address can hold at most this share of the queue,
    /// so a flood from one place never locks the others out.
    #[arg(long, env = "BRIDGE_CREDENTIAL_SLOTS_PER_ADDRESS", default_value_t = 4)]
    pub credential_slots_per_address: usize,
    /// Output streams (`?follow=true`) one user may hold open at once
    /// (429 beyond): each holds a connection and polls a file.
    #[arg(long, env = "BRIDGE_MAX_FOLLOWS_PER_USER", default_value_t = 8)]
    pub max_follows_per_user: usize,

    /// Most retries a job may ask for (`retries` on POST /v1/jobs).
    #[arg(long, env = "BRIDGE_MAX_RETRIES", default_value_t = 3)]
    pub max_retries: u32,

    /// Infrastructure failures on one node within --drain-window that make
    /// the bridge drain it (0: never).
    #[arg(long, env = "BRIDGE_DRAIN_AFTER", default_value_t = 3)]
    pub drain_after: u32,

    /// The node feature of backup workers (`cluster --spares`): retries
    /// prefer nodes with it. Empty: retries prefer nothing.
    #[arg(long, env = "BRIDGE_SPARE_FEATURE", default_value = "spare")]
    pub spare_feature: String,

    /// Seconds over which --drain-after counts a node's failures.
    #[arg(long, env = "BRIDGE_DRAIN_WINDOW", default_value_t = 600.0)]
    pub drain_window: f64,

    /// Seconds after a job that asked for health reports ended by which its
    /// batch host's node record must have arrived; later, the node counts as
    /// stale (`bridge_health_stale_nodes`).
    #[arg(long, env = "BRIDGE_HEALTH_STALE_AFTER", default_value_t = 300.0)]
    pub health_stale_after: f64,

    /// Largest request body in bytes (1 MiB: room for a script).
    #[arg(long, env = "BRIDGE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest job script in bytes.
    #[arg(long, env = "BRIDGE_MAX_SCRIPT_BYTES", default_value_t = 256 * 1024)]
    pub max_script_bytes: usize,

    /// Longest single field (name, path, env value, argv element) in bytes.
    #[arg(long, env = "BRIDGE_MAX_FIELD_BYTES", default_value_t = 4096)]
    pub max_field_bytes: usize,

    /// Most environment entries per job.
    #[arg(long, env = "BRIDGE_MAX_ENV_ENTRIES", default_value_t = 128)]
    pub max_env_entries: usize,

    /// Job submissions per user per minute; more get 429 with Retry-After.
    #[arg(long, env = "BRIDGE_SUBMIT_RATE", default_value_t = 120)]
    pub submit_rate: u32,

    /// Submissions in flight at once (sbatch processes or libslurm calls);
    /// more wait for a slot.
    #[arg(long, env = "BRIDGE_MAX_CONCURRENT_SBATCH", default_value_t = 8)]
    pub max_concurrent_sbatch: usize,

    /// How submissions reach SLURM: one libslurm RPC, or one sbatch process
    /// per job. Unset: libslurm where it loads (the library the bridge was
    /// built against, a readable slurm.conf), sbatch otherwise; the choice
    /// is logged at start and shown in /readyz. With libslurm the poller
    /// also reads the queue through it (`slurm_load_jobs`), else squeue.
    #[arg(long, env = "BRIDGE_SUBMIT_VIA", value_enum)]
    pub submit_via: Option<SubmitVia>,

    /// Threads that call libslurm (each holds one submission's RPC at a
    /// time, as that user). 4 keeps 2 cores busy while answers travel.
    #[arg(long, env = "BRIDGE_LIBSLURM_THREADS", default_value_t = 4)]
    pub libslurm_threads: usize,

    /// Where a job that names no partition goes: SLURM's default partition,
    /// the usable partitions in turn, where SLURM says it starts first, or
    /// by weight. An admin can change it at run time (PUT /v1/policy).
    #[arg(long, env = "BRIDGE_ROUTING", value_enum, default_value_t = Routing::Default)]
    pub routing: Routing,

    /// Which of the bridge's pending jobs SLURM starts first: SLURM's own
    /// priorities, or the bridge's policy set as job priorities.
    #[arg(long, env = "BRIDGE_ORDERING", value_enum, default_value_t = Ordering::Slurm)]
    pub ordering: Ordering,

    /// Partition weights for `--routing weighted`: `short=3,long=1` (a TOML
    /// table in the config file). None: weights are the idle CPUs.
    #[arg(long, env = "BRIDGE_PARTITION_WEIGHTS", default_value = "")]
    pub partition_weights: String,

    /// Unix user weights for `--ordering weighted-fair`: `alice=3,bob=1`
    /// (a TOML table in the config file); users not named weigh 1.
    #[arg(long, env = "BRIDGE_USER_WEIGHTS", default_value = "")]
    pub user_weights: String,

    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(long, env = "BRIDGE_ARGON2_MEMORY_KIB", default_value_t = 19 * 1024)]
    pub argon2_memory_kib: u32,

    /// argon2id iterations (OWASP: 2).
    #[arg(long, env = "BRIDGE_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// File holding the cluster's health-report secret (shared with the
    /// SPANK plugin). Without it, POST /v1/health-reports answers 503.
    #[arg(long, env = "BRIDGE_HEALTH_SECRET_FILE")]
    pub health_secret_file: Option<PathBuf>,

    /// Largest difference in seconds between a health report's timestamp
    /// and the bridge's clock; older reports count as replays.
    #[arg(long, env = "BRIDGE_HEALTH_MAX_SKEW", default_value_t = 300)]
    pub health_max_skew: u64,

    /// odyssey-mpi as every node sees it (on the cluster's shared
    /// filesystem): kernel jobs run it under srun.
    /// Serve the worker endpoint (mutual TLS) here, so machines can join
    /// as workers (`odyssey-worker join`); no workers without it.
    #[arg(long, env = "BRIDGE_WORKER_LISTEN")]
    pub worker_listen: Option<SocketAddr>,

    /// The worker endpoint's names in its certificate and URL (IP addresses
    /// or DNS names, comma-separated; the first is the URL's). Default: the
    /// --worker-listen address, unless that is 0.0.0.0 or ::.
    #[arg(long, env = "BRIDGE_WORKER_NAMES", default_value = "")]
    pub worker_names: String,

    /// The munge key joined workers receive over mutual TLS.
    #[arg(long, env = "BRIDGE_MUNGE_KEY_FILE", default_value = "/etc/munge/munge.key")]
    pub munge_key_file: PathBuf,

    /// Seconds a worker certificate is valid (30 days; workers renew it
    /// after two thirds of that).
    #[arg(long, env = "BRIDGE_WORKER_CERT_LIFETIME", default_value_t = 30.0 * 86400.0)]
    pub worker_cert_lifetime: f64,

    /// Seconds without a heartbeat after which a worker is lost.
    #[arg(long, env = "BRIDGE_WORKER_LOST_AFTER", default_value_t = 30.0)]
    pub worker_lost_after: f64,

    #[arg(long, env = "BRIDGE_MPI_BINARY", default_value = "/var/lib/odyssey-cluster/shared/bin/odyssey-mpi")]
    pub mpi_binary: PathBuf,

    /// Log format: text for people, json for log collectors.
    #[arg(long, env = "BRIDGE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seconds a stopping bridge (SIGTERM, Ctrl-C) waits for requests in
    /// flight before it exits anyway. 30 s covers a submission whose sbatch
    /// takes the whole --slurm-timeout; output streams end at once.
    #[arg(long, env = "BRIDGE_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub shutdown_grace: f64,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Manage accounts from the machine, e.g. the first admin.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Write a consistent copy of the live database (the bridge may be
    /// running): to a file, or as bridge-<UTC time>.db into --dir keeping
    /// the newest --keep there (what the nightly timer runs).
    #[command(group(clap::ArgGroup::new("to").required(true).args(["dest", "dir"])))]
    Backup {
        /// Destination file; must not exist.
        dest: Option<PathBuf>,
        /// Directory for time-named backups.
        #[arg(long, conflicts_with = "dest")]
        dir: Option<PathBuf>,
        /// With --dir: how many backups to keep there (the oldest beyond
        /// this are deleted after a successful backup).
        #[arg(long, requires = "dir", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        keep: Option<u32>,
    },
    /// Put a backup back as the database. The bridge must be stopped; the
    /// database it replaces is kept beside it (bridge.db.before-restore-*).
    Restore {
        /// A file `bridge backup` wrote.
        from: PathBuf,
    },
    /// Issue a one-time join token for a worker from the machine (like
    /// `POST /v1/workers/tokens`): printed, or written to --token-file.
    WorkerToken {
        /// Seconds until it expires (60 to 604800).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// Node features the worker gets, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Write the token here (0600, must not exist); or, if the file
        /// exists, take the token in it (one made elsewhere, at least 43
        /// characters), as provisioning does for a VM that joins.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Print the OpenAPI document the bridge serves (docs/openapi.json is
    /// its output: `bridge openapi > docs/openapi.json`).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account; the password is read from stdin (one line).
    Add {
        name: String,
        #[arg(long, value_enum, default_value_t = CliRole::User)]
        role: CliRole,
        /// Unix account for the user's jobs (default: the same name).
        #[arg(long)]
        unix_user: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CliRole {
    Admin,
    User,
    Viewer,
}

impl From<CliRole> for Role {
    fn from(role: CliRole) -> Role {
        match role {
            CliRole::Admin => Role::Admin,
            CliRole::User => Role::User,
            CliRole::Viewer => Role::Viewer,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registration {
    Open,
    Closed,
}

/// How submissions reach SLURM (`--submit-via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubmitVia {
    Libslurm,
    Sbatch,
}

/// Checked settings: what the rest of the bridge reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Certificate and key files when serving HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub slurm_conf: Option<PathBuf>,
    pub slurm_probe_interval: Duration,
    pub poll_interval: Duration,
    pub slurm_timeout: Duration,
    /// None: libslurm where it loads, sbatch otherwise.
    pub submit_via: Option<SubmitVia>,
    pub libslurm_threads: usize,
    /// The routing and ordering policies from the command line or config
    /// file (an admin's `PUT /v1/policy`, stored, takes precedence).
    pub policy: Policy,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub registration: Registration,
    pub uid_floor: u32,
    pub uid_ceiling: u32,
    pub pam_service: String,
    pub limits: Limits,
    pub password_cost: PasswordCost,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub health_secret_file: Option<PathBuf>,
    pub health_max_skew: Duration,
    pub mpi_binary: PathBuf,
    /// Node draining after repeated infrastructure failures.
    pub drain: DrainRule,
    /// The feature retries prefer (None: none).
    pub spare_feature: Option<String>,
    /// How late a job's health reports may be before its node is stale.
    pub health_stale_after: Duration,
    /// The worker endpoint, when workers may join.
    pub workers: Option<WorkerEndpoint>,
    /// The OpenID providers whose tokens the bridge accepts (`[[oidc]]`).
    pub oidc: Vec<crate::auth::oidc::IssuerConfig>,
}

/// `--worker-listen` and what goes with it.
#[derive(Debug, Clone)]
pub struct WorkerEndpoint {
    pub listen: SocketAddr,
    /// Names in the endpoint's certificate; the first is the URL's host.
    pub names: Vec<String>,
    pub munge_key: PathBuf,
    pub cert_lifetime: Duration,
    pub lost_after: Duration,
}

impl WorkerEndpoint {
    pub fn url(&self) -> String {
        let host = &self.names[0];
        if host.contains(':') {
            format!("https://[{host}]:{}", self.listen.port())
        } else {
            format!("https://{host}:{}", self.listen.port())
        }
    }
}

/// When the bridge drains a node: `after` infrastructure failures within
/// `window` (0 = never).
#[derive(Debug, Clone, Copy)]
pub struct DrainRule {
    pub after: u32,
    pub window: Duration,
}

/// Every size and rate limit, by name.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_script_bytes: usize,
    pub max_field_bytes: usize,
    pub max_env_entries: usize,
    pub submit_rate_per_minute: u32,
    pub max_concurrent_sbatch: usize,
    pub login_rate_per_address: u32,
    pub login_rate_per_name: u32,
    pub credential_threads: usize,
    pub credential_queue: usize,
    pub credential_slots_per_address: usize,
    pub max_follows_per_user: usize,
    pub max_retries: u32,
}

/// A setting that is out of range, named as on the command line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--{name} must be between {min} and {max}, not {value}")]
    OutOfRange { name: &'static str, min: f64, max: f64, value: f64 },
    #[error("--slurm-conf {0} does not exist")]
    MissingSlurmConf(PathBuf),
    #[error("--{flag} {path} does not exist")]
    MissingFile { flag: &'static str, path: PathBuf },
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("--pam-service must be a file name under /etc/pam.d, not {0:?}")]
    PamService(String),
    #[error("--{flag}: {reason}")]
    Policy { flag: &'static str, reason: String },
    #[error("--worker-names: {0}")]
    WorkerNames(String),
    #[error("--mpi-binary must be an absolute path, not {0}")]
    RelativeMpiBinary(PathBuf),
}

fn range(name: &'static str, value: f64, min: f64, max: f64) -> Result<f64, ConfigError> {
    if !(min..=max).contains(&value) {
        return Err(ConfigError::OutOfRange { name, min, max, value });
    }
    Ok(value)
}

fn seconds(name: &'static str, value: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    range(name, value, min, max).map(Duration::from_secs_f64)
}

fn pam_service(name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    valid.then(|| name.to_owned()).ok_or_else(|| ConfigError::PamService(name.to_owned()))
}

impl Settings {
    /// The uid range jobs may run in.
    pub fn uid_range(&self) -> crate::unix::UidRange {
        crate::unix::UidRange { floor: self.uid_floor, ceiling: self.uid_ceiling }
    }

    pub fn from_cli(cli: &Cli) -> Result<Self, ConfigError> {
        // Not required to exist: kernel jobs answer 503 until it is installed.
        if !cli.mpi_binary.is_absolute() {
            return Err(ConfigError::RelativeMpiBinary(cli.mpi_binary.clone()));
        }
        if let Some(path) = &cli.slurm_conf {
            if !path.is_file() {
                return Err(ConfigError::MissingSlurmConf(path.clone()));
            }
        }
        let limits = Limits {
            max_body_bytes: range("max-body-bytes", cli.max_body_bytes as f64, 1024.0, 64.0 * 1024.0 * 1024.0)?
                as usize,
            max_script_bytes: range("max-script-bytes", cli.max_script_bytes as f64, 64.0, cli.max_body_bytes as f64)?
                as usize,
            max_field_bytes: range("max-field-bytes", cli.max_field_bytes as f64, 64.0, 65536.0)? as usize,
            max_env_entries: range("max-env-entries", cli.max_env_entries as f64, 0.0, 4096.0)? as usize,
            submit_rate_per_minute: range("submit-rate", f64::from(cli.submit_rate), 1.0, 1e6)? as u32,
            max_concurrent_sbatch: range("max-concurrent-sbatch", cli.max_concurrent_sbatch as f64, 1.0, 256.0)?
                as usize,
            login_rate_per_address: range("login-rate-per-address", f64::from(cli.login_rate_per_address), 1.0, 1e6)?
                as u32,
            login_rate_per_name: range("login-rate-per-name", f64::from(cli.login_rate_per_name), 1.0, 1e6)? as u32,
            credential_threads: range("credential-threads", cli.credential_threads as f64, 1.0, 64.0)? as usize,
            credential_queue: range("credential-queue", cli.credential_queue as f64, 1.0, 65536.0)? as usize,
            credential_slots_per_address: range(
                "credential-slots-per-address",
                cli.credential_slots_per_address as f64,
                1.0,
                65536.0,
            )? as usize,
            max_follows_per_user: range("max-follows-per-user", cli.max_follows_per_user as f64, 1.0, 1024.0)? as usize,
            max_retries: range("max-retries", f64::from(cli.max_retries), 0.0, 10.0)? as u32,
        };
        let tls = match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => {
                for (flag, path) in [("tls-cert", cert), ("tls-key", key)] {
                    if !path.is_file() {
                        return Err(ConfigError::MissingFile { flag, path: path.clone() });
                    }
                }
                Some((cert.clone(), key.clone()))
            }
            _ => None,
        };
        Ok(Settings {
            listen: cli.listen,
            tls,
            metrics_listen: Some(cli.metrics_listen),
            data_dir: cli.data_dir.clone(),
            slurm_conf: cli.slurm_conf.clone(),
            slurm_probe_interval: seconds("slurm-probe-interval", cli.slurm_probe_interval, 0.1, 3600.0)?,
            poll_interval: seconds("poll-interval", cli.poll_interval, 0.05, 3600.0)?,
            slurm_timeout: seconds("slurm-timeout", cli.slurm_timeout, 0.1, 600.0)?,
            submit_via: cli.submit_via,
            libslurm_threads: range("libslurm-threads", cli.libslurm_threads as f64, 1.0, 64.0)? as usize,
            policy: policy(cli)?,
            access_ttl: seconds("access-ttl", cli.access_ttl as f64, 10.0, 86400.0)?,
            refresh_ttl: seconds("refresh-ttl", cli.refresh_ttl as f64, 60.0, 365.0 * 86400.0)?,
            registration: cli.registration,
            // Never 0: whatever the configuration, no job runs as root.
            uid_floor: range("uid-floor", f64::from(cli.uid_floor), 1.0, f64::from(u32::MAX))? as u32,
            uid_ceiling: range(
                "uid-ceiling",
                f64::from(cli.uid_ceiling),
                f64::from(cli.uid_floor),
                f64::from(u32::MAX),
            )? as u32,
            pam_service: pam_service(&cli.pam_service)?,
            limits,
            password_cost: PasswordCost {
                memory_kib: range("argon2-memory-kib", f64::from(cli.argon2_memory_kib), 8.0, 4194304.0)? as u32,
                iterations: range("argon2-iterations", f64::from(cli.argon2_iterations), 1.0, 100.0)? as u32,
            },
            log_format: cli.log_format,
            shutdown_grace: seconds("shutdown-grace", cli.shutdown_grace, 0.0, 3600.0)?,
            health_secret_file: cli.health_secret_file.clone(),
            health_max_skew: seconds("health-max-skew", cli.health_max_skew as f64, 1.0, 86400.0)?,
            mpi_binary: cli.mpi_binary.clone(),
            spare_feature: spare_feature(&cli.spare_feature)?,
            drain: DrainRule {
                after: range("drain-after", f64::from(cli.drain_after), 0.0, 1000.0)? as u32,
                window: seconds("drain-window", cli.drain_window, 1.0, 7.0 * 86400.0)?,
            },
            health_stale_after: seconds("health-stale-after", cli.health_stale_after, 1.0, 86400.0)?,
            workers: worker_endpoint(cli)?,
            oidc: oidc_issuers(cli.config.as_deref())?,
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("bridge.db")
    }

    pub fn jwt_key_path(&self) -> PathBuf {
        self.data_dir.join("jwt.key")
    }
}

fn worker_endpoint(cli: &Cli) -> Result<Option<WorkerEndpoint>, ConfigError> {
    let Some(listen) = cli.worker_listen else { return Ok(None) };
    let mut names: Vec<String> =
        cli.worker_names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        if listen.ip().is_unspecified() {
            return Err(ConfigError::WorkerNames(format!(
                "--worker-listen {listen} names no address workers can reach: give the endpoint's names"
            )));
        }
        names.push(listen.ip().to_string());
    }
    for name in &names {
        let ok = name.parse::<std::net::IpAddr>().is_ok()
            || (name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }));
        if !ok {
            return Err(ConfigError::WorkerNames(format!("{name:?} is neither an IP address nor a DNS name")));
        }
    }
    Ok(Some(WorkerEndpoint {
        listen,
        names,
        munge_key: cli.munge_key_file.clone(),
        cert_lifetime: seconds("worker-cert-lifetime", cli.worker_cert_lifetime, 60.0, 3650.0 * 86400.0)?,
        lost_after: seconds("worker-lost-after", cli.worker_lost_after, 1.0, 86400.0)?,
    }))
}

/// A feature name as SLURM takes it, or nothing.
fn spare_feature(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > 64 || !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(ConfigError::Policy {
            flag: "spare-feature",
            reason: format!("not a node feature name: {value:?}"),
        });
    }
    Ok(Some(value.to_owned()))
}

/// The policy the flags describe, checked like an admin's.
fn policy(cli: &Cli) -> Result<Policy, ConfigError> {
    let weights = |flag: &'static str, text: &str| {
        crate::scheduling::parse_weights(text).map_err(|reason| ConfigError::Policy { flag, reason })
    };
    let policy = Policy {
        routing: cli.routing,
        ordering: cli.ordering,
        partition_weights: weights("partition-weights", &cli.partition_weights)?,
        user_weights: weights("user-weights", &cli.user_weights)?,
    };
    policy.check().map_err(|e| ConfigError::Policy {
        flag: if e.field.starts_with("user") { "user-weights" } else { "partition-weights" },
        reason: e.to_string(),
    })?;
    Ok(policy)
}

/// The `[[oidc]]` tables of the config file (issue #15): a list of tables
/// does not fit a flag, so it is read from the file alone.
fn oidc_issuers(path: Option<&Path>) -> Result<Vec<crate::auth::oidc::IssuerConfig>, ConfigError> {
    let Some(path) = path else { return Ok(Vec::new()) };
    let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let Some(oidc) = read_table(path)?.remove("oidc") else { return Ok(Vec::new()) };
    let issuers: Vec<crate::auth::oidc::IssuerConfig> =
        oidc.try_into().map_err(|e: toml::de::Error| file_err(format!("[[oidc]]: {}", e.message())))?;
    let mut seen = std::collections::HashSet::new();
    for issuer in &issuers {
        issuer.check().map_err(|e| file_err(format!("[[oidc]]: {e}")))?;
        if !seen.insert(issuer.issuer.clone()) {
            return Err(file_err(format!("[[oidc]]: issuer {:?} is configured twice", issuer.issuer)));
        }
    }
    Ok(issuers)
}

/// The config file's top-level table; errors name the file.
fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
    text.parse().map_err(|e: toml::de::Error| file_err(e.message().to_owned()))
}

/// Reads the TOML file named by `--config` (or BRIDGE_CONFIG) and returns
/// `(BRIDGE_<KEY>, value)` pairs for the keys the environment does not set,
/// so clap sees them as environment values. Call before threads start.
pub fn config_file_env(args: &[String]) -> Result<Vec<(String, String)>, ConfigError> {
    let path = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--config=") {
            Some(p) => Some(p.to_owned()),
            None if a == "--config" => args.get(i + 1).cloned(),
            None => None,
        })
        .or_else(|| std::env::var("BRIDGE_CONFIG").ok());
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let file_err = |reason: String| ConfigError::File { path: path.clone(), reason };
    let table = read_table(Path::new(&path))?;
    let mut pairs = Vec::new();
    for (key, value) in table {
        if key == "oidc" {
            // `[[oidc]]` tables: read by `oidc_issuers`, not a flag.
            continue;
        }
        let env = if key == "slurm_conf" { "SLURM_CONF".to_owned() } else { format!("BRIDGE_{}", key.to_uppercase()) };
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            // A weights table: `[user_weights]` with `alice = 3`.
            toml::Value::Table(t) if t.values().all(|v| v.is_integer()) => {
                t.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            }
            other => return Err(file_err(format!("{key}: unsupported value {other}"))),
        };
        if std::env::var_os(&env).is_none() {
            pairs.push((env, value));
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("bridge").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_valid() {
        let settings = Settings::from_cli(&cli(&[])).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.access_ttl, Duration::from_secs(900));
        assert_eq!(settings.limits.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn out_of_range_values_are_rejected_with_their_flag_name() {
        let err = Settings::from_cli(&cli(&["--slurm-probe-interval", "0"])).unwrap_err();
        assert!(err.to_string().starts_with("--slurm-probe-interval must be"), "{err}");
        let err = Settings::from_cli(&cli(&["--max-concurrent-sbatch", "0"])).unwrap_err();
        assert!(err.to_string().starts_with("--max-concurrent-sbatch must be"), "{err}");
    }

    #[test]
    fn tls_needs_both_files_and_they_must_exist() {
        assert!(Cli::try_parse_from(["bridge", "--tls-cert", "/etc/hostname"]).is_err());
        let err = Settings::from_cli(&cli(&["--tls-cert", "/etc/hostname", "--tls-key", "/nonexistent/key.pem"]))
            .unwrap_err();
        assert_eq!(err.to_string(), "--tls-key /nonexistent/key.pem does not exist");
        let settings =
            Settings::from_cli(&cli(&["--tls-cert", "/etc/hostname", "--tls-key", "/etc/hostname"])).unwrap();
        assert!(settings.tls.is_some());
    }

    #[test]
    fn the_worker_endpoint_needs_a_name_workers_can_reach() {
        assert!(Settings::from_cli(&cli(&[])).unwrap().workers.is_none());
        let w = Settings::from_cli(&cli(&["--worker-listen", "10.199.0.1:8443"])).unwrap().workers.unwrap();
        assert_eq!(w.url(), "https://10.199.0.1:8443");
        let err = Settings::from_cli(&cli(&["--worker-listen", "0.0.0.0:8443"])).unwrap_err();
        assert!(err.to_string().starts_with("--worker-names: --worker-listen 0.0.0.0:8443 names no address"), "{err}");
        let w =
            Settings::from_cli(&cli(&["--worker-listen", "0.0.0.0:8443", "--worker-names", "head.example,10.0.0.1"]))
                .unwrap()
                .workers
                .unwrap();
        assert_eq!(w.url(), "https://head.example:8443");
        assert!(Settings::from_cli(&cli(&["--worker-listen", "[::1]:1", "--worker-names", "a b"])).is_err());
    }

    #[test]
    fn missing_slurm_conf_is_rejected() {
        let err = Settings::from_cli(&cli(&["--slurm-conf", "/nonexistent/slurm.conf"])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingSlurmConf(_)));
    }

    #[test]
    fn config_file_values_become_environment_defaults() {
        let dir = std::env::temp_dir().join(format!("bridge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        std::fs::write(&path, "submit_rate = 7\nregistration = \"closed\"\n").unwrap();
        let args = vec!["bridge".to_owned(), "--config".to_owned(), path.display().to_string()];
        let pairs = config_file_env(&args).unwrap();
        assert!(pairs.contains(&("BRIDGE_SUBMIT_RATE".to_owned(), "7".to_owned())), "{pairs:?}");
        assert!(pairs.contains(&("BRIDGE_REGISTRATION".to_owned(), "closed".to_owned())), "{pairs:?}");
        std::fs::write(&path, "submit_rate = [1]\n").unwrap();
        assert!(config_file_env(&args).unwrap_err().to_string().contains("submit_rate"));
        // Weights as a table.
        std::fs::write(&path, "ordering = \"weighted-fair\"\n[user_weights]\nalice = 3\nbob = 1\n").unwrap();
        let pairs = config_file_env(&args).unwrap();
        assert!(pairs.contains(&("BRIDGE_USER_WEIGHTS".to_owned(), "alice=3,bob=1".to_owned())), "{pairs:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn oidc_tables_are_read_from_the_file_and_checked() {
        let dir = std::env::temp_dir().join(format!("bridge-oidc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bridge.toml");
        let read = |text: &str| {
            std::fs::write(&path, text).unwrap();
            oidc_issuers(Some(&path))
        };
        let two = "submit_rate = 7\n[[oidc]]\nissuer = \"https://sso.example.org/realms/lab\"\naudience = \"a\"\n\
                   [[oidc]]\nissuer = \"http://127.0.0.1:9000\"\naudience = \"b\"\nadmin_groups = [\"ops\"]\n";
        let issuers = read(two).unwrap();
        assert_eq!(issuers.len(), 2);
        assert_eq!((issuers[1].audience.as_str(), issuers[1].admin_groups.as_slice()), ("b", &["ops".to_owned()][..]));
        assert_eq!(issuers[0].username_claim, "preferred_username");
        assert!(read("submit_rate = 7\n").unwrap().is_empty());
        for (text, says) in [
            ("[[oidc]]\nissuer = \"http://sso.example.org\"\naudience = \"a\"\n", "must be https"),
            ("[[oidc]]\nissuer = \"https://x\"\naudience = \"a\"\nkid = \"k\"\n", "unknown field `kid`"),
            ("[[oidc]]\nissuer = \"https://x\"\naudience = \"a\"\n[[oidc]]\nissuer = \"https://x\"\naudience = \"b\"\n", "configured twice"),
            ("[oidc]\nissuer = \"https://x\"\n", "[[oidc]]"),
        ] {
            let err = read(text).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("bridge.toml"), "{text}: {err}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn policies_are_checked_like_an_admins() {
        let settings = Settings::from_cli(&cli(&["--ordering", "sjf", "--user-weights", "alice=3"])).unwrap();
        assert_eq!(settings.policy.user_weights.get("alice"), Some(&3));
        let err = Settings::from_cli(&cli(&["--user-weights", "alice=0"])).unwrap_err();
        assert!(err.to_string().starts_with("--user-weights: user_weights.alice: a weight is"), "{err}");
        let err = Settings::from_cli(&cli(&["--partition-weights", "short"])).unwrap_err();
        assert!(err.to_string().starts_with("--partition-weights: expected name=weight"), "{err}");
        assert!(Cli::try_parse_from(["bridge", "--routing", "nearest"]).is_err());
    }
}
