//! The storage port. `embedded` (SQLite) and `dynamodb` implement it; a conformance suite
//! holds both to the same behaviour.
//!
//! Contract for every implementation:
//! - numbers are allocated atomically with the insert: dense (1, 2, 3 ...) and unique per
//!   parent under any concurrency; a failed write consumes no number and moves no count;
//! - a write is durable when the call returns `Ok`;
//! - times never go backwards along the numbers: a message's `created_at` is at least its
//!   predecessor's (a send whose clock reading is older takes the chat's last activity);
//! - a chat-scoped call whose [`ChatScope`] does not see the chat (absent, or a CUSTOMER
//!   scope for another customer's chat) behaves exactly as if the chat did not exist;
//! - read watermarks and unread counters follow [`crate::unread`]: a send moves its
//!   sender's watermark, and every write that moves a chat's [`crate::ReadMarks`] moves the
//!   application's agent counter and the customer's counter by
//!   [`crate::CounterChange::between`] in the same atomic write; a retried send that returns
//!   an existing message moves nothing;
//! - an assigned chat's agents' delta also moves its assignee's counter in that write, and
//!   an assignment moves the chat's agents' unread from the old assignee's counter to the
//!   new one's in the write that changes the assignee (see [`crate::assignment`]).

use async_trait::async_trait;

use crate::assignment::{ChatFilter, Team};
use crate::error::Result;
use crate::model::*;
use crate::service::UserIdentity;
use crate::unread::{ReadReceipt, UnreadSummary};

/// Which chat, and who is looking. `customer: Some(id)` restricts to that customer's chats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatScope {
    pub app: AppToken,
    pub chat: ChatNumber,
    pub customer: Option<UserId>,
}

#[derive(Debug, Clone)]
pub struct NewApplication {
    pub token: AppToken,
    pub name: AppName,
    pub now: Timestamp,
}

/// What `updateApplication` changes: `None` parts stay.
#[derive(Debug, Clone)]
pub struct ApplicationUpdate {
    pub name: Option<AppName>,
    pub routing: Option<crate::routing::RoutingSettings>,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewChat {
    pub app: AppToken,
    pub customer_id: UserId,
    pub subject: Option<Subject>,
    pub now: Timestamp,
}

impl NewChat {
    /// The chat this opens once the store has allocated its number: open, empty, its
    /// activity the creation time.
    pub fn opened_as(&self, number: ChatNumber) -> Chat {
        Chat {
            app: self.app.clone(),
            number,
            customer_id: self.customer_id.clone(),
            subject: self.subject.clone(),
            status: ChatStatus::Open,
            messages_count: 0,
            customer_last_read: 0,
            agents_last_read: 0,
            last_message: None,
            last_message_at: None,
            last_activity_at: self.now,
            created_at: self.now,
            updated_at: self.now,
            assignee: None,
            team: None,
        }
    }
}

/// `None` leaves a field as it is; `subject: Some(None)` clears the subject.
#[derive(Debug, Clone)]
pub struct ChatUpdate {
    pub subject: Option<Option<Subject>>,
    pub status: Option<ChatStatus>,
    pub now: Timestamp,
}

/// `assignChat`: the chat's new assignee (`None`: unassigned) and team (`None`: as it is;
/// `Some(None)`: none). The scope is an agent's.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub scope: ChatScope,
    pub assignee: Option<UserId>,
    pub team: Option<Option<Team>>,
    pub now: Timestamp,
}

/// Where a page of chats starts: after this (last activity, number) in the inbox order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatCursor {
    pub last_activity_at: Timestamp,
    pub number: ChatNumber,
}

/// Chats of one application, most recent activity first (ties: higher number first).
#[derive(Debug, Clone)]
pub struct ChatQuery {
    pub app: AppToken,
    pub customer: Option<UserId>,
    pub status: Option<ChatStatus>,
    /// Assignee or team (agents' queries only; the default keeps every chat).
    pub filter: ChatFilter,
    pub after: Option<ChatCursor>,
    /// How many to return at most (the service asks for one more than a page to know
    /// whether another page exists).
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub scope: ChatScope,
    pub sender_id: UserId,
    pub sender_role: Role,
    pub body: MessageBody,
    pub client_message_id: Option<ClientMessageId>,
    pub now: Timestamp,
}

impl NewMessage {
    /// The message this sends once the store has allocated its number and settled its
    /// time (never before the chat's last activity: see the contract above).
    pub fn sent_as(&self, number: MessageNumber, created_at: Timestamp) -> Message {
        Message {
            app: self.scope.app.clone(),
            chat_number: self.scope.chat,
            number,
            body: self.body.as_str().to_owned(),
            sender_id: self.sender_id.clone(),
            sender_role: self.sender_role,
            client_message_id: self.client_message_id.clone(),
            created_at,
            edited_at: None,
            deleted: false,
        }
    }
}

/// The result of a send: `created: false` when a message with the same clientMessageId
/// already existed in the chat and is returned instead.
#[derive(Debug, Clone)]
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// Messages of one chat by number. `after`/`before` are exclusive bounds.
/// `newest_first: false` returns the lowest numbers of the range ascending;
/// `newest_first: true` returns the highest numbers of the range descending.
#[derive(Debug, Clone)]
pub struct MessageRange {
    pub after: Option<u32>,
    pub before: Option<u32>,
    pub newest_first: bool,
    pub limit: u32,
}

