//! The MPI runner across namespace nodes, launched by srun with PMIx.

use e2e::{unique_name, TestCluster};

fn allreduce(cluster: &TestCluster, user: Option<&str>, nodes: usize, ranks: usize) -> serde_json::Value {
    let binary = cluster.mpi_binary();
    let dir = match user {
        Some(user) => cluster.user_dir(user),
        None => cluster.shared_dir.join("scratch"),
    };
    let result = dir.join(format!("{}.json", unique_name("allreduce")));
    let (nodes, ranks) = (nodes.to_string(), ranks.to_string());
    let binary = binary.to_str().unwrap();
    let result_arg = result.to_str().unwrap();
    let args = ["-N", &nodes, "-n", &ranks, "--mpi=pmix", binary, "--output", result_arg, "allreduce", "--n", "4096"];
    let stdout = match user {
        Some(user) => cluster.ok_as(user, "srun", &args),
        None => cluster.ok("srun", &args),
    };
    let json = std::fs::read_to_string(&result).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", result.display()));
    std::fs::remove_file(&result).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // One line per rank with its node, on rank 0's stdout.
    let rank_lines = stdout.lines().filter(|l| l.starts_with("rank ")).count();
    assert_eq!(rank_lines.to_string(), ranks, "{stdout}");
    value
}

#[test]
fn allreduce_over_three_nodes_times_two_ranks_is_verified() {
    let (cluster, _guard) = TestCluster::ensure();
    let result = allreduce(cluster, None, 3, 6);
    assert_eq!(result["kernel"], "allreduce");
    assert_eq!(result["ranks"], 6);
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["nodes"], serde_json::json!(["c1", "c2", "c3"]), "{result}");
    let per_node: Vec<&str> =
        result["placement"].as_array().unwrap().iter().map(|p| p["node"].as_str().unwrap()).collect();
    for node in ["c1", "c2", "c3"] {
        assert_eq!(per_node.iter().filter(|n| **n == node).count(), 2, "{per_node:?}");
    }
}

#[test]
fn allreduce_runs_as_alice_at_other_rank_counts() {
    let (cluster, _guard) = TestCluster::ensure();
    for (nodes, ranks) in [(1, 1), (2, 2), (3, 3)] {
        let result = allreduce(cluster, Some("alice"), nodes, ranks);
        assert_eq!(result["verified"], true, "{nodes}x{ranks}: {result}");
        assert_eq!(result["nodes"].as_array().unwrap().len(), nodes, "{result}");
    }
}

#[test]
fn bad_parameters_fail_before_mpi_starts() {
    let (cluster, _guard) = TestCluster::ensure();
    let binary = cluster.mpi_binary();
    let out = cluster.run(binary.to_str().unwrap(), &["allreduce", "--n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(e2e::text(&out.stderr), "odyssey-mpi: --n must be at least 1\n");
}
