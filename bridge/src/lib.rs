//! Cloud Odyssey bridge: a REST service in front of a SLURM cluster.

/// Passwords, access and refresh tokens, revocation.
pub mod auth;
/// Scheduled backups of the database: names by time, retention.
pub mod backups;
/// Blocking work without stalling the async workers or a thread hand-off.
pub mod blocking;
/// The cluster's nodes, CPUs and queue in prometheus-slurm-exporter's names.
pub mod cluster_metrics;
/// Command line, environment and config file -> validated `Settings`.
pub mod config;
/// `#SBATCH` lines of a script, parsed as sbatch reads them, from an allowlist.
pub mod directives;
/// Classifying a failed job: application, resource or infrastructure.
pub mod failure;
/// The HTTP surface: `AppState`, `app(state) -> Router`, one module per resource.
pub mod http;
/// A job's health records grouped per step, node and task.
pub mod job_health;
/// `JobState`: SLURM's job states and the bridge's own two, parsed once.
pub mod job_state;
/// A job request and the rules that turn it into sbatch options.
pub mod jobspec;
/// One bridge per data directory (`<data-dir>/bridge.lock`).
pub mod lock;
/// Prometheus metrics and their registry.
pub mod metrics;
/// Opening a file a job's user controls (output, results) from root, safely.
pub mod owned_file;
/// Submissions per user per minute.
pub mod rate_limit;
/// Reading a kernel job's result file, as untrusted input.
pub mod results;
/// Routing and ordering policies on top of SLURM's scheduler (issue #10).
pub mod scheduling;
/// Graceful shutdown: the `Stop` every long-lived task listens for.
pub mod shutdown;
/// Counted slots per key (streams per user, sign-ins per address).
pub mod slots;
/// The only code that runs SLURM commands; the poller and the controller probe.
pub mod slurm;
/// SQLite: accounts, tokens, jobs and their timelines.
pub mod store;
/// The submission service: validate, record, submit (sbatch), reconcile.
pub mod submission;
/// Unix accounts jobs run as: lookup and the rules a mapping must pass.
pub mod unix;
/// Machines that join as workers over mutual TLS: the cluster CA, tokens, states.
pub mod workers;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::auth::jwt::Keys;
use crate::auth::revocation::Revocations;
use crate::config::Settings;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::shutdown::{Stop, Stopping};
use crate::slurm::poller::NodeSnapshot;
use crate::slurm::probe::SlurmHealth;
use crate::slurm::Slurm;
use crate::store::Store;
use crate::submission::{SubmitHook, Submitter};

/// What the background tasks publish for the handlers.
pub struct Feeds {
    /// The controller probe's last answer.
    pub slurm_health: watch::Receiver<SlurmHealth>,
    /// The poller's last picture of the nodes.
    pub nodes: watch::Receiver<Arc<NodeSnapshot>>,
    /// Raised when the bridge stops.
    pub stopping: Stopping,
    /// The routing and ordering policies in force.
    pub policy: scheduling::ActivePolicy,
}

