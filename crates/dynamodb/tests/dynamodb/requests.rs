//! The request budget of every store operation, counted by the SDK interceptor against the
//! emulator: the figures in docs/dynamodb.md.

use chat_domain::*;
use chat_dynamodb::RequestCounter;
use chat_store_conformance::fixtures::*;

async fn setup() -> (Store, RequestCounter) {
    let (store, counter) = chat_dynamodb::moto::fresh_store().await;
    (std::sync::Arc::new(store), counter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_single_item_reads_stay_within_their_request_budget() {
    let (store, counter) = setup().await;
    let app = assert_requests!(
        counter,
        "createApplication",
        create_app(&store, "app_budget").await,
        &[("PutItem", 1)]
    );
    assert_requests!(
        counter,
        "application",
        store.application(&app).await.unwrap(),
        &[("GetItem", 1)]
    );
    assert_requests!(
        counter,
        "updateApplication",
        store
            .update_application(
                &app,
                chat_domain::ApplicationUpdate {
                    name: Some(AppName::parse("Renamed").unwrap()),
                    routing: None,
                    now: at(1),
                },
            )
            .await
            .unwrap(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "createChat",
        create_chat(&store, &app, "cust-1", at(2)).await,
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    let scope = customer_scope(&app, 1, "cust-1");
    assert_requests!(
        counter,
        "chat (empty)",
        get_chat(&store, &scope).await,
        &[("Query", 1)]
    );
    assert_requests!(
        counter,
        "sendMessage",
        send(&store, &scope, "hello", at(3)).await,
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    let keyed = || NewMessage {
        client_message_id: Some(cmid("k-1")),
        ..new_message(&scope, "keyed", at(4))
    };
    let first = assert_requests!(
        counter,
        "sendMessage with clientMessageId",
        store.send_message(keyed()).await.unwrap(),
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    assert!(first.created);
    let retry = assert_requests!(
        counter,
        "sendMessage retried (same clientMessageId)",
        store.send_message(keyed()).await.unwrap(),
        &[("GetItem", 2), ("TransactWriteItems", 1)]
    );
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    let chat = assert_requests!(
        counter,
        "chat (with its last message)",
        get_chat(&store, &scope).await,
        &[("Query", 1)]
    );
    assert_eq!(chat.last_message, Some(first.message.clone()));
    assert_requests!(
        counter,
        "message",
        store.message(&scope, msg_no(1)).await.unwrap(),
        &[("GetItem", 1)]
    );
    assert_requests!(
        counter,
        "message (another customer's chat)",
        store
            .message(&customer_scope(&app, 1, "cust-2"), msg_no(1))
            .await
            .unwrap(),
        &[("GetItem", 1)]
    );
    assert_requests!(
        counter,
        "messages (oldest first)",
        store
            .messages(&scope, &range(None, None, false, 20))
            .await
            .unwrap(),
        &[("Query", 1)]
    );
    assert_requests!(
        counter,
        "messages (after the last: empty page)",
        store
            .messages(&scope, &range(Some(2), None, false, 20))
            .await
            .unwrap(),
        &[("Query", 1)]
    );
    assert_requests!(
        counter,
        "messages (newest first, before)",
        store
            .messages(&scope, &range(None, Some(2), true, 20))
            .await
            .unwrap(),
        &[("Query", 1)]
    );
    let found = assert_requests!(
        counter,
        "messages by number (search hits)",
        store
            .messages_by_number(&scope, &[msg_no(2), msg_no(1), msg_no(7)])
            .await
            .unwrap(),
        &[("BatchGetItem", 1)]
    );
    assert_eq!(numbers_of_messages(&found), vec![1, 2]);
    assert_requests!(
        counter,
        "messages by number (another customer's chat)",
        store
            .messages_by_number(&customer_scope(&app, 1, "cust-2"), &[msg_no(1)])
            .await
            .unwrap_err(),
        &[("BatchGetItem", 1)]
    );
    assert_requests!(
        counter,
        "editMessage",
        store
            .edit_message(change(&scope, 1, Some("cust-1"), at(5)), body("edited"))
            .await
            .unwrap(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "editMessage by another sender (Forbidden)",
        store
            .edit_message(change(&scope, 1, Some("cust-9"), at(5)), body("x"))
            .await
            .unwrap_err(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "deleteMessage",
        store
            .delete_message(change(&scope, 2, None, at(6)))
            .await
            .unwrap(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "deleteMessage again",
        store
            .delete_message(change(&scope, 2, None, at(6)))
            .await
            .unwrap(),
        &[("UpdateItem", 1)]
    );
    assert_requests!(
        counter,
        "deleteMessage of a missing message",
        store
            .delete_message(change(&scope, 9, None, at(6)))
            .await
            .unwrap_err(),
        &[("UpdateItem", 1), ("GetItem", 1)]
    );
    let updated = assert_requests!(
        counter,
        "updateChat",
        store
            .update_chat(
                &scope,
                ChatUpdate {
                    subject: Some(Some(subject("Billing"))),
                    status: Some(ChatStatus::Resolved),
                    now: at(7),
                },
            )
            .await
            .unwrap(),
        &[("Query", 1), ("UpdateItem", 1)]
    );
    assert_eq!(updated.last_message.map(|m| m.deleted), Some(true));
    assert_requests!(
        counter,
        "sendMessage to a missing chat",
        store
            .send_message(new_message(&agent_scope(&app, 9), "x", at(8)))
            .await
            .unwrap_err(),
        &[("GetItem", 1)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_stay_within_their_request_budget() {
    let (store, counter) = setup().await;
    let app = create_app(&store, "app_unread_budget").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let customer = UserIdentity {
        app: app.clone(),
        user_id: user("cust-1"),
        role: Role::Customer,
    };
    let agent = UserIdentity {
        app: app.clone(),
        user_id: user("agent-1"),
        role: Role::Agent,
    };
    let mark = |who: &UserIdentity, up_to: Option<u32>| MarkRead {
        scope: who.scope(chat_no(1)),
        reader: who.clone(),
        up_to: up_to.map(msg_no),
    };
    // Sends still cost 2 requests, counters and watermarks included.
    assert_requests!(
        counter,
        "sendMessage (customer: agents' counter +1)",
        send(&store, &customer.scope(chat_no(1)), "hello", at(2)).await,
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    assert_requests!(
        counter,
        "sendMessage (customer, chat already unread)",
        send(&store, &customer.scope(chat_no(1)), "anyone?", at(3)).await,
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    let summary = assert_requests!(
        counter,
        "unreadSummary (agent: every shard)",
        store.unread_summary(&agent).await.unwrap(),
        &[("BatchGetItem", 1)]
    );
    assert_eq!((summary.total_unread, summary.unread_chats), (2, 1));
    let unread = assert_requests!(
        counter,
        "unreadChats (agent)",
        store.unread_chats(&agent, None, 100).await.unwrap(),
        &[("Query", u64::from(chat_dynamodb::table::UNREAD_SHARDS))]
    );
    assert_eq!(unread, vec![chat_no(1)]);
    let receipt = assert_requests!(
        counter,
        "markChatRead (agent)",
        store.mark_chat_read(mark(&agent, Some(1))).await.unwrap(),
        &[("BatchGetItem", 1), ("TransactWriteItems", 1)]
    );
    assert_eq!((receipt.last_read_number, receipt.unread_count), (1, 1));
    assert_requests!(
        counter,
        "markChatRead (agent, nothing moves)",
        store.mark_chat_read(mark(&agent, Some(1))).await.unwrap(),
        &[("BatchGetItem", 1)]
    );
    assert_requests!(
        counter,
        "markChatRead (upTo beyond the last: BadInput)",
        store
            .mark_chat_read(mark(&agent, Some(9)))
            .await
            .unwrap_err(),
        &[("BatchGetItem", 1)]
    );
    assert_requests!(
        counter,
        "sendMessage (agent: own watermark too)",
        send(&store, &agent.scope(chat_no(1)), "hi!", at(4)).await,
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    let summary = assert_requests!(
        counter,
        "unreadSummary (customer)",
        store.unread_summary(&customer).await.unwrap(),
        &[("GetItem", 1)]
    );
    assert_eq!((summary.total_unread, summary.unread_chats), (1, 1));
    assert_requests!(
        counter,
        "unreadChats (customer)",
        store.unread_chats(&customer, None, 100).await.unwrap(),
        &[("Query", 2)]
    );
    let receipt = assert_requests!(
        counter,
        "markChatRead (customer)",
        store.mark_chat_read(mark(&customer, None)).await.unwrap(),
        &[("GetItem", 1), ("TransactWriteItems", 1)]
    );
    assert_eq!((receipt.last_read_number, receipt.unread_count), (3, 0));
    assert_requests!(
        counter,
        "markChatRead (another customer's chat)",
        store
            .mark_chat_read(MarkRead {
                scope: customer_scope(&app, 1, "cust-2"),
                reader: UserIdentity {
                    user_id: user("cust-2"),
                    ..customer.clone()
                },
                up_to: None,
            })
            .await
            .unwrap_err(),
        &[("GetItem", 1)]
    );
    let summary = assert_requests!(
        counter,
        "unreadSummary (customer, all read)",
        store.unread_summary(&customer).await.unwrap(),
        &[("GetItem", 1)]
    );
    assert_eq!((summary.total_unread, summary.unread_chats), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_chats_queries_each_index_partition_once_and_batches_last_messages() {
    let (store, counter) = setup().await;
    let app = create_app(&store, "app_lists").await;
    for n in 1..=6 {
        create_chat(&store, &app, &format!("cust-{}", n % 2), at(n)).await;
        send(&store, &agent_scope(&app, n as u32), "hi", at(10 + n)).await;
    }
    counter.take();
    let shards = u64::from(chat_dynamodb::table::INBOX_SHARDS);
    let all = assert_requests!(
        counter,
        "chats (agents' inbox, every status)",
        store.chats(&query(&app, 21)).await.unwrap(),
        &[("BatchGetItem", 1), ("Query", 2 * shards)]
    );
    assert_eq!(all.len(), 6);
    assert_requests!(
        counter,
        "chats (one status)",
        store
            .chats(&ChatQuery {
                status: Some(ChatStatus::Open),
                ..query(&app, 21)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", shards)]
    );
    assert_requests!(
        counter,
        "chats (a customer's, every status)",
        store
            .chats(&ChatQuery {
                customer: Some(user("cust-1")),
                ..query(&app, 21)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 2)]
    );
    assert_requests!(
        counter,
        "chats (a customer's, one status)",
        store
            .chats(&ChatQuery {
                customer: Some(user("cust-1")),
                status: Some(ChatStatus::Open),
                ..query(&app, 21)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_requests!(
        counter,
        "chats (nothing found)",
        store
            .chats(&ChatQuery {
                customer: Some(user("cust-9")),
                status: Some(ChatStatus::Open),
                ..query(&app, 21)
            })
            .await
            .unwrap(),
        &[("Query", 1)]
    );
}

/// Not a budget: what contention costs. Sends into one chat through one store take turns
/// (2 requests each); stores in separate processes race, and each lost race costs a
/// cancelled transaction (the retry needs no read: the cancellation returns the chat).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_sends_cost_one_transaction_per_lost_race() {
    let (store, counter) = chat_dynamodb::moto::fresh_store().await;
    let table = store.table_name().to_owned();
    let store: Store = std::sync::Arc::new(store);
    let app = create_app(&store, "app_contended").await;
    create_chat(&store, &app, "cust-1", at(1)).await;

    // 32 concurrent sends through one store.
    counter.take();
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (store, app) = (store.clone(), app.clone());
        tasks.spawn(async move { send(&store, &agent_scope(&app, 1), "one store", at(i)).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let one_store = counter.take();
    println!(
        "requests | 32 concurrent sends, one store       | {one_store:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(
        one_store,
        crate::counts(&[("GetItem", 32), ("TransactWriteItems", 32)])
    );

    // 4 stores ("processes") x 8 concurrent sends each.
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..4 {
        let process: Store = std::sync::Arc::new(chat_dynamodb::DynamoStore::new(
            chat_dynamodb::moto::client(Some(counter.clone())),
            table.clone(),
        ));
        for i in 0..8 {
            let (process, app) = (process.clone(), app.clone());
            tasks.spawn(async move {
                send(
                    &process,
                    &agent_scope(&app, 1),
                    "racing",
                    at(100 + p * 8 + i),
                )
                .await
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let racing = counter.take();
    println!(
        "requests | 4 stores x 8 concurrent sends       | {racing:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(racing.get("GetItem"), Some(&32), "one read per send");
    assert!(racing["TransactWriteItems"] >= 32);
    assert_eq!(
        get_chat(&store, &agent_scope(&app, 1)).await.messages_count,
        64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_heartbeats_and_listings_stay_within_their_request_budget() {
    use std::time::Duration;
    let (dynamo, counter) = chat_dynamodb::moto::fresh_store().await;
    let store: Store = std::sync::Arc::new(dynamo.clone());
    let clock = ManualClock::starting_now();
    let service = ChatService::new(
        store.clone(),
        ServerKey::generate(),
        std::sync::Arc::new(clock.clone()),
    )
    .with_presence(std::sync::Arc::new(dynamo.clone()));
    let app = create_app(&store, "app_presence_budget").await;
    create_chat(&store, &app, "cust-1", service.now()).await;
    let caller = |id: &str, role| {
        Caller::User(UserIdentity {
            app: app.clone(),
            user_id: user(id),
            role,
        })
    };
    let (agent, customer) = (
        caller("agent-1", Role::Agent),
        caller("cust-1", Role::Customer),
    );
    let beat = |who: &Caller, status, chat: Option<u32>| {
        let (who, app, service) = (who.clone(), app.clone(), &service);
        async move {
            service
                .heartbeat(
                    &who,
                    &app,
                    Heartbeat {
                        status,
                        chat: chat.map(chat_no),
                    },
                )
                .await
                .unwrap()
        }
    };
    for id in ["agent-2", "agent-3"] {
        beat(&caller(id, Role::Agent), PresenceStatus::Online, None).await;
    }

    assert_requests!(
        counter,
        "heartbeat (first: the lease is written)",
        beat(&agent, PresenceStatus::Online, None).await,
        &[("BatchGetItem", 1), ("PutItem", 1)]
    );
    clock.advance(Duration::from_secs(30));
    assert_requests!(
        counter,
        "heartbeat (on time, nothing changed)",
        beat(&agent, PresenceStatus::Online, None).await,
        &[("BatchGetItem", 1)]
    );
    clock.advance(Duration::from_secs(30));
    assert_requests!(
        counter,
        "heartbeat (on time, lease in its second half)",
        beat(&agent, PresenceStatus::Online, None).await,
        &[("BatchGetItem", 1), ("PutItem", 1)]
    );
    assert_requests!(
        counter,
        "heartbeat (status changed)",
        beat(&agent, PresenceStatus::Away, None).await,
        &[("BatchGetItem", 1), ("PutItem", 1)]
    );
    assert_requests!(
        counter,
        "heartbeat (a new chat on screen: the chat is checked)",
        beat(&customer, PresenceStatus::Online, Some(1)).await,
        &[("BatchGetItem", 1), ("PutItem", 1), ("Query", 1)]
    );
    assert_requests!(
        counter,
        "stored presence",
        dynamo.stored_presence(&app, &user("cust-1")).await.unwrap(),
        &[("BatchGetItem", 1)]
    );
    let availability = assert_requests!(
        counter,
        "availability (3 agents)",
        service.availability(&customer, &app).await.unwrap(),
        &[("Query", 1)]
    );
    assert_eq!(
        (availability.agents_online, availability.agents_away),
        (2, 1)
    );
    let shards = u64::from(chat_dynamodb::table::PRESENCE_SHARDS);
    let page = assert_requests!(
        counter,
        "presences (agents and customers)",
        service
            .presences(&agent, &app, None, PageSize::parse(None).unwrap(), None)
            .await
            .unwrap(),
        &[("Query", 1 + shards)]
    );
    assert_eq!(page.items.len(), 4);
    assert_requests!(
        counter,
        "heartbeat OFFLINE",
        beat(&customer, PresenceStatus::Offline, None).await,
        &[("BatchGetItem", 1), ("DeleteItem", 1)]
    );
    clock.advance(Duration::from_secs(600));
    // The three agents' leases expired (the customer gave its up): one DeleteItem each.
    assert_requests!(
        counter,
        "sweep (3 expired leases)",
        service.sweep_presence().await.unwrap(),
        &[("DeleteItem", 3), ("Query", shards)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignment_and_filtered_pages_stay_within_their_request_budget() {
    let (store, counter) = setup().await;
    let app = create_app(&store, "app_assign_budget").await;
    for n in 1..=6 {
        create_chat(&store, &app, &format!("cust-{n}"), at(n)).await;
        send(
            &store,
            &customer_scope(&app, n as u32, &format!("cust-{n}")),
            "hi",
            at(10 + n),
        )
        .await;
    }
    let assign = |chat: u32, to: Option<&str>, team: Option<Option<&str>>, now: i64| Assignment {
        scope: agent_scope(&app, chat),
        assignee: to.map(user),
        team: team.map(|t| t.and_then(|t| Team::parse(t).unwrap())),
        now: at(now),
    };
    let taken = assert_requests!(
        counter,
        "assignChat (take, unread moves to the agent)",
        store
            .assign_chat(assign(1, Some("alice"), Some(Some("Billing")), 100))
            .await
            .unwrap(),
        &[("Query", 1), ("TransactWriteItems", 1)]
    );
    assert_eq!(taken.assignee, Some(user("alice")));
    assert_requests!(
        counter,
        "assignChat (transfer: two counters)",
        store
            .assign_chat(assign(1, Some("bob"), None, 101))
            .await
            .unwrap(),
        &[("Query", 1), ("TransactWriteItems", 1)]
    );
    assert_requests!(
        counter,
        "assignChat (nothing changes)",
        store
            .assign_chat(assign(1, Some("bob"), None, 102))
            .await
            .unwrap(),
        &[("Query", 1)]
    );
    for chat in 2..=4 {
        store
            .assign_chat(assign(chat, Some("bob"), None, 103))
            .await
            .unwrap();
    }
    let bob = UserIdentity {
        app: app.clone(),
        user_id: user("bob"),
        role: Role::Agent,
    };
    let summary = assert_requests!(
        counter,
        "unreadSummary (agent, with my unread)",
        store.unread_summary(&bob).await.unwrap(),
        &[("BatchGetItem", 1)]
    );
    assert_eq!(
        (summary.assigned_unread, summary.assigned_unread_chats),
        (4, 4)
    );
    let filter = |assignee: AssigneeFilter, team: Option<&str>| ChatFilter {
        assignee,
        team: team.and_then(|t| Team::parse(t).unwrap()),
    };
    let page = assert_requests!(
        counter,
        "chats (assignee, one status): a page",
        store
            .chats(&ChatQuery {
                status: Some(ChatStatus::Open),
                filter: filter(AssigneeFilter::Agent(user("bob")), None),
                ..query(&app, 3)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_eq!(numbers_of_chats(&page), vec![4, 3, 2]);
    let next = assert_requests!(
        counter,
        "chats (assignee, one status): the next page",
        store
            .chats(&ChatQuery {
                status: Some(ChatStatus::Open),
                filter: filter(AssigneeFilter::Agent(user("bob")), None),
                after: Some(ChatCursor {
                    last_activity_at: page[2].last_activity_at,
                    number: page[2].number,
                }),
                ..query(&app, 3)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_eq!(numbers_of_chats(&next), vec![1]);
    assert_requests!(
        counter,
        "chats (unassigned, one status)",
        store
            .chats(&ChatQuery {
                status: Some(ChatStatus::Open),
                filter: filter(AssigneeFilter::Unassigned, None),
                ..query(&app, 20)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_requests!(
        counter,
        "chats (team, one status)",
        store
            .chats(&ChatQuery {
                status: Some(ChatStatus::Open),
                filter: filter(AssigneeFilter::Any, Some("Billing")),
                ..query(&app, 20)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_requests!(
        counter,
        "chats (assignee, every status)",
        store
            .chats(&ChatQuery {
                filter: filter(AssigneeFilter::Agent(user("bob")), None),
                ..query(&app, 20)
            })
            .await
            .unwrap(),
        &[("BatchGetItem", 1), ("Query", 2)]
    );
    // Routing: the agents' loads, the waiting chats, one routing write, and a status change
    // of an assigned chat (its assignee's load moves in the same transaction).
    let loads = assert_requests!(
        counter,
        "agent loads (2 agents)",
        store
            .agent_loads(&app, &[user("bob"), user("carol")])
            .await
            .unwrap(),
        &[("BatchGetItem", 1)]
    );
    let bob_load = loads.iter().find(|l| l.agent == user("bob"));
    assert_eq!(bob_load.map(|l| l.open_chats), Some(4));
    let waiting = assert_requests!(
        counter,
        "waiting chats",
        store.waiting_chats(&app, 25).await.unwrap(),
        &[("BatchGetItem", 1), ("Query", 1)]
    );
    assert_eq!(numbers_of_chats(&waiting), vec![5, 6]);
    let routed = assert_requests!(
        counter,
        "route a chat",
        store
            .route_chat(&Route {
                scope: agent_scope(&app, 5),
                agent: user("carol"),
                cap: 5,
                seen_routed_at: None,
                now: at(200),
            })
            .await
            .unwrap(),
        &[("Query", 1), ("TransactWriteItems", 1)]
    );
    assert!(matches!(routed, Routed::Assigned(_)));
    assert_requests!(
        counter,
        "updateChat status of an assigned chat",
        store
            .update_chat(
                &agent_scope(&app, 5),
                ChatUpdate {
                    subject: None,
                    status: Some(ChatStatus::Resolved),
                    now: at(201),
                },
            )
            .await
            .unwrap(),
        &[("Query", 1), ("TransactWriteItems", 1)]
    );
}
