//! The bridge, as a worker reaches it: the public API once (to join), the
//! worker endpoint with the worker's certificate from then on. Error
//! answers (problem+json) become one line.

use std::time::Duration;

use anyhow::Context;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

use crate::state::Worker;

fn send(request: RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let response = request.send().with_context(|| format!("{what}: the bridge does not answer"))?;
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let detail = body.get("detail").and_then(Value::as_str).unwrap_or("no detail");
    Err(Refused {
        status: status.as_u16(),
        message: format!("{what}: {} {}: {detail}", status.as_u16(), status.canonical_reason().unwrap_or("")),
    }
    .into())
}

/// An answer other than success, with its status (callers that tell a
/// refused request from an unreachable bridge look for it in the error).
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// The public API, for `join`.
pub fn public(ca_file: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let mut builder = Client::builder().use_rustls_tls().timeout(Duration::from_secs(30));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("read --ca-file {}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(ca);
    }
    Ok(builder.build()?)
}

pub fn post(client: &Client, url: &str, body: &Value, what: &str) -> anyhow::Result<Value> {
    send(client.post(url).json(body), what)
}

/// The worker endpoint with this worker's certificate; only the cluster CA
/// is trusted for the bridge's side.
pub struct Endpoint {
    client: Client,
    base: String,
}

impl Endpoint {
    pub fn new(worker: &Worker) -> anyhow::Result<Endpoint> {
        let identity = format!("{}\n{}", worker.read("key.pem")?, worker.read("cert.pem")?);
        let identity = reqwest::Identity::from_pem(identity.as_bytes()).context("the worker's key and certificate")?;
        let ca = reqwest::Certificate::from_pem(worker.read("ca.pem")?.as_bytes()).context("the cluster CA")?;
        let client = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .identity(identity)
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Endpoint { client, base: worker.record.endpoint.trim_end_matches('/').to_owned() })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        send(self.client.get(format!("{}{path}", self.base)), path)
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        send(self.client.post(format!("{}{path}", self.base)).json(body), path)
    }

    pub fn post_lines(&self, path: &str, body: &str) -> anyhow::Result<Value> {
        send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-ndjson")
                .body(body.to_owned()),
            path,
        )
    }
}
