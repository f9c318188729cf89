//! Assignment behaviours: who may assign, the inbox filters (each chat once across pages,
//! inbox order), "my unread" held to a recount, and assignments racing sends and reads.
//! Run through [`chat_domain::ChatService`] where the rule is the service's (roles).

use std::collections::BTreeMap;
use std::sync::Arc;

use chat_domain::{
    AppToken, Assignment, Caller, Chat, ChatFilter, ChatFilterArgs, ChatQuery, ChatService,
    ChatStatus, ChatUpdate, ErrorCode, ManualClock, PageSize, Role, ServerKey, Team, UserId,
};

use crate::fixtures::*;
use crate::unread::{mark, reader};

fn service(store: &Store) -> ChatService {
    ChatService::new(
        Arc::clone(store),
        ServerKey::generate(),
        Arc::new(ManualClock::starting_now()),
    )
}

fn team(raw: &str) -> Team {
    Team::parse(raw).unwrap().unwrap()
}

async fn assign(store: &Store, app: &AppToken, chat: u32, to: Option<&str>, now: i64) -> Chat {
    store
        .assign_chat(Assignment {
            scope: agent_scope(app, chat),
            assignee: to.map(user),
            team: None,
            now: at(now),
        })
        .await
        .expect("assign_chat")
}

/// Every chat of the filter, page by page of `limit` through the service, checking that
/// no chat comes twice.
async fn all_pages(
    svc: &ChatService,
    who: &Caller,
    app: &AppToken,
    filter: &ChatFilterArgs,
    limit: i64,
) -> Vec<u32> {
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = svc
            .inbox(
                who,
                app,
                filter,
                PageSize::parse(Some(limit)).unwrap(),
                token.as_deref(),
            )
            .await
            .expect("inbox page");
        assert!(page.items.len() <= limit as usize);
        seen.extend(page.items.iter().map(|c| c.number.get()));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a chat came twice: {seen:?}");
    seen
}

fn filter(
    assignee: Option<&str>,
    team: Option<&str>,
    status: Option<ChatStatus>,
) -> ChatFilterArgs {
    ChatFilterArgs {
        assignee: assignee.map(str::to_owned),
        team: team.map(str::to_owned),
        status,
    }
}

pub async fn agents_assign_take_transfer_and_unassign(store: Store) {
    // Given a chat of an application, an agent and its customer.
    let svc = service(&store);
    let app = create_app(&store, "app_assign").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let number = chat_no(1);
    let alice = caller(&app, "alice", Role::Agent);
    let customer = caller(&app, "cust-1", Role::Customer);

    // A customer may not assign, not even to an agent or its own chat.
    for to in [None, Some(user("alice")), Some(user("cust-1"))] {
        assert_code(
            svc.assign_chat(&customer, &app, number, to, None).await,
            ErrorCode::Forbidden,
            "a customer assigns",
        );
    }
    assert_eq!(get_chat(&store, &agent_scope(&app, 1)).await.assignee, None);

    // An agent takes it (assigns itself) with a team.
    let taken = svc
        .assign_chat(
            &alice,
            &app,
            number,
            Some(user("alice")),
            Some(Some(team("Billing"))),
        )
        .await
        .unwrap();
    assert_eq!(taken.assignee, Some(user("alice")));
    assert_eq!(taken.team, Some(team("Billing")));
    assert!(taken.updated_at > at(1));
    assert_eq!(taken.last_activity_at, at(1), "assignment is not activity");
    assert_eq!(get_chat(&store, &agent_scope(&app, 1)).await, taken);

    // Transfers it; the team stays when not given.
    let moved = svc
        .assign_chat(&alice, &app, number, Some(user("bob")), None)
        .await
        .unwrap();
    assert_eq!(moved.assignee, Some(user("bob")));
    assert_eq!(moved.team, Some(team("Billing")));
    // The same assignment again changes nothing.
    let again = svc
        .assign_chat(&alice, &app, number, Some(user("bob")), None)
        .await
        .unwrap();
    assert_eq!(again, moved);

    // Unassigns it and clears the team.
    let freed = svc
        .assign_chat(&alice, &app, number, None, Some(None))
        .await
        .unwrap();
    assert_eq!((freed.assignee, freed.team), (None, None));

    // Another application's agent sees nothing: Forbidden by token, NotFound by store.
    let other = create_app(&store, "app_assign_other").await;
    let stranger = caller(&other, "mallory", Role::Agent);
    assert_code(
        svc.assign_chat(&stranger, &app, number, Some(user("mallory")), None)
            .await,
        ErrorCode::Forbidden,
        "an agent of another application",
    );
    assert_code(
        store
            .assign_chat(Assignment {
                scope: agent_scope(&other, 1),
                assignee: Some(user("mallory")),
                team: None,
                now: at(9),
            })
            .await,
        ErrorCode::NotFound,
        "a chat number of another application",
    );
    assert_code(
        svc.assign_chat(&alice, &app, chat_no(2), Some(user("alice")), None)
            .await,
        ErrorCode::NotFound,
        "an absent chat",
    );
    assert_eq!(get_chat(&store, &agent_scope(&app, 1)).await.assignee, None);
    // And a customer may not filter by assignee or team.
    for args in [
        filter(Some("ME"), None, None),
        filter(None, Some("Billing"), None),
    ] {
        assert_code(
            svc.inbox(&customer, &app, &args, PageSize::parse(None).unwrap(), None)
                .await,
            ErrorCode::Forbidden,
            "a customer filters",
        );
    }
}

