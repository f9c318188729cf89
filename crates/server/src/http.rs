//! HTTP: `POST /graphql` (header `Authorization`), `GET /graphql` (GraphiQL, or a WebSocket:
//! graphql-transport-ws, or AppSync's real-time protocol when the client asks for
//! `graphql-ws`), `GET /graphql/realtime` (AppSync's real-time protocol, where Amplify
//! connects), `GET /health`, `GET /metrics` (Prometheus, `crate::metrics`), and the web
//! console at `GET /` (`console.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chat_appsync::Authenticator;
use chat_domain::limits::REQUEST_BODY_MAX_BYTES;
use chat_domain::{DomainError, ErrorCode};
use futures::FutureExt;
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};

use crate::admin_guard::{AdminGuard, is_admin_shaped};
use crate::metrics::{MetricsAccess, Protocol};
use crate::realtime::connection::{self, Timing};
use crate::realtime::{transport_appsync, transport_ws};
use crate::schema::Api;
use crate::shutdown::Shutdown;

#[derive(Clone)]
pub struct AppState {
    pub api: Api,
    pub auth: Arc<Authenticator>,
    /// Tells WebSocket sessions to close when the server stops.
    pub shutdown: Shutdown,
    /// How often an open connection's token is looked at between its expiry and rotations
    /// (`realtime::authority`).
    pub authority_recheck: Duration,
    /// Whether `GET /graphql` in a browser serves GraphiQL (`crate::graphiql`).
    pub graphiql: bool,
    /// Failed admin-key attempts per client address (`crate::admin_guard`).
    pub admin_guard: Arc<AdminGuard>,
    /// Who may read `GET /metrics`.
    pub metrics_access: MetricsAccess,
}

/// The client's address, as the listener accepted it (`into_make_service_with_connect_info`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, crate::tls::DualListener>,
    > for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::DualListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/graphql",
            get(graphiql_or_websocket).post(graphql).layer(cors()),
        )
        .route(transport_appsync::PATH, get(appsync_realtime).layer(cors()))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/graphiql/page.js",
            get(|| async { crate::graphiql::script() }),
        )
        .route(
            "/graphiql/page.css",
            get(|| async { crate::graphiql::style() }),
        )
        .merge(crate::console::router())
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// `GET /metrics`: from a loopback address, or with the admin key as a bearer token, as
/// `--metrics` says. A wrong key counts as a failed admin-key attempt.
async fn metrics(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<Peer>>>,
    headers: HeaderMap,
) -> Response {
    let Some(metrics) = state.api.metrics.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are off (chat-server --metrics)\n",
        )
            .into_response();
    };
    let peer = peer.map(|axum::Extension(axum::extract::ConnectInfo(Peer(addr)))| addr.ip());
    match state.metrics_access {
        MetricsAccess::Off => {
            return (
                StatusCode::NOT_FOUND,
                "metrics are off (chat-server --metrics)\n",
            )
                .into_response();
        }
        MetricsAccess::Loopback => {
            if !peer.is_some_and(|ip| ip.is_loopback()) {
                return (
                    StatusCode::FORBIDDEN,
                    "metrics are served to loopback clients only (chat-server --metrics admin-key serves them to the admin key)\n",
                )
                    .into_response();
            }
        }
        MetricsAccess::AdminKey => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().strip_prefix("Bearer "))
                .filter(|token| is_admin_shaped(token));
            let refused = |status, message: &str| {
                let mut answer = (status, format!("{message}\n")).into_response();
                answer
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                answer
            };
            let Some(bearer) = bearer else {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "metrics need Authorization: Bearer <admin key>",
                );
            };
            if let Some(ip) = peer
                && state.admin_guard.check(ip).is_err()
            {
                return refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many failed admin key attempts from this address",
                );
            }
            if !matches!(
                state.auth.authenticate(Some(bearer)).await,
                Ok(chat_domain::Caller::Admin)
            ) {
                if let Some(ip) = peer {
                    state.admin_guard.failed(ip);
                }
                return refused(StatusCode::UNAUTHORIZED, "not the admin key");
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.render(&state.api.groups).await,
    )
        .into_response()
}

