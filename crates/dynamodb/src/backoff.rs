//! Retrying a compare-and-set that lost to a concurrent writer: jittered exponential backoff
//! ("full jitter"), a bounded number of attempts, then a Throttled error for the caller.

use std::time::Duration;

use crate::error::StoreError;

/// How the store retries a numbering transaction (or a write that met a transaction in
/// progress) after losing a race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait is up to this long ...
    pub base_delay: Duration,
    /// ... doubling with each attempt, up to this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// A writer that loses 32 times in a row faces more concurrent writers of one chat
    /// (in different processes: within one process they take turns) than the design is
    /// for, and is told to retry later. Waits apply only to collisions without a winner.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 32,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(250),
        }
    }
}

pub(crate) struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
    what: &'static str,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy, what: &'static str) -> Self {
        Backoff {
            policy,
            attempt: 1,
            what,
        }
    }

    /// Counts an attempt that may start at once, or gives up when the attempts are spent.
    /// For a compare-and-set that lost because another writer succeeded (and returned the
    /// state it left): progress was made, so there is nothing to wait for.
    pub(crate) fn again(&mut self) -> Result<(), StoreError> {
        if self.attempt >= self.policy.max_attempts {
            return Err(StoreError::Contended {
                what: self.what,
                attempts: self.attempt,
            });
        }
        self.attempt += 1;
        Ok(())
    }

    /// Waits before the next attempt, or gives up when the attempts are spent. For
    /// collisions without a winner (two transactions in flight on one item) and for
    /// work left undone (unprocessed keys): waiting is what lets them clear.
    pub(crate) async fn wait(&mut self) -> Result<(), StoreError> {
        if self.attempt >= self.policy.max_attempts {
            return Err(StoreError::Contended {
                what: self.what,
                attempts: self.attempt,
            });
        }
        let ceiling = self
            .policy
            .base_delay
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.policy.max_delay);
        self.attempt += 1;
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let jittered = rand::random_range(0..=micros);
        tokio::time::sleep(Duration::from_micros(jittered)).await;
        Ok(())
    }
}
