//! munged and slurmd on this machine, started from what the bridge's worker
//! endpoint says (the cluster's munge key, the controller for configless
//! `slurmd -Z --conf-server`), stopped when the worker leaves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Pid, User};
use serde::Deserialize;

/// `GET /worker/v1/config`.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeConfig {
    pub node: String,
    pub conf_server: String,
    pub munge_key: String,
    pub munge_socket: Option<String>,
    pub slurmd_spool_dir: String,
    pub slurmd_log_file: Option<String>,
    pub slurmd_pid_file: Option<String>,
    pub features: Vec<String>,
}

/// munged's default socket, when slurm.conf's AuthInfo names none.
const DEFAULT_MUNGE_SOCKET: &str = "/run/munge/munge.socket.2";

/// The pid in `file` if that process runs `comm`. A zombie does not run: a
/// daemon killed with its machine keeps its name until its parent collects
/// it, which an init in a container can do late, and a slurmd taken for
/// running would never be started again (a rejoin then waited in vain).
pub fn alive(file: &Path, comm: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let running = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name in parentheses, which may itself
    // hold ") ".
    let zombie = stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'));
    (running.trim() == comm && !zombie).then_some(pid)
}

/// SIGTERM, up to `grace`, then SIGKILL.
pub fn stop(pid: i32, grace: Duration) {
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let started = Instant::now();
    while started.elapsed() < grace {
        if kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = kill(pid, Signal::SIGKILL);
}

fn munge_dir(worker_dir: &Path) -> PathBuf {
    worker_dir.join("munge")
}

/// Writes the cluster's munge key and starts munged on the socket slurm
/// will use, unless ours already runs.
pub fn start_munged(worker_dir: &Path, config: &NodeConfig) -> anyhow::Result<()> {
    let dir = munge_dir(worker_dir);
    let pid_file = dir.join("munged.pid");
    if alive(&pid_file, "munged").is_some() {
        return Ok(());
    }
    let munge = User::from_name("munge")?.context("there is no munge user on this machine (install munge)")?;
    std::fs::create_dir_all(&dir)?;
    chown(&dir, Some(munge.uid), Some(munge.gid))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let key =
        base64::engine::general_purpose::STANDARD.decode(&config.munge_key).context("the munge key is not base64")?;
    let key_path = dir.join("munge.key");
    crate::state::write(&key_path, &key, 0o400)?;
    chown(&key_path, Some(munge.uid), Some(munge.gid))?;
    let socket = PathBuf::from(config.munge_socket.as_deref().unwrap_or(DEFAULT_MUNGE_SOCKET));
    let socket_dir = socket.parent().context("the munge socket has no directory")?;
    std::fs::create_dir_all(socket_dir)?;
    chown(socket_dir, Some(munge.uid), Some(munge.gid))?;
    std::fs::set_permissions(socket_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let _ = std::fs::remove_file(&socket);
    let status = Command::new("runuser")
        .args(["-u", "munge", "--", "munged"])
        .arg(format!("--key-file={}", key_path.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", pid_file.display()))
        .arg(format!("--log-file={}", dir.join("munged.log").display()))
        .arg(format!("--seed-file={}", dir.join("munged.seed").display()))
        .status()
        .context("start munged")?;
    anyhow::ensure!(status.success(), "munged did not start (see {})", dir.join("munged.log").display());
    // slurmd fetches its configuration (configless) before it knows
    // AuthInfo's socket, through munge's default one: that name leads to
    // ours too.
    let default = Path::new(DEFAULT_MUNGE_SOCKET);
    if socket != default {
        let default_dir = default.parent().expect("the default socket has a directory");
        std::fs::create_dir_all(default_dir)?;
        chown(default_dir, Some(munge.uid), Some(munge.gid))?;
        let _ = std::fs::remove_file(default);
        std::os::unix::fs::symlink(&socket, default)
            .with_context(|| format!("link {} to {}", default.display(), socket.display()))?;
    }
    Ok(())
}

pub fn stop_munged(worker_dir: &Path) {
    if let Some(pid) = alive(&munge_dir(worker_dir).join("munged.pid"), "munged") {
        stop(pid, Duration::from_secs(5));
    }
}

/// slurmd's pid file, from the config the bridge gave.
pub fn slurmd_pid_file(config: &NodeConfig) -> Option<PathBuf> {
    config.slurmd_pid_file.as_ref().map(PathBuf::from)
}

pub fn slurmd_pid(config: &NodeConfig) -> Option<i32> {
    slurmd_pid_file(config).and_then(|f| alive(&f, "slurmd"))
}

/// Starts `slurmd -Z` (a dynamic node) with this machine's CPUs, memory and
/// features, its configuration fetched from slurmctld, unless it runs.
pub fn start_slurmd(config: &NodeConfig, cpus: u32, memory_mb: u64) -> anyhow::Result<()> {
    if slurmd_pid(config).is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(&config.slurmd_spool_dir)
        .with_context(|| format!("create slurmd's spool {}", config.slurmd_spool_dir))?;
    for file in [&config.slurmd_log_file, &config.slurmd_pid_file].into_iter().flatten() {
        if let Some(parent) = Path::new(file).parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
    }
    let mut conf = format!("CPUs={cpus} RealMemory={memory_mb}");
    if !config.features.is_empty() {
        conf.push_str(&format!(" Feature={}", config.features.join(",")));
    }
    let output = Command::new("slurmd")
        .env_remove("SLURM_CONF")
        .args(["-Z", "--conf-server", &config.conf_server, "-N", &config.node, "--conf", &conf])
        .output()
        .context("start slurmd")?;
    anyhow::ensure!(
        output.status.success(),
        "slurmd did not start: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

pub fn stop_slurmd(config: &NodeConfig) {
    if let Some(pid) = slurmd_pid(config) {
        stop(pid, Duration::from_secs(15));
    }
}

/// The node's state as sinfo sees it, through the configuration slurmd
/// fetched (configless: no slurm.conf of this machine's own).
pub fn sinfo_state(config: &NodeConfig) -> Option<String> {
    let conf = Path::new(&config.slurmd_spool_dir).join("conf-cache/slurm.conf");
    let output =
        Command::new("sinfo").env("SLURM_CONF", &conf).args(["-h", "-n", &config.node, "-o", "%T"]).output().ok()?;
    let state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (output.status.success() && !state.is_empty()).then_some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_daemon_not_yet_collected_is_not_alive() {
        let dir = std::env::temp_dir().join(format!("alive-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid_file = dir.join("sleep.pid");
        std::fs::write(&pid_file, child.id().to_string()).unwrap();
        assert_eq!(alive(&pid_file, "sleep"), Some(child.id() as i32));
        assert_eq!(alive(&pid_file, "slurmd"), None, "another program's pid");
        // Killed and not collected: a zombie, still named sleep.
        child.kill().unwrap();
        let stat = format!("/proc/{}/stat", child.id());
        while !std::fs::read_to_string(&stat).unwrap().contains(") Z") {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap().trim(), "sleep");
        assert_eq!(alive(&pid_file, "sleep"), None);
        child.wait().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
