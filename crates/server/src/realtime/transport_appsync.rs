//! AppSync's own real-time protocol ("Building a real-time WebSocket client" in the AppSync
//! developer guide), which Amplify JS and Amplify Flutter speak: a codec over the shared
//! [`connection`](super::connection).
//!
//! The wire, as Amplify JS 6 and Amplify Flutter send it:
//! - The client connects to `/graphql/realtime` (Amplify's path for any endpoint that is not
//!   AppSync's own domain) or `/graphql`, with the subprotocol `graphql-ws`. The handshake
//!   carries the authorization headers as base64 JSON, `{"Authorization": "<token>",
//!   "host": "..."}`: in a second subprotocol `header-<base64url>` (Amplify JS 6), or in the
//!   `header` query parameter next to `payload=e30=` (Amplify Flutter, the guide), or as
//!   the upgrade request's `Authorization` header.
//! - `connection_init` -> `connection_ack` `{"connectionTimeoutMs": 300000}`, then `ka` at
//!   once and every [`TIMING`]'s `keep_alive`; a client that hears no `ka` within
//!   `connectionTimeoutMs` reconnects. `connection_init` is optional, as on AppSync: a
//!   `start` initialises the connection too.
//! - `start` `{id, payload: {data: "<JSON text of {query, variables}>", extensions:
//!   {authorization: {Authorization, host}}}}` -> `start_ack`, then one `data` `{id,
//!   payload: {data}}` per event; or `error` `{id, payload: {errors: [{errorType,
//!   message}]}}` when the subscription is refused.
//! - `stop` `{id}` -> `complete` `{id}`.
//!
//! Authorization is HTTP's: the [`Authenticator`] reads the same tokens. The handshake's
//! token authenticates the connection (none or an invalid one: `connection_error` with
//! AppSync's `UnauthorizedException` and `errorCode` 401, which Amplify does not retry,
//! then close); each `start` is authorized with its own `extensions.authorization` when it
//! has one (AppSync allows subscriptions of different identities on one connection), else
//! with the connection's. Subscribing, authorization at subscribe time and delivery are
//! [`Api::execute_stream`]'s, exactly as over graphql-transport-ws: one implementation of
//! the rule, two wire formats.
//!
//! Bounds are the connection's: at most [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] subscriptions,
//! frames up to the request body limit, every write within a deadline; a connection that
//! never initialises, or stays without subscriptions, is closed after a timeout; a
//! subscriber that falls behind is cut off (close 4029 with the way back). A frame that
//! cannot be used gets an `error` and the connection goes on.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Variables;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::http::{HeaderMap, header};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use chat_appsync::Authenticator;
use chat_domain::Caller;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::authority::{Authority, Credentials, Lost};
use super::connection::{
    self, CONNECTION_INIT_TIMEOUT, Connection, Flow, Frame, Identity, Item,
    MAX_OPERATIONS_PER_CONNECTION, Protocol, Timing, close, envelope,
};
use super::{Operation, Payload};
use crate::schema::Api;
use crate::shutdown::Shutdown;

/// The subprotocol AppSync answers with (the name graphql-ws' predecessor used).
pub const PROTOCOL: &str = "graphql-ws";
/// Where Amplify connects for an endpoint that is not on AppSync's own domain: the GraphQL
/// endpoint's URL plus `/realtime`.
pub const PATH: &str = "/graphql/realtime";
/// The handshake's query parameter with the base64 JSON authorization headers.
pub const HEADER_PARAMETER: &str = "header";
/// The handshake's subprotocol with the base64url JSON authorization headers (Amplify JS 6).
pub const HEADER_SUBPROTOCOL_PREFIX: &str = "header-";
/// Told to the client in `connection_ack`: how long it may go without a `ka` (AppSync's
/// value).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// AppSync's limit, and the graphql-transport-ws transport's.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = MAX_OPERATIONS_PER_CONNECTION;

/// The protocol's clocks: `ka` every 30 s (Amplify JS warns after 65 s without one); a
/// connection without subscriptions is closed after [`CONNECTION_TIMEOUT`].
pub const TIMING: Timing = Timing {
    init: CONNECTION_INIT_TIMEOUT,
    keep_alive: Some(Duration::from_secs(30)),
    idle: Some(CONNECTION_TIMEOUT),
    authority_recheck: super::authority::AUTHORITY_RECHECK,
};

