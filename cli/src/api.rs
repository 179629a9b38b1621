//! The bridge's public /v1 API over blocking HTTP: problem+json answers
//! become one-line errors, and the access token is refreshed (and the
//! rotated pair stored) before it expires or when the bridge says 401.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::credentials::{self, Credentials};

/// How the CLI reaches the bridge (flags and environment).
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// `--url` / `ODYSSEY_URL`; else the URL `login` stored.
    pub url: Option<String>,
    /// `--ca-file`: a PEM CA that signed the bridge's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// `ODYSSEY_TOKEN`: an access token to use as it is (scripts).
    pub token: Option<String>,
}

/// An error answer of the bridge, as one line.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub line: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for Problem {}

pub fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Refresh this long before the access token expires.
const REFRESH_MARGIN_S: f64 = 30.0;

pub struct Api {
    pub http: Client,
    /// For streams: no overall timeout.
    pub streaming: Client,
    pub base: String,
    auth: Auth,
}

enum Auth {
    None,
    Fixed(String),
    Stored(Credentials),
}

fn client(ca_file: Option<&std::path::Path>, timeout: Option<Duration>) -> anyhow::Result<Client> {
    let mut builder = Client::builder().user_agent(concat!("odyssey/", env!("CARGO_PKG_VERSION")));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder = builder.connect_timeout(Duration::from_secs(10));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("--ca-file {}: not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    Ok(builder.build()?)
}

impl Api {
    /// Without a sign-in (login itself).
    pub fn anonymous(conn: &Connection, url: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: client(conn.ca_file.as_deref(), Some(Duration::from_secs(60)))?,
            streaming: client(conn.ca_file.as_deref(), None)?,
            base: url.trim_end_matches('/').to_owned(),
            auth: Auth::None,
        })
    }

    /// Signed in: `ODYSSEY_TOKEN`, else the stored credentials.
    pub fn signed_in(conn: &Connection) -> anyhow::Result<Api> {
        let stored = credentials::load()?;
        let (url, auth) = match (&conn.token, stored) {
            (Some(token), stored) => {
                let url = conn.url.clone().or(stored.map(|c| c.url));
                (url.context("ODYSSEY_TOKEN needs --url or ODYSSEY_URL")?, Auth::Fixed(token.clone()))
            }
            (None, Some(stored)) => (conn.url.clone().unwrap_or_else(|| stored.url.clone()), Auth::Stored(stored)),
            (None, None) => anyhow::bail!("not signed in: run odyssey login --url URL"),
        };
        let mut api = Api::anonymous(conn, &url)?;
        api.auth = auth;
        Ok(api)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&mut self) -> anyhow::Result<Option<String>> {
        if let Auth::Stored(c) = &self.auth {
            if c.access_expires_at - REFRESH_MARGIN_S < now() {
                self.refresh()?;
            }
        }
        Ok(match &self.auth {
            Auth::None => None,
            Auth::Fixed(token) => Some(token.clone()),
            Auth::Stored(c) => Some(c.access_token.clone()),
        })
    }

    /// Trades the refresh token for a new pair and stores it.
    fn refresh(&mut self) -> anyhow::Result<()> {
        let Auth::Stored(c) = &self.auth else { return Ok(()) };
        let reply = self
            .http
            .post(self.url("/v1/auth/refresh"))
            .json(&serde_json::json!({"refresh_token": c.refresh_token}))
            .send()
            .with_context(|| format!("cannot reach {}", self.base))?;
        if !reply.status().is_success() {
            return Err(Problem {
                status: reply.status(),
                line: "your sign-in has expired or was revoked: run odyssey login".into(),
            }
            .into());
        }
        let pair: Value = reply.json()?;
        let updated = Credentials {
            access_token: str_field(&pair, "access_token")?,
            refresh_token: str_field(&pair, "refresh_token")?,
            access_expires_at: now() + pair["expires_in"].as_f64().unwrap_or(0.0),
            ..c.clone()
        };
        credentials::save(&updated)?;
        self.auth = Auth::Stored(updated);
        Ok(())
    }

    /// Sends a request built by `build` with the token; on a 401 from a
    /// stored sign-in, refreshes once and sends it again.
    pub fn send(&mut self, build: impl Fn(&Client) -> RequestBuilder) -> anyhow::Result<Response> {
        self.send_with(false, build)
    }

    /// `send` on the client without an overall timeout (SSE).
    pub fn send_streaming(&mut self, build: impl Fn(&Client) -> RequestBuilder) -> anyhow::Result<Response> {
        self.send_with(true, build)
    }

    fn send_with(&mut self, streaming: bool, build: impl Fn(&Client) -> RequestBuilder) -> anyhow::Result<Response> {
        for attempt in 0..2 {
            let token = self.token()?;
            let client = if streaming { &self.streaming } else { &self.http };
            let mut request = build(client);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = request.send().map_err(|e| connection_error(&self.base, e))?;
            if reply.status() == StatusCode::UNAUTHORIZED && attempt == 0 && matches!(self.auth, Auth::Stored(_)) {
                self.refresh()?;
                continue;
            }
            return checked(reply);
        }
        unreachable!("the loop returns on its second pass")
    }

    pub fn get_json(&mut self, path: &str) -> anyhow::Result<Value> {
        let url = self.url(path);
        Ok(self.send(|c| c.get(&url))?.json()?)
    }

    pub fn request_json(&mut self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = self.url(path);
        let reply = self.send(|c| {
            let request = c.request(method.clone(), &url);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        })?;
        let text = reply.text()?;
        Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text)? })
    }
}

fn connection_error(base: &str, e: reqwest::Error) -> anyhow::Error {
    if e.is_connect() {
        anyhow::anyhow!("cannot reach the bridge at {base}: {}", root_cause(&e))
    } else if e.is_timeout() {
        anyhow::anyhow!("the bridge at {base} did not answer in time")
    } else {
        anyhow::anyhow!("request to {base} failed: {}", root_cause(&e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A success passes; an error answer becomes a `Problem` with the
/// problem's title and detail (and field) on one line.
pub fn checked(reply: Response) -> anyhow::Result<Response> {
    let status = reply.status();
    if status.is_success() {
        return Ok(reply);
    }
    let body: Value = reply.json().unwrap_or(Value::Null);
    let title = body["title"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error"));
    let mut line = match body["detail"].as_str() {
        Some(detail) if !detail.is_empty() => format!("{title}: {detail}"),
        _ => title.to_owned(),
    };
    if let Some(field) = body["field"].as_str() {
        line.push_str(&format!(" (field {field})"));
    }
    if status == StatusCode::UNAUTHORIZED {
        line.push_str("; run odyssey login");
    }
    Err(Problem { status, line }.into())
}

pub fn str_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name].as_str().map(str::to_owned).with_context(|| format!("the bridge's answer has no {name}"))
}
