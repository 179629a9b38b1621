//! `odyssey-health-flush`: send a node's pending health records to the
//! bridge, for an epilog or cron when the bridge was away during a job; the
//! plugin also starts it (`flush=` in plugstack.conf) to deliver at the end
//! of each step without holding the step daemon.
//!
//!   odyssey-health-flush --spool /var/spool/odyssey-health/c1 \
//!       --url http://10.199.0.1:8080/v1/health-reports --secret /etc/odyssey/health.secret

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use odyssey_spank::deliver::{deliver, Target};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("odyssey-health-flush: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let mut args = std::env::args().skip(1);
    let (mut spool, mut url, mut secret, mut timeout_ms, mut budget_ms) = (None, None, None, 2000u64, 600_000u64);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--spool" => spool = Some(PathBuf::from(value("--spool")?)),
            "--url" => url = Some(value("--url")?),
            "--secret" => secret = Some(PathBuf::from(value("--secret")?)),
            "--timeout-ms" => {
                timeout_ms = value("--timeout-ms")?.parse().map_err(|_| "--timeout-ms needs milliseconds")?
            }
            "--budget-ms" => budget_ms = value("--budget-ms")?.parse().map_err(|_| "--budget-ms needs milliseconds")?,
            "-h" | "--help" => {
                println!(
                    "usage: odyssey-health-flush --spool DIR --url URL --secret FILE [--timeout-ms N] [--budget-ms N]"
                );
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    let spool = spool.ok_or("--spool is required")?;
    let secret_path = secret.ok_or("--secret is required")?;
    let secret = std::fs::read(&secret_path).map_err(|e| format!("{}: {e}", secret_path.display()))?;
    let target = Target {
        url: url.ok_or("--url is required")?,
        secret,
        timeout: Duration::from_millis(timeout_ms),
        budget: Duration::from_millis(budget_ms),
    };
    let done = deliver(&spool, &target);
    println!(
        "sent {} records in {} files; {} corrupt lines skipped; {} files left",
        done.records_sent, done.files_sent, done.corrupt_lines, done.files_left
    );
    match done.error {
        Some(err) if done.files_left > 0 => Err(err),
        _ => Ok(ExitCode::SUCCESS),
    }
}
