//! The submission service: a caller's `JobRequest` becomes a SLURM job in
//! four steps (validate, record, submit, reconcile), each one function here.
//! It knows nothing of HTTP: `http/jobs.rs` extracts the request and maps a
//! `SubmitError` to a problem.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Semaphore};

use crate::config::Settings;
use crate::jobspec::{self, JobRequest, ValidJob};
use crate::metrics::Metrics;
use crate::rate_limit::SubmitLimiter;
use crate::scheduling::route::{self, Needs, Routed, Router};
use crate::scheduling::{ActivePolicy, Routing};
use crate::slurm::poller::{comment_tag, NodeSnapshot};
use crate::slurm::probe::SlurmHealth;
use crate::slurm::{Identity, SbatchOutcome, Slurm, SlurmError, Submission};
use crate::store::jobs::{self, Inserted, Job, NewJob};
use crate::store::users::User;
use crate::store::{Store, StoreError};
use crate::unix;

/// Who submits: the account, and whether it may name others' jobs.
pub struct Caller<'a> {
    pub user: &'a User,
    pub is_admin: bool,
}

/// What a submission became.
#[derive(Debug)]
pub enum Submitted {
    /// A new SLURM job, recorded.
    Created(Job),
    /// The job an earlier request with the same idempotency key made.
    Existing(Job),
    /// `sbatch --test-only`'s estimate; nothing was recorded.
    DryRun { slurm: String, script: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(
        "the account {0:?} is not mapped to a Unix account, so it cannot run jobs: sign in with your Unix \
         password (POST /v1/auth/login with \"method\": \"pam\") or ask an admin to map it \
         (PATCH /v1/users/{{name}} with \"unix_user\")"
    )]
    NotMapped(String),
    #[error("your Unix mapping cannot run jobs: {0}")]
    MappingUnusable(String),
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    #[error(
        "kernel jobs need odyssey-mpi at {}, where every node sees it, and it is not there \
         (scripts/build.sh installs it)",
        .0.display()
    )]
    KernelRunnerMissing(PathBuf),
    #[error("at most {per_minute} submissions per minute; retry in {retry_after} s")]
    RateLimited { per_minute: u32, retry_after: u64 },
    #[error("Idempotency-Key {0:?} was used for a different request")]
    IdempotencyMismatch(String),
    /// SLURM refused the job; its own words.
    #[error("SLURM refused the job: {0}")]
    Rejected(String),
    /// The working directory cannot be entered as the user.
    #[error("{0}")]
    WorkingDir(String),
    /// SLURM's answer did not come (in time): the job may have reached
    /// slurmctld, so the record stays and the poller reconciles it by its tag.
    #[error("{0}; the job may still have been submitted: retry with the same Idempotency-Key to find out")]
    MaybeSubmitted(String),
    #[error("SLURM does not answer: {0}")]
    Unreachable(String),
    /// The controller probe says slurmctld is down: no sbatch is tried.
    #[error("slurmctld does not answer ({0}); submissions resume when it does")]
    ControllerDown(String),
    #[error("the bridge is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl SubmitError {
    fn invalid(field: impl Into<String>, detail: impl Into<String>) -> SubmitError {
        SubmitError::Invalid { field: field.into(), detail: detail.into() }
    }
}

