//! Rate limits on sendMessage and createChat over real HTTP: per user and per application,
//! Throttled with a retry hint, nothing stored for a refused send. The rates here refill
//! once a minute so that timing never decides a test.

use crate::common;

use common::*;
use serde_json::{Value, json};

/// POSTs and returns the status, the `Retry-After` header and the body.
async fn post_raw(
    server: &TestServer,
    token: &str,
    query: &str,
    variables: Value,
) -> (u16, Option<String>, Value) {
    let response = server
        .client()
        .post(format!("{}/graphql", server.url))
        .header("Authorization", token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, response.json().await.unwrap())
}

/// Asserts a Throttled answer with a hint of at most `max_ms`; returns the hint.
fn assert_throttled(status: u16, retry_after: Option<String>, body: &Value, max_ms: u64) -> u64 {
    assert_eq!(status, 200, "GraphQL keeps 200, as AppSync does: {body}");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "Throttled", "{body}");
    assert_eq!(error["errorType"], "Throttled", "{body}");
    let hint = error["extensions"]["retryAfterMs"].as_u64().unwrap();
    assert_eq!(
        error["errorInfo"]["retryAfterMs"], hint,
        "where AppSync has it: {body}"
    );
    assert!((1..=max_ms).contains(&hint), "{hint} ms");
    let message = error["message"].as_str().unwrap();
    assert_eq!(message, format!("too many requests; retry after {hint} ms"));
    let header: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert_eq!(header, hint.div_ceil(1000));
    hint
}

#[tokio::test]
async fn a_user_over_its_rate_is_throttled_and_others_of_its_application_are_not() {
    // 5 at once, then one a minute; no application limit.
    let server = TestServer::start_with_args(
        &[
            "--send-rate-per-user",
            "1/min",
            "--send-burst-per-user",
            "5",
            "--send-rate-per-app",
            "0",
        ],
        &[],
    );
    let app = TestApp::create(&server, "Acme").await;
    let (c1, c2) = (app.customer("c1"), app.customer("c2"));
    let chat = open_chat(&server, &app, &c1).await; // 1 of c1's 5
    for i in 0..4 {
        send(&server, &app, &c1, chat, &format!("m{i}")).await;
    }

    let (status, retry_after, body) = post_raw(
        &server,
        &c1,
        SEND,
        json!({ "a": app.token, "c": chat, "b": "one too many" }),
    )
    .await;
    assert_throttled(status, retry_after, &body, 60_000);
    // createChat draws from the same budget.
    let (status, retry_after, body) =
        post_raw(&server, &c1, CREATE_CHAT, json!({ "a": app.token })).await;
    assert_throttled(status, retry_after, &body, 60_000);
    let data = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(
        data["chat"]["messagesCount"], 4,
        "the refused send stored nothing"
    );

    // Another user of the same application has its own five.
    let other = open_chat(&server, &app, &c2).await;
    for i in 0..4 {
        send(&server, &app, &c2, other, &format!("n{i}")).await;
    }
    // Reads are not throttled.
    let page = server
        .ok(&c1, MESSAGES, json!({ "a": app.token, "c": chat }))
        .await;
    assert_eq!(page["messages"]["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn an_application_over_its_rate_is_throttled_and_other_applications_are_not() {
    let server = TestServer::start_with_args(
        &[
            "--send-rate-per-user",
            "0",
            "--send-rate-per-app",
            "1/min",
            "--send-burst-per-app",
            "6",
        ],
        &[],
    );
    let (busy, quiet) = (
        TestApp::create(&server, "Busy").await,
        TestApp::create(&server, "Quiet").await,
    );
    // Three customers open a chat and send once each: the application's six.
    for i in 0..3 {
        let customer = busy.customer(&format!("c{i}"));
        let chat = open_chat(&server, &busy, &customer).await;
        send(&server, &busy, &customer, chat, "hello").await;
    }
    let newcomer = busy.customer("newcomer");
    let (status, retry_after, body) =
        post_raw(&server, &newcomer, CREATE_CHAT, json!({ "a": busy.token })).await;
    assert_throttled(status, retry_after, &body, 60_000);

    let customer = quiet.customer("c0");
    let chat = open_chat(&server, &quiet, &customer).await;
    assert_eq!(
        send(&server, &quiet, &customer, chat, "fine").await["number"],
        1
    );
}

#[tokio::test]
async fn a_throttled_user_is_admitted_again_after_the_hint() {
    // 10 per second, a burst of 2: the hint is at most 100 ms, and waiting it out works.
    let server = TestServer::start_with_args(
        &["--send-rate-per-user", "10/s", "--send-burst-per-user", "2"],
        &[],
    );
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let chat = server
        .ok(&agent, CREATE_CHAT, json!({ "a": app.token, "c": "c1" }))
        .await["createChat"]["number"]
        .as_i64()
        .unwrap();
    let vars = json!({ "a": app.token, "c": chat, "b": "hi" });
    // Keep sending until refused (at most the burst plus what refills meanwhile).
    let mut refusal = None;
    for _ in 0..50 {
        let (status, retry_after, body) = post_raw(&server, &agent, SEND, vars.clone()).await;
        if body.get("errors").is_some() {
            refusal = Some(assert_throttled(status, retry_after, &body, 100));
            break;
        }
    }
    let hint = refusal.expect("throttled within 50 sends");
    tokio::time::sleep(std::time::Duration::from_millis(hint)).await;
    let sent = server.ok(&agent, SEND, vars).await;
    assert!(sent["sendMessage"]["number"].as_i64().unwrap() >= 2);
}
