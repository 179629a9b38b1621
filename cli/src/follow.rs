//! `logs` (-f over Server-Sent Events, picking up at the last offset after
//! a dropped connection, so no byte is lost or repeated) and `submit
//! --wait` (the job's state and time on a progress line while stderr is a
//! terminal, silent otherwise).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{Api, Connection, Problem};
use crate::sse;

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    id: i64,
    /// Keep following until the job ends.
    #[arg(short, long)]
    follow: bool,
    /// The job's stderr instead of its stdout.
    #[arg(long)]
    stderr: bool,
}

/// How long `logs -f` keeps trying to reconnect to a bridge that went away.
const RECONNECT_FOR: Duration = Duration::from_secs(120);

pub fn logs(conn: &Connection, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut api = Api::signed_in(conn)?;
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let mut out = std::io::stdout().lock();
    if !args.follow {
        let url = api.url(&format!("/v1/jobs/{}/output?stream={stream}", args.id));
        let mut offset = 0u64;
        loop {
            let page = format!("{url}&offset={offset}");
            let reply = api.send(|c| c.get(&page))?;
            let next = reply.headers().get("x-next-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            let bytes = reply.bytes()?;
            out.write_all(&bytes)?;
            match next {
                Some(next) if next > offset && !bytes.is_empty() => offset = next,
                _ => break,
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut offset = 0u64;
    let mut failing_since: Option<Instant> = None;
    let mut pause = Duration::from_millis(250);
    loop {
        let url = api.url(&format!("/v1/jobs/{}/output?stream={stream}&follow=true&offset={offset}", args.id));
        let attempt = api.send_streaming(|c| c.get(&url).header("accept", "text/event-stream"));
        let reply = match attempt {
            Ok(reply) => reply,
            // The job's answer (404, 403): no point in trying again.
            Err(err) if err.downcast_ref::<Problem>().is_some_and(|p| p.status.is_client_error()) => return Err(err),
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                anyhow::ensure!(
                    since.elapsed() < RECONNECT_FOR,
                    "gave up reconnecting after {RECONNECT_FOR:?}: {err:#}"
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        failing_since = None;
        pause = Duration::from_millis(250);
        let mut reader = std::io::BufReader::new(reply);
        // Until the stream ends without `end` (the bridge stopped) or breaks:
        // then connect again from the last offset.
        while let Ok(Some(event)) = sse::next_event(&mut reader) {
            match event.event.as_str() {
                "output" => {
                    out.write_all(event.data.as_bytes())?;
                    out.flush()?;
                    if let Some(id) = event.id.and_then(|id| id.parse().ok()) {
                        offset = id;
                    }
                }
                "end" => return Ok(ExitCode::SUCCESS),
                "error" => anyhow::bail!("the bridge cannot read the output: {}", event.data),
                _ => {}
            }
        }
    }
}

/// Polls the job until it has finished; returns its record.
pub fn wait(api: &mut Api, id: i64) -> anyhow::Result<Value> {
    let started = Instant::now();
    // On a terminal only: a pipe or a file gets no progress line.
    let progress = (std::io::stdout().is_terminal() && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} job {prefix}: {msg} [{elapsed_precise}]")
                .expect("a valid template"),
        );
        bar.set_prefix(id.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let path = format!("/v1/jobs/{id}");
    let mut failing_since: Option<Instant> = None;
    let job = loop {
        match api.get_json(&path) {
            Ok(job) => {
                failing_since = None;
                if job["finished"].as_bool() == Some(true) {
                    break job;
                }
                if let Some(bar) = &progress {
                    let mut msg = job["state"].as_str().unwrap_or("?").to_owned();
                    if let Some(reason) = job["reason"].as_str().filter(|r| *r != "None") {
                        msg.push_str(&format!(" ({reason})"));
                    }
                    if let Some(last) = last_output_line(api, id) {
                        msg.push_str(&format!(" | {last}"));
                    }
                    bar.set_message(msg);
                }
            }
            Err(err) if err.downcast_ref::<Problem>().is_some() => return Err(err),
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                anyhow::ensure!(since.elapsed() < RECONNECT_FOR, "gave up waiting for job {id}: {err:#}");
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    if let Some(bar) = progress {
        bar.finish_and_clear();
        let state = job["state"].as_str().unwrap_or("?");
        eprintln!("job {id} {state} after {}", crate::table::duration(started.elapsed().as_secs_f64()));
    }
    Ok(job)
}

/// The last line of a running job's stdout (a kernel's progress), if any.
fn last_output_line(api: &mut Api, id: i64) -> Option<String> {
    let url = api.url(&format!("/v1/jobs/{id}/output?stream=stdout&offset=0"));
    let text = api.send(|c| c.get(&url)).ok()?.text().ok()?;
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(80).collect())
}
