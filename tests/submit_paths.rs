//! Issue #9: submission through libslurm and through sbatch give SLURM the
//! same job, the job the same environment, and the client the same answer.
//! Two bridges side by side in one test, one per path (`--submit-via`).

use std::collections::BTreeMap;

use e2e::app::{Client, TestApp};
use e2e::{unique_name, TestCluster};
use serde_json::{json, Value};

/// A bridge per path, and alice on each.
async fn both(cluster: &'static TestCluster) -> [(TestApp, Client); 2] {
    let libslurm = TestApp::spawn(cluster, &["--submit-via", "libslurm"]).await;
    let sbatch = TestApp::spawn(cluster, &["--submit-via", "sbatch"]).await;
    for (app, path) in [(&libslurm, "libslurm"), (&sbatch, "sbatch")] {
        let ready = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["submit_via"], path, "{ready}");
    }
    let (a, b) = (libslurm.user("alice").await, sbatch.user("alice").await);
    [(libslurm, a), (sbatch, b)]
}

/// `scontrol show job -o`'s fields.
fn show_job(cluster: &TestCluster, slurm_id: i64) -> BTreeMap<String, String> {
    let line = cluster.ok("scontrol", &["show", "job", "-o", &slurm_id.to_string()]);
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for token in line.split_whitespace() {
        match token.split_once('=') {
            Some((key, value)) if key.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '/') => {
                fields.insert(key.to_owned(), value.to_owned());
                last = Some(key.to_owned());
            }
            _ => {
                if let Some(key) = &last {
                    let value: &mut String = fields.get_mut(key).unwrap();
                    value.push(' ');
                    value.push_str(token);
                }
            }
        }
    }
    fields
}

/// Fields that differ between any two submissions (ids, times, the tag),
/// or with the moment the scheduler last looked at the job (Reason is
/// "None" until its first scheduling pass, then "Dependency"; Scheduler
/// names the main scheduler or backfill, whichever looked last).
const PER_SUBMISSION: &[&str] = &[
    "Reason",
    "Scheduler",
    "JobId",
    "ArrayJobId",
    "Priority",
    "SubmitTime",
    "EligibleTime",
    "AccrueTime",
    "StartTime",
    "EndTime",
    "Deadline",
    "LastSchedEval",
    "Dependency",
    "Comment",
    "StdOut",
    "StdErr",
    "RunTime",
    "TimeLeft",
    "SuspendTime",
    "SecsPreSuspend",
    "PreemptEligibleTime",
    "PreemptTime",
];

#[tokio::test]
async fn issue_9_both_paths_give_slurm_the_same_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let both = both(cluster).await;
    let shapes = [
        json!({
            "nodes": 2,
            "ntasks": 4,
            "ntasks_per_node": 2,
            "cpus_per_task": 1,
            "memory_per_cpu": "64M",
            "time_limit": "1:30:01",
            "mail_type": "END,FAIL,TIME_LIMIT_80",
            "mail_user": "alice@example.org",
            "exclusive": true,
            "health_report": "full",
            "env": {"FOO": "bar"},
        }),
        json!({"nodes": 2}),
        json!({"ntasks": 3, "memory": "1K"}),
        json!({"nodes": 2, "ntasks_per_node": 1, "cpus_per_task": 2}),
        json!({"array": "0-3%2", "memory": "100M", "time_limit": 7}),
    ];
    for shape in &shapes {
        let mut shown = Vec::new();
        for (_, alice) in &both {
            shown.push(held_job(cluster, alice, shape).await);
        }
        compare(&shown[0], &shown[1], shape);
    }
}

/// The fields SLURM holds for `shape`, submitted behind a job that waits so
/// SLURM keeps the whole record; both jobs are cancelled after.
async fn held_job(cluster: &TestCluster, alice: &Client, shape: &Value) -> BTreeMap<String, String> {
    let dir = cluster.user_dir("alice");
    let blocker = alice
        .submit(json!({"command": ["sleep", "300"], "time_limit": 6, "working_dir": dir, "name": "blocker"}))
        .await;
    let mut request = json!({"name": unique_name("same"), "command": ["true"], "working_dir": dir});
    for (key, value) in shape.as_object().unwrap() {
        request[key] = value.clone();
    }
    request["dependencies"] = json!([blocker["id"]]);
    let job = alice.submit(request).await;
    let mut fields = show_job(cluster, job["slurm_job_id"].as_i64().unwrap());
    for key in PER_SUBMISSION {
        fields.remove(*key);
    }
    // The name is unique per submission.
    fields.remove("JobName");
    // "2" until the scheduler has looked at the job, "2-2" after.
    let nodes = fields.remove("NumNodes").unwrap_or_default();
    fields.insert("NumNodes(min)".into(), nodes.split('-').next().unwrap_or_default().to_owned());
    for id in [&job["id"], &blocker["id"]] {
        assert_eq!(alice.delete(&format!("/v1/jobs/{id}")).await.status, 202);
    }
    fields
}

