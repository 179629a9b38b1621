//! Jobs and their timelines.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, ToSql};

use super::{now, StoreError};
use crate::job_state::JobState;

/// States are stored as their SLURM names.
impl ToSql for JobState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for JobState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// A row of `jobs` (with its owner's name). `http/` decides what of it a
/// response shows.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub user_id: i64,
    pub user: String,
    pub slurm_job_id: Option<i64>,
    pub tag: String,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
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
    pub spec: serde_json::Value,
    pub script: String,
    pub stdout_path: Option<String>,
    pub stderr_path: Option<String>,
    pub unix_user: String,
    pub uid: u32,
    pub finished: bool,
    /// Kernel jobs: where the result file goes (`%j` = SLURM id).
    pub result_path: Option<String>,
    /// Kernel jobs, once collated: whether the result passed verification.
    pub result_verified: Option<bool>,
    /// Kernel jobs, once collated: why there is no verified result.
    pub result_error: Option<String>,
    /// Which routing policy chose the partition, and why (`Routed`).
    pub routing: Option<serde_json::Value>,
    /// The ordering policy's last word on the job: policy, priority, why.
    pub ordering: Option<serde_json::Value>,
    /// Which attempt runs (1 until a retry).
    pub attempt: u32,
    pub retries_left: u32,
    /// When the current attempt was submitted, after a retry.
    pub retried_at: Option<f64>,
}

impl Job {
    pub fn is_kernel(&self) -> bool {
        self.result_path.is_some()
    }
}

const COLUMNS: &str = "j.id, j.user_id, u.name, j.slurm_job_id, j.tag, j.idempotency_key, j.request_hash, j.name,
    j.partition, j.state, j.reason, j.exit_code, j.signal, j.nodes, j.submitted_at, j.started_at, j.ended_at,
    j.spec, j.script, j.stdout_path, j.stderr_path, j.unix_user, j.uid, j.finished, j.result_path, j.result_verified,
    j.result_error, j.routing, j.ordering, j.attempt, j.retries_left, j.retried_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let spec: String = row.get(17)?;
    Ok(Job {
        id: row.get(0)?,
        user_id: row.get(1)?,
        user: row.get(2)?,
        slurm_job_id: row.get(3)?,
        tag: row.get(4)?,
        idempotency_key: row.get(5)?,
        request_hash: row.get(6)?,
        name: row.get(7)?,
        partition: row.get(8)?,
        state: row.get(9)?,
        reason: row.get(10)?,
        exit_code: row.get(11)?,
        signal: row.get(12)?,
        nodes: row.get(13)?,
        submitted_at: row.get(14)?,
        started_at: row.get(15)?,
        ended_at: row.get(16)?,
        spec: serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null),
        script: row.get(18)?,
        stdout_path: row.get(19)?,
        stderr_path: row.get(20)?,
        unix_user: row.get(21)?,
        uid: row.get(22)?,
        finished: row.get(23)?,
        result_path: row.get(24)?,
        result_verified: row.get(25)?,
        result_error: row.get(26)?,
        routing: json_column(row.get(27)?),
        ordering: json_column(row.get(28)?),
        attempt: row.get(29)?,
        retries_left: row.get(30)?,
        retried_at: row.get(31)?,
    })
}

fn json_column(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// A job about to be handed to sbatch.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub user_id: i64,
    pub tag: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub name: String,
    pub partition: Option<String>,
    pub spec: serde_json::Value,
    pub script: String,
    pub stdout_path: Option<String>,
    pub stderr_path: Option<String>,
    pub unix_user: String,
    pub uid: u32,
    pub result_path: Option<String>,
    /// JSON of the routing decision, if a policy routed it.
    pub routing: Option<String>,
    pub retries: u32,
    /// Failure classes retried, comma-separated.
    pub retry_on: String,
}

/// The outcome of `insert`: a new row, or the job an earlier request with
/// the same idempotency key made.
pub enum Inserted {
    /// The new job's id (the caller has the rest of the record).
    New(i64),
    Existing(Box<Job>),
}

