//! Requests that `scripts/fuzz` (fuzz/graphql_fuzz.py) found to break the server, kept as
//! tests once fixed. docs/fuzzing.md lists them.

use crate::common;

use chat_domain::limits::QUERY_BRACKETS_MAX;
use common::ws::{Incoming, WsClient};
use common::*;
use serde_json::json;

/// `{ chat(appToken: [[[...1...]]], number: 1) { number } }`, and the same with input
/// objects: `{a: {a: ... }}`.
fn nested_argument(depth: usize, object: bool) -> String {
    let (open, close) = if object { ("{a: ", "}") } else { ("[", "]") };
    format!(
        "{{ chat(appToken: {}1{}, number: 1) {{ number }} }}",
        open.repeat(depth),
        close.repeat(depth)
    )
}

#[tokio::test]
async fn deeply_nested_argument_values_are_refused_and_the_server_stays_up() {
    // Given a server (2,000 nested `[`, 4 KB, used to overflow a worker's stack and abort
    // the whole process).
    let server = TestServer::start();
    for depth in [2_000, 20_000] {
        for object in [false, true] {
            // When an argument value nests that deep
            let (status, body) = server
                .post(Some(ADMIN_KEY), &nested_argument(depth, object), json!({}))
                .await;
            // Then it is BadInput naming the limit, before anything parses it
            assert_eq!(status, 200, "{depth} {object}: {body}");
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "BadInput",
                "{body}"
            );
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(
                message.contains(&format!("the limit is {QUERY_BRACKETS_MAX}")),
                "{message}"
            );
        }
    }
    // And the server still answers.
    let (status, body) = server.post(None, "{ __typename }", json!({})).await;
    assert_eq!(
        (status, &body["data"]["__typename"]),
        (200, &json!("Query"))
    );
}

#[tokio::test]
async fn nesting_up_to_the_limit_reaches_validation() {
    let server = TestServer::start();
    // The outer `{` and `(` count: the value itself may nest QUERY_BRACKETS_MAX - 2 deep.
    let (_, body) = server
        .post(
            Some(ADMIN_KEY),
            &nested_argument(QUERY_BRACKETS_MAX - 2, false),
            json!({}),
        )
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        !message.contains("the limit is"),
        "refused by the nesting check: {message}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "BadInput");
}

#[tokio::test]
async fn deeply_nested_values_are_refused_over_websocket_too() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let mut client = WsClient::connect(&server.url, &app.agent("a1")).await;
    let query = format!(
        "subscription {{ onChat(appToken: {}\"x\"{}) {{ number }} }}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    client.subscribe("deep", &query, json!({})).await;
    match client.next().await {
        Incoming::Message(m) if m["type"] == "error" && m["id"] == "deep" => {
            assert_eq!(m["payload"][0]["extensions"]["code"], "BadInput", "{m}");
        }
        other => panic!("expected an error for the deep subscription, got {other:?}"),
    }
    // The connection and the server carry on.
    let (status, _) = server.post(None, "{ __typename }", json!({})).await;
    assert_eq!(status, 200);
}
