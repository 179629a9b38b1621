//! The cluster as users see it: nodes, batch jobs, accounts, isolation.

use std::collections::BTreeSet;

use e2e::{unique_name, TestCluster};

#[test]
fn every_node_is_idle_after_up() {
    let (cluster, _guard) = TestCluster::ensure();
    let states = cluster.node_states();
    let expected: Vec<String> = (1..=cluster.n_nodes).map(|i| format!("c{i}")).collect();
    let names: Vec<String> = states.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, expected, "sinfo lists {states:?}");
    for (name, state) in &states {
        // Other tests run jobs meanwhile, so busy states count as healthy.
        // A trailing "-" means planned by the backfill scheduler: still healthy.
        let state = state.trim_end_matches('-');
        assert!(matches!(state, "idle" | "mixed" | "allocated" | "completing"), "{name} is {state}");
    }
}

#[test]
fn srun_across_all_nodes_prints_distinct_hostnames() {
    let (cluster, _guard) = TestCluster::ensure();
    let n = cluster.n_nodes.to_string();
    let out = cluster.ok("srun", &["-N", &n, "-n", &n, "hostname"]);
    let names: BTreeSet<&str> = out.lines().collect();
    let expected: BTreeSet<String> = (1..=cluster.n_nodes).map(|i| format!("c{i}")).collect();
    assert_eq!(names, expected.iter().map(String::as_str).collect(), "srun printed {out:?}");
}

#[test]
fn each_node_has_its_own_address_tmp_and_shm() {
    let (cluster, _guard) = TestCluster::ensure();
    let marker = unique_name("private-tmp");
    // Each task writes a marker into its node's /tmp and /dev/shm, then
    // counts the markers there: private directories see exactly one each.
    let script = format!(
        "touch /tmp/{marker}-$SLURM_NODEID /dev/shm/{marker}-$SLURM_NODEID; \
         echo $(hostname) $(ip -4 -o addr show eth0 | awk '{{print $4}}') \
         $(ls /tmp | grep -c {marker}) $(ls /dev/shm | grep -c {marker}); \
         rm -f /tmp/{marker}-* /dev/shm/{marker}-*"
    );
    let n = cluster.n_nodes.to_string();
    let out = cluster.ok("srun", &["-N", &n, "-n", &n, "bash", "-c", &script]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let expected: Vec<String> = (1..=cluster.n_nodes).map(|i| format!("c{i} 10.199.0.{}/24 1 1", 10 + i)).collect();
    assert_eq!(lines, expected);
}

#[test]
fn batch_output_appears_on_the_shared_path() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.shared_dir.join("scratch");
    let name = unique_name("batch");
    let out_path = dir.join(format!("{name}.out"));
    let out_arg = format!("--output={}", out_path.display());
    let id = cluster.sbatch_wait(None, &["-N", "2", &out_arg, "--wrap", "srun hostname | sort"]);
    let output = std::fs::read_to_string(&out_path).unwrap_or_else(|e| panic!("job {id}: {e}"));
    assert_eq!(output.lines().count(), 2, "job {id} wrote {output:?}");
    assert!(output.lines().all(|l| l.starts_with('c')), "job {id} wrote {output:?}");
    std::fs::remove_file(out_path).unwrap();
}

#[test]
fn a_job_submitted_as_alice_runs_as_alice() {
    let (cluster, _guard) = TestCluster::ensure();
    let expected_uid = cluster.ok("id", &["-u", "alice"]);
    assert!(expected_uid.trim().parse::<u32>().unwrap() >= 1000);
    let out_path = cluster.user_dir("alice").join(format!("{}.out", unique_name("whoami")));
    let out_arg = format!("--output={}", out_path.display());
    let id = cluster.sbatch_wait(Some("alice"), &[&out_arg, "--wrap", "id -un; id -u"]);
    let output = std::fs::read_to_string(&out_path).unwrap_or_else(|e| panic!("job {id}: {e}"));
    assert_eq!(output, format!("alice\n{}", expected_uid));
    // SLURM's record agrees about who owns the job.
    let owner = cluster.ok("scontrol", &["show", "job", &id, "-o"]);
    assert!(owner.contains(&format!("UserId=alice({})", expected_uid.trim())), "{owner}");
}

#[test]
fn bob_cannot_cancel_alices_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let id = cluster.ok_as("alice", "sbatch", &["--parsable", "--output=/dev/null", "--wrap", "sleep 60"]);
    let id = id.trim();
    let denied = cluster.run_as("bob", "scancel", &[id]);
    let stderr = e2e::text(&denied.stderr);
    assert!(!denied.status.success() || stderr.contains("denied"), "bob cancelled job {id}: {stderr}");
    let state = cluster.ok("squeue", &["-h", "-j", id, "-o", "%T"]);
    assert!(matches!(state.trim(), "PENDING" | "RUNNING"), "job {id} is {state}");
    cluster.ok_as("alice", "scancel", &[id]);
}

// See: #14. Rendering the config puts values in literally: an `&` (which
// awk's gsub would have turned into the matched @VARIABLE@) or a backslash
// in the state directory's path arrives as typed.
#[test]
fn issue_14_config_values_are_rendered_literally() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.state_dir.join("bridge-tests").join(format!("{}-a&b\\c", unique_name("render")));
    let out = cluster.cluster_script(&["config", "--state-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conf = std::fs::read_to_string(dir.join("etc/slurm.conf")).unwrap();
    let want = format!("StateSaveLocation={}/ctld", dir.display());
    assert!(conf.lines().any(|l| l == want), "no line {want:?} in\n{conf}");
    let unrendered = conf
        .split('@')
        .skip(1)
        .step_by(2)
        .find(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    assert_eq!(unrendered, None, "a variable was left unrendered:\n{conf}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// See: #14. `up` and `down` are for namespace nodes; VMs are provisioned.
#[test]
fn issue_14_up_and_down_refuse_vm_mode() {
    let (cluster, _guard) = TestCluster::ensure();
    for command in ["up", "down"] {
        let out = cluster.cluster_script(&[command, "--mode", "vm"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains("VM nodes are provisioned"), "{command}: {stderr}");
    }
}
