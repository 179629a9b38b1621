//! Authentication: argon2id passwords and PAM proofs on a bounded pool,
//! HS256 access tokens, opaque refresh tokens with rotation and reuse
//! detection, and revocation of access tokens and of whole login families.

pub mod jwt;
pub mod oidc;
pub mod pam;
pub mod password;
pub mod pool;
pub mod revocation;
pub mod throttle;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A fresh random token: 32 bytes (256 bits) from the OS RNG, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// How a refresh token is stored: SHA-256, base64url. A leaked database
/// gives no usable refresh token; the tokens are random, so no salt or slow
/// hash is needed (unlike passwords).
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}
