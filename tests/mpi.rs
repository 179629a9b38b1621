//! The MPI runner's kernels across namespace nodes, launched by srun with PMIx.

use e2e::{text, unique_name, TestCluster};

/// Node and rank counts every kernel runs at: 1 to 3 nodes, up to 2 ranks per node.
const PLACEMENTS: [(usize, usize); 4] = [(1, 1), (2, 2), (3, 3), (3, 6)];

/// What one `srun ... odyssey-mpi` produced.
struct Launch {
    out: std::process::Output,
    /// The JSON result file, if rank 0 wrote one.
    result: Option<serde_json::Value>,
    /// Who owns that file: the uid rank 0 ran as.
    owner: Option<u32>,
}

/// `srun -N nodes -n ranks odyssey-mpi --output F <kernel args>`, whatever
/// the exit status.
fn launch(cluster: &TestCluster, user: Option<&str>, nodes: usize, ranks: usize, kernel: &[&str]) -> Launch {
    let binary = cluster.mpi_binary();
    let dir = match user {
        Some(user) => cluster.user_dir(user),
        None => cluster.shared_dir.join("scratch"),
    };
    let result = dir.join(format!("{}.json", unique_name(kernel[0])));
    let (nodes, ranks) = (nodes.to_string(), ranks.to_string());
    // A rank that dies ends the step at once (the others would wait in
    // MPI_Init for it until our timeout).
    let mut args = vec!["-N", &nodes, "-n", &ranks, "--mpi=pmix", "--kill-on-bad-exit=1", binary.to_str().unwrap()];
    args.extend(["--output", result.to_str().unwrap()]);
    args.extend_from_slice(kernel);
    let _slot = e2e::mpi_job_slot();
    let run = || match user {
        Some(user) => cluster.run_as(user, "srun", &args),
        None => cluster.run("srun", &args),
    };
    let mut out = run();
    // One known flake is rerun, once: Open MPI 4.1.4's TCP transport
    // failing while it sets up the connections between ranks on this
    // overloaded 2-core machine. It shows two ways: its TCP component says
    // so on stderr (open-mpi/ompi#11508), or a rank dies of SIGSEGV inside
    // MPI_Init (a core dump shows a call through a null pointer from
    // mca_btl_tcp.so, under opal_progress in ompi_mpi_init), before rank 0
    // could print the placement it gathers right after MPI_Init. srun then
    // ends with the signal's status, or, when ranks still waiting for the
    // dead one hold the step, with 124 from our `timeout`. A failure after
    // that point, or any other, is a failure.
    if out.status.code().is_some_and(|c| c >= 128 || c == TIMED_OUT) && is_tcp_setup_failure(&out) {
        eprintln!(
            "{kernel:?} on {nodes}x{ranks}: Open MPI's TCP set-up failed ({}); running once more. stderr:\n{}",
            out.status,
            text(&out.stderr)
        );
        out = run();
    }
    let owner = std::fs::metadata(&result).ok().map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let json = std::fs::read_to_string(&result).ok().map(|j| serde_json::from_str(&j).unwrap());
    let _ = std::fs::remove_file(&result);
    Launch { out, result: json, owner }
}

/// coreutils `timeout`'s status when it stopped the command.
const TIMED_OUT: i32 = 124;

/// Open MPI's TCP BTL reporting a connection it could not set up or keep
/// (`mca_btl_tcp_endpoint_complete_connect`, `mca_btl_tcp_frag_recv`), or a
/// rank that segfaulted before MPI start-up ended (no placement line).
fn is_tcp_setup_failure(out: &std::process::Output) -> bool {
    const MARKERS: [&str; 4] = ["btl_tcp", "connect() to", "Connection timed out", "Connection reset by peer"];
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    let in_startup = stderr.contains("Segmentation fault") && !stdout.lines().any(|l| l.starts_with("rank "));
    in_startup || MARKERS.iter().any(|m| stderr.contains(m))
}

