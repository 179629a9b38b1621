//! The bridge in front of the real cluster: every job goes through sbatch
//! and the poller, nothing is faked.

use std::sync::Arc;
use std::time::Duration;

use e2e::app::{wait_ready, TestApp};
use e2e::{free_port, TestCluster};
use serde_json::json;

#[tokio::test]
async fn healthz_says_slurm_answers() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let body: serde_json::Value =
        app.http.get(format!("{}/healthz", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["slurm"]["reachable"], true, "{body}");
    assert!(body["slurm"]["controller"].as_str().unwrap().ends_with("is UP"), "{body}");
}

#[tokio::test]
async fn healthz_says_when_slurm_does_not_answer() {
    let (cluster, _guard) = TestCluster::ensure();
    // The same cluster's config with the controller on a port nobody serves.
    let conf =
        std::fs::read_to_string(&cluster.slurm_conf).unwrap().replace("SlurmctldPort=6817", "SlurmctldPort=6999");
    let dir = cluster.shared_dir.join("scratch").join(e2e::unique_name("deadctld"));
    std::fs::create_dir_all(&dir).unwrap();
    let dead_conf = dir.join("slurm.conf");
    std::fs::write(&dead_conf, conf).unwrap();
    let mut settings = e2e::app::test_settings(cluster, &dir.join("data"), &[]);
    settings.slurm_conf = Some(dead_conf);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(bridge::serve(listener, settings, std::future::pending()));
    let http = reqwest::Client::new();
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            body = r.json().await.unwrap();
            if !body["slurm"]["checked_at"].is_null() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["slurm"]["reachable"], false, "{body}");
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // See: #9. A submission gets 503 at once, with Retry-After; reads are
    // served from the store all the while.
    let alice = e2e::app::login(&http, &base, "alice").await;
    let submit = alice
        .http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&alice.token)
        .json(&json!({"command": ["true"], "working_dir": cluster.user_dir("alice")}))
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status(), 503);
    let retry_after: u64 = submit.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    let detail = submit.json::<serde_json::Value>().await.unwrap()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("slurmctld does not answer"), "{detail}");
    assert_eq!(alice.get("/v1/jobs").await.status, 200);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_job_runs_as_the_mapped_account_with_its_timeline_and_output() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let uid = cluster.ok("id", &["-u", "alice"]);
    let job = alice
        .submit(json!({
            "name": "whoami",
            "command": ["sh", "-c", "id -u; id -un; echo \"$GREETING\"; echo oops >&2"],
            "env": {"GREETING": "hello, world; $(not run)\nsecond line"},
            "working_dir": cluster.user_dir("alice").to_str().unwrap(),
        }))
        .await;
    assert_eq!(job["user"], "alice");
    assert!(job["slurm_job_id"].as_i64().is_some(), "{job}");
    let id = job["id"].as_i64().unwrap();
    let done = alice.wait_finished(id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["unix_user"], "alice");
    assert!(done["nodes"].as_str().unwrap().starts_with('c'), "{done}");
    assert!(done["script"].as_str().unwrap().starts_with("#!/bin/sh\nexec 'sh' '-c'"), "{done}");
    assert_eq!(done["spec"]["name"], "whoami");

    let out = alice.get(&format!("/v1/jobs/{id}/output")).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.text, format!("{}alice\nhello, world; $(not run)\nsecond line\noops\n", uid));
    let part = alice.get(&format!("/v1/jobs/{id}/output?offset=2&limit=3")).await;
    assert_eq!(part.text, &out.text[2..5]);
    assert_eq!(part.headers["x-next-offset"], "5");

    let events = alice.get(&format!("/v1/jobs/{id}/events")).await.body;
    let states: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states.first(), Some(&"SUBMITTING"), "{events}");
    assert_eq!(states.get(1), Some(&"PENDING"), "{events}");
    assert_eq!(states.last(), Some(&"COMPLETED"), "{events}");
    let times: Vec<f64> = events.as_array().unwrap().iter().map(|e| e["at"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{events}");
}

#[tokio::test]
async fn users_cannot_see_or_cancel_each_others_jobs() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let job = alice
        .submit(json!({"command": ["sleep", "30"], "working_dir": cluster.user_dir("alice").to_str().unwrap()}))
        .await;
    let id = job["id"].as_i64().unwrap();
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/events"), format!("/v1/jobs/{id}/output")] {
        assert_eq!(bob.get(&path).await.status, 404, "{path}");
    }
    assert_eq!(bob.delete(&format!("/v1/jobs/{id}")).await.status, 404);
    let bobs = bob.get("/v1/jobs").await.body;
    assert!(bobs["jobs"].as_array().unwrap().iter().all(|j| j["user"] == "bob"), "{bobs}");
    assert_eq!(bob.get("/v1/jobs?user=alice").await.status, 403);
    // Alice cancels her own: 202, then CANCELLED, then cancelling again is a no-op.
    assert_eq!(alice.delete(&format!("/v1/jobs/{id}")).await.status, 202);
    let done = alice.wait_finished(id).await;
    assert_eq!(done["state"], "CANCELLED", "{done}");
    assert_eq!(alice.delete(&format!("/v1/jobs/{id}")).await.status, 200);
}

