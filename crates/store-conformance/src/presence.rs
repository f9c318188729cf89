//! One behaviour suite for every [`PresenceStore`], run through
//! [`presence_conformance_tests!`](crate::presence_conformance_tests): the store's own
//! contract (versions, listing order, expiry), then the presence use cases of
//! [`ChatService`] on a clock the tests move (no sleeps).

use std::sync::Arc;
use std::time::Duration;

use chat_domain::limits::{PRESENCE_LEASE_MS, PRESENCE_RENEW_BELOW_MS};
use chat_domain::{
    AppToken, Caller, ChatService, ChatStore, ErrorCode, Heartbeat, ManualClock, PageSize,
    Presence, PresenceCursor, PresenceStatus, PresenceStore, Role, ServerKey, Timestamp,
    UserIdentity,
};

use crate::fixtures::{at, chat_no, create_app, create_chat, token, user};

pub use crate::routing::{
    concurrent_new_chats_never_put_an_agent_over_its_cap,
    loads_follow_assignments_and_status_changes,
    routing_goes_round_robin_to_online_agents_up_to_the_cap,
};

/// A presence store for one test, with the chat store its service checks chats in.
pub struct PresenceUnderTest {
    pub presence: Arc<dyn PresenceStore>,
    pub chats: Arc<dyn ChatStore>,
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

fn lease(app: &AppToken, id: &str, role: Role, expires_at: Timestamp, version: u64) -> Presence {
    Presence {
        app: app.clone(),
        user_id: user(id),
        role,
        status: PresenceStatus::Online,
        chat: None,
        last_seen_at: Timestamp(expires_at.0 - PRESENCE_LEASE_MS),
        expires_at,
        version,
    }
}

fn ids(presences: &[Presence]) -> Vec<&str> {
    presences.iter().map(|p| p.user_id.as_str()).collect()
}

pub async fn a_lease_is_replaced_only_over_the_version_it_was_read_at(t: PresenceUnderTest) {
    let store = t.presence;
    let app = token("app_p");
    // Given no lease, a write that expects one fails and one that expects none succeeds.
    let first = lease(&app, "u1", Role::Agent, at(90_000), 1);
    assert_eq!(
        store
            .put_presence(&first, Some(&first))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );
    store.put_presence(&first, None).await.unwrap();
    assert_eq!(
        store.stored_presence(&app, &user("u1")).await.unwrap(),
        Some(first.clone())
    );
    // When two writers read version 1, the first to write wins and the second conflicts.
    let second = Presence {
        status: PresenceStatus::Away,
        chat: Some(chat_no(3)),
        version: 2,
        ..lease(&app, "u1", Role::Agent, at(100_000), 2)
    };
    store.put_presence(&second, Some(&first)).await.unwrap();
    let late = lease(&app, "u1", Role::Agent, at(110_000), 2);
    assert_eq!(
        store
            .put_presence(&late, Some(&first))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );
    assert_eq!(
        store.put_presence(&late, None).await.unwrap_err().code(),
        ErrorCode::Conflict
    );
    // Then the stored lease is the winner's, whole.
    assert_eq!(
        store.stored_presence(&app, &user("u1")).await.unwrap(),
        Some(second.clone())
    );
    // A removal needs the version it saw.
    assert!(!store.remove_presence(&first).await.unwrap());
    assert!(store.remove_presence(&second).await.unwrap());
    assert!(!store.remove_presence(&second).await.unwrap());
    assert_eq!(
        store.stored_presence(&app, &user("u1")).await.unwrap(),
        None
    );
}

pub async fn presences_list_live_leases_agents_first_by_user_id_in_pages(t: PresenceUnderTest) {
    let store = t.presence;
    let app = token("app_list");
    let other = token("app_other");
    let now = at(0);
    for (id, role) in [
        ("a2", Role::Agent),
        ("c3", Role::Customer),
        ("a1", Role::Agent),
        ("c1", Role::Customer),
        ("c2", Role::Customer),
    ] {
        store
            .put_presence(&lease(&app, id, role, at(60_000), 1), None)
            .await
            .unwrap();
    }
    // An expired lease (not yet swept) and another application's are never listed.
    store
        .put_presence(&lease(&app, "c0", Role::Customer, now, 1), None)
        .await
        .unwrap();
    store
        .put_presence(&lease(&other, "a0", Role::Agent, at(60_000), 1), None)
        .await
        .unwrap();

    let all = store.presences(&app, None, now, None, 100).await.unwrap();
    assert_eq!(ids(&all), ["a1", "a2", "c1", "c2", "c3"]);
    let agents = store
        .presences(&app, Some(Role::Agent), now, None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&agents), ["a1", "a2"]);
    let customers = store
        .presences(&app, Some(Role::Customer), now, None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&customers), ["c1", "c2", "c3"]);

    // Pages of two, each after the last of the previous one, cover everything once.
    let mut seen = Vec::new();
    let mut after: Option<PresenceCursor> = None;
    loop {
        let page = store
            .presences(&app, None, now, after.as_ref(), 2)
            .await
            .unwrap();
        seen.extend(page.iter().map(|p| p.user_id.as_str().to_owned()));
        if page.len() < 2 {
            break;
        }
        after = page.last().map(PresenceCursor::of);
    }
    assert_eq!(seen, ["a1", "a2", "c1", "c2", "c3"]);
    let after_agents = PresenceCursor {
        role: Role::Agent,
        user_id: user("a2"),
    };
    let customers_after = store
        .presences(&app, Some(Role::Customer), now, Some(&after_agents), 100)
        .await
        .unwrap();
    assert_eq!(ids(&customers_after), ["c1", "c2", "c3"]);
}

