//! Health reports from the SPANK plugin to the bridge, on the real cluster.
//! The plugin posts to the address plugstack.conf names (10.199.0.1:8080,
//! the cluster bridge's side of the node network), so these tests run a
//! bridge there one at a time.

use std::time::Duration;

use e2e::app::HEALTH_BRIDGE as ADDR;
use e2e::app::{health_app, TestApp, HEALTH_ADDR};
use e2e::{text, unique_name, TestCluster};
use serde_json::json;

fn flush(cluster: &TestCluster, node: &str) -> std::process::Output {
    flush_spool(cluster, &cluster.state_dir.join(format!("nodes/{node}/health-spool")))
}

/// `odyssey-health-flush` of one spool directory to this file's bridge address.
fn flush_spool(cluster: &TestCluster, spool: &std::path::Path) -> std::process::Output {
    let binary = cluster.repo.join("target/release/odyssey-health-flush");
    assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
    let secret = cluster.state_dir.join("etc/health.secret");
    let url = format!("http://{ADDR}/v1/health-reports");
    cluster.run(
        binary.to_str().unwrap(),
        &["--spool", spool.to_str().unwrap(), "--url", &url, "--secret", secret.to_str().unwrap()],
    )
}

/// Dates a hand-written spool file (task records only, no node record)
/// `seconds` back, past the spool's settling time, so a deliverer takes it
/// for a step that ended long ago.
fn settle(file: &std::path::Path, seconds: u64) {
    assert!(Duration::from_secs(seconds) > odyssey_health_wire::spool::SETTLING);
    let at = std::time::SystemTime::now() - Duration::from_secs(seconds);
    std::fs::File::options().write(true).open(file).unwrap().set_modified(at).unwrap();
}

