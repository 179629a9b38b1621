//! Parsers for SLURM's command output. Fields are `|`-separated, and the
//! formats put no free text (job names, comments) before the last field, so
//! a `|` inside a name cannot shift the columns.

use super::{Controller, SlurmError};
use crate::job_state::JobState;

/// `squeue -O` fields the poller reads: raw job id, the array's id (the id
/// sbatch returned), state, reason, start and end (epoch seconds under
/// SLURM_TIME_FORMAT=%s), the owner, its CPUs, partition, account and
/// nodes.
pub const SQUEUE_FORMAT: &str =
    "JobID:|,ArrayJobID:|,State:|,Reason:|,StartTime:|,EndTime:|,UserName:|,NumCPUs:|,Partition:|,Account:|,NodeList:|,TimeLimit:|,PriorityLong:|";

/// `sinfo -N -O` fields: node, state, CPUs (allocated/idle/other/total),
/// memory MB, free memory MB, load, features, and the free-text reason last.
pub const SINFO_FORMAT: &str = "NodeList:|,StateLong:|,CPUsState:|,Memory:|,FreeMem:|,CPUsLoad:|,Features:|,Reason:|";

/// `scontrol ping` prints one line per controller, e.g.
/// `Slurmctld(primary) at vm is UP`; the primary must be UP.
pub fn ping(stdout: &str) -> Result<Controller, SlurmError> {
    let primary = stdout.lines().map(str::trim).find(|l| l.starts_with("Slurmctld(primary)"));
    match primary {
        Some(line) if line.ends_with(" is UP") => Ok(Controller { summary: line.to_owned() }),
        Some(line) => Err(SlurmError::ControllerDown(line.to_owned())),
        None => Err(SlurmError::ControllerDown(format!("unexpected scontrol ping output: {stdout:?}"))),
    }
}

/// A duration from `scontrol show config` (`MinJobAge = 60 sec`), in seconds.
pub fn config_seconds(stdout: &str, key: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// A key's whole value in `scontrol show config` (`Key = value`), or None.
pub fn config_value(stdout: &str, key: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let (name, value) = line.split_once('=')?;
        (name.trim() == key).then(|| value.trim().to_owned()).filter(|v| !v.is_empty() && v != "(null)")
    })
}

/// What a machine needs to join as a dynamic node, from `scontrol show
/// config`: where slurmctld is (`--conf-server`), and the paths slurmd
/// uses, with `%n` in them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinConfig {
    /// `host:port`, the first SlurmctldHost's address if it names one.
    pub conf_server: String,
    /// The munge socket slurm's AuthInfo names, if any.
    pub munge_socket: Option<String>,
    pub slurmd_spool_dir: String,
    pub slurmd_log_file: Option<String>,
    pub slurmd_pid_file: Option<String>,
}

pub fn join_config(stdout: &str) -> Option<JoinConfig> {
    // `SlurmctldHost[0] = name(addr)` or `= name`.
    let host = config_value(stdout, "SlurmctldHost[0]")?;
    let host = match host.split_once('(') {
        Some((_, addr)) => addr.trim_end_matches(')').to_owned(),
        None => host,
    };
    let port = config_value(stdout, "SlurmctldPort")?;
    // A port range ("6817-6820"): the first.
    let port = port.split('-').next()?.to_owned();
    let munge_socket = config_value(stdout, "AuthInfo")
        .and_then(|info| info.split(',').find_map(|part| part.trim().strip_prefix("socket=").map(str::to_owned)));
    Some(JoinConfig {
        conf_server: format!("{host}:{port}"),
        munge_socket,
        slurmd_spool_dir: config_value(stdout, "SlurmdSpoolDir")?,
        slurmd_log_file: config_value(stdout, "SlurmdLogFile"),
        slurmd_pid_file: config_value(stdout, "SlurmdPidFile"),
    })
}

/// The scheduler's figures from `sdiag`, as prometheus-slurm-exporter reads
/// them: times in microseconds, counts since slurmctld started (backfill:
/// also since the last stats cycle).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerStats {
    pub threads: Option<i64>,
    pub queue_size: Option<i64>,
    pub dbd_queue_size: Option<i64>,
    pub last_cycle: Option<i64>,
    pub mean_cycle: Option<i64>,
    pub cycles_per_minute: Option<i64>,
    pub backfill_last_cycle: Option<i64>,
    pub backfill_mean_cycle: Option<i64>,
    pub backfill_depth_mean: Option<i64>,
    pub backfilled_jobs_since_start: Option<i64>,
    pub backfilled_jobs_since_cycle: Option<i64>,
    pub backfilled_heterogeneous: Option<i64>,
    /// "Remote Procedure Call statistics by message type".
    pub rpc_by_type: Vec<RpcStat>,
    /// "Remote Procedure Call statistics by user".
    pub rpc_by_user: Vec<RpcStat>,
}

