//! Presence and typing resolvers, and the events a presence change publishes (shared by
//! `heartbeat` and the sweep of expired leases, which runs on a timer on the dev server and
//! on a schedule on AWS).

use std::sync::Arc;

use chat_domain::{
    AppToken, Caller, ChatService, ChatViewer, Heartbeat, PageSize, PresenceChange, PresenceStatus,
    Result, Role,
};
use serde_json::{Map, Value};

use crate::args::Args;
use crate::publish::{self, Publication};
use crate::registry::{Registry, Resolved, app_token, chat_of};
use crate::wire;

/// What a heartbeat's or the sweep's changes may publish.
pub const PRESENCE_EVENTS: &[&str] = &[
    publish::PRESENCE,
    publish::CHAT_VIEWER,
    publish::AVAILABILITY,
];

pub(crate) fn register(registry: &mut Registry) {
    registry.add("Query.presences", presences);
    registry.add("Query.availability", availability);
    registry.add("Query.chatViewers", chat_viewers);
    registry.add_publishing("Mutation.heartbeat", PRESENCE_EVENTS, heartbeat);
    registry.add_publishing("Mutation.typing", &[publish::TYPING], typing);
    registry.add("Subscription.onPresence", on_presence);
    registry.add("Subscription.onAvailability", on_availability);
    registry.add("Subscription.onChatViewer", on_chat_participants);
    registry.add("Subscription.onTyping", on_chat_participants);
}

/// The events one presence change publishes: the presence itself when a subscriber sees a
/// difference, the chats it left and entered, and the availability when the number of
/// agents online moved (counted again, so the event carries the current figures).
pub async fn publications(svc: &ChatService, change: &PresenceChange) -> Result<Vec<Publication>> {
    let mut events = Vec::new();
    if !change.is_transition() {
        return Ok(events);
    }
    let after = &change.after;
    events.push(Publication {
        mutation: publish::PRESENCE,
        event: wire::presence(after),
    });
    let now = svc.now();
    for (chat, viewing) in [(change.left_chat(), false), (change.entered_chat(), true)] {
        if let Some(chat) = chat {
            let viewer = ChatViewer {
                app: after.app.clone(),
                chat,
                user_id: after.user_id.clone(),
                role: after.role,
                viewing,
                at: now,
            };
            events.push(Publication {
                mutation: publish::CHAT_VIEWER,
                event: wire::chat_viewer(&viewer),
            });
        }
    }
    if change.moves_availability() {
        let availability = svc.availability_now(&after.app).await?;
        events.push(Publication {
            mutation: publish::AVAILABILITY,
            event: wire::availability(&availability),
        });
    }
    Ok(events)
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Swept {
    /// Expired leases found (at most `PRESENCE_SWEEP_BATCH`: as many means more may wait).
    pub found: usize,
    /// The events announcing the leases it ended.
    pub events: Vec<Publication>,
}

/// Ends the leases that expired (one batch) and answers the events that announce it. Runs
/// as the system: the dev server's timer, the scheduled function on AWS.
pub async fn sweep(svc: &ChatService) -> Result<Swept> {
    let (found, ended) = svc.sweep_presence().await?;
    let mut events = Vec::new();
    for change in &ended {
        events.extend(publications(svc, change).await?);
    }
    Ok(Swept { found, events })
}

fn status_of(args: &Args<'_>) -> Result<PresenceStatus> {
    args.opt_str("status")?
        .map_or(Ok(PresenceStatus::Online), PresenceStatus::parse)
}

async fn heartbeat(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let chat = args
        .opt_int("chatNumber")?
        .map(chat_domain::ChatNumber::new)
        .transpose()?;
    let status = status_of(&args)?;
    let change = svc
        .heartbeat(&caller, &app, Heartbeat { status, chat })
        .await?;
    let publications = publications(&svc, &change).await?;
    Ok(Resolved {
        data: wire::presence(&change.after),
        publications,
    })
}

async fn typing(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Resolved> {
    let args = Args(&args);
    let (app, chat) = chat_of(&args)?;
    Ok(match svc.typing(&caller, &app, chat).await? {
        Some(typing) => Resolved::published(wire::typing(&typing), publish::TYPING),
        None => Value::Null.into(),
    })
}

async fn presences(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let role = args.opt_str("role")?.map(Role::parse).transpose()?;
    let limit = PageSize::parse(args.opt_int("limit")?)?;
    let page = svc
        .presences(&caller, &app, role, limit, args.opt_str("nextToken")?)
        .await?;
    Ok(wire::page(&page, wire::presence))
}

async fn availability(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let app = app_token(&Args(&args), "appToken")?;
    Ok(wire::availability(&svc.availability(&caller, &app).await?))
}

async fn chat_viewers(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let (app, chat) = chat_of(&Args(&args))?;
    let viewers = svc.chat_viewers(&caller, &app, chat).await?;
    Ok(Value::Array(viewers.iter().map(wire::presence).collect()))
}

async fn on_presence(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let app = app_token(&Args(&args), "appToken")?;
    svc.authorize_app_feed(&caller, &app)?;
    Ok(Value::Null)
}

async fn on_availability(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let app: AppToken = app_token(&Args(&args), "appToken")?;
    svc.authorize_app_member(&caller, &app)?;
    Ok(Value::Null)
}

async fn on_chat_participants(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let (app, chat) = chat_of(&Args(&args))?;
    svc.authorize_chat_feed(&caller, &app, chat).await?;
    Ok(Value::Null)
}
