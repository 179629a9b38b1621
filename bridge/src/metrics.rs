//! Prometheus metrics, served on their own listener.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the bridge exports; cheap to clone (handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Labelled by the matched route, never the raw URI, so ids in paths
    /// do not explode the label set.
    pub http_requests: HistogramVec,
    pub sbatch_duration: HistogramVec,
    pub poll_duration: HistogramVec,
    /// Unix time of the last poll that reached SLURM; staleness is now minus this.
    pub poll_last_success: Gauge,
    pub jobs_by_state: IntGaugeVec,
    pub job_transitions: IntCounterVec,
    pub nodes_by_state: GaugeVec,
    /// Health records and batches by outcome (accepted, duplicate, rejected_*).
    pub health_reports: IntCounterVec,
    /// Seconds from a record's making to its arrival.
    pub health_delivery_lag: prometheus::Histogram,
    pub health_tasks: IntCounterVec,
    pub health_oom_kills: prometheus::IntCounter,
    /// Kernel job results collated, by outcome (verified, unverified, missing).
    pub kernel_results: IntCounterVec,
    /// 1 while the controller probe's last `scontrol ping` was answered.
    pub slurmctld_up: prometheus::IntGauge,
    /// Seconds from a job's submission through the bridge to its start.
    pub queue_wait: prometheus::Histogram,
    /// Pending jobs whose priority the ordering policy set, by policy.
    pub priority_updates: IntCounterVec,
    /// Attempts the bridge retried, by failure class.
    pub retries: IntCounterVec,
    /// Jobs that ended failed (after any retries), by failure class.
    pub job_failures: IntCounterVec,
    /// Jobs whose health reports a node still owes, by node (see
    /// `store::health::missing_reports`); nodes drop out when they catch up.
    pub health_missing: IntGaugeVec,
    /// Nodes that owe health reports (the stale nodes of the alert).
    pub health_stale_nodes: prometheus::IntGauge,
    /// Nodes the bridge drained after repeated infrastructure failures.
    pub nodes_drained: prometheus::IntCounter,
    /// Jobs routed to a partition, by policy and partition.
    pub routed_jobs: IntCounterVec,
    /// Discovery + JWKS fetches of the OpenID providers, by issuer and
    /// outcome (ok, failed).
    pub oidc_key_fetches: IntCounterVec,
    /// The cluster in prometheus-slurm-exporter's names, set by the poller.
    pub cluster: std::sync::Arc<crate::cluster_metrics::ClusterMetrics>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let latency = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let http_requests = HistogramVec::new(
            HistogramOpts::new("bridge_http_request_duration_seconds", "HTTP requests by route, method and status")
                .buckets(latency.clone()),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let sbatch_duration = HistogramVec::new(
            HistogramOpts::new("bridge_sbatch_duration_seconds", "sbatch calls by outcome").buckets(latency.clone()),
            &["outcome"],
        )
        .expect("valid metric");
        let poll_duration = HistogramVec::new(
            HistogramOpts::new("bridge_poll_duration_seconds", "SLURM poll rounds by outcome").buckets(latency),
            &["outcome"],
        )
        .expect("valid metric");
        let poll_last_success =
            Gauge::new("bridge_poll_last_success_timestamp_seconds", "Unix time of the last successful SLURM poll")
                .expect("valid metric");
        let jobs_by_state = IntGaugeVec::new(Opts::new("bridge_jobs", "Jobs in the history by state"), &["state"])
            .expect("valid metric");
        let job_transitions = IntCounterVec::new(
            Opts::new("bridge_job_transitions_total", "Job state transitions recorded, by new state"),
            &["state"],
        )
        .expect("valid metric");
        let nodes_by_state =
            GaugeVec::new(Opts::new("bridge_nodes", "Cluster nodes by state"), &["state"]).expect("valid metric");
        let health_reports = IntCounterVec::new(
            Opts::new("bridge_health_reports_total", "Health records (and refused batches) by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let health_delivery_lag = prometheus::Histogram::with_opts(
            HistogramOpts::new("bridge_health_delivery_lag_seconds", "From a health record's making to its arrival")
                .buckets(vec![0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 86400.0]),
        )
        .expect("valid metric");
        let health_tasks = IntCounterVec::new(
            Opts::new("bridge_health_tasks_total", "Reported tasks by outcome (ok, exit_nonzero, signal)"),
            &["outcome"],
        )
        .expect("valid metric");
        let health_oom_kills =
            prometheus::IntCounter::new("bridge_health_oom_kills_total", "Tasks reported OOM-killed")
                .expect("valid metric");
        let kernel_results = IntCounterVec::new(
            Opts::new("bridge_kernel_results_total", "Kernel job results collated, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let slurmctld_up =
            prometheus::IntGauge::new("bridge_slurmctld_up", "1 while slurmctld answers the controller probe")
                .expect("valid metric");
        let queue_wait = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "bridge_job_queue_wait_seconds",
                "From submission through the bridge to the job's start",
            )
            .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0]),
        )
        .expect("valid metric");
        let priority_updates = IntCounterVec::new(
            Opts::new("bridge_priority_updates_total", "Pending jobs re-prioritised by the ordering policy"),
            &["policy"],
        )
        .expect("valid metric");
        let routed_jobs = IntCounterVec::new(
            Opts::new("bridge_routed_jobs_total", "Jobs the routing policy sent to a partition"),
            &["policy", "partition"],
        )
        .expect("valid metric");
        let retries = IntCounterVec::new(
            Opts::new("bridge_job_retries_total", "Failed attempts the bridge submitted again, by failure class"),
            &["class"],
        )
        .expect("valid metric");
        let job_failures = IntCounterVec::new(
            Opts::new("bridge_job_failures_total", "Jobs that ended failed (after any retries), by failure class"),
            &["class"],
        )
        .expect("valid metric");
        // Every class from zero, so rates and increases start at the first
        // failure rather than the second.
        for class in crate::failure::FailureClass::ALL {
            job_failures.with_label_values(&[class.as_str()]);
        }
        let health_missing = IntGaugeVec::new(
            Opts::new(
                "bridge_health_reports_missing",
                "Jobs that asked for health reports and ended without a node record from this node",
            ),
            &["node"],
        )
        .expect("valid metric");
        let health_stale_nodes = prometheus::IntGauge::new(
            "bridge_health_stale_nodes",
            "Nodes that owe health reports for jobs that ended more than --health-stale-after ago",
        )
        .expect("valid metric");
        let nodes_drained = prometheus::IntCounter::new(
            "bridge_nodes_drained_total",
            "Nodes the bridge drained after repeated infrastructure failures",
        )
        .expect("valid metric");
        let oidc_key_fetches = IntCounterVec::new(
            Opts::new(
                "bridge_oidc_key_fetches_total",
                "Fetches of an OpenID provider's discovery document and JWKS, by issuer and outcome",
            ),
            &["issuer", "outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(retries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(oidc_key_fetches.clone()),
            Box::new(job_failures.clone()),
            Box::new(health_missing.clone()),
            Box::new(health_stale_nodes.clone()),
            Box::new(nodes_drained.clone()),
            Box::new(priority_updates.clone()),
            Box::new(routed_jobs.clone()),
            Box::new(kernel_results.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(slurmctld_up.clone()),
            Box::new(queue_wait.clone()),
            Box::new(health_reports.clone()),
            Box::new(health_delivery_lag.clone()),
            Box::new(health_tasks.clone()),
            Box::new(health_oom_kills.clone()),
            Box::new(http_requests.clone()),
            Box::new(sbatch_duration.clone()),
            Box::new(poll_duration.clone()),
            Box::new(poll_last_success.clone()),
            Box::new(jobs_by_state.clone()),
            Box::new(job_transitions.clone()),
            Box::new(nodes_by_state.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        let cluster = std::sync::Arc::new(crate::cluster_metrics::ClusterMetrics::register(&registry));
        Metrics {
            oidc_key_fetches,
            retries,
            job_failures,
            health_missing,
            health_stale_nodes,
            nodes_drained,
            priority_updates,
            routed_jobs,
            slurmctld_up,
            queue_wait,
            cluster,
            registry,
            http_requests,
            sbatch_duration,
            poll_duration,
            poll_last_success,
            jobs_by_state,
            job_transitions,
            nodes_by_state,
            health_reports,
            health_delivery_lag,
            health_tasks,
            health_oom_kills,
            kernel_results,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
