//! Scheduled backups of the bridge's database: file names that sort by
//! time, and a retention count (`bridge backup --dir D --keep N`, what the
//! nightly systemd timer runs). The copy itself is `Store::backup`; putting
//! one back is `store::restore` (`bridge restore FILE`).

use std::path::{Path, PathBuf};

const PREFIX: &str = "bridge-";
const SUFFIX: &str = ".db";
/// `20261203T221005Z`
const STAMP_LEN: usize = 16;

/// `bridge-20261203T221005Z.db`: UTC, so names sort by time.
pub fn file_name(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z{SUFFIX}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Whether `name` is one `file_name` makes (other files in the directory
/// are never touched).
fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX).and_then(|rest| rest.strip_suffix(SUFFIX)).is_some_and(|stamp| {
        stamp.len() == STAMP_LEN
            && stamp.bytes().enumerate().all(|(i, b)| match i {
                8 => b == b'T',
                15 => b == b'Z',
                _ => b.is_ascii_digit(),
            })
    })
}

/// The backups in `dir`, oldest first.
pub fn existing(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_backup_name) && e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    found.sort();
    Ok(found)
}

/// Deletes the oldest backups in `dir` beyond the newest `keep`; returns
/// what it deleted.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let found = existing(dir)?;
    let excess = found.len().saturating_sub(keep);
    let doomed: Vec<PathBuf> = found.into_iter().take(excess).collect();
    for path in &doomed {
        std::fs::remove_file(path)?;
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_only_backups_are_pruned() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_796_163_005).unwrap();
        assert_eq!(file_name(at), "bridge-20261201T221005Z.db");
        assert!(is_backup_name(&file_name(at)));
        for other in ["bridge.db", "bridge-latest.db", "bridge-20261201T221005Z.db-wal", "notes.txt"] {
            assert!(!is_backup_name(other), "{other}");
        }
        let dir = std::env::temp_dir().join(format!("odyssey-backups-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for offset in [0, 86_400, 2 * 86_400] {
            let at = time::OffsetDateTime::from_unix_timestamp(1_796_163_005 + offset).unwrap();
            std::fs::write(dir.join(file_name(at)), "x").unwrap();
        }
        std::fs::write(dir.join("bridge.db"), "live").unwrap();
        let removed = prune(&dir, 2).unwrap();
        assert_eq!(removed, [dir.join("bridge-20261201T221005Z.db")]);
        let left = existing(&dir).unwrap();
        assert_eq!(left, [dir.join("bridge-20261202T221005Z.db"), dir.join("bridge-20261203T221005Z.db")]);
        assert!(dir.join("bridge.db").exists(), "other files are never pruned");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
