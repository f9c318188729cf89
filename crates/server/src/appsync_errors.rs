//! One resolver result, one GraphQL error, on both runtimes: what the dev server answers
//! for a resolver's error is what AppSync answers when the function returns that result
//! and the generated response template (`chat_appsync::lambda::RESPONSE_TEMPLATE`) renders
//! it. The template runs in a Velocity engine (airspeed, from `.venv`, installed by
//! `scripts/test`) with the `$util` helpers AppSync documents (`appsync_vtl.py`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use chat_appsync::ResolverError;
use chat_appsync::lambda::{RESPONSE_TEMPLATE, answer, batch_item};
use chat_domain::{DomainError, ErrorCode};
use serde_json::{Value, json};

/// The GraphQL error the dev server answers: the fields a client reads.
fn dev_server_error(error: ResolverError) -> Value {
    let error = crate::schema::graphql_error(error)
        .into_server_error(async_graphql::Pos { line: 1, column: 3 });
    let response = crate::http::to_appsync_json(async_graphql::Response::from_errors(vec![error]));
    let error = &response["errors"][0];
    json!({
        "message": error["message"],
        "errorType": error["errorType"],
        "errorInfo": error.get("errorInfo").cloned().unwrap_or(Value::Null),
    })
}

/// What AppSync makes of each function answer with the response template: the `$ctx` it
/// renders it with (the answer as `$ctx.result`, or a failed invocation as `$ctx.error`).
fn appsync_outcomes(answers: &[Result<Value, ResolverError>]) -> Vec<Value> {
    let contexts: Vec<Value> = answers
        .iter()
        .map(|answer| match answer {
            Ok(envelope) => json!({ "result": envelope }),
            Err(failed) => json!({
                "error": { "message": failed.error_message, "type": "Lambda:Unhandled" }
            }),
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} does not exist: run scripts/test (it installs airspeed into .venv)",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/appsync_vtl.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    let request = json!({ "template": RESPONSE_TEMPLATE, "contexts": contexts });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "appsync_vtl.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("outcomes as JSON")
}

/// One error of every code, as the domain makes them.
fn errors() -> Vec<ResolverError> {
    let io = std::io::Error::other("connection reset by peer (table chat-prod)");
    [
        DomainError::bad_input("chat number must be positive"),
        DomainError::Unauthorized("the token has expired".into()),
        DomainError::Forbidden("customers cannot edit another user's message".into()),
        DomainError::chat_not_found(42),
        DomainError::message_numbers_exhausted(),
        DomainError::Throttled { retry_after_ms: 95 },
        DomainError::internal("reading the chat", io),
    ]
    .into_iter()
    .map(ResolverError::from)
    .collect()
}

#[test]
fn every_error_code_reaches_the_client_the_same_on_both_runtimes() {
    let errors = errors();
    let codes: Vec<&str> = errors.iter().map(|e| e.error_type.as_str()).collect();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, all, "one error of every code");

    let answers: Vec<_> = errors.iter().cloned().map(|e| answer(Err(e))).collect();
    let outcomes = appsync_outcomes(&answers);
    for (error, outcome) in errors.into_iter().zip(outcomes) {
        let code = error.error_type.clone();
        let on_appsync = &outcome["error"];
        assert_eq!(on_appsync["data"], Value::Null, "{code}: {outcome}");
        let on_appsync = json!({
            "message": on_appsync["message"],
            "errorType": on_appsync["errorType"],
            "errorInfo": on_appsync["errorInfo"],
        });
        assert_eq!(on_appsync, dev_server_error(error), "{code}");
    }
}

#[test]
fn the_detail_of_an_internal_error_reaches_neither_client() {
    let internal = errors().pop().unwrap();
    let dev = dev_server_error(internal.clone());
    let appsync = appsync_outcomes(&[answer(Err(internal))]).remove(0);
    for seen in [dev.to_string(), appsync.to_string()] {
        assert!(seen.contains("internal error"), "{seen}");
        assert!(
            !seen.contains("connection reset") && !seen.contains("chat-prod"),
            "{seen}"
        );
    }
}

#[test]
fn a_value_and_a_batch_item_pass_through_the_template_unchanged() {
    let value = json!({"number": 3, "body": "Where is \"order\" #1234?\n", "tags": [], "x": null});
    let answers = [
        answer(Ok(value.clone())),
        answer(Ok(Value::Null)),
        Ok(batch_item(Ok(value.clone()))),
        Ok(batch_item(Err(ResolverError::new(
            ErrorCode::NotFound,
            "chat 9 not found",
        )))),
        Ok(batch_item(Err(ResolverError::new(
            ErrorCode::Internal,
            "internal error",
        )))),
    ];
    let outcomes = appsync_outcomes(&answers);
    assert_eq!(outcomes[0], json!({ "data": value }));
    assert_eq!(outcomes[1], json!({ "data": null }));
    assert_eq!(outcomes[2], json!({ "data": value }));
    assert_eq!(outcomes[3]["error"]["errorType"], "NotFound");
    assert_eq!(outcomes[3]["error"]["message"], "chat 9 not found");
    assert_eq!(outcomes[4]["error"]["errorType"], "Internal");
}
