//! Revoked access tokens, checked on every request: by token (logout) and by
//! login family (logout, or a refresh token presented twice, which revokes
//! every access token issued from that login). The sets live in memory
//! (loaded from the store at start-up, written through), so a check costs a
//! hash lookup, not a database round trip. Each entry carries the time after
//! which every token it covers has expired anyway; expired entries are
//! dropped as new ones arrive, so the sets stay as small as the live tokens.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[derive(Default)]
struct Sets {
    /// jti -> the token's expiry (Unix seconds).
    tokens: HashMap<String, f64>,
    /// login family -> the expiry of the last access token it may have issued.
    families: HashMap<String, f64>,
}

#[derive(Clone, Default)]
pub struct Revocations {
    sets: Arc<RwLock<Sets>>,
}

impl Revocations {
    pub fn from_lists(tokens: Vec<(String, f64)>, families: Vec<(String, f64)>) -> Revocations {
        let sets = Sets { tokens: tokens.into_iter().collect(), families: families.into_iter().collect() };
        Revocations { sets: Arc::new(RwLock::new(sets)) }
    }

    fn write(&self, now: f64, change: impl FnOnce(&mut Sets)) {
        let mut sets = self.sets.write().unwrap_or_else(|e| e.into_inner());
        sets.tokens.retain(|_, expires| *expires >= now);
        sets.families.retain(|_, expires| *expires >= now);
        change(&mut sets);
    }

    pub fn revoke_token(&self, jti: String, expires_at: f64, now: f64) {
        self.write(now, |sets| {
            sets.tokens.insert(jti, expires_at);
        });
    }

    pub fn revoke_family(&self, family: String, expires_at: f64, now: f64) {
        self.write(now, |sets| {
            sets.families.insert(family, expires_at);
        });
    }

    /// Whether a token with this jti and family was revoked.
    pub fn is_revoked(&self, jti: &str, family: &str) -> bool {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        sets.tokens.contains_key(jti) || (!family.is_empty() && sets.families.contains_key(family))
    }

    /// Entries held (tokens, families): for tests and metrics.
    pub fn len(&self) -> (usize, usize) {
        let sets = self.sets.read().unwrap_or_else(|e| e.into_inner());
        (sets.tokens.len(), sets.families.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_with_the_tokens() {
        let revocations = Revocations::default();
        revocations.revoke_token("a".into(), 100.0, 50.0);
        revocations.revoke_family("f".into(), 100.0, 50.0);
        assert!(revocations.is_revoked("a", ""));
        assert!(revocations.is_revoked("other", "f"));
        assert!(!revocations.is_revoked("other", ""));
        // Later than both expiries: the next write drops them.
        revocations.revoke_token("b".into(), 300.0, 200.0);
        assert_eq!(revocations.len(), (1, 0));
        assert!(!revocations.is_revoked("a", "f"));
    }
}
