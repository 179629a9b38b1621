//! `SubmitLimiter`: submissions per user in the last minute, a sliding
//! window (`--submit-rate-per-minute`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct SubmitLimiter {
    recent: Arc<Mutex<HashMap<i64, VecDeque<Instant>>>>,
}

impl SubmitLimiter {
    /// Counts a submission, or says how many seconds until one is allowed.
    pub fn check(&self, user_id: i64, per_minute: u32) -> Result<(), u64> {
        self.check_at(user_id, per_minute, Instant::now())
    }

    fn check_at(&self, user_id: i64, per_minute: u32, now: Instant) -> Result<(), u64> {
        let window = Duration::from_secs(60);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let times = recent.entry(user_id).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= window) {
            times.pop_front();
        }
        if times.len() >= per_minute as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((window - now.duration_since(oldest)).as_secs().max(1));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_says_when_it_frees() {
        let limiter = SubmitLimiter::default();
        let start = Instant::now();
        assert!(limiter.check_at(1, 2, start).is_ok());
        assert!(limiter.check_at(1, 2, start + Duration::from_secs(10)).is_ok());
        assert_eq!(limiter.check_at(1, 2, start + Duration::from_secs(20)), Err(40));
        // Another user has a window of their own.
        assert!(limiter.check_at(2, 2, start + Duration::from_secs(20)).is_ok());
        // The first submission leaves the window after a minute.
        assert!(limiter.check_at(1, 2, start + Duration::from_secs(61)).is_ok());
    }
}
