//! `odyssey-bench`: load generators for docs/BENCHMARKS.md. Each subcommand
//! measures one target and prints one JSON line; `bench/bridge.sh` runs the
//! targets side by side on the same cluster and writes the table.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

#[derive(Parser)]
#[command(name = "odyssey-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Target {
    /// `sbatch --parsable --uid --gid` as root: what the bridge itself runs.
    Raw,
    /// `POST /v1/jobs` on the bridge (`--bridge`; through libslurm).
    Bridge,
    /// `POST /v1/jobs` on a second bridge (`--bridge-sbatch`) that submits
    /// through sbatch.
    BridgeSbatch,
    /// `POST /slurm/v0.0.38/job/submit` on slurmrestd (unix socket, local auth).
    Restd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit jobs and report latency and throughput; every job is checked
    /// to exist exactly once in squeue afterwards.
    Submit {
        /// One or more targets; with several, each client submits to them
        /// in turn (interleaved), so they share the cluster's conditions.
        #[arg(long, value_enum, value_delimiter = ',')]
        target: Vec<Target>,
        /// Concurrent clients (1 = sequential latency).
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Submissions per client and target.
        #[arg(long, default_value_t = 100)]
        per_client: usize,
        #[command(flatten)]
        common: Common,
    },
    /// GET one path for a while at a number of connections.
    Read {
        #[arg(long, value_enum)]
        target: Target,
        /// Path, e.g. /v1/jobs?limit=100 or /slurm/v0.0.38/jobs.
        #[arg(long)]
        path: String,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// The crash drill: clients submit jobs, each retried with its own
    /// Idempotency-Key until the bridge answers with a SLURM id, while the
    /// bridge (the command after `--`) is SIGKILLed at random moments and
    /// started again. Then every job's name is counted in squeue: lost and
    /// duplicated must both be 0.
    Drill {
        #[arg(long, default_value_t = 1500)]
        jobs: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 31)]
        kills: usize,
        /// alice's Unix password, for a PAM sign-in once the bridge is up.
        #[arg(long, env = "BENCH_UNIX_PASSWORD")]
        unix_password: String,
        #[command(flatten)]
        common: Common,
        /// The bridge's command line.
        #[arg(last = true, required = true)]
        bridge_command: Vec<String>,
    },
    /// Fill a bridge database with generated finished jobs for one user
    /// (created if absent, password given), to measure a large history.
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value = "alice")]
        user: String,
        #[arg(long)]
        password: String,
    },
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Bridge base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    bridge: String,
    /// Bridge access token (Bearer).
    #[arg(long, env = "BENCH_TOKEN", default_value = "")]
    token: String,
    /// The bridge that submits through sbatch (`--submit-via sbatch`).
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    bridge_sbatch: String,
    /// Its access token.
    #[arg(long, env = "BENCH_TOKEN_SBATCH", default_value = "")]
    token_sbatch: String,
    /// slurmrestd unix socket.
    #[arg(long, default_value = "/var/lib/odyssey-cluster/shared/users/alice/slurmrestd.sock")]
    restd_socket: PathBuf,
    /// Unix account jobs run as.
    #[arg(long, default_value = "alice")]
    user: String,
    /// Working directory of the jobs.
    #[arg(long, default_value = "/var/lib/odyssey-cluster/shared/users/alice")]
    dir: String,
    /// Job name, unique per run: used to find every job afterwards.
    #[arg(long)]
    name: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

impl Target {
    fn slug(self) -> &'static str {
        match self {
            Target::Raw => "raw",
            Target::Bridge => "bridge",
            Target::BridgeSbatch => "bridge-sbatch",
            Target::Restd => "restd",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Raw => "raw sbatch",
            Target::Bridge => "bridge (libslurm)",
            Target::BridgeSbatch => "bridge (sbatch)",
            Target::Restd => "slurmrestd",
        }
    }
}

