//! A job request and its validation into sbatch options. Nothing here knows
//! HTTP or runs a command: the rules that keep user input from becoming
//! sbatch directives, extra options or shell live in one place.
//!
//! The defence: every option is passed as one `--name=value` argument (no
//! shell), values that could read as options or directives are refused, the
//! job's environment travels NUL-separated through `--export-file`, never
//! through sbatch's own environment, and the script goes on stdin. A
//! script's own `#SBATCH` lines are parsed (`directives`) into the same
//! fields, checked by the same rules, and neutralised: SLURM applies only
//! options the bridge validated. The request's fields win over the script's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use mpi_runner::params::{KernelSpec, PartsError};

use crate::config::Limits;

mod merge;

/// The body of `POST /v1/jobs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub name: Option<String>,
    /// A whole batch script starting with `#!`; or give `command`.
    pub script: Option<String>,
    /// argv of one program to run; the bridge writes the script.
    pub command: Option<Vec<String>>,
    pub partition: Option<String>,
    pub nodes: Option<u32>,
    pub ntasks: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// SLURM memory per node: a number with an optional K, M, G or T suffix.
    pub memory: Option<String>,
    /// Minutes, or SLURM's `[D-]HH:MM:SS`, `MM:SS`.
    pub time_limit: Option<TimeLimit>,
    pub working_dir: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    /// SLURM array spec, e.g. `1-10%2`.
    pub array: Option<String>,
    /// Bridge job ids of the caller's earlier jobs (afterok).
    pub dependencies: Option<Vec<i64>>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// Free text kept in the bridge's record (SLURM's comment carries the tag).
    pub comment: Option<String>,
    /// Per-task health reports from the SPANK plugin: true (= "summary"),
    /// "summary" or "full".
    pub health_report: Option<HealthReport>,
    /// A verified MPI kernel of `odyssey-mpi` (instead of script or command):
    /// allreduce, pi, jacobi, matmul, cg or osu. Its JSON result joins the
    /// job record when the job ends.
    pub kernel: Option<String>,
    /// The kernel's parameters, e.g. `{"n": 2048}`; absent ones take defaults.
    pub params: Option<serde_json::Value>,
    pub ntasks_per_node: Option<u32>,
    /// SLURM memory per CPU, like `memory`.
    pub memory_per_cpu: Option<String>,
    /// Whole nodes for this job.
    pub exclusive: Option<bool>,
    /// Node features, e.g. `bigmem&avx2`.
    pub constraint: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Generic resources, e.g. `gpu:2`.
    pub gres: Option<String>,
    /// Comma-separated SLURM mail events, e.g. `END,FAIL`.
    pub mail_type: Option<String>,
    pub mail_user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HealthReport {
    On(bool),
    Mode(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeLimit {
    Minutes(u32),
    Slurm(String),
}

/// A field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct SpecError {
    pub field: String,
    pub detail: String,
}

fn bad(field: impl Into<String>, detail: impl Into<String>) -> SpecError {
    SpecError { field: field.into(), detail: detail.into() }
}

/// A request that passed every check, ready to become a `Submission`.
#[derive(Debug, Clone)]
pub struct ValidJob {
    /// The request as submitted: its fields merged with the script's
    /// directives, and a `directives` list saying where each came from.
    pub spec: serde_json::Value,
    pub name: String,
    pub partition: Option<String>,
    pub options: Vec<(&'static str, String)>,
    pub env: BTreeMap<String, String>,
    pub script: String,
    pub working_dir: PathBuf,
    /// Absolute, with SLURM's %-patterns still in.
    pub stdout: String,
    pub stderr: String,
    pub is_array: bool,
    pub dependencies: Vec<i64>,
    /// For a kernel job: where rank 0 writes its JSON result, `%j` standing
    /// for the SLURM job id.
    pub result_path: Option<String>,
}

/// The file name a kernel job's result gets in its working directory.
pub const RESULT_FILE: &str = "odyssey-result-%j.json";

/// Environment names a job may not set: they steer SLURM itself.
const RESERVED_ENV_PREFIXES: &[&str] = &["SLURM_", "SBATCH_", "SPANK_", "_SLURM", "SALLOC_", "SRUN_"];

/// Checks shared by every single-line field: no NUL, line breaks or other
/// control characters, nothing that reads as an option or a directive.
fn line(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    if value.is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if value.len() > limits.max_field_bytes {
        return Err(bad(field, format!("is longer than {} bytes", limits.max_field_bytes)));
    }
    if value.contains('\0') {
        return Err(bad(field, "contains a NUL byte"));
    }
    if value.contains(['\n', '\r']) {
        return Err(bad(field, "contains a line break"));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(field, "contains a control character"));
    }
    if value.starts_with('-') {
        return Err(bad(field, "must not start with '-' (it would read as an option)"));
    }
    if value.to_ascii_uppercase().contains("#SBATCH") {
        return Err(bad(field, "must not contain an #SBATCH directive"));
    }
    Ok(())
}

fn token(field: &str, value: &str, max: usize, extra: &[char], limits: &Limits) -> Result<(), SpecError> {
    line(field, value, limits)?;
    if value.len() > max || !value.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(&c)) {
        let extra: String = extra.iter().collect();
        return Err(bad(field, format!("must be at most {max} characters of letters, digits and {extra:?}")));
    }
    Ok(())
}