/// An error as AppSync sends it in `error` and `connection_error` messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSyncError {
    pub error_type: String,
    pub message: String,
    /// Only on `connection_error`: the HTTP status AppSync would have answered; Amplify
    /// does not retry 400, 401 and 403.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
}

impl AppSyncError {
    fn new(error_type: &str, message: impl Into<String>) -> AppSyncError {
        AppSyncError {
            error_type: error_type.to_owned(),
            message: message.into(),
            error_code: None,
        }
    }

    fn bad_input(message: impl Into<String>) -> AppSyncError {
        AppSyncError::new("BadInput", message)
    }
}

#[derive(Debug, Serialize)]
struct Errors {
    errors: Vec<AppSyncError>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionAckPayload {
    connection_timeout_ms: u64,
}

/// What the server sends, but `data` and a refusal's `error`: those wrap text rendered once
/// for every subscriber ([`Payload`]) and are put together by [`envelope`].
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ServerMessage<'a> {
    ConnectionAck {
        payload: ConnectionAckPayload,
    },
    ConnectionError {
        payload: Errors,
    },
    Ka,
    StartAck {
        id: &'a str,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        payload: Errors,
    },
}

impl ServerMessage<'_> {
    fn frame(&self) -> Message {
        let text = serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"ka"}"#.into());
        Message::Text(Utf8Bytes::from(text))
    }
}

fn error_frame(id: Option<&str>, error: AppSyncError) -> Message {
    ServerMessage::Error {
        id,
        payload: Errors {
            errors: vec![error],
        },
    }
    .frame()
}

/// What the client sends.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    /// Amplify Flutter adds an `id`; a payload, if any, is ignored.
    ConnectionInit {},
    Start {
        id: String,
        payload: StartPayload,
    },
    Stop {
        id: String,
    },
}

#[derive(Debug, PartialEq, Deserialize)]
struct StartPayload {
    /// The JSON text of `{query, variables, operationName}`.
    data: String,
    #[serde(default)]
    extensions: Option<StartExtensions>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct StartExtensions {
    /// The headers a request would carry: `Authorization`, `host`, Amplify's user agent.
    #[serde(default)]
    authorization: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartData {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    operation_name: Option<String>,
}

/// A frame that cannot be used: answered with `error` (with its id when it had one); the
/// connection goes on.
#[derive(Debug, PartialEq, Eq)]
struct FrameError {
    id: Option<String>,
    error: AppSyncError,
}

/// A client frame's text as a message.
fn decode(text: &str) -> Result<ClientMessage, FrameError> {
    let bad = |id: Option<String>, message: String| FrameError {
        id,
        error: AppSyncError::bad_input(message),
    };
    let value: Value =
        serde_json::from_str(text).map_err(|_| bad(None, "the message is not JSON".into()))?;
    let Value::Object(fields) = &value else {
        return Err(bad(None, "the message must be a JSON object".into()));
    };
    let id = fields.get("id").and_then(Value::as_str).map(str::to_owned);
    let Some(kind) = fields.get("type").and_then(Value::as_str) else {
        return Err(bad(id, "the message has no \"type\"".into()));
    };
    if !matches!(kind, "connection_init" | "start" | "stop") {
        // AppSync's answer, word for word.
        return Err(FrameError {
            id,
            error: AppSyncError::new(
                "UnsupportedOperation",
                format!("{kind} not supported through the realtime channel"),
            ),
        });
    }
    let kind = kind.to_owned();
    serde_json::from_value(value).map_err(|e| bad(id, format!("invalid {kind} message: {e}")))
}

/// A `start`'s `data` as a GraphQL request.
fn start_request(data: &str) -> Result<async_graphql::Request, AppSyncError> {
    let data: StartData = serde_json::from_str(data).map_err(|e| {
        AppSyncError::bad_input(format!(
            "payload.data must be the JSON text of {{\"query\", \"variables\"}}: {e}"
        ))
    })?;
    let mut request = async_graphql::Request::new(data.query);
    match data.variables {
        None | Some(Value::Null) => {}
        Some(variables @ Value::Object(_)) => {
            request = request.variables(Variables::from_json(variables));
        }
        Some(_) => return Err(AppSyncError::bad_input("variables must be a JSON object")),
    }
    request.operation_name = data.operation_name;
    Ok(request)
}

/// The `Authorization` entry of a headers object, whatever its case.
fn authorization_of(headers: &Map<String, Value>) -> Option<&str> {
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.as_str())
}

/// Base64 JSON as clients send it: the standard or the URL-safe alphabet, padded or not.
fn decode_base64_json(text: &str) -> Option<Map<String, Value>> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let engine = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    let bytes = engine.decode(text.trim()).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The subprotocols a WebSocket upgrade request asks for, in order.
pub fn requested_protocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .collect()
}

