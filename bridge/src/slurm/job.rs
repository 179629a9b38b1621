//! A batch job as SLURM gets it, typed: what `jobspec` validated, in SLURM's
//! units. Both submission paths read this one value: `sbatch` renders it as
//! `--name=value` arguments, `libslurm` as a `job_desc_msg_t`. Neither
//! parses anything a user wrote.

use std::collections::BTreeMap;

use super::Identity;

/// Mebibytes, SLURM's memory unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiB(pub u64);

impl MiB {
    /// SLURM's memory syntax as `jobspec` accepts it: digits with an
    /// optional K, M, G or T suffix, M when there is none; K rounds up (as
    /// sbatch's `str_to_mbytes`). `None` for anything else or on overflow.
    pub fn parse(value: &str) -> Option<MiB> {
        let (digits, scale) = match value.as_bytes().last()? {
            b'K' => (&value[..value.len() - 1], 0),
            b'M' => (&value[..value.len() - 1], 1),
            b'G' => (&value[..value.len() - 1], 1024),
            b'T' => (&value[..value.len() - 1], 1024 * 1024),
            _ => (value, 1),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        let mib = if scale == 0 { n.div_ceil(1024) } else { n.checked_mul(scale)? };
        // The top bit is SLURM's per-CPU flag.
        (mib < 1 << 63).then_some(MiB(mib))
    }
}

/// Memory per node or per allocated CPU (`--mem`, `--mem-per-cpu`; SLURM
/// takes one or the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    PerNode(MiB),
    PerCpu(MiB),
}

/// A time limit in whole minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minutes(pub u32);

impl Minutes {
    /// SLURM's time syntax: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`;
    /// seconds round up to the next minute (as sbatch's `time_str2mins`).
    pub fn parse(value: &str) -> Option<Minutes> {
        let number = |p: &str| -> Option<u64> {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok()).flatten()
        };
        let (days, rest) = match value.split_once('-') {
            Some((d, rest)) => (Some(number(d)?), rest),
            None => (None, value),
        };
        let parts = rest.split(':').map(number).collect::<Option<Vec<u64>>>()?;
        let seconds = match (days, parts.as_slice()) {
            (None, [m]) => m * 60,
            (None, [m, s]) => m * 60 + s,
            (None, [h, m, s]) | (Some(_), [h, m, s]) => h * 3600 + m * 60 + s + days.unwrap_or(0) * 86400,
            (Some(d), [h]) => d * 86400 + h * 3600,
            (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
            _ => return None,
        };
        u32::try_from(seconds.div_ceil(60)).ok().map(Minutes)
    }
}

/// One of SLURM's mail events (sbatch(1), `--mail-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailType {
    None,
    Begin,
    End,
    Fail,
    Requeue,
    All,
    InvalidDepend,
    StageOut,
    TimeLimit,
    TimeLimit90,
    TimeLimit80,
    TimeLimit50,
    ArrayTasks,
}

impl MailType {
    pub const ALL: [MailType; 13] = [
        MailType::None,
        MailType::Begin,
        MailType::End,
        MailType::Fail,
        MailType::Requeue,
        MailType::All,
        MailType::InvalidDepend,
        MailType::StageOut,
        MailType::TimeLimit,
        MailType::TimeLimit90,
        MailType::TimeLimit80,
        MailType::TimeLimit50,
        MailType::ArrayTasks,
    ];

    /// The name sbatch takes.
    pub fn as_str(self) -> &'static str {
        match self {
            MailType::None => "NONE",
            MailType::Begin => "BEGIN",
            MailType::End => "END",
            MailType::Fail => "FAIL",
            MailType::Requeue => "REQUEUE",
            MailType::All => "ALL",
            MailType::InvalidDepend => "INVALID_DEPEND",
            MailType::StageOut => "STAGE_OUT",
            MailType::TimeLimit => "TIME_LIMIT",
            MailType::TimeLimit90 => "TIME_LIMIT_90",
            MailType::TimeLimit80 => "TIME_LIMIT_80",
            MailType::TimeLimit50 => "TIME_LIMIT_50",
            MailType::ArrayTasks => "ARRAY_TASKS",
        }
    }

    pub fn from_name(name: &str) -> Option<MailType> {
        MailType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// The SPANK plugin's `--health-report` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    Off,
    Summary,
    Full,
}

