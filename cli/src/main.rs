//! `odyssey`: Cloud Odyssey from a terminal, on the bridge's public /v1 API
//! only, so anything it does a script can do too.

mod api;
mod auth;
mod credentials;
mod follow;
mod jobs;
mod sse;
mod sso;
mod table;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use api::Connection;

const EXAMPLES: &str = "\
Examples:
  odyssey login --url https://cluster.example.org:8080 --user alice
  odyssey login --url https://cluster.example.org:8080 --sso   # the site's identity provider
  odyssey submit job.sh --wait             # the script's #SBATCH lines are read by the bridge
  odyssey submit --kernel jacobi --param n=600 -N 3 -n 6 --wait
  odyssey jobs --state running
  odyssey logs 42 -f
  odyssey cancel 42
  odyssey jobs --json | jq '.[].id'";

#[derive(Debug, Parser)]
#[command(name = "odyssey", version, about = "Submit and follow jobs on a Cloud Odyssey cluster", after_help = EXAMPLES)]
pub struct Cli {
    /// The bridge's URL (default: the one `login` stored).
    #[arg(long, global = true, env = "ODYSSEY_URL")]
    url: Option<String>,
    /// A PEM CA certificate that signed the bridge's TLS certificate.
    #[arg(long, global = true, env = "ODYSSEY_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Machine-readable output: the API's JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign in and keep the tokens (0600, under the XDG config directory).
    Login(auth::LoginArgs),
    /// Revoke the stored sign-in and forget it.
    Logout,
    /// Who the stored sign-in is.
    Whoami,
    /// Submit a batch script (or a kernel job); prints the job id.
    Submit(Box<jobs::SubmitArgs>),
    /// Your jobs (admins: --all for everyone's).
    Jobs(jobs::ListArgs),
    /// One job's record.
    Show { id: i64 },
    /// A job's output; -f follows it until the job ends.
    Logs(follow::LogsArgs),
    /// Cancel a job.
    Cancel { id: i64 },
    /// A job's timeline.
    Events { id: i64 },
    /// A kernel job's result.
    Result { id: i64 },
    /// A job's health records per step, node and task.
    Health { id: i64 },
    /// The cluster's nodes.
    Nodes,
    /// Machines that joined as workers; join tokens and removal (admins).
    Workers {
        #[command(subcommand)]
        command: Option<workers::WorkersCommand>,
    },
    /// Shell completions: odyssey completions bash > /etc/bash_completion.d/odyssey
    Completions { shell: clap_complete::Shell },
    /// The manual page (roff): odyssey man > odyssey.1
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let conn =
        Connection { url: cli.url.clone(), ca_file: cli.ca_file.clone(), token: std::env::var("ODYSSEY_TOKEN").ok() };
    let result = match cli.command {
        Command::Login(args) => auth::login(&conn, args),
        Command::Logout => auth::logout(&conn),
        Command::Whoami => auth::whoami(&conn, cli.json),
        Command::Submit(args) => jobs::submit(&conn, *args, cli.json),
        Command::Jobs(args) => jobs::list(&conn, args, cli.json),
        Command::Show { id } => jobs::show(&conn, id, cli.json),
        Command::Logs(args) => follow::logs(&conn, args),
        Command::Cancel { id } => jobs::cancel(&conn, id, cli.json),
        Command::Events { id } => jobs::events(&conn, id, cli.json),
        Command::Result { id } => jobs::raw(&conn, &format!("/v1/jobs/{id}/result")),
        Command::Health { id } => jobs::raw(&conn, &format!("/v1/jobs/{id}/health")),
        Command::Nodes => jobs::nodes(&conn, cli.json),
        Command::Workers { command } => workers::run(&conn, command, cli.json),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "odyssey", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("odyssey: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line.
fn one_line(err: &anyhow::Error) -> String {
    if let Some(problem) = err.downcast_ref::<api::Problem>() {
        return problem.line.clone();
    }
    format!("{err:#}").replace('\n', " ")
}
