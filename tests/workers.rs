//! Workers that join over mutual TLS (issue #11), on the real cluster: a
//! new namespace machine (`cluster join`) that has nothing of the
//! cluster's runs `odyssey-worker join` with a token, takes MPI jobs,
//! reports health with its certificate, and leaves; the attacks on joining
//! and on the worker endpoint; a worker that vanishes; renewal by itself.
//!
//! Workers add nodes to the cluster, so these tests hold it exclusively.

use std::path::PathBuf;
use std::time::Duration;

use e2e::app::{Client, TestApp};
use e2e::{free_port, text, unique_name, TestCluster};
use serde_json::{json, Value};

/// The bridge's addresses on the node network, where worker machines reach it.
const BRIDGE_HOST: &str = "10.199.0.1";

struct WorkerApp {
    app: TestApp,
    admin: Client,
    /// https://10.199.0.1:<port>
    endpoint: String,
}

async fn worker_app(cluster: &TestCluster, extra: &[&str]) -> WorkerApp {
    let port = free_port();
    let listen = format!("{BRIDGE_HOST}:{port}");
    let munge_key = cluster.state_dir.join("munge/munge.key");
    let secret = cluster.state_dir.join("etc/health.secret");
    let mut args = vec![
        "--worker-listen",
        &listen,
        "--munge-key-file",
        munge_key.to_str().unwrap(),
        "--health-secret-file",
        secret.to_str().unwrap(),
        "--mpi-binary",
    ];
    let mpi = cluster.mpi_binary();
    args.push(mpi.to_str().unwrap());
    args.extend_from_slice(extra);
    let data_dir = cluster.state_dir.join("bridge-tests").join(unique_name("workers"));
    let app = TestApp::spawn_at(cluster, &format!("{BRIDGE_HOST}:0"), data_dir, &args).await;
    let admin = app.admin(cluster, &unique_name("wadmin")).await;
    WorkerApp { app, admin, endpoint: format!("https://{listen}") }
}

impl WorkerApp {
    async fn token(&self, features: &[&str]) -> String {
        let reply = self.admin.post("/v1/workers/tokens", json!({"features": features})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.body["token"].as_str().unwrap().to_owned()
    }

    async fn worker(&self, name: &str) -> Value {
        let list = self.admin.get("/v1/workers").await;
        assert_eq!(list.status, 200, "{}", list.text);
        list.body["workers"].as_array().unwrap().iter().find(|w| w["name"] == name).cloned().unwrap_or(Value::Null)
    }

    async fn wait_worker_state(&self, name: &str, state: &str, timeout: Duration) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let worker = self.worker(name).await;
            if worker["state"] == state {
                return worker;
            }
            assert!(std::time::Instant::now() < deadline, "worker {name} never became {state}: {worker}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Joined workers, removed whatever happens to the test (killed, their
/// nodes deleted), so the cluster is the configured one again.
struct Workers<'a> {
    cluster: &'a TestCluster,
    names: Vec<String>,
}

impl<'a> Workers<'a> {
    fn new(cluster: &'a TestCluster) -> Workers<'a> {
        Workers { cluster, names: Vec::new() }
    }

    fn join(&mut self, app: &WorkerApp, name: &str, token: &str) {
        self.names.push(name.to_owned());
        let out = self.cluster.cluster_script(&["join", name, "--bridge", &app.app.base, "--token", token]);
        let log =
            std::fs::read_to_string(self.cluster.state_dir.join(format!("log/worker-{name}.log"))).unwrap_or_default();
        assert!(out.status.success(), "cluster join {name}: {}\n{log}", text(&out.stderr));
    }

    /// The worker's agent directory on its machine (key, certificate, CA).
    fn agent_dir(&self, name: &str) -> PathBuf {
        self.cluster.state_dir.join(format!("workers/{name}/agent"))
    }
}

impl Drop for Workers<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.cluster.cluster_script(&["kill-worker", name]);
            let _ = self.cluster.run("scontrol", &["delete", &format!("nodename={name}")]);
        }
    }
}

fn sinfo_nodes(cluster: &TestCluster) -> Vec<String> {
    cluster.node_states().into_iter().map(|(n, _)| n).collect()
}

