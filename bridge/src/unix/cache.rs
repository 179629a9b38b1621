//! Recent successful account resolutions, so a burst of submissions from
//! one account pays for NSS once (on Debian's `files systemd` NSS the group
//! list alone costs about 0.2 ms of path walking per lookup; LDAP more).
//!
//! An entry is used only while it is younger than its time to live and the
//! local account files (`/etc/passwd`, `/etc/group`, `/etc/shadow`) carry
//! the same stamps (inode, size, modification time) as when it was made:
//! `usermod`, `passwd -l` or `chsh` on this machine take effect at the next
//! submission, a change in a directory service (LDAP, sssd) within the time
//! to live. Failures are never kept: a mended account works at once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{resolve_off_thread, MappedBy, UidRange, UnixAccount, UnixError};

/// How long a resolution stands when the account files do not change: far
/// below what sites already accept from nscd (600 s) and sssd (5,400 s).
pub const TTL: Duration = Duration::from_secs(10);

/// More accounts than this and the cache starts over.
const MAX_ENTRIES: usize = 10_000;

/// The files whose change ends every entry.
const ACCOUNT_FILES: [&str; 3] = ["/etc/passwd", "/etc/group", "/etc/shadow"];

/// A file's identity and version: (inode, size, mtime in ns); None if absent.
type Stamp = Option<(u64, u64, i128)>;

struct Entry {
    account: UnixAccount,
    range: UidRange,
    made: Instant,
    stamps: Vec<Stamp>,
}

/// Resolutions by (account name, who mapped it).
pub struct AccountCache {
    ttl: Duration,
    files: Vec<PathBuf>,
    entries: Mutex<HashMap<(String, MappedBy), Entry>>,
    lookups: AtomicU64,
}

impl Default for AccountCache {
    fn default() -> Self {
        AccountCache::new(TTL, ACCOUNT_FILES.iter().map(PathBuf::from).collect())
    }
}

impl AccountCache {
    /// A cache whose entries last `ttl` and end when any of `files` changes.
    pub fn new(ttl: Duration, files: Vec<PathBuf>) -> AccountCache {
        AccountCache { ttl, files, entries: Mutex::default(), lookups: AtomicU64::new(0) }
    }

    /// `unix::resolve`, from a standing entry where there is one.
    pub async fn resolve(&self, name: &str, range: UidRange, by: MappedBy) -> Result<UnixAccount, UnixError> {
        // A stat of three local files: microseconds, taken on the caller's thread.
        let stamps = self.stamps();
        let key = (name.to_owned(), by);
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.get(&key) {
                if entry.range == range && entry.stamps == stamps && entry.made.elapsed() < self.ttl {
                    return Ok(entry.account.clone());
                }
            }
        }
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let account = resolve_off_thread(name, range, by).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, Entry { account: account.clone(), range, made: Instant::now(), stamps });
        Ok(account)
    }

    /// How many resolutions went to NSS (for tests).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.files
            .iter()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.ino(), m.size(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `nobody` (uid 65534) exists on every Debian machine; an admin's
    // mapping skips the login checks, so it resolves.
    const RANGE: UidRange = UidRange { floor: 1000, ceiling: 65534 };

    #[tokio::test]
    async fn an_entry_stands_until_a_file_changes_or_it_expires_and_failures_are_not_kept() {
        let dir = std::env::temp_dir().join(format!("account-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("passwd");
        std::fs::write(&file, "one").unwrap();
        let cache = AccountCache::new(Duration::from_secs(3600), vec![file.clone()]);

        let first = cache.resolve("nobody", RANGE, MappedBy::Admin).await.unwrap();
        assert_eq!(first.uid, 65534);
        assert_eq!(cache.resolve("nobody", RANGE, MappedBy::Admin).await.unwrap(), first);
        assert_eq!(cache.lookups(), 1, "the second resolution is the standing entry");

        // Another mapping kind or range is another question.
        assert!(cache.resolve("nobody", RANGE, MappedBy::Pam).await.is_err());
        let narrow = UidRange { floor: 1000, ceiling: 2000 };
        assert!(matches!(cache.resolve("nobody", narrow, MappedBy::Admin).await, Err(UnixError::OutOfRange { .. })));
        assert_eq!(cache.lookups(), 3);

        // A change of the file (same second, other size) ends the entry.
        std::fs::write(&file, "two!").unwrap();
        cache.resolve("nobody", RANGE, MappedBy::Admin).await.unwrap();
        assert_eq!(cache.lookups(), 4);
        cache.resolve("nobody", RANGE, MappedBy::Admin).await.unwrap();
        assert_eq!(cache.lookups(), 4);

        // Failures are asked again every time.
        for _ in 0..2 {
            assert!(cache.resolve("no-such-account-here", RANGE, MappedBy::Admin).await.is_err());
        }
        assert_eq!(cache.lookups(), 6);

        // With no time to live nothing stands.
        let uncached = AccountCache::new(Duration::ZERO, vec![file]);
        for _ in 0..2 {
            uncached.resolve("nobody", RANGE, MappedBy::Admin).await.unwrap();
        }
        assert_eq!(uncached.lookups(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
