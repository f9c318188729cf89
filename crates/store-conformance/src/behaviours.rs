//! The behaviours of the [`ChatStore`] contract, each given / when / then, each on a
//! fresh store. A behaviour panics (assert) when the store breaks the contract.

use chat_domain::{
    AppName, ApplicationUpdate, Chat, ChatCursor, ChatQuery, ChatStatus, ChatUpdate, ErrorCode,
    NewApplication, NewChat, NewMessage, Role, RoutingSettings,
};
use tokio::task::JoinSet;

pub use crate::assignment::{
    agents_assign_take_transfer_and_unassign,
    concurrent_assignments_sends_and_reads_keep_my_unread_exact,
    inbox_filters_page_every_chat_once_in_inbox_order,
    my_unread_follows_sends_reads_and_assignment,
};
use crate::fixtures::*;
pub use crate::unread::{
    mark_all_read_clears_what_the_reader_sees,
    unread_counters_equal_a_recount_after_random_interleavings, unread_follows_watermarks,
};

// ---- applications -------------------------------------------------------------------------

pub async fn applications_are_created_read_and_renamed(store: Store) {
    // Given a new application.
    let token = token("app_conformance-1");
    let created = store
        .create_application(NewApplication {
            token: token.clone(),
            name: AppName::parse("Acme").unwrap(),
            now: at(10),
        })
        .await
        .expect("create_application");
    assert_eq!(created.token, token);
    assert_eq!(created.name.as_str(), "Acme");
    assert_eq!(created.secret_generation, 1);
    assert_eq!(created.chats_count, 0);
    assert_eq!((created.created_at, created.updated_at), (at(10), at(10)));

    // Then it reads back as created.
    assert_eq!(
        store.application(&token).await.unwrap(),
        Some(created.clone())
    );

    // When the same token is created again: Conflict, and the first one is unchanged.
    let again = store
        .create_application(NewApplication {
            token: token.clone(),
            name: AppName::parse("Other").unwrap(),
            now: at(11),
        })
        .await;
    assert_code(again, ErrorCode::Conflict, "duplicate token");
    assert_eq!(
        store.application(&token).await.unwrap(),
        Some(created.clone())
    );

    // When it is renamed: name and updatedAt change, nothing else.
    assert_eq!(created.routing, RoutingSettings::default());
    let renamed = store
        .update_application(
            &token,
            ApplicationUpdate {
                name: Some(AppName::parse("Acme Support").unwrap()),
                routing: None,
                now: at(20),
            },
        )
        .await
        .expect("update_application");
    assert_eq!(renamed.name.as_str(), "Acme Support");
    assert_eq!(renamed.updated_at, at(20));
    assert_eq!(renamed.created_at, at(10));
    assert_eq!(renamed.secret_generation, 1);
    assert_eq!(renamed.routing, RoutingSettings::default());
    assert_eq!(store.application(&token).await.unwrap(), Some(renamed));

    // When its routing changes: the routing and updatedAt change, the name stays.
    let routing = RoutingSettings {
        enabled: true,
        max_open_chats: 9,
    };
    let routed = store
        .update_application(
            &token,
            ApplicationUpdate {
                name: None,
                routing: Some(routing),
                now: at(25),
            },
        )
        .await
        .expect("update_application routing");
    assert_eq!(routed.name.as_str(), "Acme Support");
    assert_eq!((routed.routing, routed.updated_at), (routing, at(25)));
    assert_eq!(store.application(&token).await.unwrap(), Some(routed));

    // An unknown application: None to read, NotFound to rename.
    let unknown = self::token("app_unknown");
    assert_eq!(store.application(&unknown).await.unwrap(), None);
    let rename_unknown = store
        .update_application(
            &unknown,
            ApplicationUpdate {
                name: Some(AppName::parse("X").unwrap()),
                routing: None,
                now: at(30),
            },
        )
        .await;
    assert_code(
        rename_unknown,
        ErrorCode::NotFound,
        "rename an unknown application",
    );
}

pub async fn secret_rotations_each_take_a_generation(store: Store) {
    // Given a new application: generation 1, no previous secret.
    let app = create_app(&store, "app_rotation").await;
    let created = store.application(&app).await.unwrap().unwrap();
    assert_eq!(created.secret_generation, 1);
    assert_eq!(created.previous_secret_expires_at, None);

    // When it rotates: the next generation, the grace end and updatedAt recorded, and the
    // rest unchanged; it reads back the same.
    let rotated = store
        .rotate_application_secret(&app, at(5_000), at(40))
        .await
        .expect("rotate_application_secret");
    assert_eq!(rotated.secret_generation, 2);
    assert_eq!(rotated.previous_secret_expires_at, Some(at(5_000)));
    assert_eq!(rotated.updated_at, at(40));
    assert_eq!(
        (rotated.name.clone(), rotated.created_at),
        (created.name.clone(), created.created_at)
    );
    assert_eq!(store.application(&app).await.unwrap(), Some(rotated));

    // When eight rotations race: each takes its own generation (none lost).
    let mut racing = JoinSet::new();
    for i in 0..8 {
        let (store, app) = (store.clone(), app.clone());
        racing.spawn(async move {
            store
                .rotate_application_secret(&app, at(6_000 + i), at(50 + i))
                .await
                .expect("concurrent rotation")
                .secret_generation
        });
    }
    let mut generations = racing.join_all().await;
    generations.sort_unstable();
    assert_eq!(generations, (3..=10).collect::<Vec<u32>>());
    let last = store.application(&app).await.unwrap().unwrap();
    assert_eq!(last.secret_generation, 10);

    // An unknown application: NotFound.
    let unknown = store
        .rotate_application_secret(&token("app_unknown"), at(1), at(1))
        .await;
    assert_code(
        unknown,
        ErrorCode::NotFound,
        "rotate an unknown application",
    );
}

