//! The crate's own error, mapped into [`DomainError`] once at the port boundary.

use std::error::Error as StdError;
use std::sync::Arc;

use chat_domain::DomainError;

/// Everything that can go wrong inside the store. Only [`StoreError::Domain`] carries a
/// verdict for the caller (NotFound, Conflict, Forbidden ...); everything else becomes
/// `DomainError::Internal` with this error as its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the port said no; passed through unchanged.
    #[error(transparent)]
    Domain(DomainError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value does not satisfy the model's invariants.
    #[error("corrupt {what} in the database")]
    Corrupt {
        what: &'static str,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The write transaction this command ran in was not committed.
    #[error(transparent)]
    Batch(#[from] BatchFailed),
    #[error("the database schema has version {found}, newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("the writer thread has stopped")]
    WriterGone,
    /// The store is closing, or the read panicked on its reader thread.
    #[error("the read did not complete (the store is closing, or the read panicked)")]
    ReaderGone,
    #[error("a blocking read task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why a whole group-commit batch failed; shared by every command of the batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the write transaction failed at {stage}: {source}")]
pub struct BatchFailed {
    pub stage: &'static str,
    #[source]
    pub source: Arc<dyn StdError + Send + Sync>,
}

impl BatchFailed {
    pub(crate) fn new(
        stage: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        BatchFailed {
            stage,
            source: Arc::from(source.into()),
        }
    }
}

impl StoreError {
    pub(crate) fn corrupt(
        what: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Corrupt {
            what,
            source: source.into(),
        }
    }

    /// The port's error: domain verdicts pass through, the rest is Internal with a source.
    pub(crate) fn into_domain(self, operation: &'static str) -> DomainError {
        match self {
            StoreError::Domain(e) => e,
            other => DomainError::internal(format!("sqlite store: {operation} failed"), other),
        }
    }
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Domain(e)
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        e.into_domain("operation")
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;
