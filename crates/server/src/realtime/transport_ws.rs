//! The `graphql-transport-ws` protocol (what the `graphql-ws` npm client, Apollo and urql
//! speak) over axum WebSockets.
//!
//! Authentication: the `Authorization` (or `authorization` / `token`) value of the
//! `connection_init` payload, else the upgrade request's `Authorization` header; the same
//! tokens as HTTP. A connection without a valid token is closed with 4403, and so is one
//! whose token stops being valid (it expired, or its secret was rotated past its grace),
//! with the reason: graphql-ws clients retry a 4403 and so reconnect with fresh
//! `connectionParams`.
//!
//! A connection never blocks the rest of the server: every send has a deadline, and a
//! subscription that falls behind closes the connection with 4029 and a
//! reason telling the client how to recover. When the server stops, every connection gets
//! a close frame (1001, going away) before the process exits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chat_appsync::Authenticator;
use chat_domain::Caller;

use super::authority::Authority;
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_stream::StreamMap;

use super::{ConnectionSignals, Operation, Payload};
use crate::schema::Api;
use crate::shutdown::{GOING_AWAY, GOING_AWAY_REASON, Shutdown};

pub const PROTOCOL: &str = "graphql-transport-ws";
/// How long a client may take to send `connection_init`.
pub const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one frame may take to go out before the peer is considered dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer of one connection (frames may still be up to the request body limit).
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Frames are written out once this much is waiting, or at each flush.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// Operations one connection may have running at once.
pub const MAX_OPERATIONS_PER_CONNECTION: usize = 100;

pub mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    /// Not in the protocol's list: the server's own "you fell behind" (4429 is
    /// graphql-ws' "too many initialisation requests"; 4000-4999 are the application's).
    pub const FELL_BEHIND: u16 = 4029;
    pub const TOO_MANY_INITS: u16 = 4429;
}

pub(super) type Sink = futures::stream::SplitSink<WebSocket, Message>;

async fn send(sink: &mut Sink, message: Value) -> bool {
    let text = Utf8Bytes::from(message.to_string());
    send_all(sink, vec![Message::Text(text)]).await
}