// ---- chats and messages, single writer ---------------------------------------------------

pub async fn sent_message_moves_chat_activity(store: Store) {
    // Given a new chat: no last message, activity = creation.
    let app = create_app(&store, "app_activity").await;
    let created = store
        .create_chat(NewChat {
            subject: Some(subject("Billing")),
            ..new_chat(&app, "cust-1", at(100))
        })
        .await
        .unwrap();
    assert_eq!(created.number.get(), 1);
    assert_eq!(created.status, ChatStatus::Open);
    assert_eq!(created.subject, Some(subject("Billing")));
    assert_eq!(created.messages_count, 0);
    assert_eq!(created.last_message, None);
    assert_eq!(created.last_message_at, None);
    assert_eq!(created.last_activity_at, at(100));
    assert_eq!((created.created_at, created.updated_at), (at(100), at(100)));
    let scope = agent_scope(&app, 1);
    assert_eq!(get_chat(&store, &scope).await, created);
    assert_eq!(
        store.application(&app).await.unwrap().unwrap().chats_count,
        1
    );

    // When a customer sends a message.
    let cust_scope = customer_scope(&app, 1, "cust-1");
    let sent = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("c-1")),
            ..new_message(&cust_scope, "  hello\n```code```  ", at(200))
        })
        .await
        .unwrap();
    assert!(sent.created);
    let message = sent.message;
    assert_eq!(message.app, app);
    assert_eq!(message.chat_number.get(), 1);
    assert_eq!(message.number.get(), 1);
    assert_eq!(
        message.body, "  hello\n```code```  ",
        "bodies are kept as sent"
    );
    assert_eq!(message.sender_id, user("cust-1"));
    assert_eq!(message.sender_role, Role::Customer);
    assert_eq!(message.client_message_id, Some(cmid("c-1")));
    assert_eq!(message.created_at, at(200));
    assert_eq!(message.edited_at, None);
    assert!(!message.deleted);

    // Then the chat (read right after the acknowledgement) shows it as its last message.
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 1);
    assert_eq!(chat.last_message.as_ref(), Some(&message));
    assert_eq!(chat.last_message_at, Some(at(200)));
    assert_eq!(chat.last_activity_at, at(200));
    assert_eq!(chat.updated_at, at(200));
    assert_eq!(chat.created_at, at(100));
    assert_eq!(
        store.message(&scope, msg_no(1)).await.unwrap(),
        Some(message.clone())
    );

    // And a second message takes over.
    let second = send(&store, &scope, "second", at(300)).await;
    assert_eq!(second.number.get(), 2);
    assert_eq!(second.sender_role, Role::Agent);
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 2);
    assert_eq!(chat.last_message, Some(second));
    assert_eq!(chat.last_message_at, Some(at(300)));
    assert_eq!(chat.last_activity_at, at(300));
}

pub async fn message_times_never_go_backwards_along_the_numbers(store: Store) {
    // Given a chat whose last message was sent at t=500,
    let app = create_app(&store, "app_clock").await;
    create_chat(&store, &app, "cust-1", at(100)).await;
    let scope = agent_scope(&app, 1);
    send(&store, &scope, "first", at(500)).await;
    // when the next send carries an older clock reading (a concurrent send, numbered
    // after it, whose clock was read first),
    let second = send(&store, &scope, "second", at(400)).await;
    // then it takes the later time: createdAt is monotonic along the numbers.
    assert_eq!(second.number.get(), 2);
    assert_eq!(second.created_at, at(500));
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.last_message_at, Some(at(500)));
    assert_eq!(chat.last_activity_at, at(500));
    assert_eq!(
        store
            .message(&scope, msg_no(2))
            .await
            .unwrap()
            .unwrap()
            .created_at,
        at(500)
    );
}

// ---- numbering under concurrency ----------------------------------------------------------