/// The authorization a client opened its connection with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    Token(String),
    Missing,
    /// The authorization was there but unreadable.
    Malformed(String),
}

impl Handshake {
    /// Reads, in this order, the `header-` subprotocol, the `header` query parameter, the
    /// request's `Authorization` header.
    pub fn read(headers: &HeaderMap, header_parameter: Option<&str>) -> Handshake {
        let subprotocol = requested_protocols(headers)
            .into_iter()
            .find_map(|p| p.strip_prefix(HEADER_SUBPROTOCOL_PREFIX));
        if let Some(encoded) = subprotocol {
            return Handshake::from_encoded(encoded, "the header- subprotocol");
        }
        if let Some(encoded) = header_parameter {
            return Handshake::from_encoded(encoded, "the header query parameter");
        }
        match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
            Some(Ok(token)) => Handshake::Token(token.to_owned()),
            Some(Err(_)) => Handshake::Malformed("the Authorization header is not text".into()),
            None => Handshake::Missing,
        }
    }

    fn from_encoded(encoded: &str, source: &str) -> Handshake {
        match decode_base64_json(encoded) {
            None => Handshake::Malformed(format!("{source} is not base64 of a JSON object")),
            Some(headers) => match authorization_of(&headers) {
                Some(token) => Handshake::Token(token.to_owned()),
                None => Handshake::Missing,
            },
        }
    }
}

/// A connection refused at the handshake, as AppSync's `connection_error`.
fn connection_refusal(error_type: &str, code: u16, message: String) -> AppSyncError {
    AppSyncError {
        error_type: error_type.to_owned(),
        message,
        error_code: Some(code),
    }
}

/// Who the handshake says the connection is.
async fn authenticate_handshake(
    auth: &Arc<Authenticator>,
    handshake: Handshake,
    recheck: Duration,
) -> Result<(Caller, Authority), AppSyncError> {
    let unauthorized = |why: String| connection_refusal("UnauthorizedException", 401, why);
    match handshake {
        Handshake::Malformed(why) => Err(connection_refusal("BadRequestException", 400, why)),
        Handshake::Missing => Err(unauthorized(
            "the handshake carries no Authorization token (in the header- subprotocol, the \
             header query parameter or the Authorization header)"
                .into(),
        )),
        Handshake::Token(token) => match Authority::establish(auth, Some(&token), recheck).await {
            Ok((caller @ (Caller::Admin | Caller::User(_)), authority)) => Ok((caller, authority)),
            Ok((Caller::Anonymous, _)) => {
                Err(unauthorized("the Authorization token is empty".into()))
            }
            Err(error) => Err(unauthorized(error)),
        },
    }
}

/// Runs one connection to its end.
pub async fn serve(
    socket: WebSocket,
    api: Api,
    auth: Arc<Authenticator>,
    handshake: Handshake,
    timing: Timing,
    shutdown: Shutdown,
) {
    let protocol = AppSync {
        handshake: Some(handshake),
        ..AppSync::new()
    };
    connection::run(socket, protocol, api, auth, timing, shutdown).await;
}

struct AppSync {
    /// Read at the upgrade; authenticated when the connection opens.
    handshake: Option<Handshake>,
    /// Why the handshake was refused: the answer to the client's first frame.
    refusal: Option<AppSyncError>,
}

impl AppSync {
    fn new() -> AppSync {
        AppSync {
            handshake: None,
            refusal: None,
        }
    }

