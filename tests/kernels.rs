//! Kernel jobs through the bridge's REST API: odyssey-mpi under srun on the
//! real cluster, its result collated into the job record.

use std::time::Duration;

use e2e::app::{Client, TestApp};
use e2e::{text, unique_name, TestCluster};
use serde_json::{json, Value};

async fn kernel_app(cluster: &TestCluster, mpi_binary: &std::path::Path) -> TestApp {
    TestApp::spawn(cluster, &["--mpi-binary", mpi_binary.to_str().unwrap()]).await
}

/// Polls the job until the poller has read its result (bounded); the job.
async fn wait_collated(client: &Client, id: i64) -> Value {
    client.wait_finished(id).await;
    for _ in 0..100 {
        let job = client.get(&format!("/v1/jobs/{id}")).await.body;
        if job["result"]["collated"] == true {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the result of job {id} was never collated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_job_ends_with_its_verified_result_in_the_record() {
    let (cluster, _guard) = TestCluster::ensure();
    let _slot = e2e::mpi_job_slot();
    let app = kernel_app(cluster, &cluster.mpi_binary()).await;
    let alice = app.user("alice").await;
    let job = alice
        .submit(json!({"kernel": "jacobi", "params": {"n": 120, "max_iters": 300}, "nodes": 3, "ntasks": 6,
                       "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    assert!(job["script"].as_str().unwrap().contains("srun --mpi=pmix"), "{job}");
    let job = wait_collated(&alice, id).await;
    assert_eq!(job["state"], "COMPLETED", "{job}");
    assert_eq!(job["result"]["verified"], true, "{job}");
    assert!(job["failure"].is_null(), "{job}");

    let reply = alice.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let result = reply.body;
    assert_eq!(result["kernel"], "jacobi");
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["ranks"], 6);
    assert_eq!(result["params"]["n"], 120);
    assert_eq!(result["nodes"], json!(["c1", "c2", "c3"]), "{result}");
    assert_eq!(result["details"]["iterations"], 300, "{result}");

    // Only its owner sees it; a job without a kernel has none.
    let bob = app.user("bob").await;
    assert_eq!(bob.get(&format!("/v1/jobs/{id}/result")).await.status, 404);
    let plain = alice.submit(json!({"command": ["true"], "working_dir": cluster.user_dir("alice")})).await;
    let plain = plain["id"].as_i64().unwrap();
    let reply = alice.get(&format!("/v1/jobs/{plain}/result")).await;
    assert_eq!(reply.status, 404);
    assert!(reply.body["detail"].as_str().unwrap().contains("not a kernel job"), "{}", reply.text);
    assert!(alice.get(&format!("/v1/jobs/{plain}")).await.body.get("result").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kernel_params_get_a_4xx_before_anything_is_submitted() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = kernel_app(cluster, &cluster.mpi_binary()).await;
    let alice = app.user("alice").await;
    let name = unique_name("badkernel").replace('-', "_");
    let dir = cluster.user_dir("alice");
    let cases = [
        (json!({"kernel": "jacobi", "params": {"n": 100}, "nodes": 3, "ntasks": 6}), "params", "3 x 2 process grid"),
        (json!({"kernel": "matmul", "params": {"n": 0}}), "params", "--n must be at least 1"),
        (json!({"kernel": "cg", "params": {"tol": 5}}), "params", "--tol must be between 0 and 1"),
        (json!({"kernel": "pi", "params": {"samples": "many"}}), "params", "invalid type"),
        (json!({"kernel": "pi", "params": {"rounds": 3}}), "params", "unknown field `rounds`"),
        (json!({"kernel": "fft"}), "kernel", "unknown kernel \"fft\""),
        (json!({"kernel": "pi", "command": ["true"]}), "kernel", "one of script, command or kernel"),
        (json!({"params": {"n": 8}, "command": ["true"]}), "params", "params go with a kernel"),
    ];
    for (mut body, field, detail) in cases {
        body["name"] = json!(name);
        body["working_dir"] = json!(dir);
        let reply = alice.post("/v1/jobs", body.clone()).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert_eq!(reply.body["field"], field, "{body}: {}", reply.text);
        assert!(reply.body["detail"].as_str().unwrap().contains(detail), "{body}: {}", reply.text);
    }
    assert_eq!(alice.job_count().await, 0);
    let queued = cluster.ok("squeue", &["-h", "-n", &name, "-o", "%i"]);
    assert_eq!(queued, "", "a refused kernel job reached SLURM");

    // Without odyssey-mpi where the bridge expects it: 503, with the fix.
    let missing = kernel_app(cluster, std::path::Path::new("/nonexistent/odyssey-mpi")).await;
    let alice = missing.user("alice").await;
    let reply = alice.post("/v1/jobs", json!({"kernel": "pi", "working_dir": dir})).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("scripts/build.sh"), "{}", reply.text);
}

/// pids of the odyssey-mpi processes of SLURM job `slurm_id` with rank `rank`.
fn rank_pids(slurm_id: i64, rank: u32) -> Vec<u32> {
    let job = format!("SLURM_JOB_ID={slurm_id}");
    let procid = format!("SLURM_PROCID={rank}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let environ = text(&environ);
            let vars: Vec<&str> = environ.split('\0').collect();
            (comm.trim() == "odyssey-mpi" && vars.contains(&job.as_str()) && vars.contains(&procid.as_str()))
                .then_some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rank_killed_mid_run_fails_the_job_with_a_clear_reason_and_no_result() {
    let (cluster, _guard) = TestCluster::ensure();
    let _slot = e2e::mpi_job_slot();
    let app = kernel_app(cluster, &cluster.mpi_binary()).await;
    let alice = app.user("alice").await;
    // Far more iterations than it can run before the kill; the time limit
    // bounds it should the kill miss.
    let job = alice
        .submit(json!({"kernel": "jacobi", "params": {"n": 120, "max_iters": 100000000, "tol": 1e-300},
                       "nodes": 2, "ntasks": 2, "time_limit": 3, "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let running = alice.wait_state(id, "RUNNING").await;
    let slurm_id = running["slurm_job_id"].as_i64().unwrap();
    let mut pids = Vec::new();
    cluster.wait_for("rank 1 to start", Duration::from_secs(60), || {
        pids = rank_pids(slurm_id, 1);
        !pids.is_empty()
    });
    cluster.ok("kill", &["-KILL", &pids[0].to_string()]);

    let job = wait_collated(&alice, id).await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["result"]["verified"], Value::Null, "{job}");
    let reason = job["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("odyssey-mpi wrote no result"), "{job}");
    let reply = alice.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("has no result"), "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_marks_the_job_failed_with_the_reason() {
    let (cluster, _guard) = TestCluster::ensure();
    let _slot = e2e::mpi_job_slot();
    // The real odyssey-mpi, told to corrupt its answer after computing it.
    let wrapper = cluster.shared_dir.join("scratch").join(unique_name("inject-error"));
    let real = cluster.mpi_binary();
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} --inject-error \"$@\"\n", real.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let app = kernel_app(cluster, &wrapper).await;
    let alice = app.user("alice").await;
    let job = alice
        .submit(json!({"kernel": "pi", "params": {"samples": 100000}, "nodes": 2, "ntasks": 2,
                       "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let job = wait_collated(&alice, id).await;
    std::fs::remove_file(&wrapper).unwrap();
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["result"]["verified"], false, "{job}");
    assert_eq!(job["failure"]["class"], "application", "{job}");
    let reason = job["failure"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("pi failed verification: error norm 1e0 exceeds tolerance 0e0"), "{job}");
    // The unverified result is kept, for inspection.
    let reply = alice.get(&format!("/v1/jobs/{id}/result")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["verified"], false);
}
