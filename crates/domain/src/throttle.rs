//! Rate limits on the writes that create things (sendMessage, createChat): a token bucket
//! per user (application + user id) and one per application, both checked before the store
//! is called. A refusal is [`DomainError::Throttled`] with the time after which the same
//! request would be admitted.
//!
//! The buckets are [`governor`]'s, chosen over a hand-written one deliberately: it is the
//! maintained standard crate for this (GCRA, i.e. a token bucket kept as one "theoretical
//! arrival time" per key in an `AtomicU64`, so a check is a compare-and-swap with no lock
//! and no background refill task); keyed state sits in a sharded `DashMap` with
//! `retain_recent`/`shrink_to_fit` for eviction; a refusal says exactly when the next
//! request fits (`NotUntil::wait_time_from`), which is the retry hint; and its clock is a
//! type parameter, so the tests below run on a fake clock. Hand-written, the same thing is
//! a mutex over a map plus the refill arithmetic and eviction, all of which governor already
//! has tested under concurrency. Built without `quanta` (a TSC clock) and `jitter`: the std
//! monotonic clock is enough at one check per request.
//!
//! The limits hold per process: the dev server has one, so they are exact there; on AWS each
//! warm Lambda instance keeps its own buckets (docs/limits.md: the effective rate is the
//! per-instance rate times the concurrent instances).
//!
//! Memory: keys are 64-bit hashes (seeded per process), so an entry is a few dozen bytes
//! whatever the ids' lengths. A key is only worth keeping while its bucket is not full
//! again (at most burst / rate seconds after its last send); once the map holds more than
//! [`THROTTLE_KEYS_RETAINED`] keys, every [`THROTTLE_SWEEP_EVERY`]th decision drops the
//! full ones. So the map holds at most that many keys plus those active within the last
//! burst / rate seconds, which the request rate itself bounds.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::error::{DomainError, Result};
use crate::limits::{
    SEND_BURST_PER_APP_DEFAULT, SEND_BURST_PER_USER_DEFAULT, SEND_RATE_PER_APP_DEFAULT,
    SEND_RATE_PER_USER_DEFAULT, THROTTLE_KEYS_RETAINED, THROTTLE_SWEEP_EVERY,
};
use crate::service::UserIdentity;

/// The period a rate is given in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn duration(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
        }
    }
}

/// A rate limit: `count` per period sustained, and up to `burst` at once from a full bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: NonZeroU32,
    per: Per,
    burst: NonZeroU32,
}

impl RateLimit {
    pub fn new(count: NonZeroU32, per: Per, burst: NonZeroU32) -> RateLimit {
        RateLimit { count, per, burst }
    }

    /// `count` per second with room for `burst`; `None` when `count` is 0 (no limit).
    pub fn per_second(count: u32, burst: u32) -> Option<RateLimit> {
        let count = NonZeroU32::new(count)?;
        Some(RateLimit::new(
            count,
            Per::Second,
            NonZeroU32::new(burst).unwrap_or(count),
        ))
    }

    /// A rate as the flags and environment give it, `N/s`, `N/min` or `N/h` (`N` alone is per
    /// second), with an optional burst. `0` is no limit (`None`). Without a burst, it is
    /// two seconds' worth of the rate (at least 1): `10/s` gets 20.
    pub fn parse(rate: &str, burst: Option<u32>) -> Result<Option<RateLimit>, String> {
        let rate = rate.trim();
        let (count, per) = match rate.split_once('/') {
            None => (rate, Per::Second),
            Some((count, unit)) => {
                let per = match unit.trim() {
                    "s" | "sec" | "second" => Per::Second,
                    "m" | "min" | "minute" => Per::Minute,
                    "h" | "hour" => Per::Hour,
                    other => {
                        return Err(format!(
                            "rate {rate:?}: unknown unit {other:?} (use N/s, N/min or N/h)"
                        ));
                    }
                };
                (count.trim(), per)
            }
        };
        let count: u32 = count.parse().map_err(|_| {
            format!("rate {rate:?}: expected a whole number per s, min or h, e.g. 10/s")
        })?;
        let Some(count) = NonZeroU32::new(count) else {
            return Ok(None);
        };
        let burst = match burst {
            Some(burst) => NonZeroU32::new(burst).ok_or_else(|| {
                format!("burst 0 with rate {rate:?}: give at least 1, or rate 0 to turn it off")
            })?,
            None => {
                let two_seconds = 2.0 * f64::from(count.get()) / per.duration().as_secs_f64();
                NonZeroU32::new(two_seconds.ceil().min(f64::from(u32::MAX)) as u32)
                    .unwrap_or(NonZeroU32::MIN)
            }
        };
        Ok(Some(RateLimit::new(count, per, burst)))
    }