pub async fn concurrent_sends_get_dense_numbers(store: Store) {
    // Given one chat.
    let app = create_app(&store, "app_dense_messages").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let scope = agent_scope(&app, 1);

    // When 64 messages are sent at once.
    let mut tasks = JoinSet::new();
    for i in 0..64 {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.spawn(async move {
            let sent = store
                .send_message(new_message(&scope, &format!("message {i}"), at(10 + i)))
                .await
                .expect("send_message");
            (i, sent)
        });
    }
    let mut numbers = Vec::new();
    let mut by_number = std::collections::BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, sent) = joined.expect("task");
        assert!(sent.created);
        numbers.push(sent.message.number.get());
        by_number.insert(sent.message.number.get(), (i, sent.message));
    }

    // Then the numbers are exactly 1..=64 and the count is 64.
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=64).collect::<Vec<_>>());
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 64);
    assert_eq!(chat.last_message.as_ref().map(|m| m.number.get()), Some(64));

    // And every message is stored under the number it was given.
    let stored = store
        .messages(&scope, &range(None, None, false, 100))
        .await
        .unwrap();
    assert_eq!(numbers_of_messages(&stored), (1..=64).collect::<Vec<_>>());
    for message in stored {
        let (i, returned) = &by_number[&message.number.get()];
        assert_eq!(message.body, format!("message {i}"));
        assert_eq!(&message, returned);
    }
}

pub async fn concurrent_chat_creation_gets_dense_numbers(store: Store) {
    // Given an application.
    let app = create_app(&store, "app_dense_chats").await;

    // When 32 chats are created at once.
    let mut tasks = JoinSet::new();
    for i in 0..32 {
        let (store, app) = (store.clone(), app.clone());
        tasks.spawn(async move {
            let chat = store
                .create_chat(new_chat(&app, &format!("cust-{i}"), at(i)))
                .await
                .expect("create_chat");
            (i, chat)
        });
    }
    let mut numbers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, chat) = joined.expect("task");
        assert_eq!(chat.customer_id, user(&format!("cust-{i}")));
        // Then each is stored as returned.
        assert_eq!(
            get_chat(&store, &agent_scope(&app, chat.number.get())).await,
            chat
        );
        numbers.push(chat.number.get());
    }

    // Then the numbers are exactly 1..=32 and the count is 32.
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=32).collect::<Vec<_>>());
    assert_eq!(
        store.application(&app).await.unwrap().unwrap().chats_count,
        32
    );
}

pub async fn concurrent_retries_with_one_client_message_id_create_one_message(store: Store) {
    // Given one chat.
    let app = create_app(&store, "app_idem_concurrent").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let scope = customer_scope(&app, 1, "cust-1");

    // When 16 sends with the same clientMessageId race (different bodies).
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.spawn(async move {
            store
                .send_message(NewMessage {
                    client_message_id: Some(cmid("retry-me")),
                    ..new_message(&scope, &format!("attempt {i}"), at(10 + i))
                })
                .await
                .expect("send_message")
        });
    }
    let mut sent = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        sent.push(joined.expect("task"));
    }

    // Then exactly one created it, and all return that same message number 1.
    assert_eq!(sent.iter().filter(|s| s.created).count(), 1);
    let first = sent.iter().find(|s| s.created).unwrap().message.clone();
    assert_eq!(first.number.get(), 1);
    for s in &sent {
        assert_eq!(s.message, first, "every retry returns the first message");
    }
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 1);
    assert_eq!(chat.last_message, Some(first));
}

pub async fn idempotent_retry_returns_the_first_message(store: Store) {
    // Given a message sent with a clientMessageId.
    let app = create_app(&store, "app_idem").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    create_chat(&store, &app, "cust-1", at(2)).await;
    let scope = customer_scope(&app, 1, "cust-1");
    let first = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abc")),
            ..new_message(&scope, "first", at(10))
        })
        .await
        .unwrap();
    assert!(first.created);

    // When it is retried with a different body and a later time.
    let retry = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abc")),
            ..new_message(&scope, "second", at(20))
        })
        .await
        .unwrap();

    // Then the first message comes back, not created, and nothing moved.
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    assert_eq!(retry.message.body, "first");
    assert_eq!(retry.message.created_at, at(10));
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 1);
    assert_eq!(chat.last_activity_at, at(10));
    assert_eq!(chat.updated_at, at(10));

    // A retry from a scope that does not see the chat is NotFound, not the message.
    let other = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abc")),
            ..new_message(&customer_scope(&app, 1, "cust-2"), "x", at(30))
        })
        .await;
    assert_code(other, ErrorCode::NotFound, "retry from another customer");

    // Another id takes the next number; the same id in another chat is independent.
    let next = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abd")),
            ..new_message(&scope, "next", at(40))
        })
        .await
        .unwrap();
    assert!(next.created);
    assert_eq!(next.message.number.get(), 2);
    let elsewhere = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abc")),
            ..new_message(&customer_scope(&app, 2, "cust-1"), "elsewhere", at(50))
        })
        .await
        .unwrap();
    assert!(elsewhere.created);
    assert_eq!(elsewhere.message.number.get(), 1);
    assert_eq!(elsewhere.message.body, "elsewhere");

    // A deleted message is still the answer to its retry.
    store
        .delete_message(change(&scope, 1, Some("cust-1"), at(60)))
        .await
        .unwrap();
    let after_delete = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("abc")),
            ..new_message(&scope, "third", at(70))
        })
        .await
        .unwrap();
    assert!(!after_delete.created);
    assert_eq!(after_delete.message.number.get(), 1);
    assert!(after_delete.message.deleted);
    assert_eq!(get_chat(&store, &scope).await.messages_count, 2);
}

