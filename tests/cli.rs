//! The `odyssey` command line (issue #13), run as a process against the
//! real bridge and cluster: its exit codes, its one-line errors, its JSON,
//! its stored sign-in, and `logs -f` across a bridge restart.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::app::{ensure_unix_password, unix_password, TestApp};
use e2e::process::BridgeProcess;
use e2e::{text, unique_name, TestCluster};
use serde_json::Value;

/// `odyssey` with its own configuration directory (one signed-in user).
struct Cli {
    binary: PathBuf,
    config: PathBuf,
    url: String,
    /// `ODYSSEY_CA_FILE` for every command, if set.
    ca_file: Option<PathBuf>,
}

impl Cli {
    fn new(cluster: &TestCluster, url: &str) -> Cli {
        let binary = cluster.repo.join("target/release/odyssey");
        assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
        let config = cluster.state_dir.join("bridge-tests").join(unique_name("cli"));
        Cli { binary, config, url: url.to_owned(), ca_file: None }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("ODYSSEY_CONFIG_DIR", &self.config)
            .env_remove("ODYSSEY_URL")
            .env_remove("ODYSSEY_TOKEN");
        match &self.ca_file {
            Some(ca) => command.env("ODYSSEY_CA_FILE", ca),
            None => command.env_remove("ODYSSEY_CA_FILE"),
        };
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Succeeds, or the test fails with what it printed; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "odyssey {args:?} failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Fails with exit code `code` and one line on stderr; that line.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "odyssey {args:?}:\n{}{}", text(&out.stdout), text(&out.stderr));
        let err = text(&out.stderr);
        if code == 1 {
            assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        }
        err
    }

    fn login(&self, user: &str) {
        ensure_unix_password(user);
        let mut child = self
            .command(&["login", "--url", &self.url, "--user", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{}", unix_password(user)).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "login: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("as {user}")), "{}", text(&out.stdout));
    }

