//! `chat-deploy search` finds a domain's endpoint by name through the OpenSearch Service
//! configuration API: against moto's server (the same emulator as the table's tests).

use chat_deploy::search::describe;

fn client() -> aws_sdk_opensearch::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = aws_sdk_opensearch::Config::builder()
        .behavior_version(aws_sdk_opensearch::config::BehaviorVersion::latest())
        .region(aws_sdk_opensearch::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_opensearch::config::Credentials::new(
            "emulator", "emulator", None, None, "test",
        ))
        .endpoint_url(chat_dynamodb::moto::endpoint())
        .http_client(chat_dynamodb::http_client())
        .build();
    aws_sdk_opensearch::Client::from_conf(config)
}

#[tokio::test]
async fn a_domain_is_found_by_name_with_its_endpoint_and_an_unknown_one_is_an_error() {
    let client = client();
    let name = format!("chat-{}", std::process::id() % 100_000);
    client
        .create_domain()
        .domain_name(&name)
        .engine_version("OpenSearch_2.19")
        .send()
        .await
        .unwrap();
    let state = describe(&client, &name).await.unwrap();
    assert!(
        state.endpoint.starts_with("https://") && state.endpoint.contains(&name),
        "{state:?}"
    );
    assert!(
        !state.busy,
        "a created domain on the emulator is settled: {state:?}"
    );

    let error = describe(&client, "chat-nowhere").await.unwrap_err();
    assert!(error.contains("chat-nowhere"), "{error}");
}