fn path(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    line(field, value, limits)?;
    if !value.starts_with('/') {
        return Err(bad(field, "must be an absolute path"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(bad(field, "must not contain whitespace"));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(bad(field, "must not contain '..'"));
    }
    Ok(())
}

fn count(field: &str, value: Option<u32>, max: u32) -> Result<Option<u32>, SpecError> {
    match value {
        Some(0) => Err(bad(field, "must be at least 1")),
        Some(n) if n > max => Err(bad(field, format!("must be at most {max}"))),
        other => Ok(other),
    }
}

fn memory(field: &str, value: &str, limits: &Limits) -> Result<(), SpecError> {
    line(field, value, limits)?;
    let digits = value.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(value);
    if digits.is_empty() || digits.len() > 12 || !digits.chars().all(|c| c.is_ascii_digit()) || digits == "0" {
        return Err(bad(field, "must be a positive number with an optional K, M, G or T suffix, e.g. 512M"));
    }
    Ok(())
}

fn time_limit(value: &TimeLimit, limits: &Limits) -> Result<String, SpecError> {
    match value {
        TimeLimit::Minutes(0) => Err(bad("time_limit", "must be at least 1 minute")),
        TimeLimit::Minutes(m) => Ok(m.to_string()),
        TimeLimit::Slurm(s) => {
            line("time_limit", s, limits)?;
            let (days, rest) = match s.split_once('-') {
                Some((d, rest)) => (Some(d), rest),
                None => (None, s.as_str()),
            };
            let parts: Vec<&str> = rest.split(':').collect();
            let numeric = |p: &str| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit());
            if days.is_some_and(|d| !numeric(d)) || parts.len() > 3 || !parts.iter().all(|p| numeric(p)) {
                return Err(bad("time_limit", "must be minutes or [D-]HH:MM:SS, e.g. 90 or 1:30:00"));
            }
            Ok(s.clone())
        }
    }
}

fn array(value: &str, limits: &Limits) -> Result<(), SpecError> {
    line("array", value, limits)?;
    let valid = value.len() <= 256
        && value.chars().all(|c| c.is_ascii_digit() || matches!(c, ',' | '-' | ':' | '%'))
        && value.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(bad("array", "must be a SLURM array spec like 1-10, 1,3,5 or 0-15%4"));
    }
    Ok(())
}

/// A free-text selector field: (field, sbatch option, value, longest, the
/// characters allowed besides letters and digits).
type Selector<'a> = (&'a str, &'static str, &'a Option<String>, usize, &'a [char]);