/// One line of sdiag's RPC statistics (`REQUEST_PING ( 1008) count:14
/// ave_time:285 total_time:3997`; times in microseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct RpcStat {
    /// The message type or the user.
    pub name: String,
    pub count: i64,
    pub ave_time: i64,
    pub total_time: i64,
}

impl RpcStat {
    fn parse(line: &str) -> Option<RpcStat> {
        let (name, rest) = line.split_once('(')?;
        let (_, figures) = rest.split_once(')')?;
        let figure = |key: &str| {
            figures.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix(':')?.parse::<i64>().ok())
        };
        let name = name.trim();
        (!name.is_empty()).then_some(())?;
        Some(RpcStat {
            name: name.to_owned(),
            count: figure("count")?,
            ave_time: figure("ave_time")?,
            total_time: figure("total_time")?,
        })
    }
}

/// Which part of sdiag's answer a line is in.
#[derive(Clone, Copy, PartialEq)]
enum SdiagSection {
    Main,
    Backfill,
    RpcByType,
    RpcByUser,
    Other,
}

/// Reads `sdiag`'s `Name: value` lines, by section (the main scheduler's
/// and the backfill scheduler's share names such as `Last cycle`).
pub fn sdiag(stdout: &str) -> SchedulerStats {
    use SdiagSection::{Backfill, Main, Other, RpcByType, RpcByUser};
    let mut stats = SchedulerStats::default();
    let mut section = Main;
    for line in stdout.lines() {
        let line = line.trim();
        if line.starts_with("Main schedule statistics") {
            section = Main;
        } else if line.starts_with("Backfilling stats") {
            section = Backfill;
        } else if line.starts_with("Remote Procedure Call statistics by message type") {
            section = RpcByType;
            continue;
        } else if line.starts_with("Remote Procedure Call statistics by user") {
            section = RpcByUser;
            continue;
        } else if line.starts_with("Latency for")
            || line.starts_with("Remote Procedure Call")
            || line.starts_with("Pending RPC")
        {
            section = Other;
        }
        match section {
            RpcByType => stats.rpc_by_type.extend(RpcStat::parse(line)),
            RpcByUser => stats.rpc_by_user.extend(RpcStat::parse(line)),
            Main | Backfill | Other => {}
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let Some(value) = value.split_whitespace().next().and_then(|v| v.parse::<i64>().ok()) else { continue };
        let backfill = section == Backfill;
        let slot = match (backfill, name.trim()) {
            (_, "Server thread count") => &mut stats.threads,
            (_, "Agent queue size") => &mut stats.queue_size,
            (_, "DBD Agent queue size") => &mut stats.dbd_queue_size,
            (false, "Last cycle") => &mut stats.last_cycle,
            (false, "Mean cycle") => &mut stats.mean_cycle,
            (false, "Cycles per minute") => &mut stats.cycles_per_minute,
            (true, "Last cycle") => &mut stats.backfill_last_cycle,
            (true, "Mean cycle") => &mut stats.backfill_mean_cycle,
            (true, "Depth Mean") => &mut stats.backfill_depth_mean,
            (true, "Total backfilled jobs (since last slurm start)") => &mut stats.backfilled_jobs_since_start,
            (true, "Total backfilled jobs (since last stats cycle start)") => &mut stats.backfilled_jobs_since_cycle,
            (true, "Total backfilled heterogeneous job components") => &mut stats.backfilled_heterogeneous,
            _ => continue,
        };
        *slot = Some(value);
    }
    stats
}

/// `sbatch --parsable` prints `id` or `id;cluster`.
pub fn parsable_job_id(stdout: &str) -> Option<i64> {
    stdout.trim().split(';').next()?.parse().ok().filter(|id| *id > 0)
}

/// The queue as one poller round reads it, shared without copies.
pub type Queue = std::sync::Arc<Vec<QueueEntry>>;

/// One line of `squeue -O SQUEUE_FORMAT`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub job_id: i64,
    /// The id sbatch returned: the array's id for array tasks, else `job_id`.
    pub array_job_id: i64,
    pub state: JobState,
    pub reason: Option<String>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// The Unix account the job runs as.
    pub user: String,
    /// CPUs allocated (or, pending, requested).
    pub cpus: u32,
    /// The partition it runs in (pending: every partition it may use, comma-separated).
    pub partition: String,
    pub account: Option<String>,
    pub nodes: Option<String>,
    /// Requested time limit in minutes; None is unlimited.
    pub time_limit: Option<u32>,
    /// The job's priority in SLURM.
    pub priority: u32,
}

