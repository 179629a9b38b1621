use axum::http::StatusCode;
use serde_json::json;

use crate::support::{call, login, make_admin, test_state};

/// Maps `name` to the Unix account `nobody` (uid 65534 on Debian), which
/// exists everywhere; these requests fail validation before sbatch.
async fn mapped_user(t: &crate::support::TestState, name: &str) -> String {
    login(&t.state, "admin_x").await;
    make_admin(&t.state, "admin_x").await;
    let (admin, _) = login(&t.state, "admin_x").await;
    let (token, _) = login(&t.state, name).await;
    let reply =
        call(&t.state, "PATCH", &format!("/v1/users/{name}"), Some(&admin), Some(json!({"unix_user": "nobody"}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    token
}

#[tokio::test]
async fn every_injection_class_is_refused_before_sbatch() {
    let t = test_state(&["--max-env-entries", "3"]).await;
    let token = mapped_user(&t, "carol").await;
    let cases = [
        (json!({"name": "x\n#SBATCH --uid=0", "command": ["true"]}), "name"),
        (json!({"name": "--uid=0", "command": ["true"]}), "name"),
        (json!({"partition": "debug --exclusive", "command": ["true"]}), "partition"),
        (json!({"partition": "-p", "command": ["true"]}), "partition"),
        (json!({"memory": "1G\u{0000}", "command": ["true"]}), "memory"),
        (json!({"working_dir": "/home/x\n#SBATCH --uid=0", "command": ["true"]}), "working_dir"),
        (json!({"stdout": "--output=/etc/passwd", "command": ["true"]}), "stdout"),
        (json!({"comment": "#SBATCH --uid=0", "command": ["true"]}), "comment"),
        (json!({"array": "1-3 --uid=0", "command": ["true"]}), "array"),
        (json!({"time_limit": "1:00\n#SBATCH", "command": ["true"]}), "time_limit"),
        (json!({"env": {"A=B": "x"}, "command": ["true"]}), "env.A=B"),
        (json!({"env": {"SBATCH_UID": "0"}, "command": ["true"]}), "env.SBATCH_UID"),
        (json!({"env": {"A": "1", "B": "2", "C": "3", "D": "4"}, "command": ["true"]}), "env"),
        (json!({"script": "echo no interpreter line"}), "script"),
        (json!({"script": "#!/bin/sh\n", "command": ["true"]}), "script"),
        (json!({"command": ["a\u{0000}b"]}), "command[0]"),
        (json!({"nodes": 0, "command": ["true"]}), "nodes"),
        // Field lengths: names up to 128, any field up to --max-field-bytes.
        (json!({"name": "n".repeat(129), "command": ["true"]}), "name"),
        (json!({"comment": "c".repeat(5000), "command": ["true"]}), "comment"),
        (json!({"env": {"BIG": "v".repeat(5000)}, "command": ["true"]}), "env.BIG"),
    ];
    for (body, field) in cases {
        let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", reply.text);
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
    }
    // The account's home (nobody's is /nonexistent) is the default working
    // directory, and it must exist before sbatch is asked.
    let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(json!({"command": ["true"]}))).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "working_dir", "{}", reply.text);
    // Wrong types are problems too, with the serde message.
    let reply =
        call(&t.state, "POST", "/v1/jobs", Some(&token), Some(json!({"nodes": "three", "command": ["true"]}))).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(json!({"command": ["true"], "uid": 0}))).await;
    assert!(reply.problem(StatusCode::UNPROCESSABLE_ENTITY).contains("unknown field `uid`"), "{}", reply.text);
    // Nothing was recorded.
    let list = call(&t.state, "GET", "/v1/jobs", Some(&token), None).await;
    assert_eq!(list.body["jobs"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_account_without_a_unix_mapping_gets_403() {
    let t = test_state(&[]).await;
    let (token, _) = login(&t.state, "nounixaccount").await;
    let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(json!({"command": ["true"]}))).await;
    let detail = reply.problem(StatusCode::FORBIDDEN);
    assert!(detail.contains("no valid Unix mapping") && detail.contains("nounixaccount"), "{detail}");
}

#[tokio::test]
async fn bad_idempotency_keys_and_queries_are_problems() {
    let t = test_state(&[]).await;
    let token = mapped_user(&t, "carol").await;
    let request = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/jobs")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", "x".repeat(300))
        .body(axum::body::Body::from(json!({"command": ["true"]}).to_string()))
        .unwrap();
    let reply = crate::support::send(&t.state, request).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "Idempotency-Key");
    call(&t.state, "GET", "/v1/jobs?limit=0", Some(&token), None).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    call(&t.state, "GET", "/v1/jobs?limit=abc", Some(&token), None).await.problem(StatusCode::UNPROCESSABLE_ENTITY);
    call(&t.state, "GET", "/v1/jobs/999", Some(&token), None).await.problem(StatusCode::NOT_FOUND);
    call(&t.state, "GET", "/v1/jobs/abc", Some(&token), None).await.problem(StatusCode::NOT_FOUND);
    call(&t.state, "GET", "/v1/jobs?user=someone", Some(&token), None).await.problem(StatusCode::FORBIDDEN);
}
