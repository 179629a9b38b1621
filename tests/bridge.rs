//! The bridge in front of the real cluster.

use std::time::Duration;

use bridge::config::{LogFormat, Settings};
use e2e::TestCluster;
use tokio::net::TcpListener;

/// Starts the bridge on 127.0.0.1:0 with this slurm.conf; its address.
async fn spawn_bridge(slurm_conf: std::path::PathBuf) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings = Settings {
        listen: addr,
        slurm_conf: Some(slurm_conf),
        slurm_probe_interval: Duration::from_millis(200),
        slurm_timeout: Duration::from_secs(5),
        log_format: LogFormat::Text,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bridge::serve(listener, settings, async {
        let _ = stopped.await;
    }));
    (format!("http://{addr}"), stop)
}

/// Polls /healthz until its probe has run once; the body.
async fn probed_health(base: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let response = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        if !body["slurm"]["checked_at"].is_null() {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the SLURM probe never ran");
}

#[tokio::test]
async fn healthz_says_slurm_answers() {
    let (cluster, _guard) = TestCluster::ensure();
    let (base, _stop) = spawn_bridge(cluster.slurm_conf.clone()).await;
    let body = probed_health(&base).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["slurm"]["reachable"], true, "{body}");
    assert!(body["slurm"]["controller"].as_str().unwrap().ends_with("is UP"), "{body}");
}

#[tokio::test]
async fn healthz_says_when_slurm_does_not_answer() {
    let (cluster, _guard) = TestCluster::ensure();
    // The same cluster's config with the controller on a port nobody serves.
    let conf = std::fs::read_to_string(&cluster.slurm_conf).unwrap();
    let conf = conf.replace("SlurmctldPort=6817", "SlurmctldPort=6999");
    let dir = cluster.shared_dir.join("scratch").join(e2e::unique_name("deadctld"));
    std::fs::create_dir_all(&dir).unwrap();
    let dead_conf = dir.join("slurm.conf");
    std::fs::write(&dead_conf, conf).unwrap();
    let (base, _stop) = spawn_bridge(dead_conf).await;
    let body = probed_health(&base).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(body["slurm"]["reachable"], false, "{body}");
    assert!(body["slurm"]["error"].as_str().unwrap().contains("scontrol"), "{body}");
    std::fs::remove_dir_all(dir).unwrap();
}
