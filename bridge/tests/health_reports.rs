use axum::body::Body;
use axum::http::{Request, StatusCode};
use bridge::http::health_reports::sign;
use serde_json::json;

use crate::support::{send, test_state};

fn secret_file() -> (std::path::PathBuf, Vec<u8>) {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("health-secret-{}-{n}", std::process::id()));
    let secret = b"0123456789abcdef0123456789abcdef-cluster".to_vec();
    std::fs::write(&path, &secret).unwrap();
    (path, secret)
}

async fn stored_records(state: &bridge::http::AppState) -> i64 {
    state.store.read(|c| Ok(c.query_row("SELECT COUNT(*) FROM health_records", [], |r| r.get(0))?)).await.unwrap()
}

fn batch() -> String {
    let task = json!({"id": "7.0.c1.task0", "kind": "task", "job_id": 7, "step_id": 0, "node": "c1", "task": 0,
                      "exit_code": 0, "signal": null, "at": bridge::store::now()});
    let node = json!({"id": "7.0.c1.node", "kind": "node", "job_id": 7, "step_id": 0, "node": "c1",
                      "mem_available_bytes": 1_000_000_000u64, "step_start": 1.0, "step_end": 2.0, "tasks": 1,
                      "tasks_ok": 1, "at": bridge::store::now()});
    format!("{task}\n{node}\n")
}

fn post(body: &str, timestamp: &str, signature: &str) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/v1/health-reports")
        .header("content-type", "application/x-ndjson")
        .header("x-odyssey-timestamp", timestamp)
        .header("x-odyssey-signature", signature)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn signed_reports_are_stored_once() {
    let (path, secret) = secret_file();
    let t = test_state(&["--health-secret-file", path.to_str().unwrap()]).await;
    let body = batch();
    let ts = format!("{}", bridge::store::now() as u64);
    let reply = send(&t.state, post(&body, &ts, &sign(&secret, &ts, body.as_bytes()))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!((reply.body["accepted"].as_u64(), reply.body["duplicates"].as_u64()), (Some(2), Some(0)));
    // The plugin resends until it hears 2xx: the same records again are ignored.
    let reply = send(&t.state, post(&body, &ts, &sign(&secret, &ts, body.as_bytes()))).await;
    assert_eq!((reply.body["accepted"].as_u64(), reply.body["duplicates"].as_u64()), (Some(0), Some(2)));
    let stored = stored_records(&t.state).await;
    assert_eq!(stored, 2);
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn forged_replayed_and_malformed_reports_are_refused() {
    let (path, secret) = secret_file();
    let t = test_state(&["--health-secret-file", path.to_str().unwrap()]).await;
    let body = batch();
    let now = bridge::store::now() as u64;
    let ts = now.to_string();
    // Wrong secret.
    send(&t.state, post(&body, &ts, &sign(b"not-the-cluster-secret-at-all-000000", &ts, body.as_bytes())))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // Body changed after signing.
    let signature = sign(&secret, &ts, body.as_bytes());
    send(&t.state, post(&body.replace("\"exit_code\":0", "\"exit_code\":1"), &ts, &signature))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    // A correctly signed but stale batch: a replay.
    let old = (now - 3600).to_string();
    let detail = send(&t.state, post(&body, &old, &sign(&secret, &old, body.as_bytes())))
        .await
        .problem(StatusCode::UNAUTHORIZED);
    assert!(detail.contains("timestamp"), "{detail}");
    // No timestamp at all.
    send(&t.state, post(&body, "", &signature)).await.problem(StatusCode::UNAUTHORIZED);
    // See: #8. A correctly signed batch whose timestamp is not a finite
    // number (NaN compares false with everything, so it passed the skew check).
    for odd in ["NaN", "inf", "-inf"] {
        let detail = send(&t.state, post(&body, odd, &sign(&secret, odd, body.as_bytes())))
            .await
            .problem(StatusCode::UNAUTHORIZED);
        assert!(detail.contains("finite"), "{odd}: {detail}");
    }
    // Signed garbage names its line.
    let junk = "{\"id\": \"x\"}\nnot json\n";
    let reply = send(&t.state, post(junk, &ts, &sign(&secret, &ts, junk.as_bytes()))).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["field"], "line 1");
    let stored = stored_records(&t.state).await;
    assert_eq!(stored, 0, "nothing refused was stored");
    let metrics = t.state.metrics.render();
    assert!(metrics.contains(r#"bridge_health_reports_total{outcome="rejected_signature"} 6"#), "{metrics}");
    assert!(metrics.contains(r#"bridge_health_reports_total{outcome="rejected_stale"} 1"#), "{metrics}");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn without_a_secret_reports_are_not_accepted() {
    let t = test_state(&[]).await;
    let body = batch();
    send(&t.state, post(&body, "0", "00")).await.problem(StatusCode::SERVICE_UNAVAILABLE);
}

// See: #8. Health records are keyed so that a reused SLURM id can never show
// an earlier job's records (someone else's, perhaps) on a later job.
#[tokio::test]
async fn issue_8_a_reused_slurm_id_never_joins_an_earlier_jobs_records() {
    let t = test_state(&[]).await;
    let (token, _) = crate::support::login(&t.state, "carol").await;
    let now = bridge::store::now();
    let record = |id: &str, at: f64| -> odyssey_health_wire::records::Record {
        serde_json::from_value(json!({"id": id, "kind": "task", "job_id": 4242, "step_id": 0, "node": "c1",
                                      "task": 0, "exit_code": 0, "signal": null, "at": at}))
        .unwrap()
    };
    let job_id: i64 = t
        .state
        .store
        .call(move |conn| {
            // An earlier job with SLURM id 4242 reported an hour ago; carol's
            // job got the same id (a controller reset) a minute ago.
            bridge::store::health::insert(conn, &[record("old", now - 3600.0), record("new", now - 30.0)])?;
            conn.execute(
                "INSERT INTO jobs (user_id, slurm_job_id, tag, name, state, submitted_at, spec, script, unix_user, uid)
                 SELECT id, 4242, 'tag-4242', 'j', 'RUNNING', ?1, '{}', '#!/bin/sh', 'carol', 2001 FROM users
                 WHERE name = 'carol'",
                [now - 60.0],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
        .unwrap();
    let reply = crate::support::call(&t.state, "GET", &format!("/v1/jobs/{job_id}/health"), Some(&token), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let ids: Vec<&str> = reply.body["records"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["new"], "{}", reply.text);
}
