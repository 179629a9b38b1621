//! A node's spool of health records (one JSON-lines file per job step, as
//! the SPANK plugin writes them) and the loop that sends it: every pending
//! file, oldest first, sent within a time budget; a file moves to `sent/`
//! once the bridge took it, to `refused/` when the bridge refused what it
//! holds (resending it could never succeed, and it must not hold up the
//! files behind it), anything else is made durable (fsync) and left for the
//! next run (the bridge ignores records it already has). The sender is the caller's: the plugin
//! signs with the cluster's secret, a joined worker's agent uses its
//! certificate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::records::Record;

/// Why a batch was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The bridge refused the records themselves (a record about another
    /// node, a job it cannot place there, a batch too large): the file
    /// moves to `refused/`, and the run goes on with the next one.
    Records(String),
    /// Anything else (no answer, an overloaded or failing bridge, the
    /// sender's credentials): this file and the rest wait for the next run.
    Later(String),
}

impl Refusal {
    /// From the bridge's HTTP status: 400, 403, 413 and 422 are about the
    /// batch; 401 (signature, clock skew), 408, 429 and 5xx are not.
    pub fn from_status(status: u16, message: String) -> Refusal {
        match status {
            400 | 403 | 413 | 422 => Refusal::Records(message),
            _ => Refusal::Later(message),
        }
    }
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub files_sent: usize,
    pub records_sent: usize,
    /// Files the bridge refused, moved to `refused/` (the first reason in
    /// `refusal`).
    pub files_refused: usize,
    pub refusal: Option<String>,
    /// Lines that were not records: reported and skipped.
    pub corrupt_lines: usize,
    pub files_left: usize,
    /// The first error, if delivery stopped early.
    pub error: Option<String>,
}

/// How long a file whose last line has no end yet is taken for one being
/// written (a step daemon appends a line in one write, which a reader can
/// still see in part); after that, the piece is a corrupt line.
pub const SETTLING: Duration = Duration::from_secs(10);

