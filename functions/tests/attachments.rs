//! Attachments through the resolvers the Lambdas run, over DynamoDB and S3 (moto's server
//! mode): createUpload's presigned PUT taken by a real HTTP client, sendMessage with
//! `attachmentIds`, and the message read back with a download URL that serves the bytes.

mod common;

use std::sync::Arc;

use chat_appsync::Registry;
use chat_domain::attachments::Attachments;
use chat_domain::{ChatService, ServerKey, SystemClock};
use chat_functions::handle_resolver;
use common::*;
use serde_json::{Value, json};

async fn registry() -> Registry {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    // The functions' own S3 configuration, on moto (which wants path-style addresses).
    let s3 = aws_sdk_s3::Client::from_conf(
        chat_s3::config(&chat_dynamodb::moto::sdk_config())
            .to_builder()
            .force_path_style(true)
            .build(),
    );
    let bucket = chat_dynamodb::moto::unique_table_name("fn-att").to_ascii_lowercase();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let store = Arc::new(store);
    Registry::new(Arc::new(
        ChatService::new(store.clone(), ServerKey::generate(), Arc::new(SystemClock))
            .with_attachments(Attachments {
                uploads: store,
                files: Arc::new(chat_s3::S3Files::new(s3, bucket)),
            }),
    ))
}

/// The customer's event for `Type.field` with these arguments (the sendMessage fixture's
/// identity and request).
fn event(app: &str, type_name: &str, field: &str, arguments: Value) -> Value {
    let mut event = fixture("appsync-send-message.json", &[("APP", app)]);
    event["arguments"] = arguments;
    event["info"]["fieldName"] = json!(field);
    event["info"]["parentTypeName"] = json!(type_name);
    event
}

async fn data(registry: &Registry, field: &str, event: Value) -> Value {
    let mut answer = handle_resolver(registry, None, field, event).await.unwrap();
    assert!(answer.get("errorType").is_none(), "{field}: {answer}");
    answer["data"].take()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_through_the_resolvers_is_attached_and_served() {
    let registry = registry().await;
    let app = data(
        &registry,
        "Mutation.createApplication",
        fixture("appsync-create-application.json", &[]),
    )
    .await["application"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    data(
        &registry,
        "Mutation.createChat",
        fixture("appsync-create-chat.json", &[("APP", &app)]),
    )
    .await;
    let bytes = b"order,total\n1234,19.99\n".to_vec();
    let upload = data(
        &registry,
        "Mutation.createUpload",
        event(
            &app,
            "Mutation",
            "createUpload",
            json!({"appToken": app, "chatNumber": 1, "fileName": "order.csv",
                   "contentType": "text/csv", "size": bytes.len()}),
        ),
    )
    .await;

    // The client's PUT, as the answer says.
    let http = reqwest::Client::new();
    let mut put = http
        .request(
            upload["method"].as_str().unwrap().parse().unwrap(),
            upload["url"].as_str().unwrap(),
        )
        .body(bytes.clone());
    for header in upload["headers"].as_array().unwrap() {
        put = put.header(
            header["name"].as_str().unwrap(),
            header["value"].as_str().unwrap(),
        );
    }
    assert!(put.send().await.unwrap().status().is_success());

    let sent = data(
        &registry,
        "Mutation.sendMessage",
        event(
            &app,
            "Mutation",
            "sendMessage",
            json!({"appToken": app, "chatNumber": 1, "attachmentIds": [upload["id"]]}),
        ),
    )
    .await;
    assert_eq!(sent["body"], "");
    assert_eq!(sent["attachments"][0]["name"], "order.csv");
    assert_eq!(sent["attachments"][0]["size"], bytes.len());

    let read = data(
        &registry,
        "Query.message",
        event(
            &app,
            "Query",
            "message",
            json!({"appToken": app, "chatNumber": 1, "number": sent["number"]}),
        ),
    )
    .await;
    let attachment = &read["attachments"][0];
    assert_eq!(attachment["contentType"], "text/csv");
    assert!(attachment["width"].is_null());
    let got = http
        .get(attachment["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(
        got.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"order.csv\"")
    );
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);
}
