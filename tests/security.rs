//! The attack suite of issue #8, against the real bridge, PAM and cluster:
//! one test per class. Every attack is either refused or runs with the
//! user's rights only; none sees a byte of a root-only file.

use std::time::Duration;

use e2e::app::{login_unmapped, unix_password, TestApp};
use e2e::TestCluster;
use serde_json::json;

/// A root-only file (0600) on the cluster's shared filesystem, where every
/// node could read it with root's rights; its content is a unique marker.
fn root_secret(cluster: &TestCluster) -> (std::path::PathBuf, String) {
    let marker = format!("SECRET-CONTENT-{}", e2e::unique_name("x").replace('-', "_"));
    let path = cluster.state_dir.join("shared").join(format!("{}.txt", e2e::unique_name("root-only")));
    std::fs::write(&path, &marker).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, marker)
}

// See: #8. Every directive that would make sbatch read or write a file with
// root's rights, change identity, or need an operator is refused, by line.
#[tokio::test]
async fn issue_8_directives_that_read_files_or_need_root_are_refused() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let (secret, _) = root_secret(cluster);
    let secret = secret.display().to_string();
    for directive in [
        format!("--bbf={secret}"),
        format!("--export-file={secret}"),
        format!("--input={secret}"),
        "--uid=0".into(),
        "--gid=0".into(),
        "--priority=4294967000".into(),
        "--nice=-10000".into(),
        "--admin-comment=x".into(),
        "--reboot".into(),
        "--export=ALL,LD_PRELOAD=/tmp/x.so".into(),
        "--get-user-env".into(),
        "--hold".into(),
        "--wrap=cat /etc/shadow".into(),
        format!("-i {secret}"),
    ] {
        let script = format!("#!/bin/cat\n#SBATCH {directive}\necho hi\n");
        let reply = alice.post("/v1/jobs", json!({"script": script})).await;
        assert_eq!(reply.status, 422, "{directive}: {}", reply.text);
        assert_eq!(reply.body["field"], "script", "{directive}: {}", reply.text);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains("line 2") && detail.contains("not allowed"), "{directive}: {detail}");
    }
    // #PBS lines are not directives for the bridge, nor for sbatch
    // (--ignore-pbs): the job runs and its output is the script itself.
    let job = alice
        .submit(json!({"script": format!("#!/bin/cat\n#PBS -o {secret}\n"), "working_dir": cluster.user_dir("alice")}))
        .await;
    let done = alice.wait_finished(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(alice.job_count().await, 1, "only the #PBS job was submitted");
}

// See: #8. What a job does runs as the user: a root-only file stays unread
// and unwritten whichever way the request names it.
#[tokio::test]
async fn issue_8_a_job_never_sees_a_byte_of_a_root_only_file() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let (secret, marker) = root_secret(cluster);
    let dir = cluster.user_dir("alice");

    // Read in the script body.
    let read = alice.submit(json!({"command": ["cat", secret], "working_dir": dir})).await;
    // Written as the job's output file.
    let write = alice.submit(json!({"command": ["echo", "overwritten"], "stdout": secret, "working_dir": dir})).await;
    // Followed through a link the user made.
    let link = dir.join(e2e::unique_name("link-to-secret"));
    cluster.ok_as("alice", "ln", &["-s", secret.to_str().unwrap(), link.to_str().unwrap()]);
    let linked = alice.submit(json!({"command": ["echo", "x"], "stdout": link, "working_dir": dir})).await;
    // Loaded as the job's environment, through the directive.
    let env = alice
        .post("/v1/jobs", json!({"script": format!("#!/bin/sh\n#SBATCH --export-file={}\nenv\n", secret.display())}))
        .await;
    assert_eq!(env.status, 422, "{}", env.text);

    for job in [&read, &write, &linked] {
        let id = job["id"].as_i64().unwrap();
        let done = alice.wait_finished(id).await;
        assert_eq!(done["unix_user"], "alice");
        let output = alice.get(&format!("/v1/jobs/{id}/output")).await;
        assert!(!output.text.contains(&marker), "job {id} leaked the secret: {}", output.text);
    }
    assert_eq!(alice.wait_finished(read["id"].as_i64().unwrap()).await["state"], "FAILED");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), marker, "the root-only file was written");
    // The output endpoint refuses a link (never follows it as root).
    let reply = alice.get(&format!("/v1/jobs/{}/output", linked["id"])).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    // And a device: nothing but a regular file of the job's user is opened.
    let devnull = alice.submit(json!({"command": ["true"], "stdout": "/dev/null", "working_dir": dir})).await;
    alice.wait_finished(devnull["id"].as_i64().unwrap()).await;
    let reply = alice.get(&format!("/v1/jobs/{}/output", devnull["id"])).await;
    assert_eq!(reply.status, 403, "{}", reply.text);

    // A working directory the user cannot enter: sbatch, running as the
    // user, cannot enter it either (as root it could).
    let reply = alice.post("/v1/jobs", json!({"command": ["pwd"], "working_dir": "/root"})).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert_eq!(reply.body["field"], "working_dir");
    assert!(reply.body["detail"].as_str().unwrap().contains("as alice"), "{}", reply.text);
    std::fs::remove_file(secret).unwrap();
}

