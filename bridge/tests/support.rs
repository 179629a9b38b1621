use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::config::{Cli, Settings};
use bridge::http::{app, AppState};
use bridge::slurm::probe::SlurmHealth;
use clap::Parser;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// An AppState over a fresh temporary data directory. No background task
/// runs: the SLURM probe's channel is held by the test.
pub struct TestState {
    pub state: AppState,
    pub health: tokio::sync::watch::Sender<SlurmHealth>,
    pub dir: std::path::PathBuf,
}

impl Drop for TestState {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn unprobed() -> SlurmHealth {
    SlurmHealth { reachable: false, controller: None, error: Some("not probed yet".into()), checked_at: None }
}

pub async fn test_state(extra_args: &[&str]) -> TestState {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("bridge-test-{}-{n}", std::process::id()));
    let mut args =
        vec!["bridge", "--data-dir", dir.to_str().unwrap(), "--argon2-memory-kib", "64", "--argon2-iterations", "1"];
    args.extend_from_slice(extra_args);
    let mut cli = Cli::parse_from(args);
    // Router tests never reach SLURM, whatever the environment says.
    cli.slurm_conf = None;
    let settings = Settings::from_cli(&cli).unwrap();
    let store = bridge::open_store(&settings).unwrap();
    let (health, health_rx) = tokio::sync::watch::channel(unprobed());
    let (_nodes_tx, nodes) = tokio::sync::watch::channel(Arc::new(Default::default()));
    let feeds = bridge::Feeds {
        slurm_health: health_rx,
        nodes,
        stopping: bridge::shutdown::Stopping::never(),
        policy: Default::default(),
    };
    let hook = Arc::new(bridge::submission::NoHook);
    let state = bridge::build_state(settings, feeds, store, Default::default(), hook).await.unwrap();
    TestState { state, health, dir }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Asserts an RFC 9457 problem with this status; its detail.
    pub fn problem(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.headers["content-type"], "application/problem+json", "{}", self.text);
        assert_eq!(self.body["status"], status.as_u16());
        assert_eq!(self.body["type"], "about:blank");
        self.body["detail"].as_str().unwrap().to_owned()
    }
}

pub async fn send(state: &AppState, request: Request<Body>) -> Reply {
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

pub async fn call(state: &AppState, method: &str, uri: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => builder.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    };
    send(state, request.unwrap()).await
}

/// Registers `name` (password `name` + "-password") and logs in: the tokens.
pub async fn login(state: &AppState, name: &str) -> (String, String) {
    let password = format!("{name}-password");
    let reply = call(state, "POST", "/v1/auth/register", None, Some(json!({"name": name, "password": password}))).await;
    assert!(reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT, "{}", reply.text);
    let reply = call(state, "POST", "/v1/auth/login", None, Some(json!({"name": name, "password": password}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    (reply.body["access_token"].as_str().unwrap().to_owned(), reply.body["refresh_token"].as_str().unwrap().to_owned())
}

/// Makes `name` an admin directly in the store (as `bridge user add` would).
pub async fn make_admin(state: &AppState, name: &str) {
    let name = name.to_owned();
    state
        .store
        .call(move |conn| {
            conn.execute("UPDATE users SET role = 'admin' WHERE name = ?1", [name])?;
            Ok(())
        })
        .await
        .unwrap();
}
