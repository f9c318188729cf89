//! Applications: created by the admin, identified by a generated token, secret shown once.

use crate::common;

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

const ROTATE: &str = "mutation($t: ID!, $g: Int) { rotateApplicationSecret(token: $t, graceSeconds: $g) { application { token previousSecretExpiresAt } secret } }";
const WHOAMI: &str = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread } }";

/// Whether `token` works on the server: the code of its refusal, or None.
async fn refusal(server: &TestServer, app: &TestApp, token: &str) -> Option<String> {
    let (_, body) = server
        .post(Some(token), WHOAMI, json!({ "a": app.token }))
        .await;
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn rotation_keeps_old_tokens_for_the_grace_period_and_never_logs_secrets() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let server = TestServer::start_logging_to(log.path(), "debug");
    let app = TestApp::create(&server, "Rotating").await;
    let before = app.agent("a1");
    assert_eq!(refusal(&server, &app, &before).await, None);

    // With a grace period: a new secret; tokens signed with either verify.
    let data = server
        .ok(ADMIN_KEY, ROTATE, json!({ "t": app.token, "g": 3600 }))
        .await;
    let rotated = &data["rotateApplicationSecret"];
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, app.secret);
    assert!(new_secret.starts_with("sk_"));
    assert!(rotated["application"]["previousSecretExpiresAt"].is_string());
    let renewed = TestApp {
        token: app.token.clone(),
        secret: new_secret.clone(),
    };
    let after = renewed.agent("a1");
    assert_eq!(refusal(&server, &app, &before).await, None);
    assert_eq!(refusal(&server, &app, &after).await, None);

    // Without one: the replaced secret's tokens stop at once (this process forgets its
    // cached generations on rotation), the newest secret's work.
    let data = server
        .ok(ADMIN_KEY, ROTATE, json!({ "t": app.token, "g": 0 }))
        .await;
    let newest = TestApp {
        token: app.token.clone(),
        secret: data["rotateApplicationSecret"]["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    for stale in [&before, &after] {
        assert_eq!(
            refusal(&server, &app, stale).await.as_deref(),
            Some("Unauthorized")
        );
    }
    assert_eq!(refusal(&server, &app, &newest.agent("a1")).await, None);

    // The application as queried never carries a secret: the type has no such field.
    let (_, body) = server
        .post(
            Some(ADMIN_KEY),
            "query($t: ID!) { application(token: $t) { secret } }",
            json!({ "t": app.token }),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BadInput");

    // Only the admin rotates; bad arguments are BadInput; an unknown app NotFound.
    let agent = newest.agent("a1");
    let cases = [
        (Some(agent.as_str()), json!({ "t": app.token }), "Forbidden"),
        (
            Some(ADMIN_KEY),
            json!({ "t": app.token, "g": -1 }),
            "BadInput",
        ),
        (
            Some(ADMIN_KEY),
            json!({ "t": app.token, "g": 604_801 }),
            "BadInput",
        ),
        (Some(ADMIN_KEY), json!({ "t": "app_nope" }), "NotFound"),
    ];
    for (token, variables, code) in cases {
        assert_eq!(
            server.error_code(token, ROTATE, variables.clone()).await,
            code,
            "{variables}"
        );
    }

    // Nothing the server logged (at debug) holds a secret or a user token.
    drop(server);
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(logged.contains("application secret rotated"), "{logged}");
    for secret in [&app.secret, &new_secret, &newest.secret, &before, &after] {
        assert!(!logged.contains(secret.as_str()), "a secret was logged");
    }
    assert!(
        !logged.contains("sk_"),
        "something secret-shaped was logged"
    );
}