pub async fn expired_leases_are_found_across_applications(t: PresenceUnderTest) {
    let store = t.presence;
    let (x, y) = (token("app_ex"), token("app_ey"));
    for (app, id, expires) in [
        (&x, "gone-1", at(1_000)),
        (&y, "gone-2", at(2_000)),
        (&x, "here", at(90_000)),
    ] {
        store
            .put_presence(&lease(app, id, Role::Customer, expires, 1), None)
            .await
            .unwrap();
    }
    let mut expired = store.expired_presences(at(2_000), 100).await.unwrap();
    expired.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(ids(&expired), ["gone-1", "gone-2"]);
    assert_eq!(expired[1].app, y);
    assert_eq!(
        store.expired_presences(at(2_000), 1).await.unwrap().len(),
        1
    );
    assert!(
        store
            .expired_presences(at(999), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A service on `t`'s stores whose clock the test moves, an application with chat 1 of
/// customer "c1", and callers.
struct World {
    service: ChatService,
    clock: ManualClock,
    app: AppToken,
}

/// A service on `t`'s chat and presence stores, with a clock the test moves.
pub(crate) fn service_on(t: &PresenceUnderTest) -> (ChatService, ManualClock) {
    let clock = ManualClock::starting_now();
    let service = ChatService::new(
        Arc::clone(&t.chats),
        ServerKey::generate(),
        Arc::new(clock.clone()),
    )
    .with_presence(Arc::clone(&t.presence));
    (service, clock)
}

impl World {
    async fn new(t: &PresenceUnderTest, app: &str) -> World {
        let (service, clock) = service_on(t);
        let app = create_app(&t.chats, app).await;
        create_chat(&t.chats, &app, "c1", service.now()).await;
        World {
            service,
            clock,
            app,
        }
    }

    fn caller(&self, id: &str, role: Role) -> Caller {
        crate::fixtures::caller(&self.app, id, role)
    }

    async fn try_beat(
        &self,
        who: &Caller,
        status: PresenceStatus,
        chat: Option<u32>,
    ) -> chat_domain::Result<chat_domain::PresenceChange> {
        let chat = chat.map(chat_no);
        self.service
            .heartbeat(who, &self.app, Heartbeat { status, chat })
            .await
    }

    async fn beat(
        &self,
        who: &Caller,
        status: PresenceStatus,
        chat: Option<u32>,
    ) -> chat_domain::PresenceChange {
        self.try_beat(who, status, chat).await.expect("heartbeat")
    }

    fn advance_ms(&self, ms: i64) {
        self.clock.advance(Duration::from_millis(ms as u64));
    }
}

pub async fn heartbeats_announce_transitions_and_write_only_when_the_lease_needs_it(
    t: PresenceUnderTest,
) {
    let world = World::new(&t, "app_beat").await;
    let agent = world.caller("agent-1", Role::Agent);

    // Given an agent's first heartbeat: a transition, online.
    let first = world.beat(&agent, PresenceStatus::Online, None).await;
    assert!(first.is_transition() && first.moves_availability());
    assert_eq!(first.before, None);
    let version = first.after.version;

    // When it beats again on time, nothing changes and nothing is written.
    world.advance_ms(30_000);
    let same = world.beat(&agent, PresenceStatus::Online, None).await;
    assert!(!same.is_transition());
    assert_eq!(same.after.version, version);

    // Once the lease has less than the renewal threshold left, the same heartbeat renews it.
    world.advance_ms(PRESENCE_LEASE_MS - PRESENCE_RENEW_BELOW_MS - 30_000 + 1);
    let renewed = world.beat(&agent, PresenceStatus::Online, None).await;
    assert!(!renewed.is_transition());
    assert_eq!(renewed.after.version, version + 1);
    assert_eq!(renewed.after.last_seen_at, world.service.now());

    // Stepping away is a transition that moves availability; viewing a chat is one too.
    let away = world.beat(&agent, PresenceStatus::Away, None).await;
    assert!(away.is_transition() && away.moves_availability());
    let viewing = world.beat(&agent, PresenceStatus::Away, Some(1)).await;
    assert!(viewing.is_transition() && !viewing.moves_availability());
    assert_eq!(viewing.entered_chat(), Some(chat_no(1)));

    // OFFLINE gives the lease up at once.
    let gone = world.beat(&agent, PresenceStatus::Offline, None).await;
    assert!(gone.is_transition());
    assert_eq!(gone.left_chat(), Some(chat_no(1)));
    assert_eq!(gone.after.status, PresenceStatus::Offline);
    let again = world.beat(&agent, PresenceStatus::Offline, None).await;
    assert!(!again.is_transition());
}

pub async fn leases_expire_by_themselves_and_the_sweep_announces_each_once(t: PresenceUnderTest) {
    let world = World::new(&t, "app_sweep").await;
    let agent = world.caller("agent-1", Role::Agent);
    let customer = world.caller("c1", Role::Customer);
    world.beat(&agent, PresenceStatus::Online, None).await;
    world.beat(&customer, PresenceStatus::Online, Some(1)).await;
    let availability = world
        .service
        .availability(&customer, &world.app)
        .await
        .unwrap();
    assert_eq!(
        (availability.agents_online, availability.agents_away),
        (1, 0)
    );

    // When the agent keeps beating and the customer stops, past the lease.
    let renew_at = PRESENCE_LEASE_MS - PRESENCE_RENEW_BELOW_MS + 1;
    world.advance_ms(renew_at);
    world.beat(&agent, PresenceStatus::Online, None).await;
    world.advance_ms(PRESENCE_LEASE_MS - renew_at);

    // Then the customer is gone from every read before any sweep...
    let page = world
        .service
        .presences(
            &agent,
            &world.app,
            None,
            PageSize::parse(None).unwrap(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(ids(&page.items), ["agent-1"]);
    assert!(
        world
            .service
            .chat_viewers(&agent, &world.app, chat_no(1))
            .await
            .unwrap()
            .is_empty()
    );
    // ...and the sweep announces its end once, with the chat it was viewing.
    let (found, ended) = world.service.sweep_presence().await.unwrap();
    assert_eq!(found, 1);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].after.user_id, user("c1"));
    assert_eq!(ended[0].after.status, PresenceStatus::Offline);
    assert_eq!(ended[0].left_chat(), Some(chat_no(1)));
    assert!(world.service.sweep_presence().await.unwrap().1.is_empty());

    // A lease renewed after expiring but before the sweep is a new presence, not swept.
    world.advance_ms(PRESENCE_LEASE_MS);
    let back = world.beat(&agent, PresenceStatus::Online, None).await;
    assert_eq!(back.before, None, "an expired lease is not live");
    assert!(back.is_transition());
    assert!(world.service.sweep_presence().await.unwrap().1.is_empty());
}

pub async fn presence_follows_the_access_rules(t: PresenceUnderTest) {
    let world = World::new(&t, "app_rules").await;
    let agent = world.caller("agent-1", Role::Agent);
    let owner = world.caller("c1", Role::Customer);
    let stranger = world.caller("c2", Role::Customer);
    world.beat(&agent, PresenceStatus::Online, Some(1)).await;
    world.beat(&owner, PresenceStatus::Online, Some(1)).await;

    // A customer may not name a chat that is not its own (it does not exist for it).
    let refused = world
        .try_beat(&stranger, PresenceStatus::Online, Some(1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::NotFound);
    let absent = world
        .try_beat(&agent, PresenceStatus::Online, Some(99))
        .await
        .unwrap_err();
    assert_eq!(absent.code(), ErrorCode::NotFound);

    // Only agents list the application's presence.
    let limit = PageSize::parse(None).unwrap();
    let listed = world
        .service
        .presences(&owner, &world.app, None, limit, None)
        .await
        .unwrap_err();
    assert_eq!(listed.code(), ErrorCode::Forbidden);
    // The chat's customer sees who views it; another customer does not see the chat.
    let viewers = world
        .service
        .chat_viewers(&owner, &world.app, chat_no(1))
        .await
        .unwrap();
    let mut seen = ids(&viewers);
    seen.sort();
    assert_eq!(seen, ["agent-1", "c1"]);
    let hidden = world
        .service
        .chat_viewers(&stranger, &world.app, chat_no(1))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), ErrorCode::NotFound);
    // Typing: only in a chat the caller sees, folded per user and chat.
    assert!(
        world
            .service
            .typing(&owner, &world.app, chat_no(1))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        world
            .service
            .typing(&owner, &world.app, chat_no(1))
            .await
            .unwrap()
            .is_none()
    );
    let typing = world
        .service
        .typing(&stranger, &world.app, chat_no(1))
        .await
        .unwrap_err();
    assert_eq!(typing.code(), ErrorCode::NotFound);

    // Another application sees nothing of this one, whatever its role.
    let other = Caller::User(UserIdentity {
        app: token("app_elsewhere"),
        user_id: user("agent-1"),
        role: Role::Agent,
    });
    for error in [
        world
            .service
            .presences(&other, &world.app, None, limit, None)
            .await
            .unwrap_err(),
        world
            .service
            .availability(&other, &world.app)
            .await
            .unwrap_err(),
        world
            .service
            .heartbeat(
                &other,
                &world.app,
                Heartbeat {
                    status: PresenceStatus::Online,
                    chat: None,
                },
            )
            .await
            .unwrap_err(),
    ] {
        assert_eq!(error.code(), ErrorCode::Forbidden);
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __presence_test_fns {
    ($make:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let under_test: $crate::presence::PresenceUnderTest = $make.await;
                $crate::presence::$behaviour(under_test).await;
            }
        )+
    };
}

/// Expands to one `#[tokio::test]` per presence behaviour; `$make` is a future of a
/// [`PresenceUnderTest`], evaluated afresh in each test.
#[macro_export]
macro_rules! presence_conformance_tests {
    ($make:expr) => {
        $crate::__presence_test_fns! {$make;
            a_lease_is_replaced_only_over_the_version_it_was_read_at,
            presences_list_live_leases_agents_first_by_user_id_in_pages,
            expired_leases_are_found_across_applications,
            heartbeats_announce_transitions_and_write_only_when_the_lease_needs_it,
            leases_expire_by_themselves_and_the_sweep_announces_each_once,
            presence_follows_the_access_rules,
            routing_goes_round_robin_to_online_agents_up_to_the_cap,
            loads_follow_assignments_and_status_changes,
            concurrent_new_chats_never_put_an_agent_over_its_cap,
        }
    };
}
