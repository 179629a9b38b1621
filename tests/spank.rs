//! The SPANK plugin loads into srun, sbatch and salloc and handles its option.

use e2e::{text, unique_name, TestCluster};

#[test]
fn srun_and_sbatch_list_the_option() {
    let (cluster, _guard) = TestCluster::ensure();
    cluster.spank_plugin();
    for program in ["srun", "sbatch", "salloc"] {
        let help = cluster.ok(program, &["--help"]);
        assert!(help.contains("--health-report=MODE"), "{program} --help:\n{help}");
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
    assert_eq!(output, "summary\n");
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
