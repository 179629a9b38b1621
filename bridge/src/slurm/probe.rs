//! The controller probe: one task asks SLURM whether it answers, for
//! everybody, and publishes the answer through a watch channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Slurm;
use crate::shutdown::Stopping;

/// The last probe's outcome, as /healthz shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmHealth {
    /// Whether slurmctld answered the last probe.
    pub reachable: bool,
    /// What it said, when it answered.
    pub controller: Option<String>,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// Unix time of the last probe; None before the first one finishes.
    pub checked_at: Option<f64>,
}

impl SlurmHealth {
    fn unknown() -> Self {
        SlurmHealth { reachable: false, controller: None, error: Some("not probed yet".into()), checked_at: None }
    }
}

/// Starts the probe; the first probe runs at once.
pub fn spawn(slurm: Slurm, interval: Duration, stopping: Stopping) -> (JoinHandle<()>, watch::Receiver<SlurmHealth>) {
    let (tx, rx) = watch::channel(SlurmHealth::unknown());
    let handle = tokio::spawn(run(slurm, interval, tx, stopping));
    (handle, rx)
}

#[tracing::instrument(skip_all)]
async fn run(slurm: Slurm, interval: Duration, tx: watch::Sender<SlurmHealth>, mut stopping: Stopping) {
    let mut ticker = tokio::time::interval(interval);
    // A slow probe should not be followed by a burst of catch-up probes.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stopping.wait() => return,
        }
        let result = slurm.ping().await;
        let checked_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).ok();
        let health = match result {
            Ok(controller) => {
                SlurmHealth { reachable: true, controller: Some(controller.summary), error: None, checked_at }
            }
            Err(err) => SlurmHealth { reachable: false, controller: None, error: Some(err.to_string()), checked_at },
        };
        let was_reachable = tx.borrow().reachable;
        if health.reachable != was_reachable || tx.borrow().checked_at.is_none() {
            match &health.error {
                None => tracing::info!("slurmctld answers"),
                Some(err) => tracing::warn!(%err, "slurmctld does not answer"),
            }
        }
        if tx.send(health).is_err() {
            return; // every receiver is gone: the server stopped
        }
    }
}
