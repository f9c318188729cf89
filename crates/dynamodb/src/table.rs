//! The single-table key design: every item type, its keys, the indexes, and the table
//! definition. The one place that knows how keys are spelled; `docs/dynamodb.md` explains
//! the design, and `--create-table` and `template.yaml` take the table from
//! [`TableDefinition::current`].
//!
//! | item | PK | SK | GSI1 (`inbox`) | GSI2 (`customer`) | GSI3 (`unread`) |
//! |---|---|---|---|---|---|
//! | application | `APP#<token>` | `APP` | | | |
//! | chat | `CHAT#<token>#<number>` | `MSG#META` | `INBOX#<token>#<status>#<shard>` / `<activity>#<number>` | `CUST#<token>#<status>#<customer>` / `<activity>#<number>` | `TEAMUNREAD#<token>#<shard>` / `<number:010>`, only while the agents have something unread |
//! | message | `CHAT#<token>#<chat>` | `MSG#<number:010>` | | | |
//! | (chat, continued) | GSI4 (`assignee`): `ASSIGNEE#<token>#<status>#<agentId>` or `UNASSIGNED#<token>#<status>` / `<activity>#<number>` | GSI5 (`team`): `TEAM#<token>#<status>#<team>` / `<activity>#<number>`, only with a team | | | |
//! | an agent's "my unread" counter | `AGENTUNREAD#<token>#<agentId>` | `UNREAD` | | | |
//! | an agent's routing load (open assigned chats, last routed) | `AGENTLOAD#<token>#<agentId>` | `LOAD` | | | |
//! | clientMessageId | `CHAT#<token>#<chat>` | `CMID#<clientMessageId>` | | | |
//! | an agent's read watermark | `CHAT#<token>#<chat>` | `READ#<agentId>` | | | |
//! | the agents' unread counter (one per shard) | `TEAMUNREAD#<token>#<shard>` | `UNREAD` | | | |
//! | a customer's unread counter | `CUSTUNREAD#<token>#<customer>` | `UNREAD` | | | |
//! | an agent's presence lease | `PRESENCE#<shard of hash(token)>` | `<token>#A#<agentId>` | | | |
//! | a customer's presence lease | `PRESENCE#<shard of hash(token, customer)>` | `<token>#C#<customer>` | | | |
//! | a webhook endpoint | `WEBHOOKS#<token>` | `EP#<endpointId>` | | | |
//! | an application's webhook endpoint count | `WEBHOOKS#<token>` | `COUNT` | | | |
//! | a webhook delivery | `WHDLV#<deliveryId>` | `DLV` | `WHDLV#<token>#<endpointId>` / `<createdAt:015>#<deliveryId>` | | |
//! | a webhook endpoint's send slot | `WHSLOT#<token>#<endpointId>#<slot>` | `SLOT` | | | |
//! | an upload (attachments) | `UPLOAD#<uploadId>` | `UPLOAD` | | | `UPLOADS#PENDING` / `<createdAt:015>#<uploadId>` while pending; `UPLOADS#RELEASING` / `<uploadId>` once its message is deleted; `UPLOADS#RELEASED` / `<releasedAt:015>#<uploadId>` once the sweep saw that |
//! | a message's attachment | `CHAT#<token>#<chat>` | `ATT#<message:010>#<uploadId>` | | | |
//!
//! - Each chat is its own partition (its item, messages, idempotency keys and the agents'
//!   own read watermarks): a busy application spreads over as many partitions as it has
//!   chats.
//! - The chat item sorts right after its messages (`'M' > '9'`), so one descending Query of
//!   `SK BETWEEN "MSG#" AND "MSG#META"` with `Limit 2` reads a chat with its last message.
//!   Idempotency keys (`CMID#`) sort below that range and read watermarks (`READ#`) above
//!   it, so no message range ever meets them.
//! - Unread counters are sharded (`chat number mod UNREAD_SHARDS`): every customer
//!   message moves a counter inside its transaction, and one item takes one transaction
//!   at a time. The `unread` index lists,
//!   under the same key as a team counter shard, exactly the chats that shard counts.
//! - Presence leases live in [`PRESENCE_SHARDS`] fixed partitions and in no index: a lease
//!   is rewritten about once a minute per client, and an index entry would double each of
//!   those writes. All agents of an application share one shard (listing or counting them
//!   is one Query of `SK BETWEEN <token>#A# ...`); customers spread over every shard by
//!   [`presence_hash`] of application and user (listing them queries each shard). The sweep
//!   finds expired leases by querying every shard; the `ttl` attribute (epoch seconds, a
//!   day past expiry) lets DynamoDB delete what it missed.
//! - Webhooks (`store/webhooks.rs`): an application's endpoints share one partition
//!   (listing them is one Query); each delivery is a partition of its own, found by id,
//!   and GSI1 lists an endpoint's deliveries newest first. The stream feed names
//!   deliveries by (event, endpoint) and puts them only if absent.
//! - Uploads (`chat_domain::attachments`): the record is keyed by its id, which is all
//!   `sendMessage` names; attaching it puts a copy, the attachment, into the chat's
//!   partition (below `CMID#`, outside every message range), so the attachments of a page of
//!   messages are one Query. The sweep's work lists are partitions of the `unread` index
//!   (sparse and `KEYS_ONLY`, like the chats it lists): pending uploads by creation time,
//!   the released ones of deleted messages by release time. A pending record also carries
//!   `ttl`, long after the sweep would have taken it: DynamoDB deletes it even if no sweep
//!   runs, and since attaching is conditioned on the record's age, never the ttl, a late or
//!   early TTL deletion changes nothing.
//! - Numbers in sort keys are zero-padded (10 digits hold `i32::MAX`); times are
//!   milliseconds, zero-padded to 15 digits. String order is then number order.
//! - Tokens are `[A-Za-z0-9_-]`, statuses fixed words, so `#` separates unambiguously; a
//!   customer or agent id (which may contain `#`) only ever comes last.

