//! Bearer tokens from the site's OpenID providers (issue #15).
//!
//! Each `[[oidc]]` issuer of the config file is discovered
//! (`/.well-known/openid-configuration`) and its JWKS fetched and cached.
//! A token is accepted only when: its header's `alg` is one the issuer
//! advertises and this bridge allows (RS256, ES256, EdDSA: never `none`,
//! never HMAC); its `kid` names a signing key of the issuer's JWKS of that
//! algorithm's key type (an unknown `kid` refetches the JWKS at most once
//! per `jwks_min_refetch`); the signature verifies; `iss`, `aud`, `exp`,
//! `nbf`, `iat` hold within `clock_skew`. Header fields that point at keys
//! elsewhere (`jku`, `x5u`, `jwk`, `x5c`) are never read. Nothing here
//! touches the store: `http/oidc.rs` turns a `Verified` into an account.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::users::Role;

/// Algorithms this bridge accepts from any issuer; an issuer narrows them
/// to the ones its discovery document advertises.
const ALLOWED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
/// Largest discovery document or JWKS read (a hostile or broken issuer
/// cannot make the bridge buffer more).
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// How long a discovery or JWKS request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One `[[oidc]]` table of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer URL exactly as in its tokens' `iss` (https; http only on
    /// a loopback address).
    pub issuer: String,
    /// The `aud` the bridge requires in a token.
    pub audience: String,
    /// The public client the dashboard and `odyssey login --sso` sign in
    /// with (authorization code + PKCE, device grant). Unset: bearer
    /// tokens only, no interactive sign-in offered.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Scopes the dashboard and the CLI ask for.
    #[serde(default = "default_scopes")]
    pub scopes: String,
    /// The claim that names the bridge account (created at first sign-in).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that names the Unix account jobs run as. Unset: an admin
    /// maps the account, as for any other.
    #[serde(default)]
    pub unix_user_claim: Option<String>,
    /// The claim that lists the user's groups (an array of strings).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Groups that give each role; the highest role wins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub viewer_groups: Vec<String>,
    /// The role of a member of none of those groups. Unset: such a user is
    /// refused (403).
    #[serde(default)]
    pub default_role: Option<Role>,
    /// PEM file of CAs for the issuer's TLS (else the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds of clock difference allowed on exp, nbf and iat.
    #[serde(default = "default_skew")]
    pub clock_skew: u64,
    /// Fewest seconds between two JWKS fetches triggered by unknown `kid`s.
    #[serde(default = "default_refetch")]
    pub jwks_min_refetch: u64,
    /// Seconds after which the cached keys are fetched again when a token
    /// needs them, so a key the provider withdrew stops working; if the
    /// provider does not answer, the cached keys stay in use.
    #[serde(default = "default_max_age")]
    pub jwks_max_age: u64,
}

fn default_scopes() -> String {
    "openid profile".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_skew() -> u64 {
    60
}
fn default_refetch() -> u64 {
    30
}
fn default_max_age() -> u64 {
    3600
}

impl IssuerConfig {
    /// Checks what can be checked without the network.
    pub fn check(&self) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.issuer).map_err(|e| format!("issuer {:?}: {e}", self.issuer))?;
        let host = url.host_str().unwrap_or("");
        let loopback = host == "localhost"
            || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(format!("issuer {:?} must be https (http only on a loopback address)", self.issuer)),
        }
        if self.audience.is_empty() {
            return Err(format!("issuer {:?}: audience must not be empty", self.issuer));
        }
        if self.jwks_max_age < self.jwks_min_refetch {
            return Err(format!("issuer {:?}: jwks_max_age is below jwks_min_refetch", self.issuer));
        }
        if self.clock_skew > 300 {
            return Err(format!("issuer {:?}: clock_skew is at most 300 seconds", self.issuer));
        }
        Ok(())
    }

    /// The role the groups give, or the default role.
    pub fn role_of(&self, groups: &[String]) -> Option<Role> {
        let member = |list: &[String]| groups.iter().any(|g| list.contains(g));
        if member(&self.admin_groups) {
            Some(Role::Admin)
        } else if member(&self.user_groups) {
            Some(Role::User)
        } else if member(&self.viewer_groups) {
            Some(Role::Viewer)
        } else {
            self.default_role
        }
    }
}