/// The spool's pending step files, oldest first.
pub fn pending(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .map(|p| (p.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

/// Keeps the lines that are records as the bridge reads them (one bad line
/// would make it refuse the whole batch); counts the rest.
pub fn clean(text: &str) -> (String, usize, usize) {
    let (mut body, mut good, mut bad) = (String::new(), 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match Record::parse(line.as_bytes()) {
            Ok(_) => {
                body.push_str(line);
                body.push('\n');
                good += 1;
            }
            _ => bad += 1,
        }
    }
    (body, good, bad)
}

/// Sends every pending file of `dir` with `send` (one batch of JSON lines
/// per file) until `budget` is spent or a send fails for a reason other
/// than the records (`Refusal::Later`).
pub fn deliver_with(dir: &Path, budget: Duration, mut send: impl FnMut(&str) -> Result<(), Refusal>) -> Delivered {
    let started = Instant::now();
    let mut done = Delivered::default();
    let files = pending(dir);
    for (idx, file) in files.iter().enumerate() {
        if started.elapsed() >= budget {
            done.files_left += files.len() - idx;
            done.error.get_or_insert_with(|| "time budget spent".into());
            keep(&files[idx..], &mut done);
            break;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                done.error.get_or_insert_with(|| format!("{}: {e}", file.display()));
                continue;
            }
        };
        if !text.is_empty() && !text.ends_with('\n') && being_written(file) {
            // Sent whole at the next run, not in two parts.
            done.files_left += 1;
            continue;
        }
        let (body, good, bad) = clean(&text);
        done.corrupt_lines += bad;
        let outcome = if good > 0 { send(&body) } else { Ok(()) };
        let to = match outcome {
            Ok(()) => {
                done.files_sent += 1;
                done.records_sent += good;
                "sent"
            }
            Err(Refusal::Records(why)) => {
                done.files_refused += 1;
                done.refusal.get_or_insert(format!("{}: {why}", file.display()));
                "refused"
            }
            Err(Refusal::Later(e)) => {
                done.files_left += files.len() - idx;
                done.error = Some(e);
                keep(&files[idx..], &mut done);
                break;
            }
        };
        let moved = std::fs::create_dir_all(dir.join(to))
            .and_then(|()| std::fs::rename(file, dir.join(to).join(file.file_name().unwrap_or_default())));
        if let Err(e) = moved {
            done.error.get_or_insert_with(|| format!("move {} to {to}/: {e}", file.display()));
        }
    }
    done
}

/// Whether `file` changed within the last `SETTLING`.
fn being_written(file: &Path) -> bool {
    let modified = std::fs::metadata(file).and_then(|m| m.modified());
    modified.is_ok_and(|at| at.elapsed().unwrap_or_default() < SETTLING)
}

/// Makes the files left for a later run durable. The step daemon that wrote
/// them leaves the fsync to its deliverer, off the job's path, and a file
/// the bridge took needs none: the records are the bridge's to keep from
/// then on, so the disk is flushed only for what stays on the node.
fn keep(files: &[PathBuf], done: &mut Delivered) {
    for file in files {
        if let Err(e) = std::fs::File::open(file).and_then(|f| f.sync_data()) {
            done.error.get_or_insert_with(|| format!("fsync {}: {e}", file.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_files_move_and_a_failed_send_keeps_the_rest() {
        let dir = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = |id: &str| {
            format!(
                r#"{{"kind":"task","id":"{id}","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}}"#
            )
        };
        std::fs::write(dir.join("1.0.jsonl"), format!("{}\nnot json\n", line("a"))).unwrap();
        let mut bodies = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |b| {
            bodies.push(b.to_owned());
            Ok(())
        });
        assert_eq!((done.files_sent, done.records_sent, done.corrupt_lines), (1, 1, 1));
        assert_eq!(bodies, vec![format!("{}\n", line("a"))]);
        assert!(dir.join("sent/1.0.jsonl").exists());
        std::fs::write(dir.join("2.0.jsonl"), format!("{}\n", line("b"))).unwrap();
        let done = deliver_with(&dir, Duration::from_secs(5), |_| Err(Refusal::Later("no answer".into())));
        assert_eq!((done.files_sent, done.files_left, done.error.as_deref()), (0, 1, Some("no answer")));
        assert!(dir.join("2.0.jsonl").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_refused_file_moves_aside_and_the_files_behind_it_go() {
        let dir = std::env::temp_dir().join(format!("spool-test-refused-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = |job: u32| {
            format!(
                r#"{{"kind":"task","id":"{job}.0.c1.task0","job_id":{job},"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}}"#
            )
        };
        for job in [1, 2, 3] {
            std::fs::write(dir.join(format!("{job}.0.jsonl")), format!("{}\n", line(job))).unwrap();
            // Oldest first: distinct modification times.
            let at = std::time::SystemTime::now() - Duration::from_secs(100 - u64::from(job));
            std::fs::File::options()
                .write(true)
                .open(dir.join(format!("{job}.0.jsonl")))
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
        let mut sent = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |body| {
            if body.contains("\"job_id\":1,") {
                return Err(Refusal::from_status(403, "job 1 did not run on worker c1".into()));
            }
            sent.push(body.to_owned());
            Ok(())
        });
        assert_eq!((done.files_sent, done.files_refused, done.files_left), (2, 1, 0));
        assert!(done.refusal.as_deref().unwrap().ends_with("1.0.jsonl: job 1 did not run on worker c1"));
        assert!(done.error.is_none());
        assert!(dir.join("refused/1.0.jsonl").exists() && dir.join("sent/3.0.jsonl").exists());
        assert_eq!(sent.len(), 2);
        // A bridge away, or one that does not take the sender's signature, is no refusal of the records.
        for status in [401, 408, 429, 500, 503] {
            assert!(matches!(Refusal::from_status(status, String::new()), Refusal::Later(_)), "{status}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_with_a_line_being_written_waits_for_the_next_run() {
        let dir = std::env::temp_dir().join(format!("spool-test-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = r#"{"kind":"task","id":"a","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}"#;
        let file = dir.join("1.0.jsonl");
        std::fs::write(&file, format!("{line}\n{{\"kind\":\"no")).unwrap();
        let mut sent = 0;
        let done = deliver_with(&dir, Duration::from_secs(5), |_| {
            sent += 1;
            Ok(())
        });
        assert_eq!((sent, done.files_sent, done.files_left, done.corrupt_lines), (0, 0, 1, 0));
        assert!(file.exists() && done.error.is_none());
        // Still unfinished long after: the piece is a corrupt line, the rest goes.
        let old = std::time::SystemTime::now() - SETTLING - Duration::from_secs(1);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let done = deliver_with(&dir, Duration::from_secs(5), |_| Ok(()));
        assert_eq!((done.files_sent, done.records_sent, done.corrupt_lines), (1, 1, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
