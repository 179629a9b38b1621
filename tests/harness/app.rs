//! `TestApp`: the bridge in front of the real cluster, in this process,
//! on 127.0.0.1:0 with its own data directory, and logged-in clients.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bridge::config::{Cli, Settings};
use bridge::submission::SubmitHook;
use clap::Parser;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::{unique_name, TestCluster};

/// A running bridge. Dropping it stops the server (its data stays for a
/// restart: see `restart`).
pub struct TestApp {
    pub base: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The settings every test bridge uses: fast polling, cheap hashing.
pub fn test_settings(cluster: &TestCluster, data_dir: &std::path::Path, extra: &[&str]) -> Settings {
    let mut args = vec![
        "bridge".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "--slurm-conf".to_owned(),
        cluster.slurm_conf.display().to_string(),
        "--poll-interval".to_owned(),
        "0.2".to_owned(),
        "--slurm-probe-interval".to_owned(),
        "0.5".to_owned(),
        "--argon2-memory-kib".to_owned(),
        "256".to_owned(),
        "--argon2-iterations".to_owned(),
        "1".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut settings = Settings::from_cli(&Cli::parse_from(args)).expect("test settings");
    // Test bridges serve metrics only when a test asks for a port.
    if !extra.contains(&"--metrics-listen") {
        settings.metrics_listen = None;
    }
    settings
}

impl TestApp {
    pub async fn spawn(cluster: &TestCluster, extra: &[&str]) -> TestApp {
        let data_dir = cluster.state_dir.join("bridge-tests").join(unique_name("app"));
        Self::spawn_on(cluster, data_dir, extra).await
    }

    /// A bridge over an existing data directory (a restart).
    pub async fn spawn_on(cluster: &TestCluster, data_dir: PathBuf, extra: &[&str]) -> TestApp {
        Self::spawn_at(cluster, "127.0.0.1:0", data_dir, extra).await
    }

    /// A bridge listening on `addr`.
    pub async fn spawn_at(cluster: &TestCluster, addr: &str, data_dir: PathBuf, extra: &[&str]) -> TestApp {
        Self::spawn_with_hook(cluster, addr, data_dir, extra, Arc::new(bridge::submission::NoHook)).await
    }

    /// A bridge whose submissions pass through a test's `SubmitHook`.
    pub async fn spawn_with_hook(
        cluster: &TestCluster,
        addr: &str,
        data_dir: PathBuf,
        extra: &[&str],
        hook: Arc<dyn SubmitHook>,
    ) -> TestApp {
        let settings = test_settings(cluster, &data_dir, extra);
        // A fixed address may still be held for a moment by the bridge of
        // the test before (its runtime closes the socket as it shuts down).
        let mut attempt = 0;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("bind {addr}: {e} (a demo bridge still running there? stop it)"),
            }
        };
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bridge::serve_with(
            listener,
            settings,
            async {
                let _ = stopped.await;
            },
            hook,
        ));
        let app = TestApp { base, data_dir, http: reqwest::Client::new(), stop: Some(stop), task: Some(task) };
        // Ready once the first probe saw SLURM.
        for _ in 0..100 {
            if let Ok(r) = app.http.get(format!("{}/readyz", app.base)).send().await {
                if r.status() == 200 {
                    return app;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the bridge never became ready\n{}", cluster.logs());
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> PathBuf {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.data_dir.clone()
    }

    /// An admin account `name` made the way a site makes its first one
    /// (`bridge user add NAME --role admin` beside the running bridge), signed in.
    pub async fn admin(&self, cluster: &TestCluster, name: &str) -> Client {
        use std::io::Write;
        let bridge = cluster.repo.join("target/release/bridge");
        assert!(bridge.exists(), "{} is missing: run scripts/build.sh", bridge.display());
        let password = format!("{name}-admin-password");
        let mut child = std::process::Command::new(&bridge)
            .args([
                "--data-dir",
                self.data_dir.to_str().unwrap(),
                "--argon2-memory-kib",
                "256",
                "--argon2-iterations",
                "1",
            ])
            .args(["user", "add", name, "--role", "admin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "bridge user add: {}", crate::text(&out.stderr));
        let body = json!({"name": name, "password": password});
        let reply = self.http.post(format!("{}/v1/auth/login", self.base)).json(&body).send().await.unwrap();
        assert_eq!(reply.status(), 200, "admin login");
        let tokens: Value = reply.json().await.unwrap();
        Client {
            base: self.base.clone(),
            http: self.http.clone(),
            token: tokens["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Logs in the cluster test account `name` through PAM; a client.
    pub async fn user(&self, name: &str) -> Client {
        login(&self.http, &self.base, name).await
    }
}

/// The Unix password the harness gives a cluster test account (alice, bob):
/// random per test process, so no known password stays on the machine.
pub fn unix_password(name: &str) -> String {
    static SALT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut bytes = [0u8; 12];
        use std::io::Read;
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("read /dev/urandom");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    format!("{name}{salt}")
}

/// Sets the Unix password of a cluster test account, once per test process:
/// the bridge proves Unix accounts through the machine's real PAM stack.
pub fn ensure_unix_password(name: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|n| n == name) {
        return;
    }
    let mut child =
        std::process::Command::new("chpasswd").stdin(std::process::Stdio::piped()).spawn().expect("run chpasswd");
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{name}:{}", unix_password(name)).unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd {name}");
    done.push(name.to_owned());
}

/// Logs in `name` at the bridge at `base` through PAM with the Unix
/// account's own password (the proven path: the bridge account of that name
/// is created if needed and mapped to the Unix account); a client for that
/// user. `name` must be a cluster test account (alice, bob).
pub async fn login(http: &reqwest::Client, base: &str, name: &str) -> Client {
    ensure_unix_password(name);
    let body = json!({"name": name, "password": unix_password(name), "method": "pam"});
    let reply = http.post(format!("{base}/v1/auth/login")).json(&body).send().await.unwrap();
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert_eq!(status, 200, "PAM login {name}: {text}");
    let tokens: Value = serde_json::from_str(&text).unwrap();
    Client { base: base.to_owned(), http: http.clone(), token: tokens["access_token"].as_str().unwrap().to_owned() }
}

/// Registers (if needed) and logs in `name` with a bridge password only: an
/// account with no Unix mapping (it may read, never submit).
pub async fn login_unmapped(http: &reqwest::Client, base: &str, name: &str) -> Client {
    let password = format!("{name}-password-e2e");
    let body = json!({"name": name, "password": password});
    let reply = http.post(format!("{base}/v1/auth/register")).json(&body).send().await.unwrap();
    assert!(matches!(reply.status().as_u16(), 201 | 409), "register {name}: {}", reply.text().await.unwrap());
    let reply = http.post(format!("{base}/v1/auth/login")).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let tokens: Value = reply.json().await.unwrap();
    Client { base: base.to_owned(), http: http.clone(), token: tokens["access_token"].as_str().unwrap().to_owned() }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An authenticated API client.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

/// Status and JSON body of a reply.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Client {
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.bearer_auth(&self.token).send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text, headers }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `GET /v1/jobs/{id}/output?follow=true`: the response as it comes,
    /// so the caller reads the event stream (ended by the job, or after a
    /// minute) or its refusal.
    pub async fn follow_output(&self, id: i64) -> reqwest::Response {
        let url = format!("{}/v1/jobs/{id}/output?follow=true", self.base);
        self.http.get(url).bearer_auth(&self.token).timeout(Duration::from_secs(60)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(format!("{}{path}", self.base))).await
    }

    /// How many jobs the caller's first page lists.
    pub async fn job_count(&self) -> usize {
        self.get("/v1/jobs").await.body["jobs"].as_array().map_or(0, Vec::len)
    }

    /// Submits and expects 201; the job.
    pub async fn submit(&self, body: Value) -> Value {
        let reply = self.post("/v1/jobs", body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body
    }

    /// Polls the job (bounded) until it is finished; the job.
    pub async fn wait_finished(&self, id: i64) -> Value {
        for _ in 0..1200 {
            let reply = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            if reply.body["finished"] == true {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} did not finish within 120 s");
    }

    /// Polls (bounded) until the job has this state.
    pub async fn wait_state(&self, id: i64, state: &str) -> Value {
        for _ in 0..600 {
            let reply = self.get(&format!("/v1/jobs/{id}")).await;
            if reply.body["state"] == state {
                return reply.body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("job {id} never reached {state}");
    }
}

/// Waits until the bridge at `base` answers /readyz with 200 (30 s), or
/// fails with the log of the process that should be serving it.
pub async fn wait_ready(http: &reqwest::Client, base: &str, log: &std::path::Path) {
    for _ in 0..300 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("bridge at {base} never became ready in 30 s; its log:\n{log}");
}

/// The address plugstack.conf names for health reports (the cluster
/// bridge's side of the node network): tests that need the plugin's records
/// run their bridge there, one at a time (`HEALTH_ADDR`).
pub const HEALTH_BRIDGE: &str = "10.199.0.1:8080";

/// One test at a time owns the address the plugin reports to.
pub static HEALTH_ADDR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A bridge at `HEALTH_BRIDGE` with the cluster's health secret (hold
/// `HEALTH_ADDR` while it runs).
pub async fn health_app(cluster: &TestCluster) -> TestApp {
    let secret = cluster.state_dir.join("etc/health.secret");
    let data_dir = cluster.state_dir.join("bridge-tests").join(unique_name("health"));
    TestApp::spawn_at(cluster, HEALTH_BRIDGE, data_dir, &["--health-secret-file", secret.to_str().unwrap()]).await
}
