//! Graceful shutdown: one `Stop` is raised when the bridge is asked to
//! stop; the poller and probe finish the round they are in, output streams
//! end, and the HTTP server stops accepting and lets requests in flight
//! finish (`--shutdown-grace`).

use std::sync::Arc;

use tokio::sync::watch;

/// Raised once, by `bridge::serve` when its shutdown future completes.
#[derive(Clone)]
pub struct Stop(Arc<watch::Sender<bool>>);

/// Held by every task that must end when the bridge stops.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stop {
    pub fn new() -> (Stop, Stopping) {
        let (tx, rx) = watch::channel(false);
        (Stop(Arc::new(tx)), Stopping(rx))
    }

    pub fn raise(&self) {
        self.0.send_replace(true);
    }
}

impl Stopping {
    /// A `Stopping` that never fires (router tests, which run no server).
    pub fn never() -> Stopping {
        let (tx, rx) = watch::channel(false);
        // Kept alive for the process: a dropped sender would read as "stop".
        std::mem::forget(tx);
        Stopping(rx)
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the stop is raised (at once if it already was).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            // The `Stop` is gone without raising: nothing will stop us.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_stop_is_raised() {
        let (stop, stopping) = Stop::new();
        let mut waiter = stopping.clone();
        let task = tokio::spawn(async move { waiter.wait().await });
        assert!(!stopping.is_set());
        stop.raise();
        task.await.unwrap();
        assert!(stopping.is_set());
        // A late waiter returns at once.
        stopping.clone().wait().await;
    }
}
