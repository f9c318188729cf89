//! An AppSync real-time protocol client for the tests (what Amplify JS and Flutter send):
//! the handshakes, `start`, and reading past keep-alives.
#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::ws::{Incoming, WsClient};

/// How a client presents its token at the handshake.
pub enum Handshake<'a> {
    /// Amplify JS 6: a second subprotocol `header-<base64url JSON>`.
    Subprotocol(&'a str),
    /// Amplify Flutter and the AWS guide: `?header=<base64 JSON>&payload=e30=`.
    Query(&'a str),
    /// The upgrade request's Authorization header.
    Header(&'a str),
    None,
}

pub fn auth_headers(token: &str, url: &str) -> Value {
    let host = url.trim_start_matches("http://");
    json!({ "Authorization": token, "host": host })
}

/// Opens a WebSocket at `path` the way `handshake` says, asking for `graphql-ws`.
pub async fn open(url: &str, path: &str, handshake: Handshake<'_>) -> WsClient {
    let mut target = format!("{}{path}", url.replacen("http", "ws", 1));
    let mut protocols = "graphql-ws".to_owned();
    let mut authorization = None;
    match handshake {
        Handshake::Subprotocol(token) => {
            let encoded = URL_SAFE_NO_PAD.encode(auth_headers(token, url).to_string());
            protocols.push_str(&format!(", header-{encoded}"));
        }
        Handshake::Query(token) => {
            let encoded = STANDARD.encode(auth_headers(token, url).to_string());
            let encoded: String = encoded
                .chars()
                .map(|c| match c {
                    '+' => "%2B".to_owned(),
                    '/' => "%2F".to_owned(),
                    '=' => "%3D".to_owned(),
                    c => c.to_string(),
                })
                .collect();
            target.push_str(&format!("?header={encoded}&payload=e30%3D"));
        }
        Handshake::Header(token) => authorization = Some(token),
        Handshake::None => {}
    }
    let mut request = target.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    if let Some(token) = authorization {
        request
            .headers_mut()
            .insert("Authorization", token.parse().unwrap());
    }
    // The server answers with graphql-ws, as AppSync does.
    WsClient::open_request(request, "graphql-ws").await
}

/// Connects as Amplify JS does and returns after connection_ack and the first ka.
pub async fn connect(url: &str, token: &str) -> WsClient {
    let mut client = open(url, "/graphql/realtime", Handshake::Subprotocol(token)).await;
    client.send(json!({ "type": "connection_init" })).await;
    let ack = next(&mut client).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    assert_eq!(ack["payload"]["connectionTimeoutMs"], 300_000, "{ack}");
    let ka = next(&mut client).await;
    assert_eq!(ka, json!({ "type": "ka" }));
    client
}

/// The next message (keep-alives included); panics on a close.
pub async fn next(client: &mut WsClient) -> Value {
    match client.next().await {
        Incoming::Message(m) => m,
        Incoming::Closed(frame) => panic!("closed: {frame:?}"),
    }
}

/// The next message that is not a keep-alive.
pub async fn next_not_ka(client: &mut WsClient) -> Value {
    loop {
        let message = next(client).await;
        if message["type"] != "ka" {
            return message;
        }
    }
}

/// A `start` as Amplify sends it: `data` is JSON text; the token, when given, in
/// `extensions.authorization`.
pub fn start(id: &str, query: &str, variables: Value, token: Option<&str>) -> Value {
    let data = json!({ "query": query, "variables": variables }).to_string();
    let mut message = json!({ "id": id, "type": "start", "payload": { "data": data } });
    if let Some(token) = token {
        message["payload"]["extensions"] = json!({
            "authorization": { "Authorization": token, "host": "localhost", "x-amz-user-agent": "test" }
        });
    }
    message
}

/// Starts a subscription and waits for its start_ack.
pub async fn subscribe(client: &mut WsClient, id: &str, query: &str, variables: Value) {
    client.send(start(id, query, variables, None)).await;
    let ack = next_not_ka(client).await;
    assert_eq!(ack, json!({ "type": "start_ack", "id": id }));
}

/// The next `error`'s id and first error.
pub async fn expect_error(client: &mut WsClient) -> (Value, Value) {
    let message = next_not_ka(client).await;
    assert_eq!(message["type"], "error", "{message}");
    let error = message["payload"]["errors"][0].clone();
    assert!(error["message"].is_string(), "{message}");
    (message["id"].clone(), error)
}

pub async fn nothing_arrives(client: &mut WsClient) {
    while let Some(incoming) = client.next_within(Duration::from_millis(300)).await {
        match incoming {
            Incoming::Message(m) if m["type"] == "ka" => continue,
            other => panic!("unexpected: {other:?}"),
        }
    }
}