#[tokio::test]
async fn slurm_refusals_come_back_as_422_with_slurms_reason() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let reply =
        alice.post("/v1/jobs", json!({"command": ["true"], "partition": "nosuchpartition", "working_dir": dir})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("Invalid partition name specified"), "{}", reply.text);
    let reply = alice.post("/v1/jobs", json!({"command": ["true"], "nodes": 50, "working_dir": dir})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("Batch job submission failed"), "{}", reply.text);
    // Nothing refused was recorded.
    assert_eq!(alice.job_count().await, 0);
}

#[tokio::test]
async fn dry_run_validates_with_sbatch_and_submits_nothing() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    // Other tests submit meanwhile: the dry run's job is looked for by name.
    let name = e2e::unique_name("dry-run");
    let reply = alice
        .post(
            "/v1/jobs?dry_run=true",
            json!({"name": name, "command": ["true"], "nodes": 2, "working_dir": cluster.user_dir("alice")}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["dry_run"], true);
    assert!(reply.body["slurm"].as_str().unwrap().contains("to start at"), "{}", reply.text);
    assert_eq!(alice.job_count().await, 0);
    let listed = cluster.ok("squeue", &["-h", "-t", "all", "-n", &name, "-o", "%i"]);
    assert!(listed.trim().is_empty(), "a dry run created a SLURM job: {listed}");
}

#[tokio::test]
async fn exit_codes_and_signals_are_recorded() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let three = alice.submit(json!({"command": ["sh", "-c", "exit 3"], "working_dir": dir})).await;
    let killed = alice.submit(json!({"script": "#!/bin/sh\nkill -KILL $$\n", "working_dir": dir})).await;
    let three = alice.wait_finished(three["id"].as_i64().unwrap()).await;
    assert_eq!((three["state"].as_str(), three["exit_code"].as_i64()), (Some("FAILED"), Some(3)), "{three}");
    let killed = alice.wait_finished(killed["id"].as_i64().unwrap()).await;
    assert_eq!(killed["signal"], 9, "{killed}");
}

#[tokio::test]
async fn idempotency_key_returns_the_same_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let body = json!({"command": ["true"], "working_dir": cluster.user_dir("alice")});
    let key = e2e::unique_name("key");
    let post = |body: serde_json::Value| {
        alice.send(alice.http.post(format!("{}/v1/jobs", alice.base)).header("idempotency-key", &key).json(&body))
    };
    let first = post(body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = post(body.clone()).await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(first.body["slurm_job_id"], second.body["slurm_job_id"]);
    let other = post(json!({"command": ["false"], "working_dir": cluster.user_dir("alice")})).await;
    assert_eq!(other.status, 422, "{}", other.text);
}

