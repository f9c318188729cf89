//! HTTP: `POST /graphql` (header `Authorization`), `GET /graphql` (GraphiQL), `GET /health`.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chat_appsync::Authenticator;
use chat_domain::limits::REQUEST_BODY_MAX_BYTES;
use chat_domain::{DomainError, ErrorCode};
use serde_json::json;

use crate::realtime::transport_ws;
use crate::schema::Api;

#[derive(Clone)]
pub struct AppState {
    pub api: Api,
    pub auth: Arc<Authenticator>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql_or_websocket).post(graphql))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// `GET /graphql`: a WebSocket upgrade (graphql-transport-ws) or, in a browser, GraphiQL.
async fn graphiql_or_websocket(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(upgrade) = upgrade else {
        let page = GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .finish();
        return Html(page).into_response();
    };
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    upgrade
        .protocols([transport_ws::PROTOCOL])
        .max_message_size(REQUEST_BODY_MAX_BYTES)
        // tungstenite reserves 128 KiB per connection for reads by default; chat frames are
        // small and a connection is mostly idle (docs/realtime.md has the measurement).
        .read_buffer_size(transport_ws::READ_BUFFER_BYTES)
        // Frames ready together go out in one write (the connection feeds, then flushes);
        // the buffer grows only while frames wait, so idle connections do not pay for it.
        .write_buffer_size(transport_ws::WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| transport_ws::serve(socket, state.api, state.auth, header_token))
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

/// A response's errors, with codes, as JSON.
pub fn errors_with_codes(response: &async_graphql::Response) -> serde_json::Value {
    let response = with_codes(async_graphql::Response::from_errors(
        response.errors.clone(),
    ));
    serde_json::to_value(&response.errors).unwrap_or_default()
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

async fn graphql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "the Authorization header is not valid text",
            );
        }
    };
    let caller = match state.auth.authenticate(authorization) {
        Ok(caller) => caller,
        Err(error @ DomainError::Unauthorized(_)) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &error.to_string(),
            );
        }
        Err(error) => {
            return error_response(StatusCode::BAD_REQUEST, error.code(), &error.to_string());
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
            return error_response(StatusCode::BAD_REQUEST, ErrorCode::BadInput, &message);
        }
    };
    let response = with_codes(state.api.execute(request, caller).await);
    axum::Json(&response).into_response()
}
