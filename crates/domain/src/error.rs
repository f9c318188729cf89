use std::error::Error as StdError;

/// The error codes of the API (`errorType` on AppSync, `extensions.code` on the dev server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadInput,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Throttled,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 7] = [
        ErrorCode::BadInput,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Throttled,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadInput => "BadInput",
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::Throttled => "Throttled",
            ErrorCode::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one error type of the domain. Adapters map their own errors into it, keeping the
/// source; the edge (AppSync JSON, the dev server) maps it to an [`ErrorCode`] once.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    BadInput(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests; retry after {retry_after_ms} ms")]
    Throttled { retry_after_ms: u64 },
    /// Something failed that the caller cannot fix. The message is for logs; the API shows
    /// a generic text so that no internals leak.
    #[error("{context}")]
    Internal {
        context: String,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl DomainError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        DomainError::BadInput(message.into())
    }

    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        DomainError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    pub fn application_not_found(token: impl std::fmt::Display) -> Self {
        DomainError::NotFound(format!("application {token} not found"))
    }

    /// A new chat would be numbered past [`crate::limits::NUMBER_MAX`].
    pub fn chat_numbers_exhausted() -> Self {
        DomainError::Conflict("the application has reached the largest chat number".into())
    }

    /// A new message would be numbered past [`crate::limits::NUMBER_MAX`].
    pub fn message_numbers_exhausted() -> Self {
        DomainError::Conflict("the chat has reached the largest message number".into())
    }

    pub fn chat_not_found(number: impl std::fmt::Display) -> Self {
        DomainError::NotFound(format!("chat {number} not found"))
    }

    pub fn message_not_found(number: impl std::fmt::Display) -> Self {
        DomainError::NotFound(format!("message {number} not found"))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::BadInput(_) => ErrorCode::BadInput,
            DomainError::Unauthorized(_) => ErrorCode::Unauthorized,
            DomainError::Forbidden(_) => ErrorCode::Forbidden,
            DomainError::NotFound(_) => ErrorCode::NotFound,
            DomainError::Conflict(_) => ErrorCode::Conflict,
            DomainError::Throttled { .. } => ErrorCode::Throttled,
            DomainError::Internal { .. } => ErrorCode::Internal,
        }
    }

    /// The message a client may see: everything but `Internal` says what went wrong.
    pub fn public_message(&self) -> String {
        match self {
            DomainError::Internal { .. } => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
