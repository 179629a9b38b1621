//! The web dashboard (issue #13) in a real browser: Debian's chromium,
//! headless, driven over WebDriver (chromedriver, fantoccini) against the
//! real bridge and cluster. Each page's screenshot is saved under
//! `target/ui-screenshots/` (docs/ui/ holds the current ones).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::app::{ensure_unix_password, health_app, unix_password, TestApp, HEALTH_ADDR};
use e2e::idp::{password as idp_password, TestIdp};
use e2e::{free_port, TestCluster};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// chromedriver and the WebDriver session it serves; both end with it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by scripts/test.sh)");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(err) => panic!("no WebDriver session from chromedriver: {err}"),
            }
        };
        Browser { driver, client }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the element's text contains `what` (the page updates itself).
    async fn wait_text(&self, css: &str, what: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(what) {
                return text;
            }
            assert!(Instant::now() < deadline, "{css} never said {what:?}; it says {text:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let element = self.client.wait().for_element(Locator::Css(css)).await.unwrap();
        element.clear().await.unwrap();
        element.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client.wait().for_element(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    /// Signs in with the Unix password (PAM), the page's default.
    async fn sign_in(&self, base: &str, name: &str) {
        ensure_unix_password(name);
        self.sign_in_with(base, name, &unix_password(name), "pam").await;
    }

    async fn sign_in_with(&self, base: &str, name: &str, password: &str, method: &str) {
        self.client.goto(&format!("{base}/ui/#/login")).await.unwrap();
        self.fill("#login-name", name).await;
        self.fill("#login-password", password).await;
        let select = self.client.wait().for_element(Locator::Css("#login-method")).await.unwrap();
        select.select_by_value(method).await.unwrap();
        self.click("form button[type=submit]").await;
        self.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#jobs")).await.unwrap();
    }

    async fn sign_out(&self) {
        self.click("#signout").await;
        self.client.wait().for_element(Locator::Css("#login-name")).await.unwrap();
    }

    async fn screenshot(&self, cluster: &TestCluster, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = cluster.repo.join("target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn close(self) {
        let Browser { mut driver, client } = self;
        let _ = client.close().await;
        let _ = driver.kill();
        let _ = driver.wait();
    }
}

/// Sign in, submit a kernel job from the page, watch it finish, see its
/// result and health, look at the nodes; another user cannot see the job;
/// the pages carry a strict Content-Security-Policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_the_dashboard_runs_a_kernel_job_in_a_real_browser() {
    let (cluster, _guard) = TestCluster::ensure();
    // The job's health records go to the address plugstack.conf names.
    let _addr = HEALTH_ADDR.lock().await;
    let app = health_app(cluster).await;

    let page = app.http.get(format!("{}/ui/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(!page.text().await.unwrap().contains("<script>"), "no inline script");

    let browser = Browser::start().await;
    browser.sign_in(&app.base, "alice").await;

    browser.client.goto(&format!("{}/ui/#/submit", app.base)).await.unwrap();
    browser.fill("#params", r#"{"samples": 2000000}"#).await;
    browser.fill("#workdir", cluster.user_dir("alice").to_str().unwrap()).await;
    browser.screenshot(cluster, "submit").await;
    browser.click("#submit-job").await;
    browser.wait_text("#job-facts", "COMPLETED", Duration::from_secs(120)).await;
    let id: i64 = browser.text("h1").await.trim_start_matches("Job ").parse().unwrap();
    assert_eq!(browser.wait_text("#result-verified", "Verified", Duration::from_secs(30)).await, "Verified: yes");
    // "X of Y tasks ok" once the plugin's records arrived: every task ok.
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let health = browser.wait_text("#health-summary", "tasks ok", Duration::from_secs(60)).await;
        let words: Vec<&str> = health.split_whitespace().collect();
        let (ok, all): (u32, u32) = (words[0].parse().unwrap(), words[2].parse().unwrap());
        if all > 0 || Instant::now() > deadline {
            break (ok, all);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(counts.1 > 0 && counts.0 == counts.1, "health: {counts:?}");
    browser.screenshot(cluster, "job").await;

    browser.client.goto(&format!("{}/ui/#/nodes", app.base)).await.unwrap();
    browser.wait_text("#nodes tbody", "c1", Duration::from_secs(30)).await;
    browser.screenshot(cluster, "nodes").await;

    // The jobs page lists it, live.
    browser.client.goto(&format!("{}/ui/#/jobs", app.base)).await.unwrap();
    browser.wait_text(&format!("#jobs tr[data-job=\"{id}\"]"), "COMPLETED", Duration::from_secs(30)).await;
    browser.screenshot(cluster, "jobs").await;

    // The overview's charts count the job; a user has no users page.
    browser.client.goto(&format!("{}/ui/#/overview", app.base)).await.unwrap();
    let states = browser.client.wait().for_element(Locator::Css("#chart-states")).await.unwrap();
    let label = states.attr("aria-label").await.unwrap().unwrap_or_default();
    assert!(label.contains("COMPLETED 1"), "{label}");
    browser.screenshot(cluster, "overview").await;
    browser.client.goto(&format!("{}/ui/#/users", app.base)).await.unwrap();
    browser.wait_text("#status", "Forbidden", Duration::from_secs(30)).await;

    // Sign out; bob signs in and cannot see alice's job.
    browser.sign_out().await;
    browser.sign_in(&app.base, "bob").await;
    browser.client.goto(&format!("{}/ui/#/jobs/{id}", app.base)).await.unwrap();
    browser.wait_text("#not-found", &format!("No job {id}"), Duration::from_secs(30)).await;

    // An admin (made on the machine, signing in with a bridge password)
    // sees every account and its Unix mapping, and disables bob.
    browser.sign_out().await;
    app.admin(cluster, "chief").await;
    browser.sign_in_with(&app.base, "chief", "chief-admin-password", "password").await;
    browser.client.goto(&format!("{}/ui/#/users", app.base)).await.unwrap();
    browser.wait_text("#users tr[data-user=\"alice\"]", "alice", Duration::from_secs(30)).await;
    browser.screenshot(cluster, "users").await;
    browser.click("#users tr[data-user=\"bob\"] td:last-child button").await;
    browser.wait_text("#users tr[data-user=\"bob\"]", "disabled", Duration::from_secs(30)).await;
    browser.close().await;
    let bob = app.http.post(format!("{}/v1/auth/login", app.base));
    let bob =
        bob.json(&json!({"name": "bob", "password": unix_password("bob"), "method": "pam"})).send().await.unwrap();
    assert_eq!(bob.status(), 403, "a disabled account cannot sign in");
}

/// Single sign-on from the page (issue #15): the provider's button, its
/// login form, back to the dashboard with a code that only this page's
/// PKCE verifier redeems; the Content-Security-Policy lets the page reach
/// the provider's token endpoint and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_the_dashboard_signs_in_through_the_provider_with_pkce() {
    let (cluster, _guard) = TestCluster::ensure();
    let idp = TestIdp::start(cluster);
    let config = idp.bridge_config(&cluster.state_dir.join("bridge-tests"));
    let app = TestApp::spawn(cluster, &["--config", &config]).await;
    let page = app.http.get(format!("{}/ui/", app.base)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains(&format!("connect-src 'self' {};", idp.issuer)), "{csp}");

    let browser = Browser::start().await;
    browser.client.goto(&format!("{}/ui/#/login", app.base)).await.unwrap();
    let host = idp.issuer.trim_start_matches("http://").to_owned();
    browser.wait_text("#sso-0", &host, Duration::from_secs(30)).await;
    // Signed out, the page offers no navigation (a CSS display rule once
    // overrode the nav's `hidden`).
    let nav = browser.client.find(Locator::Css("#nav")).await.unwrap();
    assert!(!nav.is_displayed().await.unwrap(), "the navigation shows while signed out");
    browser.screenshot(cluster, "sign-in").await;
    browser.click("#sso-0").await;
    browser.fill("#idp-login", "ada").await;
    browser.fill("#idp-password", &idp_password("ada")).await;
    browser.click("#idp-submit").await;
    browser.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css("#jobs")).await.unwrap();
    assert_eq!(browser.text("#who").await, "ada (user)");
    let url = browser.client.current_url().await.unwrap();
    assert!(url.query().is_none(), "the code stays in the address bar: {url}");
    browser.sign_out().await;
    browser.close().await;
}
