//! Issue #10: routing and ordering policies on the real cluster, and the
//! admin's drain and resume. (Their measured effect on a saturated cluster
//! is bench/scheduling.sh's, in docs/BENCHMARKS.md.)

use std::time::Duration;

use e2e::app::{Client, TestApp};
use e2e::TestCluster;
use serde_json::{json, Value};

/// `(slurm id, priority)` of SLURM jobs, as squeue lists them.
fn priorities(cluster: &TestCluster, slurm_ids: &[i64]) -> Vec<(i64, u64)> {
    let ids: Vec<String> = slurm_ids.iter().map(i64::to_string).collect();
    let out = cluster.ok("squeue", &["-h", "-j", &ids.join(","), "-O", "JobID:|,PriorityLong:|"]);
    let mut found: Vec<(i64, u64)> = out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            Some((f.next()?.trim().parse().ok()?, f.next()?.trim().parse().ok()?))
        })
        .collect();
    found.sort_by_key(|(id, _)| slurm_ids.iter().position(|s| s == id));
    found
}

/// The jobs' SLURM ids, highest SLURM priority first.
fn by_priority(cluster: &TestCluster, slurm_ids: &[i64]) -> Vec<i64> {
    let mut found = priorities(cluster, slurm_ids);
    found.sort_by_key(|b| std::cmp::Reverse(b.1));
    found.into_iter().map(|(id, _)| id).collect()
}

/// Waits (bounded) until every job's record names the ordering policy.
async fn wait_ordered(client: &Client, ids: &[i64], policy: &str) -> Vec<Value> {
    for _ in 0..300 {
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(client.get(&format!("/v1/jobs/{id}")).await.body);
        }
        if jobs.iter().all(|j| j["ordering"]["policy"] == policy) {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("jobs {ids:?} were never ordered by {policy}");
}

#[tokio::test]
async fn issue_10_the_policy_is_read_by_users_set_by_admins_checked_and_kept() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--ordering", "fifo", "--user-weights", "alice=2"]).await;
    let alice = app.user("alice").await;
    let admin = app.admin(cluster, "boss").await;
    let policy = alice.get("/v1/policy").await;
    assert_eq!(policy.status, 200, "{}", policy.text);
    assert_eq!(
        (&policy.body["routing"], &policy.body["ordering"], &policy.body["source"]),
        (&json!("default"), &json!("fifo"), &json!("config"))
    );
    assert_eq!(policy.body["user_weights"], json!({"alice": 2}));
    let wanted = json!({"routing": "earliest-start", "ordering": "sjf", "user_weights": {"alice": 3, "bob": 1}});
    let refused = alice.put("/v1/policy", wanted.clone()).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    for (bad, says) in [
        (json!({"ordering": "lottery"}), "lottery"),
        (json!({"routing": "nearest"}), "nearest"),
        (json!({"user_weights": {"alice": 0}}), "user_weights.alice"),
        (json!({"partition_weights": {"debug": -1}}), "partition_weights"),
        (json!({"partition_weights": {"bad name": 1}}), "partition_weights.bad name"),
        (json!({"ordering": "sjf", "shares": 1}), "shares"),
    ] {
        let reply = admin.put("/v1/policy", bad.clone()).await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
        assert_eq!(reply.headers["content-type"], "application/problem+json", "{bad}");
        assert!(reply.text.contains(says), "{bad}: {}", reply.text);
    }
    let set = admin.put("/v1/policy", wanted.clone()).await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!((&set.body["source"], &set.body["set_by"]), (&json!("admin"), &json!("boss")));
    // Kept across a restart, over the config's policy.
    let data_dir = app.stop().await;
    let app = TestApp::spawn_on(cluster, data_dir, &["--ordering", "fifo"]).await;
    let alice = app.user("alice").await;
    let kept = alice.get("/v1/policy").await;
    assert_eq!((&kept.body["routing"], &kept.body["ordering"]), (&json!("earliest-start"), &json!("sjf")));
    assert_eq!(kept.body["user_weights"], json!({"alice": 3, "bob": 1}));
}

