//! `/v1/jobs`: submit (sbatch as the caller's Unix account), list, read,
//! timeline, output (with a follow mode), cancel.

pub(super) mod bodies;
mod output;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use odyssey_health_wire::records::Record;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiJson, ApiQuery, AppState, AuthUser};
use crate::failure;
use crate::job_state::JobState;
use crate::jobspec::JobRequest;
use crate::slurm::{Identity, SlurmError};
use crate::store::jobs::{self, Job, JobFilter};
use crate::store::users::Role;
use crate::submission::{Caller, SubmitError, Submitted};
use crate::unix;
use bodies::{
    AttemptBody, EventBody, FailureBody, JobHealth, JobPage, JobRecord, JobSummary, JobView, ResultView, StepBody,
};
pub use output::FollowSlots;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list_jobs).post(submit_job))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/jobs/{id}/events", get(get_events))
        .route("/jobs/{id}/output", get(output::get_output))
        .route("/jobs/{id}/health", get(get_health))
        .route("/jobs/{id}/result", get(get_result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitQuery {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct DryRun {
    dry_run: bool,
    /// SLURM's own estimate, from `sbatch --test-only`.
    slurm: String,
    script: String,
}

/// Longest Idempotency-Key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY && k.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key", format!("must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"))
        })?;
    Ok(Some(key.to_owned()))
}

/// A submission's error as a problem. When SLURM does not answer, the client
/// is told when to retry: the controller probe's interval, by when the
/// bridge knows again.
fn submit_problem(err: SubmitError, retry_after: u64) -> ApiError {
    match err {
        e @ (SubmitError::NotMapped(_) | SubmitError::MappingUnusable(_)) => ApiError::Forbidden(e.to_string()),
        SubmitError::Invalid { field, detail } => ApiError::Invalid { field, detail },
        e @ SubmitError::WorkingDir(_) => ApiError::invalid("working_dir", e.to_string()),
        e @ (SubmitError::MaybeSubmitted(_) | SubmitError::Unreachable(_) | SubmitError::ControllerDown(_)) => {
            ApiError::SlurmDown { detail: e.to_string(), retry_after }
        }
        e @ (SubmitError::KernelRunnerMissing(_) | SubmitError::ShuttingDown) => ApiError::Unavailable(e.to_string()),
        e @ SubmitError::RateLimited { retry_after, .. } => {
            ApiError::TooManyRequests { detail: e.to_string(), retry_after }
        }
        SubmitError::IdempotencyMismatch(key) => ApiError::IdempotencyMismatch(key),
        SubmitError::Rejected(stderr) => ApiError::SlurmRejected(stderr),
        SubmitError::Store(e) => ApiError::Store(e),
        SubmitError::Internal(e) => ApiError::Internal(e),
    }
}

/// `POST /v1/jobs`: the submission service does the work.
async fn submit_job(
    caller: AuthUser,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SubmitQuery>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    let key = idempotency_key(&headers)?;
    let submitter = Caller { user: &caller.user, is_admin: caller.is_admin() };
    let retry_after = state.settings.slurm_probe_interval.as_secs_f64().ceil().max(1.0) as u64;
    let submitted = state
        .submitter
        .submit(submitter, &request, key, query.dry_run)
        .await
        .map_err(|e| submit_problem(e, retry_after))?;
    Ok(match submitted {
        Submitted::Created(job) => {
            tracing::Span::current().record("job", job.id);
            let location = format!("/v1/jobs/{}", job.id);
            (StatusCode::CREATED, [(header::LOCATION, location)], Json(JobRecord::from(job))).into_response()
        }
        Submitted::Existing(job) => {
            tracing::Span::current().record("job", job.id);
            (StatusCode::OK, Json(JobRecord::from(job))).into_response()
        }
        Submitted::DryRun { slurm, script } => Json(DryRun { dry_run: true, slurm, script }).into_response(),
    })
}

/// A job the caller may see: their own, or any for an admin. Others' jobs
/// are 404, not 403, so ids reveal nothing.
async fn visible_job(state: &AppState, caller: &AuthUser, id: i64) -> Result<Job, ApiError> {
    let job = state.store.read(move |conn| jobs::by_id(conn, id)).await?;
    match job {
        Some(job) if job.user_id == caller.user.id || caller.is_admin() => Ok(job),
        _ => Err(ApiError::NotFound(format!("no job {id}"))),
    }
}

/// The job id of a path, also recorded on the request's span (logs).
fn job_id(raw: &str) -> Result<i64, ApiError> {
    let id = raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| ApiError::NotFound(format!("no job {raw:?}")))?;
    tracing::Span::current().record("job", id);
    Ok(id)
}

async fn health_records(state: &AppState, job: &Job) -> Result<Vec<Record>, ApiError> {
    match job.slurm_job_id {
        Some(slurm_id) => {
            // Records from before this job was submitted belong to an
            // earlier job that had the same SLURM id.
            let since = job.submitted_at;
            Ok(state.store.read(move |conn| crate::store::health::for_job(conn, slurm_id, since)).await?)
        }
        None => Ok(Vec::new()),
    }
}