/// Runs a kernel that must succeed; checks the result's common fields.
fn verified(
    cluster: &TestCluster,
    user: Option<&str>,
    nodes: usize,
    ranks: usize,
    kernel: &[&str],
) -> serde_json::Value {
    let Launch { out, result, .. } = launch(cluster, user, nodes, ranks, kernel);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{kernel:?} on {nodes}x{ranks}: {}\n{stdout}\n{}", out.status, text(&out.stderr));
    let result = result.unwrap_or_else(|| panic!("{kernel:?} wrote no result\n{stdout}"));
    assert_eq!(result["kernel"], kernel[0]);
    assert_eq!(result["verified"], true, "{result}");
    assert!(result["error_norm"].as_f64().unwrap() <= result["tolerance"].as_f64().unwrap(), "{result}");
    assert_eq!(result["ranks"], ranks, "{result}");
    assert_eq!(result["nodes"].as_array().unwrap().len(), nodes, "{result}");
    assert!(result["wall_time_s"].as_f64().unwrap() > 0.0, "{result}");
    // Rank 0's report: one line per rank with its node, then the verdict.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("rank ")).count(), ranks, "{stdout}");
    assert!(stdout.lines().last().unwrap_or("").ends_with("VERIFIED"), "{stdout}");
    result
}

fn at_every_placement(kernel: &[&str]) -> Vec<serde_json::Value> {
    let (cluster, _guard) = TestCluster::ensure();
    PLACEMENTS.iter().map(|&(nodes, ranks)| verified(cluster, None, nodes, ranks, kernel)).collect()
}

#[test]
fn allreduce_over_three_nodes_times_two_ranks_places_two_ranks_per_node() {
    let (cluster, _guard) = TestCluster::ensure();
    let result = verified(cluster, None, 3, 6, &["allreduce", "--n", "4096"]);
    assert_eq!(result["nodes"], serde_json::json!(["c1", "c2", "c3"]), "{result}");
    let per_node: Vec<&str> =
        result["placement"].as_array().unwrap().iter().map(|p| p["node"].as_str().unwrap()).collect();
    for node in ["c1", "c2", "c3"] {
        assert_eq!(per_node.iter().filter(|n| **n == node).count(), 2, "{per_node:?}");
    }
}

#[test]
fn kernels_run_as_the_submitting_user() {
    let (cluster, _guard) = TestCluster::ensure();
    verified(cluster, Some("alice"), 2, 2, &["pi", "--samples", "100000"]);
    let run = launch(cluster, Some("alice"), 2, 2, &["pi", "--samples", "100000"]);
    let uid = cluster.ok("id", &["-u", "alice"]);
    assert_eq!(run.owner.map(|u| u.to_string()), Some(uid.trim().to_owned()), "{}", text(&run.out.stderr));
}

#[test]
fn allreduce_is_verified_at_every_placement() {
    at_every_placement(&["allreduce", "--n", "4096"]);
}

#[test]
fn pi_is_verified_at_every_placement_and_within_its_error() {
    for result in at_every_placement(&["pi", "--samples", "2000000", "--seed", "7"]) {
        let details = &result["details"];
        let pi = details["pi"].as_f64().unwrap();
        let err = details["std_error"].as_f64().unwrap();
        assert!((pi - std::f64::consts::PI).abs() <= 5.0 * err, "{details}");
        // The hit count is exactly the serial replay's.
        assert_eq!(result["error_norm"], 0.0, "{result}");
    }
}

#[test]
fn jacobi_is_verified_at_every_placement_and_matches_the_serial_grid() {
    for result in at_every_placement(&["jacobi", "--n", "120", "--max-iters", "400"]) {
        assert_eq!(result["error_norm"], 0.0, "the parallel grid differs from the serial one: {result}");
        assert_eq!(result["details"]["iterations"], 400, "{result}");
        assert!(result["bandwidth_gb_s"].as_f64().unwrap() > 0.0, "{result}");
    }
    // Converges before max-iters with a loose tolerance.
    let (cluster, _guard) = TestCluster::ensure();
    let result = verified(cluster, None, 2, 2, &["jacobi", "--n", "24", "--max-iters", "100000", "--tol", "1e-4"]);
    assert_eq!(result["details"]["converged"], true, "{result}");
}

