//! One WebSocket connection, whatever protocol it speaks. This module owns what both
//! protocols share: the operations running on the connection and the delivery of their
//! events (this is where a subscription's events are written to its socket), framing, the
//! deadlines (initialisation, idleness, keep-alive), bounded writes, the credentials the
//! connection runs on, and the reasons it closes with.
//!
//! A protocol is a codec over it ([`Protocol`]): it reads the client's frames, starts and
//! ends operations, and says how an event, a refusal and a completion look on its wire
//! ([`super::transport_ws`]: graphql-transport-ws; [`super::transport_appsync`]: AppSync's).
//!
//! A connection never blocks the rest of the server: every write has a deadline
//! ([`SEND_TIMEOUT`]), events that are ready together go out in one write, and a
//! subscription that falls behind closes its connection with [`close::FELL_BEHIND`] and a
//! reason telling the client how to recover. When the server stops, every connection gets
//! a close frame (1001, going away) before the process exits.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chat_appsync::Authenticator;
use chat_domain::Caller;
use futures::stream::{BoxStream, SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::{Instant, Interval};
use tokio_stream::StreamMap;

use super::authority::{Credentials, Lost};
use super::{ConnectionSignals, Operation, Payload};
use crate::schema::Api;
use crate::shutdown::{GOING_AWAY, GOING_AWAY_REASON, Shutdown};

/// How long a client may take to initialise its connection.
pub const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write may take before the peer is considered dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The read buffer of one connection, which every connection keeps while it is open (a
/// client's frames are mostly well under it; larger ones, up to the request body limit,
/// are read in more steps).
pub const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Frames are written out once this much is waiting, or at each flush.
pub const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// Operations one connection may have running at once (AppSync's limit too).
pub const MAX_OPERATIONS_PER_CONNECTION: usize = 100;
/// Frames written before one flush, at most.
pub const MAX_FRAMES_PER_WRITE: usize = 64;
/// The close reason of a connection whose subscriber fell behind, with the way back.
pub const FELL_BEHIND_REASON: &str =
    "subscriber fell behind: reconnect, resubscribe, then fetch messages(after: lastSeen)";

/// Close codes: 4000-4999 are the application's; both protocols use the same numbers.
pub mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const DUPLICATE_ID: u16 = 4409;
    /// Not in graphql-transport-ws' list: the server's own "you fell behind" (4429 is
    /// graphql-ws' "too many initialisation requests").
    pub const FELL_BEHIND: u16 = 4029;
    pub const TOO_MANY_INITS: u16 = 4429;
    /// Normal closure: the connection had no operation for [`super::Timing::idle`].
    pub const IDLE: u16 = 1000;
}

/// A connection's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a client may take to initialise the connection.
    pub init: Duration,
    /// How often the server sends the protocol's keep-alive, once initialised.
    pub keep_alive: Option<Duration>,
    /// How long an initialised connection may stay without any operation.
    pub idle: Option<Duration>,
    /// How often a credential's token is looked at (see [`super::authority`]).
    pub authority_recheck: Duration,
}

/// What one read from the socket gave.
pub(super) enum Frame {
    Text(Utf8Bytes),
    Binary,
    /// A protocol error, e.g. a frame over the size limit.
    Unreadable,
}

/// What the connection does after a protocol has answered.
pub(super) enum Flow {
    Continue,
    /// Close with this code and reason.
    Close(u16, String),
    /// End: the peer went away, or the connection fell behind.
    Leave,
}

impl Flow {
    pub(super) fn close(code: u16, reason: impl Into<String>) -> Flow {
        Flow::Close(code, reason.into())
    }
}

