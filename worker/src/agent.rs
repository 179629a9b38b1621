//! The worker's life: join (key, CSR, certificate), start (munged, slurmd,
//! idle in sinfo), run (heartbeats, health records over mutual TLS,
//! certificate renewal, leaving when an admin asks), leave.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rcgen::{CertificateParams, DnType, KeyPair};
use serde_json::{json, Value};

use crate::api::{self, Endpoint};
use crate::daemons::{self, NodeConfig};
use crate::machine;
use crate::state::{self, Worker};

pub struct Settings {
    pub cpus: u32,
    pub memory_mb: u64,
    pub health_spool: String,
    pub heartbeat: Duration,
}

/// How long `start` waits for the node to be idle.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A new key and a CSR for it (the subject is the bridge's to decide).
fn key_and_csr(name: &str) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generate a key")?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params.serialize_request(&key).context("make the CSR")?.pem()?;
    Ok((key.serialize_pem(), csr))
}

fn text(value: &Value, key: &str) -> anyhow::Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("the bridge's answer has no {key}"))
}

fn number(value: &Value, key: &str) -> anyhow::Result<f64> {
    value.get(key).and_then(Value::as_f64).with_context(|| format!("the bridge's answer has no {key}"))
}

/// Joins with a one-time token: the key is made here and never leaves.
pub fn join(
    dir: &Path,
    bridge: &str,
    token: &str,
    name: &str,
    features: &[String],
    ca_file: Option<&Path>,
) -> anyhow::Result<Worker> {
    if let Ok(existing) = Worker::load(dir) {
        if dir.join("cert.pem").exists() {
            anyhow::bail!(
                "this machine already joined as {} (run `odyssey-worker run`, or `odyssey-worker leave` first)",
                existing.record.name
            );
        }
    }
    let (key, csr) = key_and_csr(name)?;
    let client = api::public(ca_file)?;
    let url = format!("{}/v1/workers/join", bridge.trim_end_matches('/'));
    let answer =
        api::post(&client, &url, &json!({"token": token, "name": name, "csr": csr, "features": features}), "join")?;
    let record = state::Record {
        name: text(&answer, "name")?,
        endpoint: text(&answer, "endpoint")?,
        serial: text(&answer, "serial")?,
        issued_at: now(),
        expires_at: number(&answer, "expires_at")?,
    };
    let worker =
        Worker::save(dir, &record, Some(&key), &text(&answer, "certificate")?, &text(&answer, "ca_certificate")?)?;
    // munged (as its own user) reaches its files under this directory.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
    eprintln!(
        "odyssey-worker: joined as {} (certificate {}), endpoint {}",
        record.name, record.serial, record.endpoint
    );
    Ok(worker)
}

fn node_config(endpoint: &Endpoint) -> anyhow::Result<NodeConfig> {
    let value = endpoint.get("/worker/v1/config")?;
    serde_json::from_value(value).context("the worker endpoint's config")
}

