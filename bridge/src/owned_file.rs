//! Opening a file that a job's user controls, from a bridge that runs as
//! root: job output and kernel results. The path is the user's to choose
//! (`--output`, the working directory), so it may be a symbolic link to
//! /etc/shadow, a FIFO that blocks forever, a terminal or a device whose
//! open has side effects. The file is first opened with `O_PATH |
//! O_NOFOLLOW`, which opens nothing but a reference (no device open, no FIFO
//! wait, no link followed), then checked on that descriptor (a regular file
//! owned by the job's uid), and only then reopened for reading through
//! `/proc/self/fd`, which reaches exactly the inode that was checked.
//! Blocking: callers run it on the blocking pool.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// Why a file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OwnedFileError {
    #[error("{path} does not exist (yet)")]
    NotFound { path: String },
    #[error("{path} is not a regular file (links, FIFOs and devices are never opened)")]
    NotRegular { path: String },
    #[error("{path} belongs to uid {owner}, not to the job's user")]
    NotOwned { path: String, owner: u32 },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("cannot open {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Opens `path` for reading if it is a regular file owned by `uid` and at
/// most `max_len` bytes long.
pub fn open_owned(path: &str, uid: u32, max_len: Option<u64>) -> Result<File, OwnedFileError> {
    let io = |e: std::io::Error| OwnedFileError::Io { path: path.to_owned(), source: e };
    let reference = match open(path, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
        // SAFETY: open returned a new descriptor that nothing else owns.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(nix::errno::Errno::ENOENT) => return Err(OwnedFileError::NotFound { path: path.to_owned() }),
        Err(e) => return Err(io(e.into())),
    };
    let checked = File::from(reference);
    // fstat works on an O_PATH descriptor (Linux >= 3.6).
    let meta = checked.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(OwnedFileError::NotRegular { path: path.to_owned() });
    }
    if meta.uid() != uid {
        return Err(OwnedFileError::NotOwned { path: path.to_owned(), owner: meta.uid() });
    }
    if let Some(limit) = max_len.filter(|limit| meta.len() > *limit) {
        return Err(OwnedFileError::TooLarge { path: path.to_owned(), limit });
    }
    let reopened =
        std::fs::OpenOptions::new().read(true).open(format!("/proc/self/fd/{}", checked.as_raw_fd())).map_err(io)?;
    // The same inode, whatever happened to the path meanwhile.
    let again = reopened.metadata().map_err(io)?;
    if (again.dev(), again.ino()) != (meta.dev(), meta.ino()) {
        return Err(OwnedFileError::NotRegular { path: path.to_owned() });
    }
    Ok(reopened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("owned-file-{}", crate::auth::random_token()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_a_regular_file_of_the_uid_opens() {
        let dir = dir();
        let me = nix::unistd::getuid().as_raw();
        let file = dir.join("out");
        std::fs::write(&file, "hello").unwrap();
        let path = file.display().to_string();
        assert!(open_owned(&path, me, None).is_ok());
        assert!(matches!(open_owned(&path, me + 1, None), Err(OwnedFileError::NotOwned { .. })));
        assert!(matches!(open_owned(&path, me, Some(2)), Err(OwnedFileError::TooLarge { .. })));
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(open_owned(&link.display().to_string(), me, None), Err(OwnedFileError::NotRegular { .. })));
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::S_IRWXU).unwrap();
        // Would block forever if it were opened for reading.
        assert!(matches!(open_owned(&fifo.display().to_string(), me, None), Err(OwnedFileError::NotRegular { .. })));
        assert!(matches!(open_owned("/dev/null", 0, None), Err(OwnedFileError::NotRegular { .. })));
        assert!(matches!(
            open_owned(&dir.join("none").display().to_string(), me, None),
            Err(OwnedFileError::NotFound { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
