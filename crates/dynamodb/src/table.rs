//! The single-table key design: every item type, its keys, the indexes, and the table
//! definition. The one place that knows how keys are spelled; `docs/dynamodb.md` explains
//! the design, and `--create-table` and `template.yaml` take the table from
//! [`TableDefinition::current`].
//!
//! | item | PK | SK | GSI1 (`inbox`) | GSI2 (`customer`) |
//! |---|---|---|---|---|
//! | application | `APP#<token>` | `APP` | | |
//! | chat | `CHAT#<token>#<number>` | `MSG#META` | `INBOX#<token>#<status>#<shard>` / `<activity>#<number>` | `CUST#<token>#<status>#<customer>` / `<activity>#<number>` |
//! | message | `CHAT#<token>#<chat>` | `MSG#<number:010>` | | |
//! | clientMessageId | `CHAT#<token>#<chat>` | `CMID#<clientMessageId>` | | |
//!
//! - Each chat is its own partition (its item, messages and idempotency keys): a busy
//!   application spreads over as many partitions as it has chats.
//! - The chat item sorts right after its messages (`'M' > '9'`), so one descending Query of
//!   `SK BETWEEN "MSG#" AND "MSG#META"` with `Limit 2` reads a chat with its last message.
//! - Numbers in sort keys are zero-padded (10 digits hold `i32::MAX`); times are
//!   milliseconds, zero-padded to 15 digits. String order is then number order.
//! - Tokens are `[A-Za-z0-9_-]`, statuses fixed words, so `#` separates unambiguously; a
//!   customer id (which may contain `#`) only ever comes last.

use std::collections::BTreeMap;

use chat_domain::{AppToken, ChatNumber, ChatStatus, MessageNumber, Timestamp, UserId};
use serde_json::{Value, json};

/// How many partitions an application's inbox (per status) is spread over in GSI1. Every
/// message rewrites its chat's inbox entry (2 write units), so one partition would cap an
/// application at about 500 messages/s; four lift that to about 2,000/s, at the price of
/// one Query per shard when listing. Changing it re-keys every chat: a migration.
pub const INBOX_SHARDS: u32 = 4;

/// The agents' inbox: an application's chats of one status, by last activity.
pub const INBOX_INDEX: &str = "inbox";
/// A customer's chats of one status, by last activity.
pub const CUSTOMER_INDEX: &str = "customer";

/// Attribute names. Keys are generic (`PK`, `GSI1SK` ...) because several item types share
/// them; everything else is named for what it holds, flat (no nested maps).
pub mod attr {
    pub const PK: &str = "PK";
    pub const SK: &str = "SK";
    pub const GSI1PK: &str = "GSI1PK";
    pub const GSI1SK: &str = "GSI1SK";
    pub const GSI2PK: &str = "GSI2PK";
    pub const GSI2SK: &str = "GSI2SK";
    /// The item type: `APP`, `CHAT`, `MSG` or `CMID` (stream consumers switch on it).
    pub const TYPE: &str = "type";

    pub const TOKEN: &str = "token";
    pub const NAME: &str = "name";
    pub const SECRET_GENERATION: &str = "secretGeneration";
    pub const CHATS_COUNT: &str = "chatsCount";
    pub const CREATED_AT: &str = "createdAt";
    pub const UPDATED_AT: &str = "updatedAt";

    pub const APP: &str = "app";
    pub const NUMBER: &str = "number";
    pub const CUSTOMER_ID: &str = "customerId";
    pub const SUBJECT: &str = "subject";
    pub const STATUS: &str = "status";
    pub const MESSAGES_COUNT: &str = "messagesCount";
    pub const LAST_MESSAGE_AT: &str = "lastMessageAt";
    pub const LAST_ACTIVITY_AT: &str = "lastActivityAt";

    pub const CHAT_NUMBER: &str = "chatNumber";
    pub const BODY: &str = "body";
    pub const SENDER_ID: &str = "senderId";
    pub const SENDER_ROLE: &str = "senderRole";
    pub const CLIENT_MESSAGE_ID: &str = "clientMessageId";
    pub const EDITED_AT: &str = "editedAt";
    pub const DELETED: &str = "deleted";
    /// A message's version: 1 when sent, +1 on every edit and delete (the search index
    /// applies a change only over a lower version; see `chat_domain::search`).
    pub const VERSION: &str = "version";
}

/// Values of [`attr::TYPE`].
pub mod item_type {
    pub const APPLICATION: &str = "APP";
    pub const CHAT: &str = "CHAT";
    pub const MESSAGE: &str = "MSG";
    pub const CLIENT_MESSAGE_ID: &str = "CMID";
}

// ---- keys ---------------------------------------------------------------------------------

pub const APPLICATION_SK: &str = "APP";
/// The chat item's sort key: after every `MSG#<digits>` of its partition.
pub const CHAT_SK: &str = "MSG#META";
/// The lowest sort key of a message (`SK BETWEEN MESSAGES_FROM AND CHAT_SK` covers the
/// messages and the chat item, nothing else).
pub const MESSAGES_FROM: &str = "MSG#";

