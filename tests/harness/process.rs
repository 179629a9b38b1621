//! The bridge binary run as a process of its own (as systemd or an
//! operator runs it), for tests that restart it, read its log, or run its
//! administrative commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::app::wait_ready;
use crate::{free_port, text, TestCluster};

/// The bridge binary as a process of its own, logging to a file.
pub struct BridgeProcess {
    pub child: Child,
    pub base: String,
    /// stderr, appended to by every start on the same port.
    pub log: PathBuf,
    pub port: u16,
}

pub fn bridge_binary(cluster: &TestCluster) -> PathBuf {
    let bridge = cluster.repo.join("target/release/bridge");
    assert!(bridge.exists(), "{} is missing: run scripts/build.sh", bridge.display());
    bridge
}

/// `bridge ARGS` over `data_dir` (fast password hashing), to completion.
pub fn run(cluster: &TestCluster, data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bridge_binary(cluster))
        .args(["--data-dir", data_dir.to_str().unwrap(), "--argon2-memory-kib", "256", "--argon2-iterations", "1"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

impl BridgeProcess {
    pub fn start(cluster: &TestCluster, data_dir: &Path, extra: &[&str]) -> BridgeProcess {
        Self::start_on(cluster, data_dir, free_port(), extra)
    }

    /// On a given port (a restart where clients expect it).
    pub fn start_on(cluster: &TestCluster, data_dir: &Path, port: u16, extra: &[&str]) -> BridgeProcess {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("bridge-{port}.log"));
        let child = Command::new(bridge_binary(cluster))
            .args(["--data-dir", data_dir.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--slurm-conf", cluster.slurm_conf.to_str().unwrap(), "--poll-interval", "0.2"])
            .args(["--slurm-probe-interval", "0.5", "--argon2-memory-kib", "256", "--argon2-iterations", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        BridgeProcess { child, base: format!("http://127.0.0.1:{port}"), log, port }
    }

    pub async fn ready(&self, http: &reqwest::Client) {
        wait_ready(http, &self.base, &self.log).await;
    }

    /// SIGTERM, and the exit it leads to.
    pub fn stop(mut self) -> String {
        terminate(self.child.id());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the bridge exited {status} on SIGTERM");
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, as systemd stops a service.
fn terminate(pid: u32) {
    let out = Command::new("kill").args(["-TERM", &pid.to_string()]).output().unwrap();
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
}
