//! Login and registration throttling, per client address and per account
//! name (governor's keyed GCRA limiters): a password guesser gets 429 with
//! Retry-After long before the credential pool fills, and one noisy address
//! cannot lock out the others. Keys not seen for a while are dropped
//! (`retain_recent`), so a flood of addresses or names costs bounded memory.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginThrottle {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_name: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

/// Which limit was hit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by: &'static str,
    pub retry_after: Duration,
}

impl LoginThrottle {
    pub fn new(per_address_per_minute: u32, per_name_per_minute: u32) -> LoginThrottle {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        LoginThrottle {
            by_address: RateLimiter::keyed(quota(per_address_per_minute)),
            by_name: RateLimiter::keyed(quota(per_name_per_minute)),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one attempt from `address` (if known) for `name` (if any).
    pub fn check(&self, address: Option<IpAddr>, name: Option<&str>) -> Result<(), Throttled> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            self.by_address.retain_recent();
            self.by_name.retain_recent();
        }
        let now = DefaultClock::default().now();
        if let Some(address) = address {
            self.by_address
                .check_key(&address)
                .map_err(|n| Throttled { by: "client address", retry_after: n.wait_time_from(now) })?;
        }
        if let Some(name) = name {
            self.by_name
                .check_key(&name.to_owned())
                .map_err(|n| Throttled { by: "account name", retry_after: n.wait_time_from(now) })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_has_its_own_budget() {
        let throttle = LoginThrottle::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(throttle.check(Some(a), Some("alice")).is_ok());
        assert!(throttle.check(Some(a), Some("alice")).is_ok());
        let hit = throttle.check(Some(a), Some("alice")).unwrap_err();
        assert_eq!(hit.by, "account name");
        assert!(hit.retry_after > Duration::ZERO);
        assert_eq!(throttle.check(Some(a), Some("bob")).unwrap_err().by, "client address");
        assert!(throttle.check(Some(b), Some("bob")).is_ok());
    }
}