/// Writes the frames and flushes once, all within [`SEND_TIMEOUT`].
pub(super) async fn send_all(sink: &mut Sink, frames: Vec<Message>) -> bool {
    if frames.is_empty() {
        return true;
    }
    let write = async {
        for frame in frames {
            sink.feed(frame).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

pub(super) async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

fn token_from_payload(payload: Option<&Value>) -> Option<String> {
    let payload = payload?.as_object()?;
    ["Authorization", "authorization", "token", "authToken"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

/// Runs one connection to its end.
pub async fn serve(
    socket: WebSocket,
    api: Api,
    auth: std::sync::Arc<Authenticator>,
    header_token: Option<String>,
    shutdown: Shutdown,
    authority_recheck: Duration,
) {
    let _session = shutdown.session();
    let (mut sink, mut source) = socket.split();

    // connection_init, within the deadline.
    let init = tokio::select! {
        init = tokio::time::timeout(CONNECTION_INIT_TIMEOUT, next_json(&mut source)) => init,
        _ = shutdown.stopping() => return close(&mut sink, GOING_AWAY, GOING_AWAY_REASON).await,
    };
    let (caller, mut authority) = match init {
        Err(_) => {
            return close(
                &mut sink,
                close::INIT_TIMEOUT,
                "Connection initialisation timeout",
            )
            .await;
        }
        Ok(None) => return,
        Ok(Some(Err(reason))) => return close(&mut sink, close::BAD_REQUEST, &reason).await,
        Ok(Some(Ok(message))) if message["type"] == "connection_init" => {
            let token = token_from_payload(message.get("payload")).or(header_token);
            match Authority::establish(&auth, token.as_deref(), authority_recheck).await {
                Ok((caller @ (Caller::Admin | Caller::User(_)), authority)) => (caller, authority),
                _ => {
                    return close(
                        &mut sink,
                        close::FORBIDDEN,
                        "Forbidden: a valid Authorization token is required",
                    )
                    .await;
                }
            }
        }
        Ok(Some(Ok(_))) => {
            return close(
                &mut sink,
                close::UNAUTHORIZED,
                "Unauthorized: connection_init first",
            )
            .await;
        }
    };
    if !send(&mut sink, json!({ "type": "connection_ack" })).await {
        return;
    }

    let signals = ConnectionSignals::default();
    let mut operations = Operations::default();

    loop {
        tokio::select! {
            incoming = next_json(&mut source) => {
                let message = match incoming {
                    None => break,
                    Some(Err(reason)) => return close(&mut sink, close::BAD_REQUEST, &reason).await,
                    Some(Ok(message)) => message,
                };
                match message["type"].as_str() {
                    Some("ping") => {
                        if !send(&mut sink, json!({ "type": "pong" })).await { break; }
                    }
                    Some("pong") => {}
                    Some("connection_init") => {
                        return close(&mut sink, close::TOO_MANY_INITS, "Too many initialisation requests").await;
                    }
                    Some("subscribe") => {
                        let Some(id) = message["id"].as_str().map(str::to_owned) else {
                            return close(&mut sink, close::BAD_REQUEST, "subscribe needs an id").await;
                        };
                        if operations.streams.contains_key(&id) {
                            return close(&mut sink, close::DUPLICATE_ID, &format!("Subscriber for {id} already exists")).await;
                        }
                        if operations.streams.len() >= MAX_OPERATIONS_PER_CONNECTION {
                            let error = json!([{ "message": format!("at most {MAX_OPERATIONS_PER_CONNECTION} operations per connection"), "extensions": { "code": "BadInput" } }]);
                            if !send(&mut sink, json!({ "type": "error", "id": id, "payload": error })).await { break; }
                            continue;
                        }
                        let request: async_graphql::Request = match serde_json::from_value(message["payload"].clone()) {
                            Ok(request) => request,
                            Err(e) => return close(&mut sink, close::BAD_REQUEST, &format!("invalid subscribe payload: {e}")).await,
                        };
                        // An expired token starts nothing (its connection closes).
                        if let Err(reason) = authority.check().await {
                            return close(&mut sink, close::FORBIDDEN, &reason).await;
                        }
                        // A subscription is admitted and live once this returns, before the
                        // next message of the connection is read.
                        let (kind, stream) = api.execute_stream(request, caller.clone(), signals.clone()).await;
                        operations.start(id, kind, stream);
                    }
                    Some("complete") => {
                        if let Some(id) = message["id"].as_str() {
                            operations.end(id);
                        }
                    }
                    _ => return close(&mut sink, close::BAD_REQUEST, "unknown message type").await,
                }
            }
            Some((id, item)) = operations.streams.next(), if !operations.streams.is_empty() => {
                // This item and whatever else is ready, written together and flushed once.
                let mut frames = Vec::new();
                let mut behind = operations.frame(id, item, &signals, &mut frames);
                while !behind && frames.len() < MAX_FRAMES_PER_WRITE {
                    let Some(Some((id, item))) = operations.streams.next().now_or_never() else {
                        break;
                    };
                    behind = operations.frame(id, item, &signals, &mut frames);
                }
                if !send_all(&mut sink, frames).await || behind { break; }
            }
            _ = signals.wait_fell_behind() => break,
            reason = authority.ended() => {
                return close(&mut sink, close::FORBIDDEN, &reason).await;
            }
            _ = shutdown.stopping() => {
                return close(&mut sink, GOING_AWAY, GOING_AWAY_REASON).await;
            }
        }
    }
    if signals.is_behind() {
        close(&mut sink, close::FELL_BEHIND, FELL_BEHIND_REASON).await;
    } else {
        // The peer closed: send the close frame that answers its own (the WebSocket closing
        // handshake), so it sees a clean close rather than a dropped connection.
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
    }
}

/// Frames written before one flush, at most.
pub(super) const MAX_FRAMES_PER_WRITE: usize = 64;

/// The operations running on one connection.
#[derive(Default)]
struct Operations {
    /// Each operation's payloads, then `None` when it ended on the server's side.
    streams: StreamMap<String, BoxStream<'static, Option<Arc<Payload>>>>,
    /// Per operation: its kind, its id as JSON, whether it has answered yet (a
    /// subscription's first response with errors and no data is a refusal: `error`).
    state: HashMap<String, (Operation, String, bool)>,
}

impl Operations {
    fn start(&mut self, id: String, kind: Operation, stream: BoxStream<'static, Arc<Payload>>) {
        let stream = stream
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .boxed();
        let id_json = Value::String(id.clone()).to_string();
        self.state.insert(id.clone(), (kind, id_json, false));
        self.streams.insert(id, stream);
    }

    fn end(&mut self, id: &str) {
        self.streams.remove(id);
        self.state.remove(id);
    }

    /// The frame for an operation's item, if any; `true` when the connection fell behind
    /// and must close.
    fn frame(
        &mut self,
        id: String,
        item: Option<Arc<Payload>>,
        signals: &ConnectionSignals,
        frames: &mut Vec<Message>,
    ) -> bool {
        let Some((kind, id_json, answered)) = self.state.get_mut(&id) else {
            return false; // completed by the client meanwhile
        };
        match item {
            Some(payload) => {
                let first = !std::mem::replace(answered, true);
                match &payload.refusal {
                    Some(errors) if first && *kind != Operation::Single => {
                        // Validation or authorization refused the operation.
                        frames.push(envelope("error", id_json, errors));
                        self.end(&id);
                    }
                    _ => frames.push(envelope("next", id_json, &payload.response)),
                }
                false
            }
            None if signals.is_behind() => true,
            None => {
                frames.push(envelope("complete", id_json, ""));
                self.state.remove(&id);
                false
            }
        }
    }
}

/// `{"type":<kind>,"id":<id>,"payload":<payload>}` by concatenation (the id is JSON
/// already; no payload when it is empty).
fn envelope(kind: &str, id_json: &str, payload: &str) -> Message {
    let mut frame = String::with_capacity(40 + id_json.len() + payload.len());
    frame.push_str("{\"type\":\"");
    frame.push_str(kind);
    frame.push_str("\",\"id\":");
    frame.push_str(id_json);
    if !payload.is_empty() {
        frame.push_str(",\"payload\":");
        frame.push_str(payload);
    }
    frame.push('}');
    Message::Text(Utf8Bytes::from(frame))
}

/// The close reason of a connection whose subscriber fell behind, with the way back.
pub const FELL_BEHIND_REASON: &str =
    "subscriber fell behind: reconnect, resubscribe, then fetch messages(after: lastSeen)";

/// The next JSON text message; `None` when the peer closed; `Err` for anything else.
async fn next_json(
    source: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<Result<Value, String>> {
    loop {
        match source.next().await? {
            Ok(Message::Text(text)) => {
                return Some(
                    serde_json::from_str::<Value>(text.as_str())
                        .map_err(|_| "message is not JSON".to_owned()),
                );
            }
            Ok(Message::Binary(_)) => return Some(Err("binary messages are not supported".into())),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
        }
    }
}
