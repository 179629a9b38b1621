//! `POST /v1/health-reports`: records from the SPANK plugin, as JSON lines,
//! signed with the cluster's shared secret: HMAC-SHA256 over
//! `<timestamp>.<body>`, hex, in `X-Odyssey-Signature`, the Unix time in
//! `X-Odyssey-Timestamp`. Stale or forged batches are refused and counted;
//! records already stored are ignored (the plugin resends until it hears 2xx).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use odyssey_health_wire::records::{Known, Record};
use odyssey_health_wire::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use schemars::JsonSchema;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;
use crate::store::health;
use crate::store::now;

pub fn router() -> Router<AppState> {
    Router::new().route("/health-reports", post(ingest))
}

/// Signs `body` at `timestamp` with `secret`, as the plugin does.
pub use odyssey_health_wire::sign;

#[derive(Serialize, JsonSchema)]
pub(super) struct Ingested {
    accepted: usize,
    duplicates: usize,
}

fn reject(state: &AppState, outcome: &str, error: ApiError) -> ApiError {
    state.metrics.health_reports.with_label_values(&[outcome]).inc();
    error
}

/// Refuses a batch with any record its sender may not make.
async fn authorize(state: &AppState, records: &[Record], reporter: &Reporter) -> Result<(), ApiError> {
    match reporter {
        Reporter::SharedSecret => {
            let workers = state.store.read(crate::store::workers::present_names).await?;
            if let Some(r) = records.iter().find(|r| workers.iter().any(|w| w == r.node())) {
                return Err(ApiError::Forbidden(format!(
                    "node {} is a joined worker: its records come only over mutual TLS with its certificate",
                    r.node()
                )));
            }
            Ok(())
        }
        Reporter::Worker(name) => {
            if let Some(r) = records.iter().find(|r| r.node() != name) {
                return Err(ApiError::Forbidden(format!(
                    "this certificate is worker {name}'s; it may not send records about node {}",
                    r.node()
                )));
            }
            let mut jobs: Vec<u32> = records.iter().map(Record::job_id).collect();
            jobs.sort_unstable();
            jobs.dedup();
            for job in jobs {
                if !ran_on(state, i64::from(job), name).await? {
                    return Err(ApiError::Forbidden(format!("SLURM job {job} did not run on worker {name}")));
                }
            }
            Ok(())
        }
    }
}

/// Whether SLURM ran `job` on `node`: the poller's picture, else the
/// job's nodes in the store, else the nodes SLURM gave recent jobs
/// (`JobNodes`), else SLURM's own record of that one job (`job_nodes`:
/// libslurm where loaded, one small RPC and no process; else one `scontrol
/// show job`), once per job however many workers report on it.
async fn ran_on(state: &AppState, job: i64, node: &str) -> Result<bool, ApiError> {
    let running = state.nodes.borrow().nodes.iter().any(|n| n.info.name == node && n.running_jobs.contains(&job));
    if running {
        return Ok(true);
    }
    if let Some(list) = state.job_nodes.get(job) {
        return Ok(list.iter().any(|n| n == node));
    }
    let stored = state.store.read(move |conn| crate::store::jobs::nodes_of_slurm_job(conn, job)).await?;
    if let Some(list) = stored {
        if crate::slurm::hostlist::expand(&list).iter().any(|n| n == node) {
            return Ok(true);
        }
    }
    match state.slurm.job_nodes(job).await {
        Ok(Some(list)) => {
            let nodes = crate::slurm::hostlist::expand(&list);
            let found = nodes.iter().any(|n| n == node);
            state.job_nodes.put(job, nodes);
            Ok(found)
        }
        Ok(None) => Ok(false),
        Err(e) => Err(ApiError::Unavailable(format!("cannot ask SLURM where job {job} ran: {e}"))),
    }
}

