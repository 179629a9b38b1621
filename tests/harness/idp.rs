//! `TestIdp`: the real OpenID provider of `tests/oidc-idp/` (oidc-provider,
//! run by Node) on a loopback port, and a user's side of its sign-in pages
//! over plain HTTP (the login form, consent given by the provider itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{free_port, TestCluster};

/// The public client the provider knows, and its registered redirect.
pub const CLIENT_ID: &str = "odyssey";
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// The audience of the provider's access tokens.
pub const AUDIENCE: &str = "urn:cloud-odyssey:api";

pub struct TestIdp {
    pub issuer: String,
    pub port: u16,
    /// The private JWKS (the provider's keys; tests forge with them).
    pub keys: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    /// Whether the provider offers the device grant.
    device: bool,
}

/// The provider's password for one of its accounts (ada, grace, ...).
pub fn password(login: &str) -> String {
    format!("idp-pw-{login}")
}

impl TestIdp {
    pub fn start(cluster: &TestCluster) -> TestIdp {
        Self::start_with(cluster, true)
    }

    /// A provider without the device grant (browser redirects only).
    pub fn without_device_grant(cluster: &TestCluster) -> TestIdp {
        Self::start_with(cluster, false)
    }

    fn start_with(cluster: &TestCluster, device: bool) -> TestIdp {
        let dir = cluster.state_dir.join("bridge-tests").join(crate::unique_name("idp"));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let mut idp = TestIdp {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            keys: dir.join("keys.json"),
            dir,
            child: None,
            device,
        };
        idp.launch(cluster, false, false);
        idp
    }