// See: #8. Directives in the allowlist are applied, from the bridge's
// validated values; the request's fields win, and the record says so.
#[tokio::test]
async fn issue_8_directives_become_fields_and_the_request_wins() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let alice = app.user("alice").await;
    let script =
        "#!/bin/sh\n#SBATCH --job-name=from-script\n#SBATCH --time=7 -N 1\n#SBATCH --ntasks=1 # one\nsleep 30\n";
    let job = alice.submit(json!({"script": script, "time_limit": 3, "working_dir": cluster.user_dir("alice")})).await;
    let id = job["id"].as_i64().unwrap();
    assert_eq!(job["name"], "from-script", "{job}");
    let spec = &job["spec"];
    assert_eq!(spec["time_limit"], 3, "{spec}");
    let directives = spec["directives"].as_array().unwrap();
    let time = directives.iter().find(|d| d["field"] == "time_limit").unwrap();
    assert_eq!((time["line"].as_i64(), time["overridden"].as_bool()), (Some(3), Some(true)), "{spec}");
    assert!(job["script"].as_str().unwrap().contains("\n# [applied by the bridge] #SBATCH --time=7"), "{job}");
    // What SLURM holds: the script's name, the request's time limit.
    let slurm_id = job["slurm_job_id"].as_i64().unwrap().to_string();
    let shown = cluster.ok("scontrol", &["show", "job", "-o", &slurm_id]);
    assert!(shown.contains("JobName=from-script"), "{shown}");
    assert!(shown.contains("TimeLimit=00:03:00"), "{shown}");
    assert!(shown.contains(&format!("UserId=alice({})", cluster.ok("id", &["-u", "alice"]).trim())), "{shown}");
    alice.delete(&format!("/v1/jobs/{id}")).await;
    alice.wait_finished(id).await;
}

