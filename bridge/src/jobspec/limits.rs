//! The fixed bounds of a job request's fields, in one place. The bounds an
//! operator tunes (field and script bytes, environment entries) are
//! `config::Limits`; these follow SLURM's own limits or keep a request to
//! a size no real job needs more than.

/// `name`: characters (SLURM keeps more, squeue shows far fewer).
pub const MAX_NAME_CHARS: usize = 128;
/// `partition`, `account`, `qos`.
pub const MAX_PARTITION_CHARS: usize = 64;
pub const MAX_ACCOUNT_CHARS: usize = 64;
pub const MAX_QOS_CHARS: usize = 64;
/// `constraint`: a feature expression.
pub const MAX_CONSTRAINT_CHARS: usize = 1024;
/// `gres`: e.g. `gpu:a100:2,shard:4`.
pub const MAX_GRES_CHARS: usize = 256;
/// `mail_user`: an e-mail address (RFC 5321 path limit).
pub const MAX_MAIL_USER_CHARS: usize = 254;
/// `nodes`, `ntasks`, `ntasks_per_node`, `cpus_per_task`.
pub const MAX_NODES: u32 = 100_000;
pub const MAX_NTASKS: u32 = 1_000_000;
pub const MAX_CPUS_PER_TASK: u32 = 4096;
/// `memory`, `memory_per_cpu`: digits before the unit.
pub const MAX_MEMORY_DIGITS: usize = 12;
/// `time_limit`: digits per `D-HH:MM:SS` part.
pub const MAX_TIME_PART_DIGITS: usize = 4;
/// `array`: the spec's characters.
pub const MAX_ARRAY_SPEC_CHARS: usize = 256;
/// `env`: a variable name's characters.
pub const MAX_ENV_NAME_CHARS: usize = 256;
/// `command`: words.
pub const MAX_COMMAND_WORDS: usize = 1024;
/// `dependencies`: earlier jobs one job may wait for.
pub const MAX_DEPENDENCIES: usize = 64;