/// Inserts a job in state SUBMITTING, with its first timeline entry.
pub fn insert(conn: &mut Connection, job: &NewJob) -> Result<Inserted, StoreError> {
    let tx = conn.transaction()?;
    if let Some(key) = &job.idempotency_key {
        let sql = format!("SELECT {COLUMNS} FROM jobs j JOIN users u ON u.id = j.user_id WHERE j.user_id = ?1 AND j.idempotency_key = ?2");
        if let Some(existing) = tx.prepare_cached(&sql)?.query_row(params![job.user_id, key], from_row).optional()? {
            return Ok(Inserted::Existing(Box::new(existing)));
        }
    }
    let at = now();
    tx.prepare_cached(
        "INSERT INTO jobs (user_id, tag, idempotency_key, request_hash, name, partition, state, submitted_at,
                           spec, script, stdout_path, stderr_path, unix_user, uid, result_path, routing,
                           retries_left, retry_on)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    )?
    .execute(params![
        job.user_id,
        job.tag,
        job.idempotency_key,
        job.request_hash,
        job.name,
        job.partition,
        JobState::Submitting,
        at,
        job.spec.to_string(),
        job.script,
        job.stdout_path,
        job.stderr_path,
        job.unix_user,
        job.uid,
        job.result_path,
        job.routing,
        job.retries,
        job.retry_on
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO job_events (job_id, seq, at, state) VALUES (?1, 0, ?2, ?3)")?.execute(params![
        id,
        at,
        JobState::Submitting
    ])?;
    tx.commit()?;
    Ok(Inserted::New(id))
}

/// Records the ordering policy's decisions (`(job id, JSON)`), in one transaction.
pub fn set_ordering(conn: &mut Connection, decisions: &[(i64, String)]) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached("UPDATE jobs SET ordering = ?2 WHERE id = ?1")?;
        for (id, json) in decisions {
            stmt.execute(params![id, json])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Drops a job whose submission SLURM refused: nothing exists to track.
pub fn delete_unsubmitted(conn: &mut Connection, id: i64) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM job_events WHERE job_id = ?1", [id])?;
    tx.execute("DELETE FROM jobs WHERE id = ?1 AND slurm_job_id IS NULL", [id])?;
    tx.commit()?;
    Ok(())
}

pub fn by_id(conn: &Connection, id: i64) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM jobs j JOIN users u ON u.id = j.user_id WHERE j.id = ?1");
    // Cached: this is the hottest read, and parsing it costs more than running it.
    Ok(conn.prepare_cached(&sql)?.query_row([id], from_row).optional()?)
}

/// Submissions recorded before `before` whose sbatch never answered (the
/// bridge stopped in between), oldest first.
pub fn orphans(conn: &Connection, before: f64) -> Result<Vec<Job>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM jobs j JOIN users u ON u.id = j.user_id
         WHERE j.state = ?1 AND j.slurm_job_id IS NULL AND j.submitted_at < ?2 ORDER BY j.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![JobState::Submitting, before], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Filters for `list`; all optional, combined with AND.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub user_id: Option<i64>,
    pub state: Option<JobState>,
    pub name: Option<String>,
    pub since: Option<f64>,
    /// Only jobs with a smaller id (the cursor: newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Jobs newest first; stable under concurrent inserts (ids only grow).
