//! argon2id password hashing, on the credential pool (`auth::pool`): a hash
//! takes tens of milliseconds of CPU and 19 MiB by design, and must neither
//! stall the async workers nor multiply under a flood.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use super::pool::{Busy, CredentialPool};

/// argon2id cost. The defaults are OWASP's first recommendation
/// (m = 19 MiB, t = 2, p = 1); tests lower them.
#[derive(Debug, Clone, Copy)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        PasswordCost { memory_kib: 19 * 1024, iterations: 2 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("argon2: {0}")]
    Argon2(String),
    /// The credential pool is saturated: 503 with Retry-After.
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// What a stored hash column holds for an account that has no bridge
/// password (it signs in through PAM): no PHC string parses as this.
pub const NO_PASSWORD: &str = "!no-password";

fn hasher(cost: PasswordCost) -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(cost.memory_kib, cost.iterations, 1, None).map_err(|e| PasswordError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$m=...`) with a random salt.
pub async fn hash(pool: &CredentialPool, password: String, cost: PasswordCost) -> Result<String, PasswordError> {
    pool.run(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher(cost)?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Argon2(e.to_string()))
    })
    .await?
}

/// Whether `password` matches `phc`. The parameters come from the stored
/// hash, so raising the cost later keeps old hashes valid.
pub async fn verify(pool: &CredentialPool, password: String, phc: String) -> Result<bool, PasswordError> {
    pool.run(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| PasswordError::Argon2(e.to_string()))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await?
}

/// A hash of a password nobody has: login against an unknown name (or an
/// account without a bridge password) verifies against it, so every path
/// costs the same and names cannot be probed by time.
pub async fn dummy_hash(pool: &CredentialPool, cost: PasswordCost) -> Result<String, PasswordError> {
    hash(pool, crate::auth::random_token(), cost).await
}
