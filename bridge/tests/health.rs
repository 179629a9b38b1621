use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::http::{app, AppState};
use bridge::slurm::probe::SlurmHealth;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

fn state(health: SlurmHealth) -> (watch::Sender<SlurmHealth>, AppState) {
    let (tx, rx) = watch::channel(health);
    (tx, AppState { slurm_health: rx })
}

fn unprobed() -> SlurmHealth {
    SlurmHealth { reachable: false, controller: None, error: Some("not probed yet".into()), checked_at: None }
}

async fn call(state: AppState, method: &str, uri: &str) -> (StatusCode, String, serde_json::Value) {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = app(state).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn healthz_reports_the_latest_probe() {
    let (tx, state) = state(SlurmHealth {
        reachable: false,
        controller: None,
        error: Some("scontrol did not finish".into()),
        checked_at: Some(1.0),
    });
    let (status, _, body) = call(state.clone(), "GET", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["slurm"]["reachable"], false);
    assert_eq!(body["slurm"]["error"], "scontrol did not finish");

    tx.send(SlurmHealth {
        reachable: true,
        controller: Some("Slurmctld(primary) at vm is UP".into()),
        error: None,
        checked_at: Some(2.0),
    })
    .unwrap();
    let (_, _, body) = call(state, "GET", "/healthz").await;
    assert_eq!(body["slurm"]["reachable"], true);
    assert_eq!(body["slurm"]["controller"], "Slurmctld(primary) at vm is UP");
    assert!(body["slurm"].get("error").is_none());
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problem_json() {
    let cases = [
        ("GET", "/v1/nothing-here", StatusCode::NOT_FOUND, "no resource at /v1/nothing-here"),
        ("DELETE", "/healthz", StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    ];
    for (method, uri, expected, detail) in cases {
        let (_tx, state) = state(unprobed());
        let (status, content_type, body) = call(state, method, uri).await;
        assert_eq!(status, expected, "{method} {uri}");
        assert_eq!(content_type, "application/problem+json", "{method} {uri}");
        assert_eq!(body["status"], expected.as_u16());
        assert_eq!(body["title"], expected.canonical_reason().unwrap());
        assert_eq!(body["detail"], detail);
    }
}
