//! The functions' handlers on the fixtures, in-process: resolvers over the embedded store
//! (the same registry the Lambdas run), the stream indexer over a scripted index. The same
//! fixtures drive the real binaries in `watch.rs`.

mod common;

use std::sync::{Arc, Mutex};

use aws_lambda_events::appsync::{AppSyncLambdaAuthorizerRequest, AppSyncLambdaAuthorizerResponse};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use chat_appsync::{Registry, ResolverEvent};
use chat_domain::{
    Applied, ChatService, DomainError, IndexOp, SearchHit, SearchIndex, SearchRequest, ServerKey,
    SystemClock,
};
use chat_embedded::SqliteStore;
use chat_functions::{handle_resolver, handle_stream};
use common::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Parse, serialize, parse again: the same value (as aws-lambda-rust-runtime tests its
/// event types), and nothing the fixture says is lost on the way.
fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(text: &str) {
    let parsed: T = serde_json::from_str(text).unwrap();
    let output = serde_json::to_string(&parsed).unwrap();
    let reparsed: T = serde_json::from_str(&output).unwrap();
    assert_eq!(parsed, reparsed);
}

#[test]
fn every_fixture_round_trips_through_its_event_type() {
    let values = [("APP", "app_fixture"), ("TOKEN", "t")];
    for name in fixture_names() {
        let text = fixture_text(&name, &values);
        match name.as_str() {
            n if n.starts_with("appsync-") && n.contains("batch") => {
                round_trip::<Vec<ResolverEvent>>(&text)
            }
            n if n.starts_with("appsync-") => round_trip::<ResolverEvent>(&text),
            n if n.starts_with("authorizer-") => {
                round_trip::<AppSyncLambdaAuthorizerRequest>(&text)
            }
            n if n.starts_with("dynamodb-stream-") => round_trip::<StreamEvent>(&text),
            n if n.starts_with("sqs-") => round_trip::<aws_lambda_events::sqs::SqsEvent>(&text),
            other => panic!(
                "fixture {other}: no event type (name it appsync-, authorizer-, dynamodb-stream- or sqs-)"
            ),
        }
    }
    round_trip::<AppSyncLambdaAuthorizerResponse>(
        r#"{"isAuthorized":true,"resolverContext":{"kind":"admin"},"deniedFields":null,"ttlOverride":300}"#,
    );
}

fn registry() -> Registry {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    Registry::new(Arc::new(ChatService::new(
        store,
        ServerKey::generate(),
        Arc::new(SystemClock),
    )))
}

/// createApplication (admin), createChat and sendMessage (customer): the app token.
async fn app_with_a_message(registry: &Registry) -> String {
    let created = handle_resolver(
        registry,
        None,
        "Mutation.createApplication",
        fixture("appsync-create-application.json", &[]),
    )
    .await
    .unwrap()["data"]
        .take();
    let app = created["application"]["token"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("sk_"));
    let values = [("APP", app.as_str())];
    let chat = handle_resolver(
        registry,
        None,
        "Mutation.createChat",
        fixture("appsync-create-chat.json", &values),
    )
    .await
    .unwrap()["data"]
        .take();
    assert_eq!(chat["number"], 1);
    app
}

#[tokio::test]
async fn send_message_answers_the_message_and_a_retry_the_same_one() {
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    let event = fixture("appsync-send-message.json", &[("APP", &app)]);
    let first = handle_resolver(&registry, None, "Mutation.sendMessage", event.clone())
        .await
        .unwrap()["data"]
        .take();
    assert_eq!(first["number"], 1);
    assert_eq!(first["body"], "Where is order 1234?");
    let retried = handle_resolver(&registry, None, "Mutation.sendMessage", event)
        .await
        .unwrap()["data"]
        .take();
    assert_eq!(retried, first, "same clientMessageId, same message");
}

#[tokio::test]
async fn a_publish_that_fails_does_not_fail_the_committed_write() {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    // Nothing listens on port 9: every publish fails to connect.
    let credentials = Credentials::new("AKIDTEST", "secret", None, None, "test");
    let publisher = chat_functions::publish::AppSyncPublisher::new(
        "http://127.0.0.1:9/graphql",
        "us-east-1",
        SharedCredentialsProvider::new(credentials),
    )
    .unwrap();
    let event = fixture("appsync-send-message.json", &[("APP", &app)]);
    let sent = handle_resolver(&registry, Some(&publisher), "Mutation.sendMessage", event)
        .await
        .unwrap()["data"]
        .take();
    assert_eq!(sent["number"], 1);
    assert_eq!(sent["body"], "Where is order 1234?");
}

#[tokio::test]
async fn a_client_error_is_a_successful_invocation_that_carries_the_error() {
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    let answer = handle_resolver(
        &registry,
        None,
        "Mutation.createApplication",
        fixture(
            "appsync-create-application-as-customer.json",
            &[("APP", &app)],
        ),
    )
    .await
    .expect("a client error does not fail the invocation");
    assert_eq!(answer["errorType"], "Forbidden");
    assert_eq!(answer["data"], Value::Null);
    assert!(!answer["errorMessage"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_answers_every_item_in_order_with_per_item_errors() {
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    let answer = handle_resolver(
        &registry,
        None,
        "Query.chat",
        fixture("appsync-chat-batch.json", &[("APP", &app)]),
    )
    .await
    .unwrap();
    let items = answer.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["data"]["number"], 1);
    assert_eq!(items[1], json!({"data": null}), "an absent chat is null");
    assert_eq!(items[2]["data"], Value::Null);
    assert_eq!(items[2]["errorType"], "BadInput", "chat number 0");
}

#[tokio::test]
async fn an_event_for_another_field_is_refused_as_a_misconfiguration() {
    let registry = registry();
    let error = handle_resolver(
        &registry,
        None,
        "Query.chat",
        fixture("appsync-create-application.json", &[]),
    )
    .await
    .unwrap_err();
    assert_eq!(error.error_type, "Internal");
    let error = handle_resolver(&registry, None, "Query.chat", json!("nonsense"))
        .await
        .unwrap_err();
    assert_eq!(error.error_type, "BadInput");
}

#[tokio::test]
async fn the_stream_indexer_reports_exactly_the_records_it_could_not_index() {
    let index = FakeIndex::default();
    let event: StreamEvent = serde_json::from_value(fixture(
        "dynamodb-stream-batch.json",
        &[("APP", "app_fixture")],
    ))
    .unwrap();
    let response = handle_stream(&index, event).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    // 100: indexed; 200: a chat item, not a search change; 300: the index rejects it;
    // 400: a message without a version cannot be ordered.
    assert_eq!(failed, ["400", "300"]);
    assert_eq!(*index.bodies.lock().unwrap(), ["Where is order 1234?"]);
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0],
        json!({"itemIdentifier": "400"})
    );
}

#[tokio::test]
async fn the_stream_indexer_indexes_file_names_after_the_body_until_the_delete() {
    let index = FakeIndex::default();
    let event: StreamEvent = serde_json::from_value(fixture(
        "dynamodb-stream-files.json",
        &[("APP", "app_fixture")],
    ))
    .unwrap();
    // A message sent with two files, edited, then deleted.
    let response = handle_stream(&index, event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        *index.bodies.lock().unwrap(),
        [
            "Broken on arrival\ninvoice-4471.pdf\nｐａｒｃｅｌ.png",
            "Broken on arrival, photo attached\ninvoice-4471.pdf\nｐａｒｃｅｌ.png",
        ]
    );
    assert_eq!(*index.deleted.lock().unwrap(), ["app_fixture/1/2"]);
}

/// An index that keeps what it is given and rejects bodies containing "REJECT".
#[derive(Default)]
struct FakeIndex {
    bodies: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl SearchIndex for FakeIndex {
    async fn apply(
        &self,
        ops: &[IndexOp],
    ) -> chat_domain::Result<Vec<chat_domain::Result<Applied>>> {
        Ok(ops
            .iter()
            .map(|op| match op {
                IndexOp::Upsert(doc) if doc.body.contains("REJECT") => {
                    Err(DomainError::bad_input("mapper_parsing_exception"))
                }
                IndexOp::Upsert(doc) => {
                    self.bodies.lock().unwrap().push(doc.body.clone());
                    Ok(Applied::Written)
                }
                IndexOp::Delete { key, .. } => {
                    self.deleted.lock().unwrap().push(key.id());
                    Ok(Applied::Written)
                }
            })
            .collect())
    }

    async fn search(&self, _request: &SearchRequest) -> chat_domain::Result<Vec<SearchHit>> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_fails_rather_than_denies_when_it_cannot_read_the_table() {
    use chat_appsync::authorizer::{DEFAULT_TTL_SECS, authorize};
    use chat_appsync::{Authenticator, auth::mint_user_token};
    // Given an authorizer whose table cannot be read (here: it does not exist).
    let store = chat_dynamodb::DynamoStore::new(
        chat_dynamodb::moto::client(None),
        chat_dynamodb::moto::unique_table_name("missing"),
    );
    let service = ChatService::new(
        Arc::new(store),
        ServerKey::generate(),
        Arc::new(SystemClock),
    );
    let auth = Authenticator::new("adm_key_for_this_test", Arc::new(service));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let request = |token: &str| -> AppSyncLambdaAuthorizerRequest {
        serde_json::from_str(&fixture_text(
            "authorizer-request.json",
            &[("TOKEN", token)],
        ))
        .unwrap()
    };

    // A well-formed user token needs the table: the invocation fails, nobody is denied.
    let token =
        mint_user_token("sk_any", "app_x", "u1", chat_domain::Role::Agent, now + 60).unwrap();
    let fault = authorize(&auth, &request(&token), DEFAULT_TTL_SECS, now)
        .await
        .unwrap_err();
    assert!(
        !fault.to_string().contains(&token),
        "the token reached the error"
    );
    // What needs no table is answered as ever: a bad token is denied, the admin key passes.
    let denied = authorize(&auth, &request("not-a-jwt"), DEFAULT_TTL_SECS, now)
        .await
        .unwrap();
    assert!(!denied.is_authorized);
    let admin = authorize(
        &auth,
        &request("adm_key_for_this_test"),
        DEFAULT_TTL_SECS,
        now,
    )
    .await
    .unwrap();
    assert!(admin.is_authorized);
}

#[tokio::test]
async fn mark_all_read_answers_within_the_invocation_s_deadline_with_what_it_did() {
    use chat_domain::limits::MARK_ALL_READ_PAGE;
    use chat_domain::{AppToken, Caller, MessageBody, Role, UserId, UserIdentity};
    // Given an application with a page and a half of unread chats: 150 chats, each with a
    // customer's message no agent has read.
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    let token = AppToken::parse(&app).unwrap();
    let customer = Caller::User(UserIdentity {
        app: token.clone(),
        user_id: UserId::parse("cust-1").unwrap(),
        role: Role::Customer,
    });
    let service = registry.service();
    let chats = MARK_ALL_READ_PAGE + MARK_ALL_READ_PAGE / 2;
    for _ in 1..chats {
        service
            .create_chat(&customer, &token, None, None)
            .await
            .unwrap();
    }
    for chat in 1..=chats {
        let chat = chat_domain::ChatNumber::new(i64::from(chat)).unwrap();
        let body = MessageBody::parse("hello").unwrap();
        service
            .send_message(&customer, &token, chat, body, None)
            .await
            .unwrap();
    }
    let mut event = fixture("appsync-send-message.json", &[("APP", &app)]);
    event["info"]["fieldName"] = json!("markAllRead");
    event["arguments"] = json!({ "appToken": app });
    event["identity"]["resolverContext"] =
        json!({ "kind": "user", "app": app, "sub": "agent-1", "role": "AGENT" });

    // When the invocation's deadline leaves no time: the first page is marked and the
    // answer says what is left, instead of a timeout.
    let deadline = tokio::time::Instant::now();
    let partial = chat_appsync::registry::with_deadline(
        deadline,
        handle_resolver(&registry, None, "Mutation.markAllRead", event.clone()),
    )
    .await
    .unwrap()["data"]
        .take();
    assert_eq!(
        partial["unreadChats"],
        json!(chats - MARK_ALL_READ_PAGE),
        "{partial}"
    );
    // Calling again (with time) finishes.
    let done = handle_resolver(&registry, None, "Mutation.markAllRead", event)
        .await
        .unwrap()["data"]
        .take();
    assert_eq!(done["unreadChats"], json!(0), "{done}");
}

#[tokio::test]
async fn a_thousand_refused_requests_fail_no_invocation() {
    // Lambda errors per 1,000 client errors: the handler's answer to each refused request
    // (a customer creating an application: Forbidden) is a successful invocation.
    let registry = registry();
    let app = app_with_a_message(&registry).await;
    let refused = fixture(
        "appsync-create-application-as-customer.json",
        &[("APP", &app)],
    );
    let mut failed_invocations = 0;
    for _ in 0..1000 {
        match handle_resolver(
            &registry,
            None,
            "Mutation.createApplication",
            refused.clone(),
        )
        .await
        {
            Ok(answer) => assert_eq!(answer["errorType"], "Forbidden", "{answer}"),
            Err(_) => failed_invocations += 1,
        }
    }
    assert_eq!(failed_invocations, 0);
}
