//! The local dev server: the same `schema.graphql` and resolver registry as AppSync, over
//! HTTP, with data in embedded storage.

pub mod admin_guard;
#[cfg(test)]
mod appsync_errors;
pub mod attachment_sweep;
pub mod console;
pub mod files;
pub mod graphiql;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod presence_sweep;
pub mod query_limits;
pub mod query_nesting;
pub mod realtime;
pub mod schema;
pub mod search;
pub mod shutdown;
pub mod tls;
pub mod webhooks;