pub fn application_pk(app: &AppToken) -> String {
    format!("APP#{app}")
}

pub fn chat_pk(app: &AppToken, chat: ChatNumber) -> String {
    format!("CHAT#{app}#{chat}")
}

/// A message's sort key; also any number in a message range (0 ..= 9_999_999_999).
pub fn message_sk(number: u64) -> String {
    format!("MSG#{number:010}")
}

pub fn message_number_sk(number: MessageNumber) -> String {
    message_sk(u64::from(number.get()))
}

pub fn client_message_id_sk(id: &chat_domain::ClientMessageId) -> String {
    format!("CMID#{}", id.as_str())
}

/// Which inbox shard a chat lives in: consecutive chats go to consecutive shards.
pub fn inbox_shard(chat: ChatNumber) -> u32 {
    chat.get() % INBOX_SHARDS
}

pub fn inbox_pk(app: &AppToken, status: ChatStatus, shard: u32) -> String {
    format!("INBOX#{app}#{}#{shard}", status.as_str())
}

pub fn customer_pk(app: &AppToken, status: ChatStatus, customer: &UserId) -> String {
    format!("CUST#{app}#{}#{}", status.as_str(), customer.as_str())
}

/// The sort key of both inbox indexes: most recent activity first when read descending,
/// ties by the higher chat number. `None` for a time before 1970 (not a clock reading).
pub fn activity_sk(last_activity_at: Timestamp, chat: ChatNumber) -> Option<String> {
    (last_activity_at.0 >= 0).then(|| format!("{:015}#{:010}", last_activity_at.0, chat.get()))
}

// ---- the table definition -----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Hash,
    Range,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Hash => "HASH",
            KeyType::Range => "RANGE",
        }
    }
}

/// A key attribute (all key attributes of this table are strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyElement {
    pub attribute: &'static str,
    pub key_type: KeyType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDefinition {
    pub name: &'static str,
    pub key_schema: Vec<KeyElement>,
    /// Always `ALL`: list views show whole chats, and chat items are small (the last
    /// message is read from the message item, not copied onto the chat).
    pub projection: &'static str,
}

/// The table as data: key schema, attribute definitions, GSIs, billing, stream. Rendered
/// as a CreateTable request (`--create-table`, the tests) and as CloudFormation
/// (`template.yaml`, checked by a test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub key_schema: Vec<KeyElement>,
    pub global_secondary_indexes: Vec<IndexDefinition>,
    pub billing_mode: &'static str,
    pub stream_view_type: &'static str,
}

fn key(attribute: &'static str, key_type: KeyType) -> KeyElement {
    KeyElement {
        attribute,
        key_type,
    }
}

impl TableDefinition {
    pub fn current() -> TableDefinition {
        TableDefinition {
            key_schema: vec![key(attr::PK, KeyType::Hash), key(attr::SK, KeyType::Range)],
            global_secondary_indexes: vec![
                IndexDefinition {
                    name: INBOX_INDEX,
                    key_schema: vec![
                        key(attr::GSI1PK, KeyType::Hash),
                        key(attr::GSI1SK, KeyType::Range),
                    ],
                    projection: "ALL",
                },
                IndexDefinition {
                    name: CUSTOMER_INDEX,
                    key_schema: vec![
                        key(attr::GSI2PK, KeyType::Hash),
                        key(attr::GSI2SK, KeyType::Range),
                    ],
                    projection: "ALL",
                },
            ],
            billing_mode: "PAY_PER_REQUEST",
            stream_view_type: "NEW_AND_OLD_IMAGES",
        }
    }

    /// Every key attribute of the table and its indexes, once, in a stable order.
    pub fn attribute_definitions(&self) -> Vec<&'static str> {
        let mut seen = BTreeMap::new();
        let all = self.key_schema.iter().chain(
            self.global_secondary_indexes
                .iter()
                .flat_map(|i| &i.key_schema),
        );
        for (order, element) in all.enumerate() {
            seen.entry(element.attribute).or_insert(order);
        }
        let mut attributes: Vec<_> = seen.into_iter().collect();
        attributes.sort_by_key(|(_, order)| *order);
        attributes.into_iter().map(|(name, _)| name).collect()
    }

    /// The `Properties` of an `AWS::DynamoDB::Table` resource (without `TableName`).
    pub fn to_cloudformation(&self) -> Value {
        let key_schema = |elements: &[KeyElement]| -> Value {
            elements
                .iter()
                .map(|e| json!({ "AttributeName": e.attribute, "KeyType": e.key_type.as_str() }))
                .collect()
        };
        json!({
            "BillingMode": self.billing_mode,
            "AttributeDefinitions": self
                .attribute_definitions()
                .into_iter()
                .map(|name| json!({ "AttributeName": name, "AttributeType": "S" }))
                .collect::<Value>(),
            "KeySchema": key_schema(&self.key_schema),
            "GlobalSecondaryIndexes": self
                .global_secondary_indexes
                .iter()
                .map(|index| json!({
                    "IndexName": index.name,
                    "KeySchema": key_schema(&index.key_schema),
                    "Projection": { "ProjectionType": index.projection },
                }))
                .collect::<Value>(),
            "StreamSpecification": { "StreamViewType": self.stream_view_type },
        })
    }
}

