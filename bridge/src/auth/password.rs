//! argon2id password hashing, on the blocking pool: a hash takes tens of
//! milliseconds of CPU by design and must not stall the async workers.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

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
    #[error("hashing task: {0}")]
    Task(String),
}

fn hasher(cost: PasswordCost) -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(cost.memory_kib, cost.iterations, 1, None).map_err(|e| PasswordError::Argon2(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$m=...`) with a random salt.
pub async fn hash(password: String, cost: PasswordCost) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        hasher(cost)?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Argon2(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Task(e.to_string()))?
}

/// Whether `password` matches `phc`. The parameters come from the stored
/// hash, so raising the cost later keeps old hashes valid.
pub async fn verify(password: String, phc: String) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&phc).map_err(|e| PasswordError::Argon2(e.to_string()))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| PasswordError::Task(e.to_string()))?
}

/// A hash of a password nobody has: login against an unknown name verifies
/// against it, so both paths cost the same and names cannot be probed by time.
pub async fn dummy_hash(cost: PasswordCost) -> Result<String, PasswordError> {
    hash(crate::auth::random_token(), cost).await
}