pub async fn failed_writes_consume_no_number(store: Store) {
    // Given a chat of cust-1 with one message.
    let app = create_app(&store, "app_failures").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let own = customer_scope(&app, 1, "cust-1");
    send(&store, &own, "one", at(10)).await;

    // When writes fail: another customer's send, a send to a missing chat, a chat for a
    // missing application, edits and deletes of missing messages.
    let foreign = store
        .send_message(new_message(&customer_scope(&app, 1, "cust-2"), "x", at(11)))
        .await;
    assert_code(
        foreign,
        ErrorCode::NotFound,
        "send into another customer's chat",
    );
    let missing_chat = store
        .send_message(new_message(&agent_scope(&app, 2), "x", at(12)))
        .await;
    assert_code(
        missing_chat,
        ErrorCode::NotFound,
        "send into a missing chat",
    );
    let missing_app = store
        .create_chat(new_chat(&token("app_missing"), "cust-1", at(13)))
        .await;
    assert_code(
        missing_app,
        ErrorCode::NotFound,
        "chat for a missing application",
    );
    let missing_message = store
        .edit_message(change(&own, 2, Some("cust-1"), at(14)), body("x"))
        .await;
    assert_code(
        missing_message,
        ErrorCode::NotFound,
        "edit a missing message",
    );

    // Then the next writes take the next numbers and the counts did not move.
    assert_eq!(send(&store, &own, "two", at(20)).await.number.get(), 2);
    assert_eq!(
        create_chat(&store, &app, "cust-1", at(21))
            .await
            .number
            .get(),
        2
    );
    assert_eq!(get_chat(&store, &own).await.messages_count, 2);
    assert_eq!(
        store.application(&app).await.unwrap().unwrap().chats_count,
        2
    );
    assert_eq!(
        store.application(&token("app_missing")).await.unwrap(),
        None
    );
}

pub async fn failed_writes_in_a_busy_batch_consume_no_number(store: Store) {
    // Given a chat of cust-1.
    let app = create_app(&store, "app_busy_failures").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let own = customer_scope(&app, 1, "cust-1");

    // When 32 good sends race with 32 failing ones (another customer, a missing chat,
    // a missing application, a forbidden edit).
    send(&store, &own, "first", at(2)).await;
    let mut tasks = JoinSet::new();
    for i in 0..64_i64 {
        let (store, app, own) = (store.clone(), app.clone(), own.clone());
        tasks.spawn(async move {
            match i % 8 {
                1 => {
                    let r = store
                        .send_message(new_message(&customer_scope(&app, 1, "cust-2"), "x", at(i)))
                        .await;
                    assert_code(r, ErrorCode::NotFound, "foreign send");
                    None
                }
                3 => {
                    let r = store
                        .send_message(new_message(&agent_scope(&app, 9), "x", at(i)))
                        .await;
                    assert_code(r, ErrorCode::NotFound, "send to a missing chat");
                    None
                }
                5 => {
                    let r = store
                        .create_chat(new_chat(&token("app_nope"), "cust-1", at(i)))
                        .await;
                    assert_code(r, ErrorCode::NotFound, "chat of a missing application");
                    None
                }
                7 => {
                    let r = store
                        .edit_message(
                            change(&agent_scope(&app, 1), 1, Some("agent-9"), at(i)),
                            body("x"),
                        )
                        .await;
                    assert_code(r, ErrorCode::Forbidden, "edit by another sender");
                    None
                }
                _ => Some(
                    send(&store, &own, &format!("good {i}"), at(10 + i))
                        .await
                        .number
                        .get(),
                ),
            }
        });
    }
    let mut numbers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        numbers.extend(joined.expect("task"));
    }

    // Then the good ones got exactly 2..=33 and nothing else moved.
    numbers.sort_unstable();
    assert_eq!(numbers, (2..=33).collect::<Vec<_>>());
    let chat = get_chat(&store, &own).await;
    assert_eq!(chat.messages_count, 33);
    let first = store.message(&own, msg_no(1)).await.unwrap().unwrap();
    assert_eq!((first.body.as_str(), first.edited_at), ("first", None));
    assert_eq!(
        store.application(&app).await.unwrap().unwrap().chats_count,
        1
    );
}

// ---- paging -------------------------------------------------------------------------------

