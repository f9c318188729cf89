//! The one place that knows AppSync's JSON.
//!
//! - [`auth`]: turns an `Authorization` header into a [`Caller`](chat_domain::Caller) (the
//!   Lambda authorizer and the dev server both use it) and carries the caller through the
//!   AppSync `identity.resolverContext`;
//! - [`registry`]: `"Type.field"` -> resolver, over AppSync direct-resolver events; the
//!   Lambda functions and the dev server call the same registry;
//! - [`wire`]: domain values as the JSON of `schema.graphql`;
//! - [`publish`]: the real-time events a committed write publishes, built by the server;
//! - [`lambda`]: a resolver Lambda's invocation (one event or a batch) and its answer;
//! - [`authorizer`]: the AppSync Lambda authorizer's answer;
//! - [`webhooks`]: the webhook admin resolvers and their JSON;
//! - [`attachments`]: uploads, and the attachments rendered into every message;
//! - [`outcome`]: how a resolver call ended (ok, client error, fault), for metrics.

pub mod args;
pub mod attachments;
pub mod auth;
pub mod authorizer;
pub mod lambda;
pub mod outcome;
pub mod presence;
pub mod publish;
pub mod registry;
pub mod routing;
pub mod webhooks;
pub mod wire;

pub use auth::{Authenticator, UserClaims};
pub use publish::Publication;
pub use registry::{Registry, Resolved, ResolverError, ResolverEvent};
