//! Routing: open chats without an assignee go to available agents, by round robin, each agent
//! up to a cap of open assigned chats.
//!
//! - Per application, off by default ([`RoutingSettings`], set with `updateApplication`).
//! - **Available** is a live presence lease with status ONLINE (not AWAY): an agent takes
//!   part by heartbeating ONLINE and stops by going AWAY or OFFLINE.
//! - **Round robin**: the available agent routed to least recently goes first (one never
//!   routed to before any other), skipping agents at the cap. An agent's **load** is its
//!   open assigned chats however they were assigned (routing, assignChat), moved in the
//!   same write as every assignment and status change.
//! - **Race-free**: routing a chat is one conditional write on both stores: the chat is
//!   still open and unassigned, the agent's load is below the cap and the agent has not been
//!   routed to since it was read. Two chats never take an agent's last slot; two routings
//!   that read the same agent first spread over agents instead of piling on one.
//! - **When**: a new chat is routed as it is created. A chat that finds no agent waits
//!   unassigned and is picked up, oldest first, when an agent becomes available (a
//!   heartbeat that turns ONLINE), when a slot frees (a chat resolved, unassigned or
//!   transferred), when a chat enters the queue (unassigned, reopened), and when routing is
//!   turned on or its cap raised.
//! - **Not reassigned**: an agent whose lease ends keeps its chats; a dropped connection
//!   must not scatter a conversation. Agents hand chats over with assignChat, and the
//!   assignee filter shows whose chats wait.
//! - Manual assignment ignores the cap: a supervisor may give an agent one more chat.

use async_trait::async_trait;

use crate::error::{DomainError, Result};
use crate::model::{AppToken, Chat, ChatNumber, Timestamp, UserId};
use crate::presence::PresenceStatus;
use crate::service::ChatService;
use crate::store::ChatScope;

/// The default cap of open assigned chats per agent.
pub const ROUTING_CAP_DEFAULT: u32 = 5;
/// The highest cap an application may set.
pub const ROUTING_CAP_MAX: u32 = 100;
/// How many waiting chats one pick-up routes at most (a request's bounded work; the next
/// trigger routes more).
pub const PICKUP_BATCH: u32 = 25;
/// How many times routing one chat reads the agents' loads again after losing every
/// candidate to concurrent routings. Each lost candidate is another routing's success, so
/// rounds end when the slots do; this bounds the work of one request.
const ROUTE_ROUNDS: usize = 32;

/// An application's routing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingSettings {
    pub enabled: bool,
    /// Open assigned chats an agent may hold before routing passes it over (1..=100).
    pub max_open_chats: u32,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            enabled: false,
            max_open_chats: ROUTING_CAP_DEFAULT,
        }
    }
}

impl RoutingSettings {
    /// Settings from `updateApplication`'s input: `max_open_chats` absent keeps `current`'s.
    pub fn parse(
        enabled: bool,
        max_open_chats: Option<i64>,
        current: RoutingSettings,
    ) -> Result<Self> {
        let max_open_chats = match max_open_chats {
            None => current.max_open_chats,
            Some(cap) if (1..=i64::from(ROUTING_CAP_MAX)).contains(&cap) => cap as u32,
            Some(_) => {
                return Err(DomainError::bad_input(format!(
                    "routing.maxOpenChatsPerAgent must be 1 to {ROUTING_CAP_MAX}"
                )));
            }
        };
        Ok(RoutingSettings {
            enabled,
            max_open_chats,
        })
    }

    /// Whether changing from `self` to `new` may let waiting chats be routed.
    pub fn opens_room(&self, new: &RoutingSettings) -> bool {
        new.enabled && (!self.enabled || new.max_open_chats > self.max_open_chats)
    }
}

/// The `routing` input of `updateApplication` before validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingArgs {
    pub enabled: bool,
    pub max_open_chats: Option<i64>,
}

/// An agent's routing state: its open assigned chats and when routing last gave it one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLoad {
    pub agent: UserId,
    pub open_chats: u32,
    pub routed_at: Option<Timestamp>,
}

/// One routing write: assign `chat` to `agent` if the chat is open and unassigned, the
/// agent holds fewer than `cap` open chats and was last routed to at `seen_routed_at`.
#[derive(Debug, Clone)]
pub struct Route {
    pub scope: ChatScope,
    pub agent: UserId,
    pub cap: u32,
    pub seen_routed_at: Option<Timestamp>,
    pub now: Timestamp,
}

