//! Cloud Odyssey bridge: a REST service in front of a SLURM cluster.

/// Command line and environment -> validated `Settings`.
pub mod config;
/// `ApiError`: every error answer, rendered as RFC 9457 problem+json.
pub mod error;
/// The HTTP surface: `AppState`, `app(state) -> Router`, one module per resource.
pub mod http;
/// The only code that runs SLURM commands, and the task that probes the controller.
pub mod slurm;

use std::future::Future;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::http::AppState;

/// Binds the configured address and serves until `shutdown` completes.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("bind {}", settings.listen))?;
    serve(listener, settings, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0`).
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let slurm = slurm::Slurm::new(settings.slurm_conf.clone(), settings.slurm_timeout);
    let (probe, slurm_health) = slurm::probe::spawn(slurm, settings.slurm_probe_interval);
    let state = AppState { slurm_health };
    tracing::info!(addr = %listener.local_addr()?, "bridge listening");
    let result = axum::serve(listener, http::app(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serve http");
    probe.abort();
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
