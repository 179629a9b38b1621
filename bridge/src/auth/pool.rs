//! The credential pool: a few dedicated threads that run every password
//! check (argon2id hashes and PAM conversations), with a bounded queue.
//!
//! Why not the blocking pool: tokio's holds up to 512 threads, each argon2id
//! hash takes 19 MiB, and glibc gives each thread its own malloc arena that
//! keeps its pages. A login flood once took the bridge from 83 MB to 12.8 GB
//! resident and kept it there (issue #8). Here at most `threads` hashes run
//! at once, at most `queue` wait, and beyond that a login is refused at once
//! (503 with Retry-After) instead of queueing memory; the database's calls
//! stay on the blocking pool and never wait behind a hash.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Work = Box<dyn FnOnce() + Send>;

/// Makes glibc serve every allocation of 1 MiB or more with its own mmap
/// and unmap it on free. By default the threshold adapts: after the first
/// 19 MiB argon2 block is freed, later ones come from the thread's heap
/// arena and stay resident after the hash (measured: a login flood left the
/// bridge near 250 MB with only two hashing threads). Call once, first
/// thing in `main`, before any thread exists.
pub fn return_large_allocations_to_the_system() {
    // SAFETY: mallopt only sets a tunable; called before other threads run.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Handle to the pool's threads; cloning shares them. The threads live as
/// long as any handle (they end when the last sender is dropped).
#[derive(Clone)]
pub struct CredentialPool {
    sender: SyncSender<Work>,
    pub threads: usize,
    pub queue: usize,
}

/// Every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many password checks in progress; retry in a moment")]
pub struct Busy;

impl CredentialPool {
    pub fn new(threads: usize, queue: usize) -> CredentialPool {
        let (sender, receiver) = sync_channel::<Work>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for idx in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("credentials-{idx}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let next = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(work) => work(),
                        Err(_) => return,
                    }
                })
                .expect("spawn credential thread");
        }
        CredentialPool { sender, threads: threads.max(1), queue }
    }

    /// Runs `work` on a pool thread; `Busy` at once when the queue is full.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Work = Box::new(move || {
            let _ = tx.send(work());
        });
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(Busy),
        }
        rx.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let pool = CredentialPool::new(1, 1);
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    wait.recv().ok()
                })
                .await
            })
        };
        // The one thread is now busy with the blocker.
        tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
        // One job fits in the queue behind it...
        let (queued_ran, queued_done) = std::sync::mpsc::channel::<()>();
        assert!(pool.sender.try_send(Box::new(move || queued_ran.send(()).unwrap())).is_ok());
        // ...and the next is refused at once.
        assert!(pool.run(|| 1).await.is_err());
        release.send(()).unwrap();
        assert!(blocker.await.unwrap().is_ok());
        // Once the queued job has run, the queue is empty again.
        tokio::task::spawn_blocking(move || queued_done.recv().unwrap()).await.unwrap();
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
