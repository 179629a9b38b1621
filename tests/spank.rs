//! The SPANK plugin loads into srun, sbatch and salloc and handles its option.

use e2e::{text, unique_name, TestCluster};

#[test]
fn srun_and_sbatch_list_the_option() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    for program in ["srun", "sbatch", "salloc"] {
        let help = cluster.ok(program, &["--help"]);
        assert!(help.contains("--health-report=MODE"), "{program} --help:\n{help}");
        assert!(help.contains("summary (the"), "{program} --help:\n{help}");
    }
}

#[test]
fn the_mode_reaches_every_task_of_the_step() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let out = cluster.ok("srun", &["-N3", "--health-report=full", "printenv", "ODYSSEY_HEALTH_REPORT"]);
    assert_eq!(out, "full\nfull\nfull\n");
    // Without the option the plugin stays out of the job.
    let out = cluster.run("srun", &["-N1", "printenv", "ODYSSEY_HEALTH_REPORT"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn sbatch_forwards_the_mode_to_the_steps_of_its_script() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let out_path = cluster.user_dir("alice").join(format!("{}.out", unique_name("spank")));
    let out_arg = format!("--output={}", out_path.display());
    let id = cluster.sbatch_wait(
        Some("alice"),
        &["--health-report=summary", &out_arg, "--wrap", "srun printenv ODYSSEY_HEALTH_REPORT"],
    );
    let output = std::fs::read_to_string(&out_path).unwrap_or_else(|e| panic!("job {id}: {e}"));
    assert_eq!(without_summaries(&output), ["summary"], "{output}");
}

#[test]
fn the_option_without_a_value_means_summary() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let out = cluster.ok("srun", &["-N2", "--health-report", "printenv", "ODYSSEY_HEALTH_REPORT"]);
    assert_eq!(out, "summary\nsummary\n");
    // sbatch and salloc forward it to the steps inside; the next word is
    // the script or command, never the option's value.
    let out_path = cluster.user_dir("alice").join(format!("{}.out", unique_name("spank-bare")));
    let out_arg = format!("--output={}", out_path.display());
    let id = cluster
        .sbatch_wait(Some("alice"), &["--health-report", &out_arg, "--wrap", "srun printenv ODYSSEY_HEALTH_REPORT"]);
    let output = std::fs::read_to_string(&out_path).unwrap_or_else(|e| panic!("job {id}: {e}"));
    assert_eq!(without_summaries(&output), ["summary"], "{output}");
    let out =
        cluster.ok_as("alice", "salloc", &["-N1", "--health-report", "srun", "printenv", "ODYSSEY_HEALTH_REPORT"]);
    assert_eq!(out, "summary\n");
}

#[test]
fn an_unknown_mode_is_refused_before_anything_runs() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    for program in ["srun", "sbatch"] {
        let args: &[&str] = if program == "srun" {
            &["-N1", "--health-report=bogus", "true"]
        } else {
            &["--health-report=bogus", "--wrap", "true"]
        };
        let out = cluster.run(program, args);
        assert!(!out.status.success(), "{program} accepted a bogus mode");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(r#"--health-report: unknown mode "bogus" (expected off, summary or full)"#),
            "{program}: {stderr}"
        );
    }
}

/// Every record spooled for a job, from every node's spool directory.
fn spooled(cluster: &TestCluster, job_id: &str) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for i in 1..=cluster.n_nodes {
        // Pending files, and those already delivered to a bridge (sent/).
        let dir = cluster.state_dir.join(format!("nodes/c{i}/health-spool"));
        let entries = std::fs::read_dir(&dir).into_iter().chain(std::fs::read_dir(dir.join("sent"))).flatten();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{job_id}.")) {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                records.extend(text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()));
            }
        }
    }
    records
}

/// Runs `srun <args> sh -c '<script>'` under a unique job name; the job id
/// (found by that name, since a killed task may print nothing) and whether
/// srun succeeded.
fn srun_job(cluster: &TestCluster, args: &[&str], script: &str) -> (String, bool) {
    let name = unique_name("health");
    let name_arg = format!("--job-name={name}");
    let mut full: Vec<&str> = vec![&name_arg];
    full.extend_from_slice(args);
    full.extend(["sh", "-c", script]);
    let out = cluster.run("srun", &full);
    let id = cluster.ok("squeue", &["-h", "-t", "all", "-n", &name, "-o", "%i"]).trim().to_owned();
    assert!(id.parse::<u32>().is_ok(), "no job named {name}: {}\n{}", text(&out.stdout), text(&out.stderr));
    (id, out.status.success())
}

fn of_kind<'a>(records: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

