//! Revoked access tokens, checked on every request. The set lives in memory
//! (loaded from the store at start-up, written through on logout), so a
//! check costs a hash lookup, not a database round trip.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

#[derive(Clone, Default)]
pub struct Revocations {
    jtis: Arc<RwLock<HashSet<String>>>,
}

impl Revocations {
    pub fn from_list(jtis: Vec<String>) -> Revocations {
        Revocations { jtis: Arc::new(RwLock::new(jtis.into_iter().collect())) }
    }

    pub fn insert(&self, jti: String) {
        self.jtis.write().unwrap_or_else(|e| e.into_inner()).insert(jti);
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.jtis.read().unwrap_or_else(|e| e.into_inner()).contains(jti)
    }
}