use std::collections::BTreeMap;

use chat_domain::{AppToken, ChatNumber, ChatStatus, MessageNumber, Role, Timestamp, UserId};
use serde_json::{Value, json};

/// How many partitions an application's inbox (per status) is spread over in GSI1. Every
/// message rewrites its chat's inbox entry (2 write units), so one partition would cap an
/// application at about 500 messages/s; four lift that to about 2,000/s, at the price of
/// one Query per shard when listing. Changing it re-keys every chat: a migration.
pub const INBOX_SHARDS: u32 = 4;

/// How many items the agents' unread counter of an application (and its `unread` index
/// partition) is spread over. Every customer message moves one shard inside its send's
/// transaction, and DynamoDB cancels transactions that touch one item at the same time
/// (TransactionConflict, retried with jitter): the shard count, not write capacity, is
/// what bounds one application's message rate (see docs/dynamodb.md). unreadSummary reads
/// all shards in one BatchGetItem; listing unread chats queries each. Changing it re-keys
/// the counters: a migration.
pub const UNREAD_SHARDS: u32 = 16;

/// How many partitions (`PRESENCE#<shard>`) hold the presence leases. The sweep queries
/// each one; an application's agents are all in one of them, its customers in all.
/// Changing it re-keys every lease (harmless: leases live 90 s, so a deployment that
/// changes it loses at most one heartbeat's worth of presence).
pub const PRESENCE_SHARDS: u32 = 16;

/// The agents' inbox: an application's chats of one status, by last activity.
pub const INBOX_INDEX: &str = "inbox";
/// A customer's chats of one status, by last activity.
pub const CUSTOMER_INDEX: &str = "customer";
/// The chats the agents have not fully read, per counter shard, by number. Sparse and
/// `KEYS_ONLY`: a chat enters when its agents' unread count leaves 0 and leaves when it
/// returns to 0; a send that changes neither writes no index entry.
pub const UNREAD_INDEX: &str = "unread";
/// An application's chats of one status and one assignee (or unassigned), by last activity:
/// `chats(filter: {assignee: ME | UNASSIGNED | <agentId>})` is one Query per status.
pub const ASSIGNEE_INDEX: &str = "assignee";
/// An application's chats of one status and one team, by last activity. Sparse: only
/// chats with a team.
pub const TEAM_INDEX: &str = "team";