#[tokio::test]
async fn issue_10_ordering_sets_slurm_priorities_by_policy_and_says_why() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--ordering", "sjf"]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    // Everything waits on a blocker, so every job stays pending while the
    // policy orders it.
    let blocker = alice.submit(json!({"command": ["sleep", "300"], "time_limit": 10, "working_dir": dir})).await;
    let blocker_id = blocker["id"].as_i64().unwrap();
    let mut ids = Vec::new();
    let mut slurm_ids = Vec::new();
    // Long ones first, then short ones.
    for limit in [30, 30, 30, 2, 2, 2] {
        let job = alice
            .submit(json!({"command": ["true"], "time_limit": limit, "working_dir": dir, "dependencies": [blocker_id]}))
            .await;
        ids.push(job["id"].as_i64().unwrap());
        slurm_ids.push(job["slurm_job_id"].as_i64().unwrap());
    }
    let jobs = wait_ordered(&alice, &ids, "sjf").await;
    // Short first, each group in submit order.
    let expected = [slurm_ids[3], slurm_ids[4], slurm_ids[5], slurm_ids[0], slurm_ids[1], slurm_ids[2]];
    assert_eq!(by_priority(cluster, &slurm_ids), expected, "{:?}", priorities(cluster, &slurm_ids));
    // The blocker may be waiting too, on a busy cluster: "1 of 6" or "1 of 7".
    assert!(jobs[3]["ordering"]["why"].as_str().unwrap().starts_with("sjf: time limit 2 min, 1 of "), "{}", jobs[3]);
    assert!(jobs[0]["ordering"]["why"].as_str().unwrap().starts_with("sjf: time limit 30 min"), "{}", jobs[0]);
    // An admin switches to fifo: SLURM's order follows at the next round.
    let admin = app.admin(cluster, "boss").await;
    assert_eq!(admin.put("/v1/policy", json!({"ordering": "fifo"})).await.status, 200);
    let jobs = wait_ordered(&alice, &ids[..3], "fifo").await;
    assert!(jobs[0]["ordering"]["why"].as_str().unwrap().starts_with("fifo: "), "{}", jobs[0]);
    assert_eq!(by_priority(cluster, &slurm_ids), slurm_ids, "{:?}", priorities(cluster, &slurm_ids));
    for id in ids.iter().chain([&blocker_id]) {
        assert_eq!(alice.delete(&format!("/v1/jobs/{id}")).await.status, 202);
    }
}

/// Partitions made for one test and deleted after it, whatever happens.
struct TestPartitions<'a> {
    cluster: &'a TestCluster,
    names: Vec<String>,
}

