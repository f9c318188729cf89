//! Presence and typing: who is online, who is looking at which chat, who is typing.
//!
//! Presence is a lease. A client holds it by calling `heartbeat` every
//! [`HEARTBEAT_INTERVAL_SECS`]; a lease runs [`PRESENCE_LEASE_MS`] from the heartbeat that
//! last wrote it and ends by itself. A heartbeat that changes nothing writes only when the
//! lease has less than [`PRESENCE_RENEW_BELOW_MS`] left, so a client heartbeating on time
//! writes every other heartbeat, and its presence ends 45 to 90 s after its last one.
//! Expired leases are announced by a sweep ([`ChatService::sweep_presence`]): the dev
//! server runs it every few seconds, AWS on a schedule. Reads never trust an expired lease,
//! whether or not it has been swept.
//!
//! Only transitions are events: a status or a viewed chat that changed, a lease that
//! started or ended. What each side sees:
//! - an AGENT: every presence of its application (agents and customers, with the chat
//!   each is looking at), and who views any chat;
//! - a CUSTOMER: how many agents are online ([`Availability`]), and who views its own chats
//!   (the agents there, as read receipts and messages already show them).
//!
//! Typing is never stored: a `typing` call is checked like any chat operation and published;
//! calls of one user in one chat within [`TYPING_INTERVAL_MS`] are folded into one event.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::error::{DomainError, Result};
use crate::limits::{
    PRESENCE_LEASE_MS, PRESENCE_RENEW_BELOW_MS, PRESENCE_SWEEP_BATCH, TYPING_INTERVAL_MS,
    TYPING_KEYS_RETAINED,
};
use crate::model::{AppToken, ChatNumber, PageSize, Role, Timestamp, UserId};
use crate::service::{Caller, ChatService, Page, UserIdentity, user_of};

pub use crate::limits::HEARTBEAT_INTERVAL_SECS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceStatus {
    /// Here and available (an agent: may be routed chats).
    Online,
    /// Here but not available (an agent who stepped away, a tab in the background).
    Away,
    /// Not here: the lease ended or was given up. Never stored.
    Offline,
}

impl PresenceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "ONLINE",
            PresenceStatus::Away => "AWAY",
            PresenceStatus::Offline => "OFFLINE",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "ONLINE" => Ok(PresenceStatus::Online),
            "AWAY" => Ok(PresenceStatus::Away),
            "OFFLINE" => Ok(PresenceStatus::Offline),
            _ => Err(DomainError::bad_input(
                "status must be ONLINE, AWAY or OFFLINE",
            )),
        }
    }
}

/// One user's presence in one application: a stored lease, or (status OFFLINE) what an
/// ended one is announced as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub app: AppToken,
    pub user_id: UserId,
    pub role: Role,
    pub status: PresenceStatus,
    /// The chat the user has on screen, if any.
    pub chat: Option<ChatNumber>,
    /// The heartbeat that last wrote the lease (within [`PRESENCE_RENEW_BELOW_MS`] of the
    /// user's last heartbeat).
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// Bumped by every write: what conditional writes compare.
    pub version: u64,
}

impl Presence {
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.0 > now.0
    }

    /// The lease as its end is announced.
    pub fn ended(&self) -> Presence {
        Presence {
            status: PresenceStatus::Offline,
            chat: None,
            ..self.clone()
        }
    }

    fn is_agent_online(&self) -> bool {
        self.role == Role::Agent && self.status == PresenceStatus::Online
    }
}

/// What a heartbeat or the sweep did to one user's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// The live lease before (`None`: the user was offline).
    pub before: Option<Presence>,
    /// The presence after (status OFFLINE when it ended).
    pub after: Presence,
}

impl PresenceChange {
    /// Whether anything a subscriber sees changed: the status or the chat on screen.
    pub fn is_transition(&self) -> bool {
        match &self.before {
            None => self.after.status != PresenceStatus::Offline,
            Some(before) => before.status != self.after.status || before.chat != self.after.chat,
        }
    }

    /// The chat the user stopped viewing, if any.
    pub fn left_chat(&self) -> Option<ChatNumber> {
        let before = self.before.as_ref()?.chat?;
        (self.after.chat != Some(before)).then_some(before)
    }

