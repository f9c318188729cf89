//! `POST /graphql` as AppSync answers it, for clients written against AppSync (Amplify):
//! every error carries a top-level `errorType` next to GraphQL's `extensions.code`; the
//! request Amplify sends works as it is; a web app on another origin may call.

use crate::common;

use common::*;
use serde_json::{Value, json};

/// Every error of a response has `errorType` equal to its `extensions.code`; returns them.
fn error_types(body: &Value) -> Vec<String> {
    let errors = body["errors"].as_array().expect("errors");
    errors
        .iter()
        .map(|error| {
            assert!(error["message"].is_string(), "{error}");
            assert_eq!(error["errorType"], error["extensions"]["code"], "{error}");
            error["errorType"].as_str().expect("errorType").to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_carries_a_top_level_error_type() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (owner, stranger) = (app.customer("owner"), app.customer("stranger"));
    let chat = open_chat(&server, &app, &owner).await;

    // A resolver's refusal (the registry's NotFound).
    let (status, body) = server
        .post(
            Some(&stranger),
            MESSAGES,
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(error_types(&body), ["NotFound"]);

    // Forbidden, BadInput from the domain's limits, Unauthorized without a token.
    let application = "query($a: ID!) { application(token: $a) { name } }";
    let (_, body) = server
        .post(Some(&owner), application, json!({ "a": app.token }))
        .await;
    assert_eq!(error_types(&body), ["Forbidden"]);
    let (_, body) = server
        .post(
            Some(&owner),
            SEND,
            json!({ "a": app.token, "c": chat, "b": "   " }),
        )
        .await;
    assert_eq!(error_types(&body), ["BadInput"]);
    let (_, body) = server
        .post(None, MESSAGES, json!({ "a": app.token, "c": chat }))
        .await;
    assert_eq!(error_types(&body), ["Unauthorized"]);

    // Parse and validation errors, which no resolver saw.
    let (_, body) = server.post(Some(&owner), "{ nope", json!({})).await;
    assert_eq!(error_types(&body), ["BadInput"]);
    let (_, body) = server.post(Some(&owner), "{ nope }", json!({})).await;
    assert_eq!(error_types(&body), ["BadInput"]);

    // Errors answered before execution: an invalid token, a batch.
    let (status, body) = server.post(Some("garbage"), MESSAGES, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(error_types(&body), ["Unauthorized"]);
    let response = server
        .client()
        .post(format!("{}/graphql", server.url))
        .header("Authorization", &owner)
        .header("Content-Type", "application/json")
        .body(r#"[{"query":"{ __typename }"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        error_types(&response.json::<Value>().await.unwrap()),
        ["BadInput"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_amplify_sends_works_and_other_origins_may_send_it() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let owner = app.customer("owner");

    // A browser's preflight from the app's own origin.
    let preflight = server
        .client()
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", server.url))
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-amz-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = |name: &str| {
        preflight
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(allowed("access-control-allow-origin"), "*");
    assert!(allowed("access-control-allow-methods").contains("post"));
    assert!(!allowed("access-control-allow-headers").is_empty());

    // Amplify's request: its content type and user agent, `variables: null` when there are
    // none.
    let response = server
        .client()
        .post(format!("{}/graphql", server.url))
        .header("Origin", "http://localhost:5173")
        .header("Authorization", &owner)
        .header("Content-Type", "application/json; charset=UTF-8")
        .header("x-amz-user-agent", "aws-amplify/6.22.1 api/1 framework/0")
        .body(
            json!({
                "query": format!("mutation {{ createChat(appToken: \"{}\") {{ number }} }}", app.token),
                "variables": null,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "createChat": { "number": 1 } } }));
}
