//! Running a SLURM command with a user's authority instead of root's.
//!
//! The bridge runs as root, and sbatch obeys what it reads with the rights
//! of whoever runs it: `#SBATCH --bbf=/etc/shadow` pastes a root-only file
//! into the job, `--export-file` loads one into its environment, root-only
//! options pass (cluster-notes.md, "Found on 2026-12-03"). So the child runs
//! with the user's groups, gid and uid from its first instruction, and
//! enters the working directory as the user. munge then vouches for the
//! user, and slurmctld applies the user's limits and refuses root-only
//! options.
//!
//! How: Linux credentials belong to each thread, and a new process copies
//! those of the thread that creates it. So the spawning thread takes the
//! user's groups, gid and uid for the length of one `posix_spawn` (raw
//! system calls: glibc's wrappers would change every thread of the
//! process), keeping root as its saved uid to return to. The child is born
//! as the user; `execve` then makes every id the user's and leaves it no
//! capability. A `fork` with a `pre_exec` hook would do the same, but copies
//! the bridge's page tables on every submission: measured here 2.4-7 ms per
//! spawn at 40-80 MB resident, against 0.8 ms for `posix_spawn` (vfork).
//!
//! Every spawn of a SLURM command holds `SPAWN_LOCK`: shared by spawns that
//! pass no descriptor, exclusive for one that does (the job's environment),
//! which is inheritable only inside it, so no other child can inherit it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::process::{Child, Command};

use crate::unix::UnixAccount;

/// Who a command runs as: a checked Unix account (`unix::resolve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

impl From<UnixAccount> for Identity {
    fn from(account: UnixAccount) -> Identity {
        Identity { name: account.name, uid: account.uid, gid: account.gid, groups: account.groups, home: account.home }
    }
}

/// errno values of a failed `chdir`; the other steps of the spawn fail with
/// EPERM, EINVAL or EAGAIN, and sbatch's own path was found at start-up.
pub fn is_chdir_errno(errno: i32) -> bool {
    use nix::libc::{EACCES, ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR};
    matches!(errno, ENOENT | EACCES | ENOTDIR | ELOOP | ENAMETOOLONG)
}

/// Keeps an inheritable descriptor from reaching other children (see the
/// module comment).
static SPAWN_LOCK: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Spawns `command` as root (the poller's reads), under `SPAWN_LOCK`.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    let _shared = SPAWN_LOCK.read().unwrap_or_else(|e| e.into_inner());
    command.spawn()
}

/// Spawns `command` as `identity`, in `dir` (entered by the child, as the
/// user), with `env_file` inherited at its own descriptor number (which the
/// caller passed as `--export-file=<n>`). Refuses uid 0 and gid 0 whatever
/// the caller checked before.
pub fn spawn_as(
    command: &mut Command,
    identity: &Identity,
    dir: Option<&Path>,
    env_file: Option<&OwnedFd>,
) -> std::io::Result<Child> {
    if identity.uid == 0 || identity.gid == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "refusing to run as root"));
    }
    if let Some(dir) = dir {
        // A chdir file action: done in the child, so with the user's rights.
        command.current_dir(dir);
    }
    let _lock = match env_file {
        Some(_) => SpawnLock::Exclusive(SPAWN_LOCK.write().unwrap_or_else(|e| e.into_inner())),
        None => SpawnLock::Shared(SPAWN_LOCK.read().unwrap_or_else(|e| e.into_inner())),
    };
    let _inherit = env_file.map(Inheritable::new).transpose()?;
    let user = ThreadCredentials::assume(identity)?;
    let spawned = command.spawn();
    user.restore();
    spawned
}

/// Runs `f` on the calling thread as `identity` (groups, gid, uid), then
/// gives the thread root's ids back, also if `f` panics. For the libslurm
/// pool's own threads, which run nothing else meanwhile: munge then vouches
/// for the user on every RPC `f` sends (munged reads the connecting
/// thread's credentials), and every file `f` opens is opened with the
/// user's rights. Refuses uid 0 and gid 0.
pub fn as_identity<T>(identity: &Identity, f: impl FnOnce() -> T) -> std::io::Result<T> {
    if identity.uid == 0 || identity.gid == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "refusing to run as root"));
    }
    let _user = Assumed(Some(ThreadCredentials::assume(identity)?));
    Ok(f())
}

/// Gives a thread its ids back when dropped.
struct Assumed(Option<ThreadCredentials>);

impl Drop for Assumed {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            saved.restore();
        }
    }
}