/// Web apps call the API from their own origin (AppSync answers CORS the same way). Tokens
/// travel in `Authorization`, never in cookies, so any origin may call.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(Any)
        .max_age(Duration::from_secs(600))
}

/// `GET /graphql`: a WebSocket upgrade or, in a browser, GraphiQL. A client that asks for
/// `graphql-ws` and not `graphql-transport-ws` speaks AppSync's real-time protocol
/// (AppSync's own real-time endpoint is at `/graphql` too); everyone else
/// graphql-transport-ws.
async fn graphiql_or_websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        if state.graphiql {
            return crate::graphiql::page();
        }
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({ "errors": [{
                "message": "GraphiQL is off on this server (chat-server --graphiql turns it on); send GraphQL requests with POST /graphql",
                "errorType": "NotFound",
                "extensions": { "code": "NotFound" },
            }] })),
        )
            .into_response();
    };
    let requested = transport_appsync::requested_protocols(&headers);
    if requested.contains(&transport_appsync::PROTOCOL)
        && !requested.contains(&transport_ws::PROTOCOL)
    {
        return appsync_upgrade(state, &headers, query, upgrade);
    }
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    websocket_limits(upgrade.protocols([transport_ws::PROTOCOL])).on_upgrade(move |socket| {
        let open =
            (state.api.metrics.as_ref()).map(|m| m.connection_opened(Protocol::GraphqlTransportWs));
        transport_ws::serve(
            socket,
            state.api,
            state.auth,
            header_token,
            Timing {
                authority_recheck: state.authority_recheck,
                ..transport_ws::TIMING
            },
            state.shutdown,
        )
        .map(move |()| drop(open))
    })
}

/// `GET /graphql/realtime`: AppSync's real-time protocol, where Amplify connects for a
/// custom domain (any endpoint not on `appsync-api.<region>.amazonaws.com`).
async fn appsync_realtime(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => appsync_upgrade(state, &headers, query, upgrade),
        Err(rejection) => rejection.into_response(),
    }
}

fn appsync_upgrade(
    state: AppState,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let handshake = transport_appsync::Handshake::read(
        headers,
        query
            .get(transport_appsync::HEADER_PARAMETER)
            .map(String::as_str),
    );
    websocket_limits(upgrade.protocols([transport_appsync::PROTOCOL])).on_upgrade(move |socket| {
        let open = (state.api.metrics.as_ref()).map(|m| m.connection_opened(Protocol::AppSync));
        transport_appsync::serve(
            socket,
            state.api,
            state.auth,
            handshake,
            Timing {
                authority_recheck: state.authority_recheck,
                ..transport_appsync::TIMING
            },
            state.shutdown,
        )
        .map(move |()| drop(open))
    })
}

/// The WebSocket settings every protocol shares.
fn websocket_limits(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(REQUEST_BODY_MAX_BYTES)
        // tungstenite reserves 128 KiB per connection for reads by default; chat frames are
        // small and a connection is mostly idle (docs/realtime.md has the measurement).
        .read_buffer_size(connection::READ_BUFFER_BYTES)
        // Frames ready together go out in one write (the connection feeds, then flushes);
        // the buffer grows only while frames wait, so idle connections do not pay for it.
        .write_buffer_size(connection::WRITE_BUFFER_BYTES)
}

/// Parse and validation errors come from async-graphql without a code: the request itself
/// is malformed, so they are BadInput.
pub fn with_codes(mut response: async_graphql::Response) -> async_graphql::Response {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some());
        if !has_code {
            let ext = error.extensions.get_or_insert_with(Default::default);
            ext.set("code", ErrorCode::BadInput.as_str());
            ext.set("errorType", ErrorCode::BadInput.as_str());
        }
    }
    response
}

/// A response as JSON in AppSync's shape: every error carries its code twice, in
/// `extensions.code` (GraphQL's convention) and as a top-level `errorType` (AppSync's
/// field, which Amplify and AppSync clients read).
pub fn to_appsync_json(response: async_graphql::Response) -> Value {
    let response = with_codes(response);
    let mut json = serde_json::to_value(&response).unwrap_or_else(|e| {
        json!({ "data": null, "errors": [{ "message": e.to_string(), "errorType": "Internal", "extensions": { "code": "Internal" } }] })
    });
    if let Some(Value::Array(errors)) = json.get_mut("errors") {
        add_error_types(errors);
    }
    json
}