    fn initialise(&self, connection: &mut Connection, out: &mut Vec<Message>, ack: bool) {
        if ack {
            out.push(
                ServerMessage::ConnectionAck {
                    payload: ConnectionAckPayload {
                        connection_timeout_ms: CONNECTION_TIMEOUT.as_millis() as u64,
                    },
                }
                .frame(),
            );
            if !connection.initialised {
                // AppSync's first keep-alive follows the ack at once.
                out.push(ServerMessage::Ka.frame());
            }
        }
        connection.initialised = true;
    }

    /// Starts a subscription; `out` gets the answer: `start_ack` (and any event already
    /// there), or `error`.
    async fn start(
        &self,
        connection: &mut Connection,
        id: String,
        payload: StartPayload,
        out: &mut Vec<Message>,
    ) {
        if id.is_empty() {
            let error = AppSyncError::bad_input("start needs a non-empty id");
            return out.push(error_frame(None, error));
        }
        if connection.operations.contains(&id) {
            let error = AppSyncError::new(
                "DuplicatedOperationError",
                format!("Duplicated operation with id {id}"),
            );
            return out.push(error_frame(Some(&id), error));
        }
        if connection.operations.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            let error = AppSyncError::new(
                "MaxSubscriptionsReachedError",
                format!("Max number of {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions reached"),
            );
            return out.push(error_frame(Some(&id), error));
        }
        let request = match start_request(&payload.data) {
            Ok(request) => request,
            Err(error) => return out.push(error_frame(Some(&id), error)),
        };
        let own = match start_credential(&connection.auth, payload.extensions, connection.recheck)
            .await
        {
            Ok(own) => own,
            Err(error) => return out.push(error_frame(Some(&id), error)),
        };
        let Some(identity) = &mut connection.identity else {
            let error =
                AppSyncError::new("UnauthorizedException", "the connection is not authorized");
            return out.push(error_frame(Some(&id), error));
        };
        let (caller, own) = match own {
            Some((caller, authority)) => (caller, Some(authority)),
            None => {
                // A token that expired starts nothing (its connection closes soon).
                if let Err(reason) = identity.credentials.connection.check().await {
                    let error = AppSyncError::new("UnauthorizedException", reason);
                    return out.push(error_frame(Some(&id), error));
                }
                (identity.caller.clone(), None)
            }
        };
        let (kind, mut stream) = connection.execute(request, caller).await;
        let id_json = connection::id_json(&id);
        match kind {
            Operation::Single => {
                // Not run: the stream of a query or mutation executes only when polled.
                let error = AppSyncError::new(
                    "UnsupportedOperation",
                    "queries and mutations are not supported through the realtime channel: \
                     send them to POST /graphql",
                );
                return out.push(error_frame(Some(&id), error));
            }
            Operation::Invalid => {
                return match stream.next().await {
                    Some(payload) => out.push(self.refusal_frame(&id_json, &payload)),
                    None => out.push(error_frame(
                        Some(&id),
                        AppSyncError::bad_input("the operation cannot run"),
                    )),
                };
            }
            Operation::Subscription => {}
        }
        // A refusal is the stream's one response, ready at once (Groups::subscribe); a live
        // subscription's stream is pending until an event comes.
        match stream.next().now_or_never() {
            Some(Some(first)) if first.refusal.is_some() => {
                return out.push(self.refusal_frame(&id_json, &first));
            }
            Some(None) => {
                out.push(ServerMessage::StartAck { id: &id }.frame());
                return out.push(self.frame(&id_json, Item::Complete));
            }
            Some(Some(first)) => {
                out.push(ServerMessage::StartAck { id: &id }.frame());
                out.push(self.frame(&id_json, Item::Event(&first.response)));
            }
            None => out.push(ServerMessage::StartAck { id: &id }.frame()),
        }
        // Admitted: it runs, and a credential of its own is watched with it.
        if let (Some(authority), Some(identity)) = (own, &mut connection.identity) {
            identity.credentials.insert(id.clone(), authority);
        }
        connection
            .operations
            .start(id, Operation::Subscription, stream, true);
    }

    /// `error` for a refused operation: its GraphQL errors, each with `errorType`.
    fn refusal_frame(&self, id_json: &str, payload: &Payload) -> Message {
        self.frame(
            id_json,
            Item::Refused(payload.refusal.as_deref().unwrap_or("[]")),
        )
    }
}

