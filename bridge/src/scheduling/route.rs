//! Routing: the partition for a job that names none, among the partitions
//! its user may use and its size fits. Round robin and weighted choose from
//! the poller's picture of the partitions; earliest-start asks SLURM (the
//! submitter runs one will-run question per candidate and calls `earliest`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::Routing;

/// A partition as `scontrol show partition` describes it, its allowed
/// groups resolved to gids (None: everybody).
pub type PartitionInfo = crate::slurm::parse::Partition<u32>;

/// What a job asks of a partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    pub nodes: u32,
    pub time_limit: Option<u32>,
}

/// The partitions a user in `gids` may submit `needs` to, by name.
pub fn candidates<'a>(partitions: &'a [PartitionInfo], gids: &[u32], needs: Needs) -> Vec<&'a PartitionInfo> {
    let mut out: Vec<&PartitionInfo> = partitions
        .iter()
        .filter(|p| p.up && !p.hidden && !p.root_only)
        .filter(|p| p.allow_groups.as_ref().is_none_or(|allowed| allowed.iter().any(|g| gids.contains(g))))
        .filter(|p| needs.nodes as usize <= p.nodes.len() && p.max_nodes.is_none_or(|m| needs.nodes <= m))
        .filter(|p| match (needs.time_limit, p.max_time) {
            (Some(want), Some(max)) => want <= max,
            (None, Some(_)) => true, // the partition's default applies
            _ => true,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A routing decision, kept in the job's record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Routed {
    pub policy: Routing,
    pub partition: String,
    /// e.g. "partition long: earliest start 12:00:03 vs short 12:00:41".
    pub why: String,
}

/// State the turn-taking policies keep between submissions.
#[derive(Debug, Default)]
pub struct Router {
    /// Round robin: how many jobs were routed so far.
    turns: Mutex<u64>,
    /// Smooth weighted round robin: each partition's running credit.
    credit: Mutex<HashMap<String, i64>>,
}

impl Router {
    /// Round robin over `candidates` (sorted by name).
    pub fn round_robin(&self, candidates: &[&PartitionInfo]) -> Option<Routed> {
        if candidates.is_empty() {
            return None;
        }
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            *turns += 1;
            *turns - 1
        };
        let chosen = candidates[(turn % candidates.len() as u64) as usize];
        let names: Vec<&str> = candidates.iter().map(|p| p.name.as_str()).collect();
        Some(Routed {
            policy: Routing::RoundRobin,
            partition: chosen.name.clone(),
            why: format!(
                "partition {}: turn {} of {} ({})",
                chosen.name,
                turn % names.len() as u64 + 1,
                names.len(),
                names.join(", ")
            ),
        })
    }

    /// Smooth weighted round robin (nginx's): every candidate gains its
    /// weight, the richest is chosen and pays the total. Weights are the
    /// configured ones, or idle CPUs (at least 1) when none is configured
    /// for any candidate.
    pub fn weighted(
        &self,
        candidates: &[&PartitionInfo],
        weights: &BTreeMap<String, u32>,
        idle_cpus: &HashMap<String, u32>,
    ) -> Option<Routed> {
        if candidates.is_empty() {
            return None;
        }
        let configured = candidates.iter().any(|p| weights.contains_key(&p.name));
        let weight_of = |p: &PartitionInfo| -> i64 {
            if configured {
                i64::from(weights.get(&p.name).copied().unwrap_or(0))
            } else {
                i64::from(idle_cpus.get(&p.name).copied().unwrap_or(0).max(1))
            }
        };
        let mut credit = self.credit.lock().unwrap_or_else(|e| e.into_inner());
        let total: i64 = candidates.iter().map(|p| weight_of(p)).sum();
        if total == 0 {
            return None;
        }
        let mut best: Option<(&PartitionInfo, i64)> = None;
        for p in candidates {
            let c = credit.entry(p.name.clone()).or_insert(0);
            *c += weight_of(p);
            if best.is_none_or(|(_, b)| *c > b) {
                best = Some((p, *c));
            }
        }
        let (chosen, _) = best?;
        *credit.entry(chosen.name.clone()).or_insert(0) -= total;
        let basis = if configured { "configured weight" } else { "idle CPUs" };
        let shares: Vec<String> = candidates.iter().map(|p| format!("{} {}", p.name, weight_of(p))).collect();
        Some(Routed {
            policy: Routing::Weighted,
            partition: chosen.name.clone(),
            why: format!("partition {}: {basis} {}", chosen.name, shares.join(" vs ")),
        })
    }
}