    /// The chat the user started viewing, if any.
    pub fn entered_chat(&self) -> Option<ChatNumber> {
        let after = self.after.chat?;
        (self.before.as_ref().and_then(|b| b.chat) != Some(after)).then_some(after)
    }

    /// An agent who was not available (no live lease, or AWAY) is ONLINE now: routing may
    /// give it waiting chats.
    pub fn makes_agent_available(&self) -> bool {
        self.after.is_agent_online() && self.moves_availability()
    }

    /// Whether the number of agents online changed.
    pub fn moves_availability(&self) -> bool {
        let before = self.before.as_ref().is_some_and(Presence::is_agent_online);
        before != self.after.is_agent_online()
    }
}

/// Whether anyone can answer: what the customer widget shows ("an agent is online" or
/// "we'll reply by email").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    pub app: AppToken,
    /// Agents with a live lease, ONLINE.
    pub agents_online: u32,
    /// Agents with a live lease, AWAY.
    pub agents_away: u32,
}

/// Someone started or stopped looking at a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatViewer {
    pub app: AppToken,
    pub chat: ChatNumber,
    pub user_id: UserId,
    pub role: Role,
    pub viewing: bool,
    pub at: Timestamp,
}

/// Someone is typing in a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    pub app: AppToken,
    pub chat: ChatNumber,
    pub user_id: UserId,
    pub role: Role,
    pub at: Timestamp,
}

/// Where a page of presences starts. Presences are listed agents first, then customers,
/// each by user id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresenceCursor {
    pub role: Role,
    pub user_id: UserId,
}

impl PresenceCursor {
    pub fn of(presence: &Presence) -> PresenceCursor {
        PresenceCursor {
            role: presence.role,
            user_id: presence.user_id.clone(),
        }
    }

    /// Whether `presence` comes after this cursor in the listing order.
    pub fn precedes(&self, presence: &Presence) -> bool {
        let rank = |role: Role| role == Role::Customer;
        (rank(self.role), self.user_id.as_str()) < (rank(presence.role), presence.user_id.as_str())
    }
}

/// The storage of leases. Implementations: `embedded` (in memory) and `dynamodb`; the
/// conformance suite holds both to the same behaviour.
///
/// Stores keep leases as written, expired or not: the service decides what is live.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// The user's lease as stored, live or expired.
    async fn stored_presence(&self, app: &AppToken, user: &UserId) -> Result<Option<Presence>>;

    /// Writes `lease` if the stored lease is still `expected` (same version; `None`: no
    /// lease stored). Conflict otherwise.
    async fn put_presence(&self, lease: &Presence, expected: Option<&Presence>) -> Result<()>;

    /// Removes the lease if it is still `expected` (same version); whether it did.
    async fn remove_presence(&self, expected: &Presence) -> Result<bool>;

    /// The application's leases live at `now`, of one role or all, in the order of
    /// [`PresenceCursor`] (agents first, then by user id), after `after`, at most `limit`.
    async fn presences(
        &self,
        app: &AppToken,
        role: Option<Role>,
        now: Timestamp,
        after: Option<&PresenceCursor>,
        limit: u32,
    ) -> Result<Vec<Presence>>;

    /// Leases of any application that expired at or before `now`, at most `limit`, in
    /// any order.
    async fn expired_presences(&self, now: Timestamp, limit: u32) -> Result<Vec<Presence>>;
}

/// How often a heartbeat retries after losing a race with another heartbeat of the same
/// user (another tab): each retry reads the lease the winner wrote.
const HEARTBEAT_ATTEMPTS: usize = 4;

/// What a heartbeat asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub status: PresenceStatus,
    pub chat: Option<ChatNumber>,
}

impl Heartbeat {
    /// The lease this heartbeat writes at `now` over `stored`.
    fn lease(&self, user: &UserIdentity, stored: Option<&Presence>, now: Timestamp) -> Presence {
        Presence {
            app: user.app.clone(),
            user_id: user.user_id.clone(),
            role: user.role,
            status: self.status,
            chat: self.chat,
            last_seen_at: now,
            expires_at: Timestamp(now.0 + PRESENCE_LEASE_MS),
            version: stored.map_or(1, |s| s.version + 1),
        }
    }