// See: #8. Identity is proven: PAM with the Unix password maps the account;
// a wrong password does not; a name registered by someone else first gets
// no Unix authority and is taken back by the proof.
#[tokio::test]
async fn issue_8_unix_identity_is_proven_by_pam_never_claimed() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let http = &app.http;
    let login = |name: &str, password: &str, method: &str| {
        http.post(format!("{}/v1/auth/login", app.base))
            .json(&json!({"name": name, "password": password, "method": method}))
            .send()
    };
    // A squatter registers "bob" before bob arrives: no jobs as bob.
    let squatter = login_unmapped(http, &app.base, "bob").await;
    let reply = squatter.post("/v1/jobs", json!({"command": ["id", "-u"]})).await;
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert!(reply.body["detail"].as_str().unwrap().contains("not mapped"), "{}", reply.text);

    e2e::app::ensure_unix_password("bob");
    let wrong = login("bob", "not-bobs-unix-password", "pam").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = login("bob", &unix_password("bob"), "pam").await.unwrap();
    assert_eq!(right.status(), 200);
    let tokens: serde_json::Value = right.json().await.unwrap();
    let bob = e2e::app::Client {
        base: app.base.clone(),
        http: http.clone(),
        token: tokens["access_token"].as_str().unwrap().to_owned(),
    };
    let me = bob.get("/v1/auth/me").await;
    assert_eq!((me.body["unix_user"].as_str(), me.body["unix_mapped_by"].as_str()), (Some("bob"), Some("pam")));
    // The squatter lost the account: token and password.
    assert_eq!(squatter.get("/v1/auth/me").await.status, 401);
    let old = login("bob", "bob-password-e2e", "password").await.unwrap();
    assert_eq!(old.status(), 401);
    // bob's jobs run as bob.
    let job = bob.submit(json!({"command": ["id", "-un"], "working_dir": cluster.user_dir("bob")})).await;
    let id = job["id"].as_i64().unwrap();
    bob.wait_finished(id).await;
    assert_eq!(bob.get(&format!("/v1/jobs/{id}/output")).await.text, "bob\n");
    // System accounts cannot be proven (no password, nologin, out of range).
    for name in ["root", "daemon", "nobody"] {
        assert_eq!(login(name, "whatever-password", "pam").await.unwrap().status(), 401, "{name}");
    }
}

// See: #8. A reused SLURM id never lets a cancel touch another user's job:
// scancel runs as the bridge job's owner with --user.
#[tokio::test]
async fn issue_8_cancel_cannot_touch_another_users_job() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let other = TestApp::spawn(cluster, &[]).await;
    let bob = other.user("bob").await;
    let bobs = bob.submit(json!({"command": ["sleep", "60"], "working_dir": cluster.user_dir("bob")})).await;
    let bobs_slurm_id = bobs["slurm_job_id"].as_i64().unwrap();
    let alice = app.user("alice").await;
    let alices = alice.submit(json!({"command": ["sleep", "60"], "working_dir": cluster.user_dir("alice")})).await;
    let alices_id = alices["id"].as_i64().unwrap();
    // The bridge's record of alice's job now says bob's SLURM id (as after
    // a controller reset that reissued ids).
    let alices_slurm_id = alices["slurm_job_id"].as_i64().unwrap();
    let store = bridge::store::Store::open(&app.data_dir.join("bridge.db")).unwrap();
    store
        .call(move |c| Ok(c.execute("UPDATE jobs SET slurm_job_id = ?1 WHERE id = ?2", [bobs_slurm_id, alices_id])?))
        .await
        .unwrap();
    let reply = alice.delete(&format!("/v1/jobs/{alices_id}")).await;
    assert_ne!(reply.status, 500, "{}", reply.text);
    let state = cluster.ok("squeue", &["-h", "-j", &bobs_slurm_id.to_string(), "-o", "%T"]);
    assert!(matches!(state.trim(), "RUNNING" | "PENDING"), "bob's job was touched: {state:?} ({})", reply.text);
    cluster.ok("scancel", &[&bobs_slurm_id.to_string(), &alices_slurm_id.to_string()]);
}

