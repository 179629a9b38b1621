//! What `/v1/jobs` answers: response bodies built from the store's rows, so
//! a column can change without changing the API (docs/openapi.json names
//! these shapes).

use odyssey_health_wire::records::{NodeRecord, Record, TaskRecord};
use schemars::JsonSchema;
use serde::Serialize;

use crate::failure::{Failure, FailureClass};
use crate::job_health::{NodeHealth, StepHealth};
use crate::job_state::JobState;
use crate::scheduling::order::Ordered;
use crate::scheduling::route::Routed;
use crate::store::jobs::{Attempt, Event, Job};

/// A job as `POST /v1/jobs` and `DELETE /v1/jobs/{id}` answer it: its
/// summary and what it runs.
#[derive(Serialize, JsonSchema)]
pub struct JobRecord {
    #[serde(flatten)]
    pub summary: JobSummary,
    /// The request with the script's directives merged in (`directives`
    /// says which line set what).
    #[schemars(schema_with = "job_request")]
    pub spec: serde_json::Value,
    pub script: String,
    pub stdout_path: Option<String>,
    pub stderr_path: Option<String>,
    pub unix_user: String,
}

impl From<Job> for JobRecord {
    fn from(mut job: Job) -> Self {
        // The fields only the record has are taken first; the rest is the summary.
        JobRecord {
            spec: std::mem::take(&mut job.spec),
            script: std::mem::take(&mut job.script),
            stdout_path: job.stdout_path.take(),
            stderr_path: job.stderr_path.take(),
            unix_user: std::mem::take(&mut job.unix_user),
            summary: job.into(),
        }
    }
}

/// `GET /v1/jobs/{id}`: the record with, once it failed, why.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Job")]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    pub failure: Option<FailureBody>,
    /// Earlier attempts that failed and were retried, and an attempt that
    /// failed for the infrastructure; first first.
    pub attempts: Vec<AttemptBody>,
    /// Kernel jobs only: where the result is and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultView>,
}

/// One ended attempt of a job.
#[derive(Serialize, JsonSchema)]
pub struct AttemptBody {
    pub attempt: u32,
    /// None while the next attempt is being submitted.
    pub slurm_job_id: Option<i64>,
    pub nodes: Option<String>,
    pub state: JobState,
    pub reason: Option<String>,
    pub failure: Option<FailureBody>,
    pub started_at: Option<f64>,
    /// None while the attempt runs.
    pub ended_at: Option<f64>,
}

impl AttemptBody {
    /// The job's current attempt, from its record.
    pub fn current(job: &Job, failure: Option<&Failure>) -> AttemptBody {
        AttemptBody {
            attempt: job.attempt,
            slurm_job_id: job.slurm_job_id,
            nodes: job.nodes.clone(),
            state: job.state,
            reason: job.reason.clone(),
            failure: failure.cloned().map(FailureBody::from),
            started_at: job.started_at,
            ended_at: job.ended_at,
        }
    }
}

