//! A job request and its validation into SLURM's typed options
//! (`slurm::job::JobOptions`). Nothing here knows HTTP or runs a command:
//! the rules that keep user input from becoming directives, extra options
//! or shell live in one place.
//!
//! The defence: every value is checked and typed here (counts, memory in
//! MiB, time in minutes, mail events), free-text values that could read as
//! options or directives are refused, the environment is a map of checked
//! names, and the script is data. A script's own `#SBATCH` lines are parsed
//! (`directives`) into the same fields, checked by the same rules, and
//! neutralised: SLURM applies only options the bridge validated, whether
//! sbatch or libslurm carries them. The request's fields win over the
//! script's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Limits;
use crate::slurm::job::{HealthMode, JobOptions};

/// Per-field checks: one line, no control characters, SLURM's shapes.
mod checks;
/// The job's environment variables.
mod env;
/// The working directory and output files.
mod io;
/// The fixed bounds of every field.
pub mod limits;
/// A script's directives merged into the request's fields.
mod merge;
/// Name, partition, counts, memory, time, selectors: typed options.
mod resources;
/// The batch script: the user's, a quoted command, or a kernel's srun.
mod script;

pub use io::resolve_output;
use limits::MAX_DEPENDENCIES;
pub use merge::Source as DirectiveSource;
pub use script::shell_quote;

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
    /// Times the bridge resubmits the job after a failure of a class in
    /// `retry_on` (0 to `--max-retries`), excluding the nodes involved.
    pub retries: Option<u32>,
    /// Which failures are retried: `infrastructure` (the default) and/or
    /// `application` (the job's own non-zero exit).
    pub retry_on: Option<Vec<RetryOn>>,
}

/// A failure class a job may be retried on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryOn {
    Infrastructure,
    Application,
}

/// How a job is retried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retry {
    pub retries: u32,
    pub on: Vec<RetryOn>,
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
    /// Everything SLURM gets besides the script, environment and working
    /// directory; the dependencies and the tag are added at submission.
    pub options: JobOptions,
    pub env: BTreeMap<String, String>,
    pub script: String,
    pub working_dir: PathBuf,
    pub is_array: bool,
    pub dependencies: Vec<i64>,
    /// For a kernel job: where rank 0 writes its JSON result, `%j` standing
    /// for the SLURM job id.
    pub result_path: Option<String>,
    pub retry: Retry,
}

/// The file name a kernel job's result gets in its working directory.
pub const RESULT_FILE: &str = "odyssey-result-%j.json";

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
    let mut options = resources::options(request, limits)?;
    let places = io::places(request, home, limits)?;
    options.stdout = places.stdout;
    options.stderr = places.stderr;
    if let Some(comment) = &request.comment {
        checks::line("comment", comment, limits)?;
    }
    options.health_report = health_report(request.health_report.as_ref())?;
    let env = env::environment(request.env.as_ref(), limits)?;
    let kernel = script::kernel(request)?;
    let result_path = kernel.as_ref().map(|_| places.working_dir.join(RESULT_FILE).display().to_string());
    let script = script::script(request, kernel.as_ref(), mpi_binary, result_path.as_deref(), limits)?;
    let dependencies = request.dependencies.clone().unwrap_or_default();
    if dependencies.len() > MAX_DEPENDENCIES {
        return Err(bad("dependencies", format!("at most {MAX_DEPENDENCIES} dependencies")));
    }
    let retries = request.retries.unwrap_or(0);
    if retries > limits.max_retries {
        return Err(bad("retries", format!("at most {} (--max-retries), not {retries}", limits.max_retries)));
    }
    let mut on = request.retry_on.clone().unwrap_or_else(|| vec![RetryOn::Infrastructure]);
    on.dedup();
    if on.is_empty() {
        return Err(bad("retry_on", "name infrastructure, application or both"));
    }
    Ok(ValidJob {
        retry: Retry { retries, on },
        spec: serde_json::Value::Null,
        options,
        env,
        script,
        working_dir: places.working_dir,
        is_array: request.array.is_some(),
        dependencies,
        result_path,
    })
}

/// The SPANK plugin's `--health-report` mode, if the request asks for one.
fn health_report(value: Option<&HealthReport>) -> Result<Option<HealthMode>, SpecError> {
    match value {
        None | Some(HealthReport::On(false)) => Ok(None),
        Some(HealthReport::On(true)) => Ok(Some(HealthMode::Summary)),
        Some(HealthReport::Mode(mode)) => match mode.as_str() {
            "off" => Ok(Some(HealthMode::Off)),
            "summary" => Ok(Some(HealthMode::Summary)),
            "full" => Ok(Some(HealthMode::Full)),
            _ => Err(bad("health_report", "must be true, false, \"summary\" or \"full\"")),
        },
    }
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
            max_retries: 3,
        }
    }

    fn request() -> JobRequest {
        JobRequest { command: Some(vec!["hostname".into()]), ..Default::default() }
    }

    fn field_of(req: &JobRequest) -> String {
        validate(req, Path::new("/home/alice"), &limits(), Path::new(MPI)).unwrap_err().field
    }

    #[test]
    fn retries_are_bounded_and_default_to_infrastructure_failures() {
        let job = validate(&request(), Path::new("/home/alice"), &limits(), Path::new(MPI)).unwrap();
        assert_eq!(job.retry, Retry { retries: 0, on: vec![RetryOn::Infrastructure] });
        let asked = JobRequest {
            retries: Some(3),
            retry_on: Some(vec![RetryOn::Infrastructure, RetryOn::Application]),
            ..request()
        };
        let job = validate(&asked, Path::new("/home/alice"), &limits(), Path::new(MPI)).unwrap();
        assert_eq!(job.retry.retries, 3);
        // Above --max-retries (3 here): the field is named.
        let err = validate(
            &JobRequest { retries: Some(4), ..request() },
            Path::new("/home/alice"),
            &limits(),
            Path::new(MPI),
        )
        .unwrap_err();
        assert_eq!(err.field, "retries");
        assert!(err.detail.contains("at most 3"), "{}", err.detail);
        assert_eq!(field_of(&JobRequest { retry_on: Some(vec![]), ..request() }), "retry_on");
        assert!(serde_json::from_str::<JobRequest>(r#"{"retry_on": ["network"]}"#).is_err());
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
        assert_eq!(job.options.stdout, "/home/alice/slurm-%j.out");
        assert_eq!(job.working_dir, Path::new("/home/alice"));
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
                for arg in job.options.sbatch_args() {
                    let value = arg.split_once('=').map_or("", |(_, v)| v);
                    assert!(!value.contains(['\n', '\r', '\0']), "{arg:?}");
                    assert!(!value.starts_with('-'), "{arg:?}");
                }
                assert!(crate::directives::parse(&job.script).is_ok_and(|d| d.is_empty()), "{:?}", job.script);
            }
            Err(e) => assert!(!e.field.is_empty() && !e.detail.is_empty()),
        }
    }
}
