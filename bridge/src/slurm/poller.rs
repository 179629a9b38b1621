//! The poller: one task asks SLURM about every job and node at an interval,
//! for everybody, and stores each transition. Request handlers read the
//! store and the node snapshot; they never run squeue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::parse::{JobDetail, NodeInfo, QueueEntry};
use super::{hostlist, Slurm, SlurmError};
use crate::config::DrainRule;
use crate::job_state::JobState;
use crate::metrics::Metrics;
use crate::scheduling::order::{self, Pending};
use crate::scheduling::retry::{self, Decision};
use crate::scheduling::route::PartitionInfo;
use crate::scheduling::{ActivePolicy, Ordering};
use crate::shutdown::Stopping;
use crate::store::jobs::{self, Collated, Observation, Tracked};
use crate::store::{now, Store, StoreError};

/// A node and the SLURM jobs running on it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub info: NodeInfo,
    /// SLURM job ids running on the node.
    pub running_jobs: Vec<i64>,
}

/// The last poll's picture of the nodes and partitions.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshot {
    pub nodes: Vec<NodeView>,
    /// Read every `PARTITION_INTERVAL` (routing chooses among them).
    pub partitions: Arc<Vec<PartitionInfo>>,
    /// Unix time of the poll; None before the first one.
    pub polled_at: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lifecycle: spawned once by `bridge::serve`, aborted at shutdown.
pub struct Poller {
    slurm: Slurm,
    store: Store,
    metrics: Metrics,
    /// Submissions from before this belong to an earlier process and are
    /// `Submitter::recover`'s; later ones with no SLURM id past
    /// `submit_grace` had a hung sbatch and get reconciled by tag here.
    process_started: f64,
    submit_grace: Duration,
    nodes: watch::Sender<Arc<NodeSnapshot>>,
    /// When the jobs-by-state gauge was last recomputed.
    counted_at: std::sync::Mutex<Option<Instant>>,
    /// When `sdiag` last ran.
    sdiag_at: std::sync::Mutex<Option<Instant>>,
    /// Transitions happened since the last count.
    counts_dirty: std::sync::atomic::AtomicBool,
    /// The routing and ordering policies (ordering is applied here).
    policy: ActivePolicy,
    /// What each user's jobs consumed (weighted-fair ordering reads it).
    usage: std::sync::Mutex<order::Usage>,
    /// The policy the last ordering round applied.
    ordered_by: std::sync::Mutex<Option<crate::scheduling::Policy>>,
    /// Jobs to submit again (`Submitter::retry` reads this channel).
    retries: tokio::sync::mpsc::UnboundedSender<i64>,
    /// Node draining after repeated infrastructure failures.
    drain: DrainRule,
    health_stale_after: Duration,
    /// When the bridge last drained each node.
    drained_at: std::sync::Mutex<HashMap<String, f64>>,
    /// The partitions and when they were last read.
    partitions: std::sync::Mutex<(Option<Instant>, Arc<Vec<PartitionInfo>>)>,
}

/// How fast consumed CPU-seconds are forgotten by weighted-fair ordering.
const FAIR_SHARE_HALF_LIFE: Duration = Duration::from_secs(600);

/// How often the partitions are read (`scontrol show partition`): they
/// change when an admin edits slurm.conf.
const PARTITION_INTERVAL: Duration = Duration::from_secs(10);

/// How often the scheduler's statistics are read (one `sdiag` RPC): they
/// move slowly, and slurmctld answers every poll already.
const SDIAG_INTERVAL: Duration = Duration::from_secs(15);

/// How far back jobs count for missing health reports: a node that keeps
/// losing reports shows again with every new job; one that lost a report
/// once stops counting after this.
const HEALTH_DEBT_WINDOW: Duration = Duration::from_secs(3600);

/// How often the jobs-by-state gauge may be recomputed after transitions.
const COUNT_INTERVAL: Duration = Duration::from_secs(5);
/// How stale the jobs-by-state gauge may get without transitions.
const COUNT_MAX_AGE: Duration = Duration::from_secs(30);

/// How the poller runs.
pub struct PollSettings {
    pub interval: Duration,
    /// How long a submission may go without a SLURM id before the poller
    /// looks for it by its tag.
    pub submit_grace: Duration,
    /// When this bridge process started (Unix time).
    pub started: f64,
    pub drain: DrainRule,
    /// How late a job's health reports may be before its node is stale.
    pub health_stale_after: Duration,
    /// Where jobs to retry are sent.
    pub retries: tokio::sync::mpsc::UnboundedSender<i64>,
}