/// SLURM's mail events (sbatch(1), --mail-type).
const MAIL_TYPES: &[&str] = &[
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "INVALID_DEPEND",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
];

fn mail_type(value: &str, limits: &Limits) -> Result<(), SpecError> {
    line("mail_type", value, limits)?;
    if value.split(',').any(|t| !MAIL_TYPES.contains(&t)) {
        return Err(bad("mail_type", format!("must be a comma-separated list of {}", MAIL_TYPES.join(", "))));
    }
    Ok(())
}

/// Single-quotes a word for sh: the only character that needs care inside
/// single quotes is the single quote itself.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// Validates `request` for a job running as a user whose home is `home`;
/// kernel jobs run `mpi_binary` (odyssey-mpi). A script's directives are
/// merged in first; an error in a value that came from the script names
/// its line.
pub fn validate(request: &JobRequest, home: &Path, limits: &Limits, mpi_binary: &Path) -> Result<ValidJob, SpecError> {
    let merged = merge::merge(request)?;
    let mut job = validate_fields(&merged.request, home, limits, mpi_binary).map_err(|e| merged.locate(e))?;
    job.spec = merged.spec();
    if request.script.is_some() {
        job.script = crate::directives::neutralise(&job.script);
    }
    Ok(job)
}

fn validate_fields(
    request: &JobRequest,
    home: &Path,
    limits: &Limits,
    mpi_binary: &Path,
) -> Result<ValidJob, SpecError> {
    let name = request.name.clone().unwrap_or_else(|| "job".to_owned());
    token("name", &name, 128, &['.', '_', '-', '+'], limits)?;
    let mut options: Vec<(&'static str, String)> = vec![("job-name", name.clone())];

    if let Some(partition) = &request.partition {
        token("partition", partition, 64, &['_', '-'], limits)?;
        options.push(("partition", partition.clone()));
    }
    if let Some(n) = count("nodes", request.nodes, 100_000)? {
        options.push(("nodes", n.to_string()));
    }
    if let Some(n) = count("ntasks", request.ntasks, 1_000_000)? {
        options.push(("ntasks", n.to_string()));
    }
    if let Some(n) = count("cpus_per_task", request.cpus_per_task, 4096)? {
        options.push(("cpus-per-task", n.to_string()));
    }
    if let Some(mem) = &request.memory {
        memory("memory", mem, limits)?;
        options.push(("mem", mem.clone()));
    }
    if let Some(n) = count("ntasks_per_node", request.ntasks_per_node, 1_000_000)? {
        options.push(("ntasks-per-node", n.to_string()));
    }
    if let Some(mem) = &request.memory_per_cpu {
        memory("memory_per_cpu", mem, limits)?;
        options.push(("mem-per-cpu", mem.clone()));
    }
    if request.exclusive == Some(true) {
        // An empty value is a bare flag (`--exclusive`).
        options.push(("exclusive", String::new()));
    }
    let selectors: [Selector<'_>; 5] = [
        (
            "constraint",
            "constraint",
            &request.constraint,
            1024,
            &['_', '-', '.', ',', ':', '&', '|', '*', '[', ']', '(', ')', '!'],
        ),
        ("account", "account", &request.account, 64, &['_', '-', '.']),
        ("qos", "qos", &request.qos, 64, &['_', '-', '.']),
        ("gres", "gres", &request.gres, 256, &['_', '-', '.', ',', ':']),
        ("mail_user", "mail-user", &request.mail_user, 254, &['_', '-', '.', '+', '%', '@']),
    ];
    for (field, option, value, max, extra) in selectors {
        if let Some(value) = value {
            token(field, value, max, extra, limits)?;
            options.push((option, value.clone()));
        }
    }
    if let Some(types) = &request.mail_type {
        mail_type(types, limits)?;
        options.push(("mail-type", types.clone()));
    }
    if let Some(limit) = &request.time_limit {
        options.push(("time", time_limit(limit, limits)?));
    }
    let is_array = request.array.is_some();
    if let Some(spec) = &request.array {
        array(spec, limits)?;
        options.push(("array", spec.clone()));
    }

    let working_dir = match &request.working_dir {
        Some(dir) => {
            path("working_dir", dir, limits)?;
            PathBuf::from(dir)
        }
        None => home.to_path_buf(),
    };
    options.push(("chdir", working_dir.display().to_string()));

    let default_out = if is_array { "slurm-%A_%a.out" } else { "slurm-%j.out" };
    let stdout = output_path("stdout", request.stdout.as_deref(), &working_dir, default_out, limits)?;
    let stderr = match &request.stderr {
        Some(_) => output_path("stderr", request.stderr.as_deref(), &working_dir, default_out, limits)?,
        None => stdout.clone(),
    };
    options.push(("output", stdout.clone()));
    options.push(("error", stderr.clone()));

    if let Some(comment) = &request.comment {
        line("comment", comment, limits)?;
    }
    match &request.health_report {
        None | Some(HealthReport::On(false)) => {}
        Some(HealthReport::On(true)) => options.push(("health-report", "summary".to_owned())),
        Some(HealthReport::Mode(mode)) if matches!(mode.as_str(), "off" | "summary" | "full") => {
            options.push(("health-report", mode.clone()))
        }
        Some(HealthReport::Mode(_)) => {
            return Err(bad("health_report", "must be true, false, \"summary\" or \"full\""))
        }
    }

    let env = request.env.clone().unwrap_or_default();
    if env.len() > limits.max_env_entries {
        return Err(bad("env", format!("has {} entries; at most {} are allowed", env.len(), limits.max_env_entries)));
    }
    for (key, value) in &env {
        let field = format!("env.{key}");
        let valid_key = key.len() <= 256
            && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(bad(field, "names must be letters, digits and _, not starting with a digit"));
        }
        if let Some(prefix) = RESERVED_ENV_PREFIXES.iter().find(|p| key.starts_with(**p)) {
            return Err(bad(field, format!("names starting with {prefix} are reserved for SLURM")));
        }
        if value.contains('\0') {
            return Err(bad(field, "contains a NUL byte"));
        }
        if value.len() > limits.max_field_bytes {
            return Err(bad(field, format!("is longer than {} bytes", limits.max_field_bytes)));
        }
    }

    let kernel = match &request.kernel {
        Some(name) => {
            if request.script.is_some() || request.command.is_some() {
                return Err(bad("kernel", "give one of script, command or kernel"));
            }
            if is_array {
                return Err(bad("array", "a kernel job cannot be an array"));
            }
            let spec = KernelSpec::from_parts(name, request.params.clone()).map_err(|e| match e {
                PartsError::UnknownKernel(_) => bad("kernel", e.to_string()),
                PartsError::Params { .. } => bad("params", e.to_string()),
            })?;
            // sbatch runs one task per node unless told otherwise.
            let ranks = request.ntasks.or(request.nodes).unwrap_or(1);
            spec.validate(ranks as usize).map_err(|e| bad("params", format!("{e} (for {ranks} ranks)")))?;
            Some(spec)
        }
        None if request.params.is_some() => return Err(bad("params", "params go with a kernel")),
        None => None,
    };
    let result_path = kernel.as_ref().map(|_| working_dir.join(RESULT_FILE).display().to_string());

    let script = match (&request.script, &request.command, &kernel) {
        (_, _, Some(spec)) => kernel_script(spec, mpi_binary, result_path.as_deref().unwrap_or_default()),
        (Some(_), Some(_), None) => return Err(bad("script", "give either script or command, not both")),
        (None, None, None) => return Err(bad("script", "give a script (starting with #!), a command or a kernel")),
        (Some(script), None, None) => {
            if script.len() > limits.max_script_bytes {
                return Err(bad("script", format!("is longer than {} bytes", limits.max_script_bytes)));
            }
            if !script.starts_with("#!") {
                return Err(bad("script", "must start with an interpreter line such as #!/bin/bash"));
            }
            if script.contains('\0') {
                return Err(bad("script", "contains a NUL byte"));
            }
            script.clone()
        }
        (None, Some(argv), None) => {
            if argv.is_empty() || argv.len() > 1024 {
                return Err(bad("command", "must have 1 to 1024 words"));
            }
            for (idx, word) in argv.iter().enumerate() {
                if word.contains('\0') || word.len() > limits.max_field_bytes {
                    return Err(bad(format!("command[{idx}]"), "contains a NUL byte or is too long"));
                }
            }
            let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
            format!("#!/bin/sh\nexec {}\n", words.join(" "))
        }
    };

    let dependencies = request.dependencies.clone().unwrap_or_default();
    if dependencies.len() > 64 {
        return Err(bad("dependencies", "at most 64 dependencies"));
    }

    Ok(ValidJob {
        spec: serde_json::Value::Null,
        name,
        partition: request.partition.clone(),
        options,
        env,
        script,
        working_dir,
        stdout,
        stderr,
        is_array,
        dependencies,
        result_path,
    })
}