/// The bridge exits in the middle of a submission (`bridge-with-faults`); a
/// new bridge completes it, and the client's retry with the same key returns
/// that job: exactly one SLURM job either way.
async fn crash_in_a_submission_leaves_exactly_one_job(fault: &str) {
    let (cluster, _guard) = TestCluster::ensure();
    let bridge = cluster.repo.join("target/release/bridge");
    let faulty = cluster.repo.join("target/release/bridge-with-faults");
    for binary in [&bridge, &faulty] {
        assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
    }
    let data_dir = cluster.state_dir.join("bridge-tests").join(e2e::unique_name("crash"));
    let port = free_port();
    std::fs::create_dir_all(&data_dir).unwrap();
    let log = data_dir.join("bridge.log");
    let spawn = |faulty_run: bool| {
        let mut command = std::process::Command::new(if faulty_run { &faulty } else { &bridge });
        command
            .env("ODYSSEY_FAULT", fault)
            .args(["--data-dir", data_dir.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--slurm-conf", cluster.slurm_conf.to_str().unwrap(), "--poll-interval", "0.2"])
            .args(["--slurm-probe-interval", "0.5", "--argon2-memory-kib", "256", "--argon2-iterations", "1"])
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
        command.spawn().unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut child = spawn(true);
    wait_ready(&http, &base, &log).await;
    let alice = e2e::app::login(&http, &base, "alice").await;
    let key = e2e::unique_name("crash-key");
    let name = e2e::unique_name("crash");
    let body = json!({"name": name, "command": ["sleep", "1"], "working_dir": cluster.user_dir("alice")});
    let lost = alice
        .http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&alice.token)
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await;
    assert!(lost.is_err(), "the faulty bridge answered: {:?}", lost.map(|r| r.status()));
    assert_eq!(child.wait().unwrap().code(), Some(86));

    let mut child = spawn(false);
    wait_ready(&http, &base, &log).await;
    let mut retried = serde_json::Value::Null;
    for _ in 0..100 {
        let reply =
            alice.send(alice.http.post(format!("{base}/v1/jobs")).header("idempotency-key", &key).json(&body)).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        if !reply.body["slurm_job_id"].is_null() {
            retried = reply.body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let slurm_id = retried["slurm_job_id"].as_i64().expect("the restarted bridge completed the submission");
    // Exactly one SLURM job has the name, and it is this one.
    let named: Vec<String> = cluster
        .ok("squeue", &["-h", "-t", "all", "-u", "alice", "-n", &name, "-o", "%i"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(named, [slurm_id.to_string()], "SLURM jobs named {name}");
    let done = alice.wait_finished(retried["id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// SLURM accepted the job; the bridge died before recording its id: the new
/// bridge finds it by the tag in its comment.
#[tokio::test]
async fn issue_3_crash_between_sbatch_and_reply_leaves_exactly_one_job() {
    crash_in_a_submission_leaves_exactly_one_job("after-sbatch").await;
}

// See: #9. The job was recorded; the bridge died before sbatch ran: the new
// bridge runs it (a recorded submission is a promise), not marks it lost.
#[tokio::test]
async fn issue_9_crash_between_recording_and_sbatch_still_submits_exactly_once() {
    crash_in_a_submission_leaves_exactly_one_job("before-sbatch").await;
}

/// Holds a submission between sbatch's answer and the bridge recording it,
/// until the test releases it.
#[derive(Default)]
struct Gate {
    reached: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl bridge::submission::SubmitHook for Gate {
    fn after_sbatch(&self, _: i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.reached.notify_one();
            self.release.notified().await;
        })
    }
}

// See: #14. A bridge asked to stop refuses new connections but finishes the
// submission in flight: the job is recorded with its SLURM id, and the
// client gets its 201.
#[tokio::test]
async fn issue_14_a_stopping_bridge_finishes_the_submission_in_flight() {
    let (cluster, _guard) = TestCluster::ensure();
    let gate = Arc::new(Gate::default());
    let data_dir = cluster.state_dir.join("bridge-tests").join(e2e::unique_name("drain"));
    let app = TestApp::spawn_with_hook(cluster, "127.0.0.1:0", data_dir, &[], gate.clone()).await;
    let alice = app.user("alice").await;
    let base = app.base.clone();
    let body = json!({"command": ["true"], "working_dir": cluster.user_dir("alice")});
    let in_flight = tokio::spawn({
        let alice = alice.clone();
        async move { alice.post("/v1/jobs", body).await }
    });
    gate.reached.notified().await;
    let stopped = tokio::spawn(app.stop());
    // The listener closes at once: a new connection is refused while the
    // submission is still held.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while reqwest::Client::new().get(format!("{base}/healthz")).send().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the stopping bridge still accepts connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!stopped.is_finished(), "the bridge stopped before its request in flight finished");
    gate.release.notify_one();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.body["slurm_job_id"].as_i64().is_some(), "{}", reply.text);
    let data_dir = stopped.await.unwrap();
    // The next bridge has the record, SLURM id and all.
    let app = TestApp::spawn_on(cluster, data_dir, &[]).await;
    let alice = app.user("alice").await;
    let id = reply.body["id"].as_i64().unwrap();
    let done = alice.wait_finished(id).await;
    assert_eq!(done["slurm_job_id"], reply.body["slurm_job_id"], "{done}");
    assert_eq!(done["state"], "COMPLETED", "{done}");
}

#[tokio::test]
async fn a_restart_while_jobs_run_records_what_happened_meanwhile() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job = alice.submit(json!({"command": ["sleep", "2"], "working_dir": cluster.user_dir("alice")})).await;
    let id = job["id"].as_i64().unwrap();
    alice.wait_state(id, "RUNNING").await;
    let data_dir = app.stop().await;
    // While no bridge runs, the job ends: wait until SLURM says so.
    let slurm_id = job["slurm_job_id"].as_i64().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = cluster.ok("squeue", &["-h", "-t", "all", "-j", &slurm_id, "-o", "%T"]);
        if state.trim() == "COMPLETED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "job {slurm_id} still {state:?} after 60 s\n{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let app = TestApp::spawn_on(cluster, data_dir, &[]).await;
    let alice = app.user("alice").await;
    let done = alice.wait_finished(id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert!(done["ended_at"].as_f64().unwrap() > done["started_at"].as_f64().unwrap(), "{done}");
    let events = alice.get(&format!("/v1/jobs/{id}/events")).await.body;
    // A pending job may change its reason (a timeline entry too): compare states.
    let mut states: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    states.dedup();
    assert_eq!(states, ["SUBMITTING", "PENDING", "RUNNING", "COMPLETED"], "{events}");
}

#[tokio::test]
async fn a_job_slurm_never_knew_is_kept_and_marked_unknown() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job = alice.submit(json!({"command": ["true"], "working_dir": cluster.user_dir("alice")})).await;
    let id = job["id"].as_i64().unwrap();
    alice.wait_finished(id).await;
    // Point the finished record at a SLURM id that does not exist and
    // reopen it: the poller must find SLURM has no such job, keep the
    // history and say so.
    let data_dir = app.stop().await;
    assert_eq!(point_at_unknown_slurm_job(&data_dir, id).await, 1);
    let app = TestApp::spawn_on(cluster, data_dir, &[]).await;
    let alice = app.user("alice").await;
    let done = alice.wait_state(id, "UNKNOWN").await;
    assert!(done["reason"].as_str().unwrap().contains("purged"), "{done}");
    assert_eq!(done["finished"], true);
}

/// SLURM forgets finished jobs after MinJobAge (60 s in slurm.conf.in);
/// the bridge's history keeps serving them, timeline and output included.
#[tokio::test]
async fn history_is_served_after_slurm_purged_the_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job = alice.submit(json!({"command": ["echo", "kept"], "working_dir": cluster.user_dir("alice")})).await;
    let id = job["id"].as_i64().unwrap();
    let done = alice.wait_finished(id).await;
    let slurm_id = done["slurm_job_id"].as_i64().unwrap().to_string();
    let mut purged = false;
    for _ in 0..240 {
        if !cluster.run("scontrol", &["show", "job", &slurm_id]).status.success() {
            purged = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(purged, "SLURM kept job {slurm_id} for 4 minutes\n{}", cluster.logs());
    let after = alice.get(&format!("/v1/jobs/{id}")).await.body;
    assert_eq!(after["state"], "COMPLETED", "{after}");
    assert_eq!(after["exit_code"], 0);
    assert_eq!(alice.get(&format!("/v1/jobs/{id}/output")).await.text, "kept\n");
    let events = alice.get(&format!("/v1/jobs/{id}/events")).await.body;
    assert_eq!(events.as_array().unwrap().last().unwrap()["state"], "COMPLETED", "{events}");
    let listed = alice.get("/v1/jobs?state=completed").await.body;
    assert!(listed["jobs"].as_array().unwrap().iter().any(|j| j["id"] == id), "{listed}");
}

#[tokio::test]
async fn output_follow_streams_until_the_job_ends() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job = alice
        .submit(
            json!({"command": ["sh", "-c", "echo one; sleep 1; echo two"], "working_dir": cluster.user_dir("alice")}),
        )
        .await;
    let id = job["id"].as_i64().unwrap();
    let response = alice.follow_output(id).await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.text().await.unwrap();
    let data: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(body.contains("event: end"), "{body}");
    assert!(data.contains("one") && data.contains("two"), "{body}");
}

#[tokio::test]
async fn output_follow_never_cuts_a_character_in_two() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    // "é" is \303\251: the job writes its first byte, pauses, then the second.
    let script = r"printf 'one \303'; sleep 4; printf '\251 two\n'";
    let job = alice.submit(json!({"command": ["sh", "-c", script], "working_dir": cluster.user_dir("alice")})).await;
    let id = job["id"].as_i64().unwrap();
    // Follow once the half character is in the file, so the stream's first
    // read ends in the middle of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let raw = alice.get(&format!("/v1/jobs/{id}/output")).await;
        if raw.status == 200 && raw.text.starts_with("one ") && raw.text.len() > 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the job never wrote its first bytes: {}", raw.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = alice.follow_output(id).await.text().await.unwrap();
    let events: Vec<(&str, &str)> = body
        .split("\n\n")
        .filter_map(|event| {
            let field = |name: &str| event.lines().find_map(|l| l.strip_prefix(name)).map(str::trim_start);
            Some((field("id:")?, field("data:")?))
        })
        .collect();
    let text: String = events.iter().map(|(_, data)| *data).collect::<Vec<_>>().join("");
    assert_eq!(text, "one é two", "{body}");
    assert_eq!(events.first().map(|e| e.1), Some("one "), "the first event held back the half character: {body}");
    // Each event's id is the byte offset after it: a client resuming there
    // gets the character whole.
    assert_eq!(events.first().map(|e| e.0), Some("4"), "{body}");
}

#[tokio::test]
async fn dependencies_wait_for_the_earlier_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let first = alice.submit(json!({"command": ["sleep", "1"], "working_dir": dir})).await;
    let second = alice.submit(json!({"command": ["true"], "working_dir": dir, "dependencies": [first["id"]]})).await;
    let first = alice.wait_finished(first["id"].as_i64().unwrap()).await;
    let second = alice.wait_finished(second["id"].as_i64().unwrap()).await;
    assert_eq!(second["state"], "COMPLETED");
    assert!(second["started_at"].as_f64().unwrap() >= first["ended_at"].as_f64().unwrap(), "{first}\n{second}");
    let bob = app.user("bob").await;
    let reply = bob
        .post(
            "/v1/jobs",
            json!({"command": ["true"], "working_dir": cluster.user_dir("bob"), "dependencies": [first["id"]]}),
        )
        .await;
    assert_eq!(reply.status, 422, "{}", reply.text);
}

#[tokio::test]
async fn submissions_beyond_the_rate_get_429_with_retry_after() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--submit-rate", "2"]).await;
    let alice = app.user("alice").await;
    let body = json!({"command": ["true"], "working_dir": cluster.user_dir("alice")});
    alice.submit(body.clone()).await;
    alice.submit(body.clone()).await;
    let third = alice.post("/v1/jobs", body).await;
    assert_eq!(third.status, 429, "{}", third.text);
    let retry: u64 = third.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
}

#[tokio::test]
async fn nodes_show_state_cpus_memory_and_running_jobs() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job =
        alice.submit(json!({"command": ["sleep", "5"], "nodes": 1, "working_dir": cluster.user_dir("alice")})).await;
    let running = alice.wait_state(job["id"].as_i64().unwrap(), "RUNNING").await;
    let slurm_id = running["slurm_job_id"].as_i64().unwrap();
    let mut seen = false;
    for _ in 0..50 {
        let nodes = alice.get("/v1/nodes").await.body;
        let list = nodes["nodes"].as_array().unwrap();
        assert_eq!(list.len(), cluster.n_nodes, "{nodes}");
        assert!(
            list.iter().all(|n| n["cpus_total"].as_u64() >= Some(1) && n["memory_mb"].as_u64() > Some(0)),
            "{nodes}"
        );
        if list.iter().any(|n| n["running_jobs"].as_array().unwrap().contains(&json!(slurm_id))) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "job {slurm_id} never showed on a node");
    alice.delete(&format!("/v1/jobs/{}", job["id"])).await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_jobs_by_state() {
    let (cluster, _guard) = TestCluster::ensure();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let app = TestApp::spawn(cluster, &["--metrics-listen", &listen]).await;
    let alice = app.user("alice").await;
    let job = alice.submit(json!({"command": ["true"], "working_dir": cluster.user_dir("alice")})).await;
    alice.wait_finished(job["id"].as_i64().unwrap()).await;
    assert_eq!(alice.get(&format!("/v1/jobs/{}", job["id"])).await.status, 200);
    // The jobs-by-state gauge is recounted at most every 5 s after changes.
    let mut metrics = String::new();
    for _ in 0..150 {
        metrics = app.http.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains(r#"bridge_jobs{state="COMPLETED"} 1"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for needle in [
        r#"bridge_http_request_duration_seconds_count{method="GET",route="/v1/jobs/{id}",status="200"}"#,
        r#"bridge_http_request_duration_seconds_count{method="POST",route="/v1/jobs",status="201"}"#,
        r#"bridge_sbatch_duration_seconds_count{outcome="ok"} 1"#,
        r#"bridge_jobs{state="COMPLETED"} 1"#,
        r#"bridge_poll_duration_seconds_count{outcome="ok"}"#,
        "bridge_poll_last_success_timestamp_seconds",
        "bridge_nodes{state=",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
    // Raw ids never become labels.
    assert!(!metrics.contains(&format!("/v1/jobs/{}", job["id"])), "{metrics}");
}

// See: #12. The poller's round also feeds the cluster metrics in the names
// of prometheus-slurm-exporter, which dashboards for it read unchanged.
#[tokio::test]
async fn issue_12_cluster_metrics_use_the_slurm_exporters_names() {
    let (cluster, _guard) = TestCluster::ensure();
    let listen = format!("127.0.0.1:{}", free_port());
    let app = TestApp::spawn(cluster, &["--metrics-listen", &listen]).await;
    let value = |text: &str, name: &str| -> Option<i64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let cpus: i64 = cluster
        .ok("sinfo", &["-h", "-N", "-o", "%N %c"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        .sum();
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = app.http.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
        if value(&metrics, "slurm_cpus_total") == Some(cpus) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value(&metrics, "slurm_cpus_total"), Some(cpus), "{metrics}");
    let groups = ["alloc", "comp", "down", "drain", "err", "fail", "idle", "maint", "mix", "resv"];
    let nodes: i64 = groups
        .iter()
        .map(|g| {
            value(&metrics, &format!("slurm_nodes_{g}")).unwrap_or_else(|| panic!("no slurm_nodes_{g}:\n{metrics}"))
        })
        .sum();
    assert_eq!(nodes, cluster.n_nodes as i64, "{metrics}");
    for name in [
        "slurm_cpus_alloc",
        "slurm_cpus_idle",
        "slurm_cpus_other",
        "slurm_queue_pending",
        "slurm_queue_running",
        "slurm_queue_completed",
        "slurm_scheduler_threads",
        "slurm_scheduler_mean_cycle",
    ] {
        assert!(value(&metrics, name).is_some(), "no {name}:\n{metrics}");
    }
    // Per account and per partition: a job of account "lab" held pending.
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let blocker = alice.submit(json!({"command": ["sleep", "300"], "working_dir": dir})).await;
    let held = alice
        .submit(json!({"command": ["true"], "working_dir": dir, "account": "lab", "dependencies": [blocker["id"]]}))
        .await;
    let labelled = |text: &str, line: &str| text.lines().any(|l| l.starts_with(line));
    for _ in 0..100 {
        metrics = app.http.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
        if labelled(&metrics, "slurm_account_jobs_pending{account=\"lab\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(labelled(&metrics, "slurm_account_jobs_pending{account=\"lab\"} 1"), "{metrics}");
    assert!(labelled(&metrics, "slurm_partition_jobs_pending{partition=\"debug\"}"), "{metrics}");
    // Per partition CPUs (the partitions are read every 10 s) and sdiag's
    // RPC statistics (every 15 s; the poller's own squeue is one of them).
    for _ in 0..250 {
        metrics = app.http.get(format!("http://{listen}/metrics")).send().await.unwrap().text().await.unwrap();
        if labelled(&metrics, "slurm_partition_cpus_total{partition=\"debug\"}")
            && labelled(&metrics, "slurm_rpc_stats{operation=\"REQUEST_JOB_INFO\"}")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let partition_cpus = format!("slurm_partition_cpus_total{{partition=\"debug\"}} {cpus}");
    assert!(labelled(&metrics, &partition_cpus), "{metrics}");
    for line in [
        "slurm_partition_cpus_allocated{partition=\"debug\"}",
        "slurm_partition_cpus_idle{partition=\"debug\"}",
        "slurm_rpc_stats{operation=\"REQUEST_JOB_INFO\"}",
        "slurm_rpc_stats_avg_time{operation=\"REQUEST_JOB_INFO\"}",
        "slurm_rpc_stats_total_time{operation=\"REQUEST_JOB_INFO\"}",
        "slurm_user_rpc_stats{user=\"root\"}",
        "bridge_job_failures_total{class=\"application\"}",
        "bridge_health_stale_nodes",
    ] {
        assert!(labelled(&metrics, line), "no {line}:\n{metrics}");
    }
    for job in [&held, &blocker] {
        assert_eq!(alice.delete(&format!("/v1/jobs/{}", job["id"])).await.status, 202);
    }
}

/// With --tls-cert and --tls-key the API is HTTPS only (checked with curl,
/// which the test machine has; the test client speaks plain HTTP).
#[tokio::test]
async fn tls_serves_https_with_the_given_certificate() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.state_dir.join("bridge-tests").join(e2e::unique_name("tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(made.status.success(), "{}", e2e::text(&made.stderr));
    let settings = e2e::app::test_settings(
        cluster,
        &dir.join("data"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bridge::serve(listener, settings, async {
        let _ = stopped.await;
    }));
    let curl = |url: String| {
        let cert = cert.clone();
        async move {
            tokio::process::Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(&cert)
                .arg(url)
                .output()
                .await
                .unwrap()
        }
    };
    let mut body = String::new();
    for _ in 0..50 {
        let out = curl(format!("https://127.0.0.1:{}/healthz", addr.port())).await;
        if out.status.success() {
            body = e2e::text(&out.stdout);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains(r#""status":"ok""#), "no HTTPS answer: {body:?}");
    // Plain HTTP on the TLS port gets no API answer.
    let plain = curl(format!("http://127.0.0.1:{}/healthz", addr.port())).await;
    assert!(!e2e::text(&plain.stdout).contains(r#""status":"ok""#));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// The first admin comes from the machine (`bridge user add`), never from
/// an endpoint; `bridge backup` copies the live database consistently.
#[tokio::test]
async fn admin_command_and_online_backup() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let job = alice.submit(json!({"command": ["true"], "working_dir": cluster.user_dir("alice")})).await;
    let bridge = cluster.repo.join("target/release/bridge");
    let faulty = cluster.repo.join("target/release/bridge-with-faults");
    for binary in [&bridge, &faulty] {
        assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
    }
    let data_dir = app.data_dir.to_str().unwrap().to_owned();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(&bridge)
            .args(["--data-dir", &data_dir, "--argon2-memory-kib", "256", "--argon2-iterations", "1"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let added = run(&["user", "add", "chief", "--role", "admin"], "chief-admin-password\n");
    assert!(added.status.success(), "{}", e2e::text(&added.stderr));
    let again = run(&["user", "add", "chief", "--role", "admin"], "chief-admin-password\n");
    assert!(!again.status.success());
    assert!(
        e2e::text(&again.stderr).starts_with("bridge: the name \"chief\" is taken"),
        "{}",
        e2e::text(&again.stderr)
    );
    let body = json!({"name": "chief", "password": "chief-admin-password"});
    let tokens: serde_json::Value =
        app.http.post(format!("{}/v1/auth/login", app.base)).json(&body).send().await.unwrap().json().await.unwrap();
    let chief = e2e::app::Client {
        base: app.base.clone(),
        http: app.http.clone(),
        token: tokens["access_token"].as_str().unwrap().to_owned(),
    };
    let me = chief.get("/v1/auth/me").await;
    assert_eq!(me.body["role"], "admin", "{}", me.text);
    // Admins see every user's jobs.
    assert_eq!(chief.get(&format!("/v1/jobs/{}", job["id"])).await.status, 200);
    assert_eq!(chief.get("/v1/jobs?user=alice").await.body["jobs"].as_array().unwrap().len(), 1);

    let copy = app.data_dir.join("backup.db");
    let backup = run(&["backup", copy.to_str().unwrap()], "");
    assert!(backup.status.success(), "{}", e2e::text(&backup.stderr));
    let store = bridge::store::Store::open(&copy).unwrap();
    let jobs: i64 = store.call(|c| Ok(c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))?)).await.unwrap();
    assert_eq!(jobs, 1);
    let refused = run(&["backup", copy.to_str().unwrap()], "");
    assert!(!refused.status.success(), "backup overwrote an existing file");
}

/// Newest first, `limit` per page, `next_cursor` to the next page, every job
/// once; a finished job cannot be cancelled; every answer has a request id.
#[tokio::test]
async fn pages_filters_and_cancel_of_a_finished_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let mut ids = Vec::new();
    for name in ["p1", "p2", "p3"] {
        ids.push(
            alice.submit(json!({"name": name, "command": ["true"], "working_dir": dir})).await["id"].as_i64().unwrap(),
        );
    }
    let first = alice.get("/v1/jobs?limit=2").await;
    assert!(first.headers.contains_key("x-request-id"), "{:?}", first.headers);
    let page: Vec<i64> = first.body["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(page, [ids[2], ids[1]]);
    assert!(first.body["jobs"][0].get("script").is_none(), "list items carry no script");
    let cursor = first.body["next_cursor"].as_i64().unwrap();
    let second = alice.get(&format!("/v1/jobs?limit=2&cursor={cursor}")).await.body;
    let page: Vec<i64> = second["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(page, [ids[0]]);
    assert!(second.get("next_cursor").is_none(), "{second}");
    let by_name = alice.get("/v1/jobs?name=p2").await.body;
    assert_eq!(by_name["jobs"].as_array().unwrap().len(), 1, "{by_name}");
    let done = alice.wait_finished(ids[0]).await;
    assert_eq!(done["state"], "COMPLETED");
    let cancel = alice.delete(&format!("/v1/jobs/{}", ids[0])).await;
    assert_eq!(cancel.status, 409, "{}", cancel.text);
    let since = alice.get(&format!("/v1/jobs?since={}", done["submitted_at"].as_f64().unwrap() + 1e-6)).await.body;
    assert!(since["jobs"].as_array().unwrap().iter().all(|j| j["id"] != ids[0]), "{since}");
}

/// sbatch children of this process (the in-process bridge) right now.
fn sbatch_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let Some((head, rest)) = stat.rsplit_once(')') else { return false };
            head.ends_with("(sbatch") && rest.split_whitespace().nth(1) == Some(me.as_str())
        })
        .count()
}

/// --max-concurrent-sbatch bounds the sbatch processes at once; the rest
/// wait for a slot and still succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sbatch_processes_are_bounded() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--max-concurrent-sbatch", "1"]).await;
    let alice = app.user("alice").await;
    let body = json!({"command": ["true"], "working_dir": cluster.user_dir("alice")});
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(sbatch_children());
                std::thread::sleep(Duration::from_micros(500));
            }
            most
        })
    };
    let submits: Vec<_> = (0..8).map(|_| alice.post("/v1/jobs", body.clone())).collect();
    let replies = futures_util::future::join_all(submits).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!(replies.iter().all(|r| r.status == 201), "{:?}", replies.iter().map(|r| &r.text).collect::<Vec<_>>());
    assert!(most <= 1, "{most} sbatch processes ran at once with --max-concurrent-sbatch 1");
}

/// Sets a job's SLURM id to one SLURM never issued and reopens it.
async fn point_at_unknown_slurm_job(data_dir: &std::path::Path, id: i64) -> usize {
    let store = bridge::store::Store::open(&data_dir.join("bridge.db")).unwrap();
    store
        .call(move |c| {
            Ok(c.execute(
                "UPDATE jobs SET slurm_job_id = 99999999, finished = 0, state = 'RUNNING' WHERE id = ?1",
                [id],
            )?)
        })
        .await
        .unwrap()
}