    fn credentials(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.config.join("credentials.json")).unwrap()).unwrap()
    }
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{}.sh", unique_name(name)));
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_cli_signs_in_submits_waits_lists_and_signs_out() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let cli = Cli::new(cluster, &app.base);
    let dir = cluster.user_dir("alice");
    let dir_arg = dir.to_str().unwrap();

    assert!(cli.fails(&["jobs"], 1).contains("not signed in: run odyssey login"));
    cli.login("alice");
    let mode = std::fs::metadata(cli.config.join("credentials.json")).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
    assert!(cli.ok(&["whoami"]).starts_with("alice (user)"), "{}", cli.ok(&["whoami"]));

    // --wait exits with the job's exit code; the script's #SBATCH lines are the bridge's.
    let script =
        write_script(&dir, "cli-exit", "#!/bin/sh\n#SBATCH --job-name=cli-exit\necho hello from the cli\nexit 3\n");
    let out = cli.run(&["submit", script.to_str().unwrap(), "-D", dir_arg, "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    let id: i64 = text(&out.stdout).lines().next().unwrap().trim().parse().unwrap();
    assert!(text(&out.stderr).is_empty(), "no progress display without a terminal: {}", text(&out.stderr));

    let jobs: Value = serde_json::from_str(&cli.ok(&["jobs", "--json"])).unwrap();
    let listed = jobs.as_array().unwrap().iter().find(|j| j["id"] == id).expect("the job is listed");
    assert_eq!(listed["state"], "FAILED", "{listed}");
    assert_eq!(listed["name"], "cli-exit", "{listed}");
    let table = cli.ok(&["jobs"]);
    assert!(table.lines().next().unwrap().starts_with("ID"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id.to_string()) && l.contains("FAILED")), "{table}");
    assert!(cli.ok(&["show", &id.to_string()]).contains("FAILED"));
    assert_eq!(cli.ok(&["logs", &id.to_string()]), "hello from the cli\n");
    assert!(cli.ok(&["events", &id.to_string()]).contains("FAILED"));
    assert!(cli.fails(&["submit", "-", "-D", dir_arg], 1).contains("script"), "an empty script from stdin");

    // Cancel a running job.
    let sleeper = write_script(&dir, "cli-sleep", "#!/bin/sh\nsleep 300\n");
    let id = cli.ok(&["submit", sleeper.to_str().unwrap(), "-D", dir_arg]).trim().to_owned();
    assert!(cli.ok(&["cancel", &id]).starts_with(&format!("cancelled {id}")));

    // Bad input: one line, exit 1; usage: exit 2.
    assert!(cli.fails(&["show", "999999999"], 1).contains("no job 999999999"));
    assert!(cli
        .fails(&["submit", "--kernel", "jacobi", "--param", "n=7", "-N", "2", "-n", "4", "-D", dir_arg], 1)
        .contains("params"));
    let directive = write_script(&dir, "cli-bad", "#!/bin/sh\n#SBATCH --export-file=/etc/shadow\ntrue\n");
    assert!(cli.fails(&["submit", directive.to_str().unwrap(), "-D", dir_arg], 1).contains("export-file"));
    cli.fails(&["jobs", "--bogus"], 2);

    // An expired access token is refreshed (and the rotated pair stored).
    let mut stored = cli.credentials();
    let refresh = stored["refresh_token"].clone();
    stored["access_expires_at"] = 0.into();
    std::fs::write(cli.config.join("credentials.json"), stored.to_string()).unwrap();
    cli.ok(&["jobs"]);
    assert_ne!(cli.credentials()["refresh_token"], refresh, "the refresh token rotated");

    assert!(cli.ok(&["completions", "bash"]).contains("odyssey"));
    assert!(cli.ok(&["man"]).contains(".TH odyssey"));

    // Logout revokes the tokens at the bridge and forgets them.
    let token = cli.credentials()["access_token"].as_str().unwrap().to_owned();
    cli.ok(&["logout"]);
    assert!(!cli.config.join("credentials.json").exists());
    let me = app.http.get(format!("{}/v1/auth/me", app.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(me.status(), 401, "the access token was revoked");
    assert!(cli.fails(&["jobs"], 1).contains("not signed in"));
    std::fs::remove_dir_all(&cli.config).unwrap();
}

/// `odyssey logs -f` keeps following across a bridge restart: it connects
/// again from the last offset, so every line arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_logs_follow_survives_a_bridge_restart() {
    let (cluster, _guard) = TestCluster::ensure();
    let data_dir = cluster.state_dir.join("bridge-tests").join(unique_name("cli-follow"));
    let http = reqwest::Client::new();
    let bridge = BridgeProcess::start(cluster, &data_dir, &[]);
    bridge.ready(&http).await;
    let cli = Cli::new(cluster, &bridge.base);
    cli.login("alice");
    let dir = cluster.user_dir("alice");
    let script =
        write_script(&dir, "cli-follow", "#!/bin/sh\nfor i in $(seq 1 20); do echo \"line $i\"; sleep 0.5; done\n");
    let id = cli.ok(&["submit", script.to_str().unwrap(), "-D", dir.to_str().unwrap()]).trim().to_owned();

    let mut follower = cli.command(&["logs", &id, "-f"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // The first lines arrive through the first bridge...
    while lines.len() < 3 {
        lines.push(rx.recv_timeout(Duration::from_secs(60)).expect("the first lines of output"));
    }
    // ...which stops; a new one starts on the same port and data directory.
    let port = bridge.port;
    bridge.stop();
    let bridge = BridgeProcess::start_on(cluster, &data_dir, port, &[]);
    bridge.ready(&http).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        lines.push(line);
    }
    let status = follower.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "logs -f: {status} {err}");
    let expected: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "every line exactly once across the restart");
    bridge.stop();
    std::fs::remove_dir_all(&data_dir).unwrap();
}

