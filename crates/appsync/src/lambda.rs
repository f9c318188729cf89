//! How a resolver Lambda receives AppSync's events and answers them.
//!
//! A direct Lambda resolver gets one [`ResolverEvent`]; with `MaxBatchSize > 1` AppSync may
//! send an array of them (one per parent object, for nested fields) and expects an array
//! back, in the same order.
//!
//! Every answer is an envelope, `{data}` or `{data: null, errorType, errorMessage,
//! errorInfo}`, and every resolver has the response mapping template [`RESPONSE_TEMPLATE`],
//! which raises the envelope's error with `$util.error` — AppSync's documented way to give a
//! GraphQL error its `errorType`. A client error (Forbidden, NotFound, ...) is therefore a
//! successful invocation, and Lambda's `Errors` metric counts only faults: an `Internal` error
//! of a single event fails the invocation (the template answers it as `Internal`, "internal
//! error", like the dev server), as do timeouts and crashes. In a batch every item is an
//! envelope, so one failed item does not fail the others.

use chat_domain::ErrorCode;
use serde_json::{Value, json};

use crate::outcome::Outcome;
use crate::registry::{ResolverError, ResolverEvent};

/// What one invocation of a resolver function carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    Single(Box<ResolverEvent>),
    Batch(Vec<ResolverEvent>),
}

impl Invocation {
    /// An array is a batch, an object one event; anything else is BadInput.
    pub fn parse(payload: Value) -> Result<Invocation, ResolverError> {
        let malformed = |e: serde_json::Error| {
            ResolverError::new(
                ErrorCode::BadInput,
                format!("not an AppSync direct resolver event: {e}"),
            )
        };
        match payload {
            Value::Array(items) => items
                .into_iter()
                .map(|item| serde_json::from_value(item).map_err(malformed))
                .collect::<Result<Vec<_>, _>>()
                .map(Invocation::Batch),
            Value::Object(_) => serde_json::from_value(payload)
                .map(|event| Invocation::Single(Box::new(event)))
                .map_err(malformed),
            other => Err(ResolverError::new(
                ErrorCode::BadInput,
                format!("expected an event or an array of events, got {other}"),
            )),
        }
    }
}

/// `"Type.field"` of an event.
pub fn field_of(event: &ResolverEvent) -> String {
    format!("{}.{}", event.info.parent_type_name, event.info.field_name)
}

/// The response mapping template (VTL) of every resolver function, with no request template:
/// AppSync still sends the direct Lambda event, and turns the answer's envelope into the
/// field's value or its GraphQL error. A failed invocation (`$ctx.error`: an internal error,
/// a timeout, a crash) answers what the dev server answers for an internal error, without
/// the Lambda's own message. `errorInfo` carries `retryAfterMs` of a `Throttled` error.
pub const RESPONSE_TEMPLATE: &str = "\
#if($ctx.error)
  $util.error(\"internal error\", \"Internal\")
#end
#if($ctx.result.errorType)
  $util.error($ctx.result.errorMessage, $ctx.result.errorType, $null, $ctx.result.errorInfo)
#end
$util.toJson($ctx.result.data)
";

/// The answer of a single event: the envelope (see the module's docs), or, for a fault
/// ([`Outcome::Fault`], the rule the metrics count with too), the error that fails the
/// invocation.
pub fn answer(result: Result<Value, ResolverError>) -> Result<Value, ResolverError> {
    match result {
        Err(error) if Outcome::of_error_type(&error.error_type) == Outcome::Fault => Err(error),
        other => Ok(envelope(other)),
    }
}

/// One answer of a batch: the envelope, for every error.
pub fn batch_item(result: Result<Value, ResolverError>) -> Value {
    envelope(result)
}

/// `{data}`, or `{data: null, errorType, errorMessage, errorInfo}` with `errorInfo`
/// `{retryAfterMs}` for a throttled request and null otherwise.
fn envelope(result: Result<Value, ResolverError>) -> Value {
    match result {
        Ok(data) => json!({ "data": data }),
        Err(error) => json!({
            "data": null,
            "errorType": error.error_type,
            "errorMessage": error.error_message,
            "errorInfo": error.retry_after_ms.map(|ms| json!({ "retryAfterMs": ms })),
        }),
    }
}

/// The answers of a batch, in order, as AppSync expects them.
pub fn batch_response(results: Vec<Result<Value, ResolverError>>) -> Value {
    Value::Array(results.into_iter().map(batch_item).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::appsync::AppSyncIdentity;

    fn event(field: &str) -> Value {
        json!({
            "arguments": {"appToken": "app_x", "chatNumber": 1},
            "identity": {"resolverContext": {"kind": "user", "app": "app_x", "sub": "u1", "role": "AGENT"}},
            "source": null,
            "request": {"headers": {"authorization": "t"}, "domainName": null},
            "info": {"fieldName": field, "parentTypeName": "Query", "selectionSetGraphQL": "", "selectionSetList": [], "variables": {}},
            "prev": null,
            "stash": {}
        })
    }

    #[test]
    fn an_object_is_one_event_with_the_lambda_identity() {
        let Invocation::Single(event) = Invocation::parse(event("chat")).unwrap() else {
            panic!("expected a single event")
        };
        assert_eq!(field_of(&event), "Query.chat");
        assert!(matches!(event.identity, Some(AppSyncIdentity::Lambda(_))));
    }

    #[test]
    fn an_array_is_a_batch_in_order() {
        let Invocation::Batch(events) = Invocation::parse(json!([event("a"), event("b")])).unwrap()
        else {
            panic!("expected a batch")
        };
        let fields: Vec<_> = events.iter().map(field_of).collect();
        assert_eq!(fields, ["Query.a", "Query.b"]);
    }

    #[test]
    fn anything_else_is_bad_input() {
        for payload in [json!(1), json!("x"), json!({"info": 3}), json!([1])] {
            let error = Invocation::parse(payload).unwrap_err();
            assert_eq!(error.error_type, "BadInput");
        }
    }

    #[test]
    fn batch_items_carry_data_or_the_error() {
        let answer = batch_response(vec![
            Ok(json!({"number": 1})),
            Err(ResolverError::new(ErrorCode::NotFound, "no such chat")),
        ]);
        assert_eq!(
            answer,
            json!([
                {"data": {"number": 1}},
                {"data": null, "errorType": "NotFound", "errorMessage": "no such chat", "errorInfo": null}
            ])
        );
    }

    #[test]
    fn a_client_error_is_a_successful_answer_and_an_internal_error_fails() {
        let throttled = ResolverError {
            retry_after_ms: Some(95),
            ..ResolverError::new(ErrorCode::Throttled, "too many requests; retry after 95 ms")
        };
        assert_eq!(
            answer(Err(throttled)).unwrap(),
            json!({
                "data": null,
                "errorType": "Throttled",
                "errorMessage": "too many requests; retry after 95 ms",
                "errorInfo": {"retryAfterMs": 95}
            })
        );
        for code in ErrorCode::ALL {
            let result = answer(Err(ResolverError::new(code, "m")));
            assert_eq!(result.is_err(), code == ErrorCode::Internal, "{code:?}");
        }
        assert_eq!(answer(Ok(json!(7))).unwrap(), json!({"data": 7}));
        assert_eq!(
            batch_item(Err(ResolverError::new(
                ErrorCode::Internal,
                "internal error"
            )))["errorType"],
            "Internal",
            "a batch item never fails the invocation"
        );
    }
}