    fn quota(&self) -> Quota {
        let interval = self.per.duration() / self.count.get();
        // A positive count per at least a second is at least a nanosecond apart.
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .expect("non-zero period")
            .allow_burst(self.burst)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}, burst {}",
            self.count,
            self.per.unit(),
            self.burst
        )
    }
}

/// Which limits apply; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub per_user: Option<RateLimit>,
    pub per_app: Option<RateLimit>,
}

impl ThrottleConfig {
    /// No limits: what a service gets unless it is given a throttle (unit tests, tools).
    pub const OFF: ThrottleConfig = ThrottleConfig {
        per_user: None,
        per_app: None,
    };

    /// The dev server's defaults (`crate::limits`), also the Lambdas' when their
    /// environment sets nothing.
    pub fn defaults() -> ThrottleConfig {
        ThrottleConfig {
            per_user: RateLimit::per_second(
                SEND_RATE_PER_USER_DEFAULT,
                SEND_BURST_PER_USER_DEFAULT,
            ),
            per_app: RateLimit::per_second(SEND_RATE_PER_APP_DEFAULT, SEND_BURST_PER_APP_DEFAULT),
        }
    }

    /// The limits from settings as flags or environment variables give them: a rate
    /// (`N/s`, `N/min`, `N/h`, `0` = off) and a burst for each scope; an absent rate keeps
    /// the default, an absent burst is two seconds' worth of the rate.
    pub fn from_settings(
        per_user_rate: Option<&str>,
        per_user_burst: Option<u32>,
        per_app_rate: Option<&str>,
        per_app_burst: Option<u32>,
    ) -> Result<ThrottleConfig, String> {
        let defaults = ThrottleConfig::defaults();
        let scope = |rate: Option<&str>, burst: Option<u32>, default: Option<RateLimit>| match (
            rate, burst,
        ) {
            (Some(rate), burst) => RateLimit::parse(rate, burst),
            (None, None) => Ok(default),
            (None, Some(burst)) => Ok(default.map(|d| RateLimit {
                burst: NonZeroU32::new(burst).unwrap_or(d.burst),
                ..d
            })),
        };
        Ok(ThrottleConfig {
            per_user: scope(per_user_rate, per_user_burst, defaults.per_user)
                .map_err(|e| format!("per-user send rate: {e}"))?,
            per_app: scope(per_app_rate, per_app_burst, defaults.per_app)
                .map_err(|e| format!("per-application send rate: {e}"))?,
        })
    }
}

impl fmt::Display for ThrottleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |limit: Option<RateLimit>| limit.map_or("off".to_owned(), |l| l.to_string());
        write!(
            f,
            "per user {}; per application {}",
            show(self.per_user),
            show(self.per_app)
        )
    }
}

type KeyedLimiter<C> =
    RateLimiter<u64, DashMapStateStore<u64>, C, NoOpMiddleware<<C as Clock>::Instant>>;

struct Buckets<C: Clock + Clone> {
    limiter: KeyedLimiter<C>,
}

impl<C: Clock + Clone> Buckets<C> {
    fn new(limit: RateLimit, clock: &C) -> Self {
        Buckets {
            limiter: RateLimiter::dashmap_with_clock(limit.quota(), clock.clone()),
        }
    }

    fn take(&self, key: u64, clock: &C) -> Result<()> {
        self.limiter.check_key(&key).map_err(|refusal| {
            let wait = refusal.wait_time_from(clock.now());
            DomainError::Throttled {
                retry_after_ms: u64::try_from(wait.as_nanos().div_ceil(1_000_000))
                    .unwrap_or(u64::MAX)
                    .max(1),
            }
        })
    }

