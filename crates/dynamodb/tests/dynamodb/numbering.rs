//! Numbering across processes, and transactions that fail midway. The conformance suite
//! races writers within one store; here several stores ("processes", each with its own
//! client and writer lanes) race on one table, so only the conditional transactions keep
//! the numbers dense.

use std::collections::HashMap;

use chat_domain::*;
use chat_dynamodb::{DynamoStore, table};
use chat_store_conformance::fixtures::*;
use tokio::task::JoinSet;

use aws_sdk_dynamodb::types::AttributeValue;

use chat_dynamodb::moto::stores_on_one_table as processes;

fn raw_key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("PK".to_owned(), AttributeValue::S(pk)),
        ("SK".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

async fn raw_get(
    raw: &DynamoStore,
    key: HashMap<String, AttributeValue>,
) -> Option<HashMap<String, AttributeValue>> {
    raw.client()
        .get_item()
        .table_name(raw.table_name())
        .set_key(Some(key))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
}

/// Puts an item with just a key, a type and a body, behind the store's back.
async fn plant(raw: &DynamoStore, pk: String, sk: &str, item_type: &str) {
    let mut item = raw_key(pk, sk);
    item.insert("type".into(), AttributeValue::S(item_type.into()));
    item.insert("body".into(), AttributeValue::S("planted".into()));
    raw.client()
        .put_item()
        .table_name(raw.table_name())
        .set_item(Some(item))
        .send()
        .await
        .expect("PutItem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_in_separate_processes_get_dense_numbers() {
    // Given four processes on one table and an application.
    let (stores, _) = processes(4).await;
    let app = create_app(&stores[0], "app_processes").await;

    // When each creates 6 chats at once: the chat numbers are 1..=24.
    let mut tasks = JoinSet::new();
    for (p, store) in stores.iter().enumerate() {
        for i in 0..6 {
            let (store, app) = (store.clone(), app.clone());
            let customer = format!("cust-{p}-{i}");
            tasks.spawn(async move {
                create_chat(&store, &app, &customer, at(i))
                    .await
                    .number
                    .get()
            });
        }
    }
    let mut chats: Vec<u32> = tasks.join_all().await;
    chats.sort_unstable();
    assert_eq!(chats, (1..=24).collect::<Vec<_>>());
    let application = stores[1].application(&app).await.unwrap().unwrap();
    assert_eq!(application.chats_count, 24);

    // When each sends 12 messages into chat 1 at once: 1..=48, each stored as returned.
    let mut tasks = JoinSet::new();
    for (p, store) in stores.iter().enumerate() {
        for i in 0..12 {
            let (store, app) = (store.clone(), app.clone());
            tasks.spawn(async move {
                send(
                    &store,
                    &agent_scope(&app, 1),
                    &format!("p{p} m{i}"),
                    at(100 + i),
                )
                .await
            });
        }
    }
    let mut sent: Vec<Message> = tasks.join_all().await;
    sent.sort_by_key(|m| m.number);
    assert_eq!(numbers_of_messages(&sent), (1..=48).collect::<Vec<_>>());
    let stored = stores[2]
        .messages(&agent_scope(&app, 1), &range(None, None, false, 100))
        .await
        .unwrap();
    assert_eq!(stored, sent);
    for pair in stored.windows(2) {
        assert!(
            pair[0].created_at <= pair[1].created_at,
            "times follow numbers"
        );
    }

    // When each retries one clientMessageId 4 times at once: one message.
    let scope = customer_scope(&app, 2, "cust-0-1");
    let owner = stores[0]
        .chat(&agent_scope(&app, 2))
        .await
        .unwrap()
        .unwrap();
    let scope = ChatScope {
        customer: Some(owner.customer_id.clone()),
        ..scope
    };
    let mut tasks = JoinSet::new();
    for store in &stores {
        for i in 0..4 {
            let (store, scope) = (store.clone(), scope.clone());
            tasks.spawn(async move {
                store
                    .send_message(NewMessage {
                        client_message_id: Some(cmid("once")),
                        ..new_message(&scope, &format!("try {i}"), at(200 + i))
                    })
                    .await
                    .expect("send_message")
            });
        }
    }
    let retries = tasks.join_all().await;
    assert_eq!(retries.iter().filter(|s| s.created).count(), 1);
    assert!(retries.iter().all(|s| s.message.number.get() == 1));
    let first = &retries.iter().find(|s| s.created).unwrap().message;
    assert!(retries.iter().all(|s| &s.message == first));
    assert_eq!(get_chat(&stores[3], &scope).await.messages_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_fails_midway_leaves_no_partial_state() {
    // Given a chat with one message, and an item squatting on message number 2.
    let (stores, raw) = processes(1).await;
    let store = &stores[0];
    let app = create_app(store, "app_midway").await;
    create_chat(store, &app, "cust-1", at(1)).await;
    let scope = agent_scope(&app, 1);
    send(store, &scope, "one", at(10)).await;
    let chat_pk = format!("CHAT#{app}#1");
    let chat_key = || raw_key(chat_pk.clone(), table::CHAT_SK);
    let before = raw_get(&raw, chat_key()).await.expect("the chat item");
    plant(&raw, chat_pk.clone(), &table::message_sk(2), "MSG").await;

    // When a send's transaction passes its first condition (the count) and fails its
    // second (the message key is taken).
    let failed = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("never")),
            ..new_message(&scope, "two", at(20))
        })
        .await;
    assert_code(failed, ErrorCode::Internal, "a number already taken");

    // Then nothing of it is stored: the chat item (count, times, index keys) is as it
    // was, and the clientMessageId key was not written.
    assert_eq!(raw_get(&raw, chat_key()).await, Some(before));
    assert_eq!(
        raw_get(&raw, raw_key(chat_pk.clone(), "CMID#never")).await,
        None
    );

    // And once the squatter is gone, the next send takes number 2.
    raw.client()
        .delete_item()
        .table_name(raw.table_name())
        .set_key(Some(raw_key(chat_pk, &table::message_sk(2))))
        .send()
        .await
        .expect("DeleteItem");
    assert_eq!(send(store, &scope, "two", at(30)).await.number.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_creation_that_fails_midway_leaves_no_partial_state() {
    // Given an application with one chat, and an item squatting on chat number 2.
    let (stores, raw) = processes(1).await;
    let store = &stores[0];
    let app = create_app(store, "app_midway_chats").await;
    create_chat(store, &app, "cust-1", at(1)).await;
    plant(&raw, format!("CHAT#{app}#2"), table::CHAT_SK, "CHAT").await;

    // When a chat is created: the count's condition holds, the chat's key is taken.
    let failed = store.create_chat(new_chat(&app, "cust-2", at(2))).await;
    assert_code(failed, ErrorCode::Internal, "a chat number already taken");

    // Then the application's count did not move, and chat 2 is still the squatter.
    let application = store.application(&app).await.unwrap().unwrap();
    assert_eq!(application.chats_count, 1);
    let squatter = raw_get(&raw, raw_key(format!("CHAT#{app}#2"), table::CHAT_SK)).await;
    assert_eq!(
        squatter.and_then(|item| item.get("body").cloned()),
        Some(AttributeValue::S("planted".into()))
    );
}