fn compare(libslurm: &BTreeMap<String, String>, sbatch: &BTreeMap<String, String>, shape: &Value) {
    let differing: Vec<String> = libslurm
        .keys()
        .chain(sbatch.keys())
        .filter(|k| libslurm.get(*k) != sbatch.get(*k))
        .map(|k| format!("{k}: libslurm {:?} vs sbatch {:?}", libslurm.get(k), sbatch.get(k)))
        .collect();
    assert!(differing.is_empty(), "{shape}: the paths gave SLURM different jobs:\n{}", differing.join("\n"));
    // And the options arrived at all.
    if shape["mail_type"].is_string() {
        assert_eq!(libslurm["TimeLimit"], "01:31:00", "{libslurm:?}");
        assert_eq!(libslurm["NumNodes(min)"], "2", "{libslurm:?}");
        assert_eq!(libslurm["MinMemoryCPU"], "64M", "{libslurm:?}");
        assert_eq!(libslurm["OverSubscribe"], "NO", "{libslurm:?}");
        assert_eq!(libslurm["MailType"], "END,FAIL,TIME_LIMIT_80", "{libslurm:?}");
    }
}

#[tokio::test]
async fn issue_9_both_paths_give_the_job_the_same_environment_and_limits() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.user_dir("alice");
    let mut outputs = Vec::new();
    let both = both(cluster).await;
    for (_, alice) in &both {
        let job = alice
            .submit(json!({
                "command": ["sh", "-c", "env | sort; ulimit -a; umask"],
                "working_dir": dir,
                "env": {"FOO": "bar"},
                "health_report": "summary",
            }))
            .await;
        let id = job["id"].as_i64().unwrap();
        assert_eq!(alice.wait_finished(id).await["state"], "COMPLETED");
        let out = alice.get(&format!("/v1/jobs/{id}/output")).await.text;
        // What names this job, its node and its process.
        let specific = ["SLURM_JOB_ID=", "SLURM_JOBID=", "SLURM_TASK_PID=", "SLURM_JOB_NODELIST=", "SLURM_NODELIST="];
        let node_specific = ["HOSTNAME=", "SLURMD_NODENAME=", "SLURM_TOPOLOGY_ADDR="];
        let kept: Vec<&str> =
            out.lines().filter(|l| !specific.iter().chain(&node_specific).any(|p| l.starts_with(p))).collect();
        outputs.push(kept.join("\n"));
    }
    assert_eq!(outputs[0], outputs[1], "libslurm (left) and sbatch (right) gave the job different environments");
    let env = &outputs[0];
    for line in [
        "FOO=bar",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/home/alice",
        "USER=alice",
        "SLURM_SUBMIT_DIR=",
        "SLURM_SPANK__SLURM_SPANK_OPTION_odyssey_health_health_report=summary",
    ] {
        assert!(env.lines().any(|l| l.starts_with(line)), "{line} missing:\n{env}");
    }
    assert!(!env.contains("SLURM_TIME_FORMAT"), "the bridge's own sbatch environment leaked:\n{env}");
}

#[tokio::test]
async fn issue_9_both_paths_refuse_alike() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.user_dir("alice");
    let both = both(cluster).await;
    let cases = [
        json!({"command": ["true"], "working_dir": dir, "partition": "nosuchpartition"}),
        json!({"command": ["true"], "working_dir": dir, "gres": "gpu:1"}),
        json!({"command": ["true"], "working_dir": dir, "constraint": "nosuchfeature"}),
        json!({"command": ["true"], "working_dir": dir, "nodes": 40}),
        json!({"command": ["true"], "working_dir": "/root"}),
        json!({"command": ["true"], "working_dir": "/nonexistent/dir"}),
    ];
    for case in cases {
        let mut answers = Vec::new();
        for (_, alice) in &both {
            let before = alice.job_count().await;
            let reply = alice.post("/v1/jobs", case.clone()).await;
            assert_eq!(alice.job_count().await, before, "a refused job left a record: {case}");
            answers.push((reply.status, reply.body["title"].clone(), reply.body["detail"].clone()));
        }
        assert!(answers[0].0 >= 400 && answers[0].0 < 500, "{case}: {:?}", answers[0]);
        assert_eq!(answers[0], answers[1], "{case}: libslurm (left) and sbatch (right) answered differently");
    }
}

#[tokio::test]
async fn issue_9_dry_runs_answer_alike() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.user_dir("alice");
    let both = both(cluster).await;
    for (_, alice) in &both {
        let name = unique_name("dry");
        let reply =
            alice.post("/v1/jobs?dry_run=true", json!({"command": ["true"], "working_dir": dir, "name": name})).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let line = reply.body["slurm"].as_str().unwrap();
        // "Job 12 to start at 2026-12-03T15:47:13 using 1 processors on nodes c1 in partition debug"
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words.len(), 15, "{line}");
        assert_eq!((words[0], words[2], words[3], words[4]), ("Job", "to", "start", "at"), "{line}");
        let time = words[5].as_bytes();
        assert!(time.len() == 19 && time[10] == b'T' && time[4] == b'-', "an ISO 8601 start time: {line}");
        assert_eq!(words[14], "debug", "{line}");

        let names = cluster.ok("squeue", &["-h", "-t", "all", "-o", "%j"]);
        assert!(!names.lines().any(|n| n == name), "a dry run created a SLURM job");
    }
}