/// A token that passed every check: who it names, as the issuer says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub issuer: String,
    pub subject: String,
    /// The bridge account name (the username claim).
    pub name: String,
    pub role: Role,
    /// The Unix account claim, when configured and present.
    pub unix_user: Option<String>,
    pub groups: Vec<String>,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// Why a token was refused; every message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{0}")]
    Invalid(String),
    /// The token is fine but its holder gets no role here.
    #[error("{0}")]
    NoRole(String),
    /// The issuer's keys are needed and cannot be fetched; a fetch may be
    /// tried again after the given seconds.
    #[error("{0}")]
    Unavailable(String, u64),
}

/// What the discovery document says (the parts the bridge uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub device_authorization_endpoint: Option<String>,
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

struct Cache {
    discovery: Option<Discovery>,
    keys: JwkSet,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried (for the refetch rate limit).
    tried_at: Option<Instant>,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache { discovery: None, keys: JwkSet { keys: Vec::new() }, fetched_at: None, tried_at: None, error: None }
    }
}

/// One configured issuer and its cached discovery and keys.
pub struct Issuer {
    pub config: IssuerConfig,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    /// Held while fetching, so concurrent unknown `kid`s fetch once.
    fetching: tokio::sync::Mutex<()>,
}

/// Every configured issuer.
#[derive(Clone)]
pub struct Oidc {
    issuers: Arc<Vec<Issuer>>,
    /// `bridge_oidc_key_fetches_total{issuer, outcome}`.
    fetches: prometheus::IntCounterVec,
}

