use axum::http::StatusCode;
use bridge::slurm::probe::SlurmHealth;

use crate::support::{call, test_state};

#[tokio::test]
async fn healthz_reports_the_latest_probe() {
    let t = test_state(&[]).await;
    let reply = call(&t.state, "GET", "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "ok");
    assert_eq!(reply.body["slurm"]["reachable"], false);
    assert_eq!(reply.body["slurm"]["error"], "not probed yet");

    t.health
        .send(SlurmHealth {
            reachable: true,
            controller: Some("Slurmctld(primary) at vm is UP".into()),
            error: None,
            checked_at: Some(2.0),
        })
        .unwrap();
    let reply = call(&t.state, "GET", "/healthz", None, None).await;
    assert_eq!(reply.body["slurm"]["reachable"], true);
    assert_eq!(reply.body["slurm"]["controller"], "Slurmctld(primary) at vm is UP");
    assert!(reply.body["slurm"].get("error").is_none());
}

#[tokio::test]
async fn readyz_needs_slurm_and_a_writable_database() {
    let t = test_state(&[]).await;
    let reply = call(&t.state, "GET", "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["database"], "writable");
    t.health
        .send(SlurmHealth { reachable: true, controller: Some("up".into()), error: None, checked_at: Some(1.0) })
        .unwrap();
    let reply = call(&t.state, "GET", "/readyz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["ready"], true);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problem_json() {
    let t = test_state(&[]).await;
    let cases = [
        ("GET", "/v1/nothing-here", StatusCode::NOT_FOUND, "no resource at /v1/nothing-here"),
        ("DELETE", "/healthz", StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    ];
    for (method, uri, expected, detail) in cases {
        let reply = call(&t.state, method, uri, None, None).await;
        assert_eq!(reply.problem(expected), detail, "{method} {uri}");
        assert_eq!(reply.body["title"], expected.canonical_reason().unwrap());
    }
}

#[tokio::test]
async fn openapi_document_names_every_route() {
    let t = test_state(&[]).await;
    let reply = call(&t.state, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["openapi"], "3.1.0");
    let paths = reply.body["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/readyz",
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/auth/me",
        "/v1/users",
        "/v1/users/{name}",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/output",
        "/v1/jobs/{id}/health",
        "/v1/health-reports",
        "/v1/nodes",
        "/v1/openapi.json",
        "/v1/workers",
        "/v1/workers/tokens",
        "/v1/workers/join",
        "/v1/workers/{name}",
    ] {
        assert!(paths.contains_key(path), "openapi.json lacks {path}");
    }
}

// See: #14. docs/openapi.json is the document the bridge serves, response
// schemas generated from the response types: regenerate it when they change.
#[test]
fn issue_14_docs_openapi_json_is_the_generated_document() {
    let docs = include_str!("../../docs/openapi.json");
    assert!(
        docs == bridge::http::openapi::DOCUMENT.as_str(),
        "docs/openapi.json is stale: run `target/release/bridge openapi > docs/openapi.json`"
    );
}
