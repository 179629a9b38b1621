//! Cluster metrics in the names and labels of the most used SLURM exporter
//! (vpenso's prometheus-slurm-exporter), so that dashboards made for it
//! (Grafana dashboard 4323) read the bridge unchanged: `slurm_nodes_*`,
//! `slurm_cpus_*`, `slurm_queue_*`, `slurm_user_*`, `slurm_account_*`,
//! `slurm_partition_*`, `slurm_scheduler_*`, `slurm_rpc_stats*`,
//! `slurm_user_rpc_stats*`. Counted from the poller's round
//! (its one sinfo and one squeue, the partitions it reads every 10 s, sdiag
//! every 15 s), never per scrape.

use std::collections::BTreeMap;

use prometheus::{IntGauge, IntGaugeVec, Opts, Registry};

use crate::job_state::JobState;
use crate::scheduling::route::PartitionInfo;
use crate::slurm::parse::{NodeInfo, QueueEntry, RpcStat, SchedulerStats};

/// Node states as the exporter groups them: the first word of sinfo's long
/// state, by prefix (`drained`, `draining` and `drain` are all drain; a
/// trailing `*`, `~`, `#` or `-` does not change the group).
pub const NODE_GROUPS: [&str; 10] = ["alloc", "comp", "down", "drain", "err", "fail", "idle", "maint", "mix", "resv"];

/// Job states as the exporter counts them (`slurm_queue_<name>`).
pub const QUEUE_STATES: [(&str, JobState); 11] = [
    ("pending", JobState::Pending),
    ("running", JobState::Running),
    ("suspended", JobState::Suspended),
    ("cancelled", JobState::Cancelled),
    ("completing", JobState::Completing),
    ("completed", JobState::Completed),
    ("configuring", JobState::Configuring),
    ("failed", JobState::Failed),
    ("timeout", JobState::Timeout),
    ("preempted", JobState::Preempted),
    ("node_fail", JobState::NodeFail),
];

/// One round's counts: a pure function of sinfo's and squeue's answers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Census {
    pub nodes: BTreeMap<&'static str, i64>,
    pub cpus_alloc: i64,
    pub cpus_idle: i64,
    pub cpus_other: i64,
    pub cpus_total: i64,
    pub queue: BTreeMap<&'static str, i64>,
    /// Pending because of a dependency (the exporter's `pending_dependency`).
    pub pending_dependency: i64,
    /// Per user: (pending jobs, running jobs, running CPUs, suspended jobs).
    pub users: BTreeMap<String, (i64, i64, i64, i64)>,
    /// The same per account (jobs without one are not counted, as in the
    /// exporter).
    pub accounts: BTreeMap<String, (i64, i64, i64, i64)>,
    /// Pending jobs per partition (a job that may run in several counts in
    /// each).
    pub partitions_pending: BTreeMap<String, i64>,
    /// CPUs of each partition's nodes: (allocated, idle, other, total); a
    /// node in two partitions counts in both, as sinfo's `%R %C` does.
    pub partition_cpus: BTreeMap<String, [i64; 4]>,
}

impl Census {
    pub fn of(nodes: &[NodeInfo], queue: &[QueueEntry], partitions: &[PartitionInfo]) -> Census {
        let mut census = Census::default();
        for partition in partitions {
            let cpus = census.partition_cpus.entry(partition.name.clone()).or_default();
            for node in nodes.iter().filter(|n| partition.nodes.contains(&n.name)) {
                let counts = [node.cpus_allocated, node.cpus_idle, node.cpus_other, node.cpus_total];
                for (sum, count) in cpus.iter_mut().zip(counts) {
                    *sum += i64::from(count);
                }
            }
        }
        for group in NODE_GROUPS {
            census.nodes.insert(group, 0);
        }
        for node in nodes {
            let state = node.state.to_ascii_lowercase();
            if let Some(group) = NODE_GROUPS.iter().find(|g| state.starts_with(**g)) {
                *census.nodes.entry(group).or_default() += 1;
            }
            census.cpus_alloc += i64::from(node.cpus_allocated);
            census.cpus_idle += i64::from(node.cpus_idle);
            census.cpus_other += i64::from(node.cpus_other);
            census.cpus_total += i64::from(node.cpus_total);
        }
        for (name, _) in QUEUE_STATES {
            census.queue.insert(name, 0);
        }
        for job in queue {
            if let Some((name, _)) = QUEUE_STATES.iter().find(|(_, state)| *state == job.state) {
                *census.queue.entry(name).or_default() += 1;
            }
            if job.state == JobState::Pending && job.reason.as_deref() == Some("Dependency") {
                census.pending_dependency += 1;
            }
            tally(census.users.entry(job.user.clone()).or_default(), job);
            if let Some(account) = &job.account {
                tally(census.accounts.entry(account.clone()).or_default(), job);
            }
            if job.state == JobState::Pending {
                for partition in job.partition.split(',').filter(|p| !p.is_empty()) {
                    *census.partitions_pending.entry(partition.to_owned()).or_default() += 1;
                }
            }
        }
        census
    }
}