/// The batch script of a kernel job: one srun of odyssey-mpi over the
/// allocation, writing its result where the bridge collects it. A rank that
/// dies ends the step (`--kill-on-bad-exit`), rather than leaving the others
/// waiting for it until the time limit.
fn kernel_script(spec: &KernelSpec, mpi_binary: &Path, result_path: &str) -> String {
    let (before, after) = result_path.split_once("%j").unwrap_or((result_path, ""));
    let output = format!("{}\"$SLURM_JOB_ID\"{}", shell_quote(before), shell_quote(after));
    let args: Vec<String> = spec.to_args().iter().map(|a| shell_quote(a)).collect();
    format!(
        "#!/bin/sh\n# Cloud Odyssey kernel job: {}\nexec srun --mpi=pmix --kill-on-bad-exit=1 {} --output {output} {}\n",
        spec.name(),
        shell_quote(&mpi_binary.display().to_string()),
        args.join(" ")
    )
}

fn output_path(
    field: &str,
    value: Option<&str>,
    working_dir: &Path,
    default: &str,
    limits: &Limits,
) -> Result<String, SpecError> {
    match value {
        Some(p) => {
            path(field, p, limits)?;
            Ok(p.to_owned())
        }
        None => Ok(working_dir.join(default).display().to_string()),
    }
}

