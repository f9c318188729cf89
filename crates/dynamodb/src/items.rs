//! Items to domain values and back. Every stored value is parsed again, so an item of an
//! unexpected shape is an Internal error, never a panic or an invalid value.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use chat_domain::attachments::{AttachedFile, FileName, FileType, ImageSize};
use chat_domain::{
    AgentLoad, AppName, AppToken, Application, Chat, ChatNumber, ChatStatus, ClientMessageId,
    Message, MessageNumber, NewApplication, Presence, PresenceStatus, Role, RoutingSettings,
    Subject, Team, Timestamp, UserId,
};

use crate::error::{Result, StoreError};
use crate::table::{self, attr, item_type};

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A string attribute (`S`).
pub(crate) fn string_attr(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute (`N`).
pub(crate) fn number_attr(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([
        (attr::PK.to_owned(), string_attr(pk)),
        (attr::SK.to_owned(), string_attr(sk)),
    ])
}

// ---- reading attributes -----------------------------------------------------------------

fn missing(name: &str) -> StoreError {
    StoreError::corrupt(format!("attribute {name} is missing or not of its type"))
}

pub(crate) fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str> {
    optional_string(item, name)?.ok_or_else(|| missing(name))
}

pub(crate) fn optional_string<'a>(item: &'a Item, name: &str) -> Result<Option<&'a str>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(missing(name)),
    }
}

pub(crate) fn number<T: FromStr>(item: &Item, name: &str) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    optional_number(item, name)?.ok_or_else(|| missing(name))
}

pub(crate) fn optional_number<T: FromStr>(item: &Item, name: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(raw)) => raw
            .parse()
            .map(Some)
            .map_err(|e| StoreError::corrupt_because(format!("attribute {name} = {raw}"), e)),
        Some(_) => Err(missing(name)),
    }
}

fn boolean(item: &Item, name: &str) -> Result<bool> {
    optional_bool(item, name)?.ok_or_else(|| missing(name))
}

fn optional_bool(item: &Item, name: &str) -> Result<Option<bool>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(missing(name)),
    }
}

fn expect_type(item: &Item, expected: &str) -> Result<()> {
    let found = string(item, attr::TYPE)?;
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::corrupt(format!(
            "expected a {expected} item, found {found}"
        )))
    }
}

pub(crate) fn is_type(item: &Item, expected: &str) -> bool {
    matches!(item.get(attr::TYPE), Some(AttributeValue::S(t)) if t == expected)
}

fn parsed<T>(what: &str, value: chat_domain::Result<T>) -> Result<T> {
    value.map_err(|e| StoreError::corrupt_because(what.to_owned(), e))
}

fn timestamp(item: &Item, name: &str) -> Result<Timestamp> {
    number(item, name).map(Timestamp)
}

fn optional_timestamp(item: &Item, name: &str) -> Result<Option<Timestamp>> {
    Ok(optional_number(item, name)?.map(Timestamp))
}

fn count(item: &Item, name: &str) -> Result<u32> {
    number(item, name)
}

// ---- applications -----------------------------------------------------------------------

pub(crate) fn application_item(new: &NewApplication) -> Item {
    let mut item = key(table::application_pk(&new.token), table::APPLICATION_SK);
    item.extend([
        (attr::TYPE.to_owned(), string_attr(item_type::APPLICATION)),
        (attr::TOKEN.to_owned(), string_attr(new.token.as_str())),
        (attr::NAME.to_owned(), string_attr(new.name.as_str())),
        (attr::SECRET_GENERATION.to_owned(), number_attr(1)),
        (attr::CHATS_COUNT.to_owned(), number_attr(0)),
        (attr::CREATED_AT.to_owned(), number_attr(new.now.0)),
        (attr::UPDATED_AT.to_owned(), number_attr(new.now.0)),
    ]);
    item
}

