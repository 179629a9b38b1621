//! The records a job step reports, one JSON line each: one per task, one per
//! node. The plugin writes them and the bridge reads them with these types.
//! Values the plugin cannot know are `{"unknown": reason}`, never a guess
//! (cluster-notes.md, "SPANK plugins here").

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// How a task ended, decoded from the raw wait(2) status SPANK hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Outcome {
    /// Exit code when the task exited; None when a signal ended it.
    pub exit_code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    #[serde(default)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(inline))]
#[serde(untagged)]
pub enum Known<T> {
    Value(T),
    Unknown { unknown: Cow<'static, str> },
}

impl<T> Known<T> {
    pub const fn unknown(reason: &'static str) -> Known<T> {
        Known::Unknown { unknown: Cow::Borrowed(reason) }
    }

    pub fn value(&self) -> Option<&T> {
        match self {
            Known::Value(v) => Some(v),
            Known::Unknown { .. } => None,
        }
    }
}

/// A field an older plugin did not send reads as unknown.
impl<T> Default for Known<T> {
    fn default() -> Self {
        Known::unknown("not reported")
    }
}

/// One task's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TaskRecord {
    /// Unique and stable: `<job>.<step>.<node>.task<global id>`; the bridge
    /// deduplicates on it.
    pub id: String,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    pub task: u32,
    #[serde(default)]
    pub pid: i32,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(default)]
    pub wall_time_s: Known<f64>,
    #[serde(default)]
    pub peak_memory_bytes: Known<u64>,
    #[serde(default)]
    pub user_cpu_s: Known<f64>,
    #[serde(default)]
    pub system_cpu_s: Known<f64>,
    #[serde(default)]
    pub oom_killed: Known<bool>,
    /// Unix time the record was made.
    pub at: f64,
}

/// One node's view of a step, written when the step ends there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NodeRecord {
    pub id: String,
    pub job_id: u32,
    pub step_id: u32,
    pub node: String,
    /// 1, 5 and 15 minute load averages.
    #[serde(default)]
    pub load: Known<[f64; 3]>,
    #[serde(default)]
    pub mem_available_bytes: Known<u64>,
    /// Free space on the filesystem of the step's working directory.
    #[serde(default)]
    pub workdir_free_bytes: Known<u64>,
    pub step_start: f64,
    pub step_end: f64,
    pub tasks: u32,
    pub tasks_ok: u32,
    pub at: f64,
}

/// A record as it travels: `"kind": "task"` or `"kind": "node"` beside the
/// fields of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Task(TaskRecord),
    Node(NodeRecord),
}

/// Longest record id the bridge stores.
pub const MAX_ID_BYTES: usize = 256;

impl Record {
    pub fn id(&self) -> &str {
        match self {
            Record::Task(t) => &t.id,
            Record::Node(n) => &n.id,
        }
    }

    pub fn job_id(&self) -> u32 {
        match self {
            Record::Task(t) => t.job_id,
            Record::Node(n) => n.job_id,
        }
    }

    pub fn node(&self) -> &str {
        match self {
            Record::Task(t) => &t.node,
            Record::Node(n) => &n.node,
        }
    }

    pub fn at(&self) -> f64 {
        match self {
            Record::Task(t) => t.at,
            Record::Node(n) => n.at,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Record::Task(_) => "task",
            Record::Node(_) => "node",
        }
    }

    /// The step as the id names it (`<job>.<step>.<node>.<what>`): a number,
    /// or `batch` for a batch script.
    pub fn step(&self) -> &str {
        self.id().split('.').nth(1).unwrap_or("?")
    }

    /// One JSON line, checked: a finite time and an id of bounded length.
    pub fn parse(line: &[u8]) -> Result<Record, String> {
        let record: Record = serde_json::from_slice(line).map_err(|e| format!("not a health record: {e}"))?;
        if record.id().len() > MAX_ID_BYTES {
            return Err(format!("id is longer than {MAX_ID_BYTES} bytes"));
        }
        if !record.at().is_finite() {
            return Err("at must be a finite Unix time".into());
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let value: Known<u64> = Known::unknown("no per-task source");
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, r#"{"unknown":"no per-task source"}"#);
        assert_eq!(serde_json::to_string(&Known::Value(5u64)).unwrap(), "5");
        assert_eq!(serde_json::from_str::<Known<u64>>(&json).unwrap(), value);
    }

    #[test]
    fn records_round_trip_with_their_kind() {
        let task = Record::Task(TaskRecord {
            id: "7.0.c1.task0".into(),
            job_id: 7,
            step_id: 0,
            node: "c1".into(),
            task: 0,
            pid: 42,
            outcome: Outcome::from_wait_status(9),
            wall_time_s: Known::Value(1.5),
            peak_memory_bytes: Known::unknown("no cgroup"),
            user_cpu_s: Known::unknown("no cgroup"),
            system_cpu_s: Known::unknown("no cgroup"),
            oom_killed: Known::Value(false),
            at: 1.0e9,
        });
        let line = serde_json::to_string(&task).unwrap();
        assert!(line.starts_with(r#"{"kind":"task","id":"7.0.c1.task0""#), "{line}");
        assert!(line.contains(r#""signal":9"#), "{line}");
        assert_eq!(Record::parse(line.as_bytes()).unwrap(), task);
        assert_eq!(task.step(), "0");
        assert!(Record::parse(br#"{"kind":"other","id":"x"}"#).is_err());
        let long = format!(
            r#"{{"kind":"task","id":"{}","job_id":1,"step_id":0,"node":"c1","task":0,"exit_code":0,"signal":null,"at":1}}"#,
            "x".repeat(300)
        );
        assert!(Record::parse(long.as_bytes()).unwrap_err().contains("longer than"));
    }
}
