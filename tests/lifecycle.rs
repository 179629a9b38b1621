//! `cluster up` / `down` / `status`: idempotence, healing, clean removal.
//! These tests take the cluster exclusively and leave it up and healthy.

use std::time::Duration;

use e2e::{text, TestCluster};

/// pid of a daemon from its pid file under the state dir's run/.
fn daemon_pid(cluster: &TestCluster, file: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(cluster.state_dir.join("run").join(file)).ok()?.trim().parse().ok()?;
    std::path::Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn daemon_pids(cluster: &TestCluster) -> Vec<Option<u32>> {
    let mut files = vec!["slurmctld.pid".to_owned()];
    files.extend((1..=cluster.n_nodes).map(|i| format!("slurmd-c{i}.pid")));
    files.iter().map(|f| daemon_pid(cluster, f)).collect()
}

/// `up`, then every node answers and a step across all of them runs. After
/// a crash a node may still be "mixed": slurmctld restores the allocations
/// of its last saved state, and frees those of dead sruns after InactiveLimit.
fn up_and_assert_healed(cluster: &TestCluster) {
    cluster.up();
    let states = cluster.node_states();
    assert!(states.iter().all(|(_, s)| matches!(s.as_str(), "idle" | "mixed")), "{states:?}");
    let n = cluster.n_nodes.to_string();
    let out = cluster.ok("srun", &["-N", &n, "hostname"]);
    assert_eq!(out.lines().count(), cluster.n_nodes, "{out}");
}

/// Everything `up` creates that `down` must remove, as found on the machine.
fn leftovers(cluster: &TestCluster) -> Vec<String> {
    let mut found = Vec::new();
    let netns = text(&cluster.run("ip", &["netns", "list"]).stdout);
    found.extend(netns.lines().filter(|l| l.starts_with("odyssey-")).map(|l| format!("netns {l}")));
    let links = text(&cluster.run("ip", &["-o", "link", "show"]).stdout);
    for line in links.lines() {
        let name = line.split(':').nth(1).unwrap_or("").trim();
        let name = name.split('@').next().unwrap_or("");
        if name.starts_with("odv-") || name == "odyssey0" {
            found.push(format!("link {name}"));
        }
    }
    let conf = format!("SLURM_CONF={}", cluster.slurm_conf.display());
    let munge_key = cluster.state_dir.join("munge/munge.key").display().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let path = entry.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        let environ = std::fs::read(path.join("environ")).unwrap_or_default();
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let ours = match comm {
            "slurmctld" | "slurmd" | "slurmstepd" => text(&environ).split('\0').any(|v| v == conf),
            "munged" => text(&cmdline).contains(&munge_key),
            _ => false,
        };
        if ours {
            found.push(format!("process {comm} {}", path.display()));
        }
    }
    found
}

#[test]
fn up_twice_is_harmless() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.up();
    let before = daemon_pids(cluster);
    assert!(before.iter().all(Option::is_some), "{before:?}");
    cluster.up();
    assert_eq!(daemon_pids(cluster), before, "a second up restarted daemons of a healthy cluster");
    let status = cluster.cluster_script(&["status"]);
    assert!(status.status.success(), "{}", text(&status.stdout));
    assert!(text(&status.stdout).ends_with("healthy\n"), "{}", text(&status.stdout));
}

#[test]
fn a_killed_slurmd_marks_its_node_down_and_up_heals_it() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.up();
    let pid = daemon_pid(cluster, "slurmd-c2.pid").expect("slurmd c2 runs");
    cluster.ok("kill", &["-KILL", &pid.to_string()]);
    // slurmctld notices after SlurmdTimeout (15 s in slurm.conf.in).
    cluster.wait_for("c2 to be down", Duration::from_secs(90), || {
        cluster.node_states().iter().any(|(n, s)| n == "c2" && s.starts_with("down"))
    });
    let status = cluster.cluster_script(&["status"]);
    assert!(!status.status.success(), "status calls a cluster with a dead slurmd healthy");
    assert!(text(&status.stdout).contains("node c2:"), "{}", text(&status.stdout));
    up_and_assert_healed(cluster);
}

#[test]
fn up_heals_a_crash_that_left_namespaces_and_stale_pid_files() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.up();
    // SIGKILL every daemon: pid files, namespaces, veths and the bridge stay.
    let pids: Vec<String> = daemon_pids(cluster).into_iter().flatten().map(|p| p.to_string()).collect();
    let munged = std::fs::read_to_string(cluster.state_dir.join("munge/run/munged.pid")).unwrap();
    let mut args = vec!["-KILL".to_owned(), munged.trim().to_owned()];
    args.extend(pids);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.ok("kill", &args);
    // Also break one node's network the way a half-finished run could.
    cluster.ok("ip", &["link", "delete", "odv-c3"]);
    up_and_assert_healed(cluster);
    // The controller's state from before the crash may hold allocations of
    // sruns that died with it; they would delay the tests that follow.
    let jobs = cluster.ok("squeue", &["-h", "-o", "%A"]);
    let jobs: Vec<&str> = jobs.split_whitespace().collect();
    if !jobs.is_empty() {
        cluster.ok("scancel", &jobs);
    }
    cluster.wait_for("every node idle", Duration::from_secs(60), || {
        cluster.node_states().iter().all(|(_, s)| s == "idle")
    });
}

#[test]
fn up_with_fewer_nodes_removes_the_extra_ones() {
    let (cluster, _guard) = TestCluster::exclusive();
    let more = (cluster.n_nodes + 1).to_string();
    let out = cluster.cluster_script(&["up", "--nodes", &more]);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), cluster.logs());
    assert_eq!(cluster.node_states().len(), cluster.n_nodes + 1);
    cluster.up();
    assert_eq!(cluster.node_states().len(), cluster.n_nodes);
    let extra = format!("odyssey-c{more}");
    let netns = cluster.ok("ip", &["netns", "list"]);
    assert!(!netns.lines().any(|l| l.split_whitespace().next() == Some(extra.as_str())), "{netns}");
}

#[test]
fn down_leaves_nothing_behind_and_up_restores() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.up();
    assert!(!leftovers(cluster).is_empty(), "a running cluster should be visible to the leftover check");
    // A job still running when the cluster goes down must not survive it.
    let job =
        cluster.ok("sbatch", &["--parsable", "--output=/dev/null", "--no-requeue", "-N3", "--wrap", "srun sleep 300"]);
    let job = job.trim();
    cluster.wait_for("the job to run", Duration::from_secs(60), || {
        cluster.ok("squeue", &["-h", "-j", job, "-o", "%T"]).trim() == "RUNNING"
    });
    let out = cluster.cluster_script(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(leftovers(cluster), Vec::<String>::new());
    let status = cluster.cluster_script(&["status"]);
    assert!(!status.status.success(), "status calls a stopped cluster healthy");
    // down twice is harmless too.
    let out = cluster.cluster_script(&["down"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The job did not come back with the controller's state.
    cluster.up();
    assert_eq!(cluster.ok("squeue", &["-h", "-o", "%A %T"]), "", "jobs survived down");
    let states = cluster.node_states();
    assert!(states.iter().all(|(_, s)| s == "idle"), "{states:?}");
    up_and_assert_healed(cluster);
}