impl Protocol for AppSync {
    async fn open(&mut self, connection: &mut Connection) {
        let Some(handshake) = self.handshake.take() else {
            return;
        };
        match authenticate_handshake(&connection.auth, handshake, connection.recheck).await {
            Ok((caller, authority)) => {
                connection.identity = Some(Identity {
                    caller,
                    credentials: Credentials::new(authority),
                });
            }
            Err(refusal) => self.refusal = Some(refusal),
        }
    }

    async fn receive(
        &mut self,
        connection: &mut Connection,
        frame: Frame,
        out: &mut Vec<Message>,
    ) -> Flow {
        if let Some(refusal) = self.refusal.take() {
            // AppSync refuses at the handshake; Amplify reads the refusal as the answer to
            // its connection_init, so it comes after the first message.
            out.push(
                ServerMessage::ConnectionError {
                    payload: Errors {
                        errors: vec![refusal.clone()],
                    },
                }
                .frame(),
            );
            return refusal_close(&refusal);
        }
        let text = match frame {
            Frame::Unreadable => return Flow::close(close::BAD_REQUEST, "unreadable frame"),
            Frame::Binary => {
                let error = AppSyncError::bad_input("binary messages are not supported");
                out.push(error_frame(None, error));
                return Flow::Continue;
            }
            Frame::Text(text) => text,
        };
        match decode(text.as_str()) {
            Err(FrameError { id, error }) => out.push(error_frame(id.as_deref(), error)),
            Ok(ClientMessage::ConnectionInit {}) => self.initialise(connection, out, true),
            Ok(ClientMessage::Start { id, payload }) => {
                self.initialise(connection, out, false);
                self.start(connection, id, payload, out).await;
            }
            Ok(ClientMessage::Stop { id }) => {
                if connection.end(&id) {
                    out.push(self.frame(&connection::id_json(&id), Item::Complete));
                }
            }
        }
        Flow::Continue
    }

    fn frame(&self, id_json: &str, item: Item<'_>) -> Message {
        match item {
            Item::Event(response) => envelope("data", id_json, response),
            Item::Refused(errors) => {
                let mut body = String::with_capacity(12 + errors.len());
                body.push_str("{\"errors\":");
                body.push_str(errors);
                body.push('}');
                envelope("error", id_json, &body)
            }
            Item::Complete => envelope("complete", id_json, ""),
        }
    }

    fn keep_alive(&self) -> Option<Message> {
        Some(ServerMessage::Ka.frame())
    }

    fn lost(&mut self, connection: &mut Connection, lost: Lost, out: &mut Vec<Message>) -> Flow {
        match lost {
            // Every subscription on the connection's credential ends, and so does the
            // connection: Amplify reconnects with a fresh token.
            Lost::Connection(reason) => {
                for id in connection.operations.ids_sorted() {
                    let own = connection
                        .identity
                        .as_ref()
                        .is_some_and(|identity| identity.credentials.has_own(&id));
                    if !own {
                        let error = AppSyncError::new("UnauthorizedException", reason.clone());
                        out.push(error_frame(Some(&id), error));
                    }
                }
                Flow::close(close::UNAUTHORIZED, reason)
            }
            Lost::Operations(lost) => {
                for (id, reason) in lost {
                    if connection.end(&id) {
                        let error = AppSyncError::new("UnauthorizedException", reason);
                        out.push(error_frame(Some(&id), error));
                    }
                }
                Flow::Continue
            }
        }
    }

    fn init_timeout(&self) -> Flow {
        match &self.refusal {
            Some(refusal) => refusal_close(refusal),
            None => Flow::close(close::INIT_TIMEOUT, "Connection initialisation timeout"),
        }
    }
}

/// How a connection refused at the handshake closes.
fn refusal_close(refusal: &AppSyncError) -> Flow {
    let code = if refusal.error_code == Some(400) {
        close::BAD_REQUEST
    } else {
        close::UNAUTHORIZED
    };
    Flow::close(code, refusal.error_type.clone())
}