/// What an operation produced, for its protocol to frame.
pub(super) enum Item<'a> {
    /// A response (JSON text): an event, or a query's or mutation's answer.
    Event(&'a str),
    /// The operation was refused: its errors (a JSON array).
    Refused(&'a str),
    /// The operation ended on the server's side.
    Complete,
}

/// A protocol: its wire over the shared connection.
pub(super) trait Protocol: Send {
    /// Runs once, before the first frame is read (e.g. to authenticate a handshake).
    fn open(&mut self, _connection: &mut Connection) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Answers one frame from the client: frames to send go to `out`.
    fn receive(
        &mut self,
        connection: &mut Connection,
        frame: Frame,
        out: &mut Vec<Message>,
    ) -> impl Future<Output = Flow> + Send;

    /// How an operation's item looks on this wire (`id_json` is its id as JSON text).
    fn frame(&self, id_json: &str, item: Item<'_>) -> Message;

    /// The frame sent every [`Timing::keep_alive`], if the protocol has one.
    fn keep_alive(&self) -> Option<Message> {
        None
    }

    /// A credential ended: the operations it carried end, or the connection does.
    fn lost(&mut self, connection: &mut Connection, lost: Lost, out: &mut Vec<Message>) -> Flow;

    /// The client did not initialise in time.
    fn init_timeout(&self) -> Flow {
        Flow::close(close::INIT_TIMEOUT, "Connection initialisation timeout")
    }
}

/// Who a connection is, once it has authenticated.
pub(super) struct Identity {
    pub caller: Caller,
    /// How long its token, and those its operations brought, still hold.
    pub credentials: Credentials,
}

/// One connection's state, shared by its protocol and its loop.
pub(super) struct Connection {
    pub api: Api,
    pub auth: Arc<Authenticator>,
    /// How often credentials are looked at.
    pub recheck: Duration,
    pub signals: ConnectionSignals,
    pub operations: Operations,
    pub identity: Option<Identity>,
    /// Whether the client has initialised the connection (keep-alive and idleness count
    /// from then).
    pub initialised: bool,
}

impl Connection {
    /// Ends an operation (and drops the credential it brought); whether it was running.
    pub fn end(&mut self, id: &str) -> bool {
        if let Some(identity) = &mut self.identity {
            identity.credentials.remove(id);
        }
        self.operations.end(id)
    }

    /// Executes an operation for `caller` (see [`Api::execute_stream`]).
    pub async fn execute(
        &mut self,
        request: async_graphql::Request,
        caller: Caller,
    ) -> (Operation, BoxStream<'static, Arc<Payload>>) {
        self.api
            .execute_stream(request, caller, self.signals.clone())
            .await
    }
}

/// Runs one connection to its end.
pub(super) async fn run<P: Protocol>(
    socket: WebSocket,
    mut protocol: P,
    api: Api,
    auth: Arc<Authenticator>,
    timing: Timing,
    shutdown: Shutdown,
) {
    let _session = shutdown.session();
    let (mut sink, mut source) = socket.split();
    let mut connection = Connection {
        api,
        auth,
        recheck: timing.authority_recheck,
        signals: ConnectionSignals::default(),
        operations: Operations::default(),
        identity: None,
        initialised: false,
    };
    Box::pin(protocol.open(&mut connection)).await;
    let init_deadline = Instant::now() + timing.init;
    let mut keep_alive = timing.keep_alive.map(|period| {
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let mut idle_since = Instant::now();
    // One wait for the whole connection: made again each time round the loop, it would
    // subscribe to the server's shutdown signal (a counter and a lock every connection
    // shares) for every event delivered.
    let mut stopping = std::pin::pin!(shutdown.stopping());

    let end = loop {
        // The one deadline that applies now: initialisation, or idleness.
        let deadline = if !connection.initialised {
            Some((init_deadline, None))
        } else if connection.operations.is_empty() {
            timing.idle.map(|idle| (idle_since + idle, Some(idle)))
        } else {
            None
        };
        let was_initialised = connection.initialised;
        let had_operations = !connection.operations.is_empty();
        let mut frames = Vec::new();
        let flow = tokio::select! {
            incoming = next_frame(&mut source) => match incoming {
                None => Flow::Leave,
                // Boxed: a client's frames are few, and an idle connection then does not
                // carry the largest of the protocol's futures in its own state.
                Some(frame) => Box::pin(protocol.receive(&mut connection, frame, &mut frames)).await,
            },
            Some((id, item)) = connection.operations.streams.next(), if !connection.operations.is_empty() => {
                // This item and whatever else is ready, written together and flushed once.
                let signals = &connection.signals;
                let operations = &mut connection.operations;
                let mut behind = operations.deliver(&protocol, id, item, signals, &mut frames);
                while !behind && frames.len() < MAX_FRAMES_PER_WRITE {
                    let Some(Some((id, item))) = operations.streams.next().now_or_never() else {
                        break;
                    };
                    behind = operations.deliver(&protocol, id, item, signals, &mut frames);
                }
                if behind { Flow::Leave } else { Flow::Continue }
            }
            _ = tick(&mut keep_alive), if connection.initialised => {
                frames.extend(protocol.keep_alive());
                Flow::Continue
            }
            _ = sleep_until_some(deadline.map(|(at, _)| at)), if deadline.is_some() => {
                match deadline {
                    Some((_, Some(idle))) => {
                        Flow::close(close::IDLE, format!("no subscription for {} s", idle.as_secs()))
                    }
                    _ => protocol.init_timeout(),
                }
            }
            _ = connection.signals.wait_fell_behind() => Flow::Leave,
            lost = credentials_lost(&mut connection.identity) => {
                protocol.lost(&mut connection, lost, &mut frames)
            }
            _ = &mut stopping => Flow::close(GOING_AWAY, GOING_AWAY_REASON),
        };
        if !send_all(&mut sink, frames).await {
            break None;
        }
        if !was_initialised && connection.initialised {
            if let Some(ticks) = &mut keep_alive {
                ticks.reset();
            }
            idle_since = Instant::now();
        }
        if had_operations && connection.operations.is_empty() {
            idle_since = Instant::now();
        }
        match flow {
            Flow::Continue => {}
            Flow::Close(code, reason) => break Some((code, reason)),
            Flow::Leave => break None,
        }
    };
    match end {
        Some((code, reason)) => close_with(&mut sink, code, &reason).await,
        None if connection.signals.is_behind() => {
            close_with(&mut sink, close::FELL_BEHIND, FELL_BEHIND_REASON).await;
        }
        None => {
            // The peer closed: send the close frame that answers its own (the WebSocket
            // closing handshake), so it sees a clean close rather than a dropped connection.
            let _ = tokio::time::timeout(SEND_TIMEOUT, sink.close()).await;
        }
    }
}

/// Resolves when a credential of the connection has ended; pending before it has any.
async fn credentials_lost(identity: &mut Option<Identity>) -> Lost {
    match identity {
        Some(identity) => identity.credentials.lost().await,
        None => std::future::pending().await,
    }
}

async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

type Sink = SplitSink<WebSocket, Message>;

/// Writes the frames and flushes once, all within [`SEND_TIMEOUT`].
async fn send_all(sink: &mut Sink, frames: Vec<Message>) -> bool {
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

async fn close_with(sink: &mut Sink, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason.to_owned()),
    };
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

/// The next data frame; `None` when the peer closed.
async fn next_frame(source: &mut SplitStream<WebSocket>) -> Option<Frame> {
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

/// The operations running on one connection.
#[derive(Default)]
pub(super) struct Operations {
    /// Each operation's payloads, then `None` when it ended on the server's side.
    streams: StreamMap<String, BoxStream<'static, Option<Arc<Payload>>>>,
    state: HashMap<String, Running>,
}

struct Running {
    kind: Operation,
    /// The id as JSON text, made once.
    id_json: String,
    /// Whether it has answered yet: a subscription's first response with errors and no
    /// data is a refusal.
    answered: bool,
}

impl Operations {
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    pub fn len(&self) -> usize {
        self.state.len()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.state.contains_key(id)
    }

    /// The running operations' ids, in order.
    pub fn ids_sorted(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.state.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Runs an operation's stream; `answered` when its first response was already framed.
    pub fn start(
        &mut self,
        id: String,
        kind: Operation,
        stream: BoxStream<'static, Arc<Payload>>,
        answered: bool,
    ) {
        let stream = stream
            .map(Some)
            .chain(futures::stream::once(async { None }))
            .boxed();
        let id_json = id_json(&id);
        self.state.insert(
            id.clone(),
            Running {
                kind,
                id_json,
                answered,
            },
        );
        self.streams.insert(id, stream);
    }

    /// Ends an operation; whether it was running.
    fn end(&mut self, id: &str) -> bool {
        self.streams.remove(id);
        self.state.remove(id).is_some()
    }

    /// Frames an operation's item, if it is still running; `true` when the connection fell
    /// behind and must close.
    fn deliver(
        &mut self,
        protocol: &impl Protocol,
        id: String,
        item: Option<Arc<Payload>>,
        signals: &ConnectionSignals,
        frames: &mut Vec<Message>,
    ) -> bool {
        let Some(running) = self.state.get_mut(&id) else {
            return false; // ended by the client meanwhile
        };
        match item {
            Some(payload) => {
                let first = !std::mem::replace(&mut running.answered, true);
                match &payload.refusal {
                    Some(errors) if first && running.kind != Operation::Single => {
                        // Validation or authorization refused the operation.
                        frames.push(protocol.frame(&running.id_json, Item::Refused(errors)));
                        self.end(&id);
                    }
                    _ => frames
                        .push(protocol.frame(&running.id_json, Item::Event(&payload.response))),
                }
                false
            }
            None if signals.is_behind() => true,
            None => {
                frames.push(protocol.frame(&running.id_json, Item::Complete));
                self.state.remove(&id);
                false
            }
        }
    }
}

/// An operation id as JSON text.
pub(super) fn id_json(id: &str) -> String {
    Value::String(id.to_owned()).to_string()
}

/// `{"type":<kind>,"id":<id>,"payload":<payload>}` by concatenation (the id and the
/// payload are JSON already; no payload when it is empty).
pub(super) fn envelope(kind: &str, id_json: &str, payload: &str) -> Message {
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

#[cfg(test)]
mod tests {
    use super::super::{transport_appsync, transport_ws};
    use super::*;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// A server on a free port whose connections speak `protocol` with `timing`, the
    /// upgrade authenticated as an agent of a new application; and a client connected to it.
    async fn connect_with(protocol: &'static str, timing: Timing) -> Client {
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
                upgrade
                    .protocols([protocol])
                    .on_upgrade(move |socket| async move {
                        let shutdown = Shutdown::default();
                        if protocol == transport_appsync::PROTOCOL {
                            let handshake = transport_appsync::Handshake::Token(token);
                            transport_appsync::serve(
                                socket, api, auth, handshake, timing, shutdown,
                            )
                            .await;
                        } else {
                            transport_ws::serve(socket, api, auth, Some(token), timing, shutdown)
                                .await;
                        }
                    })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut request = format!("ws://{addr}/rt").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
        tokio_tungstenite::connect_async(request).await.unwrap().0
    }

    /// The next message's `type`, or the close code.
    async fn next_event(socket: &mut Client) -> String {
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
        let timing = Timing {
            init: Duration::from_secs(5),
            keep_alive: Some(Duration::from_millis(40)),
            idle: Some(Duration::from_millis(400)),
            ..transport_appsync::TIMING
        };
        let mut socket = connect_with(transport_appsync::PROTOCOL, timing).await;
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
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn a_connection_that_never_initialises_is_closed_whatever_its_protocol() {
        for (protocol, timing) in [
            (transport_appsync::PROTOCOL, transport_appsync::TIMING),
            (transport_ws::PROTOCOL, transport_ws::TIMING),
        ] {
            let timing = Timing {
                init: Duration::from_millis(100),
                ..timing
            };
            let mut socket = connect_with(protocol, timing).await;
            assert_eq!(next_event(&mut socket).await, "close 4408", "{protocol}");
        }
    }

    #[tokio::test]
    async fn a_graphql_transport_ws_connection_has_no_idle_timeout() {
        let timing = Timing {
            init: Duration::from_secs(5),
            ..transport_ws::TIMING
        };
        let mut socket = connect_with(transport_ws::PROTOCOL, timing).await;
        socket
            .send(r#"{"type":"connection_init"}"#.into())
            .await
            .unwrap();
        assert_eq!(next_event(&mut socket).await, "connection_ack");
        // Past the initialisation deadline, without operations, a ping still gets its pong.
        tokio::time::sleep(Duration::from_millis(200)).await;
        socket.send(r#"{"type":"ping"}"#.into()).await.unwrap();
        assert_eq!(next_event(&mut socket).await, "pong");
    }
}
