//! `/v1/jobs`: submit (sbatch as the caller's Unix account), list, read,
//! timeline, output (with a follow mode), cancel.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{ApiJson, ApiQuery, AppState, AuthUser};
use crate::error::ApiError;
use crate::jobspec::{self, JobRequest};
use crate::owned_file::{self, OwnedFileError};
use crate::slots::{KeyedSlots, Slot};
use crate::slurm::poller::comment_tag;
use crate::slurm::{Identity, SbatchOutcome, SlurmError, Submission};
use crate::store::jobs::{self, Event, Inserted, Job, JobFilter, NewJob};
use crate::store::users::Role;
use crate::unix;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/jobs", get(list_jobs).post(submit_job))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/jobs/{id}/events", get(get_events))
        .route("/jobs/{id}/output", get(get_output))
        .route("/jobs/{id}/health", get(get_health))
        .route("/jobs/{id}/result", get(get_result))
}

/// Per-user submissions in the last minute (sliding window).
#[derive(Clone, Default)]
pub struct RateLimiter {
    recent: Arc<Mutex<HashMap<i64, VecDeque<Instant>>>>,
}

impl RateLimiter {
    /// Counts a submission, or says how many seconds until one is allowed.
    pub fn check(&self, user_id: i64, per_minute: u32) -> Result<(), u64> {
        let window = Duration::from_secs(60);
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.entry(user_id).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= window) {
            times.pop_front();
        }
        if times.len() >= per_minute as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((window - now.duration_since(oldest)).as_secs().max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

/// The caller's Unix identity, checked now (an account can change, be
/// locked or leave the uid range after it was mapped). 403 when there is
/// none: a bridge account runs jobs only as a Unix account an admin mapped
/// or the user proved.
async fn caller_identity(state: &AppState, caller: &AuthUser) -> Result<Identity, ApiError> {
    let Some((unix_user, mapped_by)) = caller.user.unix_mapping() else {
        return Err(ApiError::Forbidden(format!(
            "the account {:?} is not mapped to a Unix account, so it cannot run jobs: sign in with your Unix \
             password (POST /v1/auth/login with \"method\": \"pam\") or ask an admin to map it \
             (PATCH /v1/users/{{name}} with \"unix_user\")",
            caller.user.name
        )));
    };
    unix::resolve_off_thread(unix_user, state.settings.uid_range(), mapped_by)
        .await
        .map(Identity::from)
        .map_err(|e| ApiError::Forbidden(format!("your Unix mapping cannot run jobs: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitQuery {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Serialize)]
struct DryRun {
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

/// A fingerprint of the request, so a reused key with another body is caught.
fn request_hash(request: &JobRequest) -> String {
    // serde_json's Value keeps object keys sorted: a canonical form.
    let canonical = serde_json::to_value(request).map(|v| v.to_string()).unwrap_or_default();
    crate::auth::token_hash(&format!("{:x}", Sha256::digest(canonical.as_bytes())))
}

async fn submit_job(
    caller: AuthUser,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SubmitQuery>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<Response, ApiError> {
    caller.require(Role::User)?;
    let key = idempotency_key(&headers)?;
    let identity = caller_identity(&state, &caller).await?;
    let limits = state.settings.limits;
    let mpi_binary = &state.settings.mpi_binary;
    let valid = jobspec::validate(&request, &identity.home, &limits, mpi_binary)
        .map_err(|e| ApiError::invalid(e.field, e.detail))?;
    if valid.result_path.is_some() {
        // The bridge's own configured binary, not a path from the request.
        let binary = mpi_binary.clone();
        let installed = tokio::task::spawn_blocking(move || binary.is_file()).await.map_err(anyhow::Error::from)?;
        if !installed {
            return Err(ApiError::Unavailable(format!(
                "kernel jobs need odyssey-mpi at {}, where every node sees it, and it is not there \
                 (scripts/build.sh installs it)",
                mpi_binary.display()
            )));
        }
    }
    // A dry run costs an sbatch like a submission: it counts alike.
    state.submit_limiter.check(caller.user.id, limits.submit_rate_per_minute).map_err(|retry_after| {
        ApiError::TooManyRequests {
            detail: format!(
                "at most {} submissions per minute; retry in {retry_after} s",
                limits.submit_rate_per_minute
            ),
            retry_after,
        }
    })?;

    // Dependencies name the caller's own earlier jobs, by bridge id.
    let mut options = valid.options.clone();
    if !valid.dependencies.is_empty() {
        let ids = valid.dependencies.clone();
        let user_id = caller.user.id;
        let is_admin = caller.is_admin();
        let found = state
            .store
            .call(move |conn| ids.iter().map(|id| jobs::by_id(conn, *id)).collect::<Result<Vec<_>, _>>())
            .await?;
        let mut slurm_ids = Vec::new();
        for (job, id) in found.into_iter().zip(&valid.dependencies) {
            match job {
                Some(job) if job.user_id == user_id || is_admin => match job.slurm_job_id {
                    Some(slurm_id) => slurm_ids.push(slurm_id.to_string()),
                    None => return Err(ApiError::invalid("dependencies", format!("job {id} has no SLURM id yet"))),
                },
                _ => return Err(ApiError::invalid("dependencies", format!("you have no job {id}"))),
            }
        }
        options.push(("dependency", format!("afterok:{}", slurm_ids.join(":"))));
    }

    let tag = crate::auth::random_token().chars().filter(char::is_ascii_alphanumeric).take(20).collect::<String>();
    options.push(("comment", comment_tag(&tag)));
    let submission = Submission {
        identity: identity.clone(),
        working_dir: valid.working_dir.clone(),
        options,
        env: valid.env.clone(),
        script: valid.script.clone(),
    };

    if query.dry_run {
        let outcome = run_sbatch(&state, submission, true).await?;
        let SbatchOutcome::DryRun(slurm) = outcome else {
            return Err(anyhow::anyhow!("dry run submitted a job").into());
        };
        return Ok(Json(DryRun { dry_run: true, slurm, script: valid.script }).into_response());
    }

    let hash = request_hash(&request);
    let new_job = NewJob {
        user_id: caller.user.id,
        tag,
        idempotency_key: key.clone(),
        request_hash: hash.clone(),
        name: valid.name.clone(),
        partition: valid.partition.clone(),
        spec: valid.spec.clone(),
        script: valid.script.clone(),
        stdout_path: Some(valid.stdout.clone()),
        stderr_path: Some(valid.stderr.clone()),
        unix_user: identity.name.clone(),
        uid: identity.uid,
        result_path: valid.result_path.clone(),
    };
    let job = match state.store.call(move |conn| jobs::insert(conn, &new_job)).await? {
        Inserted::Existing(job) => {
            if job.request_hash.as_deref() != Some(hash.as_str()) {
                return Err(ApiError::IdempotencyMismatch(key.unwrap_or_default()));
            }
            return Ok((StatusCode::OK, Json(job)).into_response());
        }
        Inserted::New(job) => job,
    };

    let id = job.id;
    match run_sbatch(&state, submission, false).await {
        Ok(SbatchOutcome::Submitted(slurm_id)) => {
            if state.settings.fault_exit_after_sbatch {
                tracing::error!(slurm_job_id = slurm_id, "fault injection: exiting between sbatch and the reply");
                std::process::exit(86);
            }
            let job = state
                .store
                .call(move |conn| {
                    jobs::set_slurm_id(conn, id, slurm_id)?;
                    jobs::by_id(conn, id)
                })
                .await?
                .ok_or_else(|| anyhow::anyhow!("job {id} vanished after submission"))?;
            let location = format!("/v1/jobs/{id}");
            Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(job)).into_response())
        }
        Ok(SbatchOutcome::DryRun(_)) => Err(anyhow::anyhow!("sbatch answered a real submission as a dry run").into()),
        Err(ApiError::Unavailable(msg)) if msg.contains("did not finish") => {
            // sbatch may have reached slurmctld: keep the row, and the poller
            // reconciles it by tag. A retry with the same key finds it.
            Err(ApiError::Unavailable(format!(
                "{msg}; the job may still have been submitted: retry with the same Idempotency-Key to find out"
            )))
        }
        Err(err) => {
            state.store.call(move |conn| jobs::delete_unsubmitted(conn, id)).await?;
            Err(err)
        }
    }
}

/// sbatch, as the user, with a bounded number running at once.
async fn run_sbatch(state: &AppState, submission: Submission, dry_run: bool) -> Result<SbatchOutcome, ApiError> {
    let _slot = state.sbatch_slots.acquire().await.map_err(|_| ApiError::Unavailable("shutting down".into()))?;
    let started = Instant::now();
    let result = state.slurm.sbatch(&submission, dry_run).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(SlurmError::Rejected { .. } | SlurmError::WorkingDir { .. }) => "rejected",
        Err(_) => "error",
    };
    state.metrics.sbatch_duration.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
    result.map_err(|e| match e {
        SlurmError::Rejected { stderr, .. } => ApiError::SlurmRejected(stderr),
        e @ SlurmError::WorkingDir { .. } => ApiError::invalid("working_dir", e.to_string()),
        SlurmError::Timeout { .. } => {
            ApiError::Unavailable(format!("sbatch did not finish within {:?}", state.settings.slurm_timeout))
        }
        SlurmError::Unreachable { stderr, .. } => ApiError::Unavailable(format!("SLURM does not answer: {stderr}")),
        other => ApiError::Internal(other.into()),
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

fn job_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().ok().filter(|id| *id > 0).ok_or_else(|| ApiError::NotFound(format!("no job {raw:?}")))
}

/// A job with, once it failed, why.
#[derive(Serialize)]
struct JobView {
    #[serde(flatten)]
    job: Job,
    failure: Option<crate::failure::Failure>,
    /// Kernel jobs only: where the result is and what became of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultView>,
}

#[derive(Serialize)]
struct ResultView {
    url: String,
    /// Whether the poller has read it yet (it does once the job finished).
    collated: bool,
    /// Whether it passed verification; null until collated or when missing.
    verified: Option<bool>,
    /// Why there is no verified result.
    problem: Option<String>,
}

async fn health_records(state: &AppState, job: &Job) -> Result<Vec<serde_json::Value>, ApiError> {
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
    let failure = if job.finished && job.state != "COMPLETED" {
        let records = health_records(&state, &job).await?;
        crate::failure::classify(&job.state, job.exit_code, job.signal, &records)
    } else {
        None
    };
    let failure =
        crate::failure::with_kernel_result(failure, job.finished, job.result_verified, job.result_error.as_deref());
    let result = job.is_kernel().then(|| ResultView {
        url: format!("/v1/jobs/{}/result", job.id),
        collated: job.result_verified.is_some() || job.result_error.is_some(),
        verified: job.result_verified,
        problem: job.result_error.clone(),
    });
    Ok(Json(JobView { job, failure, result }))
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

#[derive(Serialize)]
struct JobHealth {
    id: i64,
    slurm_job_id: Option<i64>,
    tasks: usize,
    tasks_ok: usize,
    /// Per step (batch first), per node, per task.
    steps: Vec<crate::job_health::StepHealth>,
    /// Every record, oldest first: `kind` task or node, per step.
    records: Vec<serde_json::Value>,
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
    Ok(Json(JobHealth { id: job.id, slurm_job_id: job.slurm_job_id, tasks, tasks_ok, steps, records }))
}

async fn get_events(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    let id = job.id;
    Ok(Json(state.store.read(move |conn| jobs::events(conn, id)).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    name: Option<String>,
    since: Option<f64>,
    user: Option<String>,
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// Largest page; the default is 100.
const MAX_PAGE: u32 = 1000;

/// A job in a list: the record without its spec and script, which
/// `GET /v1/jobs/{id}` serves.
#[derive(Serialize)]
struct JobSummary {
    id: i64,
    user: String,
    slurm_job_id: Option<i64>,
    name: String,
    partition: Option<String>,
    state: String,
    reason: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    nodes: Option<String>,
    submitted_at: f64,
    started_at: Option<f64>,
    ended_at: Option<f64>,
    finished: bool,
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
        }
    }
}

#[derive(Serialize)]
struct JobPage {
    jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<i64>,
}

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
        state: query.state.map(|s| s.to_ascii_uppercase()),
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
) -> Result<(StatusCode, Json<Job>), ApiError> {
    caller.require(Role::User)?;
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    if job.finished {
        // Cancelling a cancelled job is the same request again: answer alike.
        if job.state == "CANCELLED" {
            return Ok((StatusCode::OK, Json(job)));
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
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(job))),
        // The job ended between the poll and the scancel.
        Err(SlurmError::Rejected { stderr, .. }) if stderr.contains("already completing or completed") => {
            Err(ApiError::Conflict(format!("job {} already ended", job.id)))
        }
        Err(SlurmError::Rejected { stderr, .. }) => Err(ApiError::Conflict(stderr)),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputQuery {
    stream: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
    #[serde(default)]
    follow: bool,
}

/// Largest output chunk per request.
const MAX_OUTPUT_CHUNK: u64 = 4 * 1024 * 1024;

/// Opens a job's output file as only its owner could (`owned_file`), off
/// the async threads.
async fn open_output(path: String, uid: u32) -> Result<tokio::fs::File, ApiError> {
    let opened = tokio::task::spawn_blocking(move || owned_file::open_owned(&path, uid, None))
        .await
        .map_err(anyhow::Error::from)?;
    match opened {
        Ok(file) => Ok(tokio::fs::File::from_std(file)),
        Err(OwnedFileError::NotFound { .. }) => Err(ApiError::NotFound("the job has written no output yet".into())),
        Err(OwnedFileError::Io { source, .. }) => {
            Err(ApiError::Forbidden(format!("cannot read the output file: {source}")))
        }
        Err(_) => Err(ApiError::Forbidden("the output path is not a regular file owned by the job's user".into())),
    }
}

async fn get_output(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<OutputQuery>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &caller, job_id(&id)?).await?;
    let pattern = match query.stream.as_deref().unwrap_or("stdout") {
        "stdout" => job.stdout_path.clone(),
        "stderr" => job.stderr_path.clone(),
        other => return Err(ApiError::invalid("stream", format!("must be stdout or stderr, not {other:?}"))),
    };
    let limit = query.limit.unwrap_or(MAX_OUTPUT_CHUNK);
    if limit == 0 || limit > MAX_OUTPUT_CHUNK {
        return Err(ApiError::invalid("limit", format!("must be 1 to {MAX_OUTPUT_CHUNK}")));
    }
    let slurm_id = job.slurm_job_id.ok_or_else(|| ApiError::NotFound("the job has not started".into()))?;
    let path = pattern
        .and_then(|p| jobspec::resolve_output(&p, slurm_id, &job.name, &job.unix_user))
        .ok_or_else(|| ApiError::NotFound("this job writes one output file per task or array element".into()))?;
    let offset = query.offset.unwrap_or(0);
    if query.follow {
        let slot = take_follow_slot(&state.follow_slots, caller.user.id, state.settings.limits.max_follows_per_user)?;
        return Ok(follow(state, job.id, path, job.uid, offset, slot).into_response());
    }
    let mut file = open_output(path, job.uid).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(anyhow::Error::from)?;
    let mut buf = Vec::new();
    file.take(limit).read_to_end(&mut buf).await.map_err(anyhow::Error::from)?;
    let next = offset + buf.len() as u64;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::HeaderName::from_static("x-next-offset"), next.to_string()),
        ],
        buf,
    )
        .into_response())
}

/// Server-Sent Events: `output` events with new bytes as they appear, then
/// one `end` event once the job has finished and everything was sent. The
/// producer ends as soon as the client goes away (the channel closes), and
/// holds the user's stream slot until then.
fn follow(
    state: AppState,
    id: i64,
    path: String,
    uid: u32,
    mut offset: u64,
    slot: Slot<i64>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = async_stream(move |tx| async move {
        let _slot = slot;
        loop {
            // The read-only connections: a follower never queues behind writes.
            let finished =
                matches!(state.store.read(move |conn| jobs::by_id(conn, id)).await, Ok(Some(ref j)) if j.finished);
            let chunk = match open_output(path.clone(), uid).await {
                Ok(file) => read_from(file, offset).await.unwrap_or_default(),
                Err(ApiError::NotFound(_)) => Vec::new(),
                Err(e) => {
                    let _ = tx.send(SseEvent::default().event("error").data(e.to_string())).await;
                    return;
                }
            };
            if !chunk.is_empty() {
                offset += chunk.len() as u64;
                let event =
                    SseEvent::default().event("output").id(offset.to_string()).data(String::from_utf8_lossy(&chunk));
                if tx.send(event).await.is_err() {
                    return;
                }
                continue;
            }
            if finished {
                let _ = tx.send(SseEvent::default().event("end").data(offset.to_string())).await;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = tx.closed() => return,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Open output streams per user, capped (`max_follows_per_user`).
pub type FollowSlots = KeyedSlots<i64>;

/// 429 once the user holds `max` open streams.
fn take_follow_slot(slots: &FollowSlots, user_id: i64, max: usize) -> Result<Slot<i64>, ApiError> {
    slots.try_take(user_id, max).ok_or_else(|| ApiError::TooManyRequests {
        detail: format!("at most {max} output streams per user at once; close one first"),
        retry_after: 1,
    })
}

async fn read_from(mut file: tokio::fs::File, offset: u64) -> std::io::Result<Vec<u8>> {
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buf = Vec::new();
    file.take(64 * 1024).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A stream fed by a task through a bounded channel.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|event| event.map(Ok)))
}
