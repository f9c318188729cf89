//! Numbering under concurrency, over real HTTP: dense, unique, idempotent.

use crate::common;

use common::*;
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_sends_get_numbers_1_to_64() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("c1");
    let agent = app.agent("a1");
    let chat = open_chat(&server, &app, &customer).await;

    let sends = (0..64).map(|i| {
        let token = if i % 2 == 0 { &customer } else { &agent };
        let body = format!("message {i}");
        let (server, app) = (&server, &app);
        async move {
            send(server, app, token, chat, &body).await["number"]
                .as_i64()
                .unwrap()
        }
    });
    let mut numbers = join_all(sends).await;
    numbers.sort_unstable();

    assert_eq!(numbers, (1..=64).collect::<Vec<_>>());
    let data = server
        .ok(&agent, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 64);
    assert_eq!(data["chat"]["lastMessage"]["number"], 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_chats_get_numbers_1_to_32() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let customers: Vec<String> = (0..32).map(|i| app.customer(&format!("c{i}"))).collect();

    let creates = customers.iter().map(|token| {
        let (server, app) = (&server, &app);
        async move {
            server
                .ok(token, CREATE_CHAT, json!({ "a": app.token }))
                .await["createChat"]["number"]
                .as_i64()
                .unwrap()
        }
    });
    let mut numbers = join_all(creates).await;
    numbers.sort_unstable();

    assert_eq!(numbers, (1..=32).collect::<Vec<_>>());
    let data = server
        .ok(
            ADMIN_KEY,
            "query($t: ID!) { application(token: $t) { chatsCount } }",
            json!({ "t": app.token }),
        )
        .await;
    assert_eq!(data["application"]["chatsCount"], 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_retries_with_one_client_id_create_one_message() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("c1");
    let chat = open_chat(&server, &app, &customer).await;

    let retries = (0..16).map(|_| {
        let (server, app, customer) = (&server, &app, &customer);
        async move {
            server
                .ok(
                    customer,
                    SEND,
                    json!({ "a": app.token, "c": chat, "b": "hello", "k": "client-msg-1" }),
                )
                .await["sendMessage"]
                .clone()
        }
    });
    let results = join_all(retries).await;

    assert!(
        results
            .iter()
            .all(|m| m["number"] == 1 && m["clientMessageId"] == "client-msg-1")
    );
    let data = server
        .ok(&customer, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 1);
    let page = server
        .ok(&customer, MESSAGES, json!({ "a": app.token, "c": chat }))
        .await;
    assert_eq!(page["messages"]["items"].as_array().unwrap().len(), 1);
}
