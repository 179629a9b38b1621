//! Sign-in through the site's OpenID provider (issue #15), end to end: the
//! real provider (`tests/oidc-idp/`, oidc-provider under Node, real RSA and
//! EC keys), the real bridge, the real cluster. Forged tokens are signed
//! with the provider's own private keys where the attack needs them, so a
//! refusal is for the reason the attack names, not a bad signature.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use e2e::app::{Client, TestApp};
use e2e::idp::{TestIdp, AUDIENCE, CLIENT_ID};
use e2e::TestCluster;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

async fn start(cluster: &TestCluster) -> (TestIdp, TestApp) {
    // A provider's mapping needs an account that could log in (a login
    // shell, an unlocked password): the Unix accounts its users name get a
    // password here, not by whichever other test happens to run first (on a
    // fresh machine `useradd` leaves carol's locked).
    for name in ["alice", "bob", "carol"] {
        e2e::app::ensure_unix_password(name);
    }
    let idp = TestIdp::start(cluster);
    let dir = cluster.state_dir.join("bridge-tests");
    let config = idp.bridge_config(&dir);
    let app = TestApp::spawn(cluster, &["--config", &config]).await;
    (idp, app)
}

fn bearer(app: &TestApp, token: &str) -> Client {
    Client { base: app.base.clone(), http: app.http.clone(), token: token.to_owned() }
}