pub async fn inbox_filters_page_every_chat_once_in_inbox_order(store: Store) {
    // Given 30 chats: every third assigned to alice, every third to bob, the rest
    // unassigned; chats 1-10 in team Billing; every fourth resolved.
    let svc = service(&store);
    let app = create_app(&store, "app_filters").await;
    let mut expected: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for n in 1..=30u32 {
        create_chat(&store, &app, &format!("cust-{n}"), at(i64::from(n))).await;
    }
    // Activity in a different order from the numbers: later sends to low numbers.
    for n in (1..=30u32).step_by(7) {
        send(
            &store,
            &customer_scope(&app, n, &format!("cust-{n}")),
            "up",
            at(1000 + i64::from(n)),
        )
        .await;
    }
    for n in 1..=30u32 {
        let to = match n % 3 {
            0 => Some("alice"),
            1 => Some("bob"),
            _ => None,
        };
        if to.is_some() {
            assign(&store, &app, n, to, 2000).await;
        }
        if n <= 10 {
            store
                .assign_chat(Assignment {
                    scope: agent_scope(&app, n),
                    assignee: to.map(user),
                    team: Some(Some(team("Billing"))),
                    now: at(2001),
                })
                .await
                .unwrap();
        }
        if n % 4 == 0 {
            store
                .update_chat(
                    &agent_scope(&app, n),
                    ChatUpdate {
                        subject: None,
                        status: Some(ChatStatus::Resolved),
                        now: at(2002),
                    },
                )
                .await
                .unwrap();
        }
        let key = match to {
            Some("alice") => "alice",
            Some(_) => "bob",
            None => "none",
        };
        expected.entry(key).or_default().push(n);
    }
    // The whole inbox in order, as the unfiltered list gives it.
    let alice = caller(&app, "alice", Role::Agent);
    let inbox = all_pages(&svc, &alice, &app, &filter(None, None, None), 100).await;
    assert_eq!(inbox.len(), 30);
    let open = all_pages(
        &svc,
        &alice,
        &app,
        &filter(None, None, Some(ChatStatus::Open)),
        100,
    )
    .await;
    let in_order = |keep: &dyn Fn(u32) -> bool| -> Vec<u32> {
        inbox.iter().copied().filter(|n| keep(*n)).collect()
    };

    let cases: Vec<(ChatFilterArgs, Vec<u32>)> = vec![
        (filter(Some("ME"), None, None), in_order(&|n| n % 3 == 0)),
        (filter(Some("alice"), None, None), in_order(&|n| n % 3 == 0)),
        (filter(Some("bob"), None, None), in_order(&|n| n % 3 == 1)),
        (
            filter(Some("UNASSIGNED"), None, None),
            in_order(&|n| n % 3 == 2),
        ),
        (filter(Some("ANY"), None, None), inbox.clone()),
        (filter(None, Some("Billing"), None), in_order(&|n| n <= 10)),
        (filter(Some("carol"), None, None), Vec::new()),
        (filter(None, Some("Sales"), None), Vec::new()),
        (
            filter(Some("ME"), None, Some(ChatStatus::Open)),
            in_order(&|n| n % 3 == 0 && open.contains(&n)),
        ),
        (
            filter(Some("UNASSIGNED"), None, Some(ChatStatus::Resolved)),
            in_order(&|n| n % 3 == 2 && n % 4 == 0),
        ),
        (
            filter(None, Some("Billing"), Some(ChatStatus::Open)),
            in_order(&|n| n <= 10 && n % 4 != 0),
        ),
    ];
    for (args, want) in &cases {
        // Each page size: every chat exactly once, in inbox order.
        for limit in [1, 3, 7, 100] {
            let got = all_pages(&svc, &alice, &app, args, limit).await;
            assert_eq!(&got, want, "{args:?} by {limit}");
        }
    }
    assert_eq!(expected["alice"].len(), 10);

    // Another application sees none of them.
    let other = create_app(&store, "app_filters_other").await;
    let stranger = caller(&other, "alice", Role::Agent);
    assert!(
        all_pages(&svc, &stranger, &other, &filter(Some("ME"), None, None), 10)
            .await
            .is_empty()
    );

    // A page token of one filter does not continue another.
    let first = svc
        .inbox(
            &alice,
            &app,
            &filter(Some("ME"), None, None),
            PageSize::parse(Some(2)).unwrap(),
            None,
        )
        .await
        .unwrap();
    let token = first.next_token.expect("more than one page");
    assert_code(
        svc.inbox(
            &alice,
            &app,
            &filter(Some("UNASSIGNED"), None, None),
            PageSize::parse(Some(2)).unwrap(),
            Some(&token),
        )
        .await,
        ErrorCode::BadInput,
        "a token of another filter",
    );
    // Team and a specific assignee together are BadInput.
    assert_code(
        svc.inbox(
            &alice,
            &app,
            &filter(Some("ME"), Some("Billing"), None),
            PageSize::parse(None).unwrap(),
            None,
        )
        .await,
        ErrorCode::BadInput,
        "team and assignee together",
    );

    // A send moves a filtered chat to the top of its list.
    let top = expected["alice"][0];
    send(
        &store,
        &customer_scope(&app, top, &format!("cust-{top}")),
        "again",
        at(5000),
    )
    .await;
    let mine = store
        .chats(&ChatQuery {
            filter: ChatFilter {
                assignee: chat_domain::AssigneeFilter::Agent(user("alice")),
                team: None,
            },
            ..query(&app, 1)
        })
        .await
        .unwrap();
    assert_eq!(numbers_of_chats(&mine), vec![top]);
}

