//! Routing behaviours (see `chat_domain::routing`), through [`ChatService`] on a chat store
//! and a presence store: round robin over available agents up to the cap, waiting chats
//! picked up, loads held to a recount through assignments and status changes, and no agent
//! over its cap under concurrent new chats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chat_domain::{
    AppToken, Caller, Chat, ChatFilter, ChatQuery, ChatService, ChatStatus, ErrorCode, Heartbeat,
    ManualClock, PresenceStatus, Role, RoutingArgs, UserId,
};
use tokio::task::JoinSet;

use crate::fixtures::*;
use crate::presence::PresenceUnderTest;

/// A service on `t`'s stores with a clock the test moves, and an application that routes
/// with cap `cap`.
struct Desk {
    service: Arc<ChatService>,
    clock: ManualClock,
    app: AppToken,
}

impl Desk {
    async fn new(t: &PresenceUnderTest, app: &str, cap: i64) -> Desk {
        let (service, clock) = crate::presence::service_on(t);
        let app = create_app(&t.chats, app).await;
        service
            .update_application(
                &Caller::Admin,
                &app,
                None,
                Some(RoutingArgs {
                    enabled: true,
                    max_open_chats: Some(cap),
                }),
            )
            .await
            .expect("turn routing on");
        Desk {
            service: Arc::new(service),
            clock,
            app,
        }
    }

    fn caller(&self, id: &str, role: Role) -> Caller {
        crate::fixtures::caller(&self.app, id, role)
    }

    async fn beat(&self, agent: &str, status: PresenceStatus) -> bool {
        self.service
            .heartbeat(
                &self.caller(agent, Role::Agent),
                &self.app,
                Heartbeat { status, chat: None },
            )
            .await
            .expect("heartbeat")
            .makes_agent_available()
    }

    /// A customer opens a chat; it is routed as `createChat` routes it.
    async fn open(&self, customer: &str) -> Chat {
        self.clock.advance(Duration::from_millis(1));
        let chat = self
            .service
            .create_chat(
                &self.caller(customer, Role::Customer),
                &self.app,
                None,
                None,
            )
            .await
            .expect("create_chat");
        let routed = self
            .service
            .route_new_chat(&chat)
            .await
            .expect("route_new_chat");
        routed.unwrap_or(chat)
    }

    async fn set_status(&self, chat: &Chat, status: ChatStatus) {
        self.service
            .update_chat(
                &self.caller("supervisor", Role::Agent),
                &self.app,
                chat.number,
                None,
                Some(status),
            )
            .await
            .expect("update_chat");
    }

    async fn pick_up(&self) -> Vec<Chat> {
        self.service
            .pick_up_waiting(&self.app)
            .await
            .expect("pick_up_waiting")
    }

    /// Open chats per assignee, counted from the chats, and the loads the store keeps.
    async fn loads(&self, agents: &[&str]) -> (BTreeMap<String, u32>, BTreeMap<String, u32>) {
        let store = self.service.store();
        let mut recount = BTreeMap::new();
        let mut kept = BTreeMap::new();
        let ids: Vec<UserId> = agents.iter().map(|a| user(a)).collect();
        for load in store
            .agent_loads(&self.app, &ids)
            .await
            .expect("agent_loads")
        {
            kept.insert(load.agent.as_str().to_owned(), load.open_chats);
        }
        for agent in &ids {
            let open = store
                .chats(&ChatQuery {
                    app: self.app.clone(),
                    customer: None,
                    status: Some(ChatStatus::Open),
                    filter: ChatFilter {
                        assignee: chat_domain::AssigneeFilter::Agent(agent.clone()),
                        team: None,
                    },
                    after: None,
                    limit: 1000,
                })
                .await
                .expect("chats");
            recount.insert(agent.as_str().to_owned(), open.len() as u32);
            kept.entry(agent.as_str().to_owned()).or_insert(0);
        }
        (recount, kept)
    }
}

fn assignee(chat: &Chat) -> Option<&str> {
    chat.assignee.as_ref().map(UserId::as_str)
}

