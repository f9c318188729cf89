//! The DynamoDB store's integration tests against moto's server mode (started once for the
//! binary, crates/dynamodb/src/moto.rs), one module a topic. One test binary, so that the
//! workspace builds and links it once; `cargo test -p chat-dynamodb --test dynamodb <module>::`
//! runs one topic.

mod attachments;
mod conformance;
mod numbering;
mod paging;
mod presence;
mod requests;
mod stream;
mod unread;
mod webhooks;
