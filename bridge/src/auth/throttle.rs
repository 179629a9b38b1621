//! Login and registration throttling, per client address and per account
//! name (governor's keyed GCRA limiters): a password guesser gets 429 with
//! Retry-After long before the credential pool fills. Keys not seen for a
//! while are dropped (`retain_recent`), so a flood of addresses or names
//! costs bounded memory. Besides the rate, each address may have only a few
//! password checks in flight at once (`InFlight`): one address, however
//! fast it may go, can never fill the credential pool's queue and lock the
//! other addresses out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::slots::{KeyedSlots, Slot};

pub struct LoginThrottle {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_name: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
    in_flight: KeyedSlots<IpAddr>,
    max_in_flight: usize,
}

/// One password check in flight for an address; dropping it ends it.
pub type InFlight = Slot<IpAddr>;

/// Which limit was hit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by: &'static str,
    pub retry_after: Duration,
}

impl LoginThrottle {
    pub fn new(per_address_per_minute: u32, per_name_per_minute: u32, max_in_flight: usize) -> LoginThrottle {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        LoginThrottle {
            by_address: RateLimiter::keyed(quota(per_address_per_minute)),
            by_name: RateLimiter::keyed(quota(per_name_per_minute)),
            checks: AtomicU64::new(0),
            in_flight: Default::default(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Holds one of the address's password-check slots, or says it has
    /// them all in use. No address (router tests): no slot needed.
    pub fn enter(&self, address: Option<IpAddr>) -> Result<Option<InFlight>, Throttled> {
        let Some(address) = address else {
            return Ok(None);
        };
        let slot = self
            .in_flight
            .try_take(address, self.max_in_flight)
            .ok_or(Throttled { by: "client address (sign-ins in progress)", retry_after: Duration::from_secs(1) })?;
        Ok(Some(slot))
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
        let throttle = LoginThrottle::new(3, 2, 1);
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

    #[test]
    fn each_address_has_a_few_checks_in_flight_at_most() {
        let throttle = LoginThrottle::new(100, 100, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = throttle.enter(Some(a)).unwrap();
        let _second = throttle.enter(Some(a)).unwrap();
        assert!(throttle.enter(Some(a)).is_err());
        assert!(throttle.enter(Some("10.0.0.2".parse().unwrap())).is_ok());
        drop(first);
        assert!(throttle.enter(Some(a)).is_ok());
    }
}
