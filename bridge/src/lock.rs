//! One bridge per data directory: `serve` holds an exclusive lock on
//! `<data-dir>/bridge.lock` for as long as it runs, so a second bridge on
//! the same database, or a `bridge restore` under a running one, is
//! refused instead of corrupting the history. The kernel drops the lock
//! when the process ends, however it ends.

use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

pub struct DataDirLock {
    _lock: Flock<std::fs::File>,
}

impl DataDirLock {
    pub fn take(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        let path = data_dir.join("bridge.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(DataDirLock { _lock: lock }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(anyhow::anyhow!(
                "a bridge is running on {} (it holds {}); stop it first",
                data_dir.display(),
                path.display()
            )),
            Err((_, errno)) => Err(anyhow::anyhow!("lock {}: {errno}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("odyssey-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DataDirLock::take(&dir).unwrap();
        let refused = DataDirLock::take(&dir).err().expect("a second lock");
        assert!(refused.to_string().starts_with("a bridge is running on"), "{refused}");
        drop(first);
        DataDirLock::take(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
