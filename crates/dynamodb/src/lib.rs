//! `chat-dynamodb`: the [`ChatStore`](chat_domain::ChatStore) on DynamoDB, one table.
//!
//! - The key design lives in [`table`] (and `docs/dynamodb.md`): each chat is a partition
//!   holding the chat item, its messages and its idempotency keys; two GSIs list chats by
//!   last activity (an application's, sharded, and a customer's), one partition per status.
//! - Numbers are allocated by compare-and-set in one `TransactWriteItems`: the parent's
//!   count moves from `n` to `n + 1` only if it is still `n`, the child is put only if
//!   absent, the clientMessageId key likewise; a lost race is retried with jittered
//!   backoff ([`RetryPolicy`]). Dense, unique, and a failed write changes nothing.
//!   Within one process, writers of one counter take turns (writer lanes), so only writers
//!   in different processes ever race. Every conditional write, numbering or not, is
//!   retried by one loop: `store/conditional_write.rs`.
//! - The operations are in `store/`, one module per aggregate (applications, chats,
//!   messages, unread), as in the embedded store and the conformance suite.
//! - Reads of the base table are strongly consistent (read-your-writes, as the store
//!   contract's tests expect); lists come from GSIs, which DynamoDB keeps eventually
//!   consistent (typically well under a second behind).
//! - Unread counts: read watermarks on the chat item (and an agent's own in its `READ#`
//!   item), counters (`ADD`, sharded for the agents) moved in the transaction that moves the
//!   watermarks, conditioned on the watermarks the deltas came from; a sparse `KEYS_ONLY`
//!   index lists the chats the agents have not fully read.
//! - Request budget (asserted by `tests/requests.rs`): sendMessage and createChat 2
//!   requests, markChatRead at most 2, reads of one item and unreadSummary 1.
//! - Presence leases ([`PresenceStore`](chat_domain::PresenceStore)): one item per user in
//!   16 fixed partitions, no index; a heartbeat is 1 read and at most 1 conditional write.
//! - The table's stream feeds search: [`stream::change_records`] turns its records (as
//!   Lambda delivers them) into the indexer's change records.
//! - Webhooks ([`webhooks`]): endpoints and delivery records (the `WebhookEndpoints` port);
//!   the same stream feeds them ([`webhooks::feed_items`]).

mod backoff;
mod client;
mod error;
mod expr;
mod items;
pub mod requests;
mod store;
pub mod stream;
pub mod table;

#[cfg(feature = "moto")]
pub mod moto;
#[cfg(feature = "moto")]
pub mod moto_stream;

pub use aws_sdk_dynamodb::Client;
pub use backoff::RetryPolicy;
pub use client::{
    client_from_environment, create_table_if_missing, emulator_client, http_client, table_exists,
};
pub use error::StoreError;
pub use requests::RequestCounter;
pub use store::DynamoStore;
pub use store::webhooks;
pub use table::TableDefinition;
