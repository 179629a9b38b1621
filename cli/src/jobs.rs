//! `submit`, `jobs`, `show`, `cancel`, `events`, `result`, `health`, `nodes`.

use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde_json::{Map, Value};

use crate::api::{Api, Connection};
use crate::table;

#[derive(Debug, clap::Args)]
#[command(after_help = "The script's #SBATCH lines are the bridge's business: it reads them from an allowlist \
(a directive it does not allow is refused, naming the line). A flag given here wins over the same directive.")]
pub struct SubmitArgs {
    /// The batch script (starts with #!); `-` reads stdin. Not with --kernel.
    script: Option<std::path::PathBuf>,
    /// A verified MPI kernel of odyssey-mpi (pi, jacobi, matmul, cg, osu, allreduce).
    #[arg(long, conflicts_with = "script")]
    kernel: Option<String>,
    /// A kernel parameter, NAME=VALUE (repeatable): --param n=600.
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "kernel")]
    params: Vec<String>,
    #[arg(short = 'J', long = "job-name")]
    name: Option<String>,
    #[arg(short = 'N', long)]
    nodes: Option<u32>,
    #[arg(short = 'n', long)]
    ntasks: Option<u32>,
    #[arg(long)]
    ntasks_per_node: Option<u32>,
    #[arg(short = 'c', long)]
    cpus_per_task: Option<u32>,
    /// Memory per node (512M, 2G).
    #[arg(long = "mem")]
    memory: Option<String>,
    /// Minutes, or [D-]HH:MM:SS.
    #[arg(short = 't', long = "time")]
    time_limit: Option<String>,
    #[arg(short = 'p', long)]
    partition: Option<String>,
    /// Working directory on the cluster (default: this directory).
    #[arg(short = 'D', long = "chdir")]
    working_dir: Option<std::path::PathBuf>,
    #[arg(short = 'o', long = "output")]
    stdout: Option<String>,
    #[arg(short = 'e', long = "error")]
    stderr: Option<String>,
    #[arg(short = 'a', long)]
    array: Option<String>,
    /// Run after these jobs (bridge ids) complete: --dependency 12,13.
    #[arg(short = 'd', long, value_delimiter = ',')]
    dependency: Vec<i64>,
    #[arg(short = 'A', long)]
    account: Option<String>,
    #[arg(short = 'q', long)]
    qos: Option<String>,
    #[arg(short = 'C', long)]
    constraint: Option<String>,
    #[arg(long)]
    gres: Option<String>,
    #[arg(long)]
    exclusive: bool,
    /// Times the bridge resubmits the job after an infrastructure failure.
    #[arg(long)]
    retries: Option<u32>,
    /// Ask SLURM whether and when it would run, submitting nothing.
    #[arg(long)]
    dry_run: bool,
    /// Sent as Idempotency-Key (default: a fresh one, so a retried command
    /// never submits twice).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Follow the job to its end and exit with its exit code.
    #[arg(long)]
    wait: bool,
}

impl SubmitArgs {
    fn body(&self) -> anyhow::Result<Value> {
        let mut body = Map::new();
        match (&self.script, &self.kernel) {
            (Some(path), None) => {
                let script = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("read the script from stdin")?
                } else {
                    std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?
                };
                body.insert("script".into(), script.into());
            }
            (None, Some(kernel)) => {
                body.insert("kernel".into(), kernel.clone().into());
                let mut params = Map::new();
                for param in &self.params {
                    let (name, value) =
                        param.split_once('=').with_context(|| format!("--param {param}: NAME=VALUE"))?;
                    // Numbers as numbers; anything else as text.
                    let value = serde_json::from_str::<Value>(value).unwrap_or_else(|_| value.into());
                    params.insert(name.to_owned(), value);
                }
                body.insert("params".into(), params.into());
            }
            _ => anyhow::bail!("give a script (or - for stdin), or --kernel NAME"),
        }
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                body.insert(key.into(), value);
            }
        };
        put("name", self.name.clone().map(Into::into));
        put("nodes", self.nodes.map(Into::into));
        put("ntasks", self.ntasks.map(Into::into));
        put("ntasks_per_node", self.ntasks_per_node.map(Into::into));
        put("cpus_per_task", self.cpus_per_task.map(Into::into));
        put("memory", self.memory.clone().map(Into::into));
        put(
            "time_limit",
            self.time_limit.as_ref().map(|t| t.parse::<u64>().map(Value::from).unwrap_or_else(|_| t.clone().into())),
        );
        put("partition", self.partition.clone().map(Into::into));
        let dir = match &self.working_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("the current directory")?,
        };
        put("working_dir", Some(dir.display().to_string().into()));
        put("stdout", self.stdout.clone().map(Into::into));
        put("stderr", self.stderr.clone().map(Into::into));
        put("array", self.array.clone().map(Into::into));
        put("dependencies", (!self.dependency.is_empty()).then(|| self.dependency.clone().into()));
        put("account", self.account.clone().map(Into::into));
        put("qos", self.qos.clone().map(Into::into));
        put("constraint", self.constraint.clone().map(Into::into));
        put("gres", self.gres.clone().map(Into::into));
        put("exclusive", self.exclusive.then_some(true.into()));
        put("retries", self.retries.map(Into::into));
        Ok(body.into())
    }
}