/// Opens the store and keys and builds the state every handler shares.
/// Background tasks are not started: `serve` does that, tests may not.
pub async fn build_state(
    settings: Settings,
    feeds: Feeds,
    store: Store,
    metrics: Metrics,
    hook: Arc<dyn SubmitHook>,
) -> anyhow::Result<AppState> {
    let keys = Keys::load_or_create(&settings.jwt_key_path(), settings.access_ttl)?;
    let (revoked_tokens, revoked_families) = store.call(|conn| store::tokens::live_revocations(conn)).await?;
    let limits = settings.limits;
    let credentials = auth::pool::CredentialPool::new(limits.credential_threads, limits.credential_queue);
    let dummy_hash = auth::password::dummy_hash(&credentials, settings.password_cost).await?;
    let health_secret = match &settings.health_secret_file {
        Some(path) => {
            let secret = std::fs::read(path).with_context(|| format!("read health secret {}", path.display()))?;
            anyhow::ensure!(secret.len() >= 32, "health secret {} is shorter than 32 bytes", path.display());
            Some(secret)
        }
        None => None,
    };
    let workers = match &settings.workers {
        Some(endpoint) => Some(Arc::new(workers::Workers {
            ca: workers::ca::Ca::load_or_create(&settings.data_dir.join("ca"))?,
            endpoint: endpoint.url(),
            munge_key: endpoint.munge_key.clone(),
            cert_lifetime: endpoint.cert_lifetime,
            lost_after: endpoint.lost_after,
        })),
        None => None,
    };
    let oidc = auth::oidc::Oidc::new(&settings.oidc, metrics.oidc_key_fetches.clone())?;
    let settings = Arc::new(settings);
    let slurm = submission_path(&settings)?;
    let submitter = Submitter {
        settings: settings.clone(),
        store: store.clone(),
        slurm: slurm.clone(),
        metrics: metrics.clone(),
        limiter: Default::default(),
        sbatch_slots: Arc::new(Semaphore::new(limits.max_concurrent_sbatch)),
        hook,
        controller: feeds.slurm_health.clone(),
        policy: feeds.policy,
        router: Default::default(),
        nodes: feeds.nodes.clone(),
        accounts: Default::default(),
    };
    Ok(AppState::new(http::Shared {
        slurm,
        submitter,
        stopping: feeds.stopping,
        follow_slots: Default::default(),
        credentials,
        login_throttle: Arc::new(auth::throttle::LoginThrottle::new(
            limits.login_rate_per_address,
            limits.login_rate_per_name,
            limits.credential_slots_per_address,
        )),
        settings,
        store,
        keys,
        revocations: Revocations::from_lists(revoked_tokens, revoked_families),
        slurm_health: feeds.slurm_health,
        nodes: feeds.nodes,
        metrics,
        user_cache: Default::default(),
        health_secret,
        job_nodes: Default::default(),
        workers,
        oidc,
        oidc_accounts: Default::default(),
        dummy_hash: Arc::new(dummy_hash),
    }))
}

/// The SLURM handle submissions use: through libslurm unless
/// `--submit-via sbatch`, or unless libslurm does not load and the choice
/// was left to the bridge. Logs the choice.
fn submission_path(settings: &Settings) -> anyhow::Result<Slurm> {
    let slurm = Slurm::new(settings.slurm_conf.clone(), settings.slurm_timeout);
    if settings.submit_via == Some(config::SubmitVia::Sbatch) {
        tracing::info!("submitting through sbatch (--submit-via sbatch)");
        return Ok(slurm);
    }
    match slurm::Libslurm::load(settings.slurm_conf.as_deref(), settings.libslurm_threads) {
        Ok(libslurm) => {
            tracing::info!(libslurm = %libslurm.description, "submitting through libslurm");
            Ok(slurm.with_libslurm(libslurm))
        }
        Err(why) if settings.submit_via.is_none() => {
            tracing::warn!("libslurm does not load ({why}); submitting through sbatch");
            Ok(slurm)
        }
        Err(why) => anyhow::bail!("--submit-via libslurm: libslurm does not load: {why}"),
    }
}

/// Opens (creating) the data directory and the database.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("create data directory {}", settings.data_dir.display()))?;
    // The database and key are secrets: nobody else may list or read them.
    std::fs::set_permissions(&settings.data_dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("chmod 700 {}", settings.data_dir.display()))?;
    Ok(Store::open(&settings.db_path())?)
}

/// Binds the configured addresses and serves until `shutdown` completes.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen).await.with_context(|| format!("bind {}", settings.listen))?;
    serve(listener, settings, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, settings, shutdown, Arc::new(submission::NoHook)).await
}

