//! The chat domain: model, invariants, errors, ports and use cases.
//!
//! Invariant: this crate does no I/O and knows no wire format. Time comes from a
//! [`Clock`], storage from a [`ChatStore`]; both are injected.

pub mod assignment;
pub mod attachments;
pub mod cursor;
pub mod error;
pub mod keyring;
pub mod limits;
pub mod model;
pub mod presence;
pub mod routing;
pub mod search;
pub mod secrets;
pub mod service;
pub mod store;
pub mod throttle;
pub mod unread;
pub mod webhooks;

pub use assignment::{AssigneeFilter, ChatFilter, ChatFilterArgs, Team};
pub use cursor::PageTokenCodec;
pub use error::{DomainError, ErrorCode, Result};
pub use model::*;
pub use presence::{
    Availability, ChatViewer, Heartbeat, Presence, PresenceChange, PresenceCursor, PresenceStatus,
    PresenceStore, Typing,
};
pub use routing::{AgentLoad, Route, Routed, RoutingArgs, RoutingSettings, RoutingStore};
pub use search::{
    Applied, ChangeKind, ChangeRecord, DocKey, IndexOp, IndexReport, RecordFailure, SearchCursor,
    SearchDocument, SearchHit, SearchIndex, SearchQuery, SearchRequest, chat_key, index_changes,
};
pub use secrets::{AppSecret, ServerKey};
pub use service::{
    AppCredentials, Caller, ChatService, Clock, ManualClock, MessagesArgs, Page, SystemClock,
    UserIdentity,
};
pub use store::*;
pub use throttle::{RateLimit, Throttle, ThrottleConfig};
pub use unread::{CounterChange, ReadMarks, ReadReceipt, UnreadDelta, UnreadSummary};