pub(crate) fn application(item: &Item) -> Result<Application> {
    expect_type(item, item_type::APPLICATION)?;
    Ok(Application {
        token: parsed(
            "application token",
            AppToken::parse(string(item, attr::TOKEN)?),
        )?,
        name: parsed(
            "application name",
            AppName::parse(string(item, attr::NAME)?),
        )?,
        secret_generation: count(item, attr::SECRET_GENERATION)?,
        previous_secret_expires_at: optional_timestamp(item, attr::PREVIOUS_SECRET_EXPIRES_AT)?,
        chats_count: count(item, attr::CHATS_COUNT)?,
        routing: RoutingSettings {
            enabled: optional_bool(item, attr::ROUTING_ENABLED)?.unwrap_or(false),
            max_open_chats: optional_number(item, attr::ROUTING_CAP)?
                .unwrap_or(chat_domain::routing::ROUTING_CAP_DEFAULT),
        },
        created_at: timestamp(item, attr::CREATED_AT)?,
        updated_at: timestamp(item, attr::UPDATED_AT)?,
    })
}

/// An agent's routing load item (absent attributes: nothing counted yet).
pub(crate) fn agent_load(agent: &UserId, item: &Item) -> Result<AgentLoad> {
    Ok(AgentLoad {
        agent: agent.clone(),
        open_chats: optional_number::<i64>(item, attr::OPEN_CHATS)?
            .unwrap_or(0)
            .try_into()
            .map_err(|_| StoreError::corrupt(format!("{} below zero", attr::OPEN_CHATS)))?,
        routed_at: optional_timestamp(item, attr::ROUTED_AT)?,
    })
}

// ---- chats ----------------------------------------------------------------------------------

/// The activity sort key, or Internal for a time before 1970 (not a clock reading).
pub(crate) fn activity_sk(at: Timestamp, chat: ChatNumber) -> Result<String> {
    table::activity_sk(at, chat)
        .ok_or_else(|| StoreError::corrupt(format!("time {} is before 1970", at.0)))
}

pub(crate) fn chat_item(chat: &Chat) -> Result<Item> {
    let activity = activity_sk(chat.last_activity_at, chat.number)?;
    let mut item = key(table::chat_pk(&chat.app, chat.number), table::CHAT_SK);
    item.extend([
        (attr::TYPE.to_owned(), string_attr(item_type::CHAT)),
        (attr::APP.to_owned(), string_attr(chat.app.as_str())),
        (attr::NUMBER.to_owned(), number_attr(chat.number)),
        (
            attr::CUSTOMER_ID.to_owned(),
            string_attr(chat.customer_id.as_str()),
        ),
        (attr::STATUS.to_owned(), string_attr(chat.status.as_str())),
        (
            attr::MESSAGES_COUNT.to_owned(),
            number_attr(chat.messages_count),
        ),
        (
            attr::CUSTOMER_LAST_READ.to_owned(),
            number_attr(chat.customer_last_read),
        ),
        (
            attr::AGENTS_LAST_READ.to_owned(),
            number_attr(chat.agents_last_read),
        ),
        (
            attr::LAST_ACTIVITY_AT.to_owned(),
            number_attr(chat.last_activity_at.0),
        ),
        (attr::CREATED_AT.to_owned(), number_attr(chat.created_at.0)),
        (attr::UPDATED_AT.to_owned(), number_attr(chat.updated_at.0)),
        (
            attr::GSI1PK.to_owned(),
            string_attr(table::inbox_pk(
                &chat.app,
                chat.status,
                table::inbox_shard(chat.number),
            )),
        ),
        (attr::GSI1SK.to_owned(), string_attr(activity.clone())),
        (
            attr::GSI2PK.to_owned(),
            string_attr(table::customer_pk(
                &chat.app,
                chat.status,
                &chat.customer_id,
            )),
        ),
        (attr::GSI2SK.to_owned(), string_attr(activity.clone())),
        (
            attr::GSI4PK.to_owned(),
            string_attr(table::assignee_pk(
                &chat.app,
                chat.status,
                chat.assignee.as_ref(),
            )),
        ),
        (attr::GSI4SK.to_owned(), string_attr(activity.clone())),
    ]);
    if let Some(assignee) = &chat.assignee {
        item.insert(attr::ASSIGNEE_ID.to_owned(), string_attr(assignee.as_str()));
    }
    if let Some(team) = &chat.team {
        item.insert(attr::TEAM.to_owned(), string_attr(team.as_str()));
        item.insert(
            attr::GSI5PK.to_owned(),
            string_attr(table::team_pk(&chat.app, chat.status, team)),
        );
        item.insert(attr::GSI5SK.to_owned(), string_attr(activity));
    }
    if let Some(subject) = &chat.subject {
        item.insert(attr::SUBJECT.to_owned(), string_attr(subject.as_str()));
    }
    if let Some(at) = chat.last_message_at {
        item.insert(attr::LAST_MESSAGE_AT.to_owned(), number_attr(at.0));
    }
    if chat.unread_for(Role::Agent) > 0 {
        let (pk, sk) = unread_index_keys(chat);
        item.insert(attr::GSI3PK.to_owned(), string_attr(pk));
        item.insert(attr::GSI3SK.to_owned(), string_attr(sk));
    }
    Ok(item)
}

