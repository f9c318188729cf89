//! The local change feed: the outbox indexer.
//!
//! Every send, edit and delete writes a row to `search_outbox` in the same transaction as
//! the message (so a change is queued if and only if it is committed). The indexer drains
//! the outbox in batches through the one indexer function
//! ([`chat_domain::index_changes`]) into a [`SearchIndex`], and deletes a row only after
//! the index reported it written (or already indexed at that version or a newer one). A
//! crash anywhere in between leaves the rows in place: they are indexed again after the
//! restart, which versions make a no-op. A row that fails stays and is retried with
//! back-off; the others go on.
//!
//! Commit policy: after a wake-up (a write in this process, or the poll interval for
//! writes of another process such as `chat-server reindex`), the indexer waits
//! [`IndexerConfig::gather`] so that a burst becomes one batch, then applies batches of up
//! to [`IndexerConfig::batch`] changes, one index commit each. Index lag is thus about
//! `gather` plus one commit under any load the index keeps up with.

use std::sync::Arc;
use std::time::Duration;

use chat_domain::{DomainError, SearchIndex, index_changes};
use tokio::sync::watch;

use crate::SqliteStore;

#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Changes per index batch (one commit each).
    pub batch: u32,
    /// How long to gather changes after a wake-up before indexing them.
    pub gather: Duration,
    /// How often to look for changes nobody announced (another process's writes).
    pub poll: Duration,
    /// The longest back-off after failures.
    pub max_backoff: Duration,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        IndexerConfig {
            batch: 1_000,
            gather: Duration::from_millis(50),
            poll: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Changes removed from the outbox (written, or found already indexed).
    pub indexed: usize,
    /// Changes that failed and stay queued.
    pub failed: usize,
}

/// Indexes queued changes until the outbox is empty or a batch has failures. Returns
/// `Err` only when the outbox itself cannot be read or updated.
pub async fn drain_outbox(
    store: &SqliteStore,
    index: &dyn SearchIndex,
    batch: u32,
) -> Result<Drained, DomainError> {
    let mut drained = Drained::default();
    loop {
        let records = store.outbox_batch(batch).await?;
        if records.is_empty() {
            return Ok(drained);
        }
        let report = index_changes(index, &records).await;
        if !report.indexed.is_empty() {
            store.outbox_ack(&report.indexed).await?;
        }
        drained.indexed += report.indexed.len();
        if !report.failures.is_empty() {
            drained.failed += report.failures.len();
            for failure in report.failures.iter().take(3) {
                tracing::warn!(
                    sequence = %failure.sequence,
                    error = %failure.error,
                    source = ?std::error::Error::source(&failure.error).map(|s| s.to_string()),
                    "search indexing failed; the change stays queued"
                );
            }
            return Ok(drained);
        }
        if records.len() < batch as usize {
            return Ok(drained);
        }
    }
}

/// Runs the outbox indexer until `shutdown` turns true (or its sender is dropped); then
/// drains what is queued once more and returns.
pub async fn run_indexer(
    store: Arc<SqliteStore>,
    index: Arc<dyn SearchIndex>,
    config: IndexerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let changes = store.changes();
    let mut backoff = Duration::ZERO;
    loop {
        // A dropped sender means stop too.
        let stopping = *shutdown.borrow() || shutdown.has_changed().is_err();
        match drain_outbox(&store, index.as_ref(), config.batch).await {
            Ok(Drained { failed: 0, indexed }) => {
                backoff = Duration::ZERO;
                if indexed > 0 {
                    tracing::debug!(indexed, "indexed queued changes");
                }
            }
            Ok(Drained { failed, .. }) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(100), config.max_backoff);
                tracing::warn!(failed, ?backoff, "search indexing failed; retrying later");
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(100), config.max_backoff);
                tracing::error!(error = %e, ?backoff, "cannot read the search outbox");
            }
        }
        if stopping {
            return;
        }
        if backoff > Duration::ZERO {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        tokio::select! {
            _ = changes.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
            _ = shutdown.changed() => continue,
        }
        tokio::select! {
            _ = tokio::time::sleep(config.gather) => {}
            _ = shutdown.changed() => {}
        }
    }
}
