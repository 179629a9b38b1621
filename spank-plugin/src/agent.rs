//! Whether a node's delivery agent runs: `odyssey-health-flush --watch`
//! holds a write lock on its lock file (`agent=` in plugstack.conf, `%n`
//! the node) for as long as it runs, and a step daemon asks the kernel
//! whether anyone holds it before it starts a flush of its own. Open file
//! description locks (`F_OFD_SETLK`): the kernel drops the lock when the
//! agent dies however it dies, and the question (`F_OFD_GETLK`) takes no
//! lock, so a step asking never keeps an agent from starting.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

/// A write lock on the whole file.
fn whole_file(kind: libc::c_short) -> libc::flock {
    // SAFETY: flock is plain data; all zero is a valid value (pid 0 is
    // required by the OFD commands).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock
}

/// The lock file of `pattern` for one node.
pub fn lock_path(pattern: &str, node: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(pattern.replace("%n", node))
}

/// Takes the agent's lock, held while the returned file stays open; an
/// error when another process holds it (one agent per node).
pub fn hold(path: &Path) -> Result<File, String> {
    // 0600: a lock only root can take. A user who could open the file could
    // hold a read lock on it and keep the agent from starting (steps would
    // then start flushes of their own; nothing is lost, but no agent runs).
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // An older file keeps its mode through create(): set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: {e}", path.display()))?;
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK as libc::c_short))) {
        Ok(_) => Ok(file),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => {
            Err(format!("another agent already delivers for this node (it holds {})", path.display()))
        }
        Err(e) => Err(format!("lock {}: {e}", path.display())),
    }
}

/// Whether some process holds the agent's lock. No file, or a file nobody
/// locks (an agent that died), is no agent.
pub fn running(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    // Asking whether a write lock could be taken: a read lock in the way
    // would not be an agent's, so ask about a write lock and look at what
    // comes back.
    let mut probe = whole_file(libc::F_WRLCK as libc::c_short);
    match fcntl(file.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => probe.l_type == libc::F_WRLCK as libc::c_short,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_seen_and_freed_with_its_holder() {
        let dir = std::env::temp_dir().join(format!("agent-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = lock_path(dir.join("%n.lock").to_str().unwrap(), "c1");
        assert_eq!(path, dir.join("c1.lock"));
        assert!(!running(&path), "no file is no agent");
        std::fs::write(&path, "").unwrap();
        assert!(!running(&path), "a file nobody locks is no agent");
        // A read lock, which anyone who can open the file could take, is no agent's.
        let reader = File::open(&path).unwrap();
        fcntl(reader.as_raw_fd(), FcntlArg::F_OFD_SETLK(&whole_file(libc::F_RDLCK as libc::c_short))).unwrap();
        assert!(!running(&path), "a read lock taken for an agent");
        drop(reader);
        let held = hold(&path).unwrap();
        assert!(running(&path));
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o600, "only root may lock it");
        // A second agent for the same node is refused; asking took nothing.
        assert!(hold(&path).unwrap_err().contains("another agent"));
        assert!(running(&path));
        drop(held);
        assert!(!running(&path), "the lock goes with its holder; the file stays");
        assert!(path.exists());
        let again = hold(&path).unwrap();
        assert!(running(&path));
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
