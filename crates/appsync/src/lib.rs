//! The one place that knows AppSync's JSON.
//!
//! - [`auth`]: turns an `Authorization` header into a [`Caller`](chat_domain::Caller) (the
//!   Lambda authorizer and the dev server both use it) and carries the caller through the
//!   AppSync `identity.resolverContext`;
//! - [`registry`]: `"Type.field"` -> resolver, over AppSync direct-resolver events; the
//!   Lambda functions and the dev server call the same registry;
//! - [`wire`]: domain values as the JSON of `schema.graphql`.

pub mod args;
pub mod auth;
pub mod registry;
pub mod wire;

pub use auth::{Authenticator, UserClaims};
pub use registry::{Registry, ResolverError, ResolverEvent};