/// `markChatRead`: the reader's watermark (an AGENT's: its own and the team's) moves
/// forward to `up_to`.
#[derive(Debug, Clone)]
pub struct MarkRead {
    pub scope: ChatScope,
    pub reader: UserIdentity,
    /// `None`: the chat's last message.
    pub up_to: Option<MessageNumber>,
}

/// How many chats [`ChatStore::mark_chats_read`]'s default marks at a time.
const MARK_CONCURRENCY: usize = 8;

/// Who may change the message: `Some(user)` restricts the change to that sender
/// (anyone else gets Forbidden); `None` allows any caller who sees the chat.
#[derive(Debug, Clone)]
pub struct MessageChange {
    pub scope: ChatScope,
    pub number: MessageNumber,
    pub only_sender: Option<UserId>,
    pub now: Timestamp,
}

#[async_trait]
pub trait ChatStore: crate::routing::RoutingStore + Send + Sync + 'static {
    /// Conflict if the token exists (tokens are random, so only on a collision).
    async fn create_application(&self, new: NewApplication) -> Result<Application>;
    /// NotFound if there is no such application.
    /// Changes what the update gives (at least one of its parts). NotFound if there is no
    /// such application.
    async fn update_application(
        &self,
        token: &AppToken,
        update: ApplicationUpdate,
    ) -> Result<Application>;
    async fn application(&self, token: &AppToken) -> Result<Option<Application>>;
    /// Makes the next secret generation current; the one it replaces keeps verifying until
    /// `previous_expires_at`, and any older one stops at once. Atomic: two concurrent
    /// rotations give two generations. NotFound if there is no such application.
    async fn rotate_application_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Application>;

    /// Allocates the next chat number of the application. NotFound without the application.
    async fn create_chat(&self, new: NewChat) -> Result<Chat>;
    async fn update_chat(&self, scope: &ChatScope, update: ChatUpdate) -> Result<Chat>;
    async fn chat(&self, scope: &ChatScope) -> Result<Option<Chat>>;
    async fn chats(&self, query: &ChatQuery) -> Result<Vec<Chat>>;
    /// Sets the chat's assignee (and team when given) and moves the assignee counters (see
    /// the contract above) in one atomic write; `updatedAt` moves, the inbox order not.
    /// An assignment that changes nothing writes nothing and returns the chat. NotFound
    /// when the scope does not see the chat.
    async fn assign_chat(&self, assignment: Assignment) -> Result<Chat>;

    /// Allocates the next message number of the chat, or returns the message already sent
    /// with the same clientMessageId.
    async fn send_message(&self, new: NewMessage) -> Result<Sent>;
    async fn message(&self, scope: &ChatScope, number: MessageNumber) -> Result<Option<Message>>;
    /// NotFound when the scope does not see the chat.
    async fn messages(&self, scope: &ChatScope, range: &MessageRange) -> Result<Vec<Message>>;
    /// Replaces the body and sets editedAt. Conflict on a deleted message.
    async fn edit_message(&self, change: MessageChange, body: MessageBody) -> Result<Message>;
    /// Soft delete: the number stays, the body is removed. Deleting twice returns the
    /// deleted message again.
    async fn delete_message(&self, change: MessageChange) -> Result<Message>;

    /// Moves the reader's watermark forward (never back) and the counters with it, in one
    /// atomic write whatever the chat's size. BadInput when `up_to` is beyond the chat's
    /// last message; NotFound when the scope does not see the chat. The receipt is the
    /// state after the call (an older `up_to` changes nothing and returns it as it is).
    async fn mark_chat_read(&self, mark: MarkRead) -> Result<ReadReceipt>;

    /// The reader's counters (an AGENT: the application's team counter; a CUSTOMER: its
    /// own), in one read: never a scan or a per-chat query.
    async fn unread_summary(&self, reader: &UserIdentity) -> Result<UnreadSummary>;

    /// The chats with something unread for the reader (a CUSTOMER: among its own chats),
    /// by number ascending, after `after`, at most `limit`.
    async fn unread_chats(
        &self,
        reader: &UserIdentity,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> Result<Vec<ChatNumber>>;

    /// Marks these chats read up to their last messages for the reader. The default marks
    /// them one [`ChatStore::mark_chat_read`] each, a few at a time; stores override it with
    /// one write.
    async fn mark_chats_read(&self, reader: &UserIdentity, chats: &[ChatNumber]) -> Result<()> {
        for batch in chats.chunks(MARK_CONCURRENCY) {
            futures::future::try_join_all(batch.iter().map(|chat| {
                self.mark_chat_read(MarkRead {
                    scope: reader.scope(*chat),
                    reader: reader.clone(),
                    up_to: None,
                })
            }))
            .await?;
        }
        Ok(())
    }

    /// The messages of these numbers that exist, in any order (search results are looked
    /// up here, so a hit always shows the message as it is now). NotFound when the scope
    /// does not see the chat. The default asks [`ChatStore::message`] once per number;
    /// stores override it with one round trip.
    async fn messages_by_number(
        &self,
        scope: &ChatScope,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        if self.chat(scope).await?.is_none() {
            return Err(crate::error::DomainError::chat_not_found(scope.chat));
        }
        let mut found = Vec::with_capacity(numbers.len());
        for number in numbers {
            if let Some(message) = self.message(scope, *number).await? {
                found.push(message);
            }
        }
        Ok(found)
    }
}