/// Unset, `--submit-via` means libslurm where it loads (it does here), and
/// /readyz says which path a bridge uses; a pass of the suite with
/// BRIDGE_SUBMIT_VIA set runs every bridge on that path.
#[tokio::test]
async fn issue_9_readyz_names_the_submission_path() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let ready: Value = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap().json().await.unwrap();
    let expected = std::env::var("BRIDGE_SUBMIT_VIA").unwrap_or_else(|_| "libslurm".into());
    assert_eq!(ready["submit_via"], expected.as_str(), "{ready}");
}

// See: #9. The poller reads the queue through libslurm (`slurm_load_jobs`)
// where submissions go through it: every record reads exactly as the squeue
// line it replaces, for jobs in every kind of state (held, an array, failed,
// running, cancelled), and an unchanged queue is answered from the last one.
#[tokio::test]
async fn issue_9_the_queue_through_libslurm_reads_exactly_as_squeue_prints_it() {
    use bridge::slurm::{Libslurm, Slurm};
    use std::time::Duration;
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.user_dir("alice");
    let dir = dir.to_str().unwrap();
    let name = unique_name("queue");
    let sbatch = |args: &[&str]| {
        let mut all = vec!["--parsable", "-J", &name, "-D", dir, "-o", "/dev/null"];
        all.extend_from_slice(args);
        cluster.ok_as("alice", "sbatch", &all).trim().to_owned()
    };
    let held = sbatch(&["-H", "-t", "5", "--wrap", "true"]);
    let array = sbatch(&["-H", "--array=1-3", "--wrap", "true"]);
    let failed = sbatch(&["--wrap", "false"]);
    let running = sbatch(&["--wrap", "sleep 60"]);
    let cancelled = sbatch(&["-H", "--wrap", "true"]);
    cluster.ok("scancel", &[&cancelled]);
    let state = |id: &str| cluster.ok("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]).trim().to_owned();
    cluster.wait_for("the jobs to fail and run", Duration::from_secs(60), || {
        state(&failed) == "FAILED" && state(&running) == "RUNNING"
    });

    let timeout = Duration::from_secs(10);
    let by_command = Slurm::new(Some(cluster.slurm_conf.clone()), timeout);
    let libslurm = Libslurm::load(Some(&cluster.slurm_conf), 2).expect("libslurm loads");
    let through_library = Slurm::new(Some(cluster.slurm_conf.clone()), timeout).with_libslurm(libslurm);
    // Other tests' jobs change state meanwhile: a record must read as the
    // squeue line just before or just after it.
    let before = by_command.squeue_all_by_command().await.unwrap();
    let read = through_library.squeue_all().await.unwrap();
    let after = by_command.squeue_all_by_command().await.unwrap();
    let again = through_library.squeue_all().await.unwrap();
    let line = |entries: &[bridge::slurm::parse::QueueEntry], id: i64| entries.iter().find(|e| e.job_id == id).cloned();
    for entry in read.iter() {
        let (b, a) = (line(&before, entry.job_id), line(&after, entry.job_id));
        assert!(
            b.as_ref() == Some(entry) || a.as_ref() == Some(entry) || (b.is_none() && a.is_none()),
            "libslurm {entry:?}\nsqueue before {b:?}\nsqueue after {a:?}"
        );
    }
    for entry in before.iter().filter(|e| after.iter().any(|a| a.job_id == e.job_id)) {
        assert!(read.iter().any(|r| r.job_id == entry.job_id), "squeue lists {entry:?}, libslurm does not");
    }
    // This test's own jobs, each in its state.
    let ours: Vec<_> = read
        .iter()
        .filter(|e| {
            [&held, &failed, &running, &cancelled].iter().any(|id| e.job_id.to_string() == **id)
                || e.array_job_id.to_string() == array
        })
        .collect();
    let states: std::collections::BTreeSet<String> = ours.iter().map(|e| e.state.to_string()).collect();
    for expected in ["PENDING", "FAILED", "RUNNING", "CANCELLED"] {
        assert!(states.contains(expected), "{expected} missing among {ours:?}");
    }
    assert!(ours.iter().any(|e| e.reason.as_deref() == Some("JobHeldUser")), "{ours:?}");
    assert!(ours.iter().any(|e| e.time_limit == Some(5)), "{ours:?}");
    assert!(ours.iter().all(|e| e.user == "alice"), "{ours:?}");
    assert!(!again.is_empty());
    cluster.ok("scancel", &["-n", &name, "-u", "alice"]);
}
