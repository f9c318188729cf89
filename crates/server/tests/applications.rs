//! Applications: created by the admin, identified by a generated token, secret shown once.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn create_returns_token_and_secret_once_and_update_renames() {
    let server = TestServer::start();
    let data = server
        .ok(
            ADMIN_KEY,
            "mutation { createApplication(name: \"  Acme Support \") { application { token name chatsCount createdAt updatedAt } secret } }",
            json!({}),
        )
        .await;
    let created = &data["createApplication"];
    let token = created["application"]["token"].as_str().unwrap();
    assert!(token.starts_with("app_"), "{token}");
    assert_eq!(created["application"]["name"], "Acme Support");
    assert_eq!(created["application"]["chatsCount"], 0);
    assert!(created["secret"].as_str().unwrap().starts_with("sk_"));
    assert!(
        created["application"]["createdAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let renamed = server
        .ok(
            ADMIN_KEY,
            "mutation($t: ID!) { updateApplication(token: $t, name: \"Acme\") { token name } }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(
        renamed["updateApplication"],
        json!({ "token": token, "name": "Acme" })
    );

    // Application has no secret field at all: it cannot be queried.
    let (_, body) = server
        .post(
            Some(ADMIN_KEY),
            "query($t: ID!) { application(token: $t) { secret } }",
            json!({ "t": token }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BadInput");
}

#[tokio::test]
async fn two_applications_get_different_tokens_and_secrets() {
    let server = TestServer::start();
    let a = TestApp::create(&server, "A").await;
    let b = TestApp::create(&server, "B").await;
    assert_ne!(a.token, b.token);
    assert_ne!(a.secret, b.secret);
}

#[tokio::test]
async fn agents_read_their_application_customers_may_not() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let query = "query($t: ID!) { application(token: $t) { name chatsCount } }";
    let data = server
        .ok(&app.agent("a1"), query, json!({ "t": app.token }))
        .await;
    assert_eq!(data["application"]["name"], "Acme");
    let code = server
        .error_code(Some(&app.customer("c1")), query, json!({ "t": app.token }))
        .await;
    assert_eq!(code, "Forbidden");
}

#[tokio::test]
async fn bad_names_and_unknown_tokens() {
    let server = TestServer::start();
    let create = "mutation($n: String!) { createApplication(name: $n) { secret } }";
    for bad in ["", "   ", &"x".repeat(101)] {
        assert_eq!(
            server
                .error_code(Some(ADMIN_KEY), create, json!({ "n": bad }))
                .await,
            "BadInput"
        );
    }
    let update = "mutation($t: ID!) { updateApplication(token: $t, name: \"X\") { name } }";
    let code = server
        .error_code(Some(ADMIN_KEY), update, json!({ "t": "app_doesnotexist" }))
        .await;
    assert_eq!(code, "NotFound");
    let data = server
        .ok(
            ADMIN_KEY,
            "query { application(token: \"app_doesnotexist\") { name } }",
            json!({}),
        )
        .await;
    assert!(data["application"].is_null());
}