    fn forget_full_buckets(&self) {
        if self.limiter.len() > THROTTLE_KEYS_RETAINED {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

/// The per-user and per-application buckets of one process. `Throttle::disabled()` admits
/// everything.
pub struct Throttle<C: Clock + Clone = DefaultClock> {
    config: ThrottleConfig,
    per_user: Option<Buckets<C>>,
    per_app: Option<Buckets<C>>,
    clock: C,
    hasher: RandomState,
    decisions: AtomicU64,
}

impl Throttle {
    /// The limits of `config` on the monotonic clock.
    pub fn new(config: ThrottleConfig) -> Throttle {
        Throttle::with_clock(config, DefaultClock::default())
    }

    pub fn disabled() -> Throttle {
        Throttle::new(ThrottleConfig::OFF)
    }
}

impl<C: Clock + Clone> Throttle<C> {
    pub fn with_clock(config: ThrottleConfig, clock: C) -> Throttle<C> {
        Throttle {
            config,
            per_user: config.per_user.map(|l| Buckets::new(l, &clock)),
            per_app: config.per_app.map(|l| Buckets::new(l, &clock)),
            clock,
            hasher: RandomState::new(),
            decisions: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    /// Takes a token from the user's bucket, then from its application's. The user's comes
    /// first so that a user refused for its own rate does not also spend its application's
    /// budget (other users stay unaffected); a request refused by the application's bucket
    /// has spent the user's token, which is at most one per refused request.
    pub fn admit(&self, user: &UserIdentity) -> Result<()> {
        if self.per_user.is_none() && self.per_app.is_none() {
            return Ok(());
        }
        if self
            .decisions
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(THROTTLE_SWEEP_EVERY)
        {
            self.per_user.iter().for_each(Buckets::forget_full_buckets);
            self.per_app.iter().for_each(Buckets::forget_full_buckets);
        }
        if let Some(buckets) = &self.per_user {
            let key = self
                .hasher
                .hash_one((user.app.as_str(), user.user_id.as_str()));
            buckets.take(key, &self.clock)?;
        }
        if let Some(buckets) = &self.per_app {
            let key = self.hasher.hash_one(user.app.as_str());
            buckets.take(key, &self.clock)?;
        }
        Ok(())
    }

    /// Keys held (users, applications): what the memory bound is about.
    pub fn tracked_keys(&self) -> usize {
        let count = |b: &Option<Buckets<C>>| b.as_ref().map_or(0, |b| b.limiter.len());
        count(&self.per_user) + count(&self.per_app)
    }
}

impl<C: Clock + Clone> fmt::Debug for Throttle<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::model::{AppToken, Role, UserId};

    fn user(app: &str, id: &str) -> UserIdentity {
        UserIdentity {
            app: AppToken::parse(app).unwrap(),
            user_id: UserId::parse(id).unwrap(),
            role: Role::Customer,
        }
    }

    fn retry_after(result: Result<()>) -> u64 {
        match result {
            Err(DomainError::Throttled { retry_after_ms }) => retry_after_ms,
            other => panic!("expected Throttled, got {other:?}"),
        }
    }

    fn throttle(
        per_user: Option<RateLimit>,
        per_app: Option<RateLimit>,
    ) -> (Throttle<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = ThrottleConfig { per_user, per_app };
        (Throttle::with_clock(config, clock.clone()), clock)
    }

    #[test]
    fn a_full_bucket_admits_its_burst_then_refuses_with_the_time_to_the_next_token() {
        let (throttle, clock) = throttle(RateLimit::per_second(10, 3), None);
        let alice = user("app_a", "alice");
        for _ in 0..3 {
            throttle.admit(&alice).unwrap();
        }
        // One token every 100 ms: the next is 100 ms away, then 40 ms after 60 ms.
        assert_eq!(retry_after(throttle.admit(&alice)), 100);
        clock.advance(Duration::from_millis(60));
        assert_eq!(retry_after(throttle.admit(&alice)), 40);
        clock.advance(Duration::from_millis(40));
        throttle.admit(&alice).unwrap();
        assert_eq!(retry_after(throttle.admit(&alice)), 100);
        // Idle for a second: the bucket is full again (3, not 10).
        clock.advance(Duration::from_secs(1));
        for _ in 0..3 {
            throttle.admit(&alice).unwrap();
        }
        assert!(throttle.admit(&alice).is_err());
    }

    #[test]
    fn the_sustained_rate_is_the_configured_one() {
        let (throttle, clock) = throttle(RateLimit::per_second(50, 50), None);
        let bob = user("app_a", "bob");
        let mut admitted = 0;
        // 10 s of a client retrying every millisecond: the burst (50) plus 50 per second.
        for _ in 0..10_000 {
            if throttle.admit(&bob).is_ok() {
                admitted += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        // The burst, then one every 20 ms for 10 s (give or take the token due at 10 s).
        assert!((549..=551).contains(&admitted), "{admitted}");
    }

    #[test]
    fn users_have_their_own_buckets_and_share_their_application_s() {
        let (throttle, clock) = throttle(RateLimit::per_second(2, 2), RateLimit::per_second(3, 3));
        let (a1, a2, a3) = (
            user("app_a", "u1"),
            user("app_a", "u2"),
            user("app_a", "u3"),
        );
        let other_app = user("app_b", "u1");
        throttle.admit(&a1).unwrap();
        throttle.admit(&a1).unwrap();
        assert!(throttle.admit(&a1).is_err(), "u1 is over its own 2");
        // u1's refused send did not spend the application's third token.
        throttle.admit(&a2).unwrap();
        let refused = retry_after(throttle.admit(&a3));
        assert!(refused > 0 && refused <= 334, "{refused}");
        // The same user id in another application is someone else.
        throttle.admit(&other_app).unwrap();
        throttle.admit(&other_app).unwrap();
        clock.advance(Duration::from_secs(1));
        throttle.admit(&a3).unwrap();
    }

    #[test]
    fn disabled_admits_everything_and_keeps_nothing() {
        let throttle = Throttle::disabled();
        let carol = user("app_a", "carol");
        for _ in 0..10_000 {
            throttle.admit(&carol).unwrap();
        }
        assert_eq!(throttle.tracked_keys(), 0);
    }

    #[test]
    fn idle_users_are_forgotten_once_many_are_held() {
        let (throttle, clock) = throttle(RateLimit::per_second(1, 1), None);
        let users = THROTTLE_KEYS_RETAINED + 2_000;
        for i in 0..users {
            throttle.admit(&user("app_a", &format!("u{i}"))).unwrap();
        }
        assert_eq!(throttle.tracked_keys(), users);
        // Every bucket is full again after a second; the next sweep drops them all but the
        // users still sending.
        clock.advance(Duration::from_secs(2));
        let active = user("app_a", "active");
        for _ in 0..THROTTLE_SWEEP_EVERY {
            let _ = throttle.admit(&active);
            clock.advance(Duration::from_micros(10));
        }
        assert!(
            throttle.tracked_keys() <= 1,
            "{} keys still held",
            throttle.tracked_keys()
        );
    }

    #[test]
    fn rates_parse_from_flags() {
        let limit = |s: &str, burst| RateLimit::parse(s, burst).unwrap().unwrap().to_string();
        assert_eq!(limit("10/s", None), "10/s, burst 20");
        assert_eq!(limit("10", Some(5)), "10/s, burst 5");
        assert_eq!(limit("600/min", None), "600/min, burst 20");
        assert_eq!(limit("30/min", None), "30/min, burst 1");
        assert_eq!(limit("100/h", Some(10)), "100/h, burst 10");
        assert_eq!(RateLimit::parse("0", None).unwrap(), None);
        assert_eq!(RateLimit::parse("0/s", Some(9)).unwrap(), None);
        for bad in ["", "ten/s", "10/day", "-1/s", "1.5/s"] {
            assert!(RateLimit::parse(bad, None).is_err(), "{bad}");
        }
        assert!(RateLimit::parse("10/s", Some(0)).is_err());
    }

    #[test]
    fn settings_keep_defaults_for_what_they_leave_out() {
        let config = ThrottleConfig::from_settings(None, None, Some("0"), None).unwrap();
        assert_eq!(config.per_user, ThrottleConfig::defaults().per_user);
        assert_eq!(config.per_app, None);
        let config = ThrottleConfig::from_settings(Some("10/s"), Some(20), None, Some(7)).unwrap();
        assert_eq!(config.per_user.unwrap().to_string(), "10/s, burst 20");
        assert_eq!(
            config.per_app.unwrap().to_string(),
            format!("{SEND_RATE_PER_APP_DEFAULT}/s, burst 7")
        );
        let error = ThrottleConfig::from_settings(Some("fast"), None, None, None).unwrap_err();
        assert!(error.starts_with("per-user send rate"), "{error}");
    }
}