#[test]
fn matmul_is_verified_at_every_placement() {
    for result in at_every_placement(&["matmul", "--n", "120"]) {
        assert!(result["gflop_s"].as_f64().unwrap() > 0.0, "{result}");
        let grid = &result["details"]["process_grid"];
        assert_eq!(grid[0].as_u64().unwrap() * grid[1].as_u64().unwrap(), result["ranks"].as_u64().unwrap());
    }
}

#[test]
fn cg_is_verified_at_every_placement_with_a_falling_residual() {
    for result in at_every_placement(&["cg", "--n", "61", "--tol", "1e-9"]) {
        assert_eq!(result["details"]["converged"], true, "{result}");
        let history = result["details"]["residual_history"].as_array().unwrap();
        assert_eq!(history.len() as u64, result["details"]["iterations"].as_u64().unwrap());
        assert!(history.last().unwrap().as_f64().unwrap() < 1e-9);
    }
}

#[test]
fn osu_sweeps_are_verified_at_every_placement() {
    for result in at_every_placement(&["osu", "--max-bytes", "65536", "--iters", "20"]) {
        let details = &result["details"];
        if result["ranks"] == 1 {
            assert!(details["pingpong"]["skipped"].is_string(), "{details}");
        } else {
            let sizes = details["pingpong"]["sizes"].as_array().unwrap();
            assert_eq!(sizes.len(), 17, "1 B to 64 KiB: {details}");
            assert!(sizes.iter().all(|s| s["latency_us"].as_f64().unwrap() > 0.0), "{details}");
        }
        assert_eq!(details["allreduce"].as_array().unwrap().len(), 14, "8 B to 64 KiB: {details}");
        assert_eq!(details["bcast"].as_array().unwrap().len(), 17, "{details}");
    }
}

#[test]
fn a_wrong_answer_fails_loudly_with_its_error_norm() {
    let (cluster, _guard) = TestCluster::ensure();
    for kernel in [
        &["allreduce", "--n", "64"][..],
        &["pi", "--samples", "10000"],
        &["jacobi", "--n", "24", "--max-iters", "10"],
        &["matmul", "--n", "24"],
        &["cg", "--n", "24"],
        &["osu", "--max-bytes", "64", "--iters", "2"],
    ] {
        let mut args = vec!["--inject-error"];
        args.extend_from_slice(kernel);
        let Launch { out, result, .. } = launch(cluster, None, 2, 2, &args[..]);
        // Every rank exits 1; when one rank's exit reaches srun before the
        // other's, srun terminates the other and reports its SIGTERM (143).
        let code = out.status.code();
        assert!(matches!(code, Some(1) | Some(143)), "{kernel:?}: {code:?} {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("failed verification"), "{kernel:?}: {}", text(&out.stderr));
        let result = result.unwrap_or_else(|| panic!("{kernel:?} wrote no result"));
        assert_eq!(result["verified"], false, "{result}");
        assert!(result["error_norm"].as_f64().unwrap() > result["tolerance"].as_f64().unwrap(), "{result}");
    }
}

#[test]
fn bad_parameters_fail_before_mpi_starts() {
    let (cluster, _guard) = TestCluster::ensure();
    let binary = cluster.mpi_binary();
    let binary = binary.to_str().unwrap();
    let out = cluster.run(binary, &["allreduce", "--n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr), "odyssey-mpi: --n must be at least 1\n");
    // A grid that does not divide over the ranks: one line, from one rank, no MPI.
    let out = cluster.run("srun", &["-N", "3", "-n", "6", "--mpi=pmix", binary, "jacobi", "--n", "100"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.starts_with("odyssey-mpi:")).collect();
    assert_eq!(
        ours,
        ["odyssey-mpi: --n 100 does not divide over the 3 x 2 process grid of 6 ranks (use a multiple of 6)"]
    );
    let out = cluster.run(binary, &["matmul", "--n", "5000"]);
    assert_eq!(text(&out.stderr), "odyssey-mpi: --n 5000 exceeds the limit of 4096\n");
    let out = cluster.run(binary, &["matmul", "--n", "0"]);
    assert_eq!(text(&out.stderr), "odyssey-mpi: --n must be at least 1\n");
    let out = cluster.run(binary, &["cg", "--tol", "2"]);
    assert_eq!(text(&out.stderr), "odyssey-mpi: --tol must be between 0 and 1 (exclusive), not 2\n");
}
