//! Graceful shutdown: on SIGTERM the server finishes in-flight requests, sends every
//! WebSocket a close frame, drains the search outbox and exits 0.

use crate::common;

use std::time::{Duration, Instant};

use common::ws::{Incoming, WsClient};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GOING_AWAY: u16 = 1001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_closes_websockets_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_on(dir.path());
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("alice");
    let customer = app.customer("bob");
    let chat = open_chat(&server, &app, &customer).await;
    for i in 0..20 {
        send(
            &server,
            &app,
            &customer,
            chat,
            &format!("before shutdown {i}"),
        )
        .await;
    }

    // Given a live subscription ...
    let mut ws = WsClient::connect(&server.url, &agent).await;
    ws.subscribe(
        "inbox",
        "subscription($a: ID!) { onInboxMessage(appToken: $a) { number body } }",
        json!({ "a": app.token }),
    )
    .await;
    send(&server, &app, &customer, chat, "subscribed").await;
    assert_eq!(ws.next_data("inbox").await["onInboxMessage"]["number"], 21);

    // ... and a request in flight: its headers and half its body are on the wire.
    let body = json!({
        "query": SEND,
        "variables": { "a": app.token, "c": chat, "b": "in flight", "k": "in-flight-1" },
    })
    .to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {customer}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(first).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // When the server gets SIGTERM,
    let signalled = Instant::now();
    server.terminate();

    // then the subscription gets a close frame, "going away",
    match ws.next_within(Duration::from_secs(5)).await {
        Some(Incoming::Closed(Some(frame))) => {
            assert_eq!(u16::from(frame.code), GOING_AWAY, "{frame:?}");
            assert!(frame.reason.contains("shutting down"), "{frame:?}");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // the request in flight still completes,
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.write_all(rest).await.unwrap();
    raw.flush().await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut response))
        .await
        .expect("the in-flight request answers")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""number":22"#), "{response}");
    // no new connection is accepted,
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(&addr),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a stopping server accepted a connection"
    );
    // and the process exits 0 within the bound.
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(signalled.elapsed() < Duration::from_secs(10));

    // The outbox was drained before the exit: nothing is left for the indexer.
    let db = rusqlite::Connection::open(dir.path().join("chat.sqlite3")).unwrap();
    let queued: i64 = db
        .query_row("SELECT count(*) FROM search_outbox", [], |row| row.get(0))
        .unwrap();
    assert_eq!(queued, 0);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(db);

    // After a restart, the in-flight message is there once and searchable.
    let server = TestServer::start_on(dir.path());
    let found = server
        .ok(
            &customer,
            "query($a: ID!, $c: Int!, $q: String!) { searchMessages(appToken: $a, chatNumber: $c, query: $q) { items { number } } }",
            json!({ "a": app.token, "c": chat, "q": "flight" }),
        )
        .await;
    assert_eq!(found["searchMessages"]["items"], json!([{ "number": 22 }]));
    let retry = server
        .ok(
            &customer,
            SEND,
            json!({ "a": app.token, "c": chat, "b": "in flight", "k": "in-flight-1" }),
        )
        .await;
    assert_eq!(retry["sendMessage"]["number"], 22);
}
