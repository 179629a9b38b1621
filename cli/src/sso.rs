//! `odyssey login --sso`: sign in through the site's OpenID provider
//! (issue #15). The bridge lists its providers (`GET /v1/auth/oidc`); the
//! CLI gets an access token from the provider with the device
//! authorization grant (RFC 8628) where the provider offers it, else with
//! the authorization code flow and PKCE through a one-shot loopback
//! redirect (RFC 8252), and trades it at the bridge for a bridge login
//! (`POST /v1/auth/oidc/token`), stored like a password login.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::{self, Api};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The longest a browser sign-in may take before the CLI gives up.
const LOOPBACK_WAIT: Duration = Duration::from_secs(300);

/// The provider's access token for this user, by whichever flow it offers.
pub fn provider_token(api: &mut Api, issuer: Option<&str>) -> anyhow::Result<String> {
    let listed = api.get_json("/v1/auth/oidc")?;
    let providers = listed["providers"].as_array().cloned().unwrap_or_default();
    let provider = match issuer {
        Some(issuer) => providers
            .iter()
            .find(|p| p["issuer"] == issuer)
            .with_context(|| format!("the bridge has no OpenID provider {issuer} (it lists: {})", names(&providers)))?,
        None => match providers.as_slice() {
            [one] => one,
            [] => bail!("the bridge at {} offers no single sign-on; sign in with a password", api.base),
            _ => bail!("the bridge offers several providers; pick one with --issuer ({})", names(&providers)),
        },
    };
    if provider["available"] != true {
        bail!(
            "the provider {} cannot be reached by the bridge now: {}",
            provider["issuer"].as_str().unwrap_or("?"),
            provider["error"].as_str().unwrap_or("unknown error")
        );
    }
    let field = |name: &str| provider[name].as_str().map(str::to_owned);
    let client_id = field("client_id").context("the provider has no client_id")?;
    let scopes = field("scopes").unwrap_or_else(|| "openid".into());
    let token_endpoint = field("token_endpoint").context("the provider has no token endpoint")?;
    // The bridge's client: its --ca-file is trusted for the provider too (a
    // site CA usually signs both).
    let http = api.http.clone();
    match field("device_authorization_endpoint") {
        Some(device) => device_flow(&http, &device, &token_endpoint, &client_id, &scopes),
        None => {
            let authorize = field("authorization_endpoint").context("the provider has no authorization endpoint")?;
            loopback_flow(&http, &authorize, &token_endpoint, &client_id, &scopes)
        }
    }
}

fn names(providers: &[Value]) -> String {
    providers.iter().filter_map(|p| p["issuer"].as_str()).collect::<Vec<_>>().join(", ")
}

/// The provider's JSON answer, or its OAuth error as one line.
fn provider_json(reply: reqwest::blocking::Response, what: &str) -> anyhow::Result<Value> {
    let status = reply.status();
    let body: Value = reply.json().with_context(|| format!("{what}: the provider's answer is not JSON"))?;
    if !status.is_success() && body.get("error").is_none() {
        bail!("{what}: the provider answered {status}");
    }
    Ok(body)
}

fn oauth_error(body: &Value) -> Option<(String, String)> {
    let error = body["error"].as_str()?.to_owned();
    Some((error, body["error_description"].as_str().unwrap_or_default().to_owned()))
}

