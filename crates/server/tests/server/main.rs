//! The dev server's integration tests, one module a topic: real `chat-server` processes
//! over HTTP and WebSocket, and the schema served in process. One test binary, so that the
//! workspace builds and links it once; `cargo test -p chat-server --test server <module>::`
//! runs one topic.

mod common;

mod applications;
mod appsync_http;
mod appsync_realtime;
mod assignment;
mod attachments;
mod authority;
mod chats;
mod concurrency;
mod console;
mod demo;
mod durability;
mod dynamodb;
mod faults;
mod forged_events;
mod fuzz_regressions;
mod isolation;
mod limits;
mod messages;
mod metrics;
mod presence;
mod realtime;
mod schema_driven;
mod search;
mod shutdown;
mod throttle;
mod tour;
mod unread;
mod webhooks;