/// Attribute names. Keys are generic (`PK`, `GSI1SK` ...) because several item types share
/// them; everything else is named for what it holds, flat (no nested maps but a message's
/// [`attr::FILES`]).
pub mod attr {
    pub const PK: &str = "PK";
    pub const SK: &str = "SK";
    pub const GSI1PK: &str = "GSI1PK";
    pub const GSI1SK: &str = "GSI1SK";
    pub const GSI2PK: &str = "GSI2PK";
    pub const GSI2SK: &str = "GSI2SK";
    pub const GSI3PK: &str = "GSI3PK";
    pub const GSI3SK: &str = "GSI3SK";
    pub const GSI4PK: &str = "GSI4PK";
    pub const GSI4SK: &str = "GSI4SK";
    pub const GSI5PK: &str = "GSI5PK";
    pub const GSI5SK: &str = "GSI5SK";
    /// The item type: `APP`, `CHAT`, `MSG`, `CMID`, `READ` or `UNREAD` (stream consumers
    /// switch on it).
    pub const TYPE: &str = "type";

    pub const TOKEN: &str = "token";
    pub const NAME: &str = "name";
    pub const SECRET_GENERATION: &str = "secretGeneration";
    pub const PREVIOUS_SECRET_EXPIRES_AT: &str = "previousSecretExpiresAt";
    pub const CHATS_COUNT: &str = "chatsCount";
    pub const ROUTING_ENABLED: &str = "routingEnabled";
    pub const ROUTING_CAP: &str = "routingCap";
    /// An agent's open assigned chats (its routing load).
    pub const OPEN_CHATS: &str = "openChats";
    /// When routing last gave the agent a chat.
    pub const ROUTED_AT: &str = "routedAt";
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
    /// The customer's read watermark on a chat item (absent = 0).
    pub const CUSTOMER_LAST_READ: &str = "customerLastRead";
    /// The agents' team read watermark on a chat item (absent = 0).
    pub const AGENTS_LAST_READ: &str = "agentsLastRead";
    /// The chat's assignee (an agent's user id) and team, absent when none.
    pub const ASSIGNEE_ID: &str = "assigneeId";
    pub const TEAM: &str = "team";

    /// An agent's own watermark (`READ#<agentId>` items).
    pub const LAST_READ: &str = "lastRead";
    pub const READER_ID: &str = "readerId";

    /// Counter items: unread messages, and chats with any.
    pub const TOTAL_UNREAD: &str = "totalUnread";
    pub const UNREAD_CHATS: &str = "unreadChats";

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

    /// Presence leases: the user, its role, and the lease's times (ms since the epoch).
    pub const USER_ID: &str = "userId";
    pub const ROLE: &str = "role";
    pub const LAST_SEEN_AT: &str = "lastSeenAt";
    pub const EXPIRES_AT: &str = "expiresAt";
    /// DynamoDB's time to live (epoch SECONDS): set on presence leases only, a day past
    /// their expiry, so a lease the sweep never ended is deleted anyway.
    pub const TTL: &str = "ttl";

    /// Uploads and attachments (`UPLOAD` and `ATT` items).
    pub const UPLOAD_ID: &str = "uploadId";
    pub const UPLOADER_ID: &str = "uploaderId";
    pub const FILE_NAME: &str = "fileName";
    pub const CONTENT_TYPE: &str = "contentType";
    pub const SIZE: &str = "size";
    /// The message an upload is attached to (absent while pending).
    pub const MESSAGE_NUMBER: &str = "messageNumber";
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    /// When the sweep saw the upload's message deleted (ms).
    pub const RELEASED_AT: &str = "releasedAt";
    /// On a message item: how many attachments it was sent with (absent: none).
    pub const ATTACHMENTS: &str = "attachments";
    /// On a message item sent with attachments: its files in upload order, a list of maps
    /// (`fileName`, `contentType`, `size`, and `width`/`height` for images). The one
    /// nested attribute: a copy written with the message, so that its stream record alone
    /// gives webhook events and the search index the files. Removed when the message is
    /// deleted.
    pub const FILES: &str = "files";
}

