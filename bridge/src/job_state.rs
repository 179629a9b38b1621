//! `JobState`: a job's state, parsed once where SLURM's output is read
//! (`slurm::parse`), stored as its SLURM name by the store, serialised by
//! serde under the same name. SLURM's job states as squeue and scontrol
//! print them (squeue(1), "JOB STATE CODES", SLURM 22.05), plus the two the
//! bridge adds: `SUBMITTING` (sbatch has not answered yet) and `UNKNOWN`
//! (SLURM forgot the job before the bridge saw it end).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! job_states {
    ($($variant:ident = $name:literal, terminal = $terminal:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum JobState {
            $($variant,)*
        }

        impl JobState {
            /// Every state, in the order the API documents them.
            pub const ALL: &'static [JobState] = &[$(JobState::$variant,)*];

            /// The name SLURM prints (and the API and the store use).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(JobState::$variant => $name,)*
                }
            }

            /// Whether SLURM does nothing more with a job in this state.
            pub fn is_terminal(self) -> bool {
                match self {
                    $(JobState::$variant => $terminal,)*
                }
            }
        }
    };
}

job_states! {
    Submitting = "SUBMITTING", terminal = false;
    Pending = "PENDING", terminal = false;
    Configuring = "CONFIGURING", terminal = false;
    Running = "RUNNING", terminal = false;
    Suspended = "SUSPENDED", terminal = false;
    Completing = "COMPLETING", terminal = false;
    Requeued = "REQUEUED", terminal = false;
    RequeueFed = "REQUEUE_FED", terminal = false;
    RequeueHold = "REQUEUE_HOLD", terminal = false;
    Resizing = "RESIZING", terminal = false;
    ResvDelHold = "RESV_DEL_HOLD", terminal = false;
    Signaling = "SIGNALING", terminal = false;
    StageOut = "STAGE_OUT", terminal = false;
    Stopped = "STOPPED", terminal = false;
    Completed = "COMPLETED", terminal = true;
    Failed = "FAILED", terminal = true;
    Cancelled = "CANCELLED", terminal = true;
    Timeout = "TIMEOUT", terminal = true;
    OutOfMemory = "OUT_OF_MEMORY", terminal = true;
    NodeFail = "NODE_FAIL", terminal = true;
    Preempted = "PREEMPTED", terminal = true;
    BootFail = "BOOT_FAIL", terminal = true;
    Deadline = "DEADLINE", terminal = true;
    SpecialExit = "SPECIAL_EXIT", terminal = true;
    Revoked = "REVOKED", terminal = true;
    Unknown = "UNKNOWN", terminal = true;
}

/// A state name that is none of `JobState::ALL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {given:?}; states: {}", JobState::names())]
pub struct UnknownState {
    pub given: String,
}

impl JobState {
    /// Every state's name, comma-separated, for error messages.
    pub fn names() -> String {
        JobState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl FromStr for JobState {
    type Err = UnknownState;

    /// Exact SLURM names; the API also takes lower case (`?state=running`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        JobState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == upper)
            .ok_or_else(|| UnknownState { given: s.to_owned() })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl schemars::JsonSchema for JobState {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JobState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        schemars::json_schema!({
            "type": "string",
            "enum": names,
            "description": "SLURM's job state (squeue(1), JOB STATE CODES), or SUBMITTING (sbatch has not answered yet) or UNKNOWN (SLURM forgot the job before the bridge saw it end)"
        })
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_states() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(*state));
            assert_eq!(serde_json::to_string(state).unwrap(), format!("\"{state}\""));
        }
        assert_eq!("running".parse::<JobState>(), Ok(JobState::Running));
        let err = "bogus".parse::<JobState>().unwrap_err().to_string();
        assert!(err.starts_with("unknown job state \"bogus\"; states: SUBMITTING, PENDING"), "{err}");
        assert!(JobState::Completed.is_terminal() && !JobState::Completing.is_terminal());
    }
}
