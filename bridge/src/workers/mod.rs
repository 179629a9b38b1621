//! Workers: machines that join the cluster as SLURM dynamic nodes over
//! mutual TLS (issue #11). The rules live here; the CA in `ca`, the rows in
//! `store::workers`, the HTTP in `http::workers` (public API) and
//! `http::worker_api` (the mutual-TLS endpoint), and SLURM in `slurm`.

pub mod ca;

use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::slurm::poller::NodeView;
use crate::store::workers::Worker;

/// What the bridge needs to admit workers; present when `--worker-listen`
/// is set.
pub struct Workers {
    pub ca: ca::Ca,
    /// The mutual-TLS endpoint's URL as workers reach it.
    pub endpoint: String,
    /// The munge key joined workers receive over mutual TLS.
    pub munge_key: std::path::PathBuf,
    pub cert_lifetime: Duration,
    /// Without a heartbeat this long, a worker is lost.
    pub lost_after: Duration,
}

/// The node feature every joined worker has.
pub const WORKER_FEATURE: &str = "worker";

/// `--worker-lost-after`'s default.
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(30);

/// Longest a join token may live.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(7 * 86400);
/// Features per node, and bytes per feature.
pub const MAX_FEATURES: usize = 16;
pub const MAX_FEATURE_BYTES: usize = 64;

/// A fresh join token (256 random bits, URL-safe) and the hash kept of it.
pub fn new_token() -> (String, String) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let token = format!("odyssey-join-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Node features as SLURM takes them in `--conf "Feature=..."`: checked one
/// by one, so a feature is never a list, an option or another key.
pub fn check_features(features: &[String]) -> Result<Vec<String>, String> {
    if features.len() > MAX_FEATURES {
        return Err(format!("at most {MAX_FEATURES} features"));
    }
    let mut out: Vec<String> = Vec::new();
    for f in features {
        let ok = !f.is_empty()
            && f.len() <= MAX_FEATURE_BYTES
            && f.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && f.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "{f:?} is not a feature: 1 to {MAX_FEATURE_BYTES} letters, digits, '_', '-' or '.', starting with a letter or digit"
            ));
        }
        if !out.contains(f) {
            out.push(f.clone());
        }
    }
    Ok(out)
}

/// A worker's name is its node name: a host name SLURM and DNS both take
/// (lower-case letters, digits and '-', at most 63, not starting or ending
/// with '-').
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a worker name: 1 to 63 lower-case letters, digits and '-', not at either end"))
    }
}

/// What a worker is doing, from its row, its heartbeats and SLURM's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Certified, not yet a node in SLURM.
    Joining,
    Idle,
    /// Running jobs.
    Busy,
    /// Leaving, or drained: running jobs finish, nothing new starts.
    Draining,
    /// Neither heartbeats nor slurmd answer: the machine is gone without
    /// leaving. A rejoin under the same name replaces it.
    Lost,
    Left,
}

impl WorkerState {
    pub fn of(worker: &Worker, node: Option<&NodeView>, now: f64, lost_after: Duration) -> WorkerState {
        if worker.state == "left" {
            return WorkerState::Left;
        }
        let silent = worker.heartbeat_at.unwrap_or(worker.joined_at) + lost_after.as_secs_f64() < now;
        let Some(node) = node else {
            return if silent { WorkerState::Lost } else { WorkerState::Joining };
        };
        let slurm_state = node.info.state.to_ascii_lowercase();
        let down = ["down", "not_responding", "fail", "unknown"].iter().any(|s| slurm_state.contains(s))
            || slurm_state.ends_with('*');
        if silent || down {
            return WorkerState::Lost;
        }
        if worker.state == "leaving" || slurm_state.contains("drain") {
            return WorkerState::Draining;
        }
        if node.running_jobs.is_empty() && node.info.cpus_allocated == 0 {
            WorkerState::Idle
        } else {
            WorkerState::Busy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_features_are_single_safe_words() {
        assert!(check_name("w1").is_ok());
        assert!(check_name("node-07").is_ok());
        for bad in ["", "W1", "-w", "w-", "w 1", "w,1", "w[1-3]", "a.b", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_features(&["gpu".into(), "gpu".into(), "ib-4x".into()]).unwrap(), vec!["gpu", "ib-4x"]);
        for bad in ["", "a,b", "a b", "-x", "Weight=1", "a&b"] {
            assert!(check_features(&[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(check_features(&vec!["a".to_owned(); MAX_FEATURES + 1]).is_err());
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), ha);
        assert!(!ha.contains(&a));
        assert!(a.len() > 50);
    }
}
