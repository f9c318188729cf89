//! The crate's own error, mapped into [`DomainError`] once, at the port boundary.

use std::error::Error as StdError;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use chat_domain::DomainError;

/// How long a caller is told to wait when DynamoDB throttles or writers keep colliding.
const RETRY_AFTER_MS: u64 = 1_000;

/// Error codes DynamoDB uses for throttling (in errors and in transaction cancellation
/// reasons). The SDK has already retried these with backoff when they reach us.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

pub(crate) fn is_throttling_code(code: Option<&str>) -> bool {
    code.is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// Everything that can go wrong inside the store. Only [`StoreError::Domain`] carries a
/// verdict for the caller; throttling becomes `Throttled`; the rest is `Internal` with this
/// error as its source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule of the port said no; passed through unchanged.
    #[error(transparent)]
    Domain(DomainError),
    /// A request to DynamoDB failed (the SDK error, with its own source chain).
    #[error("DynamoDB {request} failed: {detail}")]
    Request {
        request: &'static str,
        throttled: bool,
        /// The SDK error with its causes, for logs (its own Display is terse).
        detail: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A transaction was cancelled for a reason the store does not handle.
    #[error("DynamoDB transaction cancelled: {reasons}")]
    Cancelled { reasons: String, throttled: bool },
    /// An item does not have the shape this build writes.
    #[error("unexpected DynamoDB item: {what}")]
    Corrupt {
        what: String,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// Concurrent writers kept winning the compare-and-set; the caller may retry.
    #[error("gave up after {attempts} attempts: concurrent writes to {what}")]
    Contended { what: &'static str, attempts: u32 },
    /// The client or the table could not be set up.
    #[error("{0}")]
    Setup(String),
}

impl StoreError {
    pub(crate) fn request<E, R>(request: &'static str, e: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let throttled = is_throttling_code(e.code());
        StoreError::Request {
            request,
            throttled,
            detail: DisplayErrorContext(&e).to_string(),
            source: Box::new(e),
        }
    }

    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source: None,
        }
    }

    pub(crate) fn corrupt_because(
        what: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// The port's error: domain verdicts pass through, throttling and contention become
    /// `Throttled`, the rest `Internal` with this error as its source.
    pub(crate) fn into_domain(self, operation: &'static str) -> DomainError {
        match self {
            StoreError::Domain(e) => e,
            StoreError::Request {
                throttled: true, ..
            }
            | StoreError::Cancelled {
                throttled: true, ..
            }
            | StoreError::Contended { .. } => {
                tracing::warn!(operation, error = %self, "throttled");
                DomainError::Throttled {
                    retry_after_ms: RETRY_AFTER_MS,
                }
            }
            other => DomainError::internal(format!("dynamodb store: {operation} failed"), other),
        }
    }
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Domain(e)
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;