/// RFC 8628: show the code and the address, poll until approved.
fn device_flow(http: &Client, device: &str, token: &str, client_id: &str, scopes: &str) -> anyhow::Result<String> {
    let reply = http.post(device).form(&[("client_id", client_id), ("scope", scopes)]).send();
    let body = provider_json(reply.with_context(|| format!("cannot reach {device}"))?, "device authorization")?;
    if let Some((error, description)) = oauth_error(&body) {
        bail!("the provider refused the device sign-in: {error} {description}");
    }
    let device_code = api::str_field(&body, "device_code")?;
    let user_code = api::str_field(&body, "user_code")?;
    let uri = api::str_field(&body, "verification_uri")?;
    match body["verification_uri_complete"].as_str() {
        Some(complete) => eprintln!("To sign in, open {complete}\n(or open {uri} and enter the code {user_code})"),
        None => eprintln!("To sign in, open {uri} and enter the code {user_code}"),
    }
    let mut interval = Duration::from_secs(body["interval"].as_u64().unwrap_or(5).max(1));
    let deadline = Instant::now() + Duration::from_secs(body["expires_in"].as_u64().unwrap_or(600));
    loop {
        std::thread::sleep(interval);
        if Instant::now() > deadline {
            bail!("the sign-in code expired before it was approved; run odyssey login --sso again");
        }
        let form = [("grant_type", DEVICE_GRANT), ("device_code", &device_code), ("client_id", client_id)];
        let reply = http.post(token).form(&form).send().with_context(|| format!("cannot reach {token}"))?;
        let body = provider_json(reply, "token request")?;
        match oauth_error(&body) {
            None => return api::str_field(&body, "access_token"),
            Some((error, _)) if error == "authorization_pending" => {}
            Some((error, _)) if error == "slow_down" => interval += Duration::from_secs(5),
            Some((error, _)) if error == "access_denied" => bail!("the sign-in was denied at the provider"),
            Some((error, _)) if error == "expired_token" => {
                bail!("the sign-in code expired before it was approved; run odyssey login --sso again")
            }
            Some((error, description)) => bail!("the provider refused the sign-in: {error} {description}"),
        }
    }
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 8252 + PKCE: a one-shot listener on 127.0.0.1 receives the code.
fn loopback_flow(http: &Client, authorize: &str, token: &str, client_id: &str, scopes: &str) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("listen on 127.0.0.1 for the sign-in's redirect")?;
    let redirect = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let (verifier, state) = (random(), random());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut url = reqwest::Url::parse(authorize).context("the provider's authorization endpoint")?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", scopes)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    eprintln!("To sign in, open this address in a browser on this machine:\n{url}");
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + LOOPBACK_WAIT;
    let code = loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                if let Some(code) = callback(stream, &state)? {
                    break code;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    bail!("no sign-in arrived within {} s; run odyssey login --sso again", LOOPBACK_WAIT.as_secs());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).context("accept the sign-in's redirect"),
        }
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &redirect),
        ("client_id", client_id),
        ("code_verifier", &verifier),
    ];
    let reply = http.post(token).form(&form).send().with_context(|| format!("cannot reach {token}"))?;
    let body = provider_json(reply, "token request")?;
    if let Some((error, description)) = oauth_error(&body) {
        bail!("the provider refused the sign-in: {error} {description}");
    }
    api::str_field(&body, "access_token")
}

/// Reads one redirect request; its code when the state matches (anything
/// else, such as a favicon request, is answered and ignored).
fn callback(mut stream: std::net::TcpStream, state: &str) -> anyhow::Result<Option<String>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    // The request line only, at most 8 KiB.
    BufReader::new(std::io::Read::take(&stream, 8192)).read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1{target}"))?;
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    // Only a redirect with this login's state counts: anything else on the
    // port (another local process, a stale tab) is answered and ignored.
    let ours = pairs.get("state").is_some_and(|got| got == state);
    let (reply, code) = match (pairs.get("code"), pairs.get("error")) {
        (_, Some(error)) if ours => bail!("the provider refused the sign-in: {error}"),
        (Some(code), None) if ours => ("Signed in: you can close this page.", Some(code.clone())),
        _ => ("Not this sign-in's redirect; still waiting.", None),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    Ok(code)
}

/// Trades the provider's token for a bridge login; the token pair and the
/// account name.
pub fn bridge_login(api: &mut Api, provider_token: &str) -> anyhow::Result<(Value, String)> {
    let url = api.url("/v1/auth/oidc/token");
    let body = json!({"token": provider_token});
    let pair: Value = api.send(|c| c.post(&url).json(&body))?.json()?;
    let access = api::str_field(&pair, "access_token")?;
    let me_url = api.url("/v1/auth/me");
    let me: Value = api::checked(api.http.get(&me_url).bearer_auth(access).send()?)?.json()?;
    Ok((pair, api::str_field(&me, "name")?))
}
