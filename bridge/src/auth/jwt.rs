//! HS256 access tokens. The algorithm is pinned: a token whose header says
//! `none`, RS256 or anything else fails validation before its claims are read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::store::users::Role;

pub const ISSUER: &str = "cloud-odyssey";
pub const AUDIENCE: &str = "cloud-odyssey-api";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: String,
    pub name: String,
    pub role: Role,
    /// Unique per token, so one token can be revoked.
    pub jti: String,
    /// The login (refresh-token family) this token was issued from, so
    /// logout and refresh-token reuse revoke it with the family.
    #[serde(default)]
    pub fam: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// The signing key and the validation rules; built once at start-up.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("JWT key file {path} is {len} bytes; at least 32 are needed")]
    TooShort { path: String, len: usize },
    #[error("JWT key file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    Exposed { path: String, mode: u32 },
}

impl Keys {
    pub fn from_secret(secret: &[u8], access_ttl: Duration) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // Clocks of one machine: no leeway beyond a few seconds.
        validation.leeway = 5;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// Reads the key file, creating it (64 random bytes, mode 0600) if absent.
    pub fn load_or_create(path: &Path, access_ttl: Duration) -> Result<Keys, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(mut file) => {
                let mut secret = [0u8; 64];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                file.write_all(&secret).and_then(|()| file.sync_all()).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mode = std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(path).map_err(io)?);
        if mode & 0o077 != 0 {
            return Err(KeyError::Exposed { path: path.display().to_string(), mode: mode & 0o777 });
        }
        let secret = std::fs::read(path).map_err(io)?;
        if secret.len() < 32 {
            return Err(KeyError::TooShort { path: path.display().to_string(), len: secret.len() });
        }
        Ok(Keys::from_secret(&secret, access_ttl))
    }

    /// A signed access token for this user; the claims too (for the jti).
    pub fn issue(&self, user_id: i64, name: &str, role: Role, family: &str) -> (String, Claims) {
        let now = crate::store::now() as u64;
        let claims = Claims {
            sub: user_id.to_string(),
            name: name.to_owned(),
            role,
            jti: crate::auth::random_token(),
            fam: family.to_owned(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.access_ttl.as_secs(),
        };
        // Encoding HS256 with a valid key cannot fail.
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding");
        (token, claims)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims)
    }
}