pub fn list(conn: &Connection, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
    let mut sql = format!("SELECT {COLUMNS} FROM jobs j JOIN users u ON u.id = j.user_id WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(user_id) = filter.user_id {
        args.push(user_id.into());
        sql.push_str(&format!(" AND j.user_id = ?{}", args.len()));
    }
    if let Some(state) = &filter.state {
        args.push(state.as_str().to_owned().into());
        sql.push_str(&format!(" AND j.state = ?{}", args.len()));
    }
    if let Some(name) = &filter.name {
        args.push(name.clone().into());
        sql.push_str(&format!(" AND j.name = ?{}", args.len()));
    }
    if let Some(since) = filter.since {
        args.push(since.into());
        sql.push_str(&format!(" AND j.submitted_at >= ?{}", args.len()));
    }
    if let Some(before) = filter.before_id {
        args.push(before.into());
        sql.push_str(&format!(" AND j.id < ?{}", args.len()));
    }
    args.push(i64::from(filter.limit).into());
    sql.push_str(&format!(" ORDER BY j.id DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    let jobs = stmt.query_map(params_from_iter(args), from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(jobs)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: f64,
    pub state: JobState,
    pub reason: Option<String>,
}

pub fn events(conn: &Connection, job_id: i64) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT at, state, reason FROM job_events WHERE job_id = ?1 ORDER BY seq")?;
    let events = stmt
        .query_map([job_id], |row| Ok(Event { at: row.get(0)?, state: row.get(1)?, reason: row.get(2)? }))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

/// The poller's view of a job it still tracks.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub id: i64,
    pub slurm_job_id: Option<i64>,
    pub tag: String,
    pub state: JobState,
    pub reason: Option<String>,
    /// When the current attempt was submitted.
    pub submitted_at: f64,
    pub retries_left: u32,
    /// Failure classes retried, e.g. "infrastructure,application".
    pub retry_on: String,
    pub attempt: u32,
}

pub fn unfinished(conn: &Connection) -> Result<Vec<Tracked>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, slurm_job_id, tag, state, reason, COALESCE(retried_at, submitted_at), retries_left, retry_on,
                attempt
         FROM jobs WHERE finished = 0 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |row| {
            Ok(Tracked {
                id: row.get(0)?,
                slurm_job_id: row.get(1)?,
                tag: row.get(2)?,
                state: row.get(3)?,
                reason: row.get(4)?,
                submitted_at: row.get(5)?,
                retries_left: row.get(6)?,
                retry_on: row.get(7)?,
                attempt: row.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// An attempt that ended: kept when a retry follows it or when it failed
/// for the infrastructure.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    pub slurm_job_id: i64,
    pub nodes: Option<String>,
    pub state: JobState,
    pub reason: Option<String>,
    /// `application`, `resource` or `infrastructure`.
    pub failure_class: Option<String>,
    pub failure: Option<String>,
    pub started_at: Option<f64>,
    pub ended_at: f64,
}

/// Ends the current attempt and starts the next: the attempt is kept, the
/// job goes back to SUBMITTING with a new tag and one retry fewer, and the
/// timeline says why. The caller submits it (`Submitter::retry`).
pub fn begin_retry(conn: &mut Connection, id: i64, ended: &Attempt, tag: &str, why: &str) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    insert_attempt(&tx, id, ended)?;
    let at = now();
    tx.prepare_cached(
        "UPDATE jobs SET slurm_job_id = NULL, tag = ?2, state = ?3, reason = ?4, nodes = NULL, started_at = NULL,
             ended_at = NULL, exit_code = NULL, signal = NULL, attempt = attempt + 1,
             retries_left = retries_left - 1, retried_at = ?5, ordering = NULL
         WHERE id = ?1 AND retries_left > 0",
    )?
    .execute(params![id, tag, JobState::Submitting, why, at])?;
    append_event(&tx, id, at, JobState::Submitting, Some(why))?;
    tx.commit()?;
    Ok(())
}

/// Keeps an attempt that ended the job (an infrastructure failure with no
/// retry left), for node draining and the record.
pub fn record_attempt(conn: &mut Connection, id: i64, ended: &Attempt) -> Result<(), StoreError> {
    insert_attempt(conn, id, ended)
}

fn insert_attempt(conn: &Connection, id: i64, a: &Attempt) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO job_attempts (job_id, attempt, slurm_job_id, nodes, state, reason, failure_class,
                                             failure, started_at, ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        a.attempt,
        a.slurm_job_id,
        a.nodes,
        a.state,
        a.reason,
        a.failure_class,
        a.failure,
        a.started_at,
        a.ended_at
    ])?;
    Ok(())
}

/// A job's kept attempts, first first.
pub fn attempts(conn: &Connection, id: i64) -> Result<Vec<Attempt>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, slurm_job_id, nodes, state, reason, failure_class, failure, started_at, ended_at
         FROM job_attempts WHERE job_id = ?1 ORDER BY attempt",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(Attempt {
                attempt: r.get(0)?,
                slurm_job_id: r.get(1)?,
                nodes: r.get(2)?,
                state: r.get(3)?,
                reason: r.get(4)?,
                failure_class: r.get(5)?,
                failure: r.get(6)?,
                started_at: r.get(7)?,
                ended_at: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// `(bridge job id, nodes, ended at)` of every attempt that failed for the
/// infrastructure since `since`.
pub fn infrastructure_failures_since(conn: &Connection, since: f64) -> Result<Vec<(i64, String, f64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT job_id, nodes, ended_at FROM job_attempts
         WHERE failure_class = 'infrastructure' AND ended_at >= ?1 AND nodes IS NOT NULL ORDER BY ended_at",
    )?;
    let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Appends the job's next timeline entry. Never dated before the entry it
/// follows: SLURM's times have whole seconds.
fn append_event(conn: &Connection, id: i64, at: f64, state: JobState, reason: Option<&str>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO job_events (job_id, seq, at, state, reason)
         VALUES (?1, (SELECT COALESCE(MAX(seq), -1) + 1 FROM job_events WHERE job_id = ?1),
                 MAX(?2, (SELECT COALESCE(MAX(at), 0) FROM job_events WHERE job_id = ?1)), ?3, ?4)",
    )?
    .execute(params![id, at, state, reason])
    .map(|_| ())
}

/// Ends tracking of a job SLURM has no record of, with the reason.
pub fn mark_lost(conn: &mut Connection, id: i64, reason: &str) -> Result<(), StoreError> {
    observe(conn, &[(id, Observation::lost(Some(reason.into())))]).map(|_| ())
}