pub async fn chat_pages_return_every_chat_once_in_inbox_order(store: Store) {
    // Given six chats created at 1001..=1006, then activity in 2, 5 (same instant) and 1.
    let app = create_app(&store, "app_inbox").await;
    for n in 1..=6 {
        create_chat(&store, &app, &format!("cust-{n}"), at(1000 + n)).await;
    }
    send(&store, &agent_scope(&app, 2), "b", at(2000)).await;
    send(&store, &agent_scope(&app, 5), "e", at(2000)).await;
    send(&store, &agent_scope(&app, 1), "a", at(1500)).await;
    let expected = vec![5, 2, 1, 6, 4, 3];

    // When all are read in one page: most recent first, ties by higher number.
    let everything = store.chats(&query(&app, 100)).await.unwrap();
    assert_eq!(numbers_of_chats(&everything), expected);
    assert_eq!(everything[0].last_activity_at, at(2000));
    assert_eq!(everything[3].last_activity_at, at(1006));

    // Then paging by 1, 2, 4 and 6 yields every chat exactly once, in the same order.
    for page in [1, 2, 4, 6] {
        let pages = all_chat_pages(&store, query(&app, page), page).await;
        let flat: Vec<Chat> = pages.into_iter().flatten().collect();
        assert_eq!(numbers_of_chats(&flat), expected, "pages of {page}");
        assert_eq!(flat, everything, "pages of {page} carry the same chats");
    }

    // A cursor between two tied chats continues with the tie's lower number.
    let after_five = ChatQuery {
        after: Some(ChatCursor {
            last_activity_at: at(2000),
            number: chat_no(5),
        }),
        ..query(&app, 2)
    };
    assert_eq!(
        numbers_of_chats(&store.chats(&after_five).await.unwrap()),
        vec![2, 1]
    );

    // The limit is respected, and an unknown application has no chats.
    assert_eq!(store.chats(&query(&app, 3)).await.unwrap().len(), 3);
    assert!(
        store
            .chats(&query(&token("app_nobody"), 10))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn chats_filter_by_status_and_customer(store: Store) {
    // Given chats of two customers, some resolved.
    let app = create_app(&store, "app_filters").await;
    let customers = ["cust-a", "cust-b", "cust-a", "cust-b", "cust-a", "cust-a"];
    for (i, customer) in customers.iter().enumerate() {
        create_chat(&store, &app, customer, at(100 + i as i64)).await;
    }
    for n in [2, 3, 6] {
        store
            .update_chat(
                &agent_scope(&app, n),
                ChatUpdate {
                    subject: None,
                    status: Some(ChatStatus::Resolved),
                    now: at(500),
                },
            )
            .await
            .unwrap();
    }
    let filtered = |customer: Option<&str>, status: Option<ChatStatus>| ChatQuery {
        customer: customer.map(user),
        status,
        ..query(&app, 100)
    };

    // Then each filter selects its chats, still in inbox order (status changes are not
    // activity), and paging within a filter sees each exactly once.
    let cases: [(Option<&str>, Option<ChatStatus>, Vec<u32>); 6] = [
        (None, None, vec![6, 5, 4, 3, 2, 1]),
        (None, Some(ChatStatus::Open), vec![5, 4, 1]),
        (None, Some(ChatStatus::Resolved), vec![6, 3, 2]),
        (Some("cust-a"), None, vec![6, 5, 3, 1]),
        (Some("cust-a"), Some(ChatStatus::Resolved), vec![6, 3]),
        (Some("cust-b"), Some(ChatStatus::Open), vec![4]),
    ];
    for (customer, status, expected) in cases {
        let q = filtered(customer, status);
        let chats = store.chats(&q).await.unwrap();
        assert_eq!(
            numbers_of_chats(&chats),
            expected,
            "{customer:?} {status:?}"
        );
        for chat in &chats {
            if let Some(customer) = customer {
                assert_eq!(chat.customer_id, user(customer));
            }
            if let Some(status) = status {
                assert_eq!(chat.status, status);
            }
        }
        let paged: Vec<Chat> = all_chat_pages(&store, q, 1)
            .await
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(
            numbers_of_chats(&paged),
            expected,
            "paged {customer:?} {status:?}"
        );
    }
    let nobody = store.chats(&filtered(Some("cust-z"), None)).await.unwrap();
    assert!(nobody.is_empty());
}

pub async fn message_pages_ascending_after_and_descending_before(store: Store) {
    // Given a chat with ten messages.
    let app = create_app(&store, "app_message_pages").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let scope = agent_scope(&app, 1);
    for i in 1..=10 {
        send(&store, &scope, &format!("m{i}"), at(10 + i)).await;
    }
    let page = |after, before, newest_first, limit| {
        let (store, scope) = (store.clone(), scope.clone());
        async move {
            let messages = store
                .messages(&scope, &range(after, before, newest_first, limit))
                .await
                .expect("messages");
            numbers_of_messages(&messages)
        }
    };

    // Oldest first, continuing after the last one: every message once, ascending.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let numbers = page(after, None, false, 3).await;
        assert!(numbers.len() <= 3);
        let Some(&last) = numbers.last() else { break };
        seen.extend(numbers);
        after = Some(last);
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());

    // Newest first, continuing before the last one: every message once, descending.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let numbers = page(None, before, true, 4).await;
        assert!(numbers.len() <= 4);
        let Some(&last) = numbers.last() else { break };
        seen.extend(numbers);
        before = Some(last);
    }
    assert_eq!(seen, (1..=10).rev().collect::<Vec<_>>());

    // Bounds are exclusive; both together make a window from either end.
    assert_eq!(page(Some(2), Some(7), false, 100).await, vec![3, 4, 5, 6]);
    assert_eq!(page(Some(2), Some(7), false, 2).await, vec![3, 4]);
    assert_eq!(page(Some(2), Some(7), true, 2).await, vec![6, 5]);
    assert_eq!(page(Some(0), None, false, 2).await, vec![1, 2]);
    assert_eq!(page(None, Some(1), true, 5).await, Vec::<u32>::new());
    assert_eq!(page(Some(10), None, false, 5).await, Vec::<u32>::new());
    assert_eq!(page(Some(5), Some(6), false, 5).await, Vec::<u32>::new());
    assert_eq!(page(None, Some(1000), true, 2).await, vec![10, 9]);

    // The messages themselves are complete.
    let all = store
        .messages(&scope, &range(None, None, false, 100))
        .await
        .unwrap();
    for (i, message) in all.iter().enumerate() {
        assert_eq!(message.body, format!("m{}", i + 1));
        assert_eq!(message.created_at, at(11 + i as i64));
        assert_eq!(message.chat_number.get(), 1);
        assert_eq!(message.app, app);
    }

    // An empty chat has an empty page.
    create_chat(&store, &app, "cust-1", at(2)).await;
    let empty = store
        .messages(&agent_scope(&app, 2), &range(None, None, false, 10))
        .await
        .unwrap();
    assert!(empty.is_empty());
}

