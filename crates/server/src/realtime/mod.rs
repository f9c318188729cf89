//! Real time: AppSync's subscription rule ([`hub`]), subscription groups that execute and
//! render each distinct subscription once for all its subscribers ([`groups`]), one
//! WebSocket connection that runs operations and delivers their events ([`connection`]),
//! and the two protocols spoken over it, each a codec ([`transport_ws`]:
//! graphql-transport-ws; [`transport_appsync`]: AppSync's own, which Amplify speaks). Execution
//! is shared by HTTP and WebSocket through [`Api::execute`] and [`Api::execute_stream`], so
//! a mutation publishes the same way whichever way it arrived, and both protocols subscribe,
//! authorize and deliver through the same code: only the envelopes differ.
//!
//! What a transport gets is protocol-neutral: [`Payload`]s, GraphQL responses already
//! rendered to JSON text; each protocol wraps them in its own envelope.

pub mod authority;
pub mod connection;
pub mod groups;
pub mod hub;
pub mod transport_appsync;
pub mod transport_ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{Request, Response};
use chat_appsync::Publication;
use chat_domain::Caller;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Notify;

pub use groups::Groups;
pub use hub::{Hub, SubscriptionSpec};

use crate::schema::Api;

/// The events a request's committed writes publish, built by the server (see
/// `chat_appsync::publish`), delivered once the request completes.
#[derive(Clone, Default)]
pub struct PublicationLog(Arc<Mutex<Vec<Publication>>>);

impl PublicationLog {
    pub fn record(&self, publications: Vec<Publication>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(publications);
    }

    fn take(&self) -> Vec<Publication> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What a subscription tells its connection: "I fell behind; close with a reason".
#[derive(Clone, Default)]
pub struct ConnectionSignals(Arc<(Notify, AtomicBool)>);

impl ConnectionSignals {
    pub fn fell_behind(&self) {
        self.0.1.store(true, Ordering::SeqCst);
        self.0.0.notify_one();
    }

    /// Whether a subscription of this connection was cut off (checked before treating a
    /// stream's end as a normal completion).
    pub fn is_behind(&self) -> bool {
        self.0.1.load(Ordering::SeqCst)
    }

    pub async fn wait_fell_behind(&self) {
        self.0.0.notified().await;
    }
}

/// A GraphQL response rendered once to JSON text, shared by every subscriber it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The response (`{"data": ..., "errors": [...]}`), errors with their codes (in
    /// `extensions.code` and, as AppSync names it, `errorType`).
    pub response: String,
    /// For a response with errors and no data: its errors alone (a subscription's first
    /// such response is a refusal, which protocols report without `data`).
    pub refusal: Option<String>,
}

impl Payload {
    pub fn render(response: Response) -> Arc<Payload> {
        if response.errors.is_empty() {
            // The common case, an event: straight to text.
            let response = serde_json::to_string(&response).unwrap_or_else(|e| {
                serde_json::json!({ "data": null, "errors": [{ "message": e.to_string(), "errorType": "Internal", "extensions": { "code": "Internal" } }] }).to_string()
            });
            return Arc::new(Payload {
                response,
                refusal: None,
            });
        }
        let json = crate::http::to_appsync_json(response);
        let refusal = (json.get("data").is_none_or(serde_json::Value::is_null))
            .then(|| json["errors"].to_string());
        Arc::new(Payload {
            response: json.to_string(),
            refusal,
        })
    }
}

/// How an operation answers over a stream-oriented transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A query or mutation: one response.
    Single,
    /// A subscription: a response per event; a first response with errors and no data
    /// means it was refused.
    Subscription,
    /// The document does not parse or names no operation: one response with errors.
    Invalid,
}

