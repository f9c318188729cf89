//! The dev server on DynamoDB (moto's server mode): `--store dynamodb --create-table`
//! creates the table from the one definition, and the API works over HTTP as on SQLite,
//! presence included.

use crate::common;

use common::*;
use serde_json::json;

const CHATS: &str = "query($a: ID!, $l: Int, $t: String) { chats(appToken: $a, limit: $l, nextToken: $t) { items { number messagesCount lastMessage { number body } } nextToken } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_server_runs_on_dynamodb() {
    // Given a server on a new table of the emulator (dummy AWS settings in its environment,
    // as a developer would export them).
    let server = TestServer::start_on_moto("server");

    // When an application, two chats and messages are created over HTTP.
    let app = TestApp::create(&server, "On DynamoDB").await;
    let customer = app.customer("cust-1");
    let agent = app.agent("agent-1");
    assert_eq!(open_chat(&server, &app, &customer).await, 1);
    assert_eq!(open_chat(&server, &app, &customer).await, 2);
    for i in 1..=5 {
        let sent = send(&server, &app, &customer, 1, &format!("m{i}")).await;
        assert_eq!(sent["number"], i);
    }
    let retried = server
        .ok(
            &customer,
            SEND,
            json!({ "a": app.token, "c": 1, "b": "m5 again", "k": "k-1" }),
        )
        .await;
    let again = server
        .ok(
            &customer,
            SEND,
            json!({ "a": app.token, "c": 1, "b": "m5 once more", "k": "k-1" }),
        )
        .await;
    assert_eq!(retried["sendMessage"]["number"], 6);
    assert_eq!(again["sendMessage"], retried["sendMessage"]);

    // Then messages page by nextToken, every one once, in order.
    let mut seen = Vec::new();
    let mut token = serde_json::Value::Null;
    loop {
        let page = server
            .ok(
                &agent,
                MESSAGES,
                json!({ "a": app.token, "c": 1, "l": 2, "t": token }),
            )
            .await;
        for item in page["messages"]["items"].as_array().unwrap() {
            seen.push(item["number"].as_i64().unwrap());
        }
        token = page["messages"]["nextToken"].clone();
        if token.is_null() {
            break;
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);

    // And the agents' inbox shows the busy chat first, with its last message.
    let inbox = server
        .ok(&agent, CHATS, json!({ "a": app.token, "l": 1 }))
        .await;
    let first = &inbox["chats"]["items"][0];
    assert_eq!(first["number"], 1);
    assert_eq!(first["messagesCount"], 6);
    assert_eq!(first["lastMessage"]["body"], "m5 again");
    let next = server
        .ok(
            &agent,
            CHATS,
            json!({ "a": app.token, "l": 1, "t": inbox["chats"]["nextToken"] }),
        )
        .await;
    assert_eq!(next["chats"]["items"][0]["number"], 2);
    assert!(next["chats"]["nextToken"].is_null());

    // Presence leases live in the table too: a heartbeat shows in the agents' list and
    // counts in the customers' availability.
    let beat = "mutation($a: ID!, $c: Int) { heartbeat(appToken: $a, chatNumber: $c) { status } }";
    server
        .ok(&agent, beat, json!({ "a": app.token, "c": 1 }))
        .await;
    server
        .ok(&customer, beat, json!({ "a": app.token, "c": 2 }))
        .await;
    let listed = server
        .ok(
            &agent,
            "query($a: ID!) { presences(appToken: $a) { items { userId role chatNumber } } }",
            json!({ "a": app.token }),
        )
        .await;
    assert_eq!(
        listed["presences"]["items"],
        json!([
            { "userId": "agent-1", "role": "AGENT", "chatNumber": 1 },
            { "userId": "cust-1", "role": "CUSTOMER", "chatNumber": 2 }
        ])
    );
    let availability = server
        .ok(
            &customer,
            "query($a: ID!) { availability(appToken: $a) { agentsOnline agentsAway } }",
            json!({ "a": app.token }),
        )
        .await;
    assert_eq!(
        availability["availability"],
        json!({ "agentsOnline": 1, "agentsAway": 0 })
    );
}
