//! Delivery of spooled records to the bridge: every pending step file of a
//! node's spool, signed, each POST bounded by a timeout, within an overall
//! time budget. Blocking and single-threaded on purpose: the plugin calls
//! this from slurmstepd, which must not gain threads (slurm-spank `Plugin`).
//! A file moves to `sent/` once the bridge answered 2xx; anything else
//! leaves it for the next run (the bridge ignores records it already has).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where and how to deliver.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub secret: Vec<u8>,
    /// Per request.
    pub timeout: Duration,
    /// For one delivery run, all files together.
    pub budget: Duration,
}

/// What one run did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub files_sent: usize,
    pub records_sent: usize,
    /// Lines that were not JSON objects with an id: reported and skipped.
    pub corrupt_lines: usize,
    pub files_left: usize,
    /// The first error, if delivery stopped early.
    pub error: Option<String>,
}

pub use odyssey_health_wire::sign;

/// The spool's pending step files, oldest first.
fn pending(dir: &Path) -> Vec<PathBuf> {
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

/// Keeps the lines that are records as the bridge reads them (the shared
/// `Record::parse`: one bad line would make it refuse the whole batch);
/// counts the rest.
fn clean(text: &str) -> (String, usize, usize) {
    let (mut body, mut good, mut bad) = (String::new(), 0, 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match odyssey_health_wire::records::Record::parse(line.as_bytes()) {
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

/// Sends every pending file of `dir` until the budget runs out or the
/// bridge fails to take one.
pub fn deliver(dir: &Path, target: &Target) -> Delivered {
    let started = Instant::now();
    let agent = ureq::AgentBuilder::new().timeout(target.timeout).build();
    let mut done = Delivered::default();
    let files = pending(dir);
    for (idx, file) in files.iter().enumerate() {
        if started.elapsed() >= target.budget {
            done.files_left = files.len() - idx;
            done.error.get_or_insert_with(|| "time budget spent".into());
            break;
        }
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                done.error.get_or_insert_with(|| format!("{}: {e}", file.display()));
                continue;
            }
        };
        let (body, good, bad) = clean(&text);
        done.corrupt_lines += bad;
        if good > 0 {
            let timestamp = format!("{}", crate::report::now() as u64);
            let signature = sign(&target.secret, &timestamp, body.as_bytes());
            let sent = agent
                .post(&target.url)
                .set("content-type", "application/x-ndjson")
                .set(odyssey_health_wire::TIMESTAMP_HEADER, &timestamp)
                .set(odyssey_health_wire::SIGNATURE_HEADER, &signature)
                .send_string(&body);
            if let Err(e) = sent {
                done.files_left = files.len() - idx;
                done.error = Some(e.to_string());
                break;
            }
        }
        let sent_dir = dir.join("sent");
        let moved = std::fs::create_dir_all(&sent_dir)
            .and_then(|()| std::fs::rename(file, sent_dir.join(file.file_name().unwrap_or_default())));
        if let Err(e) = moved {
            done.error.get_or_insert_with(|| format!("move {} to sent/: {e}", file.display()));
        }
        done.files_sent += 1;
        done.records_sent += good;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_lines_are_skipped_and_counted() {
        let record = |id: &str| {
            format!(
                r#"{{"kind":"task","id":"{id}","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}}"#
            )
        };
        let text = format!("{}\nnot json\n{{\"id\":\"no kind\"}}\n\n{}\n", record("a"), record("b"));
        let (body, good, bad) = clean(&text);
        assert_eq!((good, bad), (2, 2));
        assert_eq!(body, format!("{}\n{}\n", record("a"), record("b")));
    }

    #[test]
    fn an_unreachable_bridge_leaves_the_files() {
        let dir = std::env::temp_dir().join(format!("deliver-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = r#"{"kind":"task","id":"1.0.c1.task0","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}"#;
        std::fs::write(dir.join("1.0.jsonl"), format!("{line}\n")).unwrap();
        // Port 9 (discard) on loopback: nothing listens, the connect fails fast.
        let target = Target {
            url: "http://127.0.0.1:9/v1/health-reports".into(),
            secret: b"s".to_vec(),
            timeout: Duration::from_millis(300),
            budget: Duration::from_secs(1),
        };
        let done = deliver(&dir, &target);
        assert_eq!((done.files_sent, done.files_left), (0, 1));
        assert!(done.error.is_some());
        assert!(dir.join("1.0.jsonl").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
