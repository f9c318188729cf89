//! How a resolver Lambda receives AppSync's events and answers them.
//!
//! A direct Lambda resolver gets one [`ResolverEvent`]; with `MaxBatchSize > 1` AppSync may
//! send an array of them (one per parent object, for nested fields) and expects an array
//! back, in the same order. A failed single event is a failed invocation (AppSync turns the
//! Lambda error's `errorType`/`errorMessage` into the GraphQL error); a batch answers each
//! item with `{data, errorType, errorMessage}`, so one failed item does not fail the others.

use chat_domain::ErrorCode;
use serde_json::{Value, json};

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

/// One answer of a batch: `data`, or `errorType` and `errorMessage` (and `data: null`).
pub fn batch_item(result: Result<Value, ResolverError>) -> Value {
    match result {
        Ok(data) => json!({ "data": data }),
        Err(error) => json!({
            "data": null,
            "errorType": error.error_type,
            "errorMessage": error.error_message,
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
                {"data": null, "errorType": "NotFound", "errorMessage": "no such chat"}
            ])
        );
    }
}
