//! AppSync's own real-time protocol ("Building a real-time WebSocket client" in the AppSync
//! developer guide), which Amplify JS and Amplify Flutter speak, over axum WebSockets.
//!
//! The wire, as Amplify JS 6 and Amplify Flutter send it:
//! - The client connects to `/graphql/realtime` (Amplify's path for any endpoint that is not
//!   AppSync's own domain) or `/graphql`, with the subprotocol `graphql-ws`. The handshake
//!   carries the authorization headers as base64 JSON, `{"Authorization": "<token>",
//!   "host": "..."}`: in a second subprotocol `header-<base64url>` (Amplify JS 6), or in the
//!   `header` query parameter next to `payload=e30=` (Amplify Flutter, the guide), or as
//!   the upgrade request's `Authorization` header.
//! - `connection_init` -> `connection_ack` `{"connectionTimeoutMs": 300000}`, then `ka` at
//!   once and every [`Timing::keep_alive`]; a client that hears no `ka` within
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
//! Bounds: at most [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] subscriptions, frames up to the
//! request body limit, every send within [`transport_ws::SEND_TIMEOUT`]; a connection that
//! never initialises, or stays without subscriptions, is closed after a timeout; a
//! subscriber that falls behind is cut off as over graphql-transport-ws (close 4029 with
//! the way back). A frame that cannot be used gets an `error` and the connection goes on.

use std::collections::HashMap;
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
use futures::stream::BoxStream;
use futures::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_stream::StreamMap;

use super::authority::{Authority, Credentials, Lost};
use super::transport_ws::{self, FELL_BEHIND_REASON, close, send_all};
use super::{ConnectionSignals, Operation, Payload};
use crate::schema::Api;
use crate::shutdown::{GOING_AWAY, GOING_AWAY_REASON, Shutdown};

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
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = transport_ws::MAX_OPERATIONS_PER_CONNECTION;

/// Close codes (4000-4999 are the application's; the same numbers as graphql-transport-ws).
pub mod close_code {
    pub const BAD_REQUEST: u16 = super::transport_ws::close::BAD_REQUEST;
    pub const UNAUTHORIZED: u16 = super::transport_ws::close::UNAUTHORIZED;
    pub const INIT_TIMEOUT: u16 = super::transport_ws::close::INIT_TIMEOUT;
    pub const FELL_BEHIND: u16 = super::transport_ws::close::FELL_BEHIND;
    /// Normal closure: the connection had no subscription for [`super::Timing::idle`].
    pub const IDLE: u16 = 1000;
}

