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

/// A step's file is complete once its last line is the node record, which
/// the step daemon appends last. Until then it is left alone: the step
/// daemon opens the file for each record, and a file renamed to `sent/`
/// between that open and its write would take the record with it. A file
/// left unchanged this long without its node record (a step daemon that
/// died) goes as it is, a piece of a line counted as corrupt.
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

/// Most bytes of records in one request: a quarter of the bridge's default
/// body limit (1 MiB), so that batches stay far from it.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// One complete step file, read and cleaned, waiting in a batch.
struct Ready {
    file: PathBuf,
    body: String,
    records: usize,
}

/// Sends every pending step file of `dir` with `send`, as many files per
/// request as fit in `MAX_BATCH_BYTES` (one request per file cost the bridge
/// and the node's cores more than the records did), until `budget` is spent
/// or a send fails for a reason other than the records (`Refusal::Later`).
/// A batch refused for its records goes again one file at a time, so that
/// only the refused files move aside.
pub fn deliver_with(dir: &Path, budget: Duration, mut send: impl FnMut(&str) -> Result<(), Refusal>) -> Delivered {
    let started = Instant::now();
    let mut done = Delivered::default();
    let files = pending(dir);
    let mut batch: Vec<Ready> = Vec::new();
    let mut batch_bytes = 0;
    for (idx, file) in files.iter().enumerate() {
        if started.elapsed() >= budget {
            done.error.get_or_insert_with(|| "time budget spent".into());
            let left: Vec<PathBuf> = batch.into_iter().map(|r| r.file).chain(files[idx..].iter().cloned()).collect();
            keep(&left, &mut done);
            return done;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                done.error.get_or_insert_with(|| format!("{}: {e}", file.display()));
                continue;
            }
        };
        if !complete(&text) && being_written(file) {
            done.files_left += 1;
            continue;
        }
        let (body, records, bad) = clean(&text);
        done.corrupt_lines += bad;
        if records == 0 {
            done.files_sent += 1;
            move_to(dir, file, "sent", &mut done);
            continue;
        }
        if !batch.is_empty() && batch_bytes + body.len() > MAX_BATCH_BYTES {
            if let Err(left) = ship(dir, std::mem::take(&mut batch), &mut send, &mut done) {
                let left: Vec<PathBuf> = left.into_iter().chain(files[idx..].iter().cloned()).collect();
                keep(&left, &mut done);
                return done;
            }
            batch_bytes = 0;
        }
        batch_bytes += body.len();
        batch.push(Ready { file: file.clone(), body, records });
    }
    if let Err(left) = ship(dir, batch, &mut send, &mut done) {
        keep(&left, &mut done);
    }
    done
}

/// Sends one batch and moves its files; the files left for a later run
/// when the bridge could not take it (`Refusal::Later`, in `done.error`).
fn ship<F: FnMut(&str) -> Result<(), Refusal>>(
    dir: &Path,
    batch: Vec<Ready>,
    send: &mut F,
    done: &mut Delivered,
) -> Result<(), Vec<PathBuf>> {
    if batch.is_empty() {
        return Ok(());
    }
    let body: String = batch.iter().map(|r| r.body.as_str()).collect();
    match send_in_parts(&body, send) {
        Ok(()) => {
            for ready in batch {
                done.files_sent += 1;
                done.records_sent += ready.records;
                move_to(dir, &ready.file, "sent", done);
            }
            Ok(())
        }
        Err(Refusal::Records(why)) if batch.len() == 1 => {
            done.files_refused += 1;
            done.refusal.get_or_insert(format!("{}: {why}", batch[0].file.display()));
            move_to(dir, &batch[0].file, "refused", done);
            Ok(())
        }
        Err(Refusal::Records(_)) => {
            let mut rest = batch.into_iter();
            while let Some(ready) = rest.next() {
                if let Err(mut left) = ship(dir, vec![ready], send, done) {
                    left.extend(rest.map(|r| r.file));
                    return Err(left);
                }
            }
            Ok(())
        }
        Err(Refusal::Later(e)) => {
            done.error = Some(e);
            Err(batch.into_iter().map(|r| r.file).collect())
        }
    }
}