/// Agent-unread of each agent's assigned chats, recounted from the chats.
async fn recount_mine(store: &Store, app: &AppToken, chats: u32) -> BTreeMap<UserId, (u64, u64)> {
    let mut counts: BTreeMap<UserId, (u64, u64)> = BTreeMap::new();
    for n in 1..=chats {
        let chat = get_chat(store, &agent_scope(app, n)).await;
        if let Some(agent) = chat.assignee.clone() {
            let unread = u64::from(chat.unread_for(Role::Agent));
            let entry = counts.entry(agent).or_default();
            entry.0 += unread;
            entry.1 += u64::from(unread > 0);
        }
    }
    counts
}

async fn mine(store: &Store, app: &AppToken, agent: &str) -> (u64, u64) {
    let summary = store
        .unread_summary(&reader(app, agent, Role::Agent))
        .await
        .unwrap();
    (summary.assigned_unread, summary.assigned_unread_chats)
}

async fn assert_mine_equals_recount(store: &Store, app: &AppToken, chats: u32, agents: &[&str]) {
    let recount = recount_mine(store, app, chats).await;
    for agent in agents {
        let want = recount.get(&user(agent)).copied().unwrap_or_default();
        assert_eq!(mine(store, app, agent).await, want, "{agent}'s unread");
    }
}