/// The connection's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a client may take to send `connection_init` (or a first `start`).
    pub init: Duration,
    /// How often the server sends `ka`. Amplify JS warns after 65 s without one.
    pub keep_alive: Duration,
    /// How long an initialised connection may stay without any subscription.
    pub idle: Duration,
    /// How often a credential's token is looked at (see [`super::authority`]).
    pub authority_recheck: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            init: transport_ws::CONNECTION_INIT_TIMEOUT,
            keep_alive: Duration::from_secs(30),
            idle: CONNECTION_TIMEOUT,
            authority_recheck: super::authority::AUTHORITY_RECHECK,
        }
    }
}

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
    Complete {
        id: &'a str,
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
    let _session = shutdown.session();
    let (mut sink, mut source) = socket.split();
    let caller = authenticate_handshake(&auth, handshake, timing.authority_recheck).await;
    let init_deadline = Instant::now() + timing.init;

    let (caller, authority) = match caller {
        Ok(established) => established,
        Err(refusal) => {
            // AppSync refuses at the handshake; Amplify reads the refusal as the answer to
            // its connection_init, so it comes after the first message.
            let first = tokio::time::timeout_at(init_deadline, next_frame(&mut source)).await;
            if let Ok(Some(_)) = first {
                let message = ServerMessage::ConnectionError {
                    payload: Errors {
                        errors: vec![refusal.clone()],
                    },
                };
                send_all(&mut sink, vec![message.frame()]).await;
            }
            let code = if refusal.error_code == Some(400) {
                close_code::BAD_REQUEST
            } else {
                close_code::UNAUTHORIZED
            };
            return close(&mut sink, code, &refusal.error_type).await;
        }
    };

    let mut connection = Connection {
        api,
        auth,
        caller,
        credentials: Credentials::new(authority),
        recheck: timing.authority_recheck,
        signals: ConnectionSignals::default(),
        subscriptions: Subscriptions::default(),
    };
    let mut initialised = false;
    let mut keep_alive = tokio::time::interval(timing.keep_alive);
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since = Instant::now();

    loop {
        // The one deadline that applies now: initialisation, or idleness.
        let deadline = if !initialised {
            Some((init_deadline, close_code::INIT_TIMEOUT))
        } else if connection.subscriptions.is_empty() {
            Some((idle_since + timing.idle, close_code::IDLE))
        } else {
            None
        };
        let had_subscriptions = !connection.subscriptions.is_empty();
        let mut frames = Vec::new();
        tokio::select! {
            incoming = next_frame(&mut source) => {
                let text = match incoming {
                    None => break,
                    Some(Frame::Unreadable) => {
                        return close(&mut sink, close_code::BAD_REQUEST, "unreadable frame").await;
                    }
                    Some(Frame::Binary) => {
                        frames.push(error_frame(None, AppSyncError::bad_input("binary messages are not supported")));
                        None
                    }
                    Some(Frame::Text(text)) => Some(text),
                };
                if let Some(text) = text {
                    match decode(text.as_str()) {
                        Err(FrameError { id, error }) => frames.push(error_frame(id.as_deref(), error)),
                        Ok(ClientMessage::ConnectionInit {}) => {
                            frames.push(ServerMessage::ConnectionAck {
                                payload: ConnectionAckPayload {
                                    connection_timeout_ms: CONNECTION_TIMEOUT.as_millis() as u64,
                                },
                            }.frame());
                            if !initialised {
                                // AppSync's first keep-alive follows the ack at once.
                                frames.push(ServerMessage::Ka.frame());
                                keep_alive.reset();
                                idle_since = Instant::now();
                            }
                            initialised = true;
                        }
                        Ok(ClientMessage::Start { id, payload }) => {
                            if !initialised {
                                keep_alive.reset();
                                idle_since = Instant::now();
                            }
                            initialised = true;
                            connection.start(id, payload, &mut frames).await;
                        }
                        Ok(ClientMessage::Stop { id }) => {
                            connection.credentials.remove(&id);
                            if connection.subscriptions.stop(&id) {
                                frames.push(ServerMessage::Complete { id: &id }.frame());
                            }
                        }
                    }
                }
                if !send_all(&mut sink, frames).await { break; }
            }
            Some((id, item)) = connection.subscriptions.streams.next(), if !connection.subscriptions.is_empty() => {
                // This item and whatever else is ready, written together and flushed once.
                let mut behind = connection.subscriptions.frame(id, item, &connection.signals, &mut frames);
                while !behind && frames.len() < transport_ws::MAX_FRAMES_PER_WRITE {
                    let Some(Some((id, item))) = connection.subscriptions.streams.next().now_or_never() else {
                        break;
                    };
                    behind = connection.subscriptions.frame(id, item, &connection.signals, &mut frames);
                }
                if !send_all(&mut sink, frames).await || behind { break; }
            }
            _ = keep_alive.tick(), if initialised => {
                if !send_all(&mut sink, vec![ServerMessage::Ka.frame()]).await { break; }
            }
            _ = sleep_until_some(deadline.map(|(at, _)| at)), if deadline.is_some() => {
                let reason = if initialised {
                    format!("no subscription for {} s", timing.idle.as_secs())
                } else {
                    "Connection initialisation timeout".to_owned()
                };
                let code = deadline.map_or(close_code::IDLE, |(_, code)| code);
                return close(&mut sink, code, &reason).await;
            }
            _ = connection.signals.wait_fell_behind() => break,
            lost = connection.credentials.lost() => match lost {
                // Every subscription on the connection's credential ends, and so does the
                // connection: Amplify reconnects with a fresh token.
                Lost::Connection(reason) => {
                    for id in connection.subscriptions.ids_sorted() {
                        if !connection.credentials.has_own(&id) {
                            frames.push(error_frame(Some(&id), AppSyncError::new("UnauthorizedException", reason.clone())));
                        }
                    }
                    send_all(&mut sink, frames).await;
                    return close(&mut sink, close_code::UNAUTHORIZED, &reason).await;
                }
                Lost::Operations(lost) => {
                    for (id, reason) in lost {
                        if connection.subscriptions.stop(&id) {
                            frames.push(error_frame(Some(&id), AppSyncError::new("UnauthorizedException", reason)));
                        }
                    }
                    if !send_all(&mut sink, frames).await { break; }
                }
            },
            _ = shutdown.stopping() => {
                return close(&mut sink, GOING_AWAY, GOING_AWAY_REASON).await;
            }
        }
        if had_subscriptions && connection.subscriptions.is_empty() {
            idle_since = Instant::now();
        }
    }
    if connection.signals.is_behind() {
        close(&mut sink, close_code::FELL_BEHIND, FELL_BEHIND_REASON).await;
    } else {
        // The peer closed: send the close frame that answers its own (the WebSocket closing
        // handshake), so it need not wait for a timeout.
        let _ = tokio::time::timeout(transport_ws::SEND_TIMEOUT, sink.close()).await;
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One initialised connection's state.
struct Connection {
    api: Api,
    auth: Arc<Authenticator>,
    /// Who the handshake authenticated.
    caller: Caller,
    /// How long the handshake's token, and each start's own, still hold.
    credentials: Credentials,
    recheck: Duration,
    signals: ConnectionSignals,
    subscriptions: Subscriptions,
}

impl Connection {
    /// Starts a subscription; `frames` gets the answer: `start_ack` (and any event already
    /// there), or `error`.
    async fn start(&mut self, id: String, payload: StartPayload, frames: &mut Vec<Message>) {
        if id.is_empty() {
            let error = AppSyncError::bad_input("start needs a non-empty id");
            return frames.push(error_frame(None, error));
        }
        if self.subscriptions.contains(&id) {
            let error = AppSyncError::new(
                "DuplicatedOperationError",
                format!("Duplicated operation with id {id}"),
            );
            return frames.push(error_frame(Some(&id), error));
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
            let error = AppSyncError::new(
                "MaxSubscriptionsReachedError",
                format!("Max number of {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions reached"),
            );
            return frames.push(error_frame(Some(&id), error));
        }
        let request = match start_request(&payload.data) {
            Ok(request) => request,
            Err(error) => return frames.push(error_frame(Some(&id), error)),
        };
        let own = match start_credential(&self.auth, payload.extensions, self.recheck).await {
            Ok(own) => own,
            Err(error) => return frames.push(error_frame(Some(&id), error)),
        };
        let (caller, own) = match own {
            Some((caller, authority)) => (caller, Some(authority)),
            None => {
                // A token that expired starts nothing (its connection closes soon).
                if let Err(reason) = self.credentials.connection.check().await {
                    let error = AppSyncError::new("UnauthorizedException", reason);
                    return frames.push(error_frame(Some(&id), error));
                }
                (self.caller.clone(), None)
            }
        };
        let (kind, mut stream) = self
            .api
            .execute_stream(request, caller, self.signals.clone())
            .await;
        match kind {
            Operation::Single => {
                // Not run: the stream of a query or mutation executes only when polled.
                let error = AppSyncError::new(
                    "UnsupportedOperation",
                    "queries and mutations are not supported through the realtime channel: \
                     send them to POST /graphql",
                );
                frames.push(error_frame(Some(&id), error));
            }
            Operation::Invalid => match stream.next().await {
                Some(payload) => frames.push(refusal_frame(&id, &payload)),
                None => frames.push(error_frame(
                    Some(&id),
                    AppSyncError::bad_input("the operation cannot run"),
                )),
            },
            // A refusal is the stream's one response, ready at once (Groups::subscribe); a
            // live subscription's stream is pending until an event comes.
            Operation::Subscription => match stream.next().now_or_never() {
                Some(Some(first)) if first.refusal.is_some() => {
                    frames.push(refusal_frame(&id, &first));
                }
                Some(None) => {
                    frames.push(ServerMessage::StartAck { id: &id }.frame());
                    frames.push(ServerMessage::Complete { id: &id }.frame());
                }
                Some(Some(first)) => {
                    frames.push(ServerMessage::StartAck { id: &id }.frame());
                    let id_json = Value::String(id.clone()).to_string();
                    frames.push(envelope("data", &id_json, "payload", &first.response));
                    self.run(id, stream, own);
                }
                None => {
                    frames.push(ServerMessage::StartAck { id: &id }.frame());
                    self.run(id, stream, own);
                }
            },
        }
    }

    /// A subscription that was admitted runs; a credential of its own is watched with it
    /// (one that brought a refused or finished operation is not kept).
    fn run(
        &mut self,
        id: String,
        stream: BoxStream<'static, Arc<Payload>>,
        own: Option<Authority>,
    ) {
        if let Some(authority) = own {
            self.credentials.insert(id.clone(), authority);
        }
        self.subscriptions.start(id, stream);
    }
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

/// `error` for a refused operation: its GraphQL errors, each with `errorType`, as they are.
fn refusal_frame(id: &str, payload: &Payload) -> Message {
    let id_json = Value::String(id.to_owned()).to_string();
    let errors = payload.refusal.as_deref().unwrap_or("[]");
    let mut body = String::with_capacity(12 + errors.len());
    body.push_str("{\"errors\":");
    body.push_str(errors);
    body.push('}');
    envelope("error", &id_json, "payload", &body)
}

/// `{"type":<kind>,"id":<id>,"<field>":<json>}` by concatenation (the id and the value are
/// JSON already).
fn envelope(kind: &str, id_json: &str, field: &str, json: &str) -> Message {
    let mut frame = String::with_capacity(32 + id_json.len() + json.len());
    frame.push_str("{\"type\":\"");
    frame.push_str(kind);
    frame.push_str("\",\"id\":");
    frame.push_str(id_json);
    frame.push_str(",\"");
    frame.push_str(field);
    frame.push_str("\":");
    frame.push_str(json);
    frame.push('}');
    Message::Text(Utf8Bytes::from(frame))
}

/// The subscriptions running on one connection.
#[derive(Default)]
struct Subscriptions {
    /// Each subscription's payloads, then `None` when it ended on the server's side.
    streams: StreamMap<String, BoxStream<'static, Option<Arc<Payload>>>>,
    /// Each subscription's id as JSON.
    ids: HashMap<String, String>,
}

impl Subscriptions {
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// The running subscriptions' ids, in order.
    fn ids_sorted(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.ids.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn start(&mut self, id: String, stream: BoxStream<'static, Arc<Payload>>) {
        let stream = stream
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .boxed();
        self.ids
            .insert(id.clone(), Value::String(id.clone()).to_string());
        self.streams.insert(id, stream);
    }

    /// Ends a subscription; whether it was running.
    fn stop(&mut self, id: &str) -> bool {
        self.streams.remove(id);
        self.ids.remove(id).is_some()
    }

    /// The frame for a subscription's item, if any; `true` when the connection fell behind
    /// and must close.
    fn frame(
        &mut self,
        id: String,
        item: Option<Arc<Payload>>,
        signals: &ConnectionSignals,
        frames: &mut Vec<Message>,
    ) -> bool {
        let Some(id_json) = self.ids.get(&id) else {
            return false; // stopped by the client meanwhile
        };
        match item {
            Some(payload) => {
                frames.push(envelope("data", id_json, "payload", &payload.response));
                false
            }
            None if signals.is_behind() => true,
            None => {
                frames.push(ServerMessage::Complete { id: &id }.frame());
                self.ids.remove(&id);
                false
            }
        }
    }
}

/// What one read from the socket gave.
enum Frame {
    Text(Utf8Bytes),
    Binary,
    /// A protocol error, e.g. a frame over the size limit.
    Unreadable,
}

/// The next data frame; `None` when the peer closed.
async fn next_frame(source: &mut futures::stream::SplitStream<WebSocket>) -> Option<Frame> {
    loop {
        match source.next().await? {
            Ok(Message::Text(text)) => return Some(Frame::Text(text)),
            Ok(Message::Binary(_)) => return Some(Frame::Binary),
            Ok(Message::Close(_)) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Err(_) => return Some(Frame::Unreadable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    fn b64(value: &Value, engine: &impl base64::Engine) -> String {
        engine.encode(value.to_string())
    }

    /// A server on a free port whose connections run with `timing`, authenticated as the
    /// user of a new application; and a client connected to it.
    async fn connect_with(timing: Timing) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        use axum::extract::ws::WebSocketUpgrade;
        use chat_domain::{ChatService, ServerKey, SystemClock};
        const ADMIN: &str = "admin-key-0123456789";
        let store = Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
        let service = Arc::new(ChatService::new(
            store,
            ServerKey::generate(),
            Arc::new(SystemClock),
        ));
        let auth = Arc::new(Authenticator::new(ADMIN, service.clone()));
        let created = service
            .create_application(&Caller::Admin, chat_domain::AppName::parse("T").unwrap())
            .await
            .unwrap();
        let exp = u64::try_from(service.now().0 / 1000).unwrap() + 600;
        let token = chat_appsync::auth::mint_user_token(
            created.secret.expose(),
            created.application.token.as_str(),
            "agent",
            chat_domain::Role::Agent,
            exp,
        )
        .unwrap();
        let api = crate::schema::build(Arc::new(chat_appsync::Registry::new(service))).unwrap();
        let app = axum::Router::new().route(
            "/rt",
            axum::routing::get(move |upgrade: WebSocketUpgrade| async move {
                upgrade.protocols([PROTOCOL]).on_upgrade(move |socket| {
                    let handshake = Handshake::Token(token);
                    serve(socket, api, auth, handshake, timing, Shutdown::default())
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request = format!("ws://{addr}/rt").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", PROTOCOL.parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }

    /// The next message's `type`, or the close code.
    async fn next_event(socket: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> String {
        use tokio_tungstenite::tungstenite::Message as WsMessage;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
                .await
                .expect("an event within 5 s");
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    return message["type"].as_str().unwrap().to_owned();
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return format!("close {}", frame.map_or(0, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "gone".into(),
            }
        }
    }

    #[tokio::test]
    async fn keep_alive_repeats_and_a_connection_without_subscriptions_is_closed() {
        use futures::SinkExt;
        let timing = Timing {
            init: Duration::from_secs(5),
            keep_alive: Duration::from_millis(40),
            idle: Duration::from_millis(400),
            ..Timing::default()
        };
        let mut socket = connect_with(timing).await;
        let started = Instant::now();
        socket
            .send(r#"{"type":"connection_init"}"#.into())
            .await
            .unwrap();
        assert_eq!(next_event(&mut socket).await, "connection_ack");
        let mut events = Vec::new();
        loop {
            let event = next_event(&mut socket).await;
            let closed = event.starts_with("close");
            events.push(event);
            if closed {
                break;
            }
        }
        let kas = events.iter().filter(|e| *e == "ka").count();
        assert!(kas >= 4, "ka at once and every 40 ms: {events:?}");
        assert_eq!(events.last().unwrap(), "close 1000", "{events:?}");
        assert!(started.elapsed() >= timing.idle);
    }

    #[tokio::test]
    async fn a_connection_that_never_initialises_is_closed() {
        let timing = Timing {
            init: Duration::from_millis(100),
            ..Timing::default()
        };
        let mut socket = connect_with(timing).await;
        assert_eq!(next_event(&mut socket).await, "close 4408");
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
            text(envelope("data", "\"a\\\"b\"", "payload", &payload.response)),
            json!({ "type": "data", "id": "a\"b", "payload": { "data": { "onChat": { "number": 1 } } } })
        );
        let refused = Payload {
            response: String::new(),
            refusal: Some(r#"[{"message":"m","errorType":"Forbidden"}]"#.into()),
        };
        assert_eq!(
            text(refusal_frame("9", &refused)),
            json!({ "type": "error", "id": "9", "payload": { "errors": [{ "message": "m", "errorType": "Forbidden" }] } })
        );
    }
}
