//! Chats: who may open and see them, inbox order, paging, updates.

use crate::common;

use common::*;
use serde_json::{Value, json};

const CHATS: &str = "query($a: ID!, $s: ChatStatus, $l: Int, $t: String) { chats(appToken: $a, status: $s, limit: $l, nextToken: $t) { items { number customerId status } nextToken } }";

async fn all_pages(
    server: &TestServer,
    token: &str,
    app: &TestApp,
    status: Value,
    limit: i64,
) -> Vec<i64> {
    server
        .chat_numbers(
            token,
            CHATS,
            json!({ "a": app.token, "s": status, "l": limit }),
        )
        .await
}

#[tokio::test]
async fn customer_opens_for_itself_agent_for_a_named_customer() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("c1");
    let agent = app.agent("a1");

    let own = server
        .ok(
            &customer,
            CREATE_CHAT,
            json!({ "a": app.token, "s": "Billing" }),
        )
        .await;
    assert_eq!(
        own["createChat"],
        json!({ "number": 1, "customerId": "c1", "subject": "Billing", "status": "OPEN", "messagesCount": 0 })
    );
    let code = server
        .error_code(
            Some(&customer),
            CREATE_CHAT,
            json!({ "a": app.token, "c": "c2" }),
        )
        .await;
    assert_eq!(code, "Forbidden");

    let for_c2 = server
        .ok(&agent, CREATE_CHAT, json!({ "a": app.token, "c": "c2" }))
        .await;
    assert_eq!(for_c2["createChat"]["number"], 2);
    assert_eq!(for_c2["createChat"]["customerId"], "c2");
    assert!(for_c2["createChat"]["subject"].is_null());
    let code = server
        .error_code(Some(&agent), CREATE_CHAT, json!({ "a": app.token }))
        .await;
    assert_eq!(code, "BadInput");
}

#[tokio::test]
async fn inbox_is_most_recent_activity_first_and_pages_cover_everything_once() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let c1 = app.customer("c1");
    for _ in 0..7 {
        open_chat(&server, &app, &c1).await;
    }
    // Activity on chat 3, then chat 5: they move to the top, 5 first. (Pauses keep the
    // millisecond timestamps apart; equal times would order by number.)
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    send(&server, &app, &c1, 3, "bump").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    send(&server, &app, &c1, 5, "bump").await;

    let order = all_pages(&server, &agent, &app, Value::Null, 3).await;
    assert_eq!(order, vec![5, 3, 7, 6, 4, 2, 1]);
}

#[tokio::test]
async fn customers_list_only_their_own_chats_and_status_filters() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let c1 = app.customer("c1");
    let c2 = app.customer("c2");
    open_chat(&server, &app, &c1).await; // 1
    open_chat(&server, &app, &c2).await; // 2
    open_chat(&server, &app, &c1).await; // 3
    let resolve = "mutation($a: ID!, $n: Int!) { updateChat(appToken: $a, number: $n, status: RESOLVED) { status } }";
    server
        .ok(&agent, resolve, json!({ "a": app.token, "n": 3 }))
        .await;

    let mut mine = all_pages(&server, &c1, &app, Value::Null, 20).await;
    mine.sort_unstable();
    assert_eq!(mine, vec![1, 3]);
    assert_eq!(
        all_pages(&server, &c2, &app, Value::Null, 20).await,
        vec![2]
    );
    assert_eq!(
        all_pages(&server, &agent, &app, json!("RESOLVED"), 20).await,
        vec![3]
    );
    let mut open = all_pages(&server, &agent, &app, json!("OPEN"), 1).await;
    open.sort_unstable();
    assert_eq!(open, vec![1, 2]);
}

#[tokio::test]
async fn update_sets_and_clears_subject_and_needs_something_to_change() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let update = "mutation($a: ID!, $n: Int!, $s: String) { updateChat(appToken: $a, number: $n, subject: $s) { subject status } }";
    let data = server
        .ok(
            &c1,
            update,
            json!({ "a": app.token, "n": chat, "s": " Refund " }),
        )
        .await;
    assert_eq!(
        data["updateChat"],
        json!({ "subject": "Refund", "status": "OPEN" })
    );
    let data = server
        .ok(&c1, update, json!({ "a": app.token, "n": chat, "s": null }))
        .await;
    assert!(data["updateChat"]["subject"].is_null());
    let bare = "mutation($a: ID!, $n: Int!) { updateChat(appToken: $a, number: $n) { subject } }";
    assert_eq!(
        server
            .error_code(Some(&c1), bare, json!({ "a": app.token, "n": chat }))
            .await,
        "BadInput"
    );
    let code = server
        .error_code(
            Some(&c1),
            update,
            json!({ "a": app.token, "n": 99, "s": "x" }),
        )
        .await;
    assert_eq!(code, "NotFound");
}

#[tokio::test]
async fn a_forged_or_foreign_next_token_is_bad_input() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let other = TestApp::create(&server, "Other").await;
    let agent = app.agent("a1");
    for _ in 0..3 {
        open_chat(&server, &app, &app.customer("c1")).await;
        open_chat(&server, &other, &other.customer("c1")).await;
    }
    let page = server
        .ok(&agent, CHATS, json!({ "a": app.token, "l": 1 }))
        .await;
    let token = page["chats"]["nextToken"].as_str().unwrap().to_owned();
    // Replayed against another application, another filter, or tampered with.
    let other_agent = other.agent("a1");
    let code = server
        .error_code(
            Some(&other_agent),
            CHATS,
            json!({ "a": other.token, "l": 1, "t": token }),
        )
        .await;
    assert_eq!(code, "BadInput");
    let code = server
        .error_code(
            Some(&agent),
            CHATS,
            json!({ "a": app.token, "s": "OPEN", "t": token }),
        )
        .await;
    assert_eq!(code, "BadInput");
    let mut tampered = token.clone();
    tampered.replace_range(0..1, if tampered.starts_with('e') { "f" } else { "e" });
    for bad in [tampered.as_str(), "garbage", "", "a.b"] {
        let code = server
            .error_code(Some(&agent), CHATS, json!({ "a": app.token, "t": bad }))
            .await;
        assert_eq!(code, "BadInput", "{bad}");
    }
}