/// Counts one job into an owner's (pending, running, running CPUs,
/// suspended).
fn tally(owner: &mut (i64, i64, i64, i64), job: &QueueEntry) {
    match job.state {
        JobState::Pending => owner.0 += 1,
        JobState::Running => {
            owner.1 += 1;
            owner.2 += i64::from(job.cpus);
        }
        JobState::Suspended => owner.3 += 1,
        _ => {}
    }
}

/// The gauges of one kind of owner (user or account), by its label.
struct PerOwner {
    pending: IntGaugeVec,
    running: IntGaugeVec,
    cpus_running: IntGaugeVec,
    suspended: IntGaugeVec,
}

impl PerOwner {
    /// `slurm_<kind>_jobs_pending{<kind>=...}` and its three siblings.
    fn register(registry: &Registry, kind: &str) -> PerOwner {
        let vec = |name: &str, help: &str| {
            labelled(registry, &format!("slurm_{kind}_{name}"), &format!("{help} per {kind}"), kind)
        };
        PerOwner {
            pending: vec("jobs_pending", "Pending jobs"),
            running: vec("jobs_running", "Running jobs"),
            cpus_running: vec("cpus_running", "CPUs of running jobs"),
            suspended: vec("jobs_suspended", "Suspended jobs"),
        }
    }

    /// Owners without jobs drop out, as they do from squeue.
    fn observe(&self, owners: &BTreeMap<String, (i64, i64, i64, i64)>) {
        for vec in [&self.pending, &self.running, &self.cpus_running, &self.suspended] {
            vec.reset();
        }
        for (owner, (pending, running, cpus, suspended)) in owners {
            self.pending.with_label_values(&[owner]).set(*pending);
            self.running.with_label_values(&[owner]).set(*running);
            self.cpus_running.with_label_values(&[owner]).set(*cpus);
            self.suspended.with_label_values(&[owner]).set(*suspended);
        }
    }
}