// See: #8. Follow streams are capped per user and end when the client goes.
#[tokio::test]
async fn issue_8_follow_streams_are_capped_and_end_with_the_client() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--max-follows-per-user", "1"]).await;
    let alice = app.user("alice").await;
    let job = alice
        .submit(json!({"command": ["sh", "-c", "echo started; sleep 120"], "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let open = || alice.follow_output(id);
    let first = open().await;
    assert_eq!(first.status(), 200);
    let second = open().await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    // The client goes away; the bridge notices and frees the slot. Bounded
    // wait on that condition (the producer sees the closed channel within
    // one poll interval).
    drop(first);
    let mut freed = false;
    for _ in 0..100 {
        let again = open().await;
        if again.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the stream of a client that left was never ended");
    alice.delete(&format!("/v1/jobs/{id}")).await;
}

// See: #8. A dry run costs an sbatch, so it counts against the submit rate.
#[tokio::test]
async fn issue_8_dry_runs_count_against_the_submit_rate() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &["--submit-rate", "2"]).await;
    let alice = app.user("alice").await;
    let body = json!({"command": ["true"], "working_dir": cluster.user_dir("alice")});
    for _ in 0..2 {
        let reply = alice.post("/v1/jobs?dry_run=true", body.clone()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let reply = alice.post("/v1/jobs?dry_run=true", body).await;
    assert_eq!(reply.status, 429, "{}", reply.text);
    assert_eq!(alice.job_count().await, 0);
}

// See: #9. A restarted bridge completes a recorded submission only as the
// Unix account its owner is mapped to now: a record naming another account
// (bob's, on alice's bridge account) is marked lost, and nothing runs.
#[tokio::test]
async fn issue_9_a_recovered_submission_never_runs_as_an_account_other_than_the_owners() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    app.user("alice").await;
    let data_dir = app.stop().await;
    let name = e2e::unique_name("forged");
    let spec = json!({"name": name, "command": ["true"], "working_dir": cluster.user_dir("bob")}).to_string();
    let store = bridge::store::Store::open(&data_dir.join("bridge.db")).unwrap();
    let row = (e2e::unique_name("tag"), name.clone(), bridge::store::now(), spec);
    let id: i64 = store
        .call(move |c| {
            // As a bridge that stopped between recording and sbatch would
            // have left it, but for bob's Unix account.
            c.execute(
                "INSERT INTO jobs (user_id, tag, name, state, submitted_at, spec, script, unix_user, uid)
                 SELECT id, ?1, ?2, 'SUBMITTING', ?3, ?4, '#!/bin/sh\nexec true\n', 'bob', 2002
                 FROM users WHERE name = 'alice'",
                row,
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
        .unwrap();
    drop(store);
    let app = TestApp::spawn_on(cluster, data_dir, &[]).await;
    let alice = app.user("alice").await;
    let lost = alice.wait_state(id, "UNKNOWN").await;
    let reason = lost["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("now mapped to alice rather than bob"), "{lost}");
    assert!(lost["slurm_job_id"].is_null(), "{lost}");
    let named = cluster.ok("squeue", &["-h", "-t", "all", "-n", &name, "-o", "%i %u"]);
    assert!(named.trim().is_empty(), "a job named {name} reached SLURM: {named}");
}

// See: #9. Submissions keep recent account resolutions (NSS was the slowest
// step of a submission), yet an account locked after it was mapped is
// refused from its very next submission, and works again once unlocked.
#[tokio::test]
async fn issue_9_an_account_locked_after_mapping_is_refused_at_its_next_submission() {
    let (cluster, _guard) = TestCluster::ensure();
    // An account of this test's own, so locking it disturbs no other test;
    // the harness's chpasswd gives it a fresh (unlocked) password each run.
    let name = "odyssey-lock";
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).status().unwrap();
        assert!(status.success(), "{program} {args:?}");
    };
    if std::process::Command::new("id").arg("-u").arg(name).output().map(|o| !o.status.success()).unwrap_or(true) {
        run("useradd", &["--create-home", "--shell", "/bin/bash", name]);
    }
    let app = TestApp::spawn(cluster, &[]).await;
    let user = app.user(name).await;
    let body = json!({"command": ["true"]});
    let dry_run = || user.post("/v1/jobs?dry_run=true", body.clone());
    for _ in 0..2 {
        let reply = dry_run().await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    run("usermod", &["-L", name]);
    let refused = dry_run().await;
    run("usermod", &["-U", name]);
    assert_eq!(refused.status, 403, "a locked account submitted: {}", refused.text);
    assert!(refused.text.contains("is locked"), "{}", refused.text);
    let again = dry_run().await;
    assert_eq!(again.status, 200, "{}", again.text);
}