fn fresh_key() -> String {
    // Time and pid are unique enough per machine for one command's retries.
    format!("odyssey-{}-{}", (crate::api::now() * 1e6) as u64, std::process::id())
}

pub fn submit(conn: &Connection, args: SubmitArgs, json_out: bool) -> anyhow::Result<ExitCode> {
    let body = args.body()?;
    let mut api = Api::signed_in(conn)?;
    let url = api.url(if args.dry_run { "/v1/jobs?dry_run=true" } else { "/v1/jobs" });
    let key = args.idempotency_key.clone().unwrap_or_else(fresh_key);
    let reply: Value = api.send(|c| c.post(&url).header("idempotency-key", &key).json(&body))?.json()?;
    if args.dry_run {
        if json_out {
            println!("{reply}");
        } else {
            println!("{}", reply["slurm"].as_str().unwrap_or("SLURM said nothing"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let id = reply["id"].as_i64().context("the bridge's answer has no job id")?;
    if json_out && !args.wait {
        println!("{reply}");
    } else if !json_out {
        println!("{id}");
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let done = crate::follow::wait(&mut api, id)?;
    if json_out {
        println!("{done}");
    }
    Ok(exit_code_of(&done))
}

/// A finished job's exit code as a process's: its own code, 128 + a
/// signal, 1 for any other failure.
pub fn exit_code_of(job: &Value) -> ExitCode {
    if job["state"] == "COMPLETED" {
        return ExitCode::SUCCESS;
    }
    if let Some(code) = job["exit_code"].as_i64().filter(|c| *c > 0) {
        return ExitCode::from(code.clamp(1, 255) as u8);
    }
    if let Some(signal) = job["signal"].as_i64().filter(|s| *s > 0) {
        return ExitCode::from((128 + signal).clamp(1, 255) as u8);
    }
    ExitCode::FAILURE
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only jobs in this state (pending, running, completed, failed, ...).
    #[arg(long)]
    state: Option<String>,
    /// Every user's jobs (admins).
    #[arg(long)]
    all: bool,
    /// Only jobs with this name.
    #[arg(long)]
    name: Option<String>,
    /// At most this many (newest first).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", form_encode(v)))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn list(conn: &Connection, args: ListArgs, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let me = api.get_json("/v1/auth/me")?;
    let mut jobs = Vec::new();
    let mut cursor: Option<i64> = None;
    while jobs.len() < args.limit as usize {
        let page = (args.limit as usize - jobs.len()).min(100);
        let path = format!(
            "/v1/jobs{}",
            query(&[
                ("state", args.state.clone()),
                ("name", args.name.clone()),
                ("user", (!args.all).then(|| me["name"].as_str().unwrap_or_default().to_owned())),
                ("limit", Some(page.to_string())),
                ("cursor", cursor.map(|c| c.to_string())),
            ])
        );
        let reply = api.get_json(&path)?;
        jobs.extend(reply["jobs"].as_array().cloned().unwrap_or_default());
        match reply["next_cursor"].as_i64() {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if json_out {
        println!("{}", Value::from(jobs));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j["id"].to_string(),
                j["slurm_job_id"].as_i64().map_or("-".into(), |s| s.to_string()),
                j["user"].as_str().unwrap_or("").to_owned(),
                j["state"].as_str().unwrap_or("").to_owned(),
                elapsed(j),
                j["nodes"].as_str().unwrap_or("-").to_owned(),
                j["name"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table::print(&["ID", "SLURM", "USER", "STATE", "TIME", "NODES", "NAME"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Run time so far (or in all), or how long ago it was submitted while it waits.
fn elapsed(job: &Value) -> String {
    match (job["started_at"].as_f64(), job["ended_at"].as_f64()) {
        (Some(start), Some(end)) => table::duration(end - start),
        (Some(start), None) => table::duration(crate::api::now() - start),
        _ => format!("waiting {}", table::duration(crate::api::now() - job["submitted_at"].as_f64().unwrap_or(0.0))),
    }
}

pub fn show(conn: &Connection, id: i64, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let job = api.get_json(&format!("/v1/jobs/{id}"))?;
    if json_out {
        println!("{job}");
        return Ok(ExitCode::SUCCESS);
    }
    let text = |k: &str| match &job[k] {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    for (label, value) in [
        ("id", text("id")),
        ("name", text("name")),
        ("user", format!("{} (runs as {})", text("user"), text("unix_user"))),
        (
            "state",
            format!("{}{}", text("state"), job["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()),
        ),
        ("slurm job", text("slurm_job_id")),
        ("partition", text("partition")),
        ("nodes", text("nodes")),
        ("submitted", table::ago(job["submitted_at"].as_f64())),
        ("time", elapsed(&job)),
        ("exit code", text("exit_code")),
        ("attempt", format!("{} ({} retries left)", text("attempt"), text("retries_left"))),
        ("stdout", text("stdout_path")),
        ("stderr", text("stderr_path")),
    ] {
        println!("{label:<10} {value}");
    }
    if let Some(failure) = job.get("failure").filter(|f| !f.is_null()) {
        println!(
            "{:<10} {}: {}",
            "failure",
            failure["class"].as_str().unwrap_or("?"),
            failure["reason"].as_str().unwrap_or("")
        );
    }
    if let Some(result) = job.get("result").filter(|r| !r.is_null()) {
        println!("{:<10} {result}", "result");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn cancel(conn: &Connection, id: i64, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let job = api.request_json(Method::DELETE, &format!("/v1/jobs/{id}"), None)?;
    if json_out {
        println!("{job}");
    } else {
        println!("cancelled {id} ({})", job["state"].as_str().unwrap_or("?"));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(conn: &Connection, id: i64, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let reply = api.get_json(&format!("/v1/jobs/{id}/events"))?;
    let events = reply.get("events").cloned().unwrap_or(reply);
    if json_out {
        println!("{events}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                table::ago(e["at"].as_f64()),
                e["state"].as_str().unwrap_or("").to_owned(),
                e["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table::print(&["WHEN", "STATE", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// An endpoint's JSON as it is (result, health).
pub fn raw(conn: &Connection, path: &str) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let value = api.get_json(path)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(ExitCode::SUCCESS)
}

pub fn nodes(conn: &Connection, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let reply = api.get_json("/v1/nodes")?;
    if json_out {
        println!("{reply}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = reply["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            vec![
                n["name"].as_str().unwrap_or("").to_owned(),
                n["state"].as_str().unwrap_or("").to_owned(),
                format!("{}/{}", n["cpus_allocated"], n["cpus_total"]),
                n["load"].as_f64().map_or("-".into(), |l| format!("{l:.2}")),
                n["free_memory_mb"].as_i64().map_or("-".into(), |m| format!("{m}/{} MB", n["memory_mb"])),
                n["running_jobs"].as_array().map_or(0, Vec::len).to_string(),
                n["reason"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table::print(&["NODE", "STATE", "CPUS", "LOAD", "FREE MEMORY", "JOBS", "REASON"], &rows);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_finished_job_exits_as_a_process_would() {
        let code = |job: Value| format!("{:?}", exit_code_of(&job));
        assert_eq!(code(json!({"state": "COMPLETED", "exit_code": 0})), format!("{:?}", ExitCode::SUCCESS));
        assert_eq!(code(json!({"state": "FAILED", "exit_code": 3})), format!("{:?}", ExitCode::from(3)));
        assert_eq!(
            code(json!({"state": "CANCELLED", "exit_code": 0, "signal": 9})),
            format!("{:?}", ExitCode::from(137))
        );
        assert_eq!(code(json!({"state": "NODE_FAIL"})), format!("{:?}", ExitCode::FAILURE));
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query(&[("name", Some("a b&c".into())), ("cursor", None)]), "?name=a%20b%26c");
        assert_eq!(query(&[("cursor", None)]), "");
    }
}
