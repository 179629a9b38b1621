//! Counted slots per key: at most `max` held at once for one key, each freed
//! when its `Slot` is dropped. Output streams per user (`http::jobs`) and
//! password checks in progress per client address (`auth::throttle`) both
//! hold one. Keys with no slot held are forgotten, so memory follows what is
//! in use, not every key ever seen.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

pub struct KeyedSlots<K> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K> Clone for KeyedSlots<K> {
    fn clone(&self) -> Self {
        KeyedSlots { counts: self.counts.clone() }
    }
}

impl<K> Default for KeyedSlots<K> {
    fn default() -> Self {
        KeyedSlots { counts: Default::default() }
    }
}

/// One slot of one key; dropping it frees the slot.
pub struct Slot<K: Hash + Eq> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> KeyedSlots<K> {
    /// A slot for `key`, or `None` when it already holds `max`.
    pub fn try_take(&self, key: K, max: usize) -> Option<Slot<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.clone()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { counts: self.counts.clone(), key })
    }
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_holds_at_most_max_and_dropping_frees() {
        let slots = KeyedSlots::default();
        let first = slots.try_take("a", 2).unwrap();
        let _second = slots.try_take("a", 2).unwrap();
        assert!(slots.try_take("a", 2).is_none());
        assert!(slots.try_take("b", 2).is_some());
        drop(first);
        assert!(slots.try_take("a", 2).is_some());
        assert!(slots.counts.lock().unwrap().get("b").is_none(), "a key with no slot held is forgotten");
    }
}