/// The chat's `unread` index keys (`GSI3PK`, `GSI3SK`), which it carries while the agents
/// have something unread in it.
pub(crate) fn unread_index_keys(chat: &Chat) -> (String, String) {
    (
        table::team_unread_pk(&chat.app, table::unread_shard(chat.number)),
        table::unread_sk(chat.number),
    )
}

/// The chat number of an `unread` index entry (keys only).
pub(crate) fn unread_index_chat(item: &Item) -> Result<ChatNumber> {
    let raw = string(item, attr::GSI3SK)?;
    let number: i64 = raw
        .parse()
        .map_err(|e| StoreError::corrupt_because(format!("unread index key {raw}"), e))?;
    parsed("unread index chat number", ChatNumber::new(number))
}

/// A chat item, without its last message (`last_message: None`; see [`with_last_message`]).
pub(crate) fn chat(item: &Item) -> Result<Chat> {
    expect_type(item, item_type::CHAT)?;
    let subject = match optional_string(item, attr::SUBJECT)? {
        None => None,
        Some(raw) => parsed("chat subject", Subject::parse(raw))?,
    };
    Ok(Chat {
        app: parsed("chat app", AppToken::parse(string(item, attr::APP)?))?,
        number: parsed("chat number", ChatNumber::new(number(item, attr::NUMBER)?))?,
        customer_id: parsed(
            "customer id",
            UserId::parse(string(item, attr::CUSTOMER_ID)?),
        )?,
        subject,
        status: parsed(
            "chat status",
            ChatStatus::parse(string(item, attr::STATUS)?),
        )?,
        messages_count: count(item, attr::MESSAGES_COUNT)?,
        // Absent on chats written before watermarks existed: nothing read.
        customer_last_read: optional_number(item, attr::CUSTOMER_LAST_READ)?.unwrap_or(0),
        agents_last_read: optional_number(item, attr::AGENTS_LAST_READ)?.unwrap_or(0),
        last_message: None,
        last_message_at: optional_timestamp(item, attr::LAST_MESSAGE_AT)?,
        last_activity_at: timestamp(item, attr::LAST_ACTIVITY_AT)?,
        created_at: timestamp(item, attr::CREATED_AT)?,
        updated_at: timestamp(item, attr::UPDATED_AT)?,
        assignee: optional_string(item, attr::ASSIGNEE_ID)?
            .map(|raw| parsed("assignee id", UserId::parse(raw)))
            .transpose()?,
        team: match optional_string(item, attr::TEAM)? {
            None => None,
            Some(raw) => parsed("chat team", Team::parse(raw))?,
        },
    })
}

/// Attaches the last message, checking that it is the one the count names.
pub(crate) fn with_last_message(mut chat: Chat, last: Option<Message>) -> Result<Chat> {
    let expected = chat.messages_count;
    let found = last.as_ref().map_or(0, |m| m.number.get());
    if found != expected {
        return Err(StoreError::corrupt(format!(
            "chat {} of {} counts {expected} messages but its last message is {found}",
            chat.number, chat.app
        )));
    }
    chat.last_message = last;
    Ok(chat)
}

// ---- messages -------------------------------------------------------------------------------