impl Oidc {
    pub fn new(configs: &[IssuerConfig], fetches: prometheus::IntCounterVec) -> anyhow::Result<Oidc> {
        let mut issuers = Vec::new();
        for config in configs {
            let mut builder =
                reqwest::Client::builder().timeout(FETCH_TIMEOUT).redirect(reqwest::redirect::Policy::none());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path).map_err(|e| anyhow::anyhow!("oidc ca_file {}: {e}", path.display()))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                    builder = builder.add_root_certificate(cert);
                }
            }
            // Both outcomes exist from the start at 0, so that the first
            // failure is an increase (the OidcKeyFetchFailing alert).
            for outcome in ["ok", "failed"] {
                fetches.with_label_values(&[&config.issuer, outcome]);
            }
            issuers.push(Issuer {
                config: config.clone(),
                http: builder.build()?,
                cache: Default::default(),
                fetching: Default::default(),
            });
        }
        Ok(Oidc { issuers: Arc::new(issuers), fetches })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// The configured issuer whose URL the token's (unverified) `iss` names.
    pub fn issuer_of(&self, token: &str) -> Option<&Issuer> {
        let iss = unverified_issuer(token)?;
        self.issuers.iter().find(|i| i.config.issuer == iss)
    }

    /// Fetches every issuer's discovery and keys once (at start, so the log
    /// says at once whether an issuer is reachable; failures are retried
    /// when a token needs them).
    pub async fn warm_up(&self) {
        for issuer in self.issuers.iter() {
            match self.fetch(issuer).await {
                Ok(()) => tracing::info!(issuer = %issuer.config.issuer, "OIDC issuer discovered, keys cached"),
                Err(e) => tracing::warn!(issuer = %issuer.config.issuer, error = %e, "OIDC issuer not reachable yet"),
            }
        }
    }

    /// The discovery document, fetched if not yet.
    pub async fn discovery(&self, issuer: &Issuer) -> Result<Discovery, OidcError> {
        if let Some(d) = issuer.cache.read().unwrap_or_else(|e| e.into_inner()).discovery.clone() {
            return Ok(d);
        }
        let retry = issuer.config.jwks_min_refetch.max(1);
        self.fetch(issuer).await.map_err(|e| OidcError::Unavailable(e, retry))?;
        let cache = issuer.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.discovery.clone().ok_or_else(|| OidcError::Unavailable("no discovery document".into(), retry))
    }

    /// Verifies a token of `issuer` (see the module comment).
    pub async fn verify(&self, issuer: &Issuer, token: &str) -> Result<Verified, OidcError> {
        let invalid = |why: String| OidcError::Invalid(format!("invalid token from {}: {why}", issuer.config.issuer));
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("unreadable header ({e})")))?;
        let discovery = self.discovery(issuer).await?;
        let allowed = allowed_algorithms(&discovery);
        if !allowed.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted (the issuer signs with {})",
                header.alg,
                allowed.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
        let key = self.key_for(issuer, header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.config.issuer]);
        validation.set_audience(&[&issuer.config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = issuer.config.clock_skew;
        let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| invalid(e.to_string()))?
            .claims;
        let now = crate::store::now() as u64;
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let issued_at = number("iat").ok_or_else(|| invalid("iat is not a number".into()))?;
        if issued_at > now + issuer.config.clock_skew {
            return Err(invalid("issued in the future (iat)".into()));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let subject = text("sub").filter(|s| !s.is_empty()).ok_or_else(|| invalid("sub is not a string".into()))?;
        let config = &issuer.config;
        let name = text(&config.username_claim)
            .ok_or_else(|| invalid(format!("the {} claim (the account name) is missing", config.username_claim)))?;
        let groups = match claims.get(&config.groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let role = config.role_of(&groups).ok_or_else(|| {
            OidcError::NoRole(format!(
                "none of your groups at {} ({}) gives a role here; ask an administrator",
                config.issuer,
                if groups.is_empty() { "none".to_owned() } else { groups.join(", ") }
            ))
        })?;
        Ok(Verified {
            issuer: config.issuer.clone(),
            subject,
            name,
            role,
            unix_user: config.unix_user_claim.as_deref().and_then(text),
            groups,
            issued_at,
            expires_at: number("exp").unwrap_or(now),
        })
    }

    /// The decoding key for `kid`, refetching the JWKS once (rate-limited)
    /// when the kid is unknown.
    async fn key_for(&self, issuer: &Issuer, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, OidcError> {
        let invalid = |why: String| OidcError::Invalid(format!("invalid token from {}: {why}", issuer.config.issuer));
        let find = || -> Option<Result<DecodingKey, String>> {
            let cache = issuer.cache.read().unwrap_or_else(|e| e.into_inner());
            let jwk = match kid {
                Some(kid) => cache.keys.find(kid)?,
                // No kid: only unambiguous when one key fits the algorithm.
                None => {
                    let mut fitting = cache.keys.keys.iter().filter(|k| fits(k, alg).is_ok());
                    match (fitting.next(), fitting.next()) {
                        (Some(one), None) => one,
                        (None, _) => return None,
                        _ => return Some(Err("the token has no kid and several keys fit".into())),
                    }
                }
            };
            Some(fits(jwk, alg).and_then(|()| DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))))
        };
        let (tried, fetched) = {
            let cache = issuer.cache.read().unwrap_or_else(|e| e.into_inner());
            (cache.tried_at.map(|t| t.elapsed()), cache.fetched_at.map(|t| t.elapsed()))
        };
        let may_fetch = tried.is_none_or(|t| t >= Duration::from_secs(issuer.config.jwks_min_refetch));
        let stale = fetched.is_none_or(|f| f >= Duration::from_secs(issuer.config.jwks_max_age));
        if let Some(found) = find() {
            if !(stale && may_fetch) {
                return found.map_err(invalid);
            }
            // Old keys: look again, so a withdrawn key stops working; keep
            // the cached ones if the provider does not answer.
            if let Err(e) = self.fetch(issuer).await {
                tracing::warn!(issuer = %issuer.config.issuer, error = %e, "OIDC keys are old and cannot be refreshed: using the cached ones");
                return found.map_err(invalid);
            }
            return match find() {
                Some(found) => found.map_err(invalid),
                None => Err(invalid(format!(
                    "{} is no longer in the issuer's JWKS (withdrawn)",
                    kid.map_or_else(|| "its key".to_owned(), |k| format!("key {k:?}"))
                ))),
            };
        }
        // Within the refetch limit, the last fetch's failure (if any) still
        // says why the key cannot be had.
        let fetch_error = if may_fetch { self.fetch(issuer).await.err() } else { issuer.last_error() };
        if let Some(found) = find() {
            return found.map_err(invalid);
        }
        let named = kid.map_or_else(|| "no key fits the token (it has no kid)".to_owned(), |k| format!("no key {k:?}"));
        match fetch_error {
            Some(e) => Err(OidcError::Unavailable(
                format!(
                    "{named} in the cached keys of {}, and its JWKS cannot be fetched now: {e}",
                    issuer.config.issuer
                ),
                issuer.config.jwks_min_refetch.max(1),
            )),
            None => Err(invalid(format!("{named} in the issuer's JWKS"))),
        }
    }

    /// Fetches discovery and the JWKS; on success replaces the cache. At
    /// most once per `jwks_min_refetch`, whoever asks (a token, the list of
    /// providers, both at once): within that time it answers what the last
    /// fetch gave, so requests cannot make the bridge hammer a provider.
    async fn fetch(&self, issuer: &Issuer) -> Result<(), String> {
        let _one = issuer.fetching.lock().await;
        {
            let cache = issuer.cache.read().unwrap_or_else(|e| e.into_inner());
            let limit = Duration::from_secs(issuer.config.jwks_min_refetch);
            if cache.tried_at.is_some_and(|t| t.elapsed() < limit) {
                return cache.error.clone().map_or(Ok(()), Err);
            }
        }
        issuer.cache.write().unwrap_or_else(|e| e.into_inner()).tried_at = Some(Instant::now());
        let result = fetch_documents(issuer).await;
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.fetches.with_label_values(&[&issuer.config.issuer, outcome]).inc();
        let mut cache = issuer.cache.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok((discovery, keys)) => {
                cache.discovery = Some(discovery);
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.error = None;
                Ok(())
            }
            Err(e) => {
                cache.error = Some(e.clone());
                Err(e)
            }
        }
    }
}