    fn launch(&mut self, cluster: &TestCluster, new_key: bool, drop_old_keys: bool) {
        let fixture = cluster.repo.join("tests/oidc-idp");
        assert!(
            fixture.join("node_modules/oidc-provider").is_dir(),
            "the test IdP's packages are missing: npm ci --prefix tests/oidc-idp (scripts/test.sh does it)"
        );
        let log = std::fs::File::create(self.dir.join("idp.log")).unwrap();
        let mut command = Command::new("node");
        command
            .arg(fixture.join("idp.mjs"))
            .args(["--port", &self.port.to_string(), "--keys", self.keys.to_str().unwrap()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        if new_key {
            command.arg("--new-key");
        }
        if drop_old_keys {
            command.arg("--drop-old-keys");
        }
        if !self.device {
            command.arg("--no-device");
        }
        self.child = Some(command.spawn().expect("node (Debian's nodejs, installed by scripts/test.sh)"));
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if answers(&url) {
                return;
            }
            assert!(Instant::now() < deadline, "the test IdP did not answer within 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("idp.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the provider with a new signing key first in its JWKS (the
    /// old ones stay published): a key rotation.
    pub fn rotate(&mut self, cluster: &TestCluster) {
        self.stop();
        self.launch(cluster, true, false);
    }

    /// Restarts the provider with a new key only: the old ones withdrawn.
    pub fn replace_keys(&mut self, cluster: &TestCluster) {
        self.stop();
        self.launch(cluster, true, true);
    }

    /// A bridge config file (in `dir`) with this provider as its `[[oidc]]`:
    /// `uid` names the Unix account, hpc-admins and hpc-users give roles,
    /// and an unknown kid may refetch the keys after 1 s. Its path.
    pub fn bridge_config(&self, dir: &Path) -> String {
        self.bridge_config_with(dir, "")
    }

    /// `bridge_config` with more keys for the `[[oidc]]` table.
    pub fn bridge_config_with(&self, dir: &Path, extra: &str) -> String {
        let path = dir.join(crate::unique_name("oidc")).with_extension("toml");
        let text = format!(
            r#"
[[oidc]]
issuer = "{issuer}"
audience = "{AUDIENCE}"
client_id = "{CLIENT_ID}"
scopes = "openid profile groups"
unix_user_claim = "uid"
admin_groups = ["hpc-admins"]
user_groups = ["hpc-users"]
jwks_min_refetch = 1
{extra}
"#,
            issuer = self.issuer
        );
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// The private JWKS's keys, first (current signing key) first.
    pub fn private_keys(&self) -> Vec<Value> {
        let keys: Value = serde_json::from_str(&std::fs::read_to_string(&self.keys).unwrap()).unwrap();
        keys["keys"].as_array().unwrap().clone()
    }

    /// PEM of a key of the JWKS by kid: `key` (PKCS#8 private) or `pub` (SPKI).
    pub fn pem(&self, kid: &str, part: &str) -> Vec<u8> {
        std::fs::read(Path::new(&format!("{}.{kid}.{part}.pem", self.keys.display()))).unwrap()
    }

    /// Signs `login` in with the authorization code flow and PKCE, as a
    /// browser would; the provider's access token.
    pub async fn access_token(&self, login: &str) -> String {
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut browser = Browser::new(&self.issuer);
        let auth = format!(
            "{}/auth?client_id={CLIENT_ID}&response_type=code&redirect_uri={REDIRECT_URI}&scope=openid%20profile%20groups\
             &code_challenge={challenge}&code_challenge_method=S256&state=s1",
            self.issuer
        );
        let (landed, _) = browser.sign_in(&auth, login).await;
        let code = landed
            .strip_prefix(REDIRECT_URI)
            .and_then(|q| q.strip_prefix('?'))
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("code=")))
            .unwrap_or_else(|| panic!("no code in {landed}"));
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", CLIENT_ID),
            ("code_verifier", &verifier),
        ];
        let reply = browser.http.post(format!("{}/token", self.issuer)).form(&form).send().await.unwrap();
        let status = reply.status();
        let body: Value = reply.json().await.unwrap();
        assert_eq!(status, 200, "token endpoint: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs `login` in at an authorization address a client printed and
    /// follows the provider's redirect back to the client (its loopback
    /// listener); the client's answer.
    pub async fn sign_in_at(&self, authorization_url: &str, login: &str) -> String {
        let mut browser = Browser::new(&self.issuer);
        let (landed, _) = browser.sign_in(authorization_url, login).await;
        assert!(landed.starts_with("http://127.0.0.1:"), "the provider sent the browser to {landed}");
        browser.http.get(&landed).send().await.unwrap().text().await.unwrap()
    }

    /// Approves a device sign-in (RFC 8628) as `login`, from the
    /// verification URI with the code in it (what the CLI prints).
    pub async fn approve_device(&self, verification_uri_complete: &str, login: &str) {
        let mut browser = Browser::new(&self.issuer);
        let page = browser.get(verification_uri_complete).await.1;
        let field = |name: &str| {
            let marker = format!("name=\"{name}\" value=\"");
            let start =
                page.find(&marker).unwrap_or_else(|| panic!("no {name} in the device page: {page}")) + marker.len();
            page[start..].split('"').next().unwrap().to_owned()
        };
        let form = [("xsrf", field("xsrf")), ("user_code", field("user_code")), ("confirm", "yes".to_owned())];
        let next = browser.post(&format!("{}/device", self.issuer), &form).await;
        let (_, page) = browser.sign_in(&next, login).await;
        assert!(page.contains("Sign-in Success"), "device sign-in did not succeed: {page}");
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).unwrap();
    bytes
}

fn answers(url: &str) -> bool {
    std::net::TcpStream::connect_timeout(&url_addr(url), Duration::from_secs(1)).is_ok()
        && Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", "--max-time", "2", url])
            .status()
            .is_ok_and(|s| s.success())
}

fn url_addr(url: &str) -> std::net::SocketAddr {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    host.parse().unwrap()
}

/// A user's browser, reduced to what the provider's pages need: cookies and
/// redirects followed by hand (the provider's cookies are per path; sending
/// all of them everywhere is harmless).
struct Browser {
    issuer: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(issuer: &str) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { issuer: issuer.to_owned(), http, cookies: BTreeMap::new() }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http") {
            location.to_owned()
        } else {
            format!("{}{location}", self.issuer)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// GET; the redirect's target (absolute) or "", and the body.
    async fn get(&mut self, url: &str) -> (String, String) {
        let response = self.http.get(url).header("cookie", self.cookie_header()).send().await.unwrap();
        self.keep_cookies(&response);
        let location = response.headers().get("location").map(|l| self.absolute(l.to_str().unwrap()));
        (location.unwrap_or_default(), response.text().await.unwrap())
    }

    /// POSTs a form; the redirect's target (absolute).
    async fn post(&mut self, url: &str, form: &[(&str, String)]) -> String {
        let response = self.http.post(url).header("cookie", self.cookie_header()).form(form).send().await.unwrap();
        self.keep_cookies(&response);
        let status = response.status();
        let location = response.headers().get("location").map(|l| self.absolute(l.to_str().unwrap()));
        let body = response.text().await.unwrap();
        location.unwrap_or_else(|| panic!("POST {url}: {status} without a redirect: {body}"))
    }

    /// Follows redirects from `url`, fills the login form as `login` when it
    /// comes, and stops at the first address off the provider (the client's
    /// redirect) or at a page that is not a redirect; that address and the
    /// page ("" off the provider).
    async fn sign_in(&mut self, url: &str, login: &str) -> (String, String) {
        let mut url = url.to_owned();
        for _ in 0..12 {
            if !url.starts_with(&self.issuer) {
                return (url, String::new());
            }
            let (next, page) = self.get(&url).await;
            if !next.is_empty() {
                url = next;
                continue;
            }
            if page.contains("id=\"idp-login\"") {
                let action = format!("{}/login", url.split('?').next().unwrap());
                let form = [("login", login.to_owned()), ("password", password(login))];
                url = self.post(&action, &form).await;
                continue;
            }
            return (url, page);
        }
        panic!("sign-in at the test IdP did not finish: stuck at {url}");
    }
}