/// A message item. `customer` is the chat's customer, copied onto every message so that a
/// customer scope is checked on the message alone (a chat's customer never changes);
/// `version` is the message's version (1 when sent, +1 by every edit and delete).
pub(crate) fn message_item(message: &Message, customer: &UserId, version: u64) -> Item {
    let mut item = key(
        table::chat_pk(&message.app, message.chat_number),
        table::message_number_sk(message.number),
    );
    item.extend([
        (attr::TYPE.to_owned(), string_attr(item_type::MESSAGE)),
        (attr::APP.to_owned(), string_attr(message.app.as_str())),
        (
            attr::CHAT_NUMBER.to_owned(),
            number_attr(message.chat_number),
        ),
        (attr::NUMBER.to_owned(), number_attr(message.number)),
        (attr::BODY.to_owned(), string_attr(message.body.as_str())),
        (
            attr::SENDER_ID.to_owned(),
            string_attr(message.sender_id.as_str()),
        ),
        (
            attr::SENDER_ROLE.to_owned(),
            string_attr(message.sender_role.as_str()),
        ),
        (
            attr::CREATED_AT.to_owned(),
            number_attr(message.created_at.0),
        ),
        (
            attr::DELETED.to_owned(),
            AttributeValue::Bool(message.deleted),
        ),
        (attr::CUSTOMER_ID.to_owned(), string_attr(customer.as_str())),
        (attr::VERSION.to_owned(), number_attr(version)),
    ]);
    if let Some(id) = &message.client_message_id {
        item.insert(attr::CLIENT_MESSAGE_ID.to_owned(), string_attr(id.as_str()));
    }
    if let Some(at) = message.edited_at {
        item.insert(attr::EDITED_AT.to_owned(), number_attr(at.0));
    }
    item
}

/// A message's files as its item holds them ([`attr::FILES`]).
pub(crate) fn files_attr(files: &[AttachedFile]) -> AttributeValue {
    AttributeValue::L(
        files
            .iter()
            .map(|file| {
                let mut map = HashMap::from([
                    (attr::FILE_NAME.to_owned(), string_attr(file.name.as_str())),
                    (
                        attr::CONTENT_TYPE.to_owned(),
                        string_attr(file.file_type.mime()),
                    ),
                    (attr::SIZE.to_owned(), number_attr(file.size)),
                ]);
                if let Some(image) = file.image {
                    map.insert(attr::WIDTH.to_owned(), number_attr(image.width));
                    map.insert(attr::HEIGHT.to_owned(), number_attr(image.height));
                }
                AttributeValue::M(map)
            })
            .collect(),
    )
}

/// The files on a message item, in upload order; none when it has no [`attr::FILES`].
pub(crate) fn message_files(item: &Item) -> Result<Vec<AttachedFile>> {
    let list = match item.get(attr::FILES) {
        None | Some(AttributeValue::Null(_)) => return Ok(Vec::new()),
        Some(AttributeValue::L(list)) => list,
        Some(_) => return Err(missing(attr::FILES)),
    };
    list.iter()
        .map(|value| {
            let AttributeValue::M(file) = value else {
                return Err(missing(attr::FILES));
            };
            let image = match (
                optional_number::<u32>(file, attr::WIDTH)?,
                optional_number::<u32>(file, attr::HEIGHT)?,
            ) {
                (Some(width), Some(height)) => Some(ImageSize { width, height }),
                _ => None,
            };
            Ok(AttachedFile {
                name: parsed("file name", FileName::parse(string(file, attr::FILE_NAME)?))?,
                file_type: parsed(
                    "content type",
                    FileType::parse(string(file, attr::CONTENT_TYPE)?),
                )?,
                size: number(file, attr::SIZE)?,
                image,
            })
        })
        .collect()
}