/// Sends `body` in requests of at most `MAX_BATCH_BYTES`, split between
/// lines (only a single file can be larger: a batch closes before it would
/// grow past the size). A body past the bridge's limit would be refused, or
/// its connection closed while it is still being written, which looks like
/// a bridge away and would hold the spool for ever. Stops at the first
/// failure; records sent before it are stored once, whatever comes next.
fn send_in_parts<F: FnMut(&str) -> Result<(), Refusal>>(body: &str, send: &mut F) -> Result<(), Refusal> {
    let mut start = 0;
    while start < body.len() {
        let rest = &body[start..];
        let mut end = rest.len();
        if end > MAX_BATCH_BYTES {
            // The last line end within the size, or the first line whole.
            end = rest[..MAX_BATCH_BYTES]
                .rfind('\n')
                .map(|i| i + 1)
                .unwrap_or_else(|| rest.find('\n').map_or(rest.len(), |i| i + 1));
        }
        send(&rest[..end])?;
        start += end;
    }
    Ok(())
}

/// Moves a delivered (`sent`) or refused (`refused`) file out of the way.
fn move_to(dir: &Path, file: &Path, to: &str, done: &mut Delivered) {
    let moved = std::fs::create_dir_all(dir.join(to))
        .and_then(|()| std::fs::rename(file, dir.join(to).join(file.file_name().unwrap_or_default())));
    if let Err(e) = moved {
        done.error.get_or_insert_with(|| format!("move {} to {to}/: {e}", file.display()));
    }
}

