//! A minimal graphql-transport-ws client for the tests.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    pub socket: Socket,
}

#[derive(Debug)]
pub enum Incoming {
    Message(Value),
    Closed(Option<CloseFrame>),
}

impl WsClient {
    /// Connects and sends connection_init with the token; returns after connection_ack.
    pub async fn connect(http_url: &str, token: &str) -> WsClient {
        let mut client = WsClient::open(http_url).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
            .await;
        match client.next().await {
            Incoming::Message(m) if m["type"] == "connection_ack" => client,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    pub async fn open(http_url: &str) -> WsClient {
        let url = format!("{}/graphql", http_url.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        WsClient::open_request(request, "graphql-transport-ws").await
    }

    /// Opens the WebSocket `request` and checks that the server chose `protocol`.
    pub async fn open_request(
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
        protocol: &str,
    ) -> WsClient {
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some(protocol),
            "the protocol the server chose"
        );
        WsClient { socket }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// A ping round trip: the server has handled every message sent before it (messages
    /// are handled in order), so subscriptions sent before are live.
    pub async fn synced(&mut self) {
        self.send(json!({ "type": "ping" })).await;
        match self.next().await {
            Incoming::Message(m) if m["type"] == "pong" => {}
            other => panic!("expected pong, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message or close, within 10 s.
    pub async fn next(&mut self) -> Incoming {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a message within 10 s")
    }

    pub async fn next_within(&mut self, wait: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(Incoming::Message(serde_json::from_str(&text).unwrap()));
                }
                Some(Ok(Message::Close(frame))) => return Some(Incoming::Closed(frame)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Incoming::Closed(None)),
            }
        }
    }

    /// The payload of the next `next` message for `id` (skipping pings).
    pub async fn next_data(&mut self, id: &str) -> Value {
        loop {
            match self.next().await {
                Incoming::Message(m) if m["type"] == "next" && m["id"] == id => {
                    assert!(m["payload"].get("errors").is_none(), "{m}");
                    return m["payload"]["data"].clone();
                }
                Incoming::Message(m) if m["type"] == "ping" => {
                    self.send(json!({ "type": "pong" })).await
                }
                other => panic!("expected next for {id}, got {other:?}"),
            }
        }
    }
}