/// A seam for tests, called between sbatch's answer and recording the SLURM
/// id: the window a crash of the bridge leaves a job to reconciliation. The
/// bridge's own binary uses `NoHook`; a test implements this to stop there
/// (the e2e crate's `bridge-with-faults` exits, the shutdown test waits).
pub trait SubmitHook: Send + Sync + 'static {
    fn after_sbatch(&self, slurm_job_id: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Called after the job is recorded, before sbatch runs: the window a
    /// crash leaves a recorded job that never reached SLURM.
    fn before_sbatch(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// The hook that does nothing.
pub struct NoHook;

impl SubmitHook for NoHook {
    fn after_sbatch(&self, _slurm_job_id: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// Everything a submission needs; cheap to clone.
#[derive(Clone)]
pub struct Submitter {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub slurm: Slurm,
    pub metrics: Metrics,
    /// Per-user submission rate.
    pub limiter: SubmitLimiter,
    /// Bounds concurrent sbatch processes (`max_concurrent_sbatch`).
    pub sbatch_slots: Arc<Semaphore>,
    pub hook: Arc<dyn SubmitHook>,
    /// The controller probe's last answer (`slurm::probe`).
    pub controller: watch::Receiver<SlurmHealth>,
    /// The routing and ordering policies in force.
    pub policy: ActivePolicy,
    /// Routing's turn-taking state.
    pub router: Arc<Router>,
    /// The poller's picture of nodes and partitions (routing reads it).
    pub nodes: watch::Receiver<Arc<NodeSnapshot>>,
    /// Recent resolutions of the accounts jobs run as.
    pub accounts: Arc<unix::cache::AccountCache>,
}

impl Submitter {
    /// Validates `request` for `caller`, records it, runs sbatch as the
    /// caller's Unix account and records the SLURM id.
    pub async fn submit(
        &self,
        caller: Caller<'_>,
        request: &JobRequest,
        idempotency_key: Option<String>,
        dry_run: bool,
    ) -> Result<Submitted, SubmitError> {
        let identity = self.identity(caller.user).await?;
        let valid = self.validate(request, &identity).await?;
        // Bad input is answered first; then, if the probe says slurmctld is
        // down, a 503 at once rather than an sbatch that waits it out.
        {
            let controller = self.controller.borrow();
            if !controller.reachable && controller.checked_at.is_some() {
                return Err(SubmitError::ControllerDown(controller.error.clone().unwrap_or_default()));
            }
        }
        // A dry run costs an sbatch like a submission: it counts alike.
        let per_minute = self.settings.limits.submit_rate_per_minute;
        self.limiter
            .check(caller.user.id, per_minute)
            .map_err(|retry_after| SubmitError::RateLimited { per_minute, retry_after })?;
        let tag = crate::slurm::poller::new_tag();
        let mut submission = self.submission(&caller, &identity, &valid, &tag).await?;
        let routed = self.route(&submission).await?;
        if let Some(routed) = &routed {
            submission.options.partition = Some(routed.partition.clone());
        }
        if dry_run {
            return match self.sbatch(submission, true).await? {
                SbatchOutcome::DryRun(slurm) => Ok(Submitted::DryRun { slurm, script: valid.script }),
                SbatchOutcome::Submitted(_) => Err(anyhow::anyhow!("a dry run submitted a job").into()),
            };
        }
        let recording = Recording { tag, idempotency_key, routed };
        let id = match self.record(&caller, &identity, &valid, request, recording).await? {
            Inserted::Existing(job) => return Ok(Submitted::Existing(*job)),
            Inserted::New(id) => id,
        };
        self.hook.before_sbatch().await;
        self.submit_recorded(id, submission, OnRefusal::Delete).await.map(Submitted::Created)
    }

    /// Completes what a stopped bridge recorded but never heard sbatch answer
    /// (every `SUBMITTING` row from before `started`): a job SLURM lists with
    /// the row's tag gets its id; a row younger than SLURM's `MinJobAge` with
    /// no such job never reached SLURM (it would still be listed), so sbatch
    /// runs for it now, with the same tag; an older one cannot be told from a
    /// job that ran and was forgotten, so it is marked lost, saying why. A
    /// recorded submission is a promise: the client's retry with the same
    /// Idempotency-Key then finds the job. Returns how many were completed.
    pub async fn recover(&self, started: f64) -> Result<usize, SubmitError> {
        let orphans = self.store.read(move |conn| jobs::orphans(conn, started)).await?;
        if orphans.is_empty() {
            return Ok(0);
        }
        let mut comments = self.slurm.squeue_comments().await.map_err(|e| SubmitError::Unreachable(e.to_string()))?;
        // A submission the stopped bridge had in flight may still reach
        // slurmctld after this start (its RPC was sent, or its sbatch
        // outlived it): an untagged row is only taken as "never reached
        // SLURM" once twice the bridge's own wait for an answer has passed
        // since it was recorded. The crash drill found this window.
        let settle = self.settings.slurm_timeout.as_secs_f64() * 2.0;
        let tagged = |job: &Job, comments: &[(i64, String)]| comments.iter().any(|(_, c)| *c == comment_tag(&job.tag));
        let wait = orphans
            .iter()
            .filter(|job| !tagged(job, &comments))
            .map(|job| job.retried_at.unwrap_or(job.submitted_at) + settle - crate::store::now())
            .fold(0.0, f64::max);
        if wait > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            comments = self.slurm.squeue_comments().await.map_err(|e| SubmitError::Unreachable(e.to_string()))?;
        }
        let min_job_age = self.slurm.min_job_age().await.map_err(|e| SubmitError::Unreachable(e.to_string()))?;
        let mut completed = 0;
        for job in orphans {
            let id = job.id;
            let wanted = comment_tag(&job.tag);
            if let Some(slurm_id) = comments.iter().find(|(_, c)| *c == wanted).map(|(id, _)| *id) {
                tracing::info!(job = id, slurm_job_id = slurm_id, "recovered a submission whose reply was lost");
                self.store.call(move |conn| jobs::set_slurm_id(conn, id, slurm_id)).await?;
                completed += 1;
                continue;
            }
            if crate::store::now() - job.retried_at.unwrap_or(job.submitted_at) >= min_job_age.as_secs_f64() {
                let why = format!(
                    "the bridge stopped during this submission more than MinJobAge ({} s) ago, and SLURM no \
                     longer lists a job with its tag: it cannot tell whether the job ran",
                    min_job_age.as_secs()
                );
                tracing::warn!(job = id, "{why}");
                self.store.call(move |conn| jobs::mark_lost(conn, id, &why)).await?;
                continue;
            }
            match self.resubmit(job).await {
                Ok(job) => {
                    tracing::info!(job = id, slurm_job_id = job.slurm_job_id, "completed a submission after a restart");
                    completed += 1;
                }
                Err(err) => {
                    let why = format!("the bridge could not complete this submission after a restart: {err}");
                    tracing::warn!(job = id, "{why}");
                    self.store.call(move |conn| jobs::mark_lost(conn, id, &why)).await?;
                }
            }
        }
        Ok(completed)
    }

    /// sbatch for a recorded job, rebuilt from its record (the merged
    /// request) under the account's current mapping, which must still be the
    /// one the job was recorded with.
    async fn resubmit(&self, job: Job) -> Result<Job, SubmitError> {
        let user_id = job.user_id;
        let user = self
            .store
            .read(move |conn| crate::store::users::by_id(conn, user_id))
            .await?
            .ok_or_else(|| SubmitError::MappingUnusable("the account is gone".into()))?;
        if user.disabled {
            return Err(SubmitError::MappingUnusable("the account is disabled".into()));
        }
        let identity = self.identity(&user).await?;
        if identity.name != job.unix_user {
            return Err(SubmitError::MappingUnusable(format!(
                "the account is now mapped to {} rather than {}",
                identity.name, job.unix_user
            )));
        }
        let mut spec = job.spec.clone();
        if let Some(fields) = spec.as_object_mut() {
            fields.remove("directives");
        }
        let request: JobRequest = serde_json::from_value(spec).map_err(|e| anyhow::anyhow!("stored spec: {e}"))?;
        let valid = self.validate(&request, &identity).await?;
        let is_admin = user.role == crate::store::users::Role::Admin;
        let caller = Caller { user: &user, is_admin };
        let mut submission = self.submission(&caller, &identity, &valid, &job.tag).await?;
        // A retry keeps the partition the first attempt got, and stays off
        // every node an earlier attempt failed on.
        if submission.options.partition.is_none() {
            submission.options.partition = job.partition.clone();
        }
        let id = job.id;
        let attempts = self.store.read(move |conn| jobs::attempts(conn, id)).await?;
        let mut exclude: Vec<String> =
            attempts.iter().filter_map(|a| a.nodes.as_deref()).flat_map(crate::slurm::hostlist::expand).collect();
        exclude.sort();
        exclude.dedup();
        // A retry prefers the backup workers, which SLURM fills last (only
        // where some node has the feature: SLURM refuses an unknown one).
        if let (false, Some(feature)) = (exclude.is_empty(), &self.settings.spare_feature) {
            let spares = self.nodes.borrow().nodes.iter().any(|n| n.info.features.contains(feature));
            if spares {
                submission.options.prefer = Some(feature.clone());
            }
        }
        submission.options.exclude = exclude;
        self.submit_recorded(job.id, submission, OnRefusal::Keep).await
    }

    /// Submits the next attempt of a job the poller put back to SUBMITTING
    /// (`jobs::begin_retry`); if that fails the job ends, saying why.
    pub async fn retry(&self, id: i64) {
        let job = match self.store.read(move |conn| jobs::by_id(conn, id)).await {
            Ok(Some(job)) if job.state == crate::job_state::JobState::Submitting && job.slurm_job_id.is_none() => job,
            Ok(_) => return,
            Err(err) => {
                tracing::error!(job = id, %err, "cannot read a job to retry");
                return;
            }
        };
        let attempt = job.attempt;
        match self.resubmit(job).await {
            Ok(job) => tracing::info!(job = id, attempt, slurm_job_id = job.slurm_job_id, "retry submitted"),
            Err(SubmitError::MaybeSubmitted(why)) => {
                tracing::warn!(job = id, attempt, %why, "retry's answer lost; the poller reconciles it by its tag")
            }
            Err(err) => {
                let why = format!("attempt {attempt} could not be submitted: {err}");
                tracing::warn!(job = id, "{why}");
                if let Err(err) = self.store.call(move |conn| jobs::mark_lost(conn, id, &why)).await {
                    tracing::error!(job = id, %err, "cannot record a failed retry");
                }
            }
        }
    }

    /// The caller's Unix identity, checked now (an account can change, be
    /// locked or leave the uid range after it was mapped); a resolution
    /// stands while the account files are unchanged, for at most
    /// `unix::cache::TTL`. A bridge account
    /// runs jobs only as a Unix account an admin mapped or the user proved.
    async fn identity(&self, user: &User) -> Result<Identity, SubmitError> {
        let Some((unix_user, mapped_by)) = user.unix_mapping() else {
            return Err(SubmitError::NotMapped(user.name.clone()));
        };
        self.accounts
            .resolve(unix_user, self.settings.uid_range(), mapped_by)
            .await
            .map(Identity::from)
            .map_err(|e| SubmitError::MappingUnusable(e.to_string()))
    }

    /// The request's rules (`jobspec`), and for a kernel job the runner it needs.
    async fn validate(&self, request: &JobRequest, identity: &Identity) -> Result<ValidJob, SubmitError> {
        let mpi_binary = self.settings.mpi_binary.clone();
        let valid = jobspec::validate(request, &identity.home, &self.settings.limits, &mpi_binary)
            .map_err(|e| SubmitError::invalid(e.field, e.detail))?;
        if valid.result_path.is_some() {
            // The bridge's own configured binary, not a path from the request.
            let binary = mpi_binary.clone();
            let installed = tokio::task::spawn_blocking(move || binary.is_file()).await.map_err(anyhow::Error::from)?;
            if !installed {
                return Err(SubmitError::KernelRunnerMissing(mpi_binary));
            }
        }
        Ok(valid)
    }

    /// SLURM's options, with dependencies on the caller's own earlier jobs
    /// (by bridge id) and the random tag that finds the job after a crash.
    async fn submission(
        &self,
        caller: &Caller<'_>,
        identity: &Identity,
        valid: &ValidJob,
        tag: &str,
    ) -> Result<Submission, SubmitError> {
        let mut options = valid.options.clone();
        if !valid.dependencies.is_empty() {
            options.after_ok = self.dependencies(caller, &valid.dependencies).await?;
        }
        options.comment = Some(comment_tag(tag));
        let submission = Submission {
            identity: identity.clone(),
            working_dir: valid.working_dir.clone(),
            options,
            env: valid.env.clone(),
            script: valid.script.clone(),
        };
        Ok(submission)
    }

    /// The partition the routing policy picks for a job that names none;
    /// None where the job names one or the policy is SLURM's default.
    async fn route(&self, submission: &Submission) -> Result<Option<Routed>, SubmitError> {
        let policy = self.policy.get();
        if submission.options.partition.is_some() || policy.routing == Routing::Default {
            return Ok(None);
        }
        let snapshot = self.nodes.borrow().clone();
        let needs = Needs {
            nodes: submission.options.nodes.unwrap_or(1),
            time_limit: submission.options.time_limit.map(|m| m.0),
        };
        let mut gids = submission.identity.groups.clone();
        gids.push(submission.identity.gid);
        let candidates = route::candidates(&snapshot.partitions, &gids, needs);
        if candidates.is_empty() {
            // Nothing known fits (or no picture yet): SLURM's default
            // partition decides, and refuses in its own words if need be.
            return Ok(None);
        }
        let routed = match policy.routing {
            Routing::Default => None,
            Routing::RoundRobin => self.router.round_robin(&candidates),
            Routing::Weighted => {
                let mut idle: std::collections::HashMap<String, u32> = Default::default();
                for p in &candidates {
                    let cpus = snapshot
                        .nodes
                        .iter()
                        .filter(|n| p.nodes.contains(&n.info.name) && usable(&n.info.state))
                        .map(|n| n.info.cpus_idle)
                        .sum();
                    idle.insert(p.name.clone(), cpus);
                }
                self.router.weighted(&candidates, &policy.partition_weights, &idle)
            }
            Routing::EarliestStart => {
                let names: Vec<String> = candidates.iter().map(|p| p.name.clone()).collect();
                return self.earliest_start(submission, names).await;
            }
        };
        Ok(routed)
    }

    /// Asks SLURM when the job would start in each partition (one will-run
    /// question each, as the user) and takes the earliest. A partition that
    /// refuses the job is left out; if all refuse, the first refusal is the
    /// answer.
    async fn earliest_start(&self, submission: &Submission, names: Vec<String>) -> Result<Option<Routed>, SubmitError> {
        let questions = names.into_iter().map(|name| {
            let mut asked = submission.clone();
            asked.options.partition = Some(name.clone());
            async move { (name, self.sbatch(asked, true).await) }
        });
        let answers = futures_util::future::join_all(questions).await;
        let mut starts = Vec::new();
        let mut refusal = None;
        for (name, answer) in answers {
            match answer {
                Ok(SbatchOutcome::DryRun(line)) => match crate::slurm::parse::will_run_start(&line) {
                    Some(at) => {
                        let shown = at.split_once('T').map_or(at, |(_, time)| time).to_owned();
                        starts.push((name, at.to_owned(), shown));
                    }
                    None => tracing::warn!(partition = %name, line, "a will-run answer without a start time"),
                },
                Ok(SbatchOutcome::Submitted(_)) => {
                    return Err(anyhow::anyhow!("a will-run question submitted a job").into())
                }
                Err(err @ (SubmitError::Rejected(_) | SubmitError::WorkingDir(_))) => {
                    refusal.get_or_insert(err);
                }
                Err(err) => return Err(err),
            }
        }
        // Local ISO times of one clock sort as text.
        starts.sort_by(|a, b| a.1.cmp(&b.1));
        let ranked: Vec<(String, f64, String)> =
            starts.into_iter().enumerate().map(|(k, (name, _, shown))| (name, k as f64, shown)).collect();
        match route::earliest(&ranked) {
            Some(routed) => Ok(Some(routed)),
            None => match refusal {
                Some(err) => Err(err),
                None => Ok(None),
            },
        }
    }

    /// The SLURM ids of bridge ids the caller may name.
    async fn dependencies(&self, caller: &Caller<'_>, ids: &[i64]) -> Result<Vec<i64>, SubmitError> {
        let wanted = ids.to_vec();
        let found = self
            .store
            .read(move |conn| wanted.iter().map(|id| jobs::by_id(conn, *id)).collect::<Result<Vec<_>, _>>())
            .await?;
        let mut slurm_ids = Vec::new();
        for (job, id) in found.into_iter().zip(ids) {
            match job {
                Some(job) if job.user_id == caller.user.id || caller.is_admin => match job.slurm_job_id {
                    Some(slurm_id) => slurm_ids.push(slurm_id),
                    None => return Err(SubmitError::invalid("dependencies", format!("job {id} has no SLURM id yet"))),
                },
                _ => return Err(SubmitError::invalid("dependencies", format!("you have no job {id}"))),
            }
        }
        Ok(slurm_ids)
    }

    /// Inserts the job as SUBMITTING (the idempotency key checked in the same
    /// transaction), or finds the job an earlier request with the key made.
    async fn record(
        &self,
        caller: &Caller<'_>,
        identity: &Identity,
        valid: &ValidJob,
        request: &JobRequest,
        recording: Recording,
    ) -> Result<Inserted, SubmitError> {
        let Recording { tag, idempotency_key, routed } = recording;
        let hash = request_hash(request);
        if let Some(routed) = &routed {
            self.metrics.routed_jobs.with_label_values(&[routed.policy.as_str(), &routed.partition]).inc();
        }
        let new_job = NewJob {
            user_id: caller.user.id,
            tag,
            idempotency_key: idempotency_key.clone(),
            request_hash: hash.clone(),
            name: valid.options.name.clone(),
            partition: routed.as_ref().map(|r| r.partition.clone()).or_else(|| valid.options.partition.clone()),
            routing: routed.map(|r| serde_json::to_string(&r).unwrap_or_default()),
            retries: valid.retry.retries,
            retry_on: valid
                .retry
                .on
                .iter()
                .map(|c| match c {
                    jobspec::RetryOn::Infrastructure => "infrastructure",
                    jobspec::RetryOn::Application => "application",
                })
                .collect::<Vec<_>>()
                .join(","),
            spec: valid.spec.clone(),
            script: valid.script.clone(),
            stdout_path: Some(valid.options.stdout.clone()),
            stderr_path: Some(valid.options.stderr.clone()),
            unix_user: identity.name.clone(),
            uid: identity.uid,
            result_path: valid.result_path.clone(),
        };
        let inserted = self.store.call(move |conn| jobs::insert(conn, &new_job)).await?;
        if let Inserted::Existing(job) = &inserted {
            if job.request_hash.as_deref() != Some(hash.as_str()) {
                return Err(SubmitError::IdempotencyMismatch(idempotency_key.unwrap_or_default()));
            }
        }
        Ok(inserted)
    }

    /// Runs sbatch for a recorded job and records its SLURM id. A timeout
    /// keeps the record for the poller to reconcile; a refusal deletes a
    /// fresh one (nothing exists to track; the client has SLURM's reason) or
    /// leaves a recovered one for `recover` to mark lost with the reason.
    async fn submit_recorded(&self, id: i64, submission: Submission, refused: OnRefusal) -> Result<Job, SubmitError> {
        match self.sbatch(submission, false).await {
            Ok(SbatchOutcome::Submitted(slurm_id)) => {
                self.hook.after_sbatch(slurm_id).await;
                let job = self
                    .store
                    .call(move |conn| {
                        jobs::set_slurm_id(conn, id, slurm_id)?;
                        jobs::by_id(conn, id)
                    })
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("job {id} vanished after submission"))?;
                Ok(job)
            }
            Ok(SbatchOutcome::DryRun(_)) => {
                Err(anyhow::anyhow!("sbatch answered a real submission as a dry run").into())
            }
            Err(err @ SubmitError::MaybeSubmitted(_)) => Err(err),
            Err(err) if refused == OnRefusal::Keep => Err(err),
            Err(err) => {
                self.store.call(move |conn| jobs::delete_unsubmitted(conn, id)).await?;
                Err(err)
            }
        }
    }

    /// The submission, as the user, through libslurm or sbatch, with a
    /// bounded number in flight at once.
    async fn sbatch(&self, submission: Submission, dry_run: bool) -> Result<SbatchOutcome, SubmitError> {
        let _slot = self.sbatch_slots.acquire().await.map_err(|_| SubmitError::ShuttingDown)?;
        let started = Instant::now();
        let result = self.slurm.submit(&submission, dry_run).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SlurmError::Rejected { .. } | SlurmError::WorkingDir { .. }) => "rejected",
            Err(_) => "error",
        };
        self.metrics.sbatch_duration.with_label_values(&[outcome]).observe(started.elapsed().as_secs_f64());
        result.map_err(|e| match e {
            SlurmError::Rejected { stderr, .. } => SubmitError::Rejected(stderr),
            e @ SlurmError::WorkingDir { .. } => SubmitError::WorkingDir(e.to_string()),
            e @ SlurmError::Timeout { .. } => SubmitError::MaybeSubmitted(e.to_string()),
            e @ SlurmError::NoAnswer { .. } => SubmitError::MaybeSubmitted(e.to_string()),
            SlurmError::Unreachable { stderr, .. } => SubmitError::Unreachable(stderr),
            other => SubmitError::Internal(other.into()),
        })
    }
}

/// Whether a node in this sinfo state takes jobs.
fn usable(state: &str) -> bool {
    !["down", "drain", "fail", "maint", "reserved", "not_responding", "unknown"].iter().any(|s| state.contains(s))
}

/// What a new record carries besides the request: the job's tag, the
/// client's Idempotency-Key and the routing decision.
struct Recording {
    tag: String,
    idempotency_key: Option<String>,
    routed: Option<Routed>,
}

/// What a refused sbatch does to the job's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnRefusal {
    Delete,
    Keep,
}

/// A fingerprint of the request, so a reused key with another body is caught.
fn request_hash(request: &JobRequest) -> String {
    // serde_json's Value keeps object keys sorted: a canonical form.
    let canonical = serde_json::to_value(request).map(|v| v.to_string()).unwrap_or_default();
    crate::auth::token_hash(&format!("{:x}", Sha256::digest(canonical.as_bytes())))
}