/// The gauges, registered once; `observe` sets them from a round's census.
pub struct ClusterMetrics {
    nodes: Vec<(&'static str, IntGauge)>,
    cpus: [IntGauge; 4],
    queue: Vec<(&'static str, IntGauge)>,
    pending_dependency: IntGauge,
    users: PerOwner,
    accounts: PerOwner,
    partition_pending: IntGaugeVec,
    /// `slurm_partition_cpus_{allocated,idle,other,total}`.
    partition_cpus: [IntGaugeVec; 4],
    scheduler: Vec<(ReadStat, IntGauge)>,
    rpc_by_type: RpcGauges,
    rpc_by_user: RpcGauges,
}

/// sdiag's RPC statistics of one kind: `slurm_rpc_stats{operation}` or
/// `slurm_user_rpc_stats{user}`, each with `_avg_time` and `_total_time`.
struct RpcGauges {
    count: IntGaugeVec,
    avg_time: IntGaugeVec,
    total_time: IntGaugeVec,
}

impl RpcGauges {
    fn register(registry: &Registry, prefix: &str, label: &str, per: &str) -> RpcGauges {
        let vec = |suffix: &str, help: &str| {
            labelled(registry, &format!("{prefix}{suffix}"), &format!("{help} {per}, from sdiag"), label)
        };
        RpcGauges {
            count: vec("", "RPC count"),
            avg_time: vec("_avg_time", "RPC average time (us)"),
            total_time: vec("_total_time", "RPC total time (us)"),
        }
    }

    /// Only what this sdiag listed (slurmctld's counters restart with it).
    fn observe(&self, stats: &[RpcStat]) {
        for vec in [&self.count, &self.avg_time, &self.total_time] {
            vec.reset();
        }
        for stat in stats {
            self.count.with_label_values(&[&stat.name]).set(stat.count);
            self.avg_time.with_label_values(&[&stat.name]).set(stat.ave_time);
            self.total_time.with_label_values(&[&stat.name]).set(stat.total_time);
        }
    }
}

/// Reads one figure of `sdiag`'s.
type ReadStat = fn(&SchedulerStats) -> Option<i64>;

/// `sdiag`'s figures by the exporter's names (times in microseconds).
type SchedulerGauge = (&'static str, &'static str, ReadStat);
const SCHEDULER: [SchedulerGauge; 12] = [
    ("slurm_scheduler_threads", "slurmctld server threads", |s| s.threads),
    ("slurm_scheduler_queue_size", "Agent queue size", |s| s.queue_size),
    ("slurm_scheduler_dbd_queue_size", "DBD agent queue size", |s| s.dbd_queue_size),
    ("slurm_scheduler_last_cycle", "Main scheduler's last cycle (us)", |s| s.last_cycle),
    ("slurm_scheduler_mean_cycle", "Main scheduler's mean cycle (us)", |s| s.mean_cycle),
    ("slurm_scheduler_cycle_per_minute", "Main scheduler cycles per minute", |s| s.cycles_per_minute),
    ("slurm_scheduler_backfill_last_cycle", "Backfill's last cycle (us)", |s| s.backfill_last_cycle),
    ("slurm_scheduler_backfill_mean_cycle", "Backfill's mean cycle (us)", |s| s.backfill_mean_cycle),
    ("slurm_scheduler_backfill_depth_mean", "Backfill's mean depth", |s| s.backfill_depth_mean),
    ("slurm_scheduler_backfilled_jobs_since_start_total", "Jobs backfilled since slurmctld started", |s| {
        s.backfilled_jobs_since_start
    }),
    ("slurm_scheduler_backfilled_jobs_since_cycle_total", "Jobs backfilled since the last stats cycle", |s| {
        s.backfilled_jobs_since_cycle
    }),
    ("slurm_scheduler_backfilled_heterogeneous_total", "Heterogeneous job components backfilled", |s| {
        s.backfilled_heterogeneous
    }),
];

/// `slurm_partition_<name>{partition=...}`.
fn per_partition(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    labelled(registry, &format!("slurm_partition_{name}"), &format!("{help} per partition"), "partition")
}

/// A gauge with one label, registered.
fn labelled(registry: &Registry, name: &str, help: &str, label: &str) -> IntGaugeVec {
    let gauge = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric");
    registry.register(Box::new(gauge.clone())).expect("unique metric names");
    gauge
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(gauge.clone())).expect("unique metric names");
    gauge
}

impl ClusterMetrics {
    pub fn register(registry: &Registry) -> ClusterMetrics {
        let nodes = NODE_GROUPS
            .iter()
            .map(|g| (*g, gauge(registry, &format!("slurm_nodes_{g}"), &format!("Nodes in state {g}*"))))
            .collect();
        let cpus = [
            gauge(registry, "slurm_cpus_alloc", "Allocated CPUs"),
            gauge(registry, "slurm_cpus_idle", "Idle CPUs"),
            gauge(registry, "slurm_cpus_other", "CPUs of nodes down or drained"),
            gauge(registry, "slurm_cpus_total", "CPUs in the cluster"),
        ];
        let queue = QUEUE_STATES
            .iter()
            .map(|(name, state)| (*name, gauge(registry, &format!("slurm_queue_{name}"), &format!("Jobs {state}"))))
            .collect();
        ClusterMetrics {
            nodes,
            cpus,
            queue,
            pending_dependency: gauge(registry, "slurm_queue_pending_dependency", "Jobs pending on a dependency"),
            users: PerOwner::register(registry, "user"),
            accounts: PerOwner::register(registry, "account"),
            partition_pending: per_partition(registry, "jobs_pending", "Pending jobs"),
            partition_cpus: [
                per_partition(registry, "cpus_allocated", "Allocated CPUs"),
                per_partition(registry, "cpus_idle", "Idle CPUs"),
                per_partition(registry, "cpus_other", "CPUs of nodes down or drained"),
                per_partition(registry, "cpus_total", "CPUs"),
            ],
            scheduler: SCHEDULER.iter().map(|(name, help, read)| (*read, gauge(registry, name, help))).collect(),
            rpc_by_type: RpcGauges::register(registry, "slurm_rpc_stats", "operation", "by message type"),
            rpc_by_user: RpcGauges::register(registry, "slurm_user_rpc_stats", "user", "per user"),
        }
    }

    /// `sdiag`'s figures; one this SLURM does not print keeps its last value.
    pub fn observe_scheduler(&self, stats: &SchedulerStats) {
        for (read, gauge) in &self.scheduler {
            if let Some(value) = read(stats) {
                gauge.set(value);
            }
        }
        self.rpc_by_type.observe(&stats.rpc_by_type);
        self.rpc_by_user.observe(&stats.rpc_by_user);
    }