    /// Whether `live` already says what this heartbeat says, with enough lease left that
    /// it need not be written.
    fn is_held_by(&self, live: &Presence, now: Timestamp) -> bool {
        live.status == self.status
            && live.chat == self.chat
            && live.expires_at.0 - now.0 >= PRESENCE_RENEW_BELOW_MS
    }
}

/// Folds typing calls: one event per user and chat per [`TYPING_INTERVAL_MS`]. Per process
/// (on AWS, per warm Lambda instance): a client that types keeps calling, and each
/// instance lets at most one call through per interval.
#[derive(Debug, Default)]
pub struct TypingGate {
    hasher: RandomState,
    last: Mutex<HashMap<u64, Timestamp>>,
}

impl TypingGate {
    /// Whether a typing call at `now` is published (and, if so, it is remembered).
    pub fn admit(&self, user: &UserIdentity, chat: ChatNumber, now: Timestamp) -> bool {
        let key = self
            .hasher
            .hash_one((user.app.as_str(), user.user_id.as_str(), chat.get()));
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last
            .get(&key)
            .is_some_and(|at| now.0 - at.0 < TYPING_INTERVAL_MS)
        {
            return false;
        }
        if last.len() >= TYPING_KEYS_RETAINED {
            last.retain(|_, at| now.0 - at.0 < TYPING_INTERVAL_MS);
        }
        last.insert(key, now);
        true
    }
}