async fn exchange(app: &TestApp, token: &str) -> (u16, Value) {
    let reply =
        app.http.post(format!("{}/v1/auth/oidc/token", app.base)).json(&json!({"token": token})).send().await.unwrap();
    (reply.status().as_u16(), reply.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_a_provider_user_runs_a_job_as_the_claimed_unix_account_and_roles_follow_groups() {
    let (cluster, _shared) = TestCluster::ensure();
    let (idp, app) = start(cluster).await;

    // The providers a client can sign in with, with their endpoints.
    let listed: Value = app.http.get(format!("{}/v1/auth/oidc", app.base)).send().await.unwrap().json().await.unwrap();
    let provider = &listed["providers"][0];
    assert_eq!(provider["issuer"], idp.issuer.as_str(), "{listed}");
    assert_eq!(provider["client_id"], CLIENT_ID);
    assert_eq!(provider["available"], true, "{listed}");
    assert_eq!(provider["device_authorization_endpoint"], format!("{}/device/auth", idp.issuer));

    // ada's own provider token works as a bearer token on the API; her
    // account is created at first use, mapped to the Unix account her
    // `uid` claim names, with the role her groups give.
    let ada_token = idp.access_token("ada").await;
    let ada = bearer(&app, &ada_token);
    let me = ada.get("/v1/auth/me").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["name"], "ada");
    assert_eq!(me.body["role"], "user");
    assert_eq!(me.body["unix_user"], "alice", "{}", me.text);
    assert_eq!(me.body["unix_mapped_by"], "oidc");
    let dir = cluster.user_dir("alice");
    let job = ada.submit(json!({"command": ["id", "-un"], "working_dir": dir})).await;
    let id = job["id"].as_i64().unwrap();
    let done = ada.wait_finished(id).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    let output = ada.get(&format!("/v1/jobs/{id}/output")).await;
    assert_eq!(output.text.trim(), "alice", "the job ran as {:?}", output.text);

    // Exchanged for a bridge login: the same account; logout ends it.
    let (status, pair) = exchange(&app, &ada_token).await;
    assert_eq!(status, 200, "{pair}");
    let session = bearer(&app, pair["access_token"].as_str().unwrap());
    assert_eq!(session.get("/v1/auth/me").await.body["name"], "ada");
    assert_eq!(session.post("/v1/auth/logout", json!({"refresh_token": pair["refresh_token"]})).await.status, 204);
    assert_eq!(session.get("/v1/auth/me").await.status, 401);
    let refreshed =
        app.http.post(format!("{}/v1/auth/refresh", app.base)).json(&json!({"refresh_token": pair["refresh_token"]}));
    assert_eq!(refreshed.send().await.unwrap().status(), 401);

    // grace is in hpc-admins: an admin, mapped to carol.
    let grace = bearer(&app, &idp.access_token("grace").await);
    let me = grace.get("/v1/auth/me").await;
    assert_eq!(
        (me.body["role"].as_str(), me.body["unix_user"].as_str()),
        (Some("admin"), Some("carol")),
        "{}",
        me.text
    );
    assert_eq!(grace.get("/v1/users").await.status, 200);
    // ada is not.
    assert_eq!(ada.get("/v1/users").await.status, 403);

    // Roles follow the group claim: an admin's change to ada's role lasts
    // until her next token says otherwise; an admin's Unix mapping stays.
    let changed =
        grace.send(app.http.patch(format!("{}/v1/users/ada", app.base)).json(&json!({"role": "viewer"}))).await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let me = ada.get("/v1/auth/me").await;
    assert_eq!(me.body["role"], "user", "the group claim sets the role again: {}", me.text);
    let mapped =
        grace.send(app.http.patch(format!("{}/v1/users/ada", app.base)).json(&json!({"unix_user": "bob"}))).await;
    assert_eq!(mapped.status, 200, "{}", mapped.text);
    let me = ada.get("/v1/auth/me").await;
    assert_eq!((me.body["unix_user"].as_str(), me.body["unix_mapped_by"].as_str()), (Some("bob"), Some("admin")));

    // A disabled account stays disabled, whatever the provider says.
    let disabled =
        grace.send(app.http.patch(format!("{}/v1/users/ada", app.base)).json(&json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    assert_eq!(ada.get("/v1/auth/me").await.status, 403);
    let fresh = idp.access_token("ada").await;
    let (status, body) = exchange(&app, &fresh).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("disabled"), "{body}");

    // Logout with the provider's token revokes that token.
    let grace_token = grace.token.clone();
    assert_eq!(grace.post("/v1/auth/logout", json!({})).await.status, 204);
    let after = bearer(&app, &grace_token).get("/v1/auth/me").await;
    assert_eq!(after.status, 401, "{}", after.text);
    assert!(after.text.contains("revoked"), "{}", after.text);

    // No role for a member of no mapped group; no system account; no
    // takeover of an account of the same name.
    let (status, body) = exchange(&app, &idp.access_token("linus").await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("none of your groups"), "{body}");
    let (status, body) = exchange(&app, &idp.access_token("eve").await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("\"root\""), "{body}");
    let (status, body) = exchange(&app, &idp.access_token("who").await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("not a usable account name"), "{body}");
    let alice = app.user("alice").await;
    let (status, body) = exchange(&app, &idp.access_token("mallory").await).await;
    assert_eq!(status, 409, "mallory's username claim is alice: {body}");
    let me = alice.get("/v1/auth/me").await;
    assert_eq!((me.body["unix_user"].as_str(), me.body["unix_mapped_by"].as_str()), (Some("alice"), Some("pam")));
    let accounts = bearer(&app, &idp.access_token("grace").await).get("/v1/users").await;
    let names: Vec<&str> = accounts.body.as_array().unwrap().iter().filter_map(|u| u["name"].as_str()).collect();
    assert!(names.iter().all(|n| !["linus", "eve", "mallory"].contains(n) && !n.contains("Who")), "{names:?}");
}

/// Signs `claims` with `key` under `header`.
fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn header(alg: Algorithm, kid: &str) -> Header {
    Header { kid: Some(kid.to_owned()), ..Header::new(alg) }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_forged_tokens_are_refused_and_change_nothing() {
    let (cluster, _shared) = TestCluster::ensure();
    let (idp, app) = start(cluster).await;
    let keys = idp.private_keys();
    let kid_of = |kty: &str| keys.iter().find(|k| k["kty"] == kty).unwrap()["kid"].as_str().unwrap().to_owned();
    let (rsa_kid, ec_kid) = (kid_of("RSA"), kid_of("EC"));
    let rsa = EncodingKey::from_rsa_pem(&idp.pem(&rsa_kid, "key")).unwrap();
    let ec = EncodingKey::from_ec_pem(&idp.pem(&ec_kid, "key")).unwrap();
    // A key the provider never published.
    let stranger = rcgen::KeyPair::generate().unwrap();
    let stranger = EncodingKey::from_ec_pem(stranger.serialize_pem().as_bytes()).unwrap();
    let t = now();
    let good = json!({"iss": idp.issuer, "aud": AUDIENCE, "sub": "idp-forged-9", "preferred_username": "forged",
                      "groups": ["hpc-admins"], "uid": "bob", "iat": t, "exp": t + 300});
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };

    // The control: claims signed with the provider's real EC key pass, so
    // each refusal below is for the reason it names.
    let control = sign(
        &header(Algorithm::ES256, &ec_kid),
        &with(json!({"sub": "idp-control-1", "preferred_username": "control"})),
        &ec,
    );
    let me = bearer(&app, &control).get("/v1/auth/me").await;
    assert_eq!(me.status, 200, "the control token: {}", me.text);
    assert_eq!(me.body["role"], "admin");

    // An attacker's key server: a jku or x5u header must never be fetched.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}/jwks", trap.local_addr().unwrap());

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": rsa_kid}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let public_pem = idp.pem(&rsa_kid, "pub");
    let mut jku = header(Algorithm::ES256, "attacker-key");
    jku.jku = Some(trap_url.clone());
    let mut x5u = header(Algorithm::ES256, "attacker-key");
    x5u.x5u = Some(trap_url.clone());
    let forged: Vec<(&str, String, &str)> = vec![
        (
            "wrong issuer",
            sign(&header(Algorithm::RS256, &rsa_kid), &with(json!({"iss": "http://127.0.0.1:1"})), &rsa),
            "",
        ),
        (
            "wrong audience",
            sign(&header(Algorithm::RS256, &rsa_kid), &with(json!({"aud": "someone-else"})), &rsa),
            "Audience",
        ),
        (
            "expired",
            sign(&header(Algorithm::RS256, &rsa_kid), &with(json!({"iat": t - 7200, "exp": t - 3600})), &rsa),
            "Expired",
        ),
        ("not yet valid", sign(&header(Algorithm::RS256, &rsa_kid), &with(json!({"nbf": t + 3600})), &rsa), "Immature"),
        (
            "issued in the future",
            sign(&header(Algorithm::RS256, &rsa_kid), &with(json!({"iat": t + 3600, "exp": t + 7200})), &rsa),
            "future",
        ),
        (
            "signed by a key not in the JWKS",
            sign(&header(Algorithm::ES256, "attacker-key"), &good, &stranger),
            "no key",
        ),
        (
            "the provider's kid, another key",
            sign(&header(Algorithm::ES256, &ec_kid), &good, &stranger),
            "InvalidSignature",
        ),
        ("alg none", none, "header"),
        (
            "HS256 with the provider's public key",
            sign(&header(Algorithm::HS256, &rsa_kid), &good, &EncodingKey::from_secret(&public_pem)),
            "not accepted",
        ),
        (
            "a kid that points at the EC key",
            sign(&header(Algorithm::RS256, &ec_kid), &good, &rsa),
            "the token says RS256",
        ),
        ("jku to the attacker's keys", sign(&jku, &good, &stranger), "no key"),
        ("x5u to the attacker's keys", sign(&x5u, &good, &stranger), "no key"),
    ];
    let before = bearer(&app, &control).get("/v1/users").await.body.as_array().unwrap().len();
    for (attack, token, reason) in &forged {
        let reply = bearer(&app, token).get("/v1/auth/me").await;
        assert_eq!(reply.status, 401, "{attack}: {}", reply.text);
        assert!(reply.text.contains(reason), "{attack}: refused, but not for {reason:?}: {}", reply.text);
        let (status, body) = exchange(&app, token).await;
        assert_eq!(status, 401, "{attack} (exchange): {body}");
    }
    let after = bearer(&app, &control).get("/v1/users").await.body.as_array().unwrap().len();
    assert_eq!(before, after, "a forged token created an account");
    assert!(trap.accept().is_err(), "the bridge fetched keys from a jku/x5u header");
    drop(idp);
}

/// `bridge_oidc_key_fetches_total` for the issuer and outcome.
async fn key_fetches(app: &TestApp, metrics: u16, issuer: &str, outcome: &str) -> u64 {
    let text = app.http.get(format!("http://127.0.0.1:{metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!("bridge_oidc_key_fetches_total{{issuer=\"{issuer}\",outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_a_rotated_key_works_after_one_refetch_and_cached_keys_outlive_the_provider() {
    let (cluster, _shared) = TestCluster::ensure();
    let mut idp = TestIdp::start(cluster);
    let config = idp.bridge_config(&cluster.state_dir.join("bridge-tests"));
    let metrics = e2e::free_port();
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let app = TestApp::spawn(cluster, &["--config", &config, "--metrics-listen", &metrics_listen]).await;
    let old = idp.access_token("ada").await;
    assert_eq!(bearer(&app, &old).get("/v1/auth/me").await.status, 200);
    let fetched = key_fetches(&app, metrics, &idp.issuer, "ok").await;
    assert!(fetched >= 1, "no key fetch counted");

    // The provider rotates: its new key signs, the old one stays published.
    idp.rotate(cluster);
    let new = idp.access_token("ada").await;
    let new_kid = idp.private_keys()[0]["kid"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&new).unwrap();
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()), "the new token is signed with the new key");
    // jwks_min_refetch is 1 s here: the unknown kid may fetch again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let me = bearer(&app, &new).get("/v1/auth/me").await;
    assert_eq!(me.status, 200, "after rotation: {}", me.text);
    assert_eq!(bearer(&app, &old).get("/v1/auth/me").await.status, 200);
    assert_eq!(key_fetches(&app, metrics, &idp.issuer, "ok").await, fetched + 1, "one refetch for the new key");

    // The provider goes down: verified keys keep working until expiry; a key
    // the bridge has not seen cannot be fetched, and the answer says so.
    idp.stop();
    assert_eq!(bearer(&app, &new).get("/v1/auth/me").await.status, 200);
    assert_eq!(bearer(&app, &old).get("/v1/auth/me").await.status, 200);
    let unseen = rcgen::KeyPair::generate().unwrap();
    let unseen = EncodingKey::from_ec_pem(unseen.serialize_pem().as_bytes()).unwrap();
    let t = now();
    let claims = json!({"iss": idp.issuer, "aud": AUDIENCE, "sub": "idp-ada-0001", "preferred_username": "ada",
                        "groups": ["hpc-users"], "uid": "alice", "iat": t, "exp": t + 300});
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forged = sign(&header_es256("rotated-while-down"), &claims, &unseen);
    let reply = bearer(&app, &forged).get("/v1/auth/me").await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert!(reply.text.contains("cannot be fetched now"), "{}", reply.text);
    assert!(reply.headers.get("retry-after").is_some(), "503 without Retry-After");
    // At once again: refused the same way without another fetch (the limit).
    let failed = key_fetches(&app, metrics, &idp.issuer, "failed").await;
    assert_eq!(bearer(&app, &forged).get("/v1/auth/me").await.status, 503);
    assert_eq!(
        key_fetches(&app, metrics, &idp.issuer, "failed").await,
        failed,
        "unknown kids fetch at most once a second"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_a_key_the_provider_withdrew_stops_working_once_the_cached_keys_are_old() {
    let (cluster, _shared) = TestCluster::ensure();
    let mut idp = TestIdp::start(cluster);
    let config = idp.bridge_config_with(&cluster.state_dir.join("bridge-tests"), "jwks_max_age = 2");
    let app = TestApp::spawn(cluster, &["--config", &config]).await;
    let old = idp.access_token("ada").await;
    assert_eq!(bearer(&app, &old).get("/v1/auth/me").await.status, 200);
    idp.replace_keys(cluster);
    let new = idp.access_token("ada").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = bearer(&app, &old).get("/v1/auth/me").await;
    assert_eq!(reply.status, 401, "a withdrawn key still verifies: {}", reply.text);
    assert!(reply.text.contains("withdrawn") || reply.text.contains("no key"), "{}", reply.text);
    assert_eq!(bearer(&app, &new).get("/v1/auth/me").await.status, 200);
}

fn header_es256(kid: &str) -> Header {
    header(Algorithm::ES256, kid)
}

/// `odyssey login --sso` as a process, with its own configuration
/// directory; the address it asks the user to open, and the process.
// The child is handed back inside `Login`, and `finished` waits for it.
#[allow(clippy::zombie_processes)]
fn cli_sso_login(cluster: &TestCluster, app: &TestApp, config: &std::path::Path) -> (String, Login) {
    use std::io::BufRead;
    let binary = cluster.repo.join("target/release/odyssey");
    assert!(binary.exists(), "{} is missing: run scripts/build.sh", binary.display());
    let mut child = std::process::Command::new(binary)
        .args(["login", "--url", &app.base, "--sso"])
        .env("ODYSSEY_CONFIG_DIR", config)
        .env_remove("ODYSSEY_URL")
        .env_remove("ODYSSEY_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("odyssey login --sso printed no address: {said}");
        }
        said.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("To sign in, open ").filter(|u| u.starts_with("http")) {
            return (url.to_owned(), Login { child, stderr, said });
        }
        if line.trim().starts_with("http://") {
            return (line.trim().to_owned(), Login { child, stderr, said });
        }
    }
}

fn odyssey(cluster: &TestCluster, config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cluster.repo.join("target/release/odyssey"))
        .args(args)
        .env("ODYSSEY_CONFIG_DIR", config)
        .env_remove("ODYSSEY_URL")
        .env_remove("ODYSSEY_TOKEN")
        .output()
        .unwrap()
}

/// A running `odyssey login --sso` and what it said on stderr so far.
struct Login {
    child: std::process::Child,
    stderr: std::io::BufReader<std::process::ChildStderr>,
    said: String,
}

/// Waits (bounded) for the CLI to finish; its stdout.
fn finished(mut login: Login) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while login.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "odyssey login --sso did not finish within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    login.stderr.read_to_string(&mut login.said).unwrap();
    let out = login.child.wait_with_output().unwrap();
    assert!(out.status.success(), "odyssey login --sso failed: {}{}", e2e::text(&out.stdout), login.said);
    e2e::text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_15_the_cli_signs_in_with_the_device_grant_or_a_browser_redirect() {
    let (cluster, _shared) = TestCluster::ensure();
    let (idp, app) = start(cluster).await;
    let config = cluster.state_dir.join("bridge-tests").join(e2e::unique_name("cli-sso"));

    // The device grant: the CLI prints the address with the code in it.
    let (url, child) = cli_sso_login(cluster, &app, &config);
    assert!(url.contains("/device?user_code="), "{url}");
    idp.approve_device(&url, "ada").await;
    let said = tokio::task::spawn_blocking(move || finished(child)).await.unwrap();
    assert!(said.contains("as ada (single sign-on)"), "{said}");
    let me = odyssey(cluster, &config, &["whoami", "--json"]);
    let me: Value = serde_json::from_slice(&me.stdout).unwrap_or(Value::Null);
    assert_eq!((me["name"].as_str(), me["unix_user"].as_str()), (Some("ada"), Some("alice")), "{me}");
    // Stored like a password login: 0600, and logout ends the bridge login.
    let stored = config.join("credentials.json");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&stored).unwrap().permissions()) & 0o777,
        0o600
    );
    let token: Value = serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    let out = odyssey(cluster, &config, &["logout"]);
    assert!(out.status.success(), "{}", e2e::text(&out.stderr));
    let after = bearer(&app, token["access_token"].as_str().unwrap()).get("/v1/auth/me").await;
    assert_eq!(after.status, 401, "the bridge login outlived logout: {}", after.text);
    drop(idp);

    // No device grant at the provider: a browser redirect to a one-shot
    // loopback listener, with PKCE.
    let idp = TestIdp::without_device_grant(cluster);
    let dir = cluster.state_dir.join("bridge-tests");
    let app = TestApp::spawn(cluster, &["--config", &idp.bridge_config(&dir)]).await;
    let (url, child) = cli_sso_login(cluster, &app, &config);
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{url}"
    );
    let page = idp.sign_in_at(&url, "grace").await;
    assert!(page.contains("Signed in"), "{page}");
    let said = tokio::task::spawn_blocking(move || finished(child)).await.unwrap();
    assert!(said.contains("as grace (single sign-on)"), "{said}");
    let me = odyssey(cluster, &config, &["whoami", "--json"]);
    let me: Value = serde_json::from_slice(&me.stdout).unwrap_or(Value::Null);
    assert_eq!(me["role"], "admin", "{me}");
}