/// Copies each error's code to a top-level `errorType`, and a throttled error's
/// `retryAfterMs` to `errorInfo`, where AppSync puts it (see `chat_appsync::lambda`).
fn add_error_types(errors: &mut [Value]) {
    for error in errors {
        let Value::Object(error) = error else {
            continue;
        };
        let extensions = error.get("extensions");
        let code = extensions
            .and_then(|e| e.get("errorType").or_else(|| e.get("code")))
            .cloned();
        let retry_after_ms = extensions.and_then(|e| e.get("retryAfterMs")).cloned();
        if let Some(code) = code {
            error.entry("errorType").or_insert(code);
        }
        if let Some(ms) = retry_after_ms {
            error
                .entry("errorInfo")
                .or_insert_with(|| json!({ "retryAfterMs": ms }));
        }
    }
}

/// [`error_response`] for a GraphQL request refused before execution, counted as such.
fn refused(state: &AppState, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    if let Some(metrics) = &state.api.metrics {
        metrics.refused(code.as_str());
    }
    error_response(status, code, message)
}

/// A response in GraphQL's shape for requests that never reach execution.
fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = json!({
        "data": null,
        "errors": [{
            "message": message,
            "errorType": code.as_str(),
            "extensions": { "code": code.as_str() },
        }],
    });
    (status, axum::Json(body)).into_response()
}

async fn graphql(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<Peer>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A body over the limit (or one that cannot be read) is refused in GraphQL's shape like
    // every other refusal, not with axum's plain-text rejection.
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refused(
                &state,
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::BadInput,
                &format!("the request body is over {REQUEST_BODY_MAX_BYTES} bytes"),
            );
        }
        Err(rejection) => {
            return refused(
                &state,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadInput,
                &format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return refused(
                &state,
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "the Authorization header is not valid text",
            );
        }
    };
    // A guess at the admin key is counted, and past the limit refused before it is compared.
    let admin_attempt = authorization
        .filter(|token| is_admin_shaped(token))
        .and(peer.map(|axum::Extension(axum::extract::ConnectInfo(Peer(addr)))| addr.ip()));
    if let Some(ip) = admin_attempt
        && let Err(wait) = state.admin_guard.check(ip)
    {
        let mut answer = refused(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Throttled,
            &format!(
                "too many failed admin key attempts from this address; retry in {} s",
                wait.as_secs().max(1)
            ),
        );
        answer.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return answer;
    }
    let caller = match state.auth.authenticate(authorization).await {
        Ok(caller) => caller,
        Err(error @ DomainError::Unauthorized(_)) => {
            if let Some(ip) = admin_attempt {
                state.admin_guard.failed(ip);
            }
            return refused(
                &state,
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &error.to_string(),
            );
        }
        Err(error) => {
            return refused(
                &state,
                StatusCode::BAD_REQUEST,
                error.code(),
                &error.to_string(),
            );
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            let message = if body.first() == Some(&b'[') {
                "batched requests are not supported: send one operation per request".to_owned()
            } else {
                format!("the body must be a JSON GraphQL request: {error}")
            };
            return refused(
                &state,
                StatusCode::BAD_REQUEST,
                ErrorCode::BadInput,
                &message,
            );
        }
    };
    let response = state.api.execute(request, caller).await;
    let retry_after = retry_after_secs(&response);
    let mut answer = axum::Json(to_appsync_json(response)).into_response();
    if let Some(secs) = retry_after {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    answer
}

/// A throttled request's `Retry-After`, in whole seconds rounded up, from the longest
/// `extensions.retryAfterMs`. The status stays 200, as on AppSync; the header lets an HTTP
/// client or proxy that honours it wait without reading the body.
fn retry_after_secs(response: &async_graphql::Response) -> Option<u64> {
    response
        .errors
        .iter()
        .filter_map(
            |error| match error.extensions.as_ref()?.get("retryAfterMs")? {
                async_graphql::Value::Number(ms) => ms.as_u64(),
                _ => None,
            },
        )
        .max()
        .map(|ms| ms.div_ceil(1000))
}