/// Records the SLURM job id sbatch returned (or reconciliation found); the
/// job is PENDING until the poller sees more.
pub fn set_slurm_id(conn: &mut Connection, id: i64, slurm_job_id: i64) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    // One statement in the usual case (the job was SUBMITTING); a job the
    // poller already moved on only gets its id.
    let was_submitting = tx
        .prepare_cached("UPDATE jobs SET slurm_job_id = ?4, state = ?3 WHERE id = ?1 AND state = ?2")?
        .execute(params![id, JobState::Submitting, JobState::Pending, slurm_job_id])?
        == 1;
    if was_submitting {
        append_event(&tx, id, now(), JobState::Pending, None)?;
    } else {
        tx.prepare_cached("UPDATE jobs SET slurm_job_id = ?1 WHERE id = ?2")?.execute(params![slurm_job_id, id])?;
    }
    tx.commit()?;
    Ok(())
}

/// What the poller learnt about a job in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub state: JobState,
    pub reason: Option<String>,
    pub nodes: Option<String>,
    pub started_at: Option<f64>,
    pub ended_at: Option<f64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub finished: bool,
    /// When the change happened, if SLURM says (start or end time); else now.
    pub event_at: Option<f64>,
}

impl Observation {
    /// A job that ended without the bridge seeing how: UNKNOWN, for `reason`.
    pub fn lost(reason: Option<String>) -> Observation {
        Observation {
            state: JobState::Unknown,
            reason,
            nodes: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            signal: None,
            finished: true,
            event_at: None,
        }
    }
}

/// Applies observations in one transaction; a timeline entry for each job
/// whose state or reason changed. Returns the new state of each job whose
/// state changed (what `bridge_job_transitions_total` counts).
pub fn observe(conn: &mut Connection, observations: &[(i64, Observation)]) -> Result<Vec<JobState>, StoreError> {
    let tx = conn.transaction()?;
    let mut transitions = Vec::new();
    {
        let mut current = tx.prepare_cached(
            "SELECT state, reason, nodes, started_at, ended_at, exit_code, signal, finished FROM jobs WHERE id = ?1",
        )?;
        let mut update = tx.prepare_cached(
            "UPDATE jobs SET state = ?2, reason = ?3, nodes = COALESCE(?4, nodes),
                 started_at = COALESCE(?5, started_at), ended_at = COALESCE(?6, ended_at),
                 exit_code = COALESCE(?7, exit_code), signal = COALESCE(?8, signal), finished = ?9
             WHERE id = ?1",
        )?;
        let at = now();
        for (id, obs) in observations {
            let stored = current.query_row([id], |row| {
                Ok(Observation {
                    state: row.get(0)?,
                    reason: row.get(1)?,
                    nodes: row.get(2)?,
                    started_at: row.get(3)?,
                    ended_at: row.get(4)?,
                    exit_code: row.get(5)?,
                    signal: row.get(6)?,
                    finished: row.get(7)?,
                    event_at: None,
                })
            })?;
            // Most jobs do not change between polls: write only what did.
            let unchanged = stored.state == obs.state
                && stored.reason == obs.reason
                && stored.finished == obs.finished
                && (obs.nodes.is_none() || stored.nodes == obs.nodes)
                && (obs.started_at.is_none() || stored.started_at == obs.started_at)
                && (obs.ended_at.is_none() || stored.ended_at == obs.ended_at)
                && (obs.exit_code.is_none() || stored.exit_code == obs.exit_code)
                && (obs.signal.is_none() || stored.signal == obs.signal);
            if unchanged {
                continue;
            }
            let (state, reason) = (stored.state, stored.reason);
            update.execute(params![
                id,
                obs.state,
                obs.reason,
                obs.nodes,
                obs.started_at,
                obs.ended_at,
                obs.exit_code,
                obs.signal,
                obs.finished
            ])?;
            if state != obs.state || reason != obs.reason {
                append_event(&tx, *id, obs.event_at.unwrap_or(at), obs.state, obs.reason.as_deref())?;
            }
            if state != obs.state {
                transitions.push(obs.state);
            }
        }
    }
    tx.commit()?;
    Ok(transitions)
}

/// A finished kernel job whose result has not been collated.
#[derive(Debug, Clone)]
pub struct Uncollated {
    pub id: i64,
    pub slurm_job_id: Option<i64>,
    pub result_path: String,
    pub uid: u32,
    pub state: JobState,
}

