//! Why a finished job failed: its application, its resources, or the
//! infrastructure. A pure function of the job's final state and its health
//! records.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// `application`, `resource` or `infrastructure`.
    pub class: &'static str,
    pub reason: String,
}

/// Signals that mean the system, not the program, ended a task.
const SYSTEM_SIGNALS: &[i64] = &[9, 15];

pub fn classify(
    state: &str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    records: &[serde_json::Value],
) -> Option<Failure> {
    let failure = |class, reason: String| Some(Failure { class, reason });
    let bad_node = records
        .iter()
        .find(|r| r["kind"] == "node" && r["mem_available_bytes"].as_u64().is_some_and(|m| m < 64 * 1024 * 1024));
    let oom = records.iter().any(|r| r["oom_killed"] == serde_json::Value::Bool(true));
    let signalled = records.iter().find_map(|r| r["signal"].as_i64().map(|s| (s, r["node"].as_str().unwrap_or("?"))));
    match state {
        "COMPLETED" | "PENDING" | "RUNNING" | "SUBMITTING" | "CANCELLED" => None,
        "OUT_OF_MEMORY" => failure("resource", "out of memory".into()),
        "TIMEOUT" | "DEADLINE" => failure("resource", "time limit reached".into()),
        "NODE_FAIL" | "BOOT_FAIL" => failure("infrastructure", format!("SLURM reports {state}")),
        _ if oom => failure("resource", "a task was OOM-killed".into()),
        _ if bad_node.is_some() => failure(
            "infrastructure",
            format!(
                "node {} reported less than 64 MiB available",
                bad_node.and_then(|n| n["node"].as_str()).unwrap_or("?")
            ),
        ),
        _ => match (signalled, signal.filter(|s| *s != 0), exit_code) {
            (Some((sig, node)), _, _) if SYSTEM_SIGNALS.contains(&sig) => {
                failure("infrastructure", format!("a task on {node} was killed by signal {sig}"))
            }
            (_, Some(sig), _) if SYSTEM_SIGNALS.contains(&i64::from(sig)) => {
                failure("infrastructure", format!("killed by signal {sig}"))
            }
            (Some((sig, node)), _, _) => failure("application", format!("a task on {node} died of signal {sig}")),
            (_, Some(sig), _) => failure("application", format!("died of signal {sig}")),
            (_, _, Some(code)) if code != 0 => failure("application", format!("exit code {code}")),
            _ if state == "UNKNOWN" => None,
            _ => failure("application", format!("ended {state}")),
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
    match (finished, verified, problem, failure) {
        (true, Some(false), Some(problem), _) => Some(Failure { class: "application", reason: problem.to_owned() }),
        (true, None, Some(problem), Some(f)) => Some(Failure { reason: format!("{}; {problem}", f.reason), ..f }),
        (true, None, Some(problem), None) => Some(Failure { class: "application", reason: problem.to_owned() }),
        (_, _, _, failure) => failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes() {
        assert_eq!(classify("FAILED", Some(3), None, &[]).unwrap().class, "application");
        assert_eq!(classify("TIMEOUT", None, None, &[]).unwrap().class, "resource");
        assert_eq!(classify("OUT_OF_MEMORY", None, None, &[]).unwrap().class, "resource");
        assert_eq!(classify("NODE_FAIL", None, None, &[]).unwrap().class, "infrastructure");
        let killed = [json!({"kind": "task", "node": "c2", "signal": 9})];
        let f = classify("FAILED", Some(0), Some(9), &killed).unwrap();
        assert_eq!((f.class, f.reason.as_str()), ("infrastructure", "a task on c2 was killed by signal 9"));
        let starved = [json!({"kind": "node", "node": "c1", "mem_available_bytes": 1024})];
        assert_eq!(classify("FAILED", Some(1), None, &starved).unwrap().class, "infrastructure");
        assert_eq!(classify("COMPLETED", Some(0), None, &[]), None);
        assert_eq!(classify("CANCELLED", Some(0), Some(15), &[]), None);
    }

    #[test]
    fn kernel_results_refine_the_reason() {
        let exit1 = classify("FAILED", Some(1), None, &[]);
        let unverified = with_kernel_result(exit1.clone(), true, Some(false), Some("cg failed verification"));
        assert_eq!(unverified.unwrap().reason, "cg failed verification");
        let killed = with_kernel_result(exit1, true, None, Some("odyssey-mpi wrote no result"));
        assert_eq!(killed.unwrap().reason, "exit code 1; odyssey-mpi wrote no result");
        let completed = with_kernel_result(None, true, None, Some("no result"));
        assert_eq!(completed.unwrap().class, "application");
        assert_eq!(with_kernel_result(None, true, Some(true), None), None);
        assert_eq!(with_kernel_result(None, false, None, None), None);
    }
}
