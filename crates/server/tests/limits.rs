//! Bad input answers BadInput with a clear message: never a panic, a 500 or stored data.

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn message_body_limits() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    for bad in ["", "   \n ", &"a".repeat(8 * 1024 + 1), &"é".repeat(4097)] {
        let code = server
            .error_code(
                Some(&c1),
                SEND,
                json!({ "a": app.token, "c": chat, "b": bad }),
            )
            .await;
        assert_eq!(code, "BadInput");
    }
    let max = "a".repeat(8 * 1024);
    assert_eq!(send(&server, &app, &c1, chat, &max).await["number"], 1);
    let data = server
        .ok(&c1, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(
        data["chat"]["messagesCount"], 1,
        "rejected sends stored nothing"
    );
}

#[tokio::test]
async fn numbers_and_limits_out_of_range() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    for (after, before, limit) in [
        (json!(-1), json!(null), json!(null)),
        (json!(null), json!(0), json!(null)),
        (json!(null), json!(null), json!(0)),
        (json!(null), json!(null), json!(101)),
    ] {
        let vars =
            json!({ "a": app.token, "c": chat, "after": after, "before": before, "l": limit });
        assert_eq!(
            server.error_code(Some(&c1), MESSAGES, vars).await,
            "BadInput"
        );
    }
    for number in [0, -5] {
        assert_eq!(
            server
                .error_code(Some(&c1), CHAT, json!({ "a": app.token, "n": number }))
                .await,
            "BadInput"
        );
    }
    // Beyond GraphQL's 32-bit Int: refused by validation.
    let (status, body) = server
        .post(
            Some(&c1),
            CHAT,
            json!({ "a": app.token, "n": 4_294_967_296i64 }),
        )
        .await;
    assert!(status < 500);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BadInput",
        "{body}"
    );
    let (_, body) = server
        .post(
            Some(&c1),
            "query { chats(appToken: \"x\", status: CLOSED) { nextToken } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BadInput",
        "unknown enum value: {body}"
    );
}

#[tokio::test]
async fn identifiers_and_subjects_are_checked() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let bad_customer = server
        .error_code(
            Some(&agent),
            CREATE_CHAT,
            json!({ "a": app.token, "c": "has space" }),
        )
        .await;
    assert_eq!(bad_customer, "BadInput");
    let long_subject = server
        .error_code(
            Some(&agent),
            CREATE_CHAT,
            json!({ "a": app.token, "c": "c1", "s": "s".repeat(201) }),
        )
        .await;
    assert_eq!(long_subject, "BadInput");
    let chat = server
        .ok(&agent, CREATE_CHAT, json!({ "a": app.token, "c": "c1" }))
        .await["createChat"]["number"]
        .as_i64()
        .unwrap();
    let long_key = server
        .error_code(
            Some(&agent),
            SEND,
            json!({ "a": app.token, "c": chat, "b": "x", "k": "k".repeat(65) }),
        )
        .await;
    assert_eq!(long_key, "BadInput");
}

#[tokio::test]
async fn malformed_requests_get_json_errors_not_500() {
    let server = TestServer::start();
    let url = format!("{}/graphql", server.url);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{{{".to_vec()),
        ("batch", br#"[{"query":"{ __typename }"}]"#.to_vec()),
        ("syntax", br#"{"query":"query {"}"#.to_vec()),
        (
            "too big",
            format!(r#"{{"query":"{}"}}"#, "a".repeat(200 * 1024)).into_bytes(),
        ),
    ];
    for (name, body) in cases {
        let response = server
            .client()
            .post(&url)
            .header("Authorization", ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status < 500, "{name}: {status}");
        if name != "too big" {
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "BadInput",
                "{name}: {body}"
            );
        } else {
            assert_eq!(status, 413);
        }
    }
}

#[tokio::test]
async fn health_and_graphiql_are_served() {
    let server = TestServer::start();
    let health: serde_json::Value = server
        .client()
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let page = server
        .client()
        .get(format!("{}/graphql", server.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.to_lowercase().contains("graphiql"));
    // Introspection works without a token (GraphiQL needs it); data does not.
    let (_, body) = server
        .post(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}