impl From<Attempt> for AttemptBody {
    fn from(a: Attempt) -> Self {
        let class = match a.failure_class.as_deref() {
            Some("infrastructure") => Some(FailureClass::Infrastructure),
            Some("application") => Some(FailureClass::Application),
            Some("resource") => Some(FailureClass::Resource),
            _ => None,
        };
        AttemptBody {
            attempt: a.attempt,
            slurm_job_id: Some(a.slurm_job_id),
            nodes: a.nodes,
            state: a.state,
            reason: a.reason,
            failure: class.map(|class| FailureBody { class, reason: a.failure.unwrap_or_default() }),
            started_at: a.started_at,
            ended_at: Some(a.ended_at),
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub struct FailureBody {
    pub class: FailureClass,
    pub reason: String,
}

impl From<Failure> for FailureBody {
    fn from(failure: Failure) -> Self {
        FailureBody { class: failure.class, reason: failure.reason }
    }
}

/// The request's fields (see `JobRequest`) and `directives`: which line of
/// the script set which field, and whether the request overrode it.
fn job_request(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let source = generator.subschema_for::<crate::jobspec::DirectiveSource>();
    schemars::json_schema!({
        "type": "object",
        "description": "The fields of the JobRequest as merged with the script's directives, and where each directive came from",
        "properties": {"directives": {"type": "array", "items": source}}
    })
}

#[derive(Serialize, JsonSchema)]
pub struct ResultView {
    pub url: String,
    /// Whether the poller has read it yet (it does once the job finished).
    pub collated: bool,
    /// Whether it passed verification; null until collated or when missing.
    pub verified: Option<bool>,
    /// Why there is no verified result.
    pub problem: Option<String>,
}

/// A job in a list (and the first part of every job body): the record
/// without its spec and script, which `GET /v1/jobs/{id}` serves.
#[derive(Serialize, JsonSchema)]
pub struct JobSummary {
    pub id: i64,
    pub user: String,
    pub slurm_job_id: Option<i64>,
    pub name: String,
    pub partition: Option<String>,
    pub state: JobState,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub nodes: Option<String>,
    pub submitted_at: f64,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub finished: bool,
    /// Which routing policy chose the partition and why; absent when the
    /// job named its partition or SLURM's default applied.
    pub routing: Option<Routed>,
    /// The ordering policy's last priority for the job while it waited.
    pub ordering: Option<Ordered>,
    /// Which attempt this is (1 until a retry).
    pub attempt: u32,
    /// Retries it may still get.
    pub retries_left: u32,
}

impl From<Job> for JobSummary {
    fn from(job: Job) -> Self {
        JobSummary {
            id: job.id,
            user: job.user,
            slurm_job_id: job.slurm_job_id,
            name: job.name,
            partition: job.partition,
            state: job.state,
            reason: job.reason,
            exit_code: job.exit_code,
            signal: job.signal,
            nodes: job.nodes,
            submitted_at: job.submitted_at,
            started_at: job.started_at,
            ended_at: job.ended_at,
            finished: job.finished,
            routing: job.routing.and_then(|v| serde_json::from_value(v).ok()),
            ordering: job.ordering.and_then(|v| serde_json::from_value(v).ok()),
            attempt: job.attempt,
            retries_left: job.retries_left,
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub struct JobPage {
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// One entry of a job's timeline.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Event")]
pub struct EventBody {
    pub at: f64,
    pub state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<Event> for EventBody {
    fn from(event: Event) -> Self {
        EventBody { at: event.at, state: event.state, reason: event.reason }
    }
}

/// `GET /v1/jobs/{id}/health`.
#[derive(Serialize, JsonSchema)]
pub struct JobHealth {
    pub id: i64,
    pub slurm_job_id: Option<i64>,
    pub tasks: usize,
    pub tasks_ok: usize,
    /// Per step (batch first), per node, per task.
    pub steps: Vec<StepBody>,
    /// Every record, oldest first: `kind` task or node, per step.
    pub records: Vec<Record>,
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "StepHealth")]
pub struct StepBody {
    /// SLURM's step: a number, or "batch" for a batch script.
    pub step: String,
    pub tasks: usize,
    pub tasks_ok: usize,
    pub nodes: Vec<NodeBody>,
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "NodeHealth")]
pub struct NodeBody {
    pub node: String,
    /// The node's record for the step; null until it arrives.
    pub node_record: Option<Record>,
    /// Task records, by global task id.
    pub tasks: Vec<Record>,
}

impl From<StepHealth> for StepBody {
    fn from(step: StepHealth) -> Self {
        StepBody {
            step: step.step,
            tasks: step.tasks,
            tasks_ok: step.tasks_ok,
            nodes: step.nodes.into_iter().map(NodeBody::from).collect(),
        }
    }
}

impl From<NodeHealth> for NodeBody {
    fn from(node: NodeHealth) -> Self {
        NodeBody {
            node: node.node,
            node_record: node.node_record.map(|n: NodeRecord| Record::Node(n)),
            tasks: node.tasks.into_iter().map(|t: TaskRecord| Record::Task(t)).collect(),
        }
    }
}