impl TableDefinition {
    /// The CreateTable request for a table called `name`, ready to send.
    pub fn create_table_request(
        &self,
        client: &aws_sdk_dynamodb::Client,
        name: &str,
    ) -> Result<
        aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder,
        crate::StoreError,
    > {
        use aws_sdk_dynamodb::types as ddb;
        let invalid = |e: aws_sdk_dynamodb::error::BuildError| {
            crate::StoreError::Setup(format!("invalid table definition: {e}"))
        };
        let key_schema = |elements: &[KeyElement]| {
            elements
                .iter()
                .map(|e| {
                    ddb::KeySchemaElement::builder()
                        .attribute_name(e.attribute)
                        .key_type(ddb::KeyType::from(e.key_type.as_str()))
                        .build()
                        .map_err(invalid)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let attributes = self
            .attribute_definitions()
            .into_iter()
            .map(|name| {
                ddb::AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ddb::ScalarAttributeType::S)
                    .build()
                    .map_err(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = self
            .global_secondary_indexes
            .iter()
            .map(|index| {
                ddb::GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(key_schema(&index.key_schema)?))
                    .projection(
                        ddb::Projection::builder()
                            .projection_type(ddb::ProjectionType::from(index.projection))
                            .build(),
                    )
                    .build()
                    .map_err(invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ddb::StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(ddb::StreamViewType::from(self.stream_view_type))
            .build()
            .map_err(invalid)?;
        Ok(client
            .create_table()
            .table_name(name)
            .set_key_schema(Some(key_schema(&self.key_schema)?))
            .set_attribute_definitions(Some(attributes))
            .set_global_secondary_indexes(Some(indexes))
            .billing_mode(ddb::BillingMode::from(self.billing_mode))
            .stream_specification(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::ClientMessageId;

    fn app() -> AppToken {
        AppToken::parse("app_x").unwrap()
    }

    fn chat(n: i64) -> ChatNumber {
        ChatNumber::new(n).unwrap()
    }

    #[test]
    fn the_chat_item_sorts_right_after_every_message_and_before_nothing_else() {
        let largest = message_sk(u64::from(chat_domain::limits::NUMBER_MAX));
        assert!(message_sk(1) < message_sk(2));
        assert!(message_sk(9) < message_sk(10));
        assert!(MESSAGES_FROM < message_sk(0).as_str());
        assert!(largest.as_str() < CHAT_SK);
        assert!(message_sk(9_999_999_999).as_str() < CHAT_SK);
        let cmid = client_message_id_sk(&ClientMessageId::parse("zzz~").unwrap());
        assert!(
            cmid.as_str() < MESSAGES_FROM,
            "idempotency keys sort below messages"
        );
    }

    #[test]
    fn activity_keys_sort_by_time_then_number() {
        let sk = |t, n| activity_sk(Timestamp(t), chat(n)).unwrap();
        assert!(sk(999, 5) < sk(1000, 1));
        assert!(sk(1000, 1) < sk(1000, 2));
        assert!(sk(1000, 9) < sk(1000, 10));
        assert_eq!(sk(1_800_000_000_000, 7), "001800000000000#0000000007");
        assert_eq!(activity_sk(Timestamp(-1), chat(1)), None);
    }

    #[test]
    fn keys_are_spelled_once_here() {
        let app = app();
        assert_eq!(application_pk(&app), "APP#app_x");
        assert_eq!(chat_pk(&app, chat(12)), "CHAT#app_x#12");
        assert_eq!(
            inbox_pk(&app, ChatStatus::Open, inbox_shard(chat(6))),
            "INBOX#app_x#OPEN#2"
        );
        let customer = UserId::parse("a#b").unwrap();
        assert_eq!(
            customer_pk(&app, ChatStatus::Resolved, &customer),
            "CUST#app_x#RESOLVED#a#b"
        );
    }

    #[test]
    fn consecutive_chats_spread_over_every_shard() {
        let shards: std::collections::BTreeSet<u32> = (1..=i64::from(INBOX_SHARDS))
            .map(|n| inbox_shard(chat(n)))
            .collect();
        assert_eq!(shards.len(), INBOX_SHARDS as usize);
    }

    #[test]
    fn the_definition_renders_as_cloudformation() {
        let cfn = TableDefinition::current().to_cloudformation();
        assert_eq!(cfn["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            cfn["StreamSpecification"]["StreamViewType"],
            "NEW_AND_OLD_IMAGES"
        );
        let names: Vec<&str> = cfn["AttributeDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["AttributeName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"]);
        assert_eq!(cfn["GlobalSecondaryIndexes"][0]["IndexName"], INBOX_INDEX);
        assert_eq!(
            cfn["GlobalSecondaryIndexes"][1]["KeySchema"][1]["AttributeName"],
            "GSI2SK"
        );
        assert_eq!(
            cfn["GlobalSecondaryIndexes"][1]["Projection"]["ProjectionType"],
            "ALL"
        );
    }
}
