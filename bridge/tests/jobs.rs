use axum::http::StatusCode;
use serde_json::json;

use crate::support::{call, login, make_admin, test_state};

/// Maps `name` to the Unix account `nobody` (uid 65534 on Debian), which
/// exists everywhere; these requests fail validation before sbatch. The
/// state must allow uid 65534 (`--uid-ceiling 65534`): by default nobody is
/// out of range.
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
    let t = test_state(&["--max-env-entries", "3", "--uid-ceiling", "65534"]).await;
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
        // Directives outside the allowlist, and bad values in allowed ones
        // (issue #8): refused with their line, like the JSON fields.
        (json!({"script": "#!/bin/cat\n#SBATCH --bbf=/etc/shadow\n"}), "script"),
        (json!({"script": "#!/bin/sh\n#SBATCH --export-file=/var/lib/odyssey-bridge/jwt.key\n"}), "script"),
        (json!({"script": "#!/bin/sh\n#SBATCH --priority=99999\n"}), "script"),
        (json!({"script": "#!/bin/sh\n#SBATCH --partition='debug --uid=0'\n"}), "script"),
        (json!({"script": "#!/bin/sh\n#SBATCH --output=-o/etc/passwd\n"}), "script"),
        (json!({"script": "#!/bin/sh\n#SBATCH --mem=lots\n"}), "script"),
    ];
    for (body, field) in cases {
        let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(body.clone())).await;
        if field == "script" && body["script"].as_str().is_some_and(|s| s.contains("SBATCH")) {
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("script: line 2"), "{body}: {detail}");
        }
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
    assert!(detail.contains("not mapped") && detail.contains("nounixaccount"), "{detail}");
    assert!(detail.contains("\"method\": \"pam\"") && detail.contains("PATCH /v1/users/"), "{detail}");
}

// See: #8 (registering the name of a Unix account claims nothing).
#[tokio::test]
async fn issue_8_registering_a_unix_name_yields_no_unix_authority() {
    let t = test_state(&["--uid-ceiling", "65534"]).await;
    // System accounts, nobody, and names that may belong to people later.
    for name in ["nobody", "daemon", "bin", "root", "alice", "bob"] {
        let (token, _) = login(&t.state, name).await;
        let me = call(&t.state, "GET", "/v1/auth/me", Some(&token), None).await;
        assert_eq!(me.body["unix_user"], serde_json::Value::Null, "{name}: {}", me.text);
        let reply = call(&t.state, "POST", "/v1/jobs", Some(&token), Some(json!({"command": ["id"]}))).await;
        let detail = reply.problem(StatusCode::FORBIDDEN);
        assert!(detail.contains("not mapped"), "{name}: {detail}");
    }
}

// See: #8 (root and out-of-range accounts are refused even to an admin).
#[tokio::test]
async fn issue_8_admins_cannot_map_root_or_out_of_range_accounts() {
    let t = test_state(&[]).await;
    login(&t.state, "admin_x").await;
    make_admin(&t.state, "admin_x").await;
    let (admin, _) = login(&t.state, "admin_x").await;
    login(&t.state, "carol").await;
    for (unix_user, says) in
        [("root", "root"), ("daemon", "outside the allowed range"), ("nobody", "outside the allowed range")]
    {
        let reply =
            call(&t.state, "PATCH", "/v1/users/carol", Some(&admin), Some(json!({"unix_user": unix_user}))).await;
        let detail = reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(detail.contains(says), "{unix_user}: {detail}");
    }
}

#[tokio::test]
async fn bad_idempotency_keys_and_queries_are_problems() {
    let t = test_state(&["--uid-ceiling", "65534"]).await;
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

// See: #14. A state filter is a `JobState`: an unknown one is a 422 that
// lists the states, not an empty list; a known one in lower case works.
#[tokio::test]
async fn issue_14_an_unknown_state_filter_is_refused_with_the_states() {
    let t = test_state(&[]).await;
    let (token, _) = login(&t.state, "dora").await;
    let reply = call(&t.state, "GET", "/v1/jobs?state=bogus", Some(&token), None).await;
    let detail = reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("unknown job state \"bogus\""), "{detail}");
    assert!(detail.contains("PENDING, CONFIGURING, RUNNING"), "{detail}");
    let reply = call(&t.state, "GET", "/v1/jobs?state=running", Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["jobs"], json!([]));
}
