//! AppSync's rule is implemented from the schema, not per field: a subscription that exists
//! only in this test's schema fires without any new server code.

use crate::common;

use chat_appsync::Authenticator;
use chat_domain::Role;
use chat_server::realtime::authority::AUTHORITY_RECHECK;
use chat_server::schema;
use common::ws::WsClient;
use serde_json::json;

const ADMIN: &str = "schema-driven-admin-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_added_to_the_schema_fires_without_new_code() {
    // Given the real schema plus a subscription filtered on fields no other one uses,
    let sdl = schema::SCHEMA_SDL.replace(
        "type Subscription {",
        "type Subscription {\n  onMessageFrom(appToken: ID!, senderId: ID!): Message @aws_subscribe(mutations: [\"publishMessageSent\", \"publishMessageChanged\"])",
    );
    assert_ne!(sdl, schema::SCHEMA_SDL);
    let registry = common::memory_registry();
    let auth = Authenticator::new(ADMIN, registry.service().clone());
    let api = schema::build_from(&sdl, registry).unwrap_or_else(|e| panic!("{e}"));
    let url = common::serve_in_process(api, auth, AUTHORITY_RECHECK).await;

    let client = common::http_client();
    let common::TestApp { token: app, secret } =
        common::TestApp::create_at(&client, &url, ADMIN, "S").await;
    let exp = common::jsonwebtoken_exp(600);
    let token = |sub: &str, role| {
        chat_appsync::auth::mint_user_token(&secret, &app, sub, role, exp).unwrap()
    };
    let (agent, c1) = (token("a1", Role::Agent), token("c1", Role::Customer));
    common::graphql_ok(
        &client,
        &url,
        &c1,
        "mutation($a: ID!) { createChat(appToken: $a) { number } }",
        json!({ "a": app }),
    )
    .await;

    // when an agent subscribes to what customer c1 sends,
    let mut ws = WsClient::connect(&url, &agent).await;
    ws.subscribe("1", "subscription($a: ID!, $s: ID!) { onMessageFrom(appToken: $a, senderId: $s) { number body senderId } }", json!({ "a": app, "s": "c1" })).await;
    ws.synced().await;
    let send = "mutation($a: ID!, $b: String!) { sendMessage(appToken: $a, chatNumber: 1, body: $b) { appToken senderId number body } }";
    common::graphql_ok(
        &client,
        &url,
        &agent,
        send,
        json!({ "a": app, "b": "from the agent" }),
    )
    .await;
    common::graphql_ok(
        &client,
        &url,
        &c1,
        send,
        json!({ "a": app, "b": "from c1" }),
    )
    .await;

    // then only c1's message arrives.
    let event = ws.next_data("1").await;
    assert_eq!(
        event["onMessageFrom"],
        json!({ "number": 2, "body": "from c1", "senderId": "c1" })
    );
    assert!(
        ws.next_within(std::time::Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[test]
fn a_subscription_naming_an_unknown_mutation_is_refused_at_start_up() {
    let sdl = schema::SCHEMA_SDL.replace(
        "type Subscription {",
        "type Subscription {\n  onNothing(appToken: ID!): Message @aws_subscribe(mutations: [\"noSuchMutation\"])",
    );
    let Err(error) = schema::build_from(&sdl, common::memory_registry()) else {
        panic!("built")
    };
    assert!(
        error.to_string().contains("Subscription.onNothing"),
        "{error}"
    );
}

#[test]
fn a_subscription_listing_a_client_mutation_is_refused_at_start_up() {
    // A client shapes its mutation's answer (aliases, fragments): subscriptions listen only
    // to the server's publish mutations, and a schema that lists another does not start.
    let sdl = schema::SCHEMA_SDL.replace(
        "@aws_subscribe(mutations: [\"publishChat\"])",
        "@aws_subscribe(mutations: [\"publishChat\", \"updateChat\"])",
    );
    assert_ne!(sdl, schema::SCHEMA_SDL);
    let Err(error) = schema::build_from(&sdl, common::memory_registry()) else {
        panic!("built")
    };
    assert!(
        matches!(&error, schema::SchemaError::ClientMutationPublishes(field, mutation)
            if field == "Subscription.onChat" && mutation == "updateChat"),
        "{error}"
    );
}
