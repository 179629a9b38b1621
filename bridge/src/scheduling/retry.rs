//! Failure handling (issue #10): which ended attempts are retried, and which
//! nodes have failed often enough to be drained. Pure; the poller applies
//! the decisions (`jobs::begin_retry`, `Submitter::retry`, `Slurm::drain_node`).

use std::collections::BTreeMap;

use crate::failure::{Failure, FailureClass};
use crate::job_state::JobState;
use crate::slurm::hostlist;
use crate::store::jobs::{Attempt, Observation, Tracked};

/// What becomes of a job whose attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Submit it again, without the attempt's nodes; the timeline says why.
    Retry { ended: Attempt, why: String },
    /// It ends; the attempt is kept (an infrastructure failure, which node
    /// draining counts).
    Keep(Attempt),
    /// It ends; nothing to keep.
    Finish,
}

/// The decision for a job whose attempt ended as `obs` said, failing with
/// `failure` (None: it did not fail, or was cancelled).
pub fn decide(job: &Tracked, obs: &Observation, failure: Option<&Failure>) -> Decision {
    let (Some(slurm_job_id), Some(failure)) = (job.slurm_job_id, failure) else {
        return Decision::Finish;
    };
    if !obs.finished || obs.state == JobState::Cancelled {
        return Decision::Finish;
    }
    let ended = Attempt {
        attempt: job.attempt,
        slurm_job_id,
        nodes: obs.nodes.clone(),
        state: obs.state,
        reason: obs.reason.clone(),
        failure_class: Some(failure.class.as_str().to_owned()),
        failure: Some(failure.reason.clone()),
        started_at: obs.started_at,
        ended_at: obs.ended_at.unwrap_or_else(crate::store::now),
    };
    let retried = job.retry_on.split(',').any(|c| c == failure.class.as_str());
    if job.retries_left > 0 && retried {
        let nodes = obs.nodes.as_deref().unwrap_or("no node");
        let why = format!(
            "attempt {} failed ({}: {} on {nodes}); retry {} of {}, avoiding {nodes}",
            job.attempt,
            failure.class.as_str(),
            failure.reason,
            job.attempt,
            job.attempt - 1 + job.retries_left,
        );
        return Decision::Retry { ended, why };
    }
    if failure.class == FailureClass::Infrastructure {
        Decision::Keep(ended)
    } else {
        Decision::Finish
    }
}

/// Nodes with at least `after` infrastructure failures among `failures`
/// (`(bridge job id, SLURM host list, when it ended)`), each with the jobs
/// that failed there. Failures from before the bridge last drained a node
/// (`drained_at`) do not count again once an admin resumed it. `after == 0`
/// drains nothing.
pub fn to_drain(
    failures: &[(i64, String, f64)],
    after: u32,
    drained_at: &std::collections::HashMap<String, f64>,
) -> Vec<(String, Vec<i64>)> {
    if after == 0 {
        return Vec::new();
    }
    let mut by_node: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (job, nodes, at) in failures {
        for node in hostlist::expand(nodes) {
            if drained_at.get(&node).is_some_and(|d| at <= d) {
                continue;
            }
            let jobs = by_node.entry(node).or_default();
            if !jobs.contains(job) {
                jobs.push(*job);
            }
        }
    }
    by_node.into_iter().filter(|(_, jobs)| jobs.len() >= after as usize).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(retries_left: u32, retry_on: &str) -> Tracked {
        Tracked {
            id: 7,
            slurm_job_id: Some(70),
            tag: "t".into(),
            state: JobState::Running,
            reason: None,
            submitted_at: 1.0,
            retries_left,
            retry_on: retry_on.into(),
            attempt: 1,
        }
    }

    fn ended(state: JobState) -> Observation {
        Observation {
            state,
            reason: Some("NodeDown".into()),
            nodes: Some("c3".into()),
            started_at: Some(2.0),
            ended_at: Some(9.0),
            exit_code: None,
            signal: None,
            finished: true,
            event_at: Some(9.0),
        }
    }

    fn failure(class: FailureClass) -> Failure {
        Failure { class, reason: "SLURM reports NODE_FAIL".into() }
    }

    #[test]
    fn infrastructure_failures_are_retried_while_retries_last() {
        let infra = failure(FailureClass::Infrastructure);
        let Decision::Retry { ended: attempt, why } =
            decide(&tracked(1, "infrastructure"), &ended(JobState::NodeFail), Some(&infra))
        else {
            panic!("not retried")
        };
        assert_eq!((attempt.attempt, attempt.slurm_job_id, attempt.nodes.as_deref()), (1, 70, Some("c3")));
        assert_eq!(why, "attempt 1 failed (infrastructure: SLURM reports NODE_FAIL on c3); retry 1 of 1, avoiding c3");
        // No retry left: kept for draining, the job ends.
        assert!(matches!(
            decide(&tracked(0, "infrastructure"), &ended(JobState::NodeFail), Some(&infra)),
            Decision::Keep(_)
        ));
    }

    #[test]
    fn a_users_own_failure_is_retried_only_when_asked_and_cancel_stops_retries() {
        let app = failure(FailureClass::Application);
        let failed = ended(JobState::Failed);
        assert_eq!(decide(&tracked(2, "infrastructure"), &failed, Some(&app)), Decision::Finish);
        assert!(matches!(
            decide(&tracked(2, "infrastructure,application"), &failed, Some(&app)),
            Decision::Retry { .. }
        ));
        let infra = failure(FailureClass::Infrastructure);
        assert_eq!(decide(&tracked(2, "infrastructure"), &ended(JobState::Cancelled), Some(&infra)), Decision::Finish);
        assert_eq!(decide(&tracked(2, "infrastructure"), &ended(JobState::Completed), None), Decision::Finish);
    }

    #[test]
    fn a_node_is_drained_after_enough_failures_of_distinct_jobs() {
        let failures = [
            (1, "c3".to_owned(), 1.0),
            (2, "c[2-3]".to_owned(), 2.0),
            (2, "c3".to_owned(), 3.0),
            (3, "c3".to_owned(), 4.0),
        ];
        let none = std::collections::HashMap::new();
        assert_eq!(to_drain(&failures, 3, &none), [("c3".to_owned(), vec![1, 2, 3])]);
        assert!(to_drain(&failures, 4, &none).is_empty());
        assert!(to_drain(&failures, 0, &none).is_empty());
        // Drained at 4.0 and resumed: those failures are spent.
        let drained = std::collections::HashMap::from([("c3".to_owned(), 4.0)]);
        assert!(to_drain(&failures, 3, &drained).is_empty());
    }
}