/// Earliest start among SLURM's answers (`(partition, start as Unix time,
/// as SLURM printed it)`); ties go to the first.
pub fn earliest(answers: &[(String, f64, String)]) -> Option<Routed> {
    let (best, _, _) = answers.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let best_answer = answers.iter().find(|a| &a.0 == best)?;
    let others: Vec<String> =
        answers.iter().filter(|a| &a.0 != best).map(|(name, _, shown)| format!("{name} {shown}")).collect();
    let why = if others.is_empty() {
        format!("partition {best}: earliest start {}", best_answer.2)
    } else {
        format!("partition {best}: earliest start {} vs {}", best_answer.2, others.join(", "))
    };
    Some(Routed { policy: Routing::EarliestStart, partition: best.clone(), why })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(name: &str, nodes: &[&str]) -> PartitionInfo {
        PartitionInfo {
            name: name.into(),
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
            up: true,
            default: false,
            hidden: false,
            root_only: false,
            allow_groups: None,
            max_time: None,
            max_nodes: None,
            total_cpus: 2 * nodes.len() as u32,
        }
    }

    #[test]
    fn candidates_follow_groups_size_and_time() {
        let mut long = partition("long", &["c3"]);
        long.allow_groups = Some(vec![500]);
        let mut short = partition("short", &["c1", "c2"]);
        short.max_time = Some(10);
        let mut admin = partition("admin", &["c1"]);
        admin.root_only = true;
        let all = [long, short, admin];
        let names = |c: Vec<&PartitionInfo>| c.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(candidates(&all, &[100], Needs { nodes: 1, time_limit: Some(5) })), ["short"]);
        assert_eq!(names(candidates(&all, &[500], Needs { nodes: 1, time_limit: Some(5) })), ["long", "short"]);
        assert_eq!(names(candidates(&all, &[500], Needs { nodes: 1, time_limit: Some(60) })), ["long"]);
        assert!(candidates(&all, &[500], Needs { nodes: 3, time_limit: None }).is_empty());
    }

    #[test]
    fn round_robin_takes_turns() {
        let (a, b) = (partition("a", &["c1"]), partition("b", &["c2"]));
        let router = Router::default();
        let chosen: Vec<String> = (0..4).map(|_| router.round_robin(&[&a, &b]).unwrap().partition).collect();
        assert_eq!(chosen, ["a", "b", "a", "b"]);
    }

    #[test]
    fn weighted_follows_weights_smoothly() {
        let (a, b) = (partition("a", &["c1"]), partition("b", &["c2"]));
        let router = Router::default();
        let weights = BTreeMap::from([("a".to_owned(), 3), ("b".to_owned(), 1)]);
        let chosen: Vec<String> =
            (0..8).map(|_| router.weighted(&[&a, &b], &weights, &HashMap::new()).unwrap().partition).collect();
        // Interleaved, not in blocks of three.
        assert_eq!(chosen, ["a", "a", "b", "a", "a", "a", "b", "a"]);
        // No weights: idle CPUs decide.
        let idle = HashMap::from([("a".to_owned(), 0), ("b".to_owned(), 4)]);
        let routed = Router::default().weighted(&[&a, &b], &BTreeMap::new(), &idle).unwrap();
        assert_eq!(routed.partition, "b");
        assert!(routed.why.contains("idle CPUs"), "{}", routed.why);
    }

    #[test]
    fn earliest_names_the_alternatives() {
        let routed =
            earliest(&[("short".into(), 50.0, "12:00:41".into()), ("long".into(), 10.0, "12:00:03".into())]).unwrap();
        assert_eq!(routed.partition, "long");
        assert_eq!(routed.why, "partition long: earliest start 12:00:03 vs short 12:00:41");
    }
}