/// A message item and the customer of its chat.
pub(crate) fn message(item: &Item) -> Result<(Message, UserId)> {
    expect_type(item, item_type::MESSAGE)?;
    let client_message_id = optional_string(item, attr::CLIENT_MESSAGE_ID)?
        .map(|raw| parsed("clientMessageId", ClientMessageId::parse(raw)))
        .transpose()?;
    let message = Message {
        app: parsed("message app", AppToken::parse(string(item, attr::APP)?))?,
        chat_number: parsed(
            "message chat number",
            ChatNumber::new(number(item, attr::CHAT_NUMBER)?),
        )?,
        number: parsed(
            "message number",
            MessageNumber::new(number(item, attr::NUMBER)?),
        )?,
        body: string(item, attr::BODY)?.to_owned(),
        sender_id: parsed("sender id", UserId::parse(string(item, attr::SENDER_ID)?))?,
        sender_role: parsed("sender role", Role::parse(string(item, attr::SENDER_ROLE)?))?,
        client_message_id,
        created_at: timestamp(item, attr::CREATED_AT)?,
        edited_at: optional_timestamp(item, attr::EDITED_AT)?,
        deleted: boolean(item, attr::DELETED)?,
    };
    let customer = parsed(
        "message customer id",
        UserId::parse(string(item, attr::CUSTOMER_ID)?),
    )?;
    Ok((message, customer))
}

/// A message item's version (see [`message_item`]); at least 1.
pub(crate) fn message_version(item: &Item) -> Result<u64> {
    let version: u64 = number(item, attr::VERSION)?;
    if version == 0 {
        return Err(StoreError::corrupt("message version 0"));
    }
    Ok(version)
}

// ---- idempotency keys -----------------------------------------------------------------------

pub(crate) fn client_message_id_item(
    app: &AppToken,
    chat: ChatNumber,
    id: &ClientMessageId,
    message: MessageNumber,
) -> Item {
    let mut item = key(table::chat_pk(app, chat), table::client_message_id_sk(id));
    item.extend([
        (
            attr::TYPE.to_owned(),
            string_attr(item_type::CLIENT_MESSAGE_ID),
        ),
        (attr::CLIENT_MESSAGE_ID.to_owned(), string_attr(id.as_str())),
        (attr::NUMBER.to_owned(), number_attr(message)),
    ]);
    item
}

/// The message number an idempotency key points to.
pub(crate) fn client_message_id_number(item: &Item) -> Result<MessageNumber> {
    expect_type(item, item_type::CLIENT_MESSAGE_ID)?;
    parsed(
        "clientMessageId number",
        MessageNumber::new(number(item, attr::NUMBER)?),
    )
}

// ---- read watermarks and unread counters ---------------------------------------------------

/// An agent's own read watermark on a chat.
pub(crate) fn agent_read_item(
    app: &AppToken,
    chat: ChatNumber,
    agent: &UserId,
    last_read: u32,
) -> Item {
    let mut item = key(table::chat_pk(app, chat), table::agent_read_sk(agent));
    item.extend([
        (attr::TYPE.to_owned(), string_attr(item_type::READ_MARK)),
        (attr::READER_ID.to_owned(), string_attr(agent.as_str())),
        (attr::LAST_READ.to_owned(), number_attr(last_read)),
    ]);
    item
}

/// The watermark an agent's read item holds.
pub(crate) fn agent_last_read(item: &Item) -> Result<u32> {
    expect_type(item, item_type::READ_MARK)?;
    count(item, attr::LAST_READ)
}

/// A counter item's (unread messages, unread chats); never negative.
pub(crate) fn unread_counts(item: &Item) -> Result<(u64, u64)> {
    expect_type(item, item_type::UNREAD_COUNTER)?;
    let value = |name| -> Result<u64> { Ok(optional_number::<u64>(item, name)?.unwrap_or(0)) };
    Ok((value(attr::TOTAL_UNREAD)?, value(attr::UNREAD_CHATS)?))
}

// ---- presence leases ----------------------------------------------------------------------

/// The `ttl` of a lease: epoch seconds, a day past its expiry (DynamoDB deletes it then,
/// if the sweep has not).
fn presence_ttl(expires_at: Timestamp) -> i64 {
    expires_at.0.div_euclid(1000) + 86_400
}

pub(crate) fn presence_key(app: &AppToken, role: Role, user: &UserId) -> Item {
    let (pk, sk) = table::presence_key(app, role, user);
    key(pk, sk)
}

