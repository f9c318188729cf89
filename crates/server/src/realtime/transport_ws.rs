//! The `graphql-transport-ws` protocol (what the `graphql-ws` npm client, Apollo and urql
//! speak): a codec over the shared [`connection`](super::connection).
//!
//! Authentication: the `Authorization` (or `authorization` / `token`) value of the
//! `connection_init` payload, else the upgrade request's `Authorization` header; the same
//! tokens as HTTP. A connection without a valid token is closed with 4403, and so is one
//! whose token stops being valid (it expired, or its secret was rotated past its grace),
//! with the reason: graphql-ws clients retry a 4403 and so reconnect with fresh
//! `connectionParams`. Any frame the protocol does not allow closes the connection with
//! the protocol's code.

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use chat_appsync::Authenticator;
use chat_domain::Caller;
use serde_json::{Value, json};

use super::authority::{Authority, Credentials, Lost};
use super::connection::{
    self, CONNECTION_INIT_TIMEOUT, Connection, Flow, Frame, Identity, Item,
    MAX_OPERATIONS_PER_CONNECTION, Protocol, Timing, close, envelope,
};
use crate::schema::Api;
use crate::shutdown::Shutdown;

pub const PROTOCOL: &str = "graphql-transport-ws";

/// The protocol's clocks: clients ping (and the server answers); no server keep-alive, no
/// idle timeout.
pub const TIMING: Timing = Timing {
    init: CONNECTION_INIT_TIMEOUT,
    keep_alive: None,
    idle: None,
    authority_recheck: super::authority::AUTHORITY_RECHECK,
};

/// Runs one connection to its end.
pub async fn serve(
    socket: WebSocket,
    api: Api,
    auth: Arc<Authenticator>,
    header_token: Option<String>,
    timing: Timing,
    shutdown: Shutdown,
) {
    let protocol = GraphqlTransportWs { header_token };
    connection::run(socket, protocol, api, auth, timing, shutdown).await;
}

struct GraphqlTransportWs {
    /// The upgrade request's `Authorization`, used when `connection_init` carries none.
    header_token: Option<String>,
}

fn token_from_payload(payload: Option<&Value>) -> Option<String> {
    let payload = payload?.as_object()?;
    ["Authorization", "authorization", "token", "authToken"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

fn text(message: &Value) -> Message {
    Message::Text(Utf8Bytes::from(message.to_string()))
}

impl GraphqlTransportWs {
    async fn initialise(
        &mut self,
        connection: &mut Connection,
        message: &Value,
        out: &mut Vec<Message>,
    ) -> Flow {
        if message["type"] != "connection_init" {
            return Flow::close(close::UNAUTHORIZED, "Unauthorized: connection_init first");
        }
        let token = token_from_payload(message.get("payload")).or(self.header_token.take());
        match Authority::establish(&connection.auth, token.as_deref(), connection.recheck).await {
            Ok((caller @ (Caller::Admin | Caller::User(_)), authority)) => {
                connection.identity = Some(Identity {
                    caller,
                    credentials: Credentials::new(authority),
                });
                connection.initialised = true;
                out.push(text(&json!({ "type": "connection_ack" })));
                Flow::Continue
            }
            _ => Flow::close(
                close::FORBIDDEN,
                "Forbidden: a valid Authorization token is required",
            ),
        }
    }

    async fn subscribe(
        &self,
        connection: &mut Connection,
        message: &Value,
        out: &mut Vec<Message>,
    ) -> Flow {
        let Some(id) = message["id"].as_str().map(str::to_owned) else {
            return Flow::close(close::BAD_REQUEST, "subscribe needs an id");
        };
        if connection.operations.contains(&id) {
            return Flow::close(
                close::DUPLICATE_ID,
                format!("Subscriber for {id} already exists"),
            );
        }
        if connection.operations.len() >= MAX_OPERATIONS_PER_CONNECTION {
            let errors = json!([{
                "message": format!("at most {MAX_OPERATIONS_PER_CONNECTION} operations per connection"),
                "extensions": { "code": "BadInput" },
            }]);
            let id_json = connection::id_json(&id);
            out.push(self.frame(&id_json, Item::Refused(&errors.to_string())));
            return Flow::Continue;
        }
        let request: async_graphql::Request =
            match serde_json::from_value(message["payload"].clone()) {
                Ok(request) => request,
                Err(e) => {
                    return Flow::close(
                        close::BAD_REQUEST,
                        format!("invalid subscribe payload: {e}"),
                    );
                }
            };
        let Some(identity) = &mut connection.identity else {
            return Flow::close(close::UNAUTHORIZED, "Unauthorized: connection_init first");
        };
        // An expired token starts nothing (its connection closes).
        if let Err(reason) = identity.credentials.connection.check().await {
            return Flow::close(close::FORBIDDEN, reason);
        }
        let caller = identity.caller.clone();
        // A subscription is admitted and live once this returns, before the next message
        // of the connection is read.
        let (kind, stream) = connection.execute(request, caller).await;
        connection.operations.start(id, kind, stream, false);
        Flow::Continue
    }
}

impl Protocol for GraphqlTransportWs {
    async fn receive(
        &mut self,
        connection: &mut Connection,
        frame: Frame,
        out: &mut Vec<Message>,
    ) -> Flow {
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary => {
                return Flow::close(close::BAD_REQUEST, "binary messages are not supported");
            }
            Frame::Unreadable => return Flow::Leave,
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            return Flow::close(close::BAD_REQUEST, "message is not JSON");
        };
        if !connection.initialised {
            return self.initialise(connection, &message, out).await;
        }
        match message["type"].as_str() {
            Some("ping") => {
                out.push(self::text(&json!({ "type": "pong" })));
                Flow::Continue
            }
            Some("pong") => Flow::Continue,
            Some("connection_init") => {
                Flow::close(close::TOO_MANY_INITS, "Too many initialisation requests")
            }
            Some("subscribe") => self.subscribe(connection, &message, out).await,
            Some("complete") => {
                if let Some(id) = message["id"].as_str() {
                    connection.end(id);
                }
                Flow::Continue
            }
            _ => Flow::close(close::BAD_REQUEST, "unknown message type"),
        }
    }

    fn frame(&self, id_json: &str, item: Item<'_>) -> Message {
        match item {
            Item::Event(response) => envelope("next", id_json, response),
            Item::Refused(errors) => envelope("error", id_json, errors),
            Item::Complete => envelope("complete", id_json, ""),
        }
    }

    fn lost(&mut self, connection: &mut Connection, lost: Lost, _out: &mut Vec<Message>) -> Flow {
        match lost {
            Lost::Connection(reason) => Flow::close(close::FORBIDDEN, reason),
            // Operations here run on the connection's credential; none brings its own.
            Lost::Operations(lost) => {
                for (id, _) in lost {
                    connection.end(&id);
                }
                Flow::Continue
            }
        }
    }
}
