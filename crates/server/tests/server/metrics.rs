//! `GET /metrics` on a started server: requests by operation and outcome, WebSocket
//! connections and subscriptions, and who may scrape.

use crate::common;

use common::ws::WsClient;
use common::*;
use serde_json::json;

const ON_MESSAGE: &str =
    "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number body } }";

async fn scrape(server: &TestServer, authorization: Option<&str>) -> (u16, String) {
    let mut request = server.client().get(format!("{}/metrics", server.url));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let response = request.send().await.expect("scrape");
    let status = response.status().as_u16();
    (status, response.text().await.expect("text"))
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn requests(text: &str, operation: &str, outcome: &str, error_type: &str) -> f64 {
    let series = format!(
        r#"chat_requests_total{{error_type="{error_type}",operation="{operation}",outcome="{outcome}"}}"#
    );
    sample(text, &series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_connections_and_subscriptions_move_the_counters() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("customer-7f3a");
    let chat = open_chat(&server, &app, &customer).await;
    let (_, before) = scrape(&server, None).await;

    // Given: two answered queries, a client error, a request that does not parse, and a live
    // subscription over graphql-transport-ws.
    for _ in 0..2 {
        server
            .ok(&customer, CHAT, json!({ "a": app.token, "n": chat }))
            .await;
    }
    let code = server
        .error_code(
            Some(&customer),
            SEND,
            json!({ "a": app.token, "c": 999, "b": "hello?" }),
        )
        .await;
    assert_eq!(code, "NotFound");
    let (status, _) = server.post(Some(&customer), "{ chat(", json!({})).await;
    assert_eq!(status, 200);
    let mut socket = WsClient::connect(&server.url, &customer).await;
    socket
        .subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    socket.synced().await;

    // When: the metrics are scraped.
    let (status, after) = scrape(&server, None).await;

    // Then: each counter moved by what happened, and nothing identifies a caller.
    assert_eq!(status, 200, "{after}");
    let moved = |operation: &str, outcome: &str, error_type: &str| {
        requests(&after, operation, outcome, error_type)
            - requests(&before, operation, outcome, error_type)
    };
    assert_eq!(moved("Query.chat", "ok", ""), 2.0, "{after}");
    assert_eq!(
        moved("Mutation.sendMessage", "client_error", "NotFound"),
        1.0
    );
    assert_eq!(moved("Mutation.sendMessage", "fault", ""), 0.0);
    assert_eq!(moved("(request)", "client_error", "BadInput"), 1.0);
    assert_eq!(moved("Subscription.onMessage", "ok", ""), 1.0);
    assert_eq!(
        requests(&after, "Mutation.createChat", "ok", ""),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            r#"chat_request_duration_seconds_count{operation="Query.chat"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            r#"chat_websocket_connections{protocol="graphql-transport-ws"}"#
        ),
        Some(1.0)
    );
    assert_eq!(sample(&after, "chat_subscriptions"), Some(1.0));
    assert!(sample(&after, "chat_store_writer_queue").is_some());
    assert!(sample(&after, "chat_search_outbox_changes").is_some());
    for secret in [&app.token, "customer-7f3a", &customer, ADMIN_KEY] {
        assert!(!after.contains(secret), "{secret} in the metrics");
    }

    // And: a closed connection is no longer counted.
    drop(socket);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, text) = scrape(&server, None).await;
        let open = sample(
            &text,
            r#"chat_websocket_connections{protocol="graphql-transport-ws"}"#,
        );
        if open == Some(0.0) && sample(&text, "chat_subscriptions") == Some(0.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_admin_key_access_only_the_admin_key_scrapes() {
    let server = TestServer::start_with_args(&["--metrics", "admin-key"], &[]);
    let app = TestApp::create(&server, "Acme").await;

    let (status, _) = scrape(&server, None).await;
    assert_eq!(status, 401);
    let (status, _) = scrape(&server, Some("Bearer not-the-admin-key")).await;
    assert_eq!(status, 401);
    let (status, _) = scrape(&server, Some(&format!("Bearer {}", app.agent("a1")))).await;
    assert_eq!(status, 401, "a user token is not the admin key");
    let (status, text) = scrape(&server, Some(&format!("Bearer {ADMIN_KEY}"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        requests(&text, "Mutation.createApplication", "ok", ""),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn with_metrics_off_there_is_no_endpoint() {
    let server = TestServer::start_with_args(&["--metrics", "off"], &[]);
    let (status, _) = scrape(&server, None).await;
    assert_eq!(status, 404);
    let (status, _) = scrape(&server, Some(&format!("Bearer {ADMIN_KEY}"))).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn loopback_access_refuses_a_client_whose_address_is_not_loopback() {
    // Served without the listener's client addresses (as behind a proxy that hides them):
    // no address is known to be loopback, so nobody may scrape.
    let registry = memory_registry();
    let auth = chat_appsync::Authenticator::new(ADMIN_KEY, registry.service().clone());
    let api = chat_server::schema::build(registry).unwrap();
    let url = serve_in_process(api, auth, std::time::Duration::from_secs(60)).await;
    let response = http_client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status().as_u16(), 403);
}