pub fn spawn(
    slurm: Slurm,
    store: Store,
    metrics: Metrics,
    settings: PollSettings,
    policy: ActivePolicy,
    stopping: Stopping,
) -> (JoinHandle<()>, watch::Receiver<Arc<NodeSnapshot>>) {
    let PollSettings { interval, submit_grace, started, drain, health_stale_after, retries } = settings;
    let (tx, rx) = watch::channel(Arc::new(NodeSnapshot::default()));
    let poller = Poller {
        slurm,
        store,
        metrics,
        process_started: started,
        submit_grace,
        nodes: tx,
        counted_at: Default::default(),
        sdiag_at: Default::default(),
        counts_dirty: Default::default(),
        policy,
        usage: std::sync::Mutex::new(order::Usage::new(FAIR_SHARE_HALF_LIFE.as_secs_f64())),
        retries,
        drain,
        health_stale_after,
        drained_at: Default::default(),
        ordered_by: Default::default(),
        partitions: Default::default(),
    };
    (tokio::spawn(poller.run(interval, stopping)), rx)
}

impl Poller {
    #[tracing::instrument(name = "poller", skip_all)]
    async fn run(self, interval: Duration, mut stopping: Stopping) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            // A stop is heard between rounds: a round in progress finishes
            // (its observations are stored in one transaction anyway).
            tokio::select! {
                _ = ticker.tick() => {}
                () = stopping.wait() => {
                    tracing::info!("poller stopped");
                    return;
                }
            }
            let started = Instant::now();
            match self.round().await {
                Ok(()) => {
                    self.metrics.poll_duration.with_label_values(&["ok"]).observe(started.elapsed().as_secs_f64());
                    self.metrics.poll_last_success.set(now());
                    if failing {
                        tracing::info!("polling SLURM works again");
                        failing = false;
                    }
                }
                Err(err) => {
                    self.metrics.poll_duration.with_label_values(&["error"]).observe(started.elapsed().as_secs_f64());
                    if !failing {
                        tracing::warn!(%err, "polling SLURM failed; retrying every interval");
                        failing = true;
                    }
                }
            }
        }
    }

    /// One round: read the queue and nodes once, update every tracked job.
    pub async fn round(&self) -> Result<(), PollError> {
        let tracked = self.store.call(|conn| jobs::unfinished(conn)).await?;
        let queue = self.slurm.squeue_all().await?;
        let nodes = self.slurm.sinfo_nodes().await?;
        let partitions = self.read_partitions().await;
        self.publish_nodes(nodes, &queue, partitions);
        if let Ok(mut usage) = self.usage.lock() {
            let running: Vec<(i64, &str, u32)> = queue
                .iter()
                .filter(|e| e.state == JobState::Running)
                .map(|e| (e.job_id, e.user.as_str(), e.cpus))
                .collect();
            usage.observe(now(), &running);
        }
        self.publish_slow_metrics().await;

        let mut by_job: HashMap<i64, Vec<&QueueEntry>> = HashMap::new();
        for entry in queue.iter() {
            by_job.entry(entry.array_job_id).or_default().push(entry);
        }
        let mut observations = Vec::new();
        let mut need_detail = Vec::new();
        let mut orphans = Vec::new();
        let grace_cutoff = now() - self.submit_grace.as_secs_f64();
        for job in &tracked {
            match job.slurm_job_id {
                // Far past sbatch's timeout in this process (rows from before
                // it started are `Submitter::recover`'s).
                None if job.state == JobState::Submitting
                    && job.submitted_at >= self.process_started
                    && job.submitted_at < grace_cutoff =>
                {
                    orphans.push(job.clone());
                }
                None => {}
                Some(slurm_id) => match by_job.get(&slurm_id) {
                    Some(entries) => {
                        let obs = aggregate(entries);
                        // Observed once: the first poll that sees the job
                        // past PENDING with a start time.
                        let waiting = matches!(job.state, JobState::Pending | JobState::Submitting);
                        if let (true, Some(started)) = (waiting && obs.state != JobState::Pending, obs.started_at) {
                            self.metrics.queue_wait.observe((started - job.submitted_at).max(0.0));
                        }
                        // squeue has no exit code: ask scontrol once, as the job ends.
                        if obs.finished && entries.len() == 1 {
                            need_detail.push((job.id, slurm_id, Some(obs)));
                        } else {
                            observations.push((job.id, obs));
                        }
                    }
                    None => need_detail.push((job.id, slurm_id, None)),
                },
            }
        }
        let details: Vec<_> = stream::iter(need_detail)
            .map(|(id, slurm_id, obs)| async move { (id, obs, self.slurm.show_job(slurm_id).await) })
            .buffer_unordered(8)
            .collect()
            .await;
        // One job's failed question costs that job this round, not the
        // round's other observations: it is asked again next round.
        let (merged, failed) = merge_details(details);
        observations.extend(merged);
        if let Some(err) = failed {
            tracing::warn!(%err, "scontrol show job failed; that job is asked again next round");
        }
        if !orphans.is_empty() {
            self.reconcile(orphans).await?;
        }
        let observations = self.handle_endings(&tracked, observations).await?;
        let mut transitions = 0;
        if !observations.is_empty() {
            // Only the jobs whose state changed count (the alert rules read
            // this counter as "jobs that reached state X").
            let changed = self.store.call(move |conn| jobs::observe(conn, &observations)).await?;
            for state in &changed {
                self.metrics.job_transitions.with_label_values(&[state.as_str()]).inc();
            }
            transitions = changed.len();
        }
        self.collate_results().await?;
        self.apply_ordering(&tracked, &queue).await;
        // Counting the whole history scans an index of it: after changes, at
        // most every COUNT_INTERVAL, and every COUNT_MAX_AGE regardless
        // (submissions and cancels happen outside the poller).
        if transitions > 0 {
            self.counts_dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let dirty = self.counts_dirty.load(std::sync::atomic::Ordering::Relaxed);
        let due = self
            .counted_at
            .lock()
            .map(|t| t.is_none_or(|t| t.elapsed() >= if dirty { COUNT_INTERVAL } else { COUNT_MAX_AGE }))
            .unwrap_or(true);
        if due {
            let counts = self.store.read(jobs::count_by_state).await?;
            self.metrics.jobs_by_state.reset();
            for (state, count) in counts {
                self.metrics.jobs_by_state.with_label_values(&[state.as_str()]).set(count);
            }
            if let Ok(mut t) = self.counted_at.lock() {
                *t = Some(Instant::now());
            }
            self.counts_dirty.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Jobs whose attempt failed: retried (dropped from the observations;
    /// the store puts them back to SUBMITTING and the submitter sends the
    /// next attempt), or ended with their infrastructure failure kept; then
    /// nodes with too many such failures are drained.
    async fn handle_endings(
        &self,
        tracked: &[Tracked],
        observations: Vec<(i64, Observation)>,
    ) -> Result<Vec<(i64, Observation)>, PollError> {
        let mut kept = Vec::with_capacity(observations.len());
        let mut infrastructure = false;
        for (id, obs) in observations {
            let failed = obs.finished && !matches!(obs.state, JobState::Completed | JobState::Cancelled);
            let job = tracked.iter().find(|t| t.id == id);
            let (true, Some(job), Some(slurm_id)) = (failed, job, job.and_then(|j| j.slurm_job_id)) else {
                kept.push((id, obs));
                continue;
            };
            let since = job.submitted_at - 1.0;
            let records = self.store.read(move |conn| crate::store::health::for_job(conn, slurm_id, since)).await?;
            let failure = crate::failure::classify(obs.state, obs.exit_code, obs.signal, &records);
            match retry::decide(job, &obs, failure.as_ref()) {
                Decision::Retry { ended, why } => {
                    infrastructure |= ended.failure_class.as_deref() == Some("infrastructure");
                    let tag = new_tag();
                    tracing::info!(job = id, slurm_job_id = slurm_id, %why, "retrying");
                    let reason = why.clone();
                    self.store.call(move |conn| jobs::begin_retry(conn, id, &ended, &tag, &reason)).await?;
                    self.metrics.retries.with_label_values(&[failure.map_or("unknown", |f| f.class.as_str())]).inc();
                    let _ = self.retries.send(id);
                }
                Decision::Keep(ended) => {
                    infrastructure = true;
                    self.store.call(move |conn| jobs::record_attempt(conn, id, &ended)).await?;
                    self.count_failure(failure.as_ref());
                    kept.push((id, obs));
                }
                Decision::Finish => {
                    self.count_failure(failure.as_ref());
                    kept.push((id, obs));
                }
            }
        }
        if infrastructure {
            self.drain_failing_nodes().await;
        }
        Ok(kept)
    }

    /// A job that ended failed, for good (no retry follows).
    fn count_failure(&self, failure: Option<&crate::failure::Failure>) {
        self.metrics.job_failures.with_label_values(&[failure.map_or("unknown", |f| f.class.as_str())]).inc();
    }

    /// Drains every node with `--drain-after` infrastructure failures within
    /// `--drain-window`, saying which jobs failed there.
    async fn drain_failing_nodes(&self) {
        let since = now() - self.drain.window.as_secs_f64();
        let failures = match self.store.read(move |conn| jobs::infrastructure_failures_since(conn, since)).await {
            Ok(failures) => failures,
            Err(err) => {
                tracing::warn!(%err, "cannot count node failures");
                return;
            }
        };
        let drained_at = self.drained_at.lock().map(|d| d.clone()).unwrap_or_default();
        for (node, jobs) in retry::to_drain(&failures, self.drain.after, &drained_at) {
            let Some(name) = super::NodeName::parse(&node) else { continue };
            let ids: Vec<String> = jobs.iter().map(i64::to_string).collect();
            let reason = format!(
                "odyssey: {} infrastructure failures within {} s (jobs {})",
                jobs.len(),
                self.drain.window.as_secs(),
                ids.join(", ")
            );
            match self.slurm.drain_node(&name, &reason).await {
                Ok(()) => {
                    tracing::warn!(node, %reason, "node drained");
                    self.metrics.nodes_drained.inc();
                    if let Ok(mut d) = self.drained_at.lock() {
                        d.insert(node, now());
                    }
                }
                Err(err) => tracing::warn!(node, %err, "draining a failing node failed; trying again next failure"),
            }
        }
    }

    /// Reads the results of kernel jobs that have finished into their records.
    async fn collate_results(&self) -> Result<(), PollError> {
        let pending = self.store.read(jobs::uncollated).await?;
        if pending.is_empty() {
            return Ok(());
        }
        let collated = match tokio::task::spawn_blocking(move || {
            pending.iter().map(|job| (job.id, crate::results::collate(job))).collect::<Vec<_>>()
        })
        .await
        {
            Ok(collated) => collated,
            Err(err) => {
                tracing::error!(%err, "collating kernel results failed; retrying next round");
                return Ok(());
            }
        };
        for (id, result) in &collated {
            let outcome = match result {
                Collated::Result { verified: true, .. } => "verified",
                Collated::Result { verified: false, .. } => "unverified",
                Collated::Missing(_) => "missing",
            };
            tracing::info!(job = id, outcome, "kernel result collated");
            self.metrics.kernel_results.with_label_values(&[outcome]).inc();
        }
        self.store
            .call(move |conn| collated.iter().try_for_each(|(id, result)| jobs::store_result(conn, *id, result)))
            .await?;
        Ok(())
    }

    /// Finds orphaned submissions in SLURM by the tag in their comment.
    async fn reconcile(&self, orphans: Vec<Tracked>) -> Result<(), PollError> {
        let comments = self.slurm.squeue_comments().await?;
        for job in orphans {
            let wanted = comment_tag(&job.tag);
            let found = comments.iter().find(|(_, c)| *c == wanted).map(|(id, _)| *id);
            let id = job.id;
            match found {
                Some(slurm_id) => {
                    tracing::info!(job = id, slurm_job_id = slurm_id, "reconciled a submission whose reply was lost");
                    self.store.call(move |conn| jobs::set_slurm_id(conn, id, slurm_id)).await?;
                }
                None => {
                    tracing::warn!(job = id, "submission lost before SLURM accepted it");
                    self.store
                        .call(move |conn| {
                            jobs::mark_lost(conn, id, "sbatch did not answer in time and SLURM has no job with its tag")
                        })
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Every `SDIAG_INTERVAL`: `sdiag` into the scheduler metrics, and the
    /// nodes that owe health reports. A failure is logged and costs the poll
    /// nothing; the metrics keep their last values.
    async fn publish_slow_metrics(&self) {
        {
            let Ok(mut at) = self.sdiag_at.lock() else { return };
            if at.is_some_and(|t| t.elapsed() < SDIAG_INTERVAL) {
                return;
            }
            *at = Some(Instant::now());
        }
        match self.slurm.sdiag().await {
            Ok(stats) => self.metrics.cluster.observe_scheduler(&stats),
            Err(err) => tracing::debug!(%err, "sdiag failed; the scheduler metrics keep their last values"),
        }
        let to = now() - self.health_stale_after.as_secs_f64();
        let from = to - HEALTH_DEBT_WINDOW.as_secs_f64();
        match self.store.read(move |conn| crate::store::health::missing_reports(conn, from, to)).await {
            Ok(node_lists) => {
                // The batch host runs the batch step, whose node record the
                // plugin writes for every job that asked for reports.
                let mut owed: HashMap<String, i64> = HashMap::new();
                for list in node_lists {
                    if let Some(host) = hostlist::expand(&list).into_iter().next() {
                        *owed.entry(host).or_default() += 1;
                    }
                }
                self.metrics.health_missing.reset();
                for (node, jobs) in &owed {
                    self.metrics.health_missing.with_label_values(&[node]).set(*jobs);
                }
                self.metrics.health_stale_nodes.set(owed.len() as i64);
            }
            Err(err) => tracing::warn!(%err, "counting missing health reports failed"),
        }
    }

    /// The partitions, read again every `PARTITION_INTERVAL`; a failure
    /// keeps the last picture.
    async fn read_partitions(&self) -> Arc<Vec<PartitionInfo>> {
        let last = {
            let Ok(guard) = self.partitions.lock() else { return Arc::default() };
            if guard.0.is_some_and(|t| t.elapsed() < PARTITION_INTERVAL) {
                return guard.1.clone();
            }
            guard.1.clone()
        };
        let lines = match self.slurm.partitions().await {
            Ok(lines) => lines,
            Err(err) => {
                tracing::debug!(%err, "reading the partitions failed; routing keeps the last picture");
                return last;
            }
        };
        // AllowGroups names become gids once, off the runtime (NSS may block).
        let resolved = tokio::task::spawn_blocking(move || {
            lines
                .into_iter()
                .map(|p| p.map_groups(|g| nix::unistd::Group::from_name(g).ok().flatten().map(|g| g.gid.as_raw())))
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(resolved) = resolved else { return last };
        let fresh = Arc::new(resolved);
        if let Ok(mut guard) = self.partitions.lock() {
            *guard = (Some(Instant::now()), fresh.clone());
        }
        fresh
    }

    /// The ordering policy, applied: the bridge's pending jobs get
    /// priorities in the policy's order, only where they are out of order
    /// (`order::assign`), one `scontrol update` per changed value. A failure
    /// is logged and tried again next round.
    async fn apply_ordering(&self, tracked: &[Tracked], queue: &[QueueEntry]) {
        let policy = self.policy.get();
        if policy.ordering == Ordering::Slurm {
            return;
        }
        let pending = pending_jobs(tracked, queue);
        if pending.is_empty() {
            return;
        }
        let placed = {
            let Ok(usage) = self.usage.lock() else { return };
            order::order(policy.ordering, &policy.user_weights, &pending, &usage)
        };
        let current: Vec<u32> = placed.iter().map(|p| pending[p.index].priority).collect();
        let changes = order::assign(&current);
        // A new policy restates every job's record, also where the job's
        // priority already stands in the new order.
        let restate = self
            .ordered_by
            .lock()
            .map(|mut last| last.replace(policy.clone()) != Some(policy.clone()))
            .unwrap_or(false);
        let mut decisions = Vec::new();
        let mut updated = 0u64;
        for (place, change) in placed.iter().zip(changes) {
            let Some(priority) = change else {
                if restate {
                    let job = &pending[place.index];
                    let record = order::Ordered {
                        policy: policy.ordering,
                        priority: job.priority,
                        why: place.why.clone(),
                        at: now(),
                    };
                    decisions.push((job.job, serde_json::to_string(&record).unwrap_or_default()));
                }
                continue;
            };
            let job = &pending[place.index];
            tracing::debug!(job = job.job, slurm_job_id = job.slurm_id, priority, why = %place.why, "ordering");
            match self.slurm.set_priority(&[job.slurm_id], priority).await {
                Ok(()) => {
                    updated += 1;
                    let record =
                        order::Ordered { policy: policy.ordering, priority, why: place.why.clone(), at: now() };
                    decisions.push((job.job, serde_json::to_string(&record).unwrap_or_default()));
                }
                Err(err) => {
                    tracing::warn!(%err, slurm_job_id = job.slurm_id, "setting a job's priority failed; retrying next round");
                    break;
                }
            }
        }
        self.metrics.priority_updates.with_label_values(&[policy.ordering.as_str()]).inc_by(updated);
        if !decisions.is_empty() {
            if let Err(err) = self.store.call(move |conn| jobs::set_ordering(conn, &decisions)).await {
                tracing::warn!(%err, "recording ordering decisions failed");
            }
        }
    }

    fn publish_nodes(&self, nodes: Vec<NodeInfo>, queue: &[QueueEntry], partitions: Arc<Vec<PartitionInfo>>) {
        let mut running: HashMap<String, Vec<i64>> = HashMap::new();
        for entry in queue.iter().filter(|e| e.state == JobState::Running) {
            for node in entry.nodes.as_deref().map(hostlist::expand).unwrap_or_default() {
                running.entry(node).or_default().push(entry.job_id);
            }
        }
        self.metrics.nodes_by_state.reset();
        for node in &nodes {
            self.metrics.nodes_by_state.with_label_values(&[&node.state]).inc();
        }
        self.metrics.cluster.observe(&crate::cluster_metrics::Census::of(&nodes, queue, &partitions));
        let nodes = nodes
            .into_iter()
            .map(|info| {
                let running_jobs = running.remove(&info.name).unwrap_or_default();
                NodeView { info, running_jobs }
            })
            .collect();
        self.nodes.send_replace(Arc::new(NodeSnapshot { nodes, partitions, polled_at: Some(now()) }));
    }
}

/// The bridge's pending jobs SLURM lists (plain jobs, not arrays; not held,
/// priority 0).
fn pending_jobs(tracked: &[Tracked], queue: &[QueueEntry]) -> Vec<Pending> {
    let mut listed: HashMap<i64, &QueueEntry> = HashMap::new();
    for entry in queue {
        if entry.job_id == entry.array_job_id {
            listed.insert(entry.job_id, entry);
        }
    }
    tracked
        .iter()
        .filter_map(|job| {
            let entry = listed.get(&job.slurm_job_id?)?;
            (entry.state == JobState::Pending && entry.priority != 0).then(|| Pending {
                job: job.id,
                slurm_id: entry.job_id,
                user: entry.user.clone(),
                cpus: entry.cpus,
                time_limit: entry.time_limit,
                submitted_at: job.submitted_at,
                priority: entry.priority,
                retry: job.attempt > 1,
            })
        })
        .collect()
}

/// A job's id, its squeue observation if any, and scontrol's answer.
type DetailAnswer = (i64, Option<Observation>, Result<Option<JobDetail>, SlurmError>);

/// Merges each job's `scontrol show job` answer into its observation; a
/// failed question drops that job from this round (the first error is
/// returned, to be logged).
fn merge_details(details: Vec<DetailAnswer>) -> (Vec<(i64, Observation)>, Option<SlurmError>) {
    let mut merged = Vec::new();
    let mut first_error = None;
    for (id, obs, detail) in details {
        match detail {
            Ok(detail) => merged.push((id, merge_detail(obs, detail))),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    (merged, first_error)
}

/// A fresh tag for a submission (or a retry's attempt): 20 random
/// alphanumerics, found again in SLURM by `comment_tag`.
pub fn new_tag() -> String {
    crate::auth::random_token().chars().filter(char::is_ascii_alphanumeric).take(20).collect()
}

/// The `--comment` the bridge gives a job with this tag.
pub fn comment_tag(tag: &str) -> String {
    format!("odyssey:{tag}")
}

/// One observation for a job from its squeue lines (several for an array):
/// running if any task runs, pending if any waits, else finished, failed if
/// any task did not complete.
fn aggregate(entries: &[&QueueEntry]) -> Observation {
    let active: Vec<&&QueueEntry> = entries.iter().filter(|e| !e.state.is_terminal()).collect();
    let finished = active.is_empty();
    let lead = if finished {
        entries.iter().find(|e| e.state != JobState::Completed).unwrap_or(&entries[0])
    } else {
        active.iter().find(|e| e.state == JobState::Running).copied().unwrap_or(active[0])
    };
    let mut nodes: Vec<&str> = entries.iter().filter_map(|e| e.nodes.as_deref()).collect();
    nodes.dedup();
    let started_at = entries.iter().filter_map(|e| e.start).reduce(f64::min);
    let ended_at = if finished { entries.iter().filter_map(|e| e.end).reduce(f64::max) } else { None };
    Observation {
        state: lead.state,
        reason: lead.reason.clone(),
        nodes: (!nodes.is_empty()).then(|| nodes.join(",")),
        started_at,
        ended_at,
        exit_code: None,
        signal: None,
        finished,
        event_at: if finished {
            ended_at
        } else if lead.state == JobState::Running {
            started_at
        } else {
            None
        },
    }
}

/// Completes an observation with `scontrol show job`, or builds one from it
/// when squeue no longer lists the job. `None` detail: SLURM forgot the job.
fn merge_detail(obs: Option<Observation>, detail: Option<JobDetail>) -> Observation {
    match (obs, detail) {
        (Some(mut obs), Some(detail)) => {
            obs.exit_code = detail.exit_code;
            obs.signal = detail.signal.filter(|s| *s != 0);
            obs
        }
        (None, Some(detail)) => {
            let state = detail.state.unwrap_or(JobState::Unknown);
            let finished = state.is_terminal();
            Observation {
                finished,
                reason: detail.reason,
                nodes: detail.nodes,
                started_at: detail.start,
                ended_at: detail.end.filter(|_| finished),
                exit_code: detail.exit_code.filter(|_| finished),
                signal: detail.signal.filter(|s| finished && *s != 0),
                event_at: if finished { detail.end } else { None },
                state,
            }
        }
        (obs, None) => {
            let reason = Some("SLURM purged the job before the bridge saw it end".to_owned());
            match obs {
                Some(obs) => Observation { state: JobState::Unknown, reason, finished: true, ..obs },
                None => Observation::lost(reason),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(job_id: i64, array: i64, state: &str) -> QueueEntry {
        let state: JobState = state.parse().unwrap();
        QueueEntry {
            job_id,
            array_job_id: array,
            state,
            reason: None,
            start: Some(10.0 + job_id as f64),
            end: state.is_terminal().then_some(20.0 + job_id as f64),
            user: "alice".into(),
            cpus: 1,
            partition: "debug".into(),
            account: None,
            nodes: Some(format!("c{job_id}")),
            time_limit: None,
            priority: 1,
        }
    }

    #[test]
    fn array_tasks_aggregate_to_one_state() {
        let (a, b, c) = (entry(1, 1, "COMPLETED"), entry(2, 1, "RUNNING"), entry(3, 1, "PENDING"));
        let obs = aggregate(&[&a, &b, &c]);
        assert_eq!(obs.state, JobState::Running);
        assert!(!obs.finished);
        let failed = entry(2, 1, "FAILED");
        let obs = aggregate(&[&a, &failed]);
        assert_eq!((obs.state, obs.finished, obs.ended_at), (JobState::Failed, true, Some(22.0)));
    }

    #[test]
    fn one_failed_question_keeps_the_rest_of_the_round() {
        let finished = aggregate(&[&entry(1, 1, "COMPLETED")]);
        let details = vec![
            (1, Some(finished), Ok(None)),
            (2, None, Err(SlurmError::Timeout { command: "scontrol", timeout: Duration::from_secs(5) })),
            (3, None, Ok(None)),
        ];
        let (merged, failed) = merge_details(details);
        assert_eq!(merged.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 3]);
        assert!(matches!(failed, Some(SlurmError::Timeout { .. })));
    }

    #[test]
    fn pending_jobs_are_the_bridges_listed_unheld_ones() {
        let tracked = |id: i64, slurm: i64| Tracked {
            id,
            slurm_job_id: Some(slurm),
            tag: String::new(),
            state: JobState::Pending,
            reason: None,
            submitted_at: id as f64,
            retries_left: 0,
            retry_on: "infrastructure".into(),
            attempt: 1,
        };
        let mut held = entry(2, 2, "PENDING");
        held.priority = 0;
        let queue = [entry(1, 1, "PENDING"), held, entry(3, 3, "RUNNING"), entry(4, 4, "PENDING")];
        let pending = pending_jobs(&[tracked(10, 1), tracked(20, 2), tracked(30, 3)], &queue);
        assert_eq!(pending.iter().map(|p| p.job).collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn a_forgotten_job_is_unknown_with_a_reason() {
        let obs = merge_detail(None, None);
        assert_eq!(obs.state, JobState::Unknown);
        assert!(obs.finished);
        assert!(obs.reason.unwrap().contains("purged"));
    }
}