#[test]
fn a_step_on_three_nodes_spools_a_record_per_task_and_per_node() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let (id, ok) = srun_job(cluster, &["-N3", "-n3", "--health-report=summary"], "true");
    assert!(ok);
    let records = spooled(cluster, &id);
    let tasks = of_kind(&records, "task");
    let nodes = of_kind(&records, "node");
    assert_eq!(tasks.len(), 3, "{records:?}");
    assert_eq!(nodes.len(), 3, "{records:?}");
    let mut names: Vec<&str> = nodes.iter().map(|n| n["node"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["c1", "c2", "c3"]);
    for task in &tasks {
        assert_eq!(task["exit_code"], 0, "{task}");
        assert!(task["signal"].is_null());
        assert!(task["wall_time_s"].as_f64().unwrap() >= 0.0, "{task}");
        // This node tracks processes without cgroups: no per-task memory or
        // OOM evidence, and the record says so instead of guessing.
        assert!(task["peak_memory_bytes"]["unknown"].as_str().unwrap().contains("no per-task source"), "{task}");
        assert!(task["oom_killed"]["unknown"].is_string(), "{task}");
    }
    for node in &nodes {
        assert_eq!((node["tasks"].as_u64(), node["tasks_ok"].as_u64()), (Some(1), Some(1)), "{node}");
        assert_eq!(node["load"].as_array().unwrap().len(), 3, "{node}");
        assert!(node["mem_available_bytes"].as_u64().unwrap() > 0, "{node}");
        assert!(node["workdir_free_bytes"].as_u64().unwrap() > 0, "{node}");
        assert!(node["step_end"].as_f64() >= node["step_start"].as_f64(), "{node}");
    }
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), records.len(), "record ids are unique");
}

#[test]
fn exit_codes_and_signals_are_recorded_per_task() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let (three, ok) = srun_job(cluster, &["-N1", "--health-report=full"], "exit 3");
    assert!(!ok);
    let tasks = spooled(cluster, &three);
    let task = of_kind(&tasks, "task")[0];
    assert_eq!((task["exit_code"].as_i64(), task["signal"].as_i64()), (Some(3), None), "{task}");
    let (killed, ok) = srun_job(cluster, &["-N1", "--health-report=full"], "kill -KILL $$");
    assert!(!ok);
    let tasks = spooled(cluster, &killed);
    let task = of_kind(&tasks, "task")[0];
    assert_eq!((task["exit_code"].as_i64(), task["signal"].as_i64()), (None, Some(9)), "{task}");
    let node = of_kind(&tasks, "node")[0];
    assert_eq!(node["tasks_ok"], 0, "{node}");
}

#[test]
fn without_the_option_nothing_is_spooled() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let (id, ok) = srun_job(cluster, &["-N3", "-n3"], "true");
    assert!(ok);
    assert!(spooled(cluster, &id).is_empty());
    let (id, _) = srun_job(cluster, &["-N1", "--health-report=off"], "true");
    assert!(spooled(cluster, &id).is_empty());
}

#[test]
fn a_batch_job_with_the_option_reports_its_steps() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let out_path = cluster.user_dir("alice").join(format!("{}.out", unique_name("health-batch")));
    let out_arg = format!("--output={}", out_path.display());
    let id = cluster.sbatch_wait(Some("alice"), &["-N2", "--health-report=summary", &out_arg, "--wrap", "srun true"]);
    let records = spooled(cluster, &id);
    let steps: std::collections::BTreeSet<String> =
        records.iter().map(|r| r["id"].as_str().unwrap().split('.').nth(1).unwrap().to_owned()).collect();
    assert!(steps.contains("0") && steps.contains("batch"), "{records:?}");
    let step0: Vec<_> = of_kind(&records, "task").into_iter().filter(|t| t["step_id"] == 0).collect();
    assert_eq!(step0.len(), 2, "{records:?}");
    assert!(step0.iter().all(|t| t["exit_code"] == 0));
    // The srun inside printed its step's summary into the job's output, one
    // line per node; the batch script's own step printed nothing there.
    let output = std::fs::read_to_string(&out_path).unwrap();
    assert_eq!(summaries(&output).len(), 2, "{output}");
}

/// Output lines other than the plugin's per-node summaries.
fn without_summaries(output: &str) -> Vec<&str> {
    output.lines().filter(|l| !l.contains("odyssey_health: ")).collect()
}

/// The per-node summary lines in srun's stderr, without slurmstepd's prefix.
fn summaries(stderr: &str) -> Vec<&str> {
    let mut lines: Vec<&str> =
        stderr.lines().filter_map(|l| l.split_once("odyssey_health: ").map(|(_, s)| s)).collect();
    lines.sort();
    lines
}

#[test]
fn srun_prints_a_summary_per_node_when_the_step_ends() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    let out = cluster.run("srun", &["-N2", "-n4", "--health-report", "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let lines = summaries(&stderr);
    assert_eq!(lines.len(), 2, "{stderr}");
    for line in &lines {
        let (node, rest) = line.split_once(": ").unwrap();
        assert!(node.starts_with('c'), "{line}");
        assert_eq!(rest, "2 tasks ok, peak memory unknown, OOM unknown", "{stderr}");
    }
    let out = cluster.run("srun", &["-N1", "--health-report=full", "sh", "-c", "exit 3"]);
    let stderr = text(&out.stderr);
    assert!(
        summaries(&stderr)[0].ends_with(": 0 of 1 tasks ok (task 0: exit code 3), peak memory unknown, OOM unknown"),
        "{stderr}"
    );
    // Without the option, no summary.
    let out = cluster.run("srun", &["-N2", "true"]);
    assert!(summaries(&text(&out.stderr)).is_empty(), "{}", text(&out.stderr));
}