/// Starts munged and slurmd and waits until SLURM has the node idle.
pub fn start(worker: &Worker, settings: &Settings) -> anyhow::Result<()> {
    let endpoint = Endpoint::new(worker)?;
    let config = node_config(&endpoint)?;
    daemons::start_munged(&worker.dir, &config)?;
    daemons::start_slurmd(&config, settings.cpus, settings.memory_mb)?;
    let started = Instant::now();
    loop {
        let state = daemons::sinfo_state(&config);
        if state.as_deref() == Some("idle") {
            eprintln!(
                "odyssey-worker: node {} is idle in sinfo after {:.1} s",
                config.node,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < IDLE_TIMEOUT,
            "node {} is not idle after {} s (sinfo says {}); see slurmd's log {}",
            config.node,
            IDLE_TIMEOUT.as_secs(),
            state.as_deref().unwrap_or("nothing"),
            config.slurmd_log_file.as_deref().unwrap_or("(none)")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends the health plugin's spool for this node over mutual TLS.
fn ship_health(endpoint: &Endpoint, spool: &Path) -> odyssey_health_wire::spool::Delivered {
    use odyssey_health_wire::spool::Refusal;
    odyssey_health_wire::spool::deliver_with(spool, Duration::from_secs(10), |body| {
        endpoint.post_lines("/worker/v1/health-reports", body).map(|_| ()).map_err(|e| {
            match e.downcast_ref::<crate::api::Refused>() {
                Some(refused) => Refusal::from_status(refused.status, refused.message.clone()),
                None => Refusal::Later(format!("{e:#}")),
            }
        })
    })
}

/// A fresh certificate when two thirds of this one's life are gone.
fn renew_if_due(worker: &mut Worker) -> anyhow::Result<()> {
    let r = &worker.record;
    if now() < r.issued_at + (r.expires_at - r.issued_at) * 2.0 / 3.0 {
        return Ok(());
    }
    let (key, csr) = key_and_csr(&r.name)?;
    let answer = Endpoint::new(worker)?.post("/worker/v1/renew", &json!({ "csr": csr }))?;
    let mut record = r.clone();
    record.serial = text(&answer, "serial")?;
    record.expires_at = number(&answer, "expires_at")?;
    record.issued_at = now();
    let ca = worker.read("ca.pem")?;
    *worker = Worker::save(&worker.dir, &record, Some(&key), &text(&answer, "certificate")?, &ca)?;
    eprintln!("odyssey-worker: certificate renewed ({})", record.serial);
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGTERM and SIGINT end the agent's loop (at its next turn).
fn catch_stop_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// The agent: until SIGTERM, or until it left because an admin asked.
pub fn run(worker: &Worker, settings: &Settings) -> anyhow::Result<()> {
    catch_stop_signals()?;
    let mut worker = worker.clone();
    state::write(&worker.pid_file("agent"), std::process::id().to_string().as_bytes(), 0o644)?;
    let spool = std::path::PathBuf::from(settings.health_spool.replace("%n", &worker.record.name));
    let mut endpoint = Endpoint::new(&worker)?;
    let config = node_config(&endpoint)?;
    let mut last_beat: Option<Instant> = None;
    eprintln!("odyssey-worker: agent running for {} (health spool {})", worker.record.name, spool.display());
    while !STOP.load(Ordering::SeqCst) {
        if last_beat.is_none_or(|at| at.elapsed() >= settings.heartbeat) {
            last_beat = Some(Instant::now());
            if let Err(e) = renew_if_due(&mut worker).and_then(|()| Endpoint::new(&worker)).map(|e| endpoint = e) {
                eprintln!("odyssey-worker: renewal failed: {e:#}");
            }
            // A slurmd that died comes back (SLURM brings the node back too).
            if daemons::slurmd_pid(&config).is_none() {
                eprintln!("odyssey-worker: slurmd is not running; starting it");
                if let Err(e) = daemons::start_slurmd(&config, settings.cpus, settings.memory_mb) {
                    eprintln!("odyssey-worker: {e:#}");
                }
            }
            let beat = json!({
                "load": machine::load(),
                "free_memory_bytes": machine::free_memory_bytes(),
                "slurmd_running": daemons::slurmd_pid(&config).is_some(),
            });
            match endpoint.post("/worker/v1/heartbeat", &beat) {
                Ok(answer) if answer.get("leave_requested").and_then(Value::as_bool) == Some(true) => {
                    eprintln!("odyssey-worker: an admin asked this worker to leave");
                    let _ = std::fs::remove_file(worker.pid_file("agent"));
                    return leave_now(&worker, &endpoint, &config, &spool, Duration::from_secs(300));
                }
                Ok(_) => {}
                Err(e) => eprintln!("odyssey-worker: heartbeat: {e:#}"),
            }
        }
        let done = ship_health(&endpoint, &spool);
        if let Some(why) = done.refusal {
            eprintln!("odyssey-worker: health records: {} files refused, kept in refused/: {why}", done.files_refused);
        }
        if let Some(e) = done.error {
            eprintln!("odyssey-worker: health records: {} files left: {e}", done.files_left);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = std::fs::remove_file(worker.pid_file("agent"));
    eprintln!("odyssey-worker: agent stopped (the node stays in the cluster; `odyssey-worker leave` to leave)");
    Ok(())
}

/// `odyssey-worker leave`: stops the agent, then leaves.
pub fn leave(worker: &Worker, timeout: Duration) -> anyhow::Result<()> {
    let endpoint = Endpoint::new(worker)?;
    let config = node_config(&endpoint)?;
    if let Some(pid) = daemons::alive(&worker.pid_file("agent"), "odyssey-worker") {
        daemons::stop(pid, Duration::from_secs(20));
    }
    // Without a running agent, the spool path is the default's or the one
    // the agent last used; the agent ships it before it stops.
    let spool = std::path::PathBuf::from(crate::DEFAULT_HEALTH_SPOOL.replace("%n", &worker.record.name));
    leave_now(worker, &endpoint, &config, &spool, timeout)
}

fn leave_now(
    worker: &Worker,
    endpoint: &Endpoint,
    config: &NodeConfig,
    spool: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let name = &worker.record.name;
    endpoint.post("/worker/v1/leave", &json!({}))?;
    eprintln!("odyssey-worker: {name} drained; waiting up to {} s for its jobs", timeout.as_secs());
    let running = |endpoint: &Endpoint| -> anyhow::Result<usize> {
        let me = endpoint.get("/worker/v1/self")?;
        Ok(me.get("running_jobs").and_then(Value::as_array).map_or(0, Vec::len))
    };
    let started = Instant::now();
    while running(endpoint)? > 0 {
        if started.elapsed() >= timeout {
            let answer = endpoint.post("/worker/v1/requeue", &json!({}))?;
            eprintln!("odyssey-worker: timeout: jobs requeued: {}", answer.get("requeued").unwrap_or(&Value::Null));
            let requeued = Instant::now();
            while running(endpoint)? > 0 {
                anyhow::ensure!(
                    requeued.elapsed() < Duration::from_secs(60),
                    "jobs still run on {name} a minute after their requeue"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = ship_health(endpoint, spool);
    let stopping = Instant::now();
    daemons::stop_slurmd(config);
    let stopped = stopping.elapsed();
    endpoint.post("/worker/v1/left", &json!({}))?;
    daemons::stop_munged(&worker.dir);
    worker.forget();
    eprintln!(
        "odyssey-worker: {name} left the cluster after {:.1} s (slurmd stopped in {:.1} s); its certificate is revoked",
        started.elapsed().as_secs_f64(),
        stopped.as_secs_f64()
    );
    Ok(())
}