impl Route {
    /// The routing time the write gives the agent: `now`, and strictly later than the time
    /// read, so that a routing that read the same time fails its check.
    pub fn routed_at(&self) -> Timestamp {
        Timestamp(
            self.now
                .0
                .max(self.seen_routed_at.map_or(i64::MIN, |t| t.0 + 1)),
        )
    }
}

/// What a routing write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// The chat is the agent's now.
    Assigned(Box<Chat>),
    /// The chat is no longer waiting (assigned, resolved or gone): nothing to route.
    NotWaiting,
    /// The agent is at its cap or was routed another chat since its load was read.
    AgentBusy,
}

/// The store's side of routing. Implementations: `embedded` and `dynamodb`; the conformance
/// suite holds both to the same behaviour.
#[async_trait]
pub trait RoutingStore: Send + Sync + 'static {
    /// The loads of these agents of the application, in any order; an agent never assigned
    /// a chat has load 0 and no routing time (it may be left out).
    async fn agent_loads(&self, app: &AppToken, agents: &[UserId]) -> Result<Vec<AgentLoad>>;

    /// One routing write (see [`Route`]).
    async fn route_chat(&self, route: &Route) -> Result<Routed>;

    /// The application's open chats without an assignee, longest waiting (least recent
    /// activity) first, at most `limit`.
    async fn waiting_chats(&self, app: &AppToken, limit: u32) -> Result<Vec<Chat>>;
}

impl ChatService {
    /// The application's routing settings, when routing is on.
    async fn routing_on(&self, app: &AppToken) -> Result<Option<RoutingSettings>> {
        Ok(self
            .store()
            .application(app)
            .await?
            .map(|a| a.routing)
            .filter(|r| r.enabled))
    }

    /// The available agents of the application.
    async fn available_agents(&self, app: &AppToken) -> Result<Vec<UserId>> {
        Ok(self
            .live_agents(app)
            .await?
            .into_iter()
            .filter(|p| p.status == PresenceStatus::Online)
            .map(|p| p.user_id)
            .collect())
    }

    /// Routes a chat just created (`createChat`'s answer), when the application routes: the
    /// chat as assigned, or `None` when it stays as it is (routing off, no agent available).
    /// Runs as the system after the chat is created; a chat it fails to route waits for a
    /// pick-up.
    pub async fn route_new_chat(&self, chat: &Chat) -> Result<Option<Chat>> {
        let Some(settings) = self.routing_on(&chat.app).await? else {
            return Ok(None);
        };
        let agents = self.available_agents(&chat.app).await?;
        Ok(
            match self
                .route_one(&chat.app, chat.number, &agents, settings)
                .await?
            {
                Outcome::Assigned(assigned) => Some(*assigned),
                Outcome::NotWaiting | Outcome::NoRoom => None,
            },
        )
    }

    /// Routes the application's waiting chats, longest waiting first, while available agents
    /// have room (at most [`PICKUP_BATCH`]): the chats it assigned. Nothing when routing is
    /// off. Runs as the system after a change that may let a chat be routed; the caller
    /// publishes what it returns.
    pub async fn pick_up_waiting(&self, app: &AppToken) -> Result<Vec<Chat>> {
        let Some(settings) = self.routing_on(app).await? else {
            return Ok(Vec::new());
        };
        let agents = self.available_agents(app).await?;
        if agents.is_empty() {
            return Ok(Vec::new());
        }
        let waiting = self.store().waiting_chats(app, PICKUP_BATCH).await?;
        let mut routed = Vec::new();
        for chat in waiting {
            match self.route_one(app, chat.number, &agents, settings).await? {
                Outcome::Assigned(assigned) => routed.push(*assigned),
                Outcome::NotWaiting => {}
                // No agent has room: the chats after this one would find none either.
                Outcome::NoRoom => break,
            }
        }
        Ok(routed)
    }

