//! Failed admin-key attempts, counted per client address and throttled.
//!
//! A token that is not shaped like a JWT can only be the admin key, so a wrong one is a
//! guess at it. Each address may fail [`FAILURES_PER_WINDOW`] times per [`WINDOW`]; past
//! that, every admin-key-shaped token from it is refused with `Throttled` before it is
//! compared (the right key too: a guesser cannot tell it found the key) until the window
//! ends. Every failure is logged with the address, never with the token. Memory is bounded:
//! at most [`MAX_ADDRESSES`] addresses are remembered, the oldest window dropped first.
//!
//! The admin key is an HTTP credential only: WebSocket connections take user tokens and
//! refuse any other shape without comparing it to the key, so they are no oracle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FAILURES_PER_WINDOW: u32 = 10;
pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_ADDRESSES: usize = 10_000;

/// Whether `token` could be the admin key: anything but a JWT's three dot-separated parts.
pub fn is_admin_shaped(token: &str) -> bool {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
    !token.is_empty() && token.split('.').count() != 3
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

#[derive(Debug, Default)]
pub struct AdminGuard {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl AdminGuard {
    /// `Err(retry after)` when `peer` has used up its failures for the window.
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        self.check_at(peer, Instant::now())
    }

    fn check_at(&self, peer: IpAddr, now: Instant) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&peer) {
            Some(f) if f.count >= FAILURES_PER_WINDOW && now < f.since + WINDOW => {
                Err(f.since + WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    /// Records a failed attempt from `peer` (and logs it).
    pub fn failed(&self, peer: IpAddr) {
        self.failed_at(peer, Instant::now());
    }

    fn failed_at(&self, peer: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&peer) {
            failures.retain(|_, f| now < f.since + WINDOW);
            if failures.len() >= MAX_ADDRESSES
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(a, _)| *a)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(peer).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now >= entry.since + WINDOW {
            *entry = Failures {
                count: 0,
                since: now,
            };
        }
        entry.count += 1;
        let count = entry.count;
        drop(failures);
        if count == FAILURES_PER_WINDOW {
            tracing::warn!(%peer, count, window_s = WINDOW.as_secs(), "admin key: too many failed attempts, throttling this address");
        } else {
            tracing::warn!(%peer, count, "admin key: failed attempt");
        }
    }

    /// Addresses remembered (for tests).
    pub fn addresses(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwts_are_not_admin_shaped() {
        assert!(!is_admin_shaped("eyJh.eyJz.sig"));
        assert!(!is_admin_shaped("Bearer eyJh.eyJz.sig"));
        assert!(is_admin_shaped("adm_0123456789"));
        assert!(is_admin_shaped("a.b"));
        assert!(!is_admin_shaped("  "));
    }

    #[test]
    fn an_address_is_throttled_after_its_failures_until_the_window_ends() {
        let guard = AdminGuard::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..FAILURES_PER_WINDOW {
            assert!(guard.check_at(a, start).is_ok());
            guard.failed_at(a, start);
        }
        let wait = guard
            .check_at(a, start + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(1));
        assert!(
            guard.check_at(b, start).is_ok(),
            "another address is not affected"
        );
        assert!(
            guard.check_at(a, start + WINDOW).is_ok(),
            "the window ended"
        );
        guard.failed_at(a, start + WINDOW);
        assert!(
            guard.check_at(a, start + WINDOW).is_ok(),
            "a new window starts at 1"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let guard = AdminGuard::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 50) {
            guard.failed_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(guard.addresses(), MAX_ADDRESSES);
    }
}