pub async fn routing_goes_round_robin_to_online_agents_up_to_the_cap(t: PresenceUnderTest) {
    // Given an application routing with cap 2, agents a1 and a2 ONLINE and a3 AWAY.
    let desk = Desk::new(&t, "app_routing", 2).await;
    assert!(desk.beat("a1", PresenceStatus::Online).await);
    assert!(desk.beat("a2", PresenceStatus::Online).await);
    assert!(!desk.beat("a3", PresenceStatus::Away).await);

    // When five chats open: they alternate between a1 and a2 until both are full; the
    // fifth waits, unassigned.
    let mut chats = Vec::new();
    for i in 0..5 {
        chats.push(desk.open(&format!("c{i}")).await);
    }
    let got: Vec<Option<&str>> = chats.iter().map(assignee).collect();
    assert_eq!(got, [Some("a1"), Some("a2"), Some("a1"), Some("a2"), None]);
    assert_eq!(desk.pick_up().await, Vec::<Chat>::new(), "nobody has room");

    // When a1 resolves a chat: its slot frees and the waiting chat goes to it.
    desk.set_status(&chats[0], ChatStatus::Resolved).await;
    let picked = desk.pick_up().await;
    assert_eq!(picked.len(), 1);
    assert_eq!(
        (picked[0].number, assignee(&picked[0])),
        (chats[4].number, Some("a1"))
    );

    // When two more chats open, they wait; a3 coming ONLINE takes both, oldest first,
    // up to its cap.
    let c5 = desk.open("c5").await;
    let c6 = desk.open("c6").await;
    let c7 = desk.open("c7").await;
    assert_eq!(
        (assignee(&c5), assignee(&c6), assignee(&c7)),
        (None, None, None)
    );
    assert!(desk.beat("a3", PresenceStatus::Online).await);
    let picked: Vec<_> = desk
        .pick_up()
        .await
        .iter()
        .map(|c| (c.number, c.assignee.clone()))
        .collect();
    assert_eq!(
        picked,
        [(c5.number, Some(user("a3"))), (c6.number, Some(user("a3")))]
    );

    // A reopened chat counts again: a1 is over its cap by a manual choice only.
    desk.set_status(&chats[0], ChatStatus::Open).await;
    let (recount, kept) = desk.loads(&["a1", "a2", "a3"]).await;
    assert_eq!(recount, kept, "loads equal a recount");
    assert_eq!(kept["a1"], 3);

    // Routing off: a new chat waits and nothing is picked up.
    desk.service
        .update_application(
            &Caller::Admin,
            &desk.app,
            None,
            Some(RoutingArgs {
                enabled: false,
                max_open_chats: None,
            }),
        )
        .await
        .unwrap();
    desk.set_status(&chats[1], ChatStatus::Resolved).await;
    assert_eq!(assignee(&desk.open("c8").await), None);
    assert!(desk.pick_up().await.is_empty());
    let settings = desk
        .service
        .application(&Caller::Admin, &desk.app)
        .await
        .unwrap()
        .unwrap()
        .routing;
    assert_eq!((settings.enabled, settings.max_open_chats), (false, 2));

    // Only the admin changes routing; a bad cap is BadInput.
    for (who, code) in [
        (desk.caller("a1", Role::Agent), ErrorCode::Unauthorized),
        (desk.caller("c1", Role::Customer), ErrorCode::Unauthorized),
    ] {
        let refused = desk
            .service
            .update_application(
                &who,
                &desk.app,
                None,
                Some(RoutingArgs {
                    enabled: true,
                    max_open_chats: None,
                }),
            )
            .await
            .unwrap_err();
        assert!(
            refused.code() == code || refused.code() == ErrorCode::Forbidden,
            "{who:?}: {refused:?}"
        );
    }
    let bad = desk
        .service
        .update_application(
            &Caller::Admin,
            &desk.app,
            None,
            Some(RoutingArgs {
                enabled: true,
                max_open_chats: Some(0),
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), ErrorCode::BadInput);
}

pub async fn loads_follow_assignments_and_status_changes(t: PresenceUnderTest) {
    // Given routing with cap 1 and a1 ONLINE, and another application with a waiting chat.
    let desk = Desk::new(&t, "app_loads", 1).await;
    let other = Desk::new(&t, "app_loads_other", 5).await;
    let foreign = other.open("c-other").await;
    assert_eq!(assignee(&foreign), None);
    desk.beat("a1", PresenceStatus::Online).await;
    let agent = desk.caller("boss", Role::Agent);
    let assign = |chat: &Chat, to: Option<&str>| {
        let (svc, app, agent, number) = (
            Arc::clone(&desk.service),
            desk.app.clone(),
            agent.clone(),
            chat.number,
        );
        let to = to.map(user);
        async move {
            svc.assign_chat(&agent, &app, number, to, None)
                .await
                .expect("assign_chat")
        }
    };

    // A chat assigned by hand fills a1's slot: the next one waits.
    let first = desk.open("c1").await;
    assert_eq!(assignee(&first), Some("a1"));
    let second = desk.open("c2").await;
    assert_eq!(assignee(&second), None);

    // Transfers, unassignment and status changes each move the loads.
    assign(&first, Some("a2")).await;
    assert_eq!(
        desk.loads(&["a1", "a2"]).await.1,
        BTreeMap::from([("a1".into(), 0), ("a2".into(), 1)])
    );
    let picked = desk.pick_up().await;
    assert_eq!(picked.len(), 1);
    assert_eq!(
        (picked[0].number, assignee(&picked[0])),
        (second.number, Some("a1"))
    );
    desk.set_status(&first, ChatStatus::Resolved).await;
    // A resolved chat's transfer moves no load.
    assign(&first, Some("a1")).await;
    assign(&second, None).await;
    let (recount, kept) = desk.loads(&["a1", "a2"]).await;
    assert_eq!(recount, kept);
    assert_eq!(kept, BTreeMap::from([("a1".into(), 0), ("a2".into(), 0)]));
    desk.set_status(&first, ChatStatus::Open).await;
    let (recount, kept) = desk.loads(&["a1", "a2"]).await;
    assert_eq!(recount, kept);
    assert_eq!(kept["a1"], 1);

    // The other application's waiting chat never goes to this application's agents.
    assert!(other.pick_up().await.is_empty());
    let foreign_now = other
        .service
        .chat(&other.caller("x", Role::Agent), &other.app, foreign.number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(assignee(&foreign_now), None);
}

pub async fn concurrent_new_chats_never_put_an_agent_over_its_cap(t: PresenceUnderTest) {
    // Given routing with cap 5 and three agents ONLINE.
    let desk = Arc::new(Desk::new(&t, "app_routing_race", 5).await);
    for agent in ["a1", "a2", "a3"] {
        desk.beat(agent, PresenceStatus::Online).await;
    }

    // When 64 chats open at once.
    let mut opening = JoinSet::new();
    for i in 0..64 {
        let desk = Arc::clone(&desk);
        opening.spawn(async move { desk.open(&format!("c{i}")).await });
    }
    let mut per_agent: BTreeMap<String, u32> = BTreeMap::new();
    let mut waiting = 0;
    while let Some(chat) = opening.join_next().await {
        match assignee(&chat.expect("task")) {
            Some(agent) => *per_agent.entry(agent.to_owned()).or_default() += 1,
            None => waiting += 1,
        }
    }

    // Then each agent has exactly its cap, the rest wait, and the stored state agrees.
    assert_eq!(
        per_agent,
        BTreeMap::from([("a1".into(), 5), ("a2".into(), 5), ("a3".into(), 5)])
    );
    assert_eq!(waiting, 49);
    let (recount, kept) = desk.loads(&["a1", "a2", "a3"]).await;
    assert_eq!(recount, kept);
    assert_eq!(recount, per_agent);
    assert!(desk.pick_up().await.is_empty());
}