    pub fn observe(&self, census: &Census) {
        for (group, gauge) in &self.nodes {
            gauge.set(census.nodes.get(group).copied().unwrap_or(0));
        }
        let cpus = [census.cpus_alloc, census.cpus_idle, census.cpus_other, census.cpus_total];
        for (gauge, value) in self.cpus.iter().zip(cpus) {
            gauge.set(value);
        }
        for (name, gauge) in &self.queue {
            gauge.set(census.queue.get(name).copied().unwrap_or(0));
        }
        self.pending_dependency.set(census.pending_dependency);
        self.users.observe(&census.users);
        self.accounts.observe(&census.accounts);
        self.partition_pending.reset();
        for (partition, pending) in &census.partitions_pending {
            self.partition_pending.with_label_values(&[partition]).set(*pending);
        }
        for vec in &self.partition_cpus {
            vec.reset();
        }
        for (partition, counts) in &census.partition_cpus {
            for (vec, count) in self.partition_cpus.iter().zip(counts) {
                vec.with_label_values(&[partition]).set(*count);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slurm::parse::{sinfo, squeue};

    #[test]
    fn a_round_is_counted_as_the_exporter_counts_it() {
        let nodes = sinfo(
            "c1|idle|0/2/0/2|7231|1|0.1|(null)|none|\nc2|mixed|1/1/0/2|7231|1|0.1|(null)|none|\n\
             c3|drained*|0/0/2/2|7231|1|0.1|spare|x|\n",
        );
        let queue = squeue(
            "5|5|RUNNING|None|1|N/A|alice|2|debug|lab|c2|1:00|9|\n6|6|PENDING|Dependency|N/A|N/A|alice|1|debug|lab||1:00|9|\n\
             7|7|PENDING|Priority|N/A|N/A|bob|1|debug,long|(null)||1:00|9|\n8|8|COMPLETED|None|1|2|bob|1|debug|(null)|c1|1:00|9|\n",
        )
        .unwrap();
        let partitions = crate::slurm::parse::partitions(
            "PartitionName=debug Nodes=c[1-3] State=UP TotalCPUs=6\nPartitionName=long Nodes=c2 State=UP TotalCPUs=2\n",
        );
        let partitions: Vec<PartitionInfo> = partitions.into_iter().map(|p| p.map_groups(|_| Some(0))).collect();
        let census = Census::of(&nodes, &queue, &partitions);
        assert_eq!(
            (census.nodes["idle"], census.nodes["mix"], census.nodes["drain"], census.nodes["alloc"]),
            (1, 1, 1, 0)
        );
        assert_eq!((census.cpus_alloc, census.cpus_idle, census.cpus_other, census.cpus_total), (1, 3, 2, 6));
        assert_eq!((census.queue["running"], census.queue["pending"], census.queue["completed"]), (1, 2, 1));
        assert_eq!(census.pending_dependency, 1);
        assert_eq!(census.users["alice"], (1, 1, 2, 0));
        assert_eq!(census.users["bob"], (1, 0, 0, 0));
        assert_eq!(census.accounts["lab"], (1, 1, 2, 0));
        assert_eq!(census.accounts.len(), 1, "jobs without an account are not counted");
        assert_eq!((census.partitions_pending["debug"], census.partitions_pending["long"]), (2, 1));
        assert_eq!(census.partition_cpus["debug"], [1, 3, 2, 6]);
        assert_eq!(census.partition_cpus["long"], [1, 1, 0, 2], "c2 alone");

        let registry = Registry::new();
        let metrics = ClusterMetrics::register(&registry);
        metrics.observe(&census);
        metrics.observe_scheduler(&SchedulerStats {
            mean_cycle: Some(547),
            rpc_by_type: vec![RpcStat { name: "REQUEST_PING".into(), count: 14, ave_time: 285, total_time: 3997 }],
            rpc_by_user: vec![RpcStat { name: "alice".into(), count: 4, ave_time: 1307, total_time: 5231 }],
            ..Default::default()
        });
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for line in [
            "slurm_nodes_idle 1",
            "slurm_cpus_total 6",
            "slurm_queue_pending 2",
            "slurm_user_cpus_running{user=\"alice\"} 2",
            "slurm_account_jobs_running{account=\"lab\"} 1",
            "slurm_partition_jobs_pending{partition=\"long\"} 1",
            "slurm_partition_cpus_idle{partition=\"debug\"} 3",
            "slurm_partition_cpus_total{partition=\"long\"} 2",
            "slurm_scheduler_mean_cycle 547",
            "slurm_rpc_stats{operation=\"REQUEST_PING\"} 14",
            "slurm_rpc_stats_avg_time{operation=\"REQUEST_PING\"} 285",
            "slurm_user_rpc_stats_total_time{user=\"alice\"} 5231",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
