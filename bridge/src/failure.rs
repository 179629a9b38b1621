//! Why a finished job failed: its application, its resources, or the
//! infrastructure. A pure function of the job's final state and its health
//! records.

use odyssey_health_wire::records::{Known, Record};

use crate::job_state::JobState;

/// Who is to blame for a failure, as the API and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// The program: an exit code, a signal of its own, a failed verification.
    Application,
    /// What it asked for: time or memory ran out.
    Resource,
    /// The cluster: a node failed or starved, or the system killed a task.
    Infrastructure,
}

impl FailureClass {
    pub const ALL: [FailureClass; 3] =
        [FailureClass::Application, FailureClass::Resource, FailureClass::Infrastructure];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Application => "application",
            FailureClass::Resource => "resource",
            FailureClass::Infrastructure => "infrastructure",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub class: FailureClass,
    pub reason: String,
}

/// Signals that mean the system, not the program, ended a task.
const SYSTEM_SIGNALS: &[i32] = &[9, 15];

/// Below this much available memory a node counts as starved.
const STARVED_NODE_BYTES: u64 = 64 * 1024 * 1024;

pub fn classify(state: JobState, exit_code: Option<i32>, signal: Option<i32>, records: &[Record]) -> Option<Failure> {
    use FailureClass::{Application, Infrastructure, Resource};
    let failure = |class, reason: String| Some(Failure { class, reason });
    let bad_node = records.iter().find_map(|r| match r {
        Record::Node(n) if n.mem_available_bytes.value().is_some_and(|m| *m < STARVED_NODE_BYTES) => Some(&n.node),
        _ => None,
    });
    let oom = records.iter().any(|r| matches!(r, Record::Task(t) if t.oom_killed == Known::Value(true)));
    let signalled = records.iter().find_map(|r| match r {
        Record::Task(t) => t.outcome.signal.map(|s| (s, t.node.as_str())),
        Record::Node(_) => None,
    });
    match state {
        JobState::Completed | JobState::Cancelled => None,
        s if !s.is_terminal() => None,
        JobState::OutOfMemory => failure(Resource, "out of memory".into()),
        JobState::Timeout | JobState::Deadline => failure(Resource, "time limit reached".into()),
        JobState::NodeFail | JobState::BootFail => failure(Infrastructure, format!("SLURM reports {state}")),
        _ if oom => failure(Resource, "a task was OOM-killed".into()),
        _ if bad_node.is_some() => failure(
            Infrastructure,
            format!("node {} reported less than 64 MiB available", bad_node.map_or("?", String::as_str)),
        ),
        _ => match (signalled, signal.filter(|s| *s != 0), exit_code) {
            (Some((sig, node)), _, _) if SYSTEM_SIGNALS.contains(&sig) => {
                failure(Infrastructure, format!("a task on {node} was killed by signal {sig}"))
            }
            (_, Some(sig), _) if SYSTEM_SIGNALS.contains(&sig) => {
                failure(Infrastructure, format!("killed by signal {sig}"))
            }
            (Some((sig, node)), _, _) => failure(Application, format!("a task on {node} died of signal {sig}")),
            (_, Some(sig), _) => failure(Application, format!("died of signal {sig}")),
            (_, _, Some(code)) if code != 0 => failure(Application, format!("exit code {code}")),
            _ if state == JobState::Unknown => None,
            _ => failure(Application, format!("ended {state}")),
        },
    }
}

/// A kernel job's failure in the light of its result: a failed verification
/// is the reason (the exit code only echoes it); a job that SLURM calls
/// COMPLETED but left no result failed all the same; otherwise the missing
/// result adds to the reason SLURM's state gives.
pub fn with_kernel_result(
    failure: Option<Failure>,
    finished: bool,
    verified: Option<bool>,
    problem: Option<&str>,
) -> Option<Failure> {
    let application = |reason: &str| Some(Failure { class: FailureClass::Application, reason: reason.to_owned() });
    match (finished, verified, problem, failure) {
        (true, Some(false), Some(problem), _) => application(problem),
        (true, None, Some(problem), Some(f)) => Some(Failure { reason: format!("{}; {problem}", f.reason), ..f }),
        (true, None, Some(problem), None) => application(problem),
        (_, _, _, failure) => failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job_health::tests::record;
    use serde_json::json;
    use FailureClass::{Application, Infrastructure, Resource};

    #[test]
    fn classes() {
        let class = |state, code, signal, records: &[Record]| classify(state, code, signal, records).map(|f| f.class);
        assert_eq!(class(JobState::Failed, Some(3), None, &[]), Some(Application));
        assert_eq!(class(JobState::Timeout, None, None, &[]), Some(Resource));
        assert_eq!(class(JobState::OutOfMemory, None, None, &[]), Some(Resource));
        assert_eq!(class(JobState::NodeFail, None, None, &[]), Some(Infrastructure));
        let killed =
            [record(json!({"id": "1.0.c2.task0", "kind": "task", "node": "c2", "signal": 9, "exit_code": null}))];
        let f = classify(JobState::Failed, Some(0), Some(9), &killed).unwrap();
        assert_eq!((f.class, f.reason.as_str()), (Infrastructure, "a task on c2 was killed by signal 9"));
        let starved = [record(json!({"id": "1.0.c1.node", "kind": "node", "node": "c1", "mem_available_bytes": 1024}))];
        assert_eq!(class(JobState::Failed, Some(1), None, &starved), Some(Infrastructure));
        let oom = [record(json!({"id": "1.0.c1.task0", "kind": "task", "node": "c1", "oom_killed": true}))];
        assert_eq!(class(JobState::Failed, Some(1), None, &oom), Some(Resource));
        assert_eq!(class(JobState::Completed, Some(0), None, &[]), None);
        assert_eq!(class(JobState::Cancelled, Some(0), Some(15), &[]), None);
        assert_eq!(class(JobState::Running, None, None, &[]), None);
    }

    #[test]
    fn kernel_results_refine_the_reason() {
        let exit1 = classify(JobState::Failed, Some(1), None, &[]);
        let unverified = with_kernel_result(exit1.clone(), true, Some(false), Some("cg failed verification"));
        assert_eq!(unverified.unwrap().reason, "cg failed verification");
        let killed = with_kernel_result(exit1, true, None, Some("odyssey-mpi wrote no result"));
        assert_eq!(killed.unwrap().reason, "exit code 1; odyssey-mpi wrote no result");
        let completed = with_kernel_result(None, true, None, Some("no result"));
        assert_eq!(completed.unwrap().class, Application);
        assert_eq!(with_kernel_result(None, true, Some(true), None), None);
        assert_eq!(with_kernel_result(None, false, None, None), None);
    }
}
