//! HTTP: `POST /graphql` (header `Authorization`), `GET /graphql` (GraphiQL), `GET /health`.

use std::sync::Arc;

use async_graphql::dynamic::Schema;
use async_graphql::http::GraphiQLSource;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chat_appsync::Authenticator;
use chat_domain::limits::REQUEST_BODY_MAX_BYTES;
use chat_domain::{DomainError, ErrorCode};
use serde_json::json;

#[derive(Clone)]
pub struct AppState {
    pub schema: Schema,
    pub auth: Arc<Authenticator>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_MAX_BYTES))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
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
    let mut response = state.schema.execute(request.data(caller)).await;
    for error in &mut response.errors {
        // Parse and validation errors come from async-graphql without a code: the request
        // itself is malformed.
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
    axum::Json(&response).into_response()
}
