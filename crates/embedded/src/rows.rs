//! Rows to domain values. Every stored value is parsed again, so a damaged file shows up
//! as an Internal error instead of an invalid value or a panic.

use chat_domain::{
    AppName, AppToken, Chat, ChatNumber, ChatStatus, ClientMessageId, Message, MessageNumber, Role,
    Subject, Team, Timestamp, UserId,
};
use rusqlite::Row;

use crate::error::{Result, StoreError};

pub(crate) fn count(raw: i64, what: &'static str) -> Result<u32> {
    u32::try_from(raw).map_err(|e| StoreError::corrupt(what, e))
}

pub(crate) fn chat_number(raw: i64) -> Result<ChatNumber> {
    ChatNumber::new(raw).map_err(|e| StoreError::corrupt("chat number", e))
}

pub(crate) fn message_number(raw: i64) -> Result<MessageNumber> {
    MessageNumber::new(raw).map_err(|e| StoreError::corrupt("message number", e))
}

pub(crate) fn user_id(raw: &str) -> Result<UserId> {
    UserId::parse(raw).map_err(|e| StoreError::corrupt("user id", e))
}

fn role(raw: &str) -> Result<Role> {
    Role::parse(raw).map_err(|e| StoreError::corrupt("sender role", e))
}

fn status(raw: &str) -> Result<ChatStatus> {
    ChatStatus::parse(raw).map_err(|e| StoreError::corrupt("chat status", e))
}

fn subject(raw: Option<String>) -> Result<Option<Subject>> {
    match raw {
        None => Ok(None),
        Some(raw) => Subject::parse(&raw).map_err(|e| StoreError::corrupt("chat subject", e)),
    }
}

fn client_message_id(raw: Option<String>) -> Result<Option<ClientMessageId>> {
    raw.map(|raw| ClientMessageId::parse(&raw))
        .transpose()
        .map_err(|e| StoreError::corrupt("client message id", e))
}

pub(crate) fn app_name(raw: &str) -> Result<AppName> {
    AppName::parse(raw).map_err(|e| StoreError::corrupt("application name", e))
}

/// The message columns, in the order [`message`] reads them, for a table aliased `m`.
pub(crate) const MESSAGE_COLUMNS: &str = "m.number, m.body, m.sender_id, m.sender_role, \
     m.client_message_id, m.created_at, m.edited_at, m.deleted";

/// Reads [`MESSAGE_COLUMNS`] starting at column `at`; `None` when the number is NULL (a
/// LEFT JOIN that found no message).
pub(crate) fn message(
    app: &AppToken,
    chat: ChatNumber,
    row: &Row<'_>,
    at: usize,
) -> Result<Option<Message>> {
    let Some(number) = row.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    Ok(Some(Message {
        app: app.clone(),
        chat_number: chat,
        number: message_number(number)?,
        body: row.get(at + 1)?,
        sender_id: user_id(&row.get::<_, String>(at + 2)?)?,
        sender_role: role(&row.get::<_, String>(at + 3)?)?,
        client_message_id: client_message_id(row.get(at + 4)?)?,
        created_at: Timestamp(row.get(at + 5)?),
        edited_at: row.get::<_, Option<i64>>(at + 6)?.map(Timestamp),
        deleted: row.get(at + 7)?,
    }))
}

/// A chat with its last message, for a FROM clause that aliases chats `c`; see
/// [`chat`].
pub(crate) const CHAT_SELECT: &str = "SELECT c.number, c.customer_id, c.subject, c.status, \
     c.messages_count, c.last_message_at, c.last_activity_at, c.created_at, c.updated_at, \
     c.customer_last_read, c.agents_last_read, m.number, m.body, m.sender_id, m.sender_role, m.client_message_id, m.created_at, \
     m.edited_at, m.deleted, c.assignee_id, c.team \
     FROM chats c LEFT JOIN messages m \
     ON m.app_id = c.app_id AND m.chat_number = c.number AND m.number = c.messages_count";

pub(crate) fn chat(app: &AppToken, row: &Row<'_>) -> Result<Chat> {
    let number = chat_number(row.get(0)?)?;
    Ok(Chat {
        app: app.clone(),
        number,
        customer_id: user_id(&row.get::<_, String>(1)?)?,
        subject: subject(row.get(2)?)?,
        status: status(&row.get::<_, String>(3)?)?,
        messages_count: count(row.get(4)?, "messages count")?,
        last_message_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
        last_activity_at: Timestamp(row.get(6)?),
        created_at: Timestamp(row.get(7)?),
        updated_at: Timestamp(row.get(8)?),
        customer_last_read: count(row.get(9)?, "customer watermark")?,
        agents_last_read: count(row.get(10)?, "agents watermark")?,
        last_message: message(app, number, row, 11)?,
        assignee: row
            .get::<_, Option<String>>(19)?
            .map(|raw| user_id(&raw))
            .transpose()?,
        team: match row.get::<_, Option<String>>(20)? {
            None => None,
            Some(raw) => Team::parse(&raw).map_err(|e| StoreError::corrupt("chat team", e))?,
        },
    })
}
