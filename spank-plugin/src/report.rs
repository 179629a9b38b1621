//! The records a job step reports: one per task, one per node. Values this
//! plugin cannot know are `null` with a reason beside them, never a guess
//! (cluster-notes.md, "SPANK plugins here").

use serde::Serialize;

/// How a task ended, decoded from the raw wait(2) status SPANK hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Exit code when the task exited; None when a signal ended it.
    pub exit_code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    pub core_dumped: bool,
}

impl Outcome {
    pub fn from_wait_status(status: i32) -> Outcome {
        // WIFEXITED / WEXITSTATUS / WTERMSIG / WCOREDUMP, as glibc defines them.
        let signal = status & 0x7f;
        if signal == 0 {
            Outcome { exit_code: Some((status >> 8) & 0xff), signal: None, core_dumped: false }
        } else {
            Outcome { exit_code: None, signal: Some(signal), core_dumped: status & 0x80 != 0 }
        }
    }

    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A value that is either known or unknown for a stated reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Known<T> {
    Value(T),
    Unknown { unknown: &'static str },
}

/// Why per-task resource figures are unknown on a node without cgroups:
/// slurmstepd reaps the task itself, SPANK passes on no rusage, and /proc of
/// the task is gone by the time task_exit runs.
pub const NO_PER_TASK_SOURCE: &str =
    "no per-task source: SPANK gives no rusage of the reaped task and the node tracks processes without cgroups";

#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Unique and stable: `<job>.<step>.<node>.task<global id>`; the bridge
    /// deduplicates on it.
    pub id: String,
    pub kind: &'static str,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    pub task: u32,
    pub pid: i32,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub wall_time_s: Known<f64>,
    pub peak_memory_bytes: Known<u64>,
    pub user_cpu_s: Known<f64>,
    pub system_cpu_s: Known<f64>,
    pub oom_killed: Known<bool>,
    /// Unix time the record was made.
    pub at: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub id: String,
    pub kind: &'static str,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    /// 1, 5 and 15 minute load averages.
    pub load: Known<[f64; 3]>,
    pub mem_available_bytes: Known<u64>,
    /// Free space on the filesystem of the step's working directory.
    pub workdir_free_bytes: Known<u64>,
    pub step_start: f64,
    pub step_end: f64,
    pub tasks: u32,
    pub tasks_ok: u32,
    pub at: f64,
}

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
    parsed.map_or(Known::Unknown { unknown: "/proc/loadavg unreadable" }, Known::Value)
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn mem_available() -> Known<u64> {
    let parsed = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib * 1024)
    });
    parsed.map_or(Known::Unknown { unknown: "MemAvailable missing from /proc/meminfo" }, Known::Value)
}

/// Free bytes (for unprivileged users) on the filesystem holding `path`.
pub fn free_space(path: &std::path::Path) -> Known<u64> {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => Known::Value(stat.blocks_available() * stat.fragment_size()),
        Err(_) => Known::Unknown { unknown: "statvfs of the working directory failed" },
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
        let unknown = Known::Unknown { unknown: NO_PER_TASK_SOURCE };
        let oom_unknown = || Known::Unknown { unknown: "no cgroup" };
        let mixed = [task(0, 3 << 8, unknown.clone(), oom_unknown()), task(1, 9, unknown.clone(), oom_unknown())];
        assert_eq!(
            node_summary("c1", &mixed),
            "c1: 0 of 2 tasks ok (task 0: exit code 3, task 1: signal 9), peak memory unknown, OOM unknown"
        );
        let one = [task(0, 0, unknown, oom_unknown())];
        assert_eq!(node_summary("c3", &one), "c3: 1 task ok, peak memory unknown, OOM unknown");
    }

    #[test]
    fn wait_statuses_decode() {
        assert_eq!(Outcome::from_wait_status(0), Outcome { exit_code: Some(0), signal: None, core_dumped: false });
        assert_eq!(Outcome::from_wait_status(3 << 8).exit_code, Some(3));
        let killed = Outcome::from_wait_status(9);
        assert_eq!((killed.exit_code, killed.signal), (None, Some(9)));
        assert!(Outcome::from_wait_status(11 | 0x80).core_dumped);
    }

    #[test]
    fn unknown_values_say_why() {
        let value: Known<u64> = Known::Unknown { unknown: NO_PER_TASK_SOURCE };
        let json = serde_json::to_string(&value).unwrap();
        assert!(json.starts_with(r#"{"unknown":"no per-task source"#), "{json}");
        assert_eq!(serde_json::to_string(&Known::Value(5u64)).unwrap(), "5");
    }
}