/// Values of [`attr::TYPE`].
pub mod item_type {
    pub const APPLICATION: &str = "APP";
    pub const CHAT: &str = "CHAT";
    pub const MESSAGE: &str = "MSG";
    pub const CLIENT_MESSAGE_ID: &str = "CMID";
    pub const READ_MARK: &str = "READ";
    pub const UNREAD_COUNTER: &str = "UNREAD";
    pub const PRESENCE: &str = "PRESENCE";
    pub const UPLOAD: &str = "UPLOAD";
    pub const ATTACHMENT: &str = "ATT";
    pub const AGENT_LOAD: &str = "LOAD";
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

/// Whether a sort key is a message's (`MSG#` and 10 digits; not the chat's `MSG#META`).
pub fn is_message_sk(sk: &str) -> bool {
    sk.strip_prefix(MESSAGES_FROM)
        .is_some_and(|digits| digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()))
}

pub fn message_number_sk(number: MessageNumber) -> String {
    message_sk(u64::from(number.get()))
}

pub fn client_message_id_sk(id: &chat_domain::ClientMessageId) -> String {
    format!("CMID#{}", id.as_str())
}

/// The sort key of an agent's own read watermark on a chat: above the chat item, so
/// outside every message range.
pub fn agent_read_sk(agent: &UserId) -> String {
    format!("READ#{}", agent.as_str())
}

/// The sort key of both kinds of unread counter item.
pub const UNREAD_SK: &str = "UNREAD";

/// One shard of the agents' unread counter of an application (the chats of
/// [`unread_shard`] `shard`); also the `unread` index partition listing those chats.
pub fn team_unread_pk(app: &AppToken, shard: u32) -> String {
    format!("TEAMUNREAD#{app}#{shard}")
}

/// A customer's unread counter over its chats of the application.
pub fn customer_unread_pk(app: &AppToken, customer: &UserId) -> String {
    format!("CUSTUNREAD#{app}#{}", customer.as_str())
}

/// The sort key of an agent's routing load item.
pub const AGENT_LOAD_SK: &str = "LOAD";

/// An agent's routing load: its open assigned chats and when routing last gave it one.
pub fn agent_load_pk(app: &AppToken, agent: &UserId) -> String {
    format!("AGENTLOAD#{app}#{}", agent.as_str())
}

/// An agent's "my unread" counter over the chats assigned to it.
pub fn assignee_unread_pk(app: &AppToken, agent: &UserId) -> String {
    format!("AGENTUNREAD#{app}#{}", agent.as_str())
}

/// The `assignee` index partition of an application's chats of `status` assigned to
/// `assignee` (`None`: unassigned).
pub fn assignee_pk(app: &AppToken, status: ChatStatus, assignee: Option<&UserId>) -> String {
    match assignee {
        Some(agent) => format!("ASSIGNEE#{app}#{}#{}", status.as_str(), agent.as_str()),
        None => format!("UNASSIGNED#{app}#{}", status.as_str()),
    }
}

/// The `team` index partition of an application's chats of `status` in `team`.
pub fn team_pk(app: &AppToken, status: ChatStatus, team: &chat_domain::Team) -> String {
    format!("TEAM#{app}#{}#{}", status.as_str(), team.as_str())
}

/// The `unread` index sort key: the chat number, zero-padded (number order).
pub fn unread_sk(chat: ChatNumber) -> String {
    format!("{:010}", chat.get())
}