/// A `start`'s own caller and credential, when it brings a token (else it runs on the
/// connection's).
async fn start_credential(
    auth: &Arc<Authenticator>,
    extensions: Option<StartExtensions>,
    recheck: Duration,
) -> Result<Option<(Caller, Authority)>, AppSyncError> {
    let headers = extensions.and_then(|e| e.authorization);
    let Some(token) = headers.as_ref().and_then(authorization_of) else {
        return Ok(None);
    };
    match Authority::establish(auth, Some(token), recheck).await {
        Ok((caller @ (Caller::Admin | Caller::User(_)), authority)) => {
            Ok(Some((caller, authority)))
        }
        Ok((Caller::Anonymous, _)) => Err(AppSyncError::new(
            "Unauthorized",
            "the start's Authorization token is empty",
        )),
        Err(error) => Err(AppSyncError::new("Unauthorized", error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn b64(value: &Value, engine: &impl base64::Engine) -> String {
        engine.encode(value.to_string())
    }
    #[test]
    fn decodes_what_amplify_js_sends() {
        let start = json!({
            "id": "3f6a",
            "payload": {
                "data": "{\"query\":\"subscription { onChat(appToken: \\\"a\\\") { number } }\",\"variables\":{}}",
                "extensions": { "authorization": { "Authorization": "tok", "host": "127.0.0.1:4000", "x-amz-user-agent": "aws-amplify/6" } }
            },
            "type": "start"
        });
        let ClientMessage::Start { id, payload } = decode(&start.to_string()).unwrap() else {
            panic!("not a start");
        };
        assert_eq!(id, "3f6a");
        let headers = payload.extensions.unwrap().authorization.unwrap();
        assert_eq!(authorization_of(&headers), Some("tok"));
        let request = start_request(&payload.data).unwrap();
        assert!(request.query.starts_with("subscription"));
        assert_eq!(
            decode(r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit {})
        );
        assert_eq!(
            decode(r#"{"type":"stop","id":"3f6a"}"#),
            Ok(ClientMessage::Stop { id: "3f6a".into() })
        );
    }

    #[test]
    fn decodes_what_amplify_flutter_sends() {
        // Flutter gives connection_init an id, and lower-case header names may appear.
        assert_eq!(
            decode(r#"{"id":"x","type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit {})
        );
        let mut headers = Map::new();
        headers.insert("authorization".into(), json!("tok"));
        assert_eq!(authorization_of(&headers), Some("tok"));
    }

    #[test]
    fn bad_frames_are_errors_with_the_id_when_there_is_one() {
        let bad = |text: &str| decode(text).unwrap_err();
        assert_eq!(bad("not json").id, None);
        assert_eq!(bad("not json").error.error_type, "BadInput");
        assert_eq!(
            bad("[1,2]").error.message,
            "the message must be a JSON object"
        );
        assert_eq!(bad("\"start\"").error.error_type, "BadInput");
        assert_eq!(bad(r#"{"id":"1"}"#).id.as_deref(), Some("1"));
        let unknown = bad(r#"{"type":"subscribe","id":"7"}"#);
        assert_eq!(unknown.id.as_deref(), Some("7"));
        assert_eq!(
            unknown.error,
            AppSyncError::new(
                "UnsupportedOperation",
                "subscribe not supported through the realtime channel"
            )
        );
        assert_eq!(bad(r#"{"type":42}"#).error.error_type, "BadInput");
        let no_id = bad(r#"{"type":"start","payload":{"data":"{}"}}"#);
        assert!(no_id.error.message.contains("id"), "{no_id:?}");
        let data_object = bad(r#"{"type":"start","id":"2","payload":{"data":{"query":"x"}}}"#);
        assert_eq!(data_object.id.as_deref(), Some("2"));
        assert!(
            data_object
                .error
                .message
                .starts_with("invalid start message")
        );
        assert!(bad(r#"{"type":"stop"}"#).error.message.contains("id"));
        // Deeply nested or huge numbers do not panic either.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(bad(&deep).error.error_type, "BadInput");
        assert_eq!(
            bad(r#"{"type":"start","id":1e999999}"#).error.message,
            "the message is not JSON"
        );
    }

    #[test]
    fn start_data_must_be_a_request() {
        assert!(
            start_request("{")
                .unwrap_err()
                .message
                .contains("payload.data")
        );
        assert!(start_request(r#"{"variables":{}}"#).is_err());
        assert_eq!(
            start_request(r#"{"query":"subscription { x }","variables":[1]}"#)
                .unwrap_err()
                .message,
            "variables must be a JSON object"
        );
        let request =
            start_request(r#"{"query":"q","variables":null,"operationName":"Op"}"#).unwrap();
        assert_eq!(request.operation_name.as_deref(), Some("Op"));
    }

    #[test]
    fn the_handshake_token_comes_from_subprotocol_then_query_then_header() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let auth = json!({ "Authorization": "from-subprotocol", "host": "localhost:4000" });
        let mut headers = HeaderMap::new();
        let protocols = format!("graphql-ws, header-{}", b64(&auth, &URL_SAFE_NO_PAD));
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_str(&protocols).unwrap(),
        );
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("from-header"),
        );
        let query = b64(&json!({ "Authorization": "from-query" }), &STANDARD);
        assert_eq!(
            Handshake::read(&headers, Some(&query)),
            Handshake::Token("from-subprotocol".into())
        );
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        assert_eq!(
            Handshake::read(&headers, Some(&query)),
            Handshake::Token("from-query".into())
        );
        assert_eq!(
            Handshake::read(&headers, None),
            Handshake::Token("from-header".into())
        );
        headers.remove(header::AUTHORIZATION);
        assert_eq!(Handshake::read(&headers, None), Handshake::Missing);
        let no_token = b64(&json!({ "host": "h" }), &STANDARD);
        assert_eq!(
            Handshake::read(&headers, Some(&no_token)),
            Handshake::Missing
        );
        assert!(matches!(
            Handshake::read(&headers, Some("%%%not base64")),
            Handshake::Malformed(_)
        ));
        let not_object = b64(&json!(["Authorization"]), &STANDARD);
        assert!(matches!(
            Handshake::read(&headers, Some(&not_object)),
            Handshake::Malformed(_)
        ));
    }

    #[test]
    fn base64_with_or_without_padding_in_either_alphabet() {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        // "?>" encodes to characters that differ between the alphabets.
        let value = json!({ "Authorization": "a?>b?>c" });
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let map = decode_base64_json(&engine.encode(value.to_string())).unwrap();
            assert_eq!(authorization_of(&map), Some("a?>b?>c"));
        }
    }

    #[test]
    fn server_messages_have_appsync_shapes() {
        let text = |m: Message| match m {
            Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(
                ServerMessage::ConnectionAck {
                    payload: ConnectionAckPayload {
                        connection_timeout_ms: 300_000
                    }
                }
                .frame()
            ),
            json!({ "type": "connection_ack", "payload": { "connectionTimeoutMs": 300000 } })
        );
        assert_eq!(text(ServerMessage::Ka.frame()), json!({ "type": "ka" }));
        assert_eq!(
            text(ServerMessage::StartAck { id: "1" }.frame()),
            json!({ "type": "start_ack", "id": "1" })
        );
        assert_eq!(
            text(error_frame(
                Some("1"),
                AppSyncError::new("NotFound", "no such chat")
            )),
            json!({ "type": "error", "id": "1", "payload": { "errors": [{ "errorType": "NotFound", "message": "no such chat" }] } })
        );
        assert_eq!(
            text(
                ServerMessage::ConnectionError {
                    payload: Errors {
                        errors: vec![connection_refusal(
                            "UnauthorizedException",
                            401,
                            "no".into()
                        )]
                    }
                }
                .frame()
            ),
            json!({ "type": "connection_error", "payload": { "errors": [{ "errorType": "UnauthorizedException", "message": "no", "errorCode": 401 }] } })
        );
        let payload = Payload {
            response: r#"{"data":{"onChat":{"number":1}}}"#.into(),
            refusal: None,
        };
        assert_eq!(
            text(AppSync::new().frame("\"a\\\"b\"", Item::Event(&payload.response))),
            json!({ "type": "data", "id": "a\"b", "payload": { "data": { "onChat": { "number": 1 } } } })
        );
        let refused = Payload {
            response: String::new(),
            refusal: Some(r#"[{"message":"m","errorType":"Forbidden"}]"#.into()),
        };
        assert_eq!(
            text(AppSync::new().refusal_frame("\"9\"", &refused)),
            json!({ "type": "error", "id": "9", "payload": { "errors": [{ "message": "m", "errorType": "Forbidden" }] } })
        );
    }
}
