//! Domain values as the JSON objects of `schema.graphql`. Field names here are the
//! schema's; internal ids never appear.

use chat_domain::{
    AppCredentials, Application, Availability, Chat, ChatViewer, Message, Page, Presence,
    ReadReceipt, Role, Typing, UnreadSummary,
};
use serde_json::{Value, json};

pub fn application(app: &Application) -> Value {
    json!({
        "token": app.token.as_str(),
        "name": app.name.as_str(),
        "chatsCount": app.chats_count,
        "createdAt": app.created_at.to_rfc3339(),
        "updatedAt": app.updated_at.to_rfc3339(),
        "previousSecretExpiresAt": app.previous_secret_expires_at.map(|t| t.to_rfc3339()),
        "routing": {
            "enabled": app.routing.enabled,
            "maxOpenChatsPerAgent": app.routing.max_open_chats,
        },
    })
}

/// `ApplicationCredentials`: the one place a secret leaves the service.
pub fn credentials(credentials: &AppCredentials) -> Value {
    json!({
        "application": application(&credentials.application),
        "secret": credentials.secret.expose(),
    })
}

/// A chat as `viewer` sees it: `unreadCount` is what that role has not read; the
/// assignee's id and the team are for agents only (a customer sees `hasAgent`).
pub fn chat(chat: &Chat, viewer: Role) -> Value {
    let agent = viewer == Role::Agent;
    json!({
        "appToken": chat.app.as_str(),
        "number": chat.number.get(),
        "customerId": chat.customer_id.as_str(),
        "subject": chat.subject.as_ref().map(|s| s.as_str()),
        "status": chat.status.as_str(),
        "messagesCount": chat.messages_count,
        "lastMessage": chat.last_message.as_ref().map(message),
        "lastMessageAt": chat.last_message_at.map(|t| t.to_rfc3339()),
        "unreadCount": chat.unread_for(viewer),
        "customerLastRead": chat.customer_last_read,
        "agentsLastRead": chat.agents_last_read,
        "createdAt": chat.created_at.to_rfc3339(),
        "updatedAt": chat.updated_at.to_rfc3339(),
        "hasAgent": chat.assignee.is_some(),
        "assigneeId": chat.assignee.as_ref().filter(|_| agent).map(|a| a.as_str()),
        "team": chat.team.as_ref().filter(|_| agent).map(|t| t.as_str()),
    })
}

pub fn message(message: &Message) -> Value {
    json!({
        "appToken": message.app.as_str(),
        "chatNumber": message.chat_number.get(),
        "number": message.number.get(),
        "body": message.body,
        "senderId": message.sender_id.as_str(),
        "senderRole": message.sender_role.as_str(),
        "clientMessageId": message.client_message_id.as_ref().map(|c| c.as_str()),
        "createdAt": message.created_at.to_rfc3339(),
        "editedAt": message.edited_at.map(|t| t.to_rfc3339()),
        "deleted": message.deleted,
    })
}

pub fn page<T>(page: &Page<T>, item: impl Fn(&T) -> Value) -> Value {
    json!({
        "items": page.items.iter().map(item).collect::<Vec<_>>(),
        "nextToken": page.next_token,
    })
}

pub fn read_receipt(receipt: &ReadReceipt) -> Value {
    json!({
        "appToken": receipt.app.as_str(),
        "chatNumber": receipt.chat_number.get(),
        "readerId": receipt.reader_id.as_str(),
        "readerRole": receipt.reader_role.as_str(),
        "lastReadNumber": receipt.last_read_number,
        "unreadCount": receipt.unread_count,
    })
}

pub fn presence(presence: &Presence) -> Value {
    json!({
        "appToken": presence.app.as_str(),
        "userId": presence.user_id.as_str(),
        "role": presence.role.as_str(),
        "status": presence.status.as_str(),
        "chatNumber": presence.chat.map(|c| c.get()),
        "lastSeenAt": presence.last_seen_at.to_rfc3339(),
        "expiresAt": presence.expires_at.to_rfc3339(),
    })
}

pub fn availability(availability: &Availability) -> Value {
    json!({
        "appToken": availability.app.as_str(),
        "agentsOnline": availability.agents_online,
        "agentsAway": availability.agents_away,
    })
}

pub fn chat_viewer(viewer: &ChatViewer) -> Value {
    json!({
        "appToken": viewer.app.as_str(),
        "chatNumber": viewer.chat.get(),
        "userId": viewer.user_id.as_str(),
        "role": viewer.role.as_str(),
        "viewing": viewer.viewing,
        "at": viewer.at.to_rfc3339(),
    })
}

pub fn typing(typing: &Typing) -> Value {
    json!({
        "appToken": typing.app.as_str(),
        "chatNumber": typing.chat.get(),
        "userId": typing.user_id.as_str(),
        "role": typing.role.as_str(),
        "at": typing.at.to_rfc3339(),
    })
}

/// GraphQL `Int` is 32-bit: a total beyond it (billions of unread messages) shows as the
/// largest `Int` rather than failing the query.
fn graphql_int(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn unread_summary(summary: &UnreadSummary) -> Value {
    json!({
        "appToken": summary.app.as_str(),
        "totalUnread": graphql_int(summary.total_unread),
        "unreadChats": graphql_int(summary.unread_chats),
        "assignedUnread": graphql_int(summary.assigned_unread),
        "assignedUnreadChats": graphql_int(summary.assigned_unread_chats),
    })
}