impl<'a> TestPartitions<'a> {
    fn create(cluster: &'a TestCluster, specs: &[(&str, &str)]) -> TestPartitions<'a> {
        let partitions = TestPartitions { cluster, names: specs.iter().map(|(n, _)| (*n).to_owned()).collect() };
        partitions.delete();
        for (name, nodes) in specs {
            cluster
                .ok("scontrol", &["create", &format!("PartitionName={name}"), &format!("Nodes={nodes}"), "State=UP"]);
        }
        partitions
    }

    fn delete(&self) {
        for name in &self.names {
            // A test that stopped half way may have left jobs there.
            let _ = self.cluster.run("scancel", &[&format!("--partition={name}")]);
            // Absent already (a first run) is fine; in use is waited out.
            for _ in 0..50 {
                let out = self.cluster.run("scontrol", &["delete", &format!("PartitionName={name}")]);
                let err = e2e::text(&out.stderr);
                if out.status.success() || err.contains("Invalid partition name") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for TestPartitions<'_> {
    fn drop(&mut self) {
        self.delete();
    }
}

#[tokio::test]
async fn issue_10_routing_sends_partitionless_jobs_by_policy() {
    // New partitions change what every bridge sees: no other test runs.
    let (cluster, _guard) = TestCluster::exclusive();
    let _partitions = TestPartitions::create(cluster, &[("odyt-a", "c1"), ("odyt-b", "c2,c3")]);
    let app = TestApp::spawn(cluster, &["--routing", "earliest-start"]).await;
    let alice = app.user("alice").await;
    let admin = app.admin(cluster, "boss").await;
    let dir = cluster.user_dir("alice");
    // c1 (all of odyt-a) is busy for ten minutes.
    let blocker = alice
        .submit(json!({"command": ["sleep", "600"], "partition": "odyt-a", "exclusive": true, "time_limit": 10, "working_dir": dir}))
        .await;
    let blocker_id = blocker["id"].as_i64().unwrap();
    alice.wait_state(blocker_id, "RUNNING").await;
    assert!(blocker["routing"].is_null(), "a job that names its partition is not routed: {blocker}");
    let quick = json!({"command": ["true"], "time_limit": 1, "working_dir": dir});
    let job = alice.submit(quick.clone()).await;
    let routing = &job["routing"];
    assert_eq!(routing["policy"], "earliest-start", "{job}");
    assert_ne!(routing["partition"], "odyt-a", "{job}");
    assert_eq!(job["partition"], routing["partition"], "{job}");
    let why = routing["why"].as_str().unwrap();
    assert!(
        why.starts_with(&format!("partition {}: earliest start ", routing["partition"].as_str().unwrap())),
        "{why}"
    );
    assert!(why.contains(" vs ") && why.contains("odyt-a "), "{why}");
    // SLURM runs it where the bridge said.
    let done = alice.wait_finished(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");

    // Round robin: every usable partition in turn.
    assert_eq!(admin.put("/v1/policy", json!({"routing": "round-robin"})).await.status, 200);
    let mut chosen = Vec::new();
    for _ in 0..3 {
        let job = alice.submit(quick.clone()).await;
        assert_eq!(job["routing"]["policy"], "round-robin", "{job}");
        chosen.push(job["routing"]["partition"].as_str().unwrap().to_owned());
    }
    chosen.sort();
    assert_eq!(chosen, ["debug", "odyt-a", "odyt-b"]);

    // Weighted 3:1 (debug has no weight, so none).
    let weights = json!({"routing": "weighted", "partition_weights": {"odyt-a": 1, "odyt-b": 3}});
    assert_eq!(admin.put("/v1/policy", weights).await.status, 200);
    let mut counts = std::collections::BTreeMap::new();
    let mut ids = Vec::new();
    for _ in 0..8 {
        let job = alice.submit(quick.clone()).await;
        *counts.entry(job["routing"]["partition"].as_str().unwrap().to_owned()).or_insert(0) += 1;
        ids.push(job["id"].as_i64().unwrap());
    }
    assert_eq!(counts, std::collections::BTreeMap::from([("odyt-a".to_owned(), 2), ("odyt-b".to_owned(), 6)]));
    for id in ids.iter().chain([&blocker_id]) {
        let _ = alice.delete(&format!("/v1/jobs/{id}")).await;
    }
    for id in ids.iter().chain([&blocker_id]) {
        alice.wait_finished(*id).await;
    }
}

#[tokio::test]
async fn issue_10_admins_drain_and_resume_nodes_with_a_reason() {
    // A drained node changes where every test's jobs run.
    let (cluster, _guard) = TestCluster::exclusive();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let admin = app.admin(cluster, "boss").await;
    let reason = json!({"reason": "fan noise, checking"});
    let denied = alice.post("/v1/nodes/c2/drain", reason.clone()).await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    let unknown = admin.post("/v1/nodes/c99/drain", reason.clone()).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let odd = admin.post("/v1/nodes/c1,c2/drain", reason.clone()).await;
    assert_eq!(odd.status, 404, "{}", odd.text);
    for bad in [json!({"reason": ""}), json!({"reason": "two\nlines"}), json!({"reason": "x".repeat(201)}), json!({})] {
        let reply = admin.post("/v1/nodes/c2/drain", bad.clone()).await;
        assert_eq!(reply.status, 422, "{bad}: {}", reply.text);
    }
    let drained = admin.post("/v1/nodes/c2/drain", reason.clone()).await;
    assert_eq!(drained.status, 200, "{}", drained.text);
    let sinfo = || cluster.ok("sinfo", &["-h", "-n", "c2", "-N", "-o", "%T|%E"]);
    let restore = Resume(cluster);
    assert!(sinfo().contains("fan noise, checking (by boss through the bridge)"), "{}", sinfo());
    assert!(sinfo().starts_with("drain"), "{}", sinfo());
    // GET /v1/nodes shows it after the next poll.
    let mut shown = Value::Null;
    for _ in 0..100 {
        let nodes = alice.get("/v1/nodes").await.body;
        shown = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c2").cloned().unwrap();
        if shown["state"].as_str().unwrap_or("").starts_with("drain") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(shown["reason"].as_str().unwrap_or("").contains("fan noise"), "{shown}");
    let resumed = admin.post("/v1/nodes/c2/resume", json!({"reason": "fan replaced"})).await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    cluster.wait_for("c2 to take jobs again", Duration::from_secs(30), || {
        let state = sinfo();
        state.starts_with("idle") || state.starts_with("mixed") || state.starts_with("allocated")
    });
    std::mem::forget(restore);
}

/// Resumes c2 if the test stops half way.
struct Resume<'a>(&'a TestCluster);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        let _ = self.0.run("scontrol", &["update", "NodeName=c2", "State=RESUME"]);
    }
}

/// A node made a backup worker for one test, and made ordinary again after.
struct Spare<'a>(&'a TestCluster, String);

impl<'a> Spare<'a> {
    fn make(cluster: &'a TestCluster, node: &str) -> Spare<'a> {
        let name = format!("NodeName={node}");
        cluster.ok("scontrol", &["update", &name, "Weight=100", "AvailableFeatures=spare", "ActiveFeatures=spare"]);
        Spare(cluster, node.to_owned())
    }
}

impl Drop for Spare<'_> {
    fn drop(&mut self) {
        let name = format!("NodeName={}", self.1);
        let _ = self.0.run("scontrol", &["update", &name, "Weight=1", "AvailableFeatures=", "ActiveFeatures="]);
    }
}

/// Brings every node back (`cluster up`) when a test that killed daemons
/// ends, however it ends.
struct Heal<'a>(&'a TestCluster);

impl Drop for Heal<'_> {
    fn drop(&mut self) {
        self.0.up();
    }
}