impl HealthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthMode::Off => "off",
            HealthMode::Summary => "summary",
            HealthMode::Full => "full",
        }
    }
}

/// What the job asks of SLURM. Strings here passed `jobspec`'s checks (one
/// line, SLURM's characters, never starting with `-`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobOptions {
    pub name: String,
    pub partition: Option<String>,
    pub nodes: Option<u32>,
    pub ntasks: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub cpus_per_task: Option<u32>,
    pub memory: Option<Memory>,
    pub exclusive: bool,
    pub constraint: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Generic resources as sbatch's `--gres` takes them, e.g. `gpu:2`.
    pub gres: Option<String>,
    pub mail_types: Vec<MailType>,
    pub mail_user: Option<String>,
    pub time_limit: Option<Minutes>,
    /// SLURM's array spec, e.g. `1-10%2`.
    pub array: Option<String>,
    /// Absolute, SLURM's %-patterns still in.
    pub stdout: String,
    pub stderr: String,
    pub health_report: Option<HealthMode>,
    /// SLURM ids the job waits for (`afterok`).
    pub after_ok: Vec<i64>,
    /// SLURM's comment: the bridge's tag.
    pub comment: Option<String>,
    /// Nodes this attempt must not use (a retry after their failure).
    pub exclude: Vec<String>,
    /// Node features SLURM should prefer, not require (`--prefer`): a
    /// retry prefers the spares.
    pub prefer: Option<String>,
}

impl JobOptions {
    /// The `afterok:<id>[:<id>...]` dependency, if any.
    pub fn dependency(&self) -> Option<String> {
        (!self.after_ok.is_empty())
            .then(|| format!("afterok:{}", self.after_ok.iter().map(i64::to_string).collect::<Vec<_>>().join(":")))
    }

    /// sbatch's arguments, each `--name=value` (or a bare `--flag`), in one
    /// fixed order.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut args = vec![format!("--job-name={}", self.name)];
        let mut push = |option: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(format!("--{option}={value}"));
            }
        };
        push("partition", self.partition.clone());
        push("nodes", self.nodes.map(|n| n.to_string()));
        push("ntasks", self.ntasks.map(|n| n.to_string()));
        push("cpus-per-task", self.cpus_per_task.map(|n| n.to_string()));
        push("ntasks-per-node", self.ntasks_per_node.map(|n| n.to_string()));
        match self.memory {
            // A bare number is mebibytes to sbatch.
            Some(Memory::PerNode(MiB(m))) => push("mem", Some(m.to_string())),
            Some(Memory::PerCpu(MiB(m))) => push("mem-per-cpu", Some(m.to_string())),
            None => {}
        }
        push("constraint", self.constraint.clone());
        push("account", self.account.clone());
        push("qos", self.qos.clone());
        push("gres", self.gres.clone());
        push("mail-user", self.mail_user.clone());
        let mail = self.mail_types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",");
        push("mail-type", (!mail.is_empty()).then_some(mail));
        push("time", self.time_limit.map(|Minutes(m)| m.to_string()));
        push("array", self.array.clone());
        push("output", Some(self.stdout.clone()));
        push("error", Some(self.stderr.clone()));
        push(odyssey_health_wire::OPTION, self.health_report.map(|m| m.as_str().to_owned()));
        push("dependency", self.dependency());
        push("comment", self.comment.clone());
        push("exclude", (!self.exclude.is_empty()).then(|| self.exclude.join(",")));
        push("prefer", self.prefer.clone());
        if self.exclusive {
            args.push("--exclusive".to_owned());
        }
        // A failed job is the bridge's to retry (`retries`), never
        // requeued by SLURM behind its back.
        args.push("--no-requeue".to_owned());
        args
    }
}

