//! Blocking work (SQLite, waiting for a libslurm thread) without holding up
//! the async workers' other tasks, and without a thread hand-off where it
//! can be avoided.
//!
//! On the multi-threaded runtime (the bridge's) `run` works in place
//! (`block_in_place`): the worker first hands its queue to another thread,
//! so the request waits for no thread to wake up. Through the blocking pool
//! a submission's two store transactions spent 0.17 ms of their 0.59 ms in
//! hand-offs on the 2-core test machine (docs/BENCHMARKS.md, issue #9).
//! Elsewhere (the single-threaded runtimes of unit tests) `run` uses the
//! blocking pool. `pooled` always uses the pool: for work that many
//! requests do at once (reads), where keeping the workers free to accept
//! beats saving the hand-off (16 connections reading one job each: about
//! 10,600 against 8,800 requests/s in place, docs/BENCHMARKS.md). A panic in
//! the work is returned as its message.

/// Runs `f`, returning what it returns, or the message it panicked with.
pub async fn run<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
            .map_err(|payload| panic_text(payload.as_ref()));
    }
    tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
}

/// Runs `f` on the blocking pool, returning what it returns, or the message
/// it panicked with.
pub async fn pooled<T, F>(f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            panic_text(e.into_panic().as_ref())
        } else {
            e.to_string()
        }
    })
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn both_ways() {
        assert_eq!(run(|| 6 * 7).await, Ok(42));
        let panicked = run(|| -> u32 { panic!("the work failed") }).await.unwrap_err();
        assert!(panicked.contains("the work failed") || panicked.contains("panic"), "{panicked}");
    }

    #[tokio::test]
    async fn on_a_single_threaded_runtime_the_blocking_pool_runs_it() {
        both_ways().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_multi_threaded_runtime_it_runs_in_place_and_a_panic_is_an_error() {
        let caller = std::thread::current().id();
        assert_eq!(run(move || std::thread::current().id() == caller).await, Ok(true));
        both_ways().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pooled_work_runs_on_another_thread_and_a_panic_is_its_message() {
        let caller = std::thread::current().id();
        assert_eq!(pooled(move || std::thread::current().id() == caller).await, Ok(false));
        let panicked = pooled(|| -> u32 { panic!("the read failed") }).await.unwrap_err();
        assert_eq!(panicked, "the read failed");
    }
}