async fn stored(app: &TestApp, slurm_job_id: i64) -> Vec<serde_json::Value> {
    let store = bridge::store::Store::open(&app.data_dir.join("bridge.db")).unwrap();
    let records = store.read(move |conn| bridge::store::health::for_job(conn, slurm_job_id, 0.0)).await.unwrap();
    // Compared as the JSON the plugin sent.
    records.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_a_job_reach_its_record_and_the_nodes() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let app = health_app(cluster).await;
    let alice = app.user("alice").await;
    let job = alice
        // With an environment of its own: the batch step still finds the
        // option (it once did only when sbatch exported its own environment).
        .submit(json!({"script": "#!/bin/sh\nsrun -N3 -n3 true\n", "nodes": 3, "health_report": true,
                       "env": {"ODYSSEY_TEST": "1"}, "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let done = alice.wait_finished(id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert!(done["failure"].is_null(), "{done}");
    // Each step daemon posts as its step ends; the batch step's record comes last.
    let mut health = serde_json::Value::Null;
    for _ in 0..100 {
        health = alice.get(&format!("/v1/jobs/{id}/health")).await.body;
        if health["tasks"].as_u64() >= Some(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health["tasks"], 4, "3 tasks of step 0 and the batch script: {health}");
    assert_eq!(health["tasks_ok"], 4, "{health}");
    // Grouped per step (the batch script's first), per node, per task.
    let steps = health["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["batch", "0"], "{health}");
    let step0 = &steps[1];
    assert_eq!((step0["tasks"].as_u64(), step0["tasks_ok"].as_u64()), (Some(3), Some(3)), "{health}");
    let nodes = step0["nodes"].as_array().unwrap();
    let node_names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert_eq!(node_names, ["c1", "c2", "c3"], "{health}");
    for node in nodes {
        assert_eq!(node["node_record"]["kind"], "node", "{node}");
        assert_eq!(node["tasks"].as_array().unwrap().len(), 1, "{node}");
    }
    let nodes = alice.get("/v1/nodes").await.body;
    for node in nodes["nodes"].as_array().unwrap() {
        assert_eq!(node["health"]["kind"], "node", "{node}");
        assert!(node["health_age_s"].as_f64().unwrap() >= 0.0, "{node}");
    }
    // Bob sees none of it.
    let bob = app.user("bob").await;
    assert_eq!(bob.get(&format!("/v1/jobs/{id}/health")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_from_state_and_reports() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let app = health_app(cluster).await;
    let alice = app.user("alice").await;
    let dir = cluster.user_dir("alice");
    let exited =
        alice.submit(json!({"command": ["sh", "-c", "exit 3"], "health_report": "full", "working_dir": dir})).await;
    let killed = alice
        .submit(
            json!({"script": "#!/bin/sh\nsrun -N1 sh -c 'kill -KILL $$'\n", "health_report": true, "working_dir": dir}),
        )
        .await;
    let exited = alice.wait_finished(exited["id"].as_i64().unwrap()).await;
    assert_eq!(exited["failure"]["class"], "application", "{exited}");
    assert_eq!(exited["failure"]["reason"], "exit code 3", "{exited}");
    let id = killed["id"].as_i64().unwrap();
    alice.wait_finished(id).await;
    let mut job = serde_json::Value::Null;
    for _ in 0..100 {
        job = alice.get(&format!("/v1/jobs/{id}")).await.body;
        if job["failure"]["class"] == "infrastructure" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["failure"]["class"], "infrastructure", "{job}");
    assert!(job["failure"]["reason"].as_str().unwrap().contains("signal 9"), "{job}");
}

/// The bridge is away while a job runs: records stay in the spool, a later
/// flush delivers them, and flushing again stores nothing twice. (Other
/// tests' steps may deliver a node's pending files first while this test's
/// bridge listens: the outcome, every record stored once, is the same.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_bridge_outage_and_arrive_once() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let name = unique_name("outage");
    let name_arg = format!("--job-name={name}");
    let out = cluster.run("srun", &[&name_arg, "-N2", "-n2", "--health-report=summary", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let slurm_id: i64 = cluster.ok("squeue", &["-h", "-t", "all", "-n", &name, "-o", "%i"]).trim().parse().unwrap();
    let pending = |node: &str| cluster.state_dir.join(format!("nodes/{node}/health-spool/{slurm_id}.0.jsonl"));
    assert!(pending("c1").exists() || pending("c2").exists(), "nothing spooled while the bridge was away");

    let app = health_app(cluster).await;
    for node in ["c1", "c2", "c3"] {
        let out = flush(cluster, node);
        assert!(out.status.success(), "flush {node}: {}{}", text(&out.stdout), text(&out.stderr));
    }
    let records = stored(&app, slurm_id).await;
    assert_eq!(records.len(), 4, "2 tasks and 2 nodes: {records:?}");
    assert!(!pending("c1").exists() && !pending("c2").exists(), "delivered files stay pending");
    for node in ["c1", "c2", "c3"] {
        assert!(flush(cluster, node).status.success());
    }
    assert_eq!(stored(&app, slurm_id).await.len(), 4, "a second flush duplicated records");
}

/// A corrupt spool file is reported and skipped, its good lines delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_spool_file_is_reported_and_skipped() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::ensure();
    let app = health_app(cluster).await;
    let spool = cluster.state_dir.join("bridge-tests").join(unique_name("corrupt-spool"));
    std::fs::create_dir_all(&spool).unwrap();
    let good = json!({"id": "990001.0.c9.task0", "kind": "task", "job_id": 990001, "step_id": 0, "node": "c9",
                      "task": 0, "exit_code": 0, "signal": null, "at": bridge::store::now()});
    std::fs::write(spool.join("990001.0.jsonl"), format!("{{\"id\": \"half a line\n{}garbage\n{good}\n", '\u{0}'))
        .unwrap();
    // A step that ended long ago (no node record): past the spool's settling time.
    settle(&spool.join("990001.0.jsonl"), 60);
    let out = flush_spool(cluster, &spool);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "sent 1 records in 1 files; 2 corrupt lines skipped; 0 files left\n");
    assert_eq!(stored(&app, 990001).await.len(), 1);
    std::fs::remove_dir_all(spool).unwrap();
}

/// A step file larger than the bridge takes in one request (1 MiB) goes in
/// parts of at most 256 KiB, split between lines, and the file behind it
/// follows. Sent whole, it was refused (413), or its connection closed while
/// it was being written, which looked like a bridge away and held the
/// spool for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_a_request_goes_in_parts_and_the_rest_follow() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::ensure();
    let app = health_app(cluster).await;
    let spool = cluster.state_dir.join("bridge-tests").join(unique_name("large-spool"));
    std::fs::create_dir_all(&spool).unwrap();
    let record = |job: u64, task: u64| {
        json!({"id": format!("{job}.0.c9.task{task}"), "kind": "task", "job_id": job, "step_id": 0, "node": "c9",
               "task": task, "exit_code": 0, "signal": null, "at": bridge::store::now()})
        .to_string()
    };
    // More than the bridge's 1 MiB body limit, and older than the next file.
    let big: String = (0..9000).map(|t| record(990002, t) + "\n").collect();
    assert!(big.len() > 1024 * 1024);
    std::fs::write(spool.join("990002.0.jsonl"), big).unwrap();
    settle(&spool.join("990002.0.jsonl"), 60);
    std::fs::write(spool.join("990003.0.jsonl"), record(990003, 0) + "\n").unwrap();
    settle(&spool.join("990003.0.jsonl"), 30);
    let out = flush_spool(cluster, &spool);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "sent 9001 records in 2 files; 0 corrupt lines skipped; 0 files left\n");
    assert!(spool.join("sent/990002.0.jsonl").exists() && spool.join("sent/990003.0.jsonl").exists());
    assert_eq!(stored(&app, 990002).await.len(), 9000);
    assert_eq!(stored(&app, 990003).await.len(), 1);
    std::fs::remove_dir_all(spool).unwrap();
}

/// The agent's options without `--watch` are refused with one line, not
/// ignored: a one-shot flush that was meant to be an agent would hold no
/// lock, and every step would go on starting flushes of its own.
#[test]
fn agent_options_without_watch_are_refused() {
    let binary = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/odyssey-health-flush");
    assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
    let base = ["--spool", "/nonexistent", "--url", "http://127.0.0.1:9/", "--secret", "/nonexistent"];
    for extra in [&["--lock", "/tmp/agent.lock"][..], &["--interval-ms", "100"][..]] {
        let out = std::process::Command::new(&binary).args(base).args(extra).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {out:?}");
        let err = text(&out.stderr);
        assert!(err.contains("need --watch") && err.trim().lines().count() == 1, "{extra:?}: {err}");
    }
}

/// Without the plugin in plugstack.conf, jobs run as before and the option
/// is simply unknown.
#[test]
fn jobs_run_with_the_plugin_removed() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.spank_plugin();
    // Reinstalled from the build afterwards, with odyssey-health-flush beside it.
    let built = cluster.repo.join("target/release/libodyssey_spank.so");
    let out = cluster.cluster_script(&["plugin", "remove"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ran = cluster.ok("srun", &["-N3", "hostname"]);
    assert_eq!(ran.lines().count(), 3);
    let refused = cluster.run("srun", &["-N1", "--health-report=summary", "true"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("unrecognized option"), "{}", text(&refused.stderr));
    let out = cluster.cluster_script(&["plugin", "install", built.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let conf = std::fs::read_to_string(cluster.state_dir.join("etc/plugstack.conf.d/odyssey-health.conf")).unwrap();
    assert!(conf.contains(" flush="), "{conf}");
    assert_eq!(cluster.ok("srun", &["-N1", "--health-report=off", "true"]), "");
}

/// Each configured node's agent (`odyssey-health-flush --watch`, started by
/// `cluster up` and `plugin install`) delivers its spool: a step daemon
/// leaves delivery to it while it holds its lock, even a paused one, and
/// starts a flush of its own once the agent is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_agent_delivers_and_a_step_delivers_without_it() {
    let _addr = HEALTH_ADDR.lock().await;
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.spank_plugin();
    let app = health_app(cluster).await;
    let pid_file = cluster.state_dir.join("run/health-agent-c1.pid");
    let agent = std::fs::read_to_string(&pid_file).expect("c1's agent pid file").trim().to_owned();
    /// Whatever happens below, c1 gets its agent back (`up` starts a dead one).
    struct Restore<'a>(&'a TestCluster, String);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.run("kill", &["-CONT", &self.1]);
            let _ = self.0.cluster_script(&["up"]);
        }
    }
    let _restore = Restore(cluster, agent.clone());
    let step = |tag: &str| -> i64 {
        let name = unique_name(tag);
        let out =
            cluster.run("srun", &[&format!("--job-name={name}"), "-w", "c1", "-N1", "--health-report=summary", "true"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        cluster.ok("squeue", &["-h", "-t", "all", "-n", &name, "-o", "%i"]).trim().parse().unwrap()
    };
    let spooled = |id: i64| cluster.state_dir.join(format!("nodes/c1/health-spool/{id}.0.jsonl"));

    // Paused, the agent still holds its lock: the step starts no flush, so
    // its records wait (a flush would have sent them within milliseconds of
    // the step's end; two seconds is the bound of that negative check).
    assert!(cluster.run("kill", &["-STOP", &agent]).status.success());
    let held = step("agent-paused");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(spooled(held).exists(), "the step's file left the spool while its agent was paused");
    assert!(stored(&app, held).await.is_empty(), "a flush delivered although the agent holds its lock");
    // Resumed, the agent sends them at its next turn.
    assert!(cluster.run("kill", &["-CONT", &agent]).status.success());
    for _ in 0..100 {
        if stored(&app, held).await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(&app, held).await.len(), 2, "the task and node records, from the agent");
    assert!(!spooled(held).exists());

    // Gone (its lock with it): the step daemon starts a flush, as before agents.
    assert!(cluster.run("kill", &["-KILL", &agent]).status.success());
    let alone = step("agent-gone");
    for _ in 0..100 {
        if stored(&app, alone).await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored(&app, alone).await.len(), 2, "no agent, and no flush delivered the step's records");
    let status = cluster.cluster_script(&["status"]);
    assert!(!text(&status.stdout).contains(&format!("health agent pid {agent}")), "{}", text(&status.stdout));
    // `up` brings the agent back.
    cluster.up();
    let status = text(&cluster.cluster_script(&["status"]).stdout);
    let line = status.lines().find(|l| l.starts_with("node c1:")).unwrap_or_default().to_owned();
    assert!(line.contains("health agent pid"), "{status}");
}
