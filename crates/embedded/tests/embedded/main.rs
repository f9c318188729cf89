//! The SQLite store's integration tests, one module a topic. One test binary, so that the
//! workspace builds and links it once; `cargo test -p chat-embedded --test embedded <module>::`
//! runs one topic.

mod attachments;
mod conformance;
mod durability;
mod outbox;
mod read_slots;
mod throughput;
mod webhooks;