/// One HTTP/1.1 keep-alive connection, the same client code for every
/// HTTP target: to slurmrestd over its unix socket, to a bridge over TCP.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn unix(socket: &PathBuf) -> anyhow::Result<Conn> {
        let stream =
            tokio::net::UnixStream::connect(socket).await.with_context(|| format!("connect {}", socket.display()))?;
        Conn::over(stream).await
    }

    /// `base` is `http://host:port`.
    async fn tcp(base: &str) -> anyhow::Result<Conn> {
        let address = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/');
        let stream = tokio::net::TcpStream::connect(address).await.with_context(|| format!("connect {address}"))?;
        stream.set_nodelay(true)?;
        Conn::over(stream).await
    }

    async fn over<S>(stream: S) -> anyhow::Result<Conn>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Conn { sender })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
        bearer: Option<&str>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut builder = hyper::Request::builder().method(method).uri(path).header("host", "localhost");
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

/// One submission by `target`; the SLURM job id.
async fn submit_once(target: Target, common: &Common, conn: &mut Option<Conn>) -> anyhow::Result<i64> {
    match target {
        Target::Raw => {
            let mut command = tokio::process::Command::new("sbatch");
            command.arg("--parsable");
            // As root, sbatch needs --uid/--gid to submit for the user; as
            // the user (bench/bridge.sh runs it as alice), plain sbatch.
            if is_root() {
                command.args([format!("--uid={}", common.user), format!("--gid={}", common.user)]);
            }
            let out = command
                .arg(format!("--job-name={}-{}", common.name, target.slug()))
                .arg(format!("--chdir={}", common.dir))
                .args(["--output=/dev/null", "--error=/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            let mut child = out;
            {
                use tokio::io::AsyncWriteExt;
                let mut stdin = child.stdin.take().context("stdin")?;
                stdin.write_all(b"#!/bin/sh\nexec 'true'\n").await?;
            }
            let out = child.wait_with_output().await?;
            if !out.status.success() {
                bail!("sbatch: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().split(';').next().unwrap_or("").parse()?)
        }
        Target::Bridge | Target::BridgeSbatch => {
            let body = json!({"name": format!("{}-{}", common.name, target.slug()), "command": ["true"], "working_dir": common.dir,
                              "stdout": "/dev/null", "stderr": "/dev/null"});
            let (base, token) = match target {
                Target::Bridge => (&common.bridge, &common.token),
                _ => (&common.bridge_sbatch, &common.token_sbatch),
            };
            let conn = match conn {
                Some(conn) => conn,
                None => conn.insert(Conn::tcp(base).await?),
            };
            let (status, bytes) = conn.request("POST", "/v1/jobs", Some(body.to_string()), Some(token)).await?;
            let body: serde_json::Value = serde_json::from_slice(&bytes)?;
            if status != 201 {
                bail!("bridge answered {status}: {body}");
            }
            body["slurm_job_id"].as_i64().context("no slurm_job_id")
        }
        Target::Restd => {
            let conn = match conn {
                Some(conn) => conn,
                None => conn.insert(Conn::unix(&common.restd_socket).await?),
            };
            let body = json!({
                "script": "#!/bin/sh\nexec 'true'\n",
                "job": {"name": format!("{}-{}", common.name, target.slug()), "current_working_directory": common.dir,
                        "standard_output": "/dev/null", "standard_error": "/dev/null",
                        "environment": {"PATH": "/usr/bin:/bin"}}
            });
            let (status, bytes) =
                conn.request("POST", "/slurm/v0.0.38/job/submit", Some(body.to_string()), None).await?;
            let body: serde_json::Value = serde_json::from_slice(&bytes)?;
            if status != 200 {
                bail!("slurmrestd answered {status}: {body}");
            }
            body["job_id"].as_i64().context("no job_id")
        }
    }
}

async fn submit(targets: Vec<Target>, clients: usize, per_client: usize, common: Common) -> anyhow::Result<()> {
    // slurmctld forgets a finished job MinJobAge after its end (60 s on the
    // local cluster), sooner than a slow burst takes: every job this run
    // named is collected while it runs, not only at the end.
    let names: Vec<String> = targets.iter().map(|t| format!("{}-{}", common.name, t.slug())).collect();
    let running = Arc::new(AtomicBool::new(true));
    let collector = {
        let running = running.clone();
        tokio::spawn(async move {
            let mut seen: Vec<std::collections::BTreeSet<i64>> = names.iter().map(|_| Default::default()).collect();
            loop {
                let last = !running.load(Ordering::Relaxed);
                for (name, seen) in names.iter().zip(&mut seen) {
                    seen.extend(listed_in_squeue(name).await?);
                }
                if last {
                    return anyhow::Ok(seen);
                }
                for _ in 0..100 {
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (common, targets) = (common.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            // One connection per client and HTTP target, kept alive.
            let mut conns: Vec<Option<Conn>> = targets.iter().map(|_| None).collect();
            // Per target: latencies (ms) and SLURM ids.
            let mut results: Vec<(Vec<f64>, Vec<i64>)> = vec![Default::default(); targets.len()];
            for _ in 0..per_client {
                for (idx, target) in targets.iter().enumerate() {
                    let t = Instant::now();
                    let id = submit_once(*target, &common, &mut conns[idx]).await?;
                    results[idx].0.push(t.elapsed().as_secs_f64() * 1000.0);
                    results[idx].1.push(id);
                }
            }
            anyhow::Ok(results)
        }));
    }
    let mut merged: Vec<(Vec<f64>, Vec<i64>)> = vec![Default::default(); targets.len()];
    for task in tasks {
        for (idx, (l, i)) in task.await??.into_iter().enumerate() {
            merged[idx].0.extend(l);
            merged[idx].1.extend(i);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let seen = collector.await??;
    let mut failed = false;
    for ((target, (mut latencies, ids)), present) in targets.iter().zip(merged).zip(seen) {
        latencies.sort_by(f64::total_cmp);
        // Every id unique, and every job present in SLURM under this run's name.
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        let present: Vec<i64> = present.into_iter().collect();
        let verified = unique.len() == ids.len() && unique == present;
        failed |= !verified;
        let total: f64 = latencies.iter().sum::<f64>() / 1000.0;
        println!(
            "{}",
            json!({
                "target": target.name(), "clients": clients, "interleaved_with": targets.len(),
                "submitted": ids.len(), "unique": unique.len(), "present_in_squeue": present.len(), "verified": verified,
                // With one target the wall clock is the rate; interleaved, each
                // target's share of the time is the sum of its latencies.
                "jobs_per_s": if targets.len() == 1 { ids.len() as f64 / elapsed } else { ids.len() as f64 / total.max(1e-9) },
                "p50_ms": percentile(&latencies, 0.5), "p95_ms": percentile(&latencies, 0.95), "p99_ms": percentile(&latencies, 0.99),
            })
        );
    }
    if failed {
        bail!("verification failed: see the lines above");
    }
    Ok(())
}

/// The ids of the jobs squeue lists under `name` (every state).
async fn listed_in_squeue(name: &str) -> anyhow::Result<Vec<i64>> {
    let listed =
        tokio::process::Command::new("squeue").args(["-h", "-t", "all", "-n", name, "-o", "%i"]).output().await?;
    anyhow::ensure!(listed.status.success(), "squeue: {}", String::from_utf8_lossy(&listed.stderr).trim());
    Ok(String::from_utf8_lossy(&listed.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect())
}

async fn read(target: Target, path: String, connections: usize, seconds: f64, common: Common) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (common, path, stop, errors) = (common.clone(), path.clone(), stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // One keep-alive connection per task.
            let mut slot = None;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let conn = match &mut slot {
                    Some(conn) => conn,
                    None => slot.insert(match target {
                        Target::Restd => Conn::unix(&common.restd_socket).await?,
                        _ => Conn::tcp(&common.bridge).await?,
                    }),
                };
                let bearer = (target != Target::Restd).then_some(common.token.as_str());
                let ok = matches!(conn.request("GET", &path, None, bearer).await, Ok((200, _)));
                if ok {
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    // A new connection for the next request.
                    slot = None;
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "path": path, "connections": connections, "requests": latencies.len(),
            "errors": errors.load(Ordering::Relaxed), "req_per_s": latencies.len() as f64 / seconds,
            "p50_ms": percentile(&latencies, 0.5), "p99_ms": percentile(&latencies, 0.99),
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Submit { target, clients, per_client, common } => submit(target, clients, per_client, common).await,
        Cmd::Read { target, path, connections, seconds, common } => {
            read(target, path, connections, seconds, common).await
        }
        Cmd::Seed { data_dir, rows, user, password } => seed(data_dir, rows, user, password).await,
        Cmd::Drill { jobs, clients, kills, unix_password, common, bridge_command } => {
            drill(jobs, clients, kills, unix_password, common, bridge_command).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("odyssey-bench: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Generated history: 80 % COMPLETED, 10 % FAILED, 10 % CANCELLED, names
/// job0..job99, one row per job as the poller would leave it.
async fn seed(data_dir: PathBuf, rows: u64, user: String, password: String) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)?;
    let store = bridge::store::Store::open(&data_dir.join("bridge.db"))?;
    let pool = bridge::auth::pool::CredentialPool::new(1, 1);
    let hash = bridge::auth::password::hash(&pool, password, Default::default()).await?;
    let started = Instant::now();
    let inserted = store
        .call(move |conn| {
            let user_id = match bridge::store::users::by_name(conn, &user)? {
                Some(u) => u.id,
                None => bridge::store::users::create(conn, &user, &hash, bridge::store::users::Role::User, None)?
                    .map(|u| u.id)
                    .unwrap_or_default(),
            };
            let tx = conn.transaction()?;
            let n = tx.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 INSERT INTO jobs (user_id, slurm_job_id, tag, name, partition, state, exit_code, nodes, submitted_at,
                                   started_at, ended_at, spec, script, stdout_path, stderr_path, unix_user, uid, finished)
                 SELECT ?2, 50000000 + i, 'seed' || i, 'job' || (i % 100), 'debug',
                        CASE i % 10 WHEN 0 THEN 'FAILED' WHEN 1 THEN 'CANCELLED' ELSE 'COMPLETED' END,
                        CASE i % 10 WHEN 0 THEN 1 ELSE 0 END, 'c' || (1 + i % 3), 1.7e9 + i, 1.7e9 + i + 1, 1.7e9 + i + 2,
                        '{\"command\":[\"true\"]}', '#!/bin/sh' || char(10) || 'exec ''true''' || char(10),
                        '/dev/null', '/dev/null', 'alice', 2001, 1
                 FROM n",
                [rows as i64, user_id],
            )?;
            tx.commit()?;
            Ok(n)
        })
        .await?;
    println!("{}", json!({"seeded_rows": inserted, "seconds": started.elapsed().as_secs_f64()}));
    Ok(())
}

/// A bridge process the drill starts, kills and starts again.
struct Bridge {
    command: Vec<String>,
    child: Option<tokio::process::Child>,
    base: String,
}

impl Bridge {
    async fn start(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        // A bridge that exits at once is retried: the one known cause is its
        // port, still held for a moment by the bridge just killed.
        for _ in 0..50 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open("/var/lib/odyssey-cluster/log/drill-bridge.log")?;
            let mut child = tokio::process::Command::new(&self.command[0])
                .args(&self.command[1..])
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("start the bridge")?;
            for _ in 0..300 {
                if child.try_wait()?.is_some() {
                    break;
                }
                if http.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == 200) {
                    self.child = Some(child);
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the bridge did not become ready (see log/drill-bridge.log)")
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// A small xorshift: kill moments need no more randomness than this.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn drill(
    jobs: usize,
    clients: usize,
    kills: usize,
    unix_password: String,
    common: Common,
    bridge_command: Vec<String>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let mut bridge = Bridge { command: bridge_command, child: None, base: common.bridge.clone() };
    bridge.start(&http).await?;
    let login = json!({"name": common.user, "password": unix_password, "method": "pam"});
    let reply = http.post(format!("{}/v1/auth/login", common.bridge)).json(&login).send().await?;
    let token = reply.json::<serde_json::Value>().await?["access_token"].as_str().context("no token")?.to_owned();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let gave_up = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, common, token, next, done, retries, gave_up) =
            (http.clone(), common.clone(), token.clone(), next.clone(), done.clone(), retries.clone(), gave_up.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= jobs {
                    return anyhow::Ok(());
                }
                let name = format!("{}-{n}", common.name);
                let body = json!({"name": name, "command": ["sleep", "600"], "time_limit": 15, "working_dir": common.dir,
                                  "stdout": "/dev/null", "stderr": "/dev/null"});
                // Until the bridge answers with a SLURM id: a refused
                // connection, a dropped reply or a record still submitting
                // are all retried with the same key.
                let deadline = Instant::now() + Duration::from_secs(300);
                loop {
                    let reply = http
                        .post(format!("{}/v1/jobs", common.bridge))
                        .bearer_auth(&token)
                        .header("idempotency-key", &name)
                        .json(&body)
                        .send()
                        .await;
                    if let Ok(reply) = reply {
                        let status = reply.status().as_u16();
                        let json: serde_json::Value = reply.json().await.unwrap_or_default();
                        match status {
                            200 | 201 if json["slurm_job_id"].is_i64() => break,
                            // A record the bridge itself gave up on: lost,
                            // counted below; the client goes on.
                            200 | 201 if json["finished"] == true => {
                                gave_up.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            200 | 201 | 503 | 429 => {}
                            _ => bail!("{name}: the bridge answered {status}: {json}"),
                        }
                    }
                    if Instant::now() > deadline {
                        bail!("{name}: no SLURM id after 300 s of retries");
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill at random moments while the clients run: every kill after a
    // random 20 to 400 ms of the restarted bridge's work.
    let mut seed = started.elapsed().as_nanos() as u64 | 1;
    let mut killed = 0;
    while killed < kills && (done.load(Ordering::Relaxed) as usize) < jobs {
        tokio::time::sleep(Duration::from_millis(20 + next_random(&mut seed) % 380)).await;
        bridge.kill().await;
        killed += 1;
        bridge.start(&http).await?;
    }
    let mut client_errors = Vec::new();
    for task in tasks {
        if let Err(e) = task.await? {
            client_errors.push(e.to_string());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    bridge.kill().await;
    // Count every job of this run by name, whatever its state.
    let listed = tokio::process::Command::new("squeue")
        .args(["-h", "-t", "all", "-u", &common.user, "-o", "%j"])
        .output()
        .await?;
    let mut counts = std::collections::HashMap::new();
    for name in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Some(n) = name.trim().strip_prefix(&format!("{}-", common.name)) {
            *counts.entry(n.to_owned()).or_insert(0usize) += 1;
        }
    }
    let lost = (0..jobs).filter(|n| !counts.contains_key(&n.to_string())).count();
    let duplicated = counts.values().filter(|c| **c > 1).count();
    println!(
        "{}",
        json!({"jobs": jobs, "clients": clients, "kills": killed, "answered": done.load(Ordering::Relaxed),
               "retries": retries.load(Ordering::Relaxed), "given_up_by_the_bridge": gave_up.load(Ordering::Relaxed),
               "lost": lost, "duplicated": duplicated,
               "client_errors": client_errors.len(), "seconds": elapsed})
    );
    for error in client_errors.iter().take(5) {
        eprintln!("odyssey-bench: {error}");
    }
    if lost > 0 || duplicated > 0 || !client_errors.is_empty() {
        bail!("{lost} lost, {duplicated} duplicated, {} client errors", client_errors.len());
    }
    Ok(())
}
