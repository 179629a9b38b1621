//! The local spool: one JSON-lines file per job step, appended record by
//! record, so that a bridge outage loses nothing. Task records are appended
//! as tasks end; the step's node record comes last. When the step daemon
//! delivers itself it appends that record with `Durability::Sync`, whose
//! fsync makes the whole file durable (one fsync per node and step, not one
//! per task: each would delay its exit message to srun); when a process of
//! its own delivers (the worker agent, `odyssey-health-flush`), that process
//! fsyncs only the files it could not send, so the step's end never waits
//! for the disk and a delivered step costs no flush (bench/spank-launch.sh). Blocking I/O
//! on a local disk, in the calling process: task callbacks run in processes
//! forked from slurmstepd and start no threads.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The spool directory of one node: `pattern` with `%n` replaced by the
/// node name (plugstack.conf: `spool=/var/spool/odyssey/%n`).
pub fn node_dir(pattern: &str, node: &str) -> PathBuf {
    PathBuf::from(pattern.replace("%n", node))
}

/// The file of one job step (`step` as in record ids: a number or "batch").
pub fn step_file(dir: &Path, job_id: u32, step: &str) -> PathBuf {
    dir.join(format!("{job_id}.{step}.jsonl"))
}

/// Whether `append` makes the file durable before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the page cache; a later `Sync` append makes it durable.
    Buffered,
    /// fsync (data) of the whole file, this record and every earlier one.
    Sync,
}

/// Appends one record as a line. Directories are created 0700: records name
/// users' jobs.
pub fn append<T: Serialize>(file: &Path, record: &T, durability: Durability) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut out = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(file)?;
    // One write of the whole line: O_APPEND keeps concurrent writers' lines
    // whole on a local filesystem.
    out.write_all(&line)?;
    match durability {
        Durability::Buffered => Ok(()),
        Durability::Sync => out.sync_data(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_append_as_lines() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        let file = step_file(&node_dir(dir.join("%n").to_str().unwrap(), "c1"), 7, "0");
        append(&file, &serde_json::json!({"id": "a"}), Durability::Buffered).unwrap();
        append(&file, &serde_json::json!({"id": "b"}), Durability::Sync).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "{\"id\":\"a\"}\n{\"id\":\"b\"}\n");
        assert!(file.starts_with(dir.join("c1")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
