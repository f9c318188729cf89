//! Presence and typing resolvers, and the events a presence change publishes (shared by
//! `heartbeat` and the sweep of expired leases, which runs on a timer on the dev server and
//! on a schedule on AWS).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::limits::PRESENCE_SWEEP_BATCH;
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

/// What a heartbeat may publish: its presence events, and the chats routed to an agent
/// who became available.
const HEARTBEAT_EVENTS: &[&str] = &[
    publish::PRESENCE,
    publish::CHAT_VIEWER,
    publish::AVAILABILITY,
    publish::CHAT,
];

pub(crate) fn register(registry: &mut Registry) {
    registry.add("Query.presences", presences);
    registry.add("Query.availability", availability);
    registry.add("Query.chatViewers", chat_viewers);
    registry.add_publishing("Mutation.heartbeat", HEARTBEAT_EVENTS, heartbeat);
    registry.add_publishing("Mutation.typing", &[publish::TYPING], typing);
    registry.add("Subscription.onPresence", on_presence);
    registry.add("Subscription.onAvailability", on_availability);
    registry.add("Subscription.onChatViewer", on_chat_participants);
    registry.add("Subscription.onTyping", on_chat_participants);
}

/// The events of presence changes: for each, the presence itself when a subscriber sees a
/// difference and the chats it left and entered; then, once per application whose number of
/// agents online moved, its availability, counted again after all the changes (one count
/// and one event however many of its agents changed at once).
pub async fn publications(
    svc: &ChatService,
    changes: &[PresenceChange],
) -> Result<Vec<Publication>> {
    let mut events = Vec::new();
    let mut recount: Vec<&AppToken> = Vec::new();
    let now = svc.now();
    for change in changes.iter().filter(|c| c.is_transition()) {
        let after = &change.after;
        events.push(Publication {
            mutation: publish::PRESENCE,
            event: wire::presence(after),
        });
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
        if change.moves_availability() && !recount.contains(&&after.app) {
            recount.push(&after.app);
        }
    }
    for app in recount {
        let availability = svc.availability_now(app).await?;
        events.push(Publication {
            mutation: publish::AVAILABILITY,
            event: wire::availability(&availability),
        });
    }
    Ok(events)
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired leases found.
    pub found: usize,
    /// Events published to announce the ones it ended.
    pub published: usize,
}

/// Ends the leases that expired and publishes the events that announce it, batch after batch
/// while batches come full (a full batch means more may wait), at most `max_batches` and
/// starting none after `budget`; each batch's events go to `publish` as soon as they are
/// built. Runs as the system: the dev server's timer, the scheduled function on AWS.
pub async fn sweep<F, Fut>(
    svc: &ChatService,
    max_batches: usize,
    budget: Duration,
    mut publish: F,
) -> Result<SweepReport>
where
    F: FnMut(Vec<Publication>) -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    let mut report = SweepReport::default();
    for _ in 0..max_batches {
        let (found, ended) = svc.sweep_presence().await?;
        let events = publications(svc, &ended).await?;
        report.found += found;
        report.published += events.len();
        publish(events).await;
        if found < PRESENCE_SWEEP_BATCH as usize || started.elapsed() >= budget {
            break;
        }
    }
    Ok(report)
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
    let publications = publications(&svc, std::slice::from_ref(&change)).await?;
    let mut resolved = Resolved {
        data: wire::presence(&change.after),
        publications,
    };
    if change.makes_agent_available() {
        crate::routing::pick_up(&svc, &app, &mut resolved).await;
    }
    Ok(resolved)
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