/// A client of the worker endpoint with a key and certificate (PEM).
fn mtls(key: &str, cert: &str, ca: &str) -> reqwest::Client {
    let identity = reqwest::Identity::from_pem(format!("{key}\n{cert}").as_bytes()).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .identity(identity)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn worker_client(workers: &Workers, name: &str) -> reqwest::Client {
    let dir = workers.agent_dir(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    mtls(&read("key.pem"), &read("cert.pem"), &read("ca.pem"))
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn task_record(job: i64, node: &str, id: &str) -> String {
    let at = bridge::store::now();
    format!(
        r#"{{"kind":"task","id":"{id}","job_id":{job},"step_id":0,"node":"{node}","task":0,"exit_code":0,"signal":null,"at":{at}}}"#
    )
}

/// A key and a CSR, as a joining machine makes them.
fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new()).unwrap().serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_machine_joins_runs_an_mpi_job_reports_health_with_its_certificate_and_leaves() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.spank_plugin();
    let _slot = e2e::mpi_job_slot();
    let app = worker_app(cluster, &[]).await;
    let mut workers = Workers::new(cluster);
    // The admin's token from the command line, as a site would make it.
    let odyssey = cluster.repo.join("target/release/odyssey");
    let out = std::process::Command::new(&odyssey)
        .args(["--url", &app.app.base, "workers", "token", "--features", "gpu", "--expires-in", "600"])
        .env("ODYSSEY_TOKEN", &app.admin.token)
        .output()
        .unwrap();
    assert!(out.status.success(), "odyssey workers token: {}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("odyssey-join-"), "{token}");
    assert!(text(&out.stderr).contains("odyssey-worker join --bridge"), "{}", text(&out.stderr));
    workers.join(&app, "w1", &token);
    let w1 = app.wait_worker_state("w1", "idle", Duration::from_secs(30)).await;
    assert_eq!(w1["features"], json!(["gpu", "worker"]), "{w1}");
    assert!(w1["certificate_serial"].as_str().is_some_and(|s| s.len() == 32), "{w1}");
    assert!(w1["last_heartbeat_at"].as_f64().is_some(), "{w1}");
    assert!(sinfo_nodes(cluster).contains(&"w1".to_owned()));
    let out = std::process::Command::new(&odyssey)
        .args(["--url", &app.app.base, "workers"])
        .env("ODYSSEY_TOKEN", &app.admin.token)
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("w1 ") && l.contains("idle") && l.contains("gpu,worker")),
        "{listing}"
    );
    // The machine has no slurm.conf of its own: slurmd fetched it.
    let cache = cluster.state_dir.join("nodes/w1/spool/conf-cache/slurm.conf");
    assert!(cache.exists(), "configless slurmd keeps the fetched config at {}", cache.display());

    // A 4-node MPI job runs across the three nodes and the worker.
    let alice = app.app.user("alice").await;
    let job = alice
        .submit(json!({"kernel": "pi", "nodes": 4, "ntasks": 4, "health_report": true,
                       "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let done = alice.wait_finished(id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    let mut result = Value::Null;
    for _ in 0..100 {
        result = alice.get(&format!("/v1/jobs/{id}/result")).await.body;
        if result["verified"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(result["verified"], true, "{result}");
    assert_eq!(result["nodes"], json!(["c1", "c2", "c3", "w1"]), "{result}");

    // Its health records for w1 arrive: only over mutual TLS, with w1's
    // certificate, since the shared-secret door refuses records about a
    // joined worker (below) and the machine has no secret anyway.
    let mut health = Value::Null;
    for _ in 0..150 {
        health = alice.get(&format!("/v1/jobs/{id}/health")).await.body;
        let on_w1 = health["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["nodes"].as_array().unwrap().iter())
            .any(|n| n["node"] == "w1" && n["node_record"]["kind"] == "node");
        if on_w1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nodes: Vec<&Value> =
        health["steps"].as_array().unwrap().iter().flat_map(|s| s["nodes"].as_array().unwrap().iter()).collect();
    assert!(nodes.iter().any(|n| n["node"] == "w1" && n["node_record"]["kind"] == "node"), "{health}");
    let slurm_id = done["slurm_job_id"].as_i64().unwrap();
    let forged = task_record(slurm_id, "w1", &format!("{slurm_id}.0.w1.forged"));
    let secret = std::fs::read(cluster.state_dir.join("etc/health.secret")).unwrap();
    let timestamp = format!("{}", bridge::store::now() as u64);
    let signature = bridge::http::health_reports::sign(&secret, &timestamp, forged.as_bytes());
    let reply = app
        .app
        .http
        .post(format!("{}/v1/health-reports", app.app.base))
        .header("x-odyssey-timestamp", &timestamp)
        .header("x-odyssey-signature", &signature)
        .body(forged)
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(reply).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("only over mutual TLS"), "{body}");
    let nodes = alice.get("/v1/nodes").await.body;
    let node = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "w1").unwrap().clone();
    assert_eq!(node["health"]["node"], "w1", "{node}");
    assert_eq!(node["health_auth"], "certificate", "{node}");
    let c1 = nodes["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "c1").unwrap().clone();
    assert_eq!(c1["health_auth"], "shared_secret", "{c1}");

    // Leaving: keep a copy of the certificate to try it afterwards.
    let dir = workers.agent_dir("w1");
    let (key, cert, ca) = (
        std::fs::read_to_string(dir.join("key.pem")).unwrap(),
        std::fs::read_to_string(dir.join("cert.pem")).unwrap(),
        std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
    );
    let out = cluster.cluster_script(&["leave-worker", "w1", "60"]);
    assert!(out.status.success(), "leave-worker: {}", text(&out.stderr));
    assert!(!sinfo_nodes(cluster).contains(&"w1".to_owned()), "w1 is gone from sinfo");
    let w1 = app.worker("w1").await;
    assert_eq!(w1["state"], "left", "{w1}");
    let reply = mtls(&key, &cert, &ca).get(format!("{}/worker/v1/self", app.endpoint)).send().await.unwrap();
    let (status, body) = status_and_body(reply).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_attacks_on_joining_and_on_the_worker_endpoint_are_refused_and_change_nothing() {
    let (cluster, _guard) = TestCluster::exclusive();
    cluster.spank_plugin();
    let app = worker_app(cluster, &[]).await;
    let mut workers = Workers::new(cluster);
    let token = app.token(&[]).await;
    workers.join(&app, "w2", &token);
    app.wait_worker_state("w2", "idle", Duration::from_secs(30)).await;
    let join = |token: &str, name: &str| {
        let body = json!({"token": token, "name": name, "csr": csr()});
        app.app.http.post(format!("{}/v1/workers/join", app.app.base)).json(&body).send()
    };

    // A reused token.
    let (status, body) = status_and_body(join(&token, "w9").await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("already used"), "{body}");
    // An expired one (the API mints none: written into the store as one
    // left from yesterday would be).
    let (expired, hash) = bridge::workers::new_token();
    let store = bridge::store::Store::open(&app.app.data_dir.join("bridge.db")).unwrap();
    store
        .call(move |conn| bridge::store::workers::insert_token(conn, &hash, "admin", bridge::store::now() - 1.0, &[]))
        .await
        .unwrap();
    let (status, body) = status_and_body(join(&expired, "w9").await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
    // A CSR for another worker's name, or a configured node's: refused, and
    // the token stays good for an honest join.
    let fresh = app.token(&[]).await;
    for taken in ["w2", "c1"] {
        let (status, body) = status_and_body(join(&fresh, taken).await.unwrap()).await;
        assert_eq!(status, 409, "{taken}: {body}");
    }
    assert!(app.worker("w9").await.is_null(), "nothing joined as w9");
    let (status, body) = status_and_body(join(&fresh, "w9").await.unwrap()).await;
    assert_eq!(status, 201, "the refused attempts did not use the token: {body}");

    // The worker endpoint: no certificate, or one from another CA, fails
    // the TLS handshake itself.
    let ca_pem = std::fs::read_to_string(workers.agent_dir("w2").join("ca.pem")).unwrap();
    let anonymous = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    assert!(anonymous.get(format!("{}/worker/v1/self", app.endpoint)).send().await.is_err(), "no client certificate");
    let other_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut other_ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other_ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    other_ca.distinguished_name.push(rcgen::DnType::CommonName, "Cloud Odyssey cluster CA");
    let other_ca = other_ca.self_signed(&other_ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["w2".to_owned()]).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, "w2");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = leaf.signed_by(&key, &other_ca, &other_ca_key).unwrap();
    let impostor = mtls(&key.serialize_pem(), &leaf.pem(), &ca_pem);
    assert!(impostor.get(format!("{}/worker/v1/self", app.endpoint)).send().await.is_err(), "another CA's certificate");

    // w2's own certificate may speak only for w2 and w2's jobs.
    let w2 = worker_client(&workers, "w2");
    let reports = format!("{}/worker/v1/health-reports", app.endpoint);
    let (status, body) =
        status_and_body(w2.post(&reports).body(task_record(1, "c1", "1.0.c1.forged")).send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("may not send records about node c1"), "{body}");
    let on_c1 = cluster.sbatch_wait(None, &["-w", "c1", "--wrap", "true"]);
    let (status, body) = status_and_body(
        w2.post(&reports)
            .body(task_record(on_c1.parse().unwrap(), "w2", &format!("{on_c1}.0.w2.forged")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("did not run on worker w2"), "{body}");
    // A job SLURM never had (or forgot) is refused too, not an error of SLURM's.
    let (status, body) = status_and_body(
        w2.post(&reports).body(task_record(2_000_000_000, "w2", "2000000000.0.w2.forged")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("SLURM job 2000000000 did not run on worker w2"), "{body}");
    let stored = store
        .read(|conn| {
            Ok(conn
                .query_row("SELECT COUNT(*) FROM health_records WHERE id LIKE '%forged'", [], |r| r.get::<_, i64>(0))?)
        })
        .await
        .unwrap();
    assert_eq!(stored, 0, "no forged record was stored");

    // A renewed certificate replaces the old one, which is refused from then on.
    let old = w2.clone();
    let reply =
        old.post(format!("{}/worker/v1/renew", app.endpoint)).json(&json!({"csr": csr()})).send().await.unwrap();
    let (status, body) = status_and_body(reply).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        status_and_body(old.get(format!("{}/worker/v1/self", app.endpoint)).send().await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("revoked"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_killed_worker_is_lost_its_job_retried_elsewhere_and_a_new_token_rejoins_it() {
    let (cluster, _guard) = TestCluster::exclusive();
    let app = worker_app(cluster, &["--worker-lost-after", "5"]).await;
    let mut workers = Workers::new(cluster);
    for name in ["w3", "w4"] {
        let token = app.token(&["scratch"]).await;
        workers.join(&app, name, &token);
        app.wait_worker_state(name, "idle", Duration::from_secs(30)).await;
    }
    // A job for the workers only (their token's feature), with a retry.
    let alice = app.app.user("alice").await;
    let job = alice
        .submit(json!({"command": ["sleep", "300"], "constraint": "scratch", "retries": 1,
                       "working_dir": cluster.user_dir("alice")}))
        .await;
    let id = job["id"].as_i64().unwrap();
    let running = alice.wait_state(id, "RUNNING").await;
    let first = running["nodes"].as_str().unwrap().to_owned();
    let other = if first == "w3" { "w4" } else { "w3" };
    assert!(first == "w3" || first == "w4", "{running}");

    // The machine vanishes.
    let out = cluster.cluster_script(&["kill-worker", &first]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    app.wait_worker_state(&first, "lost", Duration::from_secs(60)).await;
    // SLURM fails the job with its node; the bridge retries it on the other worker.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let retried = loop {
        let job = alice.get(&format!("/v1/jobs/{id}")).await.body;
        if job["state"] == "RUNNING" && job["nodes"] == other {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "job {id} was not retried on {other}: {job}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let attempts = retried["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{retried}");
    assert_eq!(attempts[0]["state"], "NODE_FAIL", "{retried}");
    assert_eq!(attempts[0]["nodes"], first.as_str(), "{retried}");
    assert_eq!(attempts[0]["failure"]["class"], "infrastructure", "{retried}");
    let cancelled = alice.delete(&format!("/v1/jobs/{id}")).await;
    assert!(cancelled.status < 300, "{}", cancelled.text);

    // A new token brings the machine back under its name.
    let token = app.token(&["scratch"]).await;
    workers.join(&app, &first, &token);
    let back = app.wait_worker_state(&first, "idle", Duration::from_secs(60)).await;
    assert_eq!(back["state"], "idle", "{back}");
    for name in [first.as_str(), other] {
        let out = cluster.cluster_script(&["leave-worker", name, "30"]);
        assert!(out.status.success(), "leave-worker {name}: {}", text(&out.stderr));
    }
    let nodes = sinfo_nodes(cluster);
    assert!(!nodes.iter().any(|n| n == "w3" || n == "w4"), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_worker_renews_its_certificate_by_itself_before_it_expires() {
    let (cluster, _guard) = TestCluster::exclusive();
    // A minute's certificates: the agent renews after two thirds (40 s).
    let app = worker_app(cluster, &["--worker-cert-lifetime", "60"]).await;
    let mut workers = Workers::new(cluster);
    let token = app.token(&[]).await;
    workers.join(&app, "w5", &token);
    let first = app.wait_worker_state("w5", "idle", Duration::from_secs(30)).await;
    let first_serial = first["certificate_serial"].as_str().unwrap().to_owned();
    let first_expiry = first["certificate_expires_at"].as_f64().unwrap();
    let old = worker_client(&workers, "w5");
    let deadline = std::time::Instant::now() + Duration::from_secs(75);
    let renewed = loop {
        let w5 = app.worker("w5").await;
        if w5["certificate_serial"].as_str() != Some(first_serial.as_str()) {
            break w5;
        }
        assert!(std::time::Instant::now() < deadline, "the agent never renewed its certificate: {w5}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(renewed["certificate_expires_at"].as_f64().unwrap() > first_expiry, "{renewed}");
    // Before the old one expired, and it goes on with the new one.
    assert!(bridge::store::now() < first_expiry, "renewed only after the old certificate expired");
    let renewed_at = bridge::store::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let w5 = app.worker("w5").await;
        if w5["last_heartbeat_at"].as_f64().is_some_and(|at| at > renewed_at + 1.0) && w5["state"] == "idle" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no heartbeat with the new certificate: {w5}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) =
        status_and_body(old.get(format!("{}/worker/v1/self", app.endpoint)).send().await.unwrap()).await;
    assert_eq!(status, 403, "the replaced certificate is refused: {body}");
    let out = cluster.cluster_script(&["leave-worker", "w5", "30"]);
    assert!(out.status.success(), "leave-worker: {}", text(&out.stderr));
}