fn operation_of(request: &mut Request) -> Operation {
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return Operation::Invalid;
    };
    let ty = match &document.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        // A document's only operation may be named and still sent without operationName.
        DocumentOperations::Multiple(ops) if name.is_none() && ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        // Named operations; without an operation name, a document's only one (GraphQL's
        // rule; Amplify sends `subscription OnMessage(...)` without `operationName`).
        DocumentOperations::Multiple(ops) => match name.as_deref() {
            Some(n) => ops.iter().find(|(k, _)| k.as_str() == n),
            None if ops.len() == 1 => ops.iter().next(),
            None => None,
        }
        .map(|(_, op)| op.node.ty),
    };
    match ty {
        Some(OperationType::Subscription) => Operation::Subscription,
        Some(_) => Operation::Single,
        None => Operation::Invalid,
    }
}

impl Api {
    /// Executes a query or mutation and then publishes the events its committed writes
    /// produced: whole objects built by the resolvers, routed by their own fields, whatever
    /// the request selected or aliased. Each subscriber renders its own selection of them.
    pub async fn execute(&self, request: Request, caller: Caller) -> Response {
        // Before anything parses the document (see `query_nesting`).
        if let Err(error) = crate::query_nesting::check(&request.query) {
            return self.counted(Response::from_errors(vec![error]));
        }
        let log = PublicationLog::default();
        let response = self
            .schema
            .execute(request.data(caller).data(log.clone()))
            .await;
        for publication in log.take() {
            self.hub.publish(publication.mutation, publication.event);
        }
        self.counted(response)
    }

    /// Counts the errors of a response that came from no field (a document that does not
    /// parse, validate or pass the limits): the fields count their own.
    fn counted(&self, response: Response) -> Response {
        if let Some(metrics) = &self.metrics {
            for error in response.errors.iter().filter(|e| e.path.is_empty()) {
                let code = error.extensions.as_ref().and_then(|e| e.get("code"));
                match code {
                    Some(async_graphql::Value::String(code)) => metrics.refused(code),
                    // async-graphql's own parse and validation errors (`http::with_codes`).
                    _ => metrics.refused(chat_domain::ErrorCode::BadInput.as_str()),
                }
            }
        }
        response
    }

    /// Any operation as a stream of rendered responses: subscriptions stream, the rest
    /// answer once (and mutations publish as over HTTP). A subscription is admitted
    /// (validated and authorized for `caller`; a refusal is its one response) and live when
    /// this returns; a query or mutation runs when the stream is polled.
    pub async fn execute_stream(
        &self,
        mut request: Request,
        caller: Caller,
        signals: ConnectionSignals,
    ) -> (Operation, BoxStream<'static, Arc<Payload>>) {
        if let Err(error) = crate::query_nesting::check(&request.query) {
            let refusal = Payload::render(Response::from_errors(vec![error]));
            return (
                Operation::Invalid,
                futures::stream::once(async move { refusal }).boxed(),
            );
        }
        match operation_of(&mut request) {
            Operation::Subscription => (
                Operation::Subscription,
                self.groups
                    .subscribe(&self.schema, request, caller, signals)
                    .await,
            ),
            kind => {
                let api = self.clone();
                let once = futures::stream::once(async move {
                    Payload::render(api.execute(request, caller).await)
                });
                (kind, once.boxed())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(query: &str, operation_name: Option<&str>) -> Operation {
        let mut request = Request::new(query);
        request.operation_name = operation_name.map(str::to_owned);
        operation_of(&mut request)
    }

    #[test]
    fn a_documents_only_operation_runs_without_an_operation_name() {
        assert_eq!(kind("subscription { s }", None), Operation::Subscription);
        assert_eq!(kind("subscription S { s }", None), Operation::Subscription);
        assert_eq!(kind("mutation M { m }", None), Operation::Single);
        let two = "query Q { q } subscription S { s }";
        assert_eq!(kind(two, None), Operation::Invalid);
        assert_eq!(kind(two, Some("S")), Operation::Subscription);
        assert_eq!(kind(two, Some("Q")), Operation::Single);
        assert_eq!(kind(two, Some("R")), Operation::Invalid);
        assert_eq!(kind("subscription {", None), Operation::Invalid);
    }
}