/// Finished kernel jobs without a collated result, oldest first.
pub fn uncollated(conn: &Connection) -> Result<Vec<Uncollated>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, slurm_job_id, result_path, uid, state FROM jobs INDEXED BY jobs_uncollated
         WHERE result_path IS NOT NULL AND result IS NULL AND result_error IS NULL AND finished = 1
         ORDER BY id LIMIT 256",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(Uncollated {
            id: row.get(0)?,
            slurm_job_id: row.get(1)?,
            result_path: row.get(2)?,
            uid: row.get(3)?,
            state: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// What collating a kernel job's result found.
#[derive(Debug, Clone, PartialEq)]
pub enum Collated {
    /// Rank 0's JSON; `error` says why it failed verification, if it did.
    Result { json: String, verified: bool, error: Option<String> },
    /// No usable result, and why.
    Missing(String),
}

pub fn store_result(conn: &mut Connection, id: i64, collated: &Collated) -> Result<(), StoreError> {
    let (json, verified, error) = match collated {
        Collated::Result { json, verified, error } => (Some(json.as_str()), Some(*verified), error.as_deref()),
        Collated::Missing(why) => (None, None, Some(why.as_str())),
    };
    conn.prepare_cached("UPDATE jobs SET result = ?2, result_verified = ?3, result_error = ?4 WHERE id = ?1")?
        .execute(params![id, json, verified, error])?;
    Ok(())
}

/// A kernel job's collated JSON result, if any.
pub fn result(conn: &Connection, id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT result FROM jobs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Counts of jobs by state, for the metrics gauge.
pub fn count_by_state(conn: &Connection) -> Result<Vec<(JobState, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
    let counts = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(counts)
}

/// The nodes SLURM ran a job on (a host list), from the job or any of its
/// attempts, if the bridge submitted it and saw it start.
pub fn nodes_of_slurm_job(conn: &Connection, slurm_job_id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT nodes FROM jobs WHERE slurm_job_id = ?1 AND nodes IS NOT NULL
             UNION ALL SELECT nodes FROM job_attempts WHERE slurm_job_id = ?1 AND nodes IS NOT NULL LIMIT 1",
            [slurm_job_id],
            |row| row.get(0),
        )
        .optional()?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn job(conn: &mut Connection, user_id: i64, tag: &str) -> i64 {
        job_with_spec(conn, user_id, tag, serde_json::json!({}))
    }

    /// A recorded job of `user_id` with `spec` as its request.
    pub(crate) fn job_with_spec(conn: &mut Connection, user_id: i64, tag: &str, spec: serde_json::Value) -> i64 {
        let new = NewJob {
            user_id,
            tag: tag.into(),
            idempotency_key: None,
            request_hash: String::new(),
            name: "j".into(),
            partition: None,
            spec,
            script: "#!/bin/sh\n".into(),
            stdout_path: None,
            stderr_path: None,
            unix_user: "alice".into(),
            uid: 2001,
            result_path: None,
            routing: None,
            retries: 0,
            retry_on: "infrastructure".into(),
        };
        let Inserted::New(id) = insert(conn, &new).unwrap() else { panic!("a new job") };
        id
    }

    pub(crate) fn seen(state: JobState, reason: Option<&str>) -> Observation {
        Observation { state, reason: reason.map(Into::into), finished: state.is_terminal(), ..Observation::lost(None) }
    }

    /// Only jobs whose state changed are transitions (#10: every tracked
    /// job's state used to be counted whenever any job changed); a new
    /// reason alone is a timeline entry, not a transition.
    #[test]
    fn observe_returns_the_state_changes_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&mut conn).unwrap();
        let user =
            crate::store::users::create(&conn, "alice", "x", crate::store::users::Role::User, None).unwrap().unwrap();
        let (a, b) = (job(&mut conn, user.id, "a"), job(&mut conn, user.id, "b"));
        set_slurm_id(&mut conn, a, 1).unwrap();
        set_slurm_id(&mut conn, b, 2).unwrap();
        let pending = seen(JobState::Pending, None);
        let changed = observe(&mut conn, &[(a, seen(JobState::Running, None)), (b, pending.clone())]).unwrap();
        assert_eq!(changed, [JobState::Running]);
        let changed = observe(&mut conn, &[(a, seen(JobState::Running, None)), (b, pending)]).unwrap();
        assert!(changed.is_empty(), "{changed:?}");
        let changed = observe(&mut conn, &[(b, seen(JobState::Pending, Some("Priority")))]).unwrap();
        assert!(changed.is_empty(), "a reason alone: {changed:?}");
        let changed =
            observe(&mut conn, &[(a, seen(JobState::Failed, None)), (b, seen(JobState::Completed, None))]).unwrap();
        assert_eq!(changed, [JobState::Failed, JobState::Completed]);
    }
}