/// `serve`, with a test's `SubmitHook` in the submission path.
///
/// When `shutdown` completes the bridge stops accepting, lets requests in
/// flight finish (`--shutdown-grace`), ends output streams, and waits for
/// the poller to finish its round before it returns.
pub async fn serve_with(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hook: Arc<dyn SubmitHook>,
) -> anyhow::Result<()> {
    let store = open_store(&settings)?;
    // Held until this function returns: one bridge per data directory.
    let _lock = lock::DataDirLock::take(&settings.data_dir)?;
    let metrics = Metrics::new();
    let (stop, stopping) = Stop::new();
    let slurm = Slurm::new(settings.slurm_conf.clone(), settings.slurm_timeout);
    let (probe, slurm_health) = slurm::probe::spawn(slurm.clone(), settings.slurm_probe_interval, stopping.clone());
    // The probe's answer as a gauge (`bridge_slurmctld_up`).
    let mut probed = slurm_health.clone();
    let up_gauge = metrics.slurmctld_up.clone();
    tokio::spawn(async move {
        while probed.changed().await.is_ok() {
            let reachable = probed.borrow().reachable;
            up_gauge.set(i64::from(reachable));
        }
    });
    // Submissions recorded before this moment belong to a bridge that
    // stopped: `Submitter::recover` completes them, the poller leaves them.
    let started = store::now();
    let policy = scheduling::ActivePolicy::new(match store.read(store::policy::load).await? {
        Some((policy, by, at)) => {
            tracing::info!(set_by = %by, set_at = at, "using the policy an admin set (PUT /v1/policy), not the config file's");
            policy
        }
        None => settings.policy.clone(),
    });
    {
        let p = policy.get();
        tracing::info!(routing = p.routing.as_str(), ordering = p.ordering.as_str(), "scheduling policy");
    }
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let (poller, nodes) = slurm::poller::spawn(
        slurm,
        store.clone(),
        metrics.clone(),
        slurm::poller::PollSettings {
            interval: settings.poll_interval,
            submit_grace: settings.slurm_timeout * 4,
            started,
            drain: settings.drain,
            health_stale_after: settings.health_stale_after,
            retries: retry_tx,
        },
        policy.clone(),
        stopping.clone(),
    );
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("stopping: no new connections; finishing requests in flight and the poll round");
            stop.raise();
        })
    };
    let metrics_listen = settings.metrics_listen;
    let (tls, grace) = (settings.tls.clone(), settings.shutdown_grace);
    let feeds = Feeds { slurm_health, nodes, stopping: stopping.clone(), policy };
    let served = async {
        let state = build_state(settings, feeds, store, metrics.clone(), hook).await?;
        let recovery = tokio::spawn(recover(state.submitter.clone(), started, stopping.clone()));
        // Discovery and keys of the OpenID providers, so the log says now
        // whether each is reachable (tokens fetch again if not).
        let oidc = state.oidc.clone();
        tokio::spawn(async move { oidc.warm_up().await });
        // The poller's retries, submitted one at a time as they come.
        let retrier = {
            let submitter = state.submitter.clone();
            tokio::spawn(async move {
                while let Some(id) = retry_rx.recv().await {
                    submitter.retry(id).await;
                }
            })
        };
        let metrics_server = match metrics_listen {
            Some(addr) => Some(http::server::spawn_metrics(addr, metrics, stopping.clone()).await?),
            None => None,
        };
        let worker_server = match (&state.settings.workers, &state.workers) {
            (Some(endpoint), Some(workers)) => {
                let config = workers.ca.server_config(&endpoint.names)?;
                let app = http::worker_api::app(state.clone());
                Some(http::server::spawn_workers(endpoint.listen, app, config, stopping.clone(), grace).await?)
            }
            _ => None,
        };
        let result = http::server::serve_api(listener, http::app(state), tls, stopping.clone(), grace).await;
        stop.raise();
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        if let Some(server) = worker_server {
            let _ = server.await;
        }
        let _ = recovery.await;
        retrier.abort();
        result
    };
    let result = served.await;
    // Whatever ended the server (the signal or an error), the background
    // tasks stop the same way: the poller finishes the round it is in.
    stop.raise();
    stopper.abort();
    let _ = poller.await;
    let _ = probe.await;
    tracing::info!("stopped");
    result
}

/// Completes the submissions an earlier bridge left unfinished, retrying
/// while SLURM does not answer (every 5 s) until it is done or the bridge stops.
async fn recover(submitter: submission::Submitter, started: f64, mut stopping: Stopping) {
    loop {
        match submitter.recover(started).await {
            Ok(0) => return,
            Ok(n) => {
                tracing::info!(completed = n, "completed the submissions a stopped bridge left");
                return;
            }
            Err(err) => tracing::warn!(%err, "cannot complete the submissions a stopped bridge left yet; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            () = stopping.wait() => return,
        }
    }
}

/// Completes on SIGINT or SIGTERM, so in-flight requests finish first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed the other signal still works.
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
