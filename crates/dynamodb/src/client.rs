//! Building the SDK client (once per process; it is cheap to clone and pools connections),
//! and creating the table from [`TableDefinition`].

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::TableStatus;
use aws_smithy_http_client::tls;

use crate::error::StoreError;
use crate::requests::RequestCounter;
use crate::table::TableDefinition;

/// HTTPS (and plain HTTP, for emulators) over hyper 1 with rustls on ring.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// A client configured from the standard AWS environment: region and credentials from the
/// environment variables, the shared config files, web identity, or the ECS / EC2
/// metadata endpoints, as every AWS SDK does. `endpoint` overrides the service URL (a
/// local emulator); `counter`, when given, counts every request.
/// Without an `endpoint`, `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL` apply as usual.
/// Fails when no region is configured (any region works with a local endpoint).
pub async fn client_from_environment(
    endpoint: Option<&str>,
    counter: Option<RequestCounter>,
) -> Result<Client, StoreError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(StoreError::Setup(
            "no AWS region configured: set AWS_REGION (or a profile's region)".into(),
        ));
    }
    let mut config = aws_sdk_dynamodb::config::Builder::from(&shared);
    if let Some(counter) = counter {
        config = config.interceptor(counter);
    }
    Ok(Client::from_conf(config.build()))
}

/// Whether `table` exists (in any state).
pub async fn table_exists(client: &Client, table: &str) -> Result<bool, StoreError> {
    Ok(table_status(client, table).await?.is_some())
}

/// A client for an emulator at `endpoint`: fixed dummy credentials and region, nothing
/// read from the environment.
pub fn emulator_client(endpoint: &str, counter: Option<RequestCounter>) -> Client {
    let mut config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "emulator", "emulator", None, None, "emulator",
        ));
    if let Some(counter) = counter {
        config = config.interceptor(counter);
    }
    Client::from_conf(config.build())
}

/// How long [`create_table_if_missing`] waits for a new table to become ACTIVE (on AWS a
/// table with two GSIs typically takes 10 to 30 s).
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Creates `table` from [`TableDefinition::current`] unless it exists, and waits until it
/// is ACTIVE. `Ok(true)` when this call created it. An existing table is not compared
/// with the definition.
pub async fn create_table_if_missing(client: &Client, table: &str) -> Result<bool, StoreError> {
    if table_status(client, table).await?.is_some() {
        wait_until_active(client, table).await?;
        return Ok(false);
    }
    let created = match TableDefinition::current()
        .create_table_request(client, table)?
        .send()
        .await
    {
        Ok(_) => true,
        // Someone else is creating it at the same moment.
        Err(e) if e.code() == Some("ResourceInUseException") => false,
        Err(e) => return Err(StoreError::request("CreateTable", e)),
    };
    wait_until_active(client, table).await?;
    if created {
        enable_time_to_live(client, table).await?;
    }
    Ok(created)
}

/// CreateTable cannot turn on time to live: one UpdateTimeToLive on the definition's
/// attribute, once the table is ACTIVE.
async fn enable_time_to_live(client: &Client, table: &str) -> Result<(), StoreError> {
    let specification = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
        .attribute_name(TableDefinition::current().time_to_live_attribute)
        .enabled(true)
        .build()
        .map_err(|e| StoreError::Setup(format!("invalid time to live: {e}")))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(specification)
        .send()
        .await
        .map_err(|e| StoreError::request("UpdateTimeToLive", e))?;
    Ok(())
}

async fn table_status(client: &Client, table: &str) -> Result<Option<TableStatus>, StoreError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(Some(
            out.table()
                .and_then(|t| t.table_status().cloned())
                .unwrap_or(TableStatus::Creating),
        )),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(StoreError::request("DescribeTable", e)),
    }
}

async fn wait_until_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        match table_status(client, table).await? {
            Some(TableStatus::Active) => return Ok(()),
            status if tokio::time::Instant::now() >= deadline => {
                return Err(StoreError::Setup(format!(
                    "table {table} is not ACTIVE after {TABLE_ACTIVE_TIMEOUT:?} ({status:?})"
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