// ---- visibility ---------------------------------------------------------------------------

pub async fn absent_chats_are_absent_everywhere(store: Store) {
    // Given an application with one chat.
    let app = create_app(&store, "app_absent").await;
    create_chat(&store, &app, "cust-1", at(1)).await;

    // Then chat 42 and chats of an unknown application do not exist for any call.
    for scope in [agent_scope(&app, 42), agent_scope(&token("app_ghost"), 1)] {
        assert_eq!(store.chat(&scope).await.unwrap(), None);
        assert_eq!(store.message(&scope, msg_no(1)).await.unwrap(), None);
        let listed = store.messages(&scope, &range(None, None, false, 10)).await;
        assert_code(listed, ErrorCode::NotFound, "messages of an absent chat");
        let update = store
            .update_chat(
                &scope,
                ChatUpdate {
                    subject: Some(None),
                    status: None,
                    now: at(2),
                },
            )
            .await;
        assert_code(update, ErrorCode::NotFound, "update an absent chat");
        let sent = store.send_message(new_message(&scope, "x", at(2))).await;
        assert_code(sent, ErrorCode::NotFound, "send into an absent chat");
        let edit = store
            .edit_message(change(&scope, 1, None, at(2)), body("x"))
            .await;
        assert_code(edit, ErrorCode::NotFound, "edit in an absent chat");
        let delete = store.delete_message(change(&scope, 1, None, at(2))).await;
        assert_code(delete, ErrorCode::NotFound, "delete in an absent chat");
    }

    // And a missing message of a present chat is None / NotFound.
    let scope = agent_scope(&app, 1);
    assert_eq!(store.message(&scope, msg_no(1)).await.unwrap(), None);
    let edit = store
        .edit_message(change(&scope, 1, None, at(3)), body("x"))
        .await;
    assert_code(edit, ErrorCode::NotFound, "edit a missing message");
    let delete = store.delete_message(change(&scope, 1, None, at(3))).await;
    assert_code(delete, ErrorCode::NotFound, "delete a missing message");
    assert_eq!(get_chat(&store, &scope).await.messages_count, 0);
}

pub async fn customer_scope_hides_other_customers_chats(store: Store) {
    // Given a chat of cust-a with a message, and a chat of cust-b.
    let app = create_app(&store, "app_scopes").await;
    create_chat(&store, &app, "cust-a", at(1)).await;
    create_chat(&store, &app, "cust-b", at(2)).await;
    let own = customer_scope(&app, 1, "cust-a");
    let message = send(&store, &own, "mine", at(10)).await;
    let before = get_chat(&store, &agent_scope(&app, 1)).await;

    // Then cust-b sees nothing of chat 1: reads None / NotFound, writes NotFound.
    let foreign = customer_scope(&app, 1, "cust-b");
    assert_eq!(store.chat(&foreign).await.unwrap(), None);
    assert_eq!(store.message(&foreign, msg_no(1)).await.unwrap(), None);
    let listed = store
        .messages(&foreign, &range(None, None, false, 10))
        .await;
    assert_code(
        listed,
        ErrorCode::NotFound,
        "messages of another customer's chat",
    );
    let sent = store
        .send_message(new_message(&foreign, "hi", at(20)))
        .await;
    assert_code(
        sent,
        ErrorCode::NotFound,
        "send into another customer's chat",
    );
    let update = store
        .update_chat(
            &foreign,
            ChatUpdate {
                subject: Some(Some(subject("hijack"))),
                status: Some(ChatStatus::Resolved),
                now: at(20),
            },
        )
        .await;
    assert_code(
        update,
        ErrorCode::NotFound,
        "update another customer's chat",
    );
    let edit = store
        .edit_message(change(&foreign, 1, Some("cust-b"), at(20)), body("x"))
        .await;
    assert_code(edit, ErrorCode::NotFound, "edit in another customer's chat");
    let delete = store
        .delete_message(change(&foreign, 1, Some("cust-b"), at(20)))
        .await;
    assert_code(
        delete,
        ErrorCode::NotFound,
        "delete in another customer's chat",
    );
    let listed = store
        .chats(&ChatQuery {
            customer: Some(user("cust-b")),
            ..query(&app, 10)
        })
        .await
        .unwrap();
    assert_eq!(numbers_of_chats(&listed), vec![2]);

    // And nothing changed; the owner and an agent still see it.
    assert_eq!(get_chat(&store, &own).await, before);
    assert_eq!(get_chat(&store, &agent_scope(&app, 1)).await, before);
    assert_eq!(store.message(&own, msg_no(1)).await.unwrap(), Some(message));
    let agents = store.chats(&query(&app, 10)).await.unwrap();
    assert_eq!(numbers_of_chats(&agents), vec![1, 2]);
}