impl Issuer {
    /// The discovery document, if one was fetched.
    pub fn cached_discovery(&self) -> Option<Discovery> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).discovery.clone()
    }

    /// Why the last fetch failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).error.clone()
    }
}

async fn fetch_documents(issuer: &Issuer) -> Result<(Discovery, JwkSet), String> {
    let base = issuer.config.issuer.trim_end_matches('/');
    let url = format!("{base}/.well-known/openid-configuration");
    let discovery: Discovery = get_json(&issuer.http, &url).await?;
    // OpenID Connect Discovery 1.0, section 4.3: the issuer must match.
    if discovery.issuer != issuer.config.issuer {
        return Err(format!("{url} names issuer {:?}, not {:?}", discovery.issuer, issuer.config.issuer));
    }
    let keys: JwkSet = get_json(&issuer.http, &discovery.jwks_uri).await?;
    Ok((discovery, keys))
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T, String> {
    let mut response = http.get(url).send().await.map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not the expected JSON: {e}"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The issuer's advertised algorithms that this bridge also allows; RS256
/// when the issuer advertises none (OpenID Connect Discovery's default).
fn allowed_algorithms(discovery: &Discovery) -> Vec<Algorithm> {
    let advertised: HashSet<&str> =
        discovery.id_token_signing_alg_values_supported.iter().map(String::as_str).collect();
    if advertised.is_empty() {
        return vec![Algorithm::RS256];
    }
    ALLOWED.into_iter().filter(|a| advertised.contains(format!("{a:?}").as_str())).collect()
}

/// Whether a JWK may verify a token signed with `alg`: a signing key (not
/// one for encryption), of the algorithm's key type and curve, and of that
/// algorithm if the key names one.
fn fits(jwk: &Jwk, alg: Algorithm) -> Result<(), String> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return Err("the key named by kid is an encryption key".into());
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        let matches = matches!(
            (key_alg, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        );
        if !matches {
            return Err(format!("the key named by kid is for {key_alg:?}, the token says {alg:?}"));
        }
    }
    let kind = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == EllipticCurve::Ed25519,
        _ => false,
    };
    if kind {
        Ok(())
    } else {
        Err(format!("the key named by kid is not a key for {alg:?}"))
    }
}

