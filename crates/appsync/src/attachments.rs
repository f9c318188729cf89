//! Attachments: `createUpload`, `sendMessage` with `attachmentIds`, and the `attachments` of
//! every `Message` a resolver answers or publishes (`Attachment` objects with download URLs
//! signed as they are rendered; see `chat_domain::attachments`).
//!
//! Attachments are rendered into the message objects by the resolvers that return
//! messages, not by a `Message.attachments` field resolver: one store read per answer
//! (a page of messages, a page of chats' last messages) instead of one invocation per
//! message, and published events carry them whole.

use std::sync::Arc;

use chat_domain::attachments::{FileName, FileType, Upload, UploadId, parse_size};
use chat_domain::{
    AppToken, Caller, ChatNumber, ChatService, ClientMessageId, DomainError, MessageBody,
    MessageNumber, Result,
};
use serde_json::{Map, Value, json};

use crate::args::Args;
use crate::publish;
use crate::registry::{Registry, Resolved, chat_of};
use crate::wire;

pub(crate) fn register(registry: &mut Registry) {
    registry.add("Mutation.createUpload", create_upload);
}

/// `Attachment`.
pub fn attachment(upload: &Upload, url: &str) -> Value {
    json!({
        "name": upload.name.as_str(),
        "contentType": upload.file_type.mime(),
        "size": upload.size,
        "url": url,
        "width": upload.image.map(|i| i.width),
        "height": upload.image.map(|i| i.height),
    })
}

/// The message fields that say which message a `Message` object is.
fn message_key(message: &Value) -> Option<(AppToken, ChatNumber, MessageNumber, bool)> {
    let app = AppToken::parse(message.get("appToken")?.as_str()?).ok()?;
    let chat = ChatNumber::new(message.get("chatNumber")?.as_i64()?).ok()?;
    let number = MessageNumber::new(message.get("number")?.as_i64()?).ok()?;
    let deleted = message.get("deleted")?.as_bool()?;
    Some((app, chat, number, deleted))
}

/// Sets `attachments` on each `Message` object (as [`wire::message`] renders them; null
/// entries are skipped), with one store read per application among them.
pub(crate) async fn add_to_messages(
    svc: &ChatService,
    mut messages: Vec<&mut Value>,
) -> Result<()> {
    messages.retain(|m| m.is_object());
    let keys: Vec<_> = messages.iter().map(|m| message_key(m)).collect();
    let mut apps: Vec<&AppToken> = keys.iter().flatten().map(|(app, ..)| app).collect();
    apps.sort();
    apps.dedup();
    let mut found = Vec::new();
    for app in apps {
        let of_app: Vec<_> = keys
            .iter()
            .flatten()
            .filter(|(a, ..)| a == app)
            .map(|(_, chat, number, deleted)| (*chat, *number, *deleted))
            .collect();
        found.extend(svc.attachments_of(app, &of_app).await?);
    }
    for (message, key) in messages.into_iter().zip(keys) {
        let shown: Vec<Value> = match key {
            Some((app, chat, number, _)) => found
                .iter()
                .filter(|(u, _)| {
                    u.app == app
                        && u.chat == chat
                        && u.state == chat_domain::attachments::UploadState::Attached(number)
                })
                .map(|(u, url)| attachment(u, url))
                .collect(),
            None => Vec::new(),
        };
        if let Some(object) = message.as_object_mut() {
            object.insert("attachments".into(), Value::Array(shown));
        }
    }
    Ok(())
}

/// [`add_to_messages`] over a page's `items`.
pub(crate) async fn add_to_page(svc: &ChatService, page: &mut Value) -> Result<()> {
    let items = match page.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        _ => Vec::new(),
    };
    add_to_messages(svc, items).await
}

/// [`add_to_messages`] over the `lastMessage` of chats.
pub(crate) async fn add_to_chats(svc: &ChatService, chats: Vec<&mut Value>) -> Result<()> {
    let last = chats
        .into_iter()
        .filter_map(|c| c.get_mut("lastMessage"))
        .collect();
    add_to_messages(svc, last).await
}

/// [`add_to_chats`] over a page's `items`.
pub(crate) async fn add_to_chat_page(svc: &ChatService, page: &mut Value) -> Result<()> {
    let items = match page.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        _ => Vec::new(),
    };
    add_to_chats(svc, items).await
}

/// A message with its attachments.
pub(crate) async fn message(svc: &ChatService, message: &chat_domain::Message) -> Result<Value> {
    let mut json = wire::message(message);
    add_to_messages(svc, vec![&mut json]).await?;
    Ok(json)
}

async fn create_upload(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let name = FileName::parse(args.str("fileName")?)?;
    let file_type = FileType::parse(args.str("contentType")?)?;
    let size = parse_size(args.int("size")?)?;
    let (upload, target) = svc
        .create_upload(&caller, &app, chat, name, file_type, size)
        .await?;
    Ok(json!({
        "id": upload.id.as_str(),
        "url": target.url,
        "method": target.method,
        "headers": target
            .headers
            .iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect::<Vec<_>>(),
        "expiresAt": target.expires_at.to_rfc3339(),
    }))
}

/// `attachmentIds`: absent, null or a list of upload ids.
fn upload_ids(args: &Args<'_>) -> Result<Vec<UploadId>> {
    match args.0.get("attachmentIds") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(id) => UploadId::parse(id),
                _ => Err(DomainError::bad_input("attachmentIds must be strings")),
            })
            .collect(),
        Some(_) => Err(DomainError::bad_input("attachmentIds must be a list")),
    }
}

/// `Mutation.sendMessage`: a body, attachments, or both.
pub(crate) async fn send_message(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    let ids = upload_ids(&args)?;
    // An attachments-only message has no body; a blank one is refused as before.
    let body = match args.opt_str("body")? {
        Some(raw) => Some(MessageBody::parse(raw)?),
        None if ids.is_empty() => return Err(DomainError::bad_input("body is required")),
        None => None,
    };
    let client_id = args
        .opt_str("clientMessageId")?
        .map(ClientMessageId::parse)
        .transpose()?;
    let without_files = ids.is_empty();
    let sent = svc
        .send_message_with_attachments(&caller, &app, chat, body, client_id, ids)
        .await?;
    // A new message sent without files has none: no read for them.
    let json = if without_files && sent.created {
        let mut json = wire::message(&sent.message);
        json["attachments"] = json!([]);
        json
    } else {
        message(&svc, &sent.message).await?
    };
    Ok(Resolved::published(json, publish::MESSAGE_SENT))
}