/// Held for the length of one spawn.
#[allow(dead_code)] // Held for its Drop only.
enum SpawnLock<'a> {
    Shared(std::sync::RwLockReadGuard<'a, ()>),
    Exclusive(std::sync::RwLockWriteGuard<'a, ()>),
}

/// Clears close-on-exec on a descriptor until dropped.
struct Inheritable(std::os::fd::RawFd);

impl Inheritable {
    fn new(fd: &OwnedFd) -> std::io::Result<Inheritable> {
        set_cloexec(fd.as_raw_fd(), false)?;
        Ok(Inheritable(fd.as_raw_fd()))
    }
}

impl Drop for Inheritable {
    fn drop(&mut self) {
        let _ = set_cloexec(self.0, true);
    }
}

fn set_cloexec(fd: std::os::fd::RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: F_SETFD on a descriptor the caller owns.
    let rc = unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, if on { nix::libc::FD_CLOEXEC } else { 0 }) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's own ids, taken from the user and given back.
struct ThreadCredentials {
    uids: [nix::libc::uid_t; 3],
    gids: [nix::libc::gid_t; 3],
    groups: Vec<nix::libc::gid_t>,
}

/// A raw system call that changes only the calling thread's credentials
/// (glibc's wrappers of the same name signal every thread to follow).
fn raw(rc: nix::libc::c_long) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl ThreadCredentials {
    /// Makes the calling thread `identity` (groups, then gid, then uid),
    /// keeping the current saved uid and gid (root) to return to.
    fn assume(identity: &Identity) -> std::io::Result<ThreadCredentials> {
        use nix::libc::{syscall, SYS_getgroups, SYS_getresgid, SYS_getresuid, SYS_setgroups};
        use nix::libc::{SYS_setresgid, SYS_setresuid};
        let mut saved = ThreadCredentials { uids: [0; 3], gids: [0; 3], groups: Vec::new() };
        // SAFETY: each call writes into buffers of the stated sizes (a size
        // of 0 asks getgroups for the count only).
        unsafe {
            let (u, g) = (saved.uids.as_mut_ptr(), saved.gids.as_mut_ptr());
            raw(syscall(SYS_getresuid, u, u.add(1), u.add(2)))?;
            raw(syscall(SYS_getresgid, g, g.add(1), g.add(2)))?;
            let count = syscall(SYS_getgroups, 0, std::ptr::null_mut::<nix::libc::gid_t>());
            if count < 0 {
                return Err(std::io::Error::last_os_error());
            }
            saved.groups = vec![0; count as usize];
            let n = syscall(SYS_getgroups, saved.groups.len(), saved.groups.as_mut_ptr());
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            saved.groups.truncate(n as usize);
        }
        if saved.uids[1] != 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the bridge is not root"));
        }
        let (uid, gid) = (identity.uid, identity.gid);
        // SAFETY: plain system calls on values; on failure the thread is put
        // back before the error returns.
        let assumed = unsafe {
            raw(syscall(SYS_setgroups, identity.groups.len(), identity.groups.as_ptr()))
                .and_then(|()| raw(syscall(SYS_setresgid, gid, gid, saved.gids[2])))
                .and_then(|()| raw(syscall(SYS_setresuid, uid, uid, saved.uids[2])))
        };
        match assumed {
            Ok(()) => Ok(saved),
            Err(e) => {
                saved.restore();
                Err(e)
            }
        }
    }

    /// Gives the thread its own ids back: uid first (which brings back the
    /// capabilities the rest needs). A thread that cannot be given back would
    /// run the bridge's next task as the user: the process aborts instead.
    fn restore(self) {
        use nix::libc::{syscall, SYS_setgroups, SYS_setresgid, SYS_setresuid};
        let [ru, eu, su] = self.uids;
        let [rg, eg, sg] = self.gids;
        // SAFETY: plain system calls on values saved by `assume`.
        let restored = unsafe {
            raw(syscall(SYS_setresuid, ru, eu, su))
                .and_then(|()| raw(syscall(SYS_setresgid, rg, eg, sg)))
                .and_then(|()| raw(syscall(SYS_setgroups, self.groups.len(), self.groups.as_ptr())))
        };
        if let Err(e) = restored {
            eprintln!("bridge: cannot restore a thread's root credentials after a spawn: {e}; aborting");
            std::process::abort();
        }
    }
}