fn time(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|t| *t > 0.0)
}

pub(crate) fn non_empty(field: &str) -> Option<String> {
    match field.trim() {
        "" | "None" | "none" | "(null)" | "N/A" => None,
        f => Some(f.to_owned()),
    }
}

pub fn squeue(stdout: &str) -> Result<Vec<QueueEntry>, SlurmError> {
    let mut entries = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('|').collect();
        let unexpected = || SlurmError::Unexpected { command: "squeue", output: line.to_owned() };
        if fields.len() < 13 {
            return Err(unexpected());
        }
        let job_id = fields[0].trim().parse().map_err(|_| unexpected())?;
        entries.push(QueueEntry {
            job_id,
            array_job_id: fields[1].trim().parse().unwrap_or(job_id),
            // A state this SLURM prints that the bridge does not know is an
            // error of the whole poll, not a guess.
            state: fields[2].trim().parse().map_err(|_| unexpected())?,
            reason: non_empty(fields[3]),
            start: time(fields[4].trim()),
            end: time(fields[5].trim()),
            user: fields[6].trim().to_owned(),
            cpus: fields[7].trim().parse().unwrap_or(0),
            partition: fields[8].trim().to_owned(),
            account: non_empty(fields[9]),
            nodes: non_empty(fields[10]),
            time_limit: crate::slurm::job::Minutes::parse(fields[11].trim()).map(|m| m.0),
            priority: fields[12].trim().parse().unwrap_or(0),
        });
    }
    Ok(entries)
}

/// `JobID|Comment|` lines; the comment may itself contain `|`.
pub fn comments(stdout: &str) -> Vec<(i64, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (id, rest) = line.split_once('|')?;
            let comment = rest.strip_suffix('|').unwrap_or(rest);
            Some((id.trim().parse().ok()?, comment.trim().to_owned()))
        })
        .collect()
}

/// The fields of `scontrol show job -o` the poller needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDetail {
    pub state: Option<JobState>,
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub nodes: Option<String>,
}

/// Reads `Key=Value` words. Values of the fields read here hold no spaces;
/// free-text fields the bridge did not validate come after them or are
/// matched only as whole ` Key=` words.
pub fn show_job(stdout: &str) -> JobDetail {
    let first = stdout.lines().next().unwrap_or("");
    let field = |key: &str| -> Option<&str> {
        let needle = format!("{key}=");
        let start = if first.starts_with(&needle) {
            needle.len()
        } else {
            first.find(&format!(" {needle}"))? + needle.len() + 1
        };
        first[start..].split(' ').next()
    };
    let (exit_code, signal) = match field("ExitCode").and_then(|v| v.split_once(':')) {
        Some((code, signal)) => (code.parse().ok(), signal.parse().ok()),
        None => (None, None),
    };
    JobDetail {
        state: field("JobState").and_then(|s| s.parse().ok()),
        reason: field("Reason").and_then(non_empty),
        exit_code,
        signal,
        start: field("StartTime").and_then(time),
        end: field("EndTime").and_then(time),
        nodes: field("NodeList").and_then(non_empty),
    }
}

/// One node from `sinfo -N -O SINFO_FORMAT`.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub state: String,
    pub cpus_total: u32,
    pub cpus_allocated: u32,
    pub cpus_idle: u32,
    pub cpus_other: u32,
    pub memory_mb: u64,
    pub free_memory_mb: Option<u64>,
    pub load: Option<f64>,
    /// Node features (e.g. `spare`).
    pub features: Vec<String>,
    pub reason: Option<String>,
}