/// Whether a step's file ends with its node record (`SETTLING`).
fn complete(text: &str) -> bool {
    text.ends_with('\n')
        && text.lines().next_back().is_some_and(|last| matches!(Record::parse(last.as_bytes()), Ok(Record::Node(_))))
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
    done.files_left += files.len();
    for file in files {
        if let Err(e) = std::fs::File::open(file).and_then(|f| f.sync_data()) {
            done.error.get_or_insert_with(|| format!("fsync {}: {e}", file.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a step file of a step daemon that ended long ago (no node
    /// record needed), `age` seconds past settling.
    fn settled(file: &Path, text: &str, age: u64) {
        std::fs::write(file, text).unwrap();
        let at = std::time::SystemTime::now() - SETTLING - Duration::from_secs(age);
        std::fs::File::options().write(true).open(file).unwrap().set_modified(at).unwrap();
    }

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
        settled(&dir.join("1.0.jsonl"), &format!("{}\nnot json\n", line("a")), 1);
        let mut bodies = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |b| {
            bodies.push(b.to_owned());
            Ok(())
        });
        assert_eq!((done.files_sent, done.records_sent, done.corrupt_lines), (1, 1, 1));
        assert_eq!(bodies, vec![format!("{}\n", line("a"))]);
        assert!(dir.join("sent/1.0.jsonl").exists());
        settled(&dir.join("2.0.jsonl"), &format!("{}\n", line("b")), 1);
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
            // Oldest first: distinct modification times.
            settled(&dir.join(format!("{job}.0.jsonl")), &format!("{}\n", line(job)), 10 - u64::from(job));
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
    fn files_go_together_up_to_the_batch_size() {
        let dir = std::env::temp_dir().join(format!("spool-test-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let line = |job: usize, pad: usize| {
            format!(
                r#"{{"kind":"task","id":"{job}.0.c1.task{pad}","job_id":{job},"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}}"#
            )
        };
        for job in 1..=5 {
            settled(&dir.join(format!("{job}.0.jsonl")), &format!("{}\n", line(job, 0)), 10 - job as u64);
        }
        let mut bodies = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |b| {
            bodies.push(b.to_owned());
            Ok(())
        });
        assert_eq!((done.files_sent, done.records_sent, bodies.len()), (5, 5, 1), "five small files, one request");
        assert_eq!(bodies[0].lines().count(), 5);
        // Files of a third of the batch size each: three requests for seven files
        // (3 + 3 + 1: the fourth file would cross the size).
        let big = |job: usize| {
            (0..).map(move |t| line(job, t) + "\n").scan(0, |n, l| {
                *n += l.len();
                (*n <= MAX_BATCH_BYTES / 3).then_some(l)
            })
        };
        for job in 11..=17 {
            settled(&dir.join(format!("{job}.0.jsonl")), &big(job).collect::<String>(), 30 - job as u64);
        }
        let mut sizes = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |b| {
            sizes.push(b.len());
            Ok(())
        });
        assert_eq!(done.files_sent, 7);
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= MAX_BATCH_BYTES), "{sizes:?}");
        // One file larger than a request: sent in parts, each within the size, split between lines.
        let huge: String = (0..).map(|t| line(31, t) + "\n").take(6000).collect();
        assert!(huge.len() > 2 * MAX_BATCH_BYTES);
        settled(&dir.join("31.0.jsonl"), &huge, 3);
        let mut parts = Vec::new();
        let done = deliver_with(&dir, Duration::from_secs(5), |b| {
            parts.push(b.to_owned());
            Ok(())
        });
        assert_eq!((done.files_sent, done.records_sent), (1, 6000));
        assert!(parts.len() >= 3 && parts.iter().all(|p| p.len() <= MAX_BATCH_BYTES && p.ends_with('\n')));
        assert_eq!(parts.concat(), huge);
        // The bridge away: every file of the batch stays.
        settled(&dir.join("21.0.jsonl"), &format!("{}\n", line(21, 0)), 2);
        settled(&dir.join("22.0.jsonl"), &format!("{}\n", line(22, 0)), 1);
        let done = deliver_with(&dir, Duration::from_secs(5), |_| Err(Refusal::Later("away".into())));
        assert_eq!((done.files_sent, done.files_left), (0, 2));
        assert!(dir.join("21.0.jsonl").exists() && dir.join("22.0.jsonl").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_step_file_goes_once_its_node_record_is_written_or_it_settled() {
        let dir = std::env::temp_dir().join(format!("spool-test-torn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let task = r#"{"kind":"task","id":"1.0.c1.task0","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}"#;
        let node = r#"{"kind":"node","id":"1.0.c1.node","job_id":1,"step_id":0,"node":"c1","load":[0.1,0.1,0.1],"mem_available_bytes":1,"workdir_free_bytes":1,"step_start":1,"step_end":2,"tasks":1,"tasks_ok":1,"at":2}"#;
        let run = |dir: &Path| {
            let mut sent = 0;
            let done = deliver_with(dir, Duration::from_secs(5), |_| {
                sent += 1;
                Ok(())
            });
            (sent, done)
        };
        // Tasks written, the node record not yet: the step daemon may be
        // between its open and its write.
        let file = dir.join("1.0.jsonl");
        std::fs::write(&file, format!("{task}\n")).unwrap();
        let (sent, done) = run(&dir);
        assert_eq!((sent, done.files_sent, done.files_left, done.corrupt_lines), (0, 0, 1, 0));
        assert!(file.exists() && done.error.is_none());
        // The node record half written: still waiting.
        std::fs::write(&file, format!("{task}\n{}", &node[..40])).unwrap();
        assert_eq!(run(&dir).0, 0);
        // Complete: it goes.
        std::fs::write(&file, format!("{task}\n{node}\n")).unwrap();
        let (sent, done) = run(&dir);
        assert_eq!((sent, done.files_sent, done.records_sent, done.corrupt_lines), (1, 1, 2, 0));
        // A step daemon that died mid-line: once settled, the file goes as
        // it is, the piece counted as a corrupt line.
        settled(&dir.join("2.0.jsonl"), &format!("{task}\n{{\"kind\":\"no"), 1);
        let (sent, done) = run(&dir);
        assert_eq!((sent, done.files_sent, done.records_sent, done.corrupt_lines), (1, 1, 1, 1));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