/// The job's environment as NUL-separated `name=value` entries in an
/// anonymous memory file (close-on-exec; `spawn_as` lets the one child
/// inherit it). Nothing on disk, no name anyone else could open.
pub fn env_memfd(env: &BTreeMap<String, String>) -> std::io::Result<OwnedFd> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let name = c"odyssey-job-env";
    let fd = memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    for (key, value) in env {
        file.write_all(key.as_bytes())?;
        file.write_all(b"=")?;
        file.write_all(value.as_bytes())?;
        file.write_all(b"\0")?;
    }
    // sbatch reads from the descriptor's offset: rewind.
    std::io::Seek::rewind(&mut file)?;
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command whose output the test reads.
    fn piped(program: &str) -> Command {
        let mut command = Command::new(program);
        command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        command
    }

    fn nobody() -> Identity {
        Identity { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534], home: "/".into() }
    }

    fn thread_ids() -> (u32, u32, usize) {
        // SAFETY: plain queries of the calling thread's ids.
        unsafe {
            (
                nix::libc::syscall(nix::libc::SYS_geteuid) as u32,
                nix::libc::syscall(nix::libc::SYS_getegid) as u32,
                nix::libc::syscall(nix::libc::SYS_getgroups, 0, std::ptr::null_mut::<u32>()) as usize,
            )
        }
    }

    /// `id` spawned through `spawn_as` reports the user's ids and nothing of
    /// root's, and the spawning thread is root again afterwards. Needs root,
    /// as the bridge itself does (scripts/test.sh runs as root).
    #[tokio::test(flavor = "current_thread")]
    async fn a_command_runs_with_the_users_ids_only() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root, like the bridge");
        let before = thread_ids();
        let mut command = piped("/usr/bin/id");
        let out =
            spawn_as(&mut command, &nobody(), Some(Path::new("/tmp")), None).unwrap().wait_with_output().await.unwrap();
        assert_eq!(thread_ids(), before, "the thread kept the user's ids");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("uid=65534(nobody) gid=65534("), "{text}");
        assert!(text.contains("groups=65534(") && !text.contains("(root)"), "{text}");
        // Every id, saved ones included, is the user's; no capability left.
        let mut command = piped("/bin/grep");
        command.args(["-E", "^(Uid|Gid|Groups|CapPrm|CapEff):", "/proc/self/status"]);
        let out = spawn_as(&mut command, &nobody(), None, None).unwrap().wait_with_output().await.unwrap();
        let status = String::from_utf8_lossy(&out.stdout).replace('\t', " ");
        for line in [
            "Uid: 65534 65534 65534 65534",
            "Gid: 65534 65534 65534 65534",
            "Groups: 65534",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
        ] {
            assert!(status.contains(line), "{line:?} missing in {status}");
        }
        // The working directory is entered as the user: /root is not theirs.
        let err = spawn_as(&mut Command::new("/usr/bin/id"), &nobody(), Some(Path::new("/root")), None).unwrap_err();
        assert!(is_chdir_errno(err.raw_os_error().unwrap()), "{err}");
        assert_eq!(thread_ids(), before, "a failed spawn kept the user's ids");
        // Root is refused outright.
        let root = Identity { uid: 0, gid: 0, ..nobody() };
        assert!(spawn_as(&mut Command::new("/usr/bin/id"), &root, None, None).is_err());
    }

    /// A closure run `as_identity` sees the user's ids on its thread, is
    /// refused root's files, and the thread is root again afterwards.
    #[test]
    fn a_closure_runs_with_the_users_ids_only() {
        let before = thread_ids();
        let (ids, shadow) = as_identity(&nobody(), || (thread_ids(), std::fs::File::open("/etc/shadow").map(drop)))
            .expect("nobody's ids");
        assert_eq!((ids.0, ids.1), (65534, 65534));
        assert_eq!(shadow.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(thread_ids(), before, "the thread kept the user's ids");
        let root = Identity { uid: 0, gid: 0, ..nobody() };
        assert!(as_identity(&root, || ()).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_environment_reaches_that_child_only() {
        let env: BTreeMap<String, String> = [("A".to_owned(), "1\n2".to_owned())].into();
        let file = env_memfd(&env).unwrap();
        let fd = file.as_raw_fd();
        let mut command = piped("/bin/bash");
        command.args(["-c", &format!("cat <&{fd}")]);
        let out = spawn_as(&mut command, &nobody(), None, Some(&file)).unwrap().wait_with_output().await.unwrap();
        assert_eq!(out.stdout, b"A=1\n2\0", "{out:?}");
        // Another child, spawned after, does not inherit it.
        let mut command = piped("/bin/bash");
        command.args(["-c", &format!("cat <&{fd}")]);
        let out = spawn(&mut command).unwrap().wait_with_output().await.unwrap();
        assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    }
}