pub fn sinfo(stdout: &str) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> = Vec::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.splitn(8, '|').collect();
        if fields.len() < 8 {
            continue;
        }
        let cpus: Vec<u32> = fields[2].trim().split('/').map(|n| n.parse().unwrap_or(0)).collect();
        let reason = fields[7].strip_suffix('|').unwrap_or(fields[7]);
        let node = NodeInfo {
            name: fields[0].trim().to_owned(),
            state: fields[1].trim().to_owned(),
            cpus_allocated: cpus.first().copied().unwrap_or(0),
            cpus_idle: cpus.get(1).copied().unwrap_or(0),
            cpus_other: cpus.get(2).copied().unwrap_or(0),
            cpus_total: cpus.get(3).copied().unwrap_or(0),
            memory_mb: fields[3].trim().parse().unwrap_or(0),
            free_memory_mb: fields[4].trim().parse().ok(),
            load: fields[5].trim().parse().ok(),
            features: match non_empty(fields[6]) {
                Some(list) => list.split(',').map(str::to_owned).collect(),
                None => Vec::new(),
            },
            reason: non_empty(reason),
        };
        // A node in several partitions is listed once per partition.
        if !nodes.iter().any(|n| n.name == node.name) {
            nodes.push(node);
        }
    }
    nodes
}

/// `scontrol show partition -o`: one partition per line, `Key=Value` pairs.
pub fn partitions(stdout: &str) -> Vec<Partition> {
    stdout
        .lines()
        .filter(|l| l.starts_with("PartitionName="))
        .map(|line| {
            let fields: std::collections::HashMap<&str, &str> =
                line.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
            let get = |k: &str| fields.get(k).copied().unwrap_or("");
            let limit = |v: &str| v.parse::<u32>().ok();
            Partition {
                name: get("PartitionName").to_owned(),
                nodes: match get("Nodes") {
                    "" | "(null)" => Vec::new(),
                    list => super::hostlist::expand(list),
                },
                up: get("State") == "UP",
                default: get("Default") == "YES",
                hidden: get("Hidden") == "YES",
                root_only: get("RootOnly") == "YES",
                allow_groups: match get("AllowGroups") {
                    "ALL" | "" => None,
                    groups => Some(groups.split(',').map(str::to_owned).collect()),
                },
                max_time: match get("MaxTime") {
                    "UNLIMITED" | "" => None,
                    t => super::job::Minutes::parse(t).map(|m| m.0),
                },
                max_nodes: limit(get("MaxNodes")),
                total_cpus: limit(get("TotalCPUs")).unwrap_or(0),
            }
        })
        .collect()
}

/// One partition as scontrol prints it. `G` is how its allowed groups are
/// named: by name as scontrol prints them (`String`), or by gid once
/// resolved (`u32`, what routing compares with a user's groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition<G = String> {
    pub name: String,
    /// Node names, expanded.
    pub nodes: Vec<String>,
    pub up: bool,
    pub default: bool,
    pub hidden: bool,
    pub root_only: bool,
    /// None: every group (`AllowGroups=ALL`).
    pub allow_groups: Option<Vec<G>>,
    /// Minutes; None is unlimited.
    pub max_time: Option<u32>,
    pub max_nodes: Option<u32>,
    pub total_cpus: u32,
}

impl<G> Partition<G> {
    /// The same partition with its groups named another way; a group `f`
    /// cannot resolve is left out (it admits nobody this bridge knows).
    pub fn map_groups<H>(self, f: impl FnMut(&G) -> Option<H>) -> Partition<H> {
        Partition {
            allow_groups: self.allow_groups.map(|groups| groups.iter().filter_map(f).collect()),
            name: self.name,
            nodes: self.nodes,
            up: self.up,
            default: self.default,
            hidden: self.hidden,
            root_only: self.root_only,
            max_time: self.max_time,
            max_nodes: self.max_nodes,
            total_cpus: self.total_cpus,
        }
    }
}