/// An output path with SLURM's patterns filled in for one (non-array) job.
pub fn resolve_output(pattern: &str, slurm_job_id: i64, name: &str, user: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'j' | 'A' => out.push_str(&slurm_job_id.to_string()),
            'x' => out.push_str(name),
            'u' => out.push_str(user),
            '%' => out.push('%'),
            // %N, %n, %t, %s, %a... differ per node, task or array index:
            // no single file to serve.
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_script_bytes: 1 << 16,
            max_field_bytes: 256,
            max_env_entries: 4,
            submit_rate_per_minute: 10,
            max_concurrent_sbatch: 2,
            login_rate_per_address: 10,
            login_rate_per_name: 10,
            credential_threads: 1,
            credential_queue: 1,
            credential_slots_per_address: 1,
            max_follows_per_user: 1,
        }
    }

    fn request() -> JobRequest {
        JobRequest { command: Some(vec!["hostname".into()]), ..Default::default() }
    }

    fn field_of(req: &JobRequest) -> String {
        validate(req, Path::new("/home/alice"), &limits(), Path::new(MPI)).unwrap_err().field
    }

    #[test]
    fn a_plain_command_becomes_a_quoted_script_with_defaults() {
        let job = validate(
            &JobRequest { command: Some(vec!["echo".into(), "it's; rm -rf /".into()]), ..Default::default() },
            Path::new("/home/alice"),
            &limits(),
            Path::new(MPI),
        )
        .unwrap();
        assert_eq!(job.script, "#!/bin/sh\nexec 'echo' 'it'\\''s; rm -rf /'\n");
        assert_eq!(job.stdout, "/home/alice/slurm-%j.out");
        assert!(job.options.contains(&("chdir", "/home/alice".into())));
    }

    #[test]
    fn injection_attempts_are_refused_by_field() {
        let cases: Vec<(JobRequest, &str)> = vec![
            (JobRequest { name: Some("x\n#SBATCH --uid=0".into()), ..request() }, "name"),
            (JobRequest { name: Some("--uid=0".into()), ..request() }, "name"),
            (JobRequest { partition: Some("debug --uid=0".into()), ..request() }, "partition"),
            (JobRequest { memory: Some("1G --uid=0".into()), ..request() }, "memory"),
            (JobRequest { working_dir: Some("/tmp\0x".into()), ..request() }, "working_dir"),
            (JobRequest { stdout: Some("-o/etc/passwd".into()), ..request() }, "stdout"),
            (JobRequest { comment: Some("#SBATCH --exclusive".into()), ..request() }, "comment"),
            (JobRequest { array: Some("1-3; reboot".into()), ..request() }, "array"),
            (JobRequest { time_limit: Some(TimeLimit::Slurm("10\n#SBATCH".into())), ..request() }, "time_limit"),
        ];
        for (req, field) in cases {
            assert_eq!(field_of(&req), field, "{req:?}");
        }
    }

    #[test]
    fn environment_rules() {
        let env = |k: &str, v: &str| JobRequest { env: Some([(k.to_owned(), v.to_owned())].into()), ..request() };
        assert_eq!(field_of(&env("LD_PRELOAD=", "x")), "env.LD_PRELOAD=");
        assert_eq!(field_of(&env("SBATCH_ACCOUNT", "x")), "env.SBATCH_ACCOUNT");
        assert_eq!(field_of(&env("OK", "a\0b")), "env.OK");
        let many: BTreeMap<String, String> = (0..5).map(|i| (format!("V{i}"), "x".into())).collect();
        assert_eq!(field_of(&JobRequest { env: Some(many), ..request() }), "env");
        // Newlines inside a value are data, not syntax: it travels NUL-separated.
        assert!(validate(&env("MULTI", "a\nb"), Path::new("/h"), &limits(), Path::new(MPI)).is_ok());
    }

    #[test]
    fn script_rules() {
        let script = |s: &str| JobRequest { script: Some(s.into()), command: None, ..Default::default() };
        assert_eq!(field_of(&script("echo hi")), "script");
        assert_eq!(field_of(&JobRequest { script: Some("#!/bin/sh".into()), ..request() }), "script");
        assert_eq!(field_of(&JobRequest { command: None, ..Default::default() }), "script");
        assert!(validate(
            &script("#!/bin/bash\n#SBATCH --time=5\nhostname\n"),
            Path::new("/h"),
            &limits(),
            Path::new(MPI)
        )
        .is_ok());
    }

    const MPI: &str = "/shared/bin/odyssey-mpi";

    fn kernel(name: &str, params: serde_json::Value) -> JobRequest {
        JobRequest { kernel: Some(name.into()), params: Some(params), command: None, ..Default::default() }
    }

    #[test]
    fn a_kernel_job_runs_odyssey_mpi_under_srun() {
        let req = JobRequest { nodes: Some(3), ntasks: Some(6), ..kernel("jacobi", serde_json::json!({"n": 120})) };
        let job = validate(&req, Path::new("/home/alice"), &limits(), Path::new(MPI)).unwrap();
        assert_eq!(
            job.script,
            "#!/bin/sh\n# Cloud Odyssey kernel job: jacobi\nexec srun --mpi=pmix --kill-on-bad-exit=1 '/shared/bin/odyssey-mpi' \
             --output '/home/alice/odyssey-result-'\"$SLURM_JOB_ID\"'.json' \
             'jacobi' '--check-every' '10' '--max-iters' '1000' '--n' '120' '--tol' '1e-6'\n"
        );
        assert_eq!(job.result_path.as_deref(), Some("/home/alice/odyssey-result-%j.json"));
    }

    #[test]
    fn kernel_params_are_checked_before_submission() {
        let six = |params| JobRequest { nodes: Some(3), ntasks: Some(6), ..kernel("jacobi", params) };
        let err =
            validate(&six(serde_json::json!({"n": 100})), Path::new("/h"), &limits(), Path::new(MPI)).unwrap_err();
        assert_eq!(err.field, "params");
        assert!(err.detail.contains("3 x 2 process grid") && err.detail.ends_with("(for 6 ranks)"), "{err}");
        assert_eq!(field_of(&kernel("fft", serde_json::json!({}))), "kernel");
        assert_eq!(field_of(&kernel("pi", serde_json::json!({"samples": "x"}))), "params");
        assert_eq!(field_of(&kernel("pi", serde_json::json!({"bogus": 1}))), "params");
        assert_eq!(field_of(&JobRequest { params: Some(serde_json::json!({})), ..request() }), "params");
        assert_eq!(
            field_of(&JobRequest { command: Some(vec!["x".into()]), ..kernel("pi", serde_json::json!({})) }),
            "kernel"
        );
        assert_eq!(field_of(&JobRequest { array: Some("1-2".into()), ..kernel("pi", serde_json::json!({})) }), "array");
        // One task per node when ntasks is absent.
        let req = JobRequest { nodes: Some(3), ..kernel("matmul", serde_json::json!({"n": 100})) };
        assert_eq!(field_of(&req), "params");
    }

    #[test]
    fn output_patterns_resolve_for_single_jobs_only() {
        assert_eq!(resolve_output("/o/%x-%j.out", 7, "n", "alice").as_deref(), Some("/o/n-7.out"));
        assert_eq!(resolve_output("/o/%N.out", 7, "n", "alice"), None);
    }

    /// Fuzzing (bolero): any JSON body that deserialises into a request is
    /// either valid or refused with a field and a reason; a valid one never
    /// yields an option value that could read as another option or line.
    #[test]
    fn fuzz_validate() {
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(8))
            .with_type::<String>()
            .for_each(|body| check_body(body));
        // Structured bodies reach far more of the rules than random text.
        bolero::check!()
            .with_test_time(std::time::Duration::from_secs(8))
            .with_type::<(Option<String>, Option<String>, Option<u32>, Option<String>, Option<String>)>()
            .for_each(|(script, memory, nodes, partition, mail)| {
                let request = JobRequest {
                    script: script.as_ref().map(|s| format!("#!/bin/sh\n{s}")),
                    command: script.is_none().then(|| vec!["true".to_owned()]),
                    memory: memory.clone(),
                    nodes: *nodes,
                    partition: partition.clone(),
                    mail_type: mail.clone(),
                    ..Default::default()
                };
                check_request(&request);
            });
    }

    fn check_body(body: &str) {
        if let Ok(request) = serde_json::from_str::<JobRequest>(body) {
            check_request(&request);
        }
    }

    fn check_request(request: &JobRequest) {
        match validate(request, Path::new("/home/alice"), &limits(), Path::new(MPI)) {
            Ok(job) => {
                for (option, value) in &job.options {
                    assert!(!value.contains(['\n', '\r', '\0']), "{option}={value:?}");
                    assert!(!value.starts_with('-'), "{option}={value:?}");
                }
                assert!(crate::directives::parse(&job.script).is_ok_and(|d| d.is_empty()), "{:?}", job.script);
            }
            Err(e) => assert!(!e.field.is_empty() && !e.detail.is_empty()),
        }
    }
}