async fn get_job(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    // Health records only matter for a job that ended other than COMPLETED.
    let failure = if job.finished && job.state != JobState::Completed {
        let records = health_records(&state, &job).await?;
        failure::classify(job.state, job.exit_code, job.signal, &records)
    } else {
        None
    };
    let failure = failure::with_kernel_result(failure, job.finished, job.result_verified, job.result_error.as_deref());
    let result = job.is_kernel().then(|| ResultView {
        url: format!("/v1/jobs/{}/result", job.id),
        collated: job.result_verified.is_some() || job.result_error.is_some(),
        verified: job.result_verified,
        problem: job.result_error.clone(),
    });
    let id = job.id;
    let kept = if job.attempt > 1 || job.finished {
        state.store.read(move |conn| jobs::attempts(conn, id)).await?
    } else {
        Vec::new()
    };
    let mut attempts: Vec<AttemptBody> = kept.into_iter().map(Into::into).collect();
    // After a retry, the attempt running (or ended) now is listed too.
    if !attempts.is_empty() && attempts.last().is_some_and(|a| a.attempt < job.attempt) {
        attempts.push(AttemptBody::current(&job, failure.as_ref()));
    }
    Ok(Json(JobView { job: job.into(), failure: failure.map(FailureBody::from), attempts, result }))
}

/// A kernel job's result, as rank 0 wrote it.
async fn get_result(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    if !job.is_kernel() {
        return Err(ApiError::NotFound(format!("job {} is not a kernel job: it has no result", job.id)));
    }
    if !job.finished {
        return Err(ApiError::Conflict(format!("job {} is {}: its result comes when it ends", job.id, job.state)));
    }
    let id = job.id;
    match state.store.read(move |conn| jobs::result(conn, id)).await? {
        Some(json) => Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response()),
        None => match job.result_error {
            Some(problem) => Err(ApiError::NotFound(format!("job {id} has no result: {problem}"))),
            None => Err(ApiError::Conflict(format!("job {id} ended moments ago; its result is being collated"))),
        },
    }
}

async fn get_health(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobHealth>, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    let records = health_records(&state, &job).await?;
    let steps = crate::job_health::group(&records);
    let tasks = steps.iter().map(|s| s.tasks).sum();
    let tasks_ok = steps.iter().map(|s| s.tasks_ok).sum();
    let steps = steps.into_iter().map(StepBody::from).collect();
    Ok(Json(JobHealth { id: job.id, slurm_job_id: job.slurm_job_id, tasks, tasks_ok, steps, records }))
}

async fn get_events(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<EventBody>>, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    let id = job.id;
    let events = state.store.read(move |conn| jobs::events(conn, id)).await?;
    Ok(Json(events.into_iter().map(EventBody::from).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// A `JobState` name; an unknown one is a 422 that lists them.
    state: Option<JobState>,
    name: Option<String>,
    since: Option<f64>,
    user: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// Largest page; the default is 100.
const MAX_PAGE: u32 = 1000;

async fn list_jobs(
    caller: AuthUser,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_PAGE}")));
    }
    let user_id = match (&query.user, caller.is_admin()) {
        (None, true) => None,
        (None, false) => Some(caller.user.id),
        (Some(name), true) => {
            let name = name.clone();
            let user = state.store.read(move |conn| crate::store::users::by_name(conn, &name)).await?;
            Some(user.ok_or_else(|| ApiError::invalid("user", "no such user"))?.id)
        }
        (Some(name), false) if *name == caller.user.name => Some(caller.user.id),
        (Some(_), false) => return Err(ApiError::Forbidden("only admins list other users' jobs".into())),
    };
    let filter = JobFilter {
        user_id,
        state: query.state,
        name: query.name,
        since: query.since,
        before_id: query.cursor,
        limit: limit + 1,
    };
    let mut jobs = state.store.read(move |conn| jobs::list(conn, &filter)).await?;
    let next_cursor = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| j.id)
    } else {
        None
    };
    Ok(Json(JobPage { jobs: jobs.into_iter().map(JobSummary::from).collect(), next_cursor }))
}

async fn cancel_job(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobRecord>), ApiError> {
    caller.require(Role::User)?;
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    if job.finished {
        // Cancelling a cancelled job is the same request again: answer alike.
        if job.state == JobState::Cancelled {
            return Ok((StatusCode::OK, Json(job.into())));
        }
        return Err(ApiError::Conflict(format!("job {} already ended ({})", job.id, job.state)));
    }
    let Some(slurm_id) = job.slurm_job_id else {
        return Err(ApiError::Conflict(format!("job {} is still being submitted; retry in a moment", job.id)));
    };
    // scancel runs as the job's owner with --user: an id SLURM has since
    // given to someone else's job is refused by slurmctld.
    let owner = unix::lookup_uid_off_thread(job.uid)
        .await
        .map_err(|e| ApiError::Conflict(format!("job {}: its Unix account is gone: {e}", job.id)))?;
    match state.slurm.scancel(slurm_id, &Identity::from(owner)).await {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(job.into()))),
        // The job ended between the poll and the scancel.
        Err(SlurmError::AlreadyEnded(_)) => Err(ApiError::Conflict(format!("job {} already ended", job.id))),
        Err(SlurmError::Rejected { stderr, .. }) => Err(ApiError::Conflict(stderr)),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}
