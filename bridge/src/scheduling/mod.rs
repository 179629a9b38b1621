//! The bridge's task scheduler, on top of SLURM's (issue #10): where a job
//! without a partition goes (`route`), and which of the bridge's pending
//! jobs SLURM should start first (`order`, applied as job priorities). SLURM's
//! own scheduler and backfill still place every job on nodes.
//!
//! The active `Policy` comes from the config file and can be replaced at run
//! time by an admin (`PUT /v1/policy`); a replaced policy is kept in the
//! store and outlives a restart.

pub mod order;
pub mod retry;
pub mod route;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a job that names no partition goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// SLURM's default partition (the bridge names none).
    #[default]
    Default,
    /// The usable partitions in turn.
    RoundRobin,
    /// The partition where SLURM says the job would start first
    /// (`slurm_job_will_run`, one question per partition).
    EarliestStart,
    /// In proportion to `partition_weights`, or to idle CPUs where no
    /// weights are configured (smooth weighted round robin).
    Weighted,
}

/// Which of the bridge's pending jobs SLURM should start first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// SLURM's own priorities; the bridge sets none.
    #[default]
    Slurm,
    /// First submitted, first started.
    Fifo,
    /// Shortest requested time limit first, ties by submit time.
    Sjf,
    /// Users share the cluster by `user_weights` (1 where unset): the next
    /// job is the one whose user runs the fewest CPUs per unit of weight.
    WeightedFair,
    /// Every user's first pending job before anyone's second.
    RoundRobin,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Default => "default",
            Routing::RoundRobin => "round-robin",
            Routing::EarliestStart => "earliest-start",
            Routing::Weighted => "weighted",
        }
    }
}

impl Ordering {
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::Slurm => "slurm",
            Ordering::Fifo => "fifo",
            Ordering::Sjf => "sjf",
            Ordering::WeightedFair => "weighted-fair",
            Ordering::RoundRobin => "round-robin",
        }
    }
}

/// The active policies and their weights.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub ordering: Ordering,
    /// Partition name -> weight (a positive whole number), for `weighted`
    /// routing.
    #[serde(default)]
    pub partition_weights: BTreeMap<String, u32>,
    /// Unix user name -> weight (a positive whole number), for
    /// `weighted-fair` ordering; users not named weigh 1.
    #[serde(default)]
    pub user_weights: BTreeMap<String, u32>,
}

/// Most names a weight table may hold.
pub const MAX_WEIGHTS: usize = 1000;
/// Largest weight.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct PolicyError {
    pub field: String,
    pub detail: String,
}

impl Policy {
    /// Weights positive and bounded, names in SLURM's shape.
    pub fn check(&self) -> Result<(), PolicyError> {
        for (field, table) in [("partition_weights", &self.partition_weights), ("user_weights", &self.user_weights)] {
            if table.len() > MAX_WEIGHTS {
                return Err(PolicyError { field: field.into(), detail: format!("at most {MAX_WEIGHTS} entries") });
            }
            for (name, weight) in table {
                let shaped = !name.is_empty()
                    && name.len() <= 64
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
                if !shaped {
                    return Err(PolicyError {
                        field: format!("{field}.{name}"),
                        detail: "names are 1 to 64 letters, digits, '_', '-' or '.'".into(),
                    });
                }
                if *weight == 0 || *weight > MAX_WEIGHT {
                    return Err(PolicyError {
                        field: format!("{field}.{name}"),
                        detail: format!("a weight is a whole number from 1 to {MAX_WEIGHT}, not {weight}"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `name=weight,name=weight` (the config file's and the command line's form).
pub fn parse_weights(text: &str) -> Result<BTreeMap<String, u32>, String> {
    let mut weights = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, weight) = item.split_once('=').ok_or_else(|| format!("expected name=weight, not {item:?}"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("{name}: a weight is a positive whole number, not {weight:?}"))?;
        weights.insert(name.trim().to_owned(), weight);
    }
    Ok(weights)
}

/// The active policy, shared by the submitter (routing) and the poller
/// (ordering). Readers copy it out; `set` swaps it whole.
#[derive(Debug, Clone, Default)]
pub struct ActivePolicy(Arc<RwLock<Policy>>);

impl ActivePolicy {
    pub fn new(policy: Policy) -> ActivePolicy {
        ActivePolicy(Arc::new(RwLock::new(policy)))
    }

    pub fn get(&self) -> Policy {
        self.0.read().map(|p| p.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn set(&self, policy: Policy) {
        match self.0.write() {
            Ok(mut p) => *p = policy,
            Err(e) => *e.into_inner() = policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_and_check() {
        let weights = parse_weights("alice=3, bob=1").unwrap();
        assert_eq!(weights.get("alice"), Some(&3));
        assert!(parse_weights("alice").is_err());
        assert!(parse_weights("alice=x").is_err());
        let policy = Policy { user_weights: parse_weights("alice=0").unwrap(), ..Policy::default() };
        assert!(policy.check().unwrap_err().detail.contains("from 1"));
        let policy = Policy { partition_weights: parse_weights("a b=1").unwrap(), ..Policy::default() };
        assert!(policy.check().is_err());
    }

    #[test]
    fn policies_read_as_kebab_case() {
        let policy: Policy =
            serde_json::from_str(r#"{"routing":"earliest-start","ordering":"weighted-fair"}"#).unwrap();
        assert_eq!((policy.routing, policy.ordering), (Routing::EarliestStart, Ordering::WeightedFair));
        assert!(serde_json::from_str::<Policy>(r#"{"ordering":"lottery"}"#).is_err());
        assert!(serde_json::from_str::<Policy>(r#"{"orderin":"sjf"}"#).is_err());
    }
}
