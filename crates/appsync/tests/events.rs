//! AppSync direct-resolver events as JSON (the Lambda path): fixtures round-trip through
//! the event type and resolve through the registry.

use std::sync::Arc;

use chat_appsync::{Registry, ResolverEvent};
use chat_domain::{ChatService, ServerKey, SystemClock};
use chat_embedded::SqliteStore;

fn fixture(name: &str, app: &str) -> ResolverEvent {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .expect("fixture")
        .replace("{{APP}}", app);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn registry() -> Registry {
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    Registry::new(Arc::new(ChatService::new(
        store,
        ServerKey::generate(),
        Arc::new(SystemClock),
    )))
}

#[test]
fn fixtures_round_trip_through_the_event_type() {
    for name in [
        "create-application.json",
        "create-chat.json",
        "send-message.json",
    ] {
        let event = fixture(name, "app_x");
        let json = serde_json::to_value(&event).unwrap();
        let again: ResolverEvent = serde_json::from_value(json).unwrap();
        assert_eq!(again, event, "{name}");
    }
}

#[tokio::test]
async fn lambda_events_resolve_through_the_registry() {
    let registry = registry();
    let created = registry
        .resolve(fixture("create-application.json", ""))
        .await
        .unwrap()
        .data;
    let app = created["application"]["token"].as_str().unwrap().to_owned();
    assert_eq!(created["application"]["name"], "Fixture Co");
    assert!(created["secret"].as_str().unwrap().starts_with("sk_"));

    let chat = registry
        .resolve(fixture("create-chat.json", &app))
        .await
        .unwrap()
        .data;
    assert_eq!(chat["number"], 1);
    assert_eq!(chat["customerId"], "customer-7");

    let first = registry
        .resolve(fixture("send-message.json", &app))
        .await
        .unwrap()
        .data;
    let retry = registry
        .resolve(fixture("send-message.json", &app))
        .await
        .unwrap()
        .data;
    assert_eq!(first["number"], 1);
    assert_eq!(
        first, retry,
        "same clientMessageId: the first message again"
    );
}

#[tokio::test]
async fn events_without_identity_or_with_bad_arguments_are_refused_with_codes() {
    let registry = registry();
    let mut anonymous = fixture("create-application.json", "");
    anonymous.identity = None;
    let error = registry.resolve(anonymous).await.unwrap_err();
    assert_eq!(error.error_type, "Unauthorized");

    let mut bad = fixture("create-application.json", "");
    bad.arguments = Some(serde_json::json!({ "name": 42 }));
    let error = registry.resolve(bad).await.unwrap_err();
    assert_eq!(error.error_type, "BadInput");

    let mut unknown = fixture("create-application.json", "");
    unknown.info.field_name = "dropDatabase".into();
    let error = registry.resolve(unknown).await.unwrap_err();
    assert_eq!(error.error_type, "BadInput");

    // A forged resolverContext (not produced by our authorizer) is treated as no identity.
    let mut forged = fixture("send-message.json", "app_x");
    forged.identity =
        serde_json::from_value(serde_json::json!({ "resolverContext": { "kind": "root" } }))
            .unwrap();
    assert_eq!(
        registry.resolve(forged).await.unwrap_err().error_type,
        "Unauthorized"
    );
}

#[tokio::test]
async fn a_throttled_send_is_throttled_with_its_retry_hint_on_the_lambda_path_too() {
    use chat_domain::{RateLimit, Throttle, ThrottleConfig};
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let throttle = Throttle::new(ThrottleConfig {
        per_user: RateLimit::per_second(1, 2),
        per_app: None,
    });
    let registry = Registry::new(Arc::new(
        ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock))
            .with_throttle(throttle),
    ));
    let created = registry
        .resolve(fixture("create-application.json", ""))
        .await
        .unwrap()
        .data;
    let app = created["application"]["token"].as_str().unwrap().to_owned();
    // One user's two: a chat and a message; the retry of the message is a third send.
    registry
        .resolve(fixture("create-chat.json", &app))
        .await
        .unwrap();
    registry
        .resolve(fixture("send-message.json", &app))
        .await
        .unwrap();
    let error = registry
        .resolve(fixture("send-message.json", &app))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "Throttled");
    let hint = error.retry_after_ms.expect("a retry hint");
    assert!((1..=1000).contains(&hint), "{hint}");
    assert_eq!(
        error.error_message,
        format!("too many requests; retry after {hint} ms"),
        "AppSync shows only the message: the hint is in it"
    );
}

#[tokio::test]
async fn writes_publish_the_whole_object_they_committed_whatever_was_selected() {
    use chat_appsync::publish;
    let registry = registry();
    let created = registry
        .resolve(fixture("create-application.json", ""))
        .await
        .unwrap();
    assert!(
        created.publications.is_empty(),
        "admin writes publish nothing"
    );
    let app = created.data["application"]["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // The customer opens the chat: the chat event is the agents' view of it.
    let chat = registry
        .resolve(fixture("create-chat.json", &app))
        .await
        .unwrap();
    assert_eq!(chat.publications.len(), 1);
    assert_eq!(chat.publications[0].mutation, publish::CHAT);
    assert_eq!(chat.publications[0].event["appToken"], app.as_str());
    assert_eq!(chat.publications[0].event["number"], 1);

    // The event is the committed message itself, every field, the same as the answer.
    let mut send = fixture("send-message.json", &app);
    send.info.selection_set_list = vec!["appToken".into()];
    let sent = registry.resolve(send).await.unwrap();
    assert_eq!(sent.publications.len(), 1);
    let event = &sent.publications[0];
    assert_eq!(event.mutation, publish::MESSAGE_SENT);
    assert_eq!(event.event, sent.data);
    for field in [
        "appToken",
        "chatNumber",
        "number",
        "body",
        "senderId",
        "senderRole",
    ] {
        assert!(
            event.event.get(field).is_some(),
            "{field} in {}",
            event.event
        );
    }
    assert_eq!(
        registry.publishes("Mutation.sendMessage"),
        [publish::MESSAGE_SENT]
    );
    assert!(registry.publishes("Query.messages").is_empty());
}