/// The start time in a will-run line ("Job 12 to start at
/// 2026-12-03T18:00:00 using 2 processors on nodes c1 in partition debug"):
/// local ISO time, which sorts as text.
pub fn will_run_start(line: &str) -> Option<&str> {
    let rest = line.split_once(" to start at ")?.1;
    rest.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_node_learns_the_controller_and_slurmds_paths() {
        let text =
            "AuthInfo                = socket=/st/munge/run/munge.socket\nSlurmctldHost[0]        = vm(10.199.0.1)\n\
                    SlurmctldPort           = 6817\nSlurmdLogFile           = /st/log/slurmd-%n.log\n\
                    SlurmdPidFile           = /st/run/slurmd-%n.pid\nSlurmdSpoolDir          = /st/nodes/%n/spool\n";
        let c = join_config(text).unwrap();
        assert_eq!(c.conf_server, "10.199.0.1:6817");
        assert_eq!(c.munge_socket.as_deref(), Some("/st/munge/run/munge.socket"));
        assert_eq!(c.slurmd_spool_dir, "/st/nodes/%n/spool");
        let plain = text.replace("vm(10.199.0.1)", "head").replace("= 6817", "= 6817-6820");
        assert_eq!(join_config(&plain).unwrap().conf_server, "head:6817");
        assert!(join_config("SlurmctldPort = 1\n").is_none());
    }

    #[test]
    fn ping_output_is_parsed() {
        assert_eq!(ping("Slurmctld(primary) at vm is UP\n").unwrap().summary, "Slurmctld(primary) at vm is UP");
        assert!(matches!(ping("Slurmctld(primary) at vm is DOWN"), Err(SlurmError::ControllerDown(_))));
        assert!(matches!(ping(""), Err(SlurmError::ControllerDown(_))));
    }

    #[test]
    fn squeue_lines_are_parsed() {
        let out = "23|21|RUNNING|None|1795851072|NONE|alice|2|debug|(null)|c1|5:00|4294901000|\n\
                   22|22|PENDING|Priority|N/A|N/A|bob|1|debug|lab||UNLIMITED|12|\n";
        let entries = squeue(out).unwrap();
        assert_eq!(entries[0].array_job_id, 21);
        assert_eq!(entries[0].start, Some(1795851072.0));
        assert_eq!(entries[0].end, None);
        assert_eq!(entries[0].reason, None);
        assert_eq!(entries[1].reason.as_deref(), Some("Priority"));
        assert_eq!(entries[1].nodes, None);
        assert_eq!((entries[0].user.as_str(), entries[0].cpus), ("alice", 2));
        assert_eq!((entries[0].partition.as_str(), entries[0].account.as_deref()), ("debug", None));
        assert_eq!(entries[1].account.as_deref(), Some("lab"));
        assert_eq!((entries[0].time_limit, entries[0].priority), (Some(5), 4294901000));
        assert_eq!((entries[1].time_limit, entries[1].priority), (None, 12));
        assert!(squeue("garbage\n").is_err());
        assert!(squeue("23|21|BOGUS|None|N/A|N/A|alice|1|debug|(null)||1|1|\n").is_err());
    }

    #[test]
    fn partitions_and_will_run_lines_are_parsed() {
        let out = "PartitionName=short AllowGroups=lab,ops AllowAccounts=ALL Default=YES Hidden=NO MaxNodes=UNLIMITED \
                   MaxTime=01:00:00 Nodes=c[1-2] RootOnly=NO State=UP TotalCPUs=4 TotalNodes=2\n\
                   PartitionName=long AllowGroups=ALL Default=NO Hidden=NO MaxNodes=1 MaxTime=UNLIMITED Nodes=c3 \
                   RootOnly=NO State=DOWN TotalCPUs=2\n";
        let parts = partitions(out);
        assert_eq!(parts[0].name, "short");
        assert_eq!(parts[0].nodes, ["c1", "c2"]);
        assert_eq!(parts[0].allow_groups.as_deref(), Some(&["lab".to_owned(), "ops".to_owned()][..]));
        assert_eq!(
            (parts[0].max_time, parts[0].max_nodes, parts[0].up, parts[0].default),
            (Some(60), None, true, true)
        );
        assert_eq!(
            (parts[1].max_time, parts[1].max_nodes, parts[1].up, parts[1].allow_groups.clone()),
            (None, Some(1), false, None)
        );
        let line = "Job 12 to start at 2026-12-03T18:00:00 using 2 processors on nodes c1 in partition debug";
        assert_eq!(will_run_start(line), Some("2026-12-03T18:00:00"));
        assert_eq!(will_run_start("nothing"), None);
    }

    #[test]
    fn comments_keep_pipes() {
        assert_eq!(comments("17|odyssey:abc|x|\n19|(null)|\n"), [(17, "odyssey:abc|x".into()), (19, "(null)".into())]);
    }

    #[test]
    fn show_job_reads_exit_code_and_signal() {
        let out = "JobId=18 JobName=wrap UserId=root(0) JobState=FAILED Reason=JobLaunchFailure Dependency=(null) \
                   ExitCode=0:9 StartTime=1795850864 EndTime=1795850865 NodeList=c1 Command=(null)\n";
        let detail = show_job(out);
        assert_eq!(detail.state, Some(JobState::Failed));
        assert_eq!(detail.reason.as_deref(), Some("JobLaunchFailure"));
        assert_eq!((detail.exit_code, detail.signal), (Some(0), Some(9)));
        assert_eq!(detail.nodes.as_deref(), Some("c1"));
        // A job name cannot fake a field: only whole " Key=" words match.
        let spoof = show_job("JobId=1 JobName=xExitCode=7:0 JobState=COMPLETED ExitCode=0:0\n");
        assert_eq!(spoof.exit_code, Some(0));
    }

    #[test]
    fn sinfo_lines_are_parsed() {
        let nodes = sinfo(
            "c1|idle|0/2/0/2|7231|22176|0.84|(null)|none|\nc2|drained|0/0/2/2|7231|N/A|0.10|spare,big|maint | now|\n",
        );
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0].features.is_empty());
        assert_eq!(nodes[1].features, ["spare", "big"]);
        assert_eq!(nodes[0].cpus_total, 2);
        assert_eq!(nodes[0].reason, None);
        assert_eq!(nodes[1].reason.as_deref(), Some("maint | now"));
        assert_eq!(nodes[1].free_memory_mb, None);
    }

    #[test]
    fn sdiag_sections_keep_their_cycles_apart() {
        let out = "Server thread count:  3\nAgent queue size:     0\nDBD Agent queue size: 2\n\
                   Main schedule statistics (microseconds):\n\tLast cycle:   14\n\tMean cycle:   547\n\
                   \tCycles per minute: 4\n\nBackfilling stats\n\
                   \tTotal backfilled jobs (since last slurm start): 5\n\
                   \tTotal backfilled jobs (since last stats cycle start): 1\n\
                   \tTotal backfilled heterogeneous job components: 0\n\tLast cycle: 70\n\tMean cycle: 80\n\
                   \tDepth Mean: 9\n\
                   Remote Procedure Call statistics by message type\n\
                   \tREQUEST_PING                            ( 1008) count:14     ave_time:285    total_time:3997\n\
                   \tREQUEST_JOB_INFO                        ( 2003) count:18     ave_time:419    total_time:7553\n\n\
                   Remote Procedure Call statistics by user\n\
                   \talice           (    2001) count:4      ave_time:1307   total_time:5231\n\n\
                   Pending RPC statistics\n\tNo pending RPCs\n";
        let stats = sdiag(out);
        assert_eq!(stats.rpc_by_type.len(), 2);
        assert_eq!(
            stats.rpc_by_type[0],
            RpcStat { name: "REQUEST_PING".into(), count: 14, ave_time: 285, total_time: 3997 }
        );
        assert_eq!(stats.rpc_by_user, [RpcStat { name: "alice".into(), count: 4, ave_time: 1307, total_time: 5231 }]);
        assert_eq!((stats.threads, stats.queue_size, stats.dbd_queue_size), (Some(3), Some(0), Some(2)));
        assert_eq!((stats.last_cycle, stats.mean_cycle, stats.cycles_per_minute), (Some(14), Some(547), Some(4)));
        assert_eq!((stats.backfill_last_cycle, stats.backfill_mean_cycle), (Some(70), Some(80)));
        assert_eq!(stats.backfill_depth_mean, Some(9));
        assert_eq!((stats.backfilled_jobs_since_start, stats.backfilled_jobs_since_cycle), (Some(5), Some(1)));
        assert_eq!(sdiag("garbage"), SchedulerStats::default());
    }

    #[test]
    fn config_durations() {
        let out = "KillWait                = 5 sec\nMinJobAge               = 60 sec\nMpiDefault = pmix\n";
        assert_eq!(config_seconds(out, "MinJobAge"), Some(60));
        assert_eq!(config_seconds(out, "MpiDefault"), None);
        assert_eq!(config_seconds(out, "Missing"), None);
    }

    #[test]
    fn parsable_ids() {
        assert_eq!(parsable_job_id("42\n"), Some(42));
        assert_eq!(parsable_job_id("42;odyssey\n"), Some(42));
        assert_eq!(parsable_job_id("Submitted batch job 42"), None);
    }

    /// Fuzzing (bolero): SLURM's output is parsed without panicking,
    /// whatever bytes a job name or a broken controller puts into it.
    #[test]
    fn fuzz_parsers() {
        bolero::check!().with_test_time(std::time::Duration::from_secs(8)).with_type::<String>().for_each(|text| {
            let _ = squeue(text);
            let _ = comments(text);
            let _ = show_job(text);
            let _ = sinfo(text);
            let _ = ping(text);
            let _ = sdiag(text);
            let _ = parsable_job_id(text);
        });
    }
}