    /// Routes one chat to the first of `agents` in round-robin order that has room.
    async fn route_one(
        &self,
        app: &AppToken,
        number: ChatNumber,
        agents: &[UserId],
        settings: RoutingSettings,
    ) -> Result<Outcome> {
        if agents.is_empty() {
            return Ok(Outcome::NoRoom);
        }
        let store = self.store();
        for _ in 0..ROUTE_ROUNDS {
            let candidates = round_robin(agents, store.agent_loads(app, agents).await?, settings);
            if candidates.is_empty() {
                return Ok(Outcome::NoRoom);
            }
            for candidate in candidates {
                let route = Route {
                    scope: ChatScope {
                        app: app.clone(),
                        chat: number,
                        customer: None,
                    },
                    agent: candidate.agent,
                    cap: settings.max_open_chats,
                    seen_routed_at: candidate.routed_at,
                    now: self.now(),
                };
                match store.route_chat(&route).await? {
                    Routed::Assigned(chat) => return Ok(Outcome::Assigned(chat)),
                    Routed::NotWaiting => return Ok(Outcome::NotWaiting),
                    Routed::AgentBusy => {}
                }
            }
        }
        // Every candidate went to concurrent routings, round after round: the chat waits
        // for the next pick-up.
        Ok(Outcome::NoRoom)
    }
}

/// What routing one chat came to.
enum Outcome {
    Assigned(Box<Chat>),
    NotWaiting,
    NoRoom,
}

/// The agents with room, in round-robin order: never routed to first, then least recently
/// routed to; ties by user id.
fn round_robin(
    agents: &[UserId],
    loads: Vec<AgentLoad>,
    settings: RoutingSettings,
) -> Vec<AgentLoad> {
    let mut candidates: Vec<AgentLoad> = agents
        .iter()
        .map(|agent| {
            loads
                .iter()
                .find(|l| &l.agent == agent)
                .cloned()
                .unwrap_or(AgentLoad {
                    agent: agent.clone(),
                    open_chats: 0,
                    routed_at: None,
                })
        })
        .filter(|l| l.open_chats < settings.max_open_chats)
        .collect();
    candidates.sort_by(|a, b| {
        a.routed_at
            .map(|t| t.0)
            .cmp(&b.routed_at.map(|t| t.0))
            .then_with(|| a.agent.as_str().cmp(b.agent.as_str()))
    });
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> UserId {
        UserId::parse(raw).unwrap()
    }

    fn load(agent: &str, open_chats: u32, routed_at: Option<i64>) -> AgentLoad {
        AgentLoad {
            agent: id(agent),
            open_chats,
            routed_at: routed_at.map(Timestamp),
        }
    }

    #[test]
    fn round_robin_goes_to_the_least_recently_routed_agent_with_room() {
        let settings = RoutingSettings {
            enabled: true,
            max_open_chats: 2,
        };
        let agents = [id("a"), id("b"), id("c"), id("d")];
        let order = round_robin(
            &agents,
            vec![
                load("a", 1, Some(30)),
                load("b", 2, Some(10)),
                load("c", 0, Some(20)),
            ],
            settings,
        );
        let names: Vec<&str> = order.iter().map(|l| l.agent.as_str()).collect();
        // d was never routed to; b is full; c before a by routing time.
        assert_eq!(names, ["d", "c", "a"]);
        // Loads of agents that are not available are ignored.
        let order = round_robin(&agents[..1], vec![load("z", 0, None)], settings);
        assert_eq!(order.len(), 1);
        assert_eq!(order[0].agent.as_str(), "a");
    }

    #[test]
    fn settings_keep_the_cap_unless_given_and_bound_it() {
        let current = RoutingSettings {
            enabled: false,
            max_open_chats: 7,
        };
        assert_eq!(
            RoutingSettings::parse(true, None, current).unwrap(),
            RoutingSettings {
                enabled: true,
                max_open_chats: 7
            }
        );
        assert_eq!(
            RoutingSettings::parse(true, Some(100), current)
                .unwrap()
                .max_open_chats,
            100
        );
        assert!(RoutingSettings::parse(true, Some(0), current).is_err());
        assert!(RoutingSettings::parse(true, Some(101), current).is_err());
        assert!(current.opens_room(&RoutingSettings {
            enabled: true,
            max_open_chats: 7
        }));
        let on = RoutingSettings {
            enabled: true,
            max_open_chats: 7,
        };
        assert!(!on.opens_room(&RoutingSettings {
            enabled: true,
            max_open_chats: 6
        }));
        assert!(on.opens_room(&RoutingSettings {
            enabled: true,
            max_open_chats: 8
        }));
        assert!(!on.opens_room(&RoutingSettings {
            enabled: false,
            max_open_chats: 9
        }));
    }
}
