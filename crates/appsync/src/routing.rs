//! Routing in the resolvers (see `chat_domain::routing`): a new chat is routed as it is
//! created, and a change that may let waiting chats be routed picks them up; each chat
//! routed is published on `onChat` like any assignment.
//!
//! Routing runs after the caller's write has committed and answers for itself: a routing
//! that fails is logged and leaves the chats waiting for the next pick-up, and the caller's
//! answer stands.

use chat_domain::{AppToken, Chat, ChatService, Role};

use crate::attachments;
use crate::publish::{self, Publication};
use crate::registry::Resolved;
use crate::wire;

/// The chat just created, routed when the application routes.
pub(crate) async fn route_new(svc: &ChatService, chat: Chat) -> Chat {
    match svc.route_new_chat(&chat).await {
        Ok(routed) => routed.unwrap_or(chat),
        Err(error) => {
            tracing::warn!(app = %chat.app, chat = %chat.number, error = %error, "routing a new chat failed; it waits");
            chat
        }
    }
}

/// Routes the application's waiting chats that agents have room for, publishing each on
/// `onChat` with what `resolved` publishes.
pub(crate) async fn pick_up(svc: &ChatService, app: &AppToken, resolved: &mut Resolved) {
    match picked_up(svc, app).await {
        Ok(events) => resolved.publications.extend(events),
        Err(error) => {
            tracing::warn!(app = %app, error = %error, "picking up waiting chats failed; they wait");
        }
    }
}

/// The `onChat` events of the waiting chats routed now.
pub async fn picked_up(svc: &ChatService, app: &AppToken) -> chat_domain::Result<Vec<Publication>> {
    let routed = svc.pick_up_waiting(app).await?;
    let mut events: Vec<serde_json::Value> = routed
        .iter()
        .map(|chat| wire::chat(chat, Role::Agent))
        .collect();
    attachments::add_to_chats(svc, events.iter_mut().collect()).await?;
    Ok(events
        .into_iter()
        .map(|event| Publication {
            mutation: publish::CHAT,
            event,
        })
        .collect())
}
