//! Cloud Odyssey bridge: a REST service in front of a SLURM cluster.

/// Passwords, access and refresh tokens, revocation.
pub mod auth;
/// Command line, environment and config file -> validated `Settings`.
pub mod config;
/// `#SBATCH` lines of a script, parsed as sbatch reads them, from an allowlist.
pub mod directives;
/// `ApiError`: every error answer, rendered as RFC 9457 problem+json.
pub mod error;
/// Classifying a failed job: application, resource or infrastructure.
pub mod failure;
/// The HTTP surface: `AppState`, `app(state) -> Router`, one module per resource.
pub mod http;
/// A job's health records grouped per step, node and task.
pub mod job_health;
/// A job request and the rules that turn it into sbatch options.
pub mod jobspec;
/// Prometheus metrics and their registry.
pub mod metrics;
/// Opening a file a job's user controls (output, results) from root, safely.
pub mod owned_file;
/// Reading a kernel job's result file, as untrusted input.
pub mod results;
/// Counted slots per key (streams per user, sign-ins per address).
pub mod slots;
/// The only code that runs SLURM commands; the poller and the controller probe.
pub mod slurm;
/// SQLite: accounts, tokens, jobs and their timelines.
pub mod store;
/// Unix accounts jobs run as: lookup and the rules a mapping must pass.
pub mod unix;

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
use crate::slurm::poller::NodeSnapshot;
use crate::slurm::probe::SlurmHealth;
use crate::slurm::Slurm;
use crate::store::Store;

/// Opens the store and keys and builds the state every handler shares.
/// Background tasks are not started: `serve` does that, tests may not.
pub async fn build_state(
    settings: Settings,
    slurm_health: watch::Receiver<SlurmHealth>,
    nodes: watch::Receiver<Arc<NodeSnapshot>>,
    store: Store,
    metrics: Metrics,
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
    Ok(AppState::new(http::Shared {
        slurm: Slurm::new(settings.slurm_conf.clone(), settings.slurm_timeout),
        sbatch_slots: Arc::new(Semaphore::new(limits.max_concurrent_sbatch)),
        follow_slots: Default::default(),
        credentials,
        login_throttle: Arc::new(auth::throttle::LoginThrottle::new(
            limits.login_rate_per_address,
            limits.login_rate_per_name,
            limits.credential_slots_per_address,
        )),
        settings: Arc::new(settings),
        store,
        keys,
        revocations: Revocations::from_lists(revoked_tokens, revoked_families),
        slurm_health,
        nodes,
        metrics,
        submit_limiter: Default::default(),
        user_cache: Default::default(),
        health_secret,
        dummy_hash: Arc::new(dummy_hash),
    }))
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
    let store = open_store(&settings)?;
    let metrics = Metrics::new();
    let slurm = Slurm::new(settings.slurm_conf.clone(), settings.slurm_timeout);
    let (probe, slurm_health) = slurm::probe::spawn(slurm.clone(), settings.slurm_probe_interval);
    let (poller, nodes) =
        slurm::poller::spawn(slurm, store.clone(), metrics.clone(), settings.poll_interval, settings.slurm_timeout * 4);
    let metrics_listen = settings.metrics_listen;
    let state = build_state(settings, slurm_health, nodes, store, metrics.clone()).await?;
    let metrics_server = match metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| format!("bind metrics {addr}"))?;
            tracing::info!(%addr, "metrics listening");
            let router =
                axum::Router::new().route("/metrics", axum::routing::get(move || async move { metrics.render() }));
            Some(tokio::spawn(async move { axum::serve(listener, router).await }))
        }
        None => None,
    };
    let tls = state.settings.tls.clone();
    let addr = listener.local_addr()?;
    let app = http::app(state);
    let result = match tls {
        None => {
            tracing::info!(%addr, "bridge listening (http)");
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .with_graceful_shutdown(shutdown)
                .await
                .context("serve http")
        }
        Some((cert, key)) => {
            // ring: pure Rust and C, no cmake; one provider for the process.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .with_context(|| format!("load TLS certificate {} and key {}", cert.display(), key.display()))?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                stopper.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            tracing::info!(%addr, "bridge listening (https)");
            axum_server::from_tcp_rustls(listener.into_std()?, config)
                .handle(handle)
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await
                .context("serve https")
        }
    };
    probe.abort();
    poller.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    result
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
