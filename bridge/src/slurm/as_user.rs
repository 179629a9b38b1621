//! Running a SLURM command with a user's authority instead of root's.
//!
//! The bridge runs as root, and sbatch obeys what it reads with the rights
//! of whoever runs it: `#SBATCH --bbf=/etc/shadow` pastes a root-only file
//! into the job, `--export-file` loads one into its environment, root-only
//! options pass (cluster-notes.md, "Found on 2026-12-03"). So the child
//! drops to the user's groups, gid and uid before it execs, then enters the
//! working directory as the user. munge then vouches for the user, and
//! slurmctld applies the user's limits and refuses root-only options.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

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

/// The descriptor sbatch reads the job's environment from (`--export-file=3`:
/// sbatch takes a number from 3 up as an open descriptor).
pub const ENV_FD: i32 = 3;

/// errno values of a failed `chdir`; the other steps of the child fail with
/// EPERM, EINVAL or EAGAIN, and sbatch's own path was found at start-up.
pub fn is_chdir_errno(errno: i32) -> bool {
    use nix::libc::{EACCES, ELOOP, ENAMETOOLONG, ENOENT, ENOTDIR};
    matches!(errno, ENOENT | EACCES | ENOTDIR | ELOOP | ENAMETOOLONG)
}

/// Arranges for `command` to run as `identity`, in `dir` (entered after the
/// drop, so with the user's rights), with `env_file` as descriptor 3.
///
/// Refuses uid 0 and gid 0 whatever the caller checked before.
pub fn run_as(
    command: &mut Command,
    identity: &Identity,
    dir: Option<&Path>,
    env_file: Option<&OwnedFd>,
) -> std::io::Result<()> {
    if identity.uid == 0 || identity.gid == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "refusing to run as root"));
    }
    // Everything the child needs is made here, before the fork: between
    // fork and exec only async-signal-safe calls are allowed (no malloc).
    let groups: Vec<nix::libc::gid_t> = identity.groups.clone();
    let (uid, gid) = (identity.uid, identity.gid);
    let dir = match dir {
        Some(dir) => Some(CString::new(dir.as_os_str().as_bytes())?),
        None => None,
    };
    let env_fd = env_file.map(AsRawFd::as_raw_fd);
    // SAFETY: the closure runs in the child between fork and exec. It calls
    // only async-signal-safe syscalls (setgroups, setgid, setuid, chdir,
    // dup2, fcntl) on data prepared above, and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            use nix::libc;
            let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            // Groups first, while still root; then gid; uid last, since
            // after it nothing can be changed back.
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            if let Some(dir) = &dir {
                check(libc::chdir(dir.as_ptr()))?;
            }
            if let Some(fd) = env_fd {
                if fd == ENV_FD {
                    check(libc::fcntl(fd, libc::F_SETFD, 0))?;
                } else if libc::dup2(fd, ENV_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// The job's environment as NUL-separated `name=value` entries in an
/// anonymous memory file (close-on-exec; `run_as` hands it to the one child
/// as descriptor 3). Nothing on disk, no name anyone else could open.
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

    /// `id` run through `run_as` reports the user's ids and nothing of
    /// root's: uid, gid and supplementary groups all dropped. Needs root,
    /// as the bridge itself does (scripts/test.sh runs as root).
    #[tokio::test]
    async fn a_command_runs_with_the_users_ids_only() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root, like the bridge");
        let nobody = Identity { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534], home: "/".into() };
        let mut command = Command::new("/usr/bin/id");
        run_as(&mut command, &nobody, Some(Path::new("/tmp")), None).unwrap();
        let out = command.output().await.unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("uid=65534(nobody) gid=65534("), "{text}");
        assert!(text.contains("groups=65534(") && !text.contains("(root)"), "{text}");
        // The working directory is entered as the user: /root is not theirs.
        let mut command = Command::new("/usr/bin/id");
        run_as(&mut command, &nobody, Some(Path::new("/root")), None).unwrap();
        let err = command.output().await.unwrap_err();
        assert!(is_chdir_errno(err.raw_os_error().unwrap()), "{err}");
        // Root is refused outright.
        let root = Identity { uid: 0, gid: 0, ..nobody };
        assert!(run_as(&mut Command::new("/usr/bin/id"), &root, None, None).is_err());
    }

    #[tokio::test]
    async fn the_environment_reaches_the_child_on_descriptor_3_only() {
        let env: BTreeMap<String, String> = [("A".to_owned(), "1\n2".to_owned())].into();
        let file = env_memfd(&env).unwrap();
        let nobody = Identity { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![65534], home: "/".into() };
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "cat <&3"]);
        run_as(&mut command, &nobody, None, Some(&file)).unwrap();
        let out = command.output().await.unwrap();
        assert_eq!(out.stdout, b"A=1\n2\0", "{out:?}");
    }
}