/// A script that fails its first attempt by hanging (the test kills its
/// node) and succeeds at once on the next: `marker` says which is which.
fn once_then_done(marker: &std::path::Path) -> String {
    let marker = marker.display();
    format!("#!/bin/sh\nif [ -e {marker} ]; then echo second; exit 0; fi\ntouch {marker}\nsleep 600\n")
}

#[tokio::test]
async fn issue_10_a_job_whose_node_dies_is_retried_elsewhere_and_without_retries_fails_as_infrastructure() {
    // Killing a node's slurmd changes the cluster for every test.
    let (cluster, _guard) = TestCluster::exclusive();
    let _heal = Heal(cluster);
    // c3 becomes a backup worker, as `cluster up --spares c3` makes it:
    // SLURM fills it last, and retries prefer it.
    let _spare = Spare::make(cluster, "c3");
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    for _ in 0..100 {
        let nodes = alice.get("/v1/nodes").await.body;
        let c3 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c3").cloned().unwrap();
        if c3["features"] == json!(["spare"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = dir.join(e2e::unique_name("retry-marker"));
    let retried = alice
        .submit(json!({"script": once_then_done(&marker), "retries": 1, "working_dir": dir, "time_limit": 15}))
        .await;
    let plain =
        alice.submit(json!({"command": ["sleep", "600"], "retries": 0, "working_dir": dir, "time_limit": 15})).await;
    let (retried_id, plain_id) = (retried["id"].as_i64().unwrap(), plain["id"].as_i64().unwrap());
    let first = alice.wait_state(retried_id, "RUNNING").await;
    let other = alice.wait_state(plain_id, "RUNNING").await;
    cluster.wait_for("the first attempt to start its script", Duration::from_secs(30), || marker.exists());
    // Every node either job runs on loses its slurmd: SLURM marks them down
    // after SlurmdTimeout and ends their jobs with NODE_FAIL.
    let mut dead: Vec<String> = Vec::new();
    for nodes in [&first["nodes"], &other["nodes"]] {
        let node = nodes.as_str().unwrap().to_owned();
        if !dead.contains(&node) {
            let pid = std::fs::read_to_string(cluster.state_dir.join(format!("run/slurmd-{node}.pid"))).unwrap();
            cluster.ok("kill", &["-9", pid.trim()]);
            dead.push(node);
        }
    }
    assert!(!dead.iter().any(|d| d == "c3"), "SLURM used the spare first: {dead:?}");

    let done = alice.wait_finished(retried_id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!((&done["attempt"], &done["retries_left"]), (&json!(2), &json!(0)), "{done}");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(attempts[0]["nodes"], first["nodes"], "{done}");
    assert_eq!(attempts[0]["slurm_job_id"], first["slurm_job_id"], "{done}");
    assert_eq!(attempts[0]["state"], "NODE_FAIL", "{done}");
    assert_eq!(attempts[0]["failure"]["class"], "infrastructure", "{done}");
    assert_eq!(attempts[1]["state"], "COMPLETED", "{done}");
    assert_ne!(attempts[1]["slurm_job_id"], attempts[0]["slurm_job_id"], "{done}");
    // The retry went to the spare, first in line.
    assert_eq!(attempts[1]["nodes"], "c3", "{done}");
    // One timeline, saying why it went round again.
    let events = alice.get(&format!("/v1/jobs/{retried_id}/events")).await.body;
    let reasons: Vec<&str> = events.as_array().unwrap().iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("attempt 1 failed (infrastructure: ")
            && r.ends_with(&format!("avoiding {}", first["nodes"].as_str().unwrap()))),
        "{events}"
    );
    // Its output is the second attempt's.
    let output = alice.get(&format!("/v1/jobs/{retried_id}/output")).await;
    assert_eq!(output.text.trim(), "second", "{}", output.text);

    let failed = alice.wait_finished(plain_id).await;
    assert_eq!(failed["state"], "NODE_FAIL", "{failed}");
    assert_eq!(failed["failure"]["class"], "infrastructure", "{failed}");
    assert_eq!(failed["attempt"], 1, "{failed}");
    let _ = std::fs::remove_file(&marker);
}

#[tokio::test]
async fn issue_10_a_node_that_keeps_failing_jobs_is_drained_with_the_reason_and_resumed_by_an_admin() {
    // A drained node and a partition of one node change every test's jobs.
    let (cluster, _guard) = TestCluster::exclusive();
    let _partitions = TestPartitions::create(cluster, &[("odyt-one", "c2")]);
    let _resume = Resume(cluster);
    let app = TestApp::spawn(cluster, &["--drain-after", "3", "--drain-window", "600"]).await;
    let alice = app.user("alice").await;
    let admin = app.admin(cluster, "boss").await;
    let dir = cluster.user_dir("alice");
    // A task killed by SIGKILL is the system's doing: an infrastructure failure.
    let killed = json!({"script": "#!/bin/sh\nkill -9 $$\n", "partition": "odyt-one", "working_dir": dir});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = alice.submit(killed.clone()).await;
        let id = job["id"].as_i64().unwrap();
        let done = alice.wait_finished(id).await;
        assert_eq!(done["failure"]["class"], "infrastructure", "{done}");
        assert_eq!(done["attempts"][0]["nodes"], "c2", "{done}");
        ids.push(id);
    }
    let sinfo = || cluster.ok("sinfo", &["-h", "-n", "c2", "-N", "-o", "%T|%E"]);
    cluster.wait_for("c2 to be drained", Duration::from_secs(30), || sinfo().starts_with("drain"));
    let expected = format!("odyssey: 3 infrastructure failures within 600 s (jobs {}, {}, {})", ids[0], ids[1], ids[2]);
    assert!(sinfo().contains(&expected), "{} vs {expected}", sinfo());
    // An admin resumes it; the failures that drained it do not drain it again.
    assert_eq!(admin.post("/v1/nodes/c2/resume", json!({"reason": "checked"})).await.status, 200);
    let one_more = alice.submit(json!({"command": ["true"], "partition": "odyt-one", "working_dir": dir})).await;
    let done = alice.wait_finished(one_more["id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert!(!sinfo().starts_with("drain"), "{}", sinfo());
}