async fn ingest(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Ingested>, ApiError> {
    let Some(secret) = state.health_secret.as_deref() else {
        return Err(ApiError::Unavailable("health reporting is not configured (--health-secret-file)".into()));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let timestamp = header(TIMESTAMP_HEADER);
    let signature = header(SIGNATURE_HEADER);
    // f64's parser takes "NaN" and "inf", and NaN compares false with
    // everything: it would pass the skew check below. Only finite numbers.
    let sent_at: f64 = timestamp.parse().ok().filter(|t: &f64| t.is_finite()).ok_or_else(|| {
        reject(
            &state,
            "rejected_signature",
            ApiError::Unauthorized("X-Odyssey-Timestamp must be a finite Unix time".into()),
        )
    })?;
    let skew = state.settings.health_max_skew.as_secs_f64();
    if (now() - sent_at).abs() > skew {
        return Err(reject(
            &state,
            "rejected_stale",
            ApiError::Unauthorized(format!("timestamp is more than {skew} s from the bridge's clock")),
        ));
    }
    if !odyssey_health_wire::verify(secret, timestamp, &body, signature) {
        return Err(reject(&state, "rejected_signature", ApiError::Unauthorized("bad signature".into())));
    }
    accept(&state, &body, Reporter::SharedSecret).await
}

/// Who sent a batch, as far as the bridge could prove it.
pub(super) enum Reporter {
    /// A fixed node, with the cluster's shared secret: any fixed node's
    /// records, never a joined worker's (those come only over mutual TLS).
    SharedSecret,
    /// A joined worker, by its certificate: records about itself and the
    /// jobs SLURM ran on it, nothing else.
    Worker(String),
}

/// Parses, authorizes and stores a batch.
pub(super) async fn accept(state: &AppState, body: &[u8], reporter: Reporter) -> Result<Json<Ingested>, ApiError> {
    let mut records = Vec::new();
    for (idx, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = Record::parse(line).map_err(|detail| {
            reject(state, "rejected_malformed", ApiError::invalid(format!("line {}", idx + 1), detail))
        })?;
        records.push(record);
    }
    authorize(state, &records, &reporter).await.map_err(|e| reject(state, "rejected_reporter", e))?;
    let received = now();
    for record in &records {
        state.metrics.health_delivery_lag.observe((received - record.at()).max(0.0));
        if let Record::Task(task) = record {
            let outcome = match (task.outcome.exit_code, task.outcome.signal) {
                (Some(0), _) => "ok",
                (_, Some(_)) => "signal",
                _ => "exit_nonzero",
            };
            state.metrics.health_tasks.with_label_values(&[outcome]).inc();
            if task.oom_killed == Known::Value(true) {
                state.metrics.health_oom_kills.inc();
            }
        }
    }
    let (accepted, duplicates) = state.store.call(move |conn| health::insert(conn, &records)).await?;
    state.metrics.health_reports.with_label_values(&["accepted"]).inc_by(accepted as u64);
    state.metrics.health_reports.with_label_values(&["duplicate"]).inc_by(duplicates as u64);
    Ok(Json(Ingested { accepted, duplicates }))
}

/// The nodes SLURM gave recent jobs, as SLURM said: a step on N workers is
/// checked N times within a second, with one question.
/// Bounded (`JobNodes::CAPACITY`, oldest out first), far below the point
/// where SLURM reuses a job id.
#[derive(Default)]
pub struct JobNodes(std::sync::Mutex<Recent>);

/// Nodes by job id, and the ids in the order they came.
type Recent = (std::collections::HashMap<i64, Vec<String>>, std::collections::VecDeque<i64>);

impl JobNodes {
    const CAPACITY: usize = 4096;

    pub fn get(&self, job: i64) -> Option<Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).0.get(&job).cloned()
    }

    pub fn put(&self, job: i64, nodes: Vec<String>) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(job, nodes).is_none() {
            order.push_back(job);
            while order.len() > Self::CAPACITY {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }
}