pub async fn applications_are_isolated(store: Store) {
    // Given two applications, each with chat 1 (different customers).
    let x = create_app(&store, "app_x").await;
    let y = create_app(&store, "app_y").await;
    create_chat(&store, &x, "cust-x", at(1)).await;
    create_chat(&store, &y, "cust-y", at(2)).await;

    // When three messages go to x's chat 1 (one with a clientMessageId).
    for i in 1..=3 {
        send(&store, &agent_scope(&x, 1), &format!("x{i}"), at(10 + i)).await;
    }
    let x_keyed = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("shared-id")),
            ..new_message(&agent_scope(&x, 1), "x keyed", at(20))
        })
        .await
        .unwrap();

    // Then y's chat 1 is untouched, and the same clientMessageId in y is a new message.
    let y_chat = get_chat(&store, &agent_scope(&y, 1)).await;
    assert_eq!(y_chat.messages_count, 0);
    assert_eq!(y_chat.customer_id, user("cust-y"));
    assert_eq!(y_chat.app, y);
    assert_eq!(
        store.message(&agent_scope(&y, 1), msg_no(1)).await.unwrap(),
        None
    );
    let y_keyed = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("shared-id")),
            ..new_message(&agent_scope(&y, 1), "y keyed", at(30))
        })
        .await
        .unwrap();
    assert!(y_keyed.created);
    assert_eq!(y_keyed.message.number.get(), 1);
    assert_eq!(y_keyed.message.app, y);
    assert_eq!(x_keyed.message.number.get(), 4);

    // Customers and counts are per application.
    assert_eq!(
        store.chat(&customer_scope(&y, 1, "cust-x")).await.unwrap(),
        None
    );
    assert_eq!(
        get_chat(&store, &agent_scope(&x, 1)).await.messages_count,
        4
    );
    assert_eq!(
        get_chat(&store, &agent_scope(&y, 1)).await.messages_count,
        1
    );
    let x_chats = store.chats(&query(&x, 10)).await.unwrap();
    assert_eq!(x_chats.len(), 1);
    assert_eq!(x_chats[0].app, x);
    assert_eq!(
        create_chat(&store, &y, "cust-y", at(40)).await.number.get(),
        2
    );
    assert_eq!(store.application(&x).await.unwrap().unwrap().chats_count, 1);
    assert_eq!(store.application(&y).await.unwrap().unwrap().chats_count, 2);
}

// ---- changes to messages and chats -------------------------------------------------------

pub async fn edit_rules(store: Store) {
    // Given a customer's message followed by an agent's.
    let app = create_app(&store, "app_edits").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let own = customer_scope(&app, 1, "cust-1");
    let agent = agent_scope(&app, 1);
    let original = send(&store, &own, "typo", at(10)).await;
    send(&store, &agent, "reply", at(11)).await;

    // When someone else edits it: Forbidden, unchanged.
    let forbidden = store
        .edit_message(change(&agent, 1, Some("agent-1"), at(20)), body("x"))
        .await;
    assert_code(forbidden, ErrorCode::Forbidden, "edit by another sender");
    assert_eq!(
        store.message(&own, msg_no(1)).await.unwrap(),
        Some(original.clone())
    );

    // When the sender edits it: body and editedAt change, number and count stay.
    let edited = store
        .edit_message(change(&own, 1, Some("cust-1"), at(30)), body("fixed"))
        .await
        .unwrap();
    assert_eq!(edited.body, "fixed");
    assert_eq!(edited.edited_at, Some(at(30)));
    assert_eq!(edited.number, original.number);
    assert_eq!(edited.created_at, original.created_at);
    assert_eq!(edited.sender_id, original.sender_id);
    assert!(!edited.deleted);
    assert_eq!(store.message(&own, msg_no(1)).await.unwrap(), Some(edited));
    let chat = get_chat(&store, &agent).await;
    assert_eq!(chat.messages_count, 2);
    assert_eq!(chat.last_activity_at, at(11), "an edit is not activity");
    assert_eq!(chat.updated_at, at(11), "an edit changes the message only");

    // An unrestricted change (only_sender None) may edit any message; the last message
    // reflects edits.
    let reply = store
        .edit_message(change(&agent, 2, None, at(40)), body("better reply"))
        .await
        .unwrap();
    let chat = get_chat(&store, &agent).await;
    assert_eq!(chat.last_message, Some(reply));

    // When a deleted message is edited: Conflict (and Forbidden still comes first).
    store
        .delete_message(change(&own, 1, Some("cust-1"), at(50)))
        .await
        .unwrap();
    let conflict = store
        .edit_message(change(&own, 1, Some("cust-1"), at(60)), body("again"))
        .await;
    assert_code(conflict, ErrorCode::Conflict, "edit a deleted message");
    let forbidden = store
        .edit_message(change(&agent, 1, Some("agent-1"), at(60)), body("again"))
        .await;
    assert_code(
        forbidden,
        ErrorCode::Forbidden,
        "another sender edits a deleted message",
    );
    let deleted = store.message(&own, msg_no(1)).await.unwrap().unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.body, "");
}