/// Which unread counter shard counts a chat: consecutive chats go to consecutive shards.
pub fn unread_shard(chat: ChatNumber) -> u32 {
    chat.get() % UNREAD_SHARDS
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

/// A stable hash (32-bit FNV-1a) of the parts, `#`-separated: every process computes the
/// same presence shard (std's hasher is seeded per process).
pub fn presence_hash(parts: &[&str]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut hash = OFFSET;
    for (i, part) in parts.iter().enumerate() {
        let separator: &[u8] = if i == 0 { b"" } else { b"#" };
        for byte in separator.iter().chain(part.as_bytes()) {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// The partition of presence shard `shard`.
pub fn presence_pk(shard: u32) -> String {
    format!("PRESENCE#{shard}")
}

/// Which shard holds a lease: an agent's by application alone (one Query lists them all),
/// a customer's by application and user.
pub fn presence_shard(app: &AppToken, role: Role, user: &UserId) -> u32 {
    match role {
        Role::Agent => agents_presence_shard(app),
        Role::Customer => presence_hash(&[app.as_str(), user.as_str()]) % PRESENCE_SHARDS,
    }
}

/// The shard holding every agent lease of an application.
pub fn agents_presence_shard(app: &AppToken) -> u32 {
    presence_hash(&[app.as_str()]) % PRESENCE_SHARDS
}

fn presence_role_prefix(app: &AppToken, role: Role) -> String {
    let letter = match role {
        Role::Agent => 'A',
        Role::Customer => 'C',
    };
    format!("{app}#{letter}#")
}

/// A lease's key: `PRESENCE#<shard>` / `<token>#A|C#<userId>`.
pub fn presence_key(app: &AppToken, role: Role, user: &UserId) -> (String, String) {
    (
        presence_pk(presence_shard(app, role, user)),
        format!("{}{}", presence_role_prefix(app, role), user.as_str()),
    )
}

/// The sort-key range of an application's leases of one role, `(from, to)` for
/// `SK BETWEEN`: from the lease of `after` (inclusive: the caller skips it) or the first,
/// to below anything else (`$` follows `#`; no sort key is the bound itself).
pub fn presence_sk_range(app: &AppToken, role: Role, after: Option<&UserId>) -> (String, String) {
    let prefix = presence_role_prefix(app, role);
    let to = format!("{}$", &prefix[..prefix.len() - 1]);
    let from = match after {
        Some(user) => format!("{prefix}{}", user.as_str()),
        None => prefix,
    };
    (from, to)
}

/// The sort key of an upload record.
pub const UPLOAD_SK: &str = "UPLOAD";

pub fn upload_pk(id: &chat_domain::attachments::UploadId) -> String {
    format!("UPLOAD#{id}")
}

/// An attachment's sort key in its chat's partition: below `CMID#` and every message.
pub fn attachment_sk(message: MessageNumber, id: &chat_domain::attachments::UploadId) -> String {
    format!("ATT#{:010}#{id}", message.get())
}

/// The sort-key range (`BETWEEN`) of the attachments of messages `low ..= high`.
pub fn attachment_sk_range(low: MessageNumber, high: MessageNumber) -> (String, String) {
    (
        format!("ATT#{:010}#", low.get()),
        format!("ATT#{:010}$", high.get()),
    )
}

/// The sweep's work lists of uploads, partitions of the `unread` index.
pub const PENDING_UPLOADS_PK: &str = "UPLOADS#PENDING";
pub const RELEASING_UPLOADS_PK: &str = "UPLOADS#RELEASING";
pub const RELEASED_UPLOADS_PK: &str = "UPLOADS#RELEASED";

/// A time-ordered entry of a work list: `<at:015>#<uploadId>`; every entry of an upload
/// listed before `cutoff` sorts below [`upload_list_cutoff`]`(cutoff)`.
pub fn upload_list_sk(at: Timestamp, id: &chat_domain::attachments::UploadId) -> String {
    format!("{:015}#{id}", at.0.max(0))
}

pub fn upload_list_cutoff(cutoff: Timestamp) -> String {
    format!("{:015}", cutoff.0.max(0))
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

/// Which attributes an index copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Whole items: list views show whole chats, and chat items are small (the last
    /// message is read from the message item, not copied onto the chat).
    All,
    /// The table's and the index's keys only: a write that changes no key attribute
    /// writes no index entry.
    KeysOnly,
}

impl Projection {
    pub fn as_str(self) -> &'static str {
        match self {
            Projection::All => "ALL",
            Projection::KeysOnly => "KEYS_ONLY",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDefinition {
    pub name: &'static str,
    pub key_schema: Vec<KeyElement>,
    pub projection: Projection,
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
    /// The attribute DynamoDB deletes items by once its time (epoch seconds) has passed.
    pub time_to_live_attribute: &'static str,
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
                    projection: Projection::All,
                },
                IndexDefinition {
                    name: CUSTOMER_INDEX,
                    key_schema: vec![
                        key(attr::GSI2PK, KeyType::Hash),
                        key(attr::GSI2SK, KeyType::Range),
                    ],
                    projection: Projection::All,
                },
                IndexDefinition {
                    name: UNREAD_INDEX,
                    key_schema: vec![
                        key(attr::GSI3PK, KeyType::Hash),
                        key(attr::GSI3SK, KeyType::Range),
                    ],
                    projection: Projection::KeysOnly,
                },
                IndexDefinition {
                    name: ASSIGNEE_INDEX,
                    key_schema: vec![
                        key(attr::GSI4PK, KeyType::Hash),
                        key(attr::GSI4SK, KeyType::Range),
                    ],
                    projection: Projection::All,
                },
                IndexDefinition {
                    name: TEAM_INDEX,
                    key_schema: vec![
                        key(attr::GSI5PK, KeyType::Hash),
                        key(attr::GSI5SK, KeyType::Range),
                    ],
                    projection: Projection::All,
                },
            ],
            billing_mode: "PAY_PER_REQUEST",
            stream_view_type: "NEW_AND_OLD_IMAGES",
            time_to_live_attribute: attr::TTL,
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
                    "Projection": { "ProjectionType": index.projection.as_str() },
                }))
                .collect::<Value>(),
            "StreamSpecification": { "StreamViewType": self.stream_view_type },
            "TimeToLiveSpecification": {
                "AttributeName": self.time_to_live_attribute,
                "Enabled": true,
            },
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
                            .projection_type(ddb::ProjectionType::from(index.projection.as_str()))
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
        assert!(is_message_sk(&message_sk(7)) && is_message_sk(&largest));
        assert!(!is_message_sk(CHAT_SK) && !is_message_sk(&cmid) && !is_message_sk("MSG#1"));
        let read = agent_read_sk(&UserId::parse("!").unwrap());
        assert!(
            CHAT_SK < read.as_str(),
            "read watermarks sort above the chat item, outside every message range"
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
        assert_eq!(agent_read_sk(&customer), "READ#a#b");
        assert_eq!(
            team_unread_pk(&app, unread_shard(chat(7))),
            "TEAMUNREAD#app_x#7"
        );
        assert_eq!(customer_unread_pk(&app, &customer), "CUSTUNREAD#app_x#a#b");
        assert_eq!(unread_sk(chat(42)), "0000000042");
        assert_eq!(
            assignee_pk(&app, ChatStatus::Open, Some(&customer)),
            "ASSIGNEE#app_x#OPEN#a#b"
        );
        assert_eq!(
            assignee_pk(&app, ChatStatus::Open, None),
            "UNASSIGNED#app_x#OPEN"
        );
        let team = chat_domain::Team::parse("Billing EU").unwrap().unwrap();
        assert_eq!(
            team_pk(&app, ChatStatus::Resolved, &team),
            "TEAM#app_x#RESOLVED#Billing EU"
        );
        assert_eq!(assignee_unread_pk(&app, &customer), "AGENTUNREAD#app_x#a#b");
        let agent = presence_key(&app, Role::Agent, &customer);
        assert_eq!(agent.1, "app_x#A#a#b");
        assert!(agent.0.starts_with("PRESENCE#"));
        assert_eq!(
            presence_key(&app, Role::Customer, &customer).1,
            "app_x#C#a#b"
        );
    }

    #[test]
    fn presence_shards_are_stable_and_keep_an_application_s_agents_together() {
        // FNV-1a's published test vectors: the same shard in every process and build.
        assert_eq!(presence_hash(&[""]), 0x811c_9dc5);
        assert_eq!(presence_hash(&["a"]), 0xe40c_292c);
        assert_eq!(presence_hash(&["foobar"]), 0xbf9c_f968);
        assert_eq!(presence_hash(&["foo", "bar"]), presence_hash(&["foo#bar"]));
        let app = app();
        let user = |id: &str| UserId::parse(id).unwrap();
        let agents: std::collections::BTreeSet<_> = (0..50)
            .map(|i| presence_key(&app, Role::Agent, &user(&format!("agent-{i}"))).0)
            .collect();
        assert_eq!(
            agents.len(),
            1,
            "one shard for all agents of an application"
        );
        let customers: std::collections::BTreeSet<_> = (0..200)
            .map(|i| presence_key(&app, Role::Customer, &user(&format!("c-{i}"))).0)
            .collect();
        assert_eq!(customers.len(), PRESENCE_SHARDS as usize);
    }

    #[test]
    fn a_presence_range_holds_exactly_one_application_s_role() {
        let app = app();
        let (from, to) = presence_sk_range(&app, Role::Agent, None);
        let sk = |a: &str, role, id: &str| {
            presence_key(
                &AppToken::parse(a).unwrap(),
                role,
                &UserId::parse(id).unwrap(),
            )
            .1
        };
        let inside = |k: &str| from.as_str() <= k && k <= to.as_str();
        assert!(inside(&sk("app_x", Role::Agent, "!")));
        assert!(inside(&sk("app_x", Role::Agent, "~~~")));
        assert!(inside(&sk("app_x", Role::Agent, "a#b")));
        assert!(!inside(&sk("app_x", Role::Customer, "a")));
        assert!(!inside(&sk("app_x2", Role::Agent, "a")));
        assert!(!inside(&sk("app", Role::Agent, "a")));
        let (from, _) =
            presence_sk_range(&app, Role::Customer, Some(&UserId::parse("c2").unwrap()));
        assert_eq!(from, sk("app_x", Role::Customer, "c2"));
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
        assert_eq!(
            names,
            [
                "PK", "SK", "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK", "GSI3PK", "GSI3SK", "GSI4PK",
                "GSI4SK", "GSI5PK", "GSI5SK"
            ]
        );
        assert_eq!(cfn["GlobalSecondaryIndexes"][0]["IndexName"], INBOX_INDEX);
        assert_eq!(
            cfn["GlobalSecondaryIndexes"][1]["KeySchema"][1]["AttributeName"],
            "GSI2SK"
        );
        assert_eq!(
            cfn["GlobalSecondaryIndexes"][1]["Projection"]["ProjectionType"],
            "ALL"
        );
        assert_eq!(
            cfn["TimeToLiveSpecification"],
            json!({"AttributeName": "ttl", "Enabled": true})
        );
        assert_eq!(cfn["GlobalSecondaryIndexes"][2]["IndexName"], UNREAD_INDEX);
        assert_eq!(
            cfn["GlobalSecondaryIndexes"][2]["Projection"]["ProjectionType"],
            "KEYS_ONLY"
        );
    }

    #[test]
    fn the_definition_renders_as_a_create_table_request() {
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .build(),
        );
        let request = TableDefinition::current()
            .create_table_request(&client, "t")
            .unwrap();
        let indexes = request.get_global_secondary_indexes().as_ref().unwrap();
        let projections: Vec<_> = indexes
            .iter()
            .map(|i| {
                (
                    i.index_name(),
                    i.projection().and_then(|p| p.projection_type()).cloned(),
                )
            })
            .collect();
        use aws_sdk_dynamodb::types::ProjectionType;
        assert_eq!(
            projections,
            [
                (INBOX_INDEX, Some(ProjectionType::All)),
                (CUSTOMER_INDEX, Some(ProjectionType::All)),
                (UNREAD_INDEX, Some(ProjectionType::KeysOnly)),
                (ASSIGNEE_INDEX, Some(ProjectionType::All)),
                (TEAM_INDEX, Some(ProjectionType::All)),
            ]
        );
    }
}
