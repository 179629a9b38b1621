//! Issue #12: the real Prometheus and Alertmanager (`slurm-conf/monitoring`)
//! in front of a real bridge. A node's slurmd is killed; the alert fires in
//! Prometheus and reaches a webhook through Alertmanager. Every metric the
//! shipped rules name is served.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::app::TestApp;
use e2e::{free_port, unique_name, TestCluster};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook receiver: every POST body Alertmanager sends, as JSON.
async fn webhook(port: u16) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Headers, then Content-Length bytes of body.
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else { continue };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        if let Ok(body) = serde_json::from_slice::<Value>(&buf[end + 4..end + 4 + length]) {
                            let _ = tx.send(body);
                        }
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    rx
}

/// One monitoring instance of this test's own (ports, directory).
struct Monitoring {
    repo: std::path::PathBuf,
    env: Vec<(String, String)>,
    prometheus: String,
}

impl Monitoring {
    fn command(&self, args: &[&str]) -> std::process::Output {
        let mut command = std::process::Command::new("bash");
        command.arg(self.repo.join("slurm-conf/monitoring")).args(args);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        e2e::run_bounded(command)
    }

    async fn query(&self, http: &reqwest::Client, promql: &str) -> Vec<Value> {
        let reply =
            http.get(format!("http://{}/api/v1/query", self.prometheus)).query(&[("query", promql)]).send().await;
        let Ok(reply) = reply else { return Vec::new() };
        let body: Value = reply.json().await.unwrap_or_default();
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        let _ = self.command(&["down"]);
    }
}

/// The metric names the shipped rules' expressions use (label matchers and
/// histogram suffixes stripped).
fn names_in_rules(repo: &Path) -> Vec<String> {
    let rules = std::fs::read_to_string(repo.join("monitoring/alerts.yml")).unwrap();
    // Expressions only: annotations may mention a metric for the reader.
    let rules: String = rules
        .lines()
        .filter(|l| !["summary:", "description:", "#"].iter().any(|p| l.trim_start().starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut names: Vec<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("bridge_") || w.starts_with("slurm_"))
        .map(|w| w.trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_dead_node_fires_an_alert_through_prometheus_to_alertmanager() {
    let (cluster, _guard) = TestCluster::exclusive();
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let app = TestApp::spawn(cluster, &["--metrics-listen", &metrics]).await;
    let hook_port = free_port();
    let mut alerts = webhook(hook_port).await;
    let (prometheus, alertmanager) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let dir = cluster.state_dir.join("bridge-tests").join(unique_name("monitoring"));
    let monitoring = Monitoring {
        repo: cluster.repo.clone(),
        env: vec![
            ("ODYSSEY_STATE_DIR".into(), cluster.state_dir.display().to_string()),
            ("ODYSSEY_MONITORING_DIR".into(), dir.display().to_string()),
            ("ODYSSEY_PROMETHEUS".into(), prometheus.clone()),
            ("ODYSSEY_ALERTMANAGER".into(), alertmanager.clone()),
        ],
        prometheus: prometheus.clone(),
    };
    let webhook_url = format!("http://127.0.0.1:{hook_port}/alerts");
    let up = monitoring.command(&["up", "--bridge-metrics", &metrics, "--webhook", &webhook_url]);
    assert!(up.status.success(), "monitoring up: {}{}", e2e::text(&up.stdout), e2e::text(&up.stderr));

    // A workload, so every panel has series: a job that completes, one
    // that fails, one still running, and a request the API refuses.
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    for command in [json!(["true"]), json!(["false"])] {
        let job = alice.submit(json!({"command": command, "working_dir": dir})).await;
        alice.wait_finished(job["id"].as_i64().unwrap()).await;
    }
    let running = alice.submit(json!({"command": ["sleep", "300"], "working_dir": dir})).await;
    let running_id = running["id"].as_i64().unwrap();
    alice.wait_state(running_id, "RUNNING").await;
    assert_eq!(alice.get("/v1/jobs/999999999").await.status, 404);

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let idle = loop {
        let up = monitoring.query(&http, "up{job=\"bridge\"}").await;
        let idle = monitoring.query(&http, "slurm_nodes_idle").await;
        if up.first().map(|s| s["value"][1] == "1") == Some(true) && !idle.is_empty() {
            break idle[0]["value"][1].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "Prometheus never scraped the bridge: {up:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(idle, cluster.ok("sinfo", &["-h", "-t", "idle", "-o", "%D"]).trim(), "slurm_nodes_idle");
    // Every metric the rules name is served (a renamed metric fails here).
    // (Only with an OpenID provider configured: tests/oidc.rs reads it.)
    let configured_only = ["bridge_oidc_key_fetches_total"];
    for name in names_in_rules(&cluster.repo).into_iter().filter(|n| !configured_only.contains(&n.as_str())) {
        let found = monitoring.query(&http, &format!("count({{__name__=~\"{name}(_bucket)?\"}})")).await;
        assert!(!found.is_empty(), "Prometheus has no series named {name}, which monitoring/alerts.yml uses");
    }

    // Every query of the Grafana dashboard returns series (no panel left
    // empty by a typo or a renamed metric); scrapes lag, so within a minute.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.repo.join("monitoring/grafana/dashboards/cloud-odyssey.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut empty = Vec::new();
        for expr in &exprs {
            if monitoring.query(&http, expr).await.is_empty() {
                empty.push(expr.clone());
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "dashboard queries without series: {empty:#?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(alice.delete(&format!("/v1/jobs/{running_id}")).await.status, 202);
    alice.wait_finished(running_id).await;

    // c3's slurmd dies; slurmctld marks the node down after SlurmdTimeout.
    let pid = std::fs::read_to_string(cluster.state_dir.join("run/slurmd-c3.pid")).unwrap();
    cluster.ok("kill", &["-9", pid.trim()]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let alert = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(body)) = tokio::time::timeout(remaining, alerts.recv()).await else {
            panic!("no SlurmNodesDown alert reached the webhook within 180 s; nodes: {:?}", cluster.node_states());
        };
        let firing = body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["labels"]["alertname"] == "SlurmNodesDown" && a["status"] == "firing");
        if let Some(alert) = firing {
            break alert.clone();
        }
    };
    assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
    assert_eq!(alert["annotations"]["summary"], "1 node(s) down", "{alert}");
    // Prometheus itself shows it firing.
    let firing = monitoring.query(&http, "ALERTS{alertname=\"SlurmNodesDown\",alertstate=\"firing\"}").await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    drop(monitoring);
    cluster.up();
}
