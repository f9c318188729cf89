//! Messages: sending, paging both ways, idempotency, edit and soft delete.

use crate::common;

use common::*;
use serde_json::{Value, json};

fn numbers(page: &Value) -> Vec<i64> {
    page["messages"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["number"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn send_returns_the_message_and_moves_the_chat() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let agent = app.agent("a1");
    let chat = open_chat(&server, &app, &c1).await;
    let first = send(&server, &app, &c1, chat, "Hello, my order is late").await;
    assert_eq!(first["number"], 1);
    assert_eq!(first["senderId"], "c1");
    assert_eq!(first["senderRole"], "CUSTOMER");
    assert_eq!(first["appToken"], app.token.as_str());
    assert_eq!(first["chatNumber"], chat);
    assert_eq!(first["deleted"], false);
    let reply = send(&server, &app, &agent, chat, "Sorry! Looking into it").await;
    assert_eq!(reply["number"], 2);
    assert_eq!(reply["senderRole"], "AGENT");

    let data = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 2);
    assert_eq!(
        data["chat"]["lastMessage"]["body"],
        "Sorry! Looking into it"
    );
    assert_eq!(data["chat"]["lastMessageAt"], reply["createdAt"]);
}

#[tokio::test]
async fn paging_after_and_before_covers_every_message_once_in_order() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    for i in 1..=25 {
        send(&server, &app, &c1, chat, &format!("m{i}")).await;
    }
    // Forwards from the start, pages of 10.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = server
            .ok(
                &c1,
                MESSAGES,
                json!({ "a": app.token, "c": chat, "l": 10, "t": token }),
            )
            .await;
        seen.extend(numbers(&page));
        match page["messages"]["nextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    // after: numbers greater than it.
    let page = server
        .ok(
            &c1,
            MESSAGES,
            json!({ "a": app.token, "c": chat, "after": 20 }),
        )
        .await;
    assert_eq!(numbers(&page), vec![21, 22, 23, 24, 25]);
    assert!(page["messages"]["nextToken"].is_null());

    // before: the newest `limit` below it, ascending; the token continues to older ones.
    let page = server
        .ok(
            &c1,
            MESSAGES,
            json!({ "a": app.token, "c": chat, "before": 26, "l": 10 }),
        )
        .await;
    assert_eq!(numbers(&page), (16..=25).collect::<Vec<_>>());
    let mut older = Vec::new();
    let mut token = page["messages"]["nextToken"].as_str().map(str::to_owned);
    while let Some(t) = token {
        let page = server
            .ok(
                &c1,
                MESSAGES,
                json!({ "a": app.token, "c": chat, "l": 10, "t": t }),
            )
            .await;
        let mut batch = numbers(&page);
        batch.extend(older);
        older = batch;
        token = page["messages"]["nextToken"].as_str().map(str::to_owned);
    }
    assert_eq!(older, (1..=15).collect::<Vec<_>>());

    // Both bounds: the window between them.
    let page = server
        .ok(
            &c1,
            MESSAGES,
            json!({ "a": app.token, "c": chat, "after": 3, "before": 7 }),
        )
        .await;
    assert_eq!(numbers(&page), vec![4, 5, 6]);
}

#[tokio::test]
async fn retried_send_with_same_client_id_returns_first_message() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let vars = |body: &str| json!({ "a": app.token, "c": chat, "b": body, "k": "abc-123" });
    let first = server.ok(&c1, SEND, vars("first")).await["sendMessage"].clone();
    let retry = server.ok(&c1, SEND, vars("first (retry)")).await["sendMessage"].clone();
    assert_eq!(first, retry);
    assert_eq!(retry["body"], "first");
    let next = send(&server, &app, &c1, chat, "another").await;
    assert_eq!(next["number"], 2);
}

#[tokio::test]
async fn only_the_sender_edits_and_sender_or_agent_deletes_softly() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let agent = app.agent("a1");
    let other_agent = app.agent("a2");
    let chat = open_chat(&server, &app, &c1).await;
    send(&server, &app, &c1, chat, "typo hre").await;
    send(&server, &app, &agent, chat, "agent text").await;

    let edit = "mutation($a: ID!, $c: Int!, $n: Int!, $b: String!) { editMessage(appToken: $a, chatNumber: $c, number: $n, body: $b) { number body editedAt deleted } }";
    let edited = server
        .ok(
            &c1,
            edit,
            json!({ "a": app.token, "c": chat, "n": 1, "b": "typo here" }),
        )
        .await;
    assert_eq!(edited["editMessage"]["body"], "typo here");
    assert!(edited["editMessage"]["editedAt"].is_string());
    let code = server
        .error_code(
            Some(&agent),
            edit,
            json!({ "a": app.token, "c": chat, "n": 1, "b": "x" }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = server
        .error_code(
            Some(&c1),
            edit,
            json!({ "a": app.token, "c": chat, "n": 2, "b": "x" }),
        )
        .await;
    assert_eq!(code, "Forbidden");

    let delete = "mutation($a: ID!, $c: Int!, $n: Int!) { deleteMessage(appToken: $a, chatNumber: $c, number: $n) { number body deleted } }";
    let code = server
        .error_code(
            Some(&c1),
            delete,
            json!({ "a": app.token, "c": chat, "n": 2 }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    // Any agent may delete (moderation), and the number and count stay.
    let deleted = server
        .ok(
            &other_agent,
            delete,
            json!({ "a": app.token, "c": chat, "n": 2 }),
        )
        .await;
    assert_eq!(
        deleted["deleteMessage"],
        json!({ "number": 2, "body": "", "deleted": true })
    );
    let again = server
        .ok(&agent, delete, json!({ "a": app.token, "c": chat, "n": 2 }))
        .await;
    assert_eq!(again["deleteMessage"]["deleted"], true);
    let code = server
        .error_code(
            Some(&agent),
            edit,
            json!({ "a": app.token, "c": chat, "n": 2, "b": "x" }),
        )
        .await;
    assert_eq!(code, "Conflict");

    let data = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 2);
    assert_eq!(data["chat"]["lastMessage"]["deleted"], true);
    let page = server
        .ok(&c1, MESSAGES, json!({ "a": app.token, "c": chat }))
        .await;
    assert_eq!(numbers(&page), vec![1, 2]);
    let code = server
        .error_code(
            Some(&c1),
            delete,
            json!({ "a": app.token, "c": chat, "n": 9 }),
        )
        .await;
    assert_eq!(code, "NotFound");
}
