//! `odyssey workers`: machines that joined as workers; join tokens and
//! removal for admins.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{json, Value};

use crate::api::{Api, Connection};
use crate::table;

#[derive(Debug, clap::Subcommand)]
pub enum WorkersCommand {
    /// Every worker: state, features, certificate, last heartbeat (the default).
    List,
    /// A one-time join token for `odyssey-worker join` (admins).
    Token {
        /// Seconds until it expires (60 to 604800).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        /// Node features the worker gets, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// Remove a worker (admins): a live one leaves after its jobs, a lost
    /// one is deleted from SLURM at once.
    Remove { name: String },
}

pub fn run(conn: &Connection, command: Option<WorkersCommand>, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    match command.unwrap_or(WorkersCommand::List) {
        WorkersCommand::List => {
            let reply = api.get_json("/v1/workers")?;
            if json_out {
                println!("{reply}");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = reply["workers"].as_array().into_iter().flatten().map(row).collect();
            table::print(&["WORKER", "STATE", "FEATURES", "JOBS", "HEARTBEAT", "CERTIFICATE", "EXPIRES"], &rows);
        }
        WorkersCommand::Token { expires_in, features } => {
            let body = json!({"expires_in_s": expires_in, "features": features});
            let reply = api.request_json(Method::POST, "/v1/workers/tokens", Some(&body))?;
            if json_out {
                println!("{reply}");
            } else {
                // The token alone on stdout, for scripts; how to use it on stderr.
                println!("{}", reply["token"].as_str().unwrap_or(""));
                eprintln!(
                    "odyssey: one-time join token, valid {}; on the new machine: odyssey-worker join --bridge {} --token <token>",
                    table::duration(expires_in as f64),
                    api.base
                );
            }
        }
        WorkersCommand::Remove { name } => {
            let reply = api.request_json(Method::DELETE, &format!("/v1/workers/{name}"), None)?;
            if json_out {
                println!("{reply}");
            } else {
                println!("{name}: {}", reply["state"].as_str().unwrap_or("?"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(w: &Value) -> Vec<String> {
    let text = |k: &str| w[k].as_str().unwrap_or("").to_owned();
    let features: Vec<&str> = w["features"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    vec![
        text("name"),
        text("state"),
        features.join(","),
        w["running_jobs"].as_array().map_or(0, Vec::len).to_string(),
        table::ago(w["last_heartbeat_at"].as_f64()),
        text("certificate_serial").chars().take(12).collect(),
        w["certificate_expires_at"].as_f64().map_or("-".into(), |at| table::duration(at - crate::api::now())),
    ]
}