/// Runs one heartbeat against the store: the use case behind `ChatService::heartbeat`,
/// after access checks. `check_chat` is called when the heartbeat names a chat the lease
/// did not (the caller must see it).
pub(crate) async fn beat<F, Fut>(
    store: &dyn PresenceStore,
    user: &UserIdentity,
    heartbeat: Heartbeat,
    now: impl Fn() -> Timestamp,
    check_chat: F,
) -> Result<PresenceChange>
where
    F: Fn(ChatNumber) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut checked = None;
    for _ in 0..HEARTBEAT_ATTEMPTS {
        let stored = store.stored_presence(&user.app, &user.user_id).await?;
        let now = now();
        let live = stored.clone().filter(|p| p.is_live(now));
        if heartbeat.status == PresenceStatus::Offline {
            let Some(live) = live else {
                let offline = Heartbeat {
                    status: PresenceStatus::Offline,
                    chat: None,
                }
                .lease(user, stored.as_ref(), now);
                return Ok(PresenceChange {
                    before: None,
                    after: offline,
                });
            };
            if store.remove_presence(&live).await? {
                let after = live.ended();
                return Ok(PresenceChange {
                    before: Some(live),
                    after,
                });
            }
            continue;
        }
        if let Some(live) = &live
            && heartbeat.is_held_by(live, now)
        {
            return Ok(PresenceChange {
                before: Some(live.clone()),
                after: live.clone(),
            });
        }
        if let Some(chat) = heartbeat.chat
            && live.as_ref().and_then(|l| l.chat) != Some(chat)
            && checked != Some(chat)
        {
            check_chat(chat).await?;
            checked = Some(chat);
        }
        let lease = heartbeat.lease(user, stored.as_ref(), now);
        match store.put_presence(&lease, stored.as_ref()).await {
            Ok(()) => {
                return Ok(PresenceChange {
                    before: live,
                    after: lease,
                });
            }
            Err(DomainError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(DomainError::Conflict(
        "presence is being changed by other heartbeats of this user; retry".into(),
    ))
}

/// How many agents' leases are read per page when counting or listing them all.
const AGENT_PAGE: u32 = 100;

impl ChatService {
    /// Holds, changes or gives up (OFFLINE) the caller's presence. A chat named must be one
    /// the caller sees. Answers what changed; only a transition is worth an event.
    pub async fn heartbeat(
        &self,
        caller: &Caller,
        app: &AppToken,
        heartbeat: Heartbeat,
    ) -> Result<PresenceChange> {
        let user = user_of(caller, app)?;
        let store = self.presence_store()?;
        let heartbeat = Heartbeat {
            chat: heartbeat
                .chat
                .filter(|_| heartbeat.status != PresenceStatus::Offline),
            ..heartbeat
        };
        beat(
            store,
            user,
            heartbeat,
            || self.now(),
            |chat| async move {
                match self.store().chat(&user.scope(chat)).await? {
                    Some(_) => Ok(()),
                    None => Err(DomainError::chat_not_found(chat)),
                }
            },
        )
        .await
    }

    /// The application's live presences (agents and customers, or one role), by user id:
    /// AGENT only.
    pub async fn presences(
        &self,
        caller: &Caller,
        app: &AppToken,
        role: Option<Role>,
        limit: PageSize,
        next_token: Option<&str>,
    ) -> Result<Page<Presence>> {
        let user = user_of(caller, app)?;
        if user.role != Role::Agent {
            return Err(DomainError::Forbidden(
                "only agents may list the application's presence".into(),
            ));
        }
        let context = format!("presences\0{}\0{}", app, role.map_or("", Role::as_str));
        let after = next_token
            .map(|t| self.pages().decode::<PresenceCursor>(&context, t))
            .transpose()?;
        let mut items = self
            .presence_store()?
            .presences(app, role, self.now(), after.as_ref(), limit.get() + 1)
            .await?;
        let next_token = if items.len() > limit.get() as usize {
            items.truncate(limit.get() as usize);
            items
                .last()
                .map(|last| self.pages().encode(&context, &PresenceCursor::of(last)))
        } else {
            None
        };
        Ok(Page { items, next_token })
    }

    /// Every live agent lease of the application.
    pub(crate) async fn live_agents(&self, app: &AppToken) -> Result<Vec<Presence>> {
        let store = self.presence_store()?;
        let now = self.now();
        let mut agents: Vec<Presence> = Vec::new();
        loop {
            let after = agents.last().map(PresenceCursor::of);
            let page = store
                .presences(app, Some(Role::Agent), now, after.as_ref(), AGENT_PAGE)
                .await?;
            let full = page.len() == AGENT_PAGE as usize;
            agents.extend(page);
            if !full {
                return Ok(agents);
            }
        }
    }

    /// How many agents are online and away: any user of the application.
    pub async fn availability(&self, caller: &Caller, app: &AppToken) -> Result<Availability> {
        user_of(caller, app)?;
        self.availability_now(app).await
    }

    /// The application's availability as it is now (what an event announces).
    pub async fn availability_now(&self, app: &AppToken) -> Result<Availability> {
        let agents = self.live_agents(app).await?;
        let count = |status| agents.iter().filter(|p| p.status == status).count() as u32;
        Ok(Availability {
            app: app.clone(),
            agents_online: count(PresenceStatus::Online),
            agents_away: count(PresenceStatus::Away),
        })
    }

    /// Who is looking at a chat: its participants may ask (the chat's customer sees the
    /// agents there, and itself).
    pub async fn chat_viewers(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
    ) -> Result<Vec<Presence>> {
        let user = user_of(caller, app)?;
        let Some(found) = self.store().chat(&user.scope(chat)).await? else {
            return Err(DomainError::chat_not_found(chat));
        };
        let now = self.now();
        let mut viewers: Vec<Presence> = self
            .live_agents(app)
            .await?
            .into_iter()
            .filter(|p| p.chat == Some(chat))
            .collect();
        let customer = self
            .presence_store()?
            .stored_presence(app, &found.customer_id)
            .await?;
        viewers.extend(customer.filter(|p| p.is_live(now) && p.chat == Some(chat)));
        Ok(viewers)
    }

    /// Someone types in a chat they see: the event to publish, or `None` when a call of the
    /// same user in the same chat was published less than [`TYPING_INTERVAL_MS`] ago.
    pub async fn typing(
        &self,
        caller: &Caller,
        app: &AppToken,
        chat: ChatNumber,
    ) -> Result<Option<Typing>> {
        let user = user_of(caller, app)?;
        if self.store().chat(&user.scope(chat)).await?.is_none() {
            return Err(DomainError::chat_not_found(chat));
        }
        let now = self.now();
        Ok(self.typing_gate().admit(user, chat, now).then(|| Typing {
            app: app.clone(),
            chat,
            user_id: user.user_id.clone(),
            role: user.role,
            at: now,
        }))
    }

    /// Ends the leases that expired (at most [`PRESENCE_SWEEP_BATCH`]): how many expired
    /// leases it found, and what each ending changed. Runs as the system (the dev server's
    /// timer, AWS's schedule), never for a caller. A lease renewed meanwhile is left alone.
    pub async fn sweep_presence(&self) -> Result<(usize, Vec<PresenceChange>)> {
        let store = self.presence_store()?;
        let expired = store
            .expired_presences(self.now(), PRESENCE_SWEEP_BATCH)
            .await?;
        let found = expired.len();
        let mut ended = Vec::with_capacity(found);
        for lease in expired {
            if store.remove_presence(&lease).await? {
                ended.push(PresenceChange {
                    after: lease.ended(),
                    before: Some(lease),
                });
            }
        }
        Ok((found, ended))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> UserIdentity {
        UserIdentity {
            app: AppToken::parse("app").unwrap(),
            user_id: UserId::parse("u").unwrap(),
            role,
        }
    }

    fn presence(status: PresenceStatus, chat: Option<u32>, role: Role) -> Presence {
        Heartbeat {
            status,
            chat: chat.map(|c| ChatNumber::new(c as i64).unwrap()),
        }
        .lease(&user(role), None, Timestamp(0))
    }

    #[test]
    fn transitions_are_status_or_chat_changes() {
        let online = presence(PresenceStatus::Online, None, Role::Agent);
        let viewing = presence(PresenceStatus::Online, Some(3), Role::Agent);
        let away = presence(PresenceStatus::Away, Some(3), Role::Agent);
        let change = |before: Option<&Presence>, after: &Presence| PresenceChange {
            before: before.cloned(),
            after: after.clone(),
        };
        assert!(change(None, &online).is_transition());
        assert!(change(None, &online).moves_availability());
        assert!(!change(Some(&online), &online).is_transition());
        let entered = change(Some(&online), &viewing);
        assert!(entered.is_transition());
        assert_eq!(entered.entered_chat().map(ChatNumber::get), Some(3));
        assert_eq!(entered.left_chat(), None);
        assert!(!entered.moves_availability());
        let stepped_away = change(Some(&viewing), &away);
        assert!(stepped_away.is_transition());
        assert!(stepped_away.moves_availability());
        assert_eq!(stepped_away.entered_chat(), None);
        let ended = change(Some(&away), &away.ended());
        assert_eq!(ended.left_chat().map(ChatNumber::get), Some(3));
        assert!(
            !ended.moves_availability(),
            "an AWAY agent was not counted online"
        );
        let offline = presence(PresenceStatus::Offline, None, Role::Customer);
        assert!(!change(None, &offline).is_transition());
    }

    #[test]
    fn a_heartbeat_that_changes_nothing_writes_only_in_the_lease_s_second_half() {
        let beat = Heartbeat {
            status: PresenceStatus::Online,
            chat: None,
        };
        let lease = beat.lease(&user(Role::Agent), None, Timestamp(0));
        assert!(beat.is_held_by(
            &lease,
            Timestamp(PRESENCE_LEASE_MS - PRESENCE_RENEW_BELOW_MS)
        ));
        assert!(!beat.is_held_by(
            &lease,
            Timestamp(PRESENCE_LEASE_MS - PRESENCE_RENEW_BELOW_MS + 1)
        ));
        let away = Heartbeat {
            status: PresenceStatus::Away,
            chat: None,
        };
        assert!(!away.is_held_by(&lease, Timestamp(0)));
    }

    #[test]
    fn typing_is_folded_per_user_and_chat() {
        let gate = TypingGate::default();
        let chat = |n| ChatNumber::new(n).unwrap();
        let agent = user(Role::Agent);
        assert!(gate.admit(&agent, chat(1), Timestamp(0)));
        assert!(!gate.admit(&agent, chat(1), Timestamp(TYPING_INTERVAL_MS - 1)));
        assert!(gate.admit(&agent, chat(2), Timestamp(1)));
        let customer = UserIdentity {
            user_id: UserId::parse("c").unwrap(),
            ..user(Role::Customer)
        };
        assert!(gate.admit(&customer, chat(1), Timestamp(1)));
        assert!(gate.admit(&agent, chat(1), Timestamp(TYPING_INTERVAL_MS)));
    }
}