/// On a terminal, `submit --wait` keeps one line with the job's state and
/// time (indicatif), read here through tmux's capture-pane; then it says
/// how the job ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_wait_shows_progress_on_a_terminal() {
    let (cluster, _guard) = TestCluster::ensure();
    let app = TestApp::spawn(cluster, &[]).await;
    let cli = Cli::new(cluster, &app.base);
    cli.login("alice");
    let dir = cluster.user_dir("alice");
    let script = write_script(&dir, "cli-tty", "#!/bin/sh\necho working\nsleep 4\n");
    let session = unique_name("odyssey-tty");
    let tmux = |args: &[&str]| Command::new("tmux").args(["-L", "odyssey-tests"]).args(args).output().unwrap();
    let shell = format!(
        "env ODYSSEY_CONFIG_DIR={} {} submit {} -D {} --wait; echo EXIT=$?; sleep 120",
        cli.config.display(),
        cli.binary.display(),
        script.display(),
        dir.display()
    );
    let started = tmux(&["new-session", "-d", "-s", &session, "-x", "160", "-y", "20", &shell]);
    assert!(started.status.success(), "tmux: {}", text(&started.stderr));
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut progress, mut screen) = (None, String::new());
    while Instant::now() < deadline {
        screen = text(&tmux(&["capture-pane", "-p", "-t", &session]).stdout);
        if progress.is_none() {
            progress = screen.lines().find(|l| l.contains(": RUNNING") && l.contains("job ")).map(str::to_owned);
        }
        if screen.contains("EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux(&["kill-session", "-t", &session]);
    let progress = progress.unwrap_or_else(|| panic!("no progress line on the terminal:\n{screen}"));
    assert!(progress.contains("[00:00:0"), "the elapsed time: {progress}");
    assert!(progress.contains("| working"), "the job's last line of output: {progress}");
    assert!(screen.contains("COMPLETED after"), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
}

/// A bridge with its own CA: refused without `--ca-file` (one line naming
/// the certificate), trusted with it; `ODYSSEY_TOKEN` and `ODYSSEY_URL`
/// work without any stored sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_cli_trusts_a_bridge_through_its_ca_file_and_takes_a_token_from_the_environment() {
    let (cluster, _guard) = TestCluster::ensure();
    let dir = cluster.state_dir.join("bridge-tests").join(unique_name("cli-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("openssl (scripts/test.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out.stderr));
    };
    // A CA, and a server certificate for 127.0.0.1 it signed.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=odyssey test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "cert.pem",
    ]);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let bridge = BridgeProcess::start(
        cluster,
        &dir.join("data"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let url = format!("https://127.0.0.1:{}", bridge.port);
    let mut cli = Cli::new(cluster, &url);
    // Ready: the TLS listener answers (curl trusts the CA given to it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("curl")
        .args(["-sf", "--max-time", "2", "--cacert"])
        .arg(dir.join("ca.pem"))
        .arg(format!("{url}/readyz"))
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the TLS bridge never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    ensure_unix_password("alice");
    let mut refused = cli
        .command(&["login", "--url", &url, "--user", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(refused.stdin.take().unwrap(), "{}", unix_password("alice")).unwrap();
    let refused = refused.wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert!(err.contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    cli.ca_file = Some(dir.join("ca.pem"));
    cli.login("alice");
    assert!(cli.ok(&["whoami"]).starts_with("alice"));

    // A token from the environment, no stored sign-in.
    let token = cli.credentials()["access_token"].as_str().unwrap().to_owned();
    let other = Cli { config: dir.join("no-sign-in"), ..Cli::new(cluster, &url) };
    let out = other
        .command(&["whoami", "--json"])
        .env("ODYSSEY_TOKEN", &token)
        .env("ODYSSEY_URL", &url)
        .env("ODYSSEY_CA_FILE", dir.join("ca.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let me: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(me["name"], "alice");
    assert!(!dir.join("no-sign-in/credentials.json").exists(), "a token from the environment is not stored");
    drop(bridge);
    std::fs::remove_dir_all(&dir).unwrap();
}
