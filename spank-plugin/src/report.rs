//! What the plugin measures for its records (typed in `odyssey-health-wire`,
//! shared with the bridge) and the one-line summary per node for srun.

pub use odyssey_health_wire::records::{Known, NodeRecord, Outcome, Record, TaskRecord};

/// Why per-task resource figures are unknown on a node without cgroups:
/// slurmstepd reaps the task itself, SPANK passes on no rusage, and /proc of
/// the task is gone by the time task_exit runs.
pub const NO_PER_TASK_SOURCE: &str =
    "no per-task source: SPANK gives no rusage of the reaped task and the node tracks processes without cgroups";

/// What the end-of-step summary needs of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSummary {
    pub task: u32,
    pub outcome: Outcome,
    pub peak_memory_bytes: Known<u64>,
    pub oom_killed: Known<bool>,
}

/// One line per node for srun's terminal when a step ends, e.g.
/// `c2: 2 tasks ok, peak 1.2 GiB, 0 OOM`, or
/// `c1: 1 of 2 tasks ok (task 1: exit code 3), peak memory unknown, OOM unknown`.
pub fn node_summary(node: &str, tasks: &[TaskSummary]) -> String {
    let ok = tasks.iter().filter(|t| t.outcome.ok()).count();
    let mut line = if ok == tasks.len() {
        format!("{node}: {ok} task{} ok", if ok == 1 { "" } else { "s" })
    } else {
        let failed: Vec<String> = tasks
            .iter()
            .filter(|t| !t.outcome.ok())
            .take(3)
            .map(|t| match (t.outcome.exit_code, t.outcome.signal) {
                (_, Some(signal)) => format!("task {}: signal {signal}", t.task),
                (code, None) => format!("task {}: exit code {}", t.task, code.unwrap_or(-1)),
            })
            .collect();
        let more = tasks.len() - ok - failed.len();
        let more = if more > 0 { format!(", {more} more") } else { String::new() };
        format!("{node}: {ok} of {} tasks ok ({}{more})", tasks.len(), failed.join(", "))
    };
    let peaks: Option<Vec<u64>> = tasks
        .iter()
        .map(|t| match t.peak_memory_bytes {
            Known::Value(v) => Some(v),
            Known::Unknown { .. } => None,
        })
        .collect();
    match peaks.and_then(|p| p.into_iter().max()) {
        Some(peak) => line.push_str(&format!(", peak {:.1} GiB", peak as f64 / (1u64 << 30) as f64)),
        None => line.push_str(", peak memory unknown"),
    }
    let ooms: Option<usize> = tasks
        .iter()
        .map(|t| match t.oom_killed {
            Known::Value(v) => Some(usize::from(v)),
            Known::Unknown { .. } => None,
        })
        .sum();
    match ooms {
        Some(n) => line.push_str(&format!(", {n} OOM")),
        None => line.push_str(", OOM unknown"),
    }
    line
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// /proc/loadavg's first three fields.
pub fn load_average() -> Known<[f64; 3]> {
    let parsed = std::fs::read_to_string("/proc/loadavg").ok().and_then(|text| {
        let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
        Some([fields.next()??, fields.next()??, fields.next()??])
    });
    parsed.map_or(Known::unknown("/proc/loadavg unreadable"), Known::Value)
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Known<u64> {
    let parsed = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    parsed.map_or(Known::unknown("MemAvailable missing from /proc/meminfo"), Known::Value)
}

/// Free bytes (for unprivileged users) on the filesystem holding `path`.
pub fn free_space(path: &std::path::Path) -> Known<u64> {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => Known::Value(stat.blocks_available() * stat.fragment_size()),
        Err(_) => Known::unknown("statvfs of the working directory failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_say_what_is_known() {
        let task = |task, status, peak: Known<u64>, oom: Known<bool>| TaskSummary {
            task,
            outcome: Outcome::from_wait_status(status),
            peak_memory_bytes: peak,
            oom_killed: oom,
        };
        let gib = 1u64 << 30;
        let known = [
            task(2, 0, Known::Value(gib), Known::Value(false)),
            task(3, 0, Known::Value(gib + gib / 5), Known::Value(false)),
        ];
        assert_eq!(node_summary("c2", &known), "c2: 2 tasks ok, peak 1.2 GiB, 0 OOM");
        let unknown = Known::unknown(NO_PER_TASK_SOURCE);
        let oom_unknown = || Known::unknown("no cgroup");
        let mixed = [task(0, 3 << 8, unknown.clone(), oom_unknown()), task(1, 9, unknown.clone(), oom_unknown())];
        assert_eq!(
            node_summary("c1", &mixed),
            "c1: 0 of 2 tasks ok (task 0: exit code 3, task 1: signal 9), peak memory unknown, OOM unknown"
        );
        let one = [task(0, 0, unknown, oom_unknown())];
        assert_eq!(node_summary("c3", &one), "c3: 1 task ok, peak memory unknown, OOM unknown");
    }
}