pub async fn my_unread_follows_sends_reads_and_assignment(store: Store) {
    // Given two chats with customer messages, one assigned to alice.
    let app = create_app(&store, "app_mine").await;
    for n in 1..=2u32 {
        create_chat(&store, &app, &format!("cust-{n}"), at(1)).await;
        for i in 0..3 {
            send(
                &store,
                &customer_scope(&app, n, &format!("cust-{n}")),
                "hi",
                at(10 + i),
            )
            .await;
        }
    }
    assign(&store, &app, 1, Some("alice"), 20).await;
    assert_eq!(mine(&store, &app, "alice").await, (3, 1));
    assert_eq!(mine(&store, &app, "bob").await, (0, 0));
    // The customer's summary has no "mine".
    let customer = store
        .unread_summary(&reader(&app, "cust-1", Role::Customer))
        .await
        .unwrap();
    assert_eq!(
        (customer.assigned_unread, customer.assigned_unread_chats),
        (0, 0)
    );

    // A customer message adds; the agents' team counter is unchanged by assignment.
    send(&store, &customer_scope(&app, 1, "cust-1"), "more", at(30)).await;
    assert_eq!(mine(&store, &app, "alice").await, (4, 1));
    let team = store
        .unread_summary(&reader(&app, "alice", Role::Agent))
        .await
        .unwrap();
    assert_eq!((team.total_unread, team.unread_chats), (7, 2));

    // A transfer moves the chat's unread to bob.
    assign(&store, &app, 1, Some("bob"), 40).await;
    assert_eq!(mine(&store, &app, "alice").await, (0, 0));
    assert_eq!(mine(&store, &app, "bob").await, (4, 1));

    // Any agent reading it clears bob's (the team watermark is what counts).
    mark(&store, &reader(&app, "carol", Role::Agent), 1, Some(2))
        .await
        .unwrap();
    assert_eq!(mine(&store, &app, "bob").await, (2, 1));
    mark(&store, &reader(&app, "carol", Role::Agent), 1, None)
        .await
        .unwrap();
    assert_eq!(mine(&store, &app, "bob").await, (0, 0));

    // An agent's reply and then unassigning: nothing left over.
    send(&store, &customer_scope(&app, 2, "cust-2"), "x", at(50)).await;
    assign(&store, &app, 2, Some("bob"), 60).await;
    assert_eq!(mine(&store, &app, "bob").await, (4, 1));
    send(&store, &agent_scope(&app, 2), "answer", at(70)).await;
    assert_eq!(mine(&store, &app, "bob").await, (0, 0));
    send(&store, &customer_scope(&app, 2, "cust-2"), "thanks", at(80)).await;
    assign(&store, &app, 2, None, 90).await;
    assert_eq!(mine(&store, &app, "bob").await, (0, 0));
    assert_mine_equals_recount(&store, &app, 2, &["alice", "bob", "carol"]).await;
}

pub async fn concurrent_assignments_sends_and_reads_keep_my_unread_exact(store: Store) {
    // Given 4 chats, and many writers at once: customers sending, agents transferring
    // chats among three agents and reading them.
    let app = create_app(&store, "app_mine_race").await;
    let chats = 4u32;
    for n in 1..=chats {
        create_chat(&store, &app, &format!("cust-{n}"), at(1)).await;
    }
    let agents = ["a1", "a2", "a3"];
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..6u32 {
        for n in 1..=chats {
            let s = Arc::clone(&store);
            let a = app.clone();
            tasks.spawn(async move {
                send(
                    &s,
                    &customer_scope(&a, n, &format!("cust-{n}")),
                    "m",
                    at(100 + i64::from(round)),
                )
                .await;
            });
            let s = Arc::clone(&store);
            let a = app.clone();
            let to = agents[((round + n) % 3) as usize];
            tasks.spawn(async move {
                assign(&s, &a, n, Some(to), 200 + i64::from(round)).await;
            });
            if round % 2 == 1 {
                let s = Arc::clone(&store);
                let a = app.clone();
                tasks.spawn(async move {
                    mark(&s, &reader(&a, "a1", Role::Agent), n, None)
                        .await
                        .unwrap();
                });
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a writer panicked");
    }
    // Then every agent's counter equals a recount of its chats.
    assert_mine_equals_recount(&store, &app, chats, &agents).await;
}
