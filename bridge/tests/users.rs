use axum::http::StatusCode;
use serde_json::json;

use crate::support::{call, login, make_admin, test_state};

#[tokio::test]
async fn only_admins_manage_users() {
    let t = test_state(&[]).await;
    let (alice, _) = login(&t.state, "alice").await;
    call(&t.state, "GET", "/v1/users", Some(&alice), None).await.problem(StatusCode::FORBIDDEN);
    call(&t.state, "PATCH", "/v1/users/alice", Some(&alice), Some(json!({"role": "admin"})))
        .await
        .problem(StatusCode::FORBIDDEN);

    login(&t.state, "root_admin").await;
    make_admin(&t.state, "root_admin").await;
    let (admin, _) = login(&t.state, "root_admin").await;
    let list = call(&t.state, "GET", "/v1/users", Some(&admin), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.body.as_array().unwrap().len(), 2);

    let one = call(&t.state, "GET", "/v1/users/alice", Some(&admin), None).await;
    assert_eq!((one.status, one.body["name"].as_str()), (StatusCode::OK, Some("alice")), "{}", one.text);
    call(&t.state, "GET", "/v1/users/ghost", Some(&admin), None).await.problem(StatusCode::NOT_FOUND);
    call(&t.state, "GET", "/v1/users/alice", Some(&alice), None).await.problem(StatusCode::FORBIDDEN);

    let viewer = call(&t.state, "PATCH", "/v1/users/alice", Some(&admin), Some(json!({"role": "viewer"}))).await;
    assert_eq!(viewer.body["role"], "viewer", "{}", viewer.text);
    // A viewer reads but does not submit.
    call(&t.state, "POST", "/v1/jobs", Some(&alice), Some(json!({"command": ["true"]})))
        .await
        .problem(StatusCode::FORBIDDEN);
    assert_eq!(call(&t.state, "GET", "/v1/jobs", Some(&alice), None).await.status, StatusCode::OK);

    // A Unix mapping must name a real, non-system account.
    let reply = call(&t.state, "PATCH", "/v1/users/alice", Some(&admin), Some(json!({"unix_user": "daemon"}))).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "unix_user");
    // nobody (65534) is above the default uid ceiling (60000).
    let reply = call(&t.state, "PATCH", "/v1/users/alice", Some(&admin), Some(json!({"unix_user": "nobody"}))).await;
    assert!(reply.problem(StatusCode::UNPROCESSABLE_ENTITY).contains("outside the allowed range"), "{}", reply.text);

    // Disabling stops the account's tokens at once.
    let disabled = call(&t.state, "PATCH", "/v1/users/alice", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.body["disabled"], true);
    call(&t.state, "GET", "/v1/auth/me", Some(&alice), None).await.problem(StatusCode::FORBIDDEN);

    call(&t.state, "PATCH", "/v1/users/ghost", Some(&admin), Some(json!({"disabled": true})))
        .await
        .problem(StatusCode::NOT_FOUND);
    call(&t.state, "PATCH", "/v1/users/root_admin", Some(&admin), Some(json!({"role": "user"})))
        .await
        .problem(StatusCode::CONFLICT);
}
