//! Delivery of spooled records to the bridge with the cluster's shared
//! secret: every pending step file of a node's spool (the loop is
//! `odyssey_health_wire::spool::deliver_with`, shared with the worker agent,
//! which sends over mutual TLS instead), each POST signed and bounded by a
//! timeout, within an overall time budget. Blocking and single-threaded on
//! purpose: the plugin calls this from slurmstepd, which must not gain
//! threads (slurm-spank `Plugin`).

use std::path::Path;
use std::time::Duration;

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

pub use odyssey_health_wire::sign;
use odyssey_health_wire::spool::Refusal;
pub use odyssey_health_wire::spool::{clean, Delivered};

/// Sends every pending file of `dir` until the budget runs out or the
/// bridge fails to take one.
pub fn deliver(dir: &Path, target: &Target) -> Delivered {
    let agent = ureq::AgentBuilder::new().timeout(target.timeout).build();
    odyssey_health_wire::spool::deliver_with(dir, target.budget, |body| {
        let timestamp = format!("{}", crate::report::now() as u64);
        let signature = sign(&target.secret, &timestamp, body.as_bytes());
        agent
            .post(&target.url)
            .set("content-type", "application/x-ndjson")
            .set(odyssey_health_wire::TIMESTAMP_HEADER, &timestamp)
            .set(odyssey_health_wire::SIGNATURE_HEADER, &signature)
            .send_string(body)
            .map(|_| ())
            .map_err(|e| match e {
                ureq::Error::Status(status, answer) => {
                    let detail = answer.into_string().unwrap_or_default();
                    Refusal::from_status(status, format!("{status}: {}", detail.trim()))
                }
                other => Refusal::Later(other.to_string()),
            })
    })
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
        // Without its node record, a file goes once it settled.
        let old = std::time::SystemTime::now() - odyssey_health_wire::spool::SETTLING * 2;
        std::fs::File::options().write(true).open(dir.join("1.0.jsonl")).unwrap().set_modified(old).unwrap();
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