/// One submission, built from validated values only. SLURM sees it with the
/// user's authority on either path (`Slurm::submit`).
#[derive(Debug, Clone)]
pub struct Submission {
    pub identity: Identity,
    /// The job's working directory, entered as the user.
    pub working_dir: std::path::PathBuf,
    pub options: JobOptions,
    /// The variables the request set (`jobspec`); `environment` adds the
    /// base every job gets.
    pub env: BTreeMap<String, String>,
    /// The script as SLURM gets it: every directive line already neutralised
    /// by `jobspec` (its values are in `options`).
    pub script: String,
}

/// The search path every job starts with unless the request sets its own.
pub const JOB_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl Submission {
    /// The job's environment on both paths: a login-like base (PATH, HOME,
    /// USER, LOGNAME) under the request's own variables, and the health
    /// plugin's option where slurmstepd looks for it in the batch step
    /// (sbatch only puts it there when it exports its own environment,
    /// which the bridge never lets it do).
    pub fn environment(&self) -> BTreeMap<String, String> {
        let identity = &self.identity;
        let mut env: BTreeMap<String, String> = [
            ("PATH", JOB_PATH.to_owned()),
            ("HOME", identity.home.display().to_string()),
            ("USER", identity.name.clone()),
            ("LOGNAME", identity.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.env.clone());
        if let Some(mode) = self.options.health_report {
            env.insert(odyssey_health_wire::spank_option_name(), mode.as_str().to_owned());
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_in_slurm_units() {
        assert_eq!(MiB::parse("512"), Some(MiB(512)));
        assert_eq!(MiB::parse("512M"), Some(MiB(512)));
        assert_eq!(MiB::parse("2G"), Some(MiB(2048)));
        assert_eq!(MiB::parse("1T"), Some(MiB(1 << 20)));
        assert_eq!(MiB::parse("1K"), Some(MiB(1)));
        assert_eq!(MiB::parse("1025K"), Some(MiB(2)));
        for bad in ["", "G", "1.5G", "-1", "1g", "99999999999999999999", "9999999999999T"] {
            assert_eq!(MiB::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_in_slurm_units() {
        let cases = [
            ("90", 90),
            ("1:30", 2),
            ("0:30", 1),
            ("1:00:00", 60),
            ("1:30:01", 91),
            ("2-0", 2880),
            ("1-2", 1560),
            ("1-2:03", 1563),
            ("1-0:0:1", 1441),
        ];
        for (text, minutes) in cases {
            assert_eq!(Minutes::parse(text), Some(Minutes(minutes)), "{text}");
        }
        for bad in ["", "1:2:3:4", "a", "1-", "-1", "1--2", "1-2:3:4:5", ":"] {
            assert_eq!(Minutes::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sbatch_arguments_are_one_per_option() {
        let options = JobOptions {
            name: "n".into(),
            memory: Some(Memory::PerCpu(MiB(2048))),
            time_limit: Some(Minutes(5)),
            mail_types: vec![MailType::End, MailType::Fail],
            health_report: Some(HealthMode::Full),
            after_ok: vec![4, 5],
            exclusive: true,
            stdout: "/o".into(),
            stderr: "/e".into(),
            exclude: vec!["c1".into(), "c3".into()],
            prefer: Some("spare".into()),
            ..Default::default()
        };
        assert_eq!(
            options.sbatch_args(),
            [
                "--job-name=n",
                "--mem-per-cpu=2048",
                "--mail-type=END,FAIL",
                "--time=5",
                "--output=/o",
                "--error=/e",
                "--health-report=full",
                "--dependency=afterok:4:5",
                "--exclude=c1,c3",
                "--prefer=spare",
                "--exclusive",
                "--no-requeue",
            ]
        );
    }
}
