//! `odyssey-health-flush`: send a node's pending health records to the
//! bridge, for an epilog or cron when the bridge was away during a job; the
//! plugin also starts it (`flush=` in plugstack.conf) to deliver at the end
//! of each step without holding the step daemon.
//!
//!   odyssey-health-flush --spool /var/spool/odyssey-health/c1 \
//!       --url http://10.199.0.1:8080/v1/health-reports --secret /etc/odyssey/health.secret
//!
//! With `--watch --lock FILE` it is the node's agent instead: it sends the
//! spool every `--interval-ms` (500) until it is stopped, holding FILE's lock
//! so that step daemons (`agent=` in plugstack.conf) leave delivery to it and
//! start no process at each step's end. One agent per lock: a second exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use odyssey_spank::deliver::{deliver, Delivered, Target};

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
    let (mut watch, mut lock, mut interval_ms) = (false, None, None);
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
            "--watch" => watch = true,
            "--lock" => lock = Some(PathBuf::from(value("--lock")?)),
            "--interval-ms" => {
                interval_ms =
                    Some(value("--interval-ms")?.parse::<u64>().map_err(|_| "--interval-ms needs milliseconds")?)
            }
            "-h" | "--help" => {
                println!(
                    "usage: odyssey-health-flush --spool DIR --url URL --secret FILE [--timeout-ms N] [--budget-ms N]\n       \
                     odyssey-health-flush --watch --lock FILE --spool DIR --url URL --secret FILE [--interval-ms N] [--timeout-ms N]"
                );
                return Ok(ExitCode::SUCCESS);
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if !watch && (lock.is_some() || interval_ms.is_some()) {
        return Err("--lock and --interval-ms are the agent's: they need --watch".into());
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
    if watch {
        let lock = lock.ok_or("--watch needs --lock FILE (step daemons look there for a running agent)")?;
        let interval_ms = interval_ms.unwrap_or(500);
        if interval_ms == 0 {
            return Err("--interval-ms must be at least 1".into());
        }
        return watch_spool(&spool, &target, &lock, Duration::from_millis(interval_ms));
    }
    let done = deliver(&spool, &target);
    println!("{}", summary(&done));
    match done.error {
        Some(err) if done.files_left > 0 => Err(err),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn summary(done: &Delivered) -> String {
    let mut line = format!(
        "sent {} records in {} files; {} corrupt lines skipped; {} files left",
        done.records_sent, done.files_sent, done.corrupt_lines, done.files_left
    );
    if let Some(why) = &done.refusal {
        line.push_str(&format!("; {} files refused, kept in refused/ ({why})", done.files_refused));
    }
    line
}

/// The agent: a delivery run every `interval`, until the process is
/// stopped (a signal's default action: a run cut short leaves its files
/// pending, and the bridge ignores records it already has). Quiet while all
/// goes well: says what a run that skipped corrupt lines did, and an error
/// once until it changes.
fn watch_spool(
    spool: &std::path::Path,
    target: &Target,
    lock: &std::path::Path,
    interval: Duration,
) -> Result<ExitCode, String> {
    let _held = odyssey_spank::agent::hold(lock)?;
    println!(
        "odyssey-health-flush: delivering {} every {} ms (lock {})",
        spool.display(),
        interval.as_millis(),
        lock.display()
    );
    let mut last_error: Option<String> = None;
    loop {
        let done = deliver(spool, target);
        if done.corrupt_lines > 0 || done.files_refused > 0 {
            println!("{}", summary(&done));
        }
        if done.error != last_error {
            if let Some(err) = &done.error {
                eprintln!("odyssey-health-flush: {} files left: {err}", done.files_left);
            }
            last_error = done.error;
        }
        std::thread::sleep(interval);
    }
}