pub async fn delete_rules(store: Store) {
    // Given three messages, the last one from the customer.
    let app = create_app(&store, "app_deletes").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let own = customer_scope(&app, 1, "cust-1");
    let agent = agent_scope(&app, 1);
    send(&store, &agent, "agent says", at(10)).await;
    send(&store, &own, "customer says", at(11)).await;
    let last = send(&store, &own, "oops", at(12)).await;

    // When another sender deletes under a restriction: Forbidden, unchanged.
    let forbidden = store
        .delete_message(change(&own, 1, Some("cust-1"), at(20)))
        .await;
    assert_code(
        forbidden,
        ErrorCode::Forbidden,
        "customer deletes the agent's message",
    );
    assert!(
        !store
            .message(&agent, msg_no(1))
            .await
            .unwrap()
            .unwrap()
            .deleted
    );

    // When the sender deletes the last message: soft delete, number and count stay.
    let deleted = store
        .delete_message(change(&own, 3, Some("cust-1"), at(30)))
        .await
        .unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.body, "");
    assert_eq!(deleted.number, last.number);
    assert_eq!(deleted.created_at, last.created_at);
    assert_eq!(deleted.sender_id, last.sender_id);
    assert_eq!(
        store.message(&own, msg_no(3)).await.unwrap(),
        Some(deleted.clone())
    );
    let chat = get_chat(&store, &agent).await;
    assert_eq!(chat.messages_count, 3);
    assert_eq!(
        chat.last_message,
        Some(deleted.clone()),
        "the last message shows the deletion"
    );
    assert_eq!(chat.last_message_at, Some(at(12)));
    let listed = store
        .messages(&agent, &range(None, None, false, 10))
        .await
        .unwrap();
    assert_eq!(numbers_of_messages(&listed), vec![1, 2, 3]);
    assert_eq!(listed[2], deleted);

    // Deleting twice returns the deleted message again.
    let again = store
        .delete_message(change(&own, 3, Some("cust-1"), at(40)))
        .await
        .unwrap();
    assert_eq!(again, deleted);

    // An unrestricted delete (an agent's) removes anyone's message.
    let by_agent = store
        .delete_message(change(&agent, 2, None, at(50)))
        .await
        .unwrap();
    assert!(by_agent.deleted);
    assert_eq!(by_agent.sender_id, user("cust-1"));

    // The next message still takes the next number.
    assert_eq!(send(&store, &own, "after", at(60)).await.number.get(), 4);
    assert_eq!(get_chat(&store, &agent).await.messages_count, 4);
}

pub async fn update_chat_sets_and_clears_subject_and_status(store: Store) {
    // Given an open chat without subject, with one message.
    let app = create_app(&store, "app_updates").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let own = customer_scope(&app, 1, "cust-1");
    let message = send(&store, &own, "hello", at(10)).await;
    let update = |subject, status, now| ChatUpdate {
        subject,
        status,
        now,
    };

    // When the subject is set: only subject and updatedAt change.
    let chat = store
        .update_chat(&own, update(Some(Some(subject("Refund"))), None, at(20)))
        .await
        .unwrap();
    assert_eq!(chat.subject, Some(subject("Refund")));
    assert_eq!(chat.status, ChatStatus::Open);
    assert_eq!(chat.updated_at, at(20));
    assert_eq!(chat.last_activity_at, at(10), "an update is not activity");
    assert_eq!(chat.last_message, Some(message.clone()));
    assert_eq!(chat.messages_count, 1);
    assert_eq!(get_chat(&store, &own).await, chat);

    // When the status is resolved: the subject stays.
    let chat = store
        .update_chat(&own, update(None, Some(ChatStatus::Resolved), at(30)))
        .await
        .unwrap();
    assert_eq!(chat.status, ChatStatus::Resolved);
    assert_eq!(chat.subject, Some(subject("Refund")));
    assert_eq!(chat.updated_at, at(30));

    // When the subject is cleared and the chat reopened in one update.
    let chat = store
        .update_chat(&own, update(Some(None), Some(ChatStatus::Open), at(40)))
        .await
        .unwrap();
    assert_eq!(chat.subject, None);
    assert_eq!(chat.status, ChatStatus::Open);
    assert_eq!(chat.updated_at, at(40));
    assert_eq!(get_chat(&store, &agent_scope(&app, 1)).await, chat);

    // When nothing is given, only updatedAt moves.
    let chat = store
        .update_chat(&own, update(None, None, at(50)))
        .await
        .unwrap();
    assert_eq!(
        (chat.subject.clone(), chat.status),
        (None, ChatStatus::Open)
    );
    assert_eq!(chat.updated_at, at(50));
    assert_eq!(chat.created_at, at(1));
}