/// The `iss` of a token's payload, unverified: only to pick which issuer's
/// keys to verify it with.
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> IssuerConfig {
        toml::from_str(text).unwrap()
    }

    /// A provider that does not answer is asked at most once per
    /// `jwks_min_refetch`, however many requests need it.
    #[tokio::test]
    async fn an_unreachable_provider_is_asked_once_per_refetch_interval() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let issuer = config(&format!("issuer = 'http://127.0.0.1:{port}'\naudience = 'a'\njwks_min_refetch = 60"));
        let fetches = prometheus::IntCounterVec::new(prometheus::Opts::new("f", "f"), &["issuer", "outcome"]).unwrap();
        let oidc = Oidc::new(std::slice::from_ref(&issuer), fetches.clone()).unwrap();
        // Both outcomes are served at 0 before any fetch.
        let served = prometheus::core::Collector::collect(&fetches);
        assert_eq!(served[0].get_metric().len(), 2, "{served:?}");
        let token = {
            use base64::Engine;
            let part = |v: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
            format!(
                "{}.{}.c2ln",
                part(r#"{"alg":"RS256","kid":"k"}"#.into()),
                part(format!(r#"{{"iss":"{}"}}"#, issuer.issuer))
            )
        };
        for _ in 0..5 {
            let provider = &oidc.issuers()[0];
            assert!(matches!(oidc.discovery(provider).await, Err(OidcError::Unavailable(..))));
            assert!(matches!(oidc.verify(provider, &token).await, Err(OidcError::Unavailable(..))));
        }
        assert_eq!(fetches.with_label_values(&[&issuer.issuer, "failed"]).get(), 1);
        assert_eq!(fetches.with_label_values(&[&issuer.issuer, "ok"]).get(), 0);
    }

    #[test]
    fn issuers_must_be_https_unless_on_loopback() {
        assert!(config("issuer = 'https://idp.example.org/realms/hpc'\naudience = 'x'").check().is_ok());
        assert!(config("issuer = 'http://127.0.0.1:9400'\naudience = 'x'").check().is_ok());
        assert!(config("issuer = 'http://idp.example.org'\naudience = 'x'").check().unwrap_err().contains("https"));
        assert!(config("issuer = 'https://idp'\naudience = ''").check().unwrap_err().contains("audience"));
        assert!(toml::from_str::<IssuerConfig>("issuer = 'https://i'\naudience = 'x'\nalgorithms = ['HS256']").is_err());
    }

    #[test]
    fn the_highest_group_wins_and_no_group_means_the_default_or_nothing() {
        let mut c = config(
            "issuer = 'https://i'\naudience = 'a'\nadmin_groups = ['ops']\nuser_groups = ['hpc']\nviewer_groups = ['guests']",
        );
        let groups = |g: &[&str]| g.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(c.role_of(&groups(&["hpc", "ops"])), Some(Role::Admin));
        assert_eq!(c.role_of(&groups(&["guests"])), Some(Role::Viewer));
        assert_eq!(c.role_of(&groups(&["other"])), None);
        c.default_role = Some(Role::Viewer);
        assert_eq!(c.role_of(&[]), Some(Role::Viewer));
    }

    #[test]
    fn only_advertised_and_allowed_algorithms_pass() {
        let mut d = Discovery {
            issuer: "https://i".into(),
            jwks_uri: "https://i/jwks".into(),
            authorization_endpoint: None,
            token_endpoint: None,
            device_authorization_endpoint: None,
            end_session_endpoint: None,
            id_token_signing_alg_values_supported: vec!["RS256".into(), "HS256".into(), "none".into(), "ES256".into()],
        };
        assert_eq!(allowed_algorithms(&d), vec![Algorithm::RS256, Algorithm::ES256]);
        d.id_token_signing_alg_values_supported.clear();
        assert_eq!(allowed_algorithms(&d), vec![Algorithm::RS256]);
    }

    #[test]
    fn the_unverified_issuer_is_read_from_the_payload_only() {
        use base64::Engine;
        let part = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!("{}.{}.sig", part(r#"{"alg":"RS256"}"#), part(r#"{"iss":"https://i"}"#));
        assert_eq!(unverified_issuer(&token).as_deref(), Some("https://i"));
        assert_eq!(unverified_issuer("garbage"), None);
    }
}
