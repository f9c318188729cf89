//! Publishing the server's real-time events on AppSync.
//!
//! After a committed write, a resolver function calls the write's publish mutation
//! (`chat_appsync::publish`) on the API itself, signed with the function's own IAM role
//! (SigV4, service `appsync`), with the fixed document of `chat_appsync::publish::document`.
//! AppSync runs its local (NONE) resolver, which returns the event, and delivers it to the
//! subscriptions that list that mutation. The function's role may call only the publish
//! mutations its field declares (template.yaml).
//!
//! A publish that fails is logged and does not fail the mutation: the write is committed and
//! the client's answer is right. A subscriber that missed the event catches up as the README's
//! client recipe says (message numbers have no gaps; fetch `messages(after: lastSeen)`).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use chat_appsync::Publication;
use serde_json::{Value, json};

/// How long one publish may take before it is given up (the functions' timeout is 10 s).
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no document for publish mutation {0}")]
    UnknownMutation(String),
    #[error("AWS credentials: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("signing the request: {0}")]
    Signing(String),
    #[error("AppSync request: {0}")]
    Http(#[from] reqwest::Error),
    #[error("AppSync answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("AppSync refused the publish: {0}")]
    GraphQl(String),
}

/// Calls the publish mutations of one AppSync API with the function's IAM credentials.
#[derive(Debug, Clone)]
pub struct AppSyncPublisher {
    http: reqwest::Client,
    url: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl AppSyncPublisher {
    /// `url`: the API's GraphQL endpoint (`https://....appsync-api.REGION.amazonaws.com/graphql`).
    pub fn new(
        url: impl Into<String>,
        region: impl Into<String>,
        credentials: SharedCredentialsProvider,
    ) -> Result<AppSyncPublisher, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(PUBLISH_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(AppSyncPublisher {
            http,
            url: url.into(),
            region: region.into(),
            credentials,
        })
    }

    /// Publishes one event; `Ok` once AppSync accepted it.
    pub async fn publish(&self, publication: &Publication) -> Result<(), PublishError> {
        let document = chat_appsync::publish::document(publication.mutation)
            .ok_or_else(|| PublishError::UnknownMutation(publication.mutation.to_owned()))?;
        let body = serde_json::to_vec(&json!({
            "query": document,
            "variables": { "event": publication.event },
        }))
        .map_err(|e| PublishError::Signing(e.to_string()))?;
        let identity = self
            .credentials
            .provide_credentials()
            .await
            .map_err(PublishError::Credentials)?
            .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("appsync")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| PublishError::Signing(e.to_string()))?
            .into();
        let headers = [("content-type", "application/json")];
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| PublishError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| PublishError::Signing(e.to_string()))?
            .into_parts();
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(PublishError::Status {
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
            });
        }
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match answer.get("errors") {
            Some(Value::Array(errors)) if !errors.is_empty() => Err(PublishError::GraphQl(
                errors
                    .iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["errorType"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
            _ => Ok(()),
        }
    }

    /// Publishes every event, logging (never returning) failures: the write they describe
    /// is committed either way. The event's content (message bodies) is not logged.
    pub async fn publish_all(&self, publications: &[Publication]) {
        let results = futures::future::join_all(publications.iter().map(|p| self.publish(p))).await;
        for (publication, result) in publications.iter().zip(results) {
            if let Err(error) = result {
                crate::log_error(
                    &format!("event not published through {}", publication.mutation),
                    &error,
                );
            }
        }
    }
}