pub(crate) fn presence_item(lease: &Presence) -> Item {
    let mut item = presence_key(&lease.app, lease.role, &lease.user_id);
    item.extend([
        (attr::TYPE.to_owned(), string_attr(item_type::PRESENCE)),
        (attr::TOKEN.to_owned(), string_attr(lease.app.as_str())),
        (
            attr::USER_ID.to_owned(),
            string_attr(lease.user_id.as_str()),
        ),
        (attr::ROLE.to_owned(), string_attr(lease.role.as_str())),
        (attr::STATUS.to_owned(), string_attr(lease.status.as_str())),
        (
            attr::LAST_SEEN_AT.to_owned(),
            number_attr(lease.last_seen_at.0),
        ),
        (attr::EXPIRES_AT.to_owned(), number_attr(lease.expires_at.0)),
        (attr::VERSION.to_owned(), number_attr(lease.version)),
        (
            attr::TTL.to_owned(),
            number_attr(presence_ttl(lease.expires_at)),
        ),
    ]);
    if let Some(chat) = lease.chat {
        item.insert(attr::CHAT_NUMBER.to_owned(), number_attr(chat.get()));
    }
    item
}

pub(crate) fn presence(item: &Item) -> Result<Presence> {
    expect_type(item, item_type::PRESENCE)?;
    Ok(Presence {
        app: parsed(
            "presence application",
            AppToken::parse(string(item, attr::TOKEN)?),
        )?,
        user_id: parsed(
            "presence user id",
            UserId::parse(string(item, attr::USER_ID)?),
        )?,
        role: parsed("presence role", Role::parse(string(item, attr::ROLE)?))?,
        status: parsed(
            "presence status",
            PresenceStatus::parse(string(item, attr::STATUS)?),
        )?,
        chat: optional_number::<i64>(item, attr::CHAT_NUMBER)?
            .map(|n| parsed("presence chat", ChatNumber::new(n)))
            .transpose()?,
        last_seen_at: timestamp(item, attr::LAST_SEEN_AT)?,
        expires_at: timestamp(item, attr::EXPIRES_AT)?,
        version: number(item, attr::VERSION)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_leases_round_trip() {
        let mut lease = Presence {
            app: AppToken::parse("app_1").unwrap(),
            user_id: UserId::parse("cust#1").unwrap(),
            role: Role::Customer,
            status: PresenceStatus::Away,
            chat: Some(ChatNumber::new(3).unwrap()),
            last_seen_at: Timestamp(1_700_000_000_000),
            expires_at: Timestamp(1_700_000_090_000),
            version: 7,
        };
        let item = presence_item(&lease);
        assert_eq!(presence(&item).unwrap(), lease);
        assert_eq!(item[attr::SK], string_attr("app_1#C#cust#1"));
        assert_eq!(item[attr::TTL], number_attr(1_700_000_090 + 86_400));
        lease.chat = None;
        let item = presence_item(&lease);
        assert!(!item.contains_key(attr::CHAT_NUMBER));
        assert_eq!(presence(&item).unwrap(), lease);
    }

    fn sample_chat() -> Chat {
        Chat {
            app: AppToken::parse("app_1").unwrap(),
            number: ChatNumber::new(3).unwrap(),
            customer_id: UserId::parse("cust#1").unwrap(),
            subject: Some(Subject::parse("Hi").unwrap().unwrap()),
            status: ChatStatus::Resolved,
            messages_count: 4,
            customer_last_read: 4,
            agents_last_read: 1,
            last_message: None,
            last_message_at: None,
            last_activity_at: Timestamp(5),
            created_at: Timestamp(5),
            updated_at: Timestamp(6),
            assignee: Some(UserId::parse("agent#7").unwrap()),
            team: Team::parse("Billing").unwrap(),
        }
    }

    #[test]
    fn chats_and_messages_round_trip() {
        let chat = sample_chat();
        let item = chat_item(&chat).unwrap();
        assert_eq!(self::chat(&item).unwrap(), chat);
        assert_eq!(
            item[attr::GSI2PK],
            string_attr("CUST#app_1#RESOLVED#cust#1"),
            "flat, exact-match index keys"
        );
        assert_eq!(
            item[attr::GSI3PK],
            string_attr("TEAMUNREAD#app_1#3"),
            "unread for the agents"
        );
        let read = Chat {
            agents_last_read: 4,
            ..chat.clone()
        };
        assert!(!chat_item(&read).unwrap().contains_key(attr::GSI3PK));
        assert_eq!(
            item[attr::GSI4PK],
            string_attr("ASSIGNEE#app_1#RESOLVED#agent#7")
        );
        assert_eq!(
            item[attr::GSI5PK],
            string_attr("TEAM#app_1#RESOLVED#Billing")
        );
        let alone = Chat {
            assignee: None,
            team: None,
            ..chat.clone()
        };
        let item_alone = chat_item(&alone).unwrap();
        assert_eq!(self::chat(&item_alone).unwrap(), alone);
        assert_eq!(
            item_alone[attr::GSI4PK],
            string_attr("UNASSIGNED#app_1#RESOLVED")
        );
        assert!(
            !item_alone.contains_key(attr::GSI5PK),
            "sparse: no team, no entry"
        );
        let message = Message {
            app: chat.app.clone(),
            chat_number: chat.number,
            number: MessageNumber::new(7).unwrap(),
            body: "  hi ".into(),
            sender_id: UserId::parse("agent").unwrap(),
            sender_role: Role::Agent,
            client_message_id: Some(ClientMessageId::parse("k").unwrap()),
            created_at: Timestamp(9),
            edited_at: Some(Timestamp(10)),
            deleted: false,
        };
        let item = message_item(&message, &chat.customer_id, 4);
        assert_eq!(
            self::message(&item).unwrap(),
            (message, chat.customer_id.clone())
        );
        assert_eq!(message_version(&item).unwrap(), 4);
    }

    #[test]
    fn a_chat_written_before_watermarks_has_read_nothing() {
        let mut item = chat_item(&sample_chat()).unwrap();
        item.remove(attr::CUSTOMER_LAST_READ);
        item.remove(attr::AGENTS_LAST_READ);
        let chat = chat(&item).unwrap();
        assert_eq!((chat.customer_last_read, chat.agents_last_read), (0, 0));
    }

    #[test]
    fn read_marks_and_counters_round_trip() {
        let app = AppToken::parse("app_1").unwrap();
        let agent = UserId::parse("agent#7").unwrap();
        let item = agent_read_item(&app, ChatNumber::new(3).unwrap(), &agent, 9);
        assert_eq!(item[attr::SK], string_attr("READ#agent#7"));
        assert_eq!(agent_last_read(&item).unwrap(), 9);
        let counter = HashMap::from([
            (
                attr::TYPE.to_owned(),
                string_attr(item_type::UNREAD_COUNTER),
            ),
            (attr::TOTAL_UNREAD.to_owned(), number_attr(5)),
        ]);
        assert_eq!(unread_counts(&counter).unwrap(), (5, 0), "absent = 0");
        let negative = HashMap::from([
            (
                attr::TYPE.to_owned(),
                string_attr(item_type::UNREAD_COUNTER),
            ),
            (attr::TOTAL_UNREAD.to_owned(), number_attr(-1)),
        ]);
        assert!(unread_counts(&negative).is_err());
        assert!(agent_last_read(&counter).is_err());
    }

    #[test]
    fn unexpected_shapes_are_errors_not_panics() {
        let mut item = chat_item(&sample_chat()).unwrap();
        item.insert(attr::MESSAGES_COUNT.into(), string_attr("many"));
        assert!(chat(&item).is_err());
        item.insert(attr::MESSAGES_COUNT.into(), number_attr(-1));
        assert!(chat(&item).is_err());
        item.remove(attr::MESSAGES_COUNT);
        assert!(chat(&item).is_err());
        let app = application_item(&NewApplication {
            token: AppToken::parse("app_1").unwrap(),
            name: AppName::parse("A").unwrap(),
            now: Timestamp(1),
        });
        assert!(chat(&app).is_err(), "an application is not a chat");
        assert!(message(&Item::new()).is_err());
        let mut bad_number = app.clone();
        bad_number.insert(attr::CHATS_COUNT.into(), number_attr("1e99"));
        assert!(application(&bad_number).is_err());
    }
}
