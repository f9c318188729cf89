//! `chat-opensearch`: the [`SearchIndex`] port on OpenSearch, for AWS (Amazon OpenSearch
//! Service, requests signed with SigV4 by the `opensearch` crate's `aws-auth`).
//!
//! - [`requests`]: the mapping, bulk lines and the query: the one module that knows their
//!   JSON, held against golden files;
//! - [`responses`]: bulk items (written / stale / retry / failed), hits, errors;
//! - [`OpenSearchIndex`]: creates the index idempotently, applies operations in `_bulk`
//!   requests of at most [`Config::bulk_max_bytes`], with `version_type=external` (a stale
//!   change is a 409, reported as [`Applied::Stale`]), retries 429/5xx (whole requests and
//!   single items) with exponential back-off and jitter, and reports per operation.
//!
//! HTTP goes through the [`Transport`] trait: [`ClientTransport`] is the `opensearch`
//! client; tests script answers with their own implementation.

pub mod requests;
pub mod responses;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chat_domain::{
    Applied, DomainError, ErrorCode, IndexOp, Result, SearchHit, SearchIndex, SearchRequest,
    chat_key,
};
use opensearch::OpenSearch;
use opensearch::auth::Credentials;
use opensearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::http::{Method as ClientMethod, Url};
use responses::ItemOutcome;

pub use opensearch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One HTTP exchange with the cluster. `Err` is a transport failure (no answer).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        content_type: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, String>;
}

/// The `opensearch` crate's client as a [`Transport`].
pub struct ClientTransport {
    client: OpenSearch,
    timeout: Duration,
}

/// How requests authenticate.
pub enum Auth {
    None,
    /// Any of the client's credentials, e.g. `Credentials::AwsSigV4(provider, region)` for
    /// Amazon OpenSearch Service (built from an `aws_types::SdkConfig` with
    /// `Credentials::try_from(&config)`).
    Credentials(Credentials),
}

impl ClientTransport {
    /// A client of the cluster at `url`. `service` is the SigV4 service name: `es` for
    /// OpenSearch Service domains, `aoss` for Serverless.
    pub fn connect(url: &str, auth: Auth, service: &str, timeout: Duration) -> Result<Self> {
        // reqwest's rustls needs a process-wide provider: ring (a second install is a no-op).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let url = Url::parse(url).map_err(|e| DomainError::internal("opensearch: bad url", e))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(timeout)
            .service_name(service);
        if let Auth::Credentials(credentials) = auth {
            builder = builder.auth(credentials);
        }
        let transport = builder
            .build()
            .map_err(|e| DomainError::internal("opensearch: cannot build the client", e))?;
        Ok(ClientTransport {
            client: OpenSearch::new(transport),
            timeout,
        })
    }
}

#[async_trait]
impl Transport for ClientTransport {
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        content_type: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, String> {
        let method = match method {
            Method::Get => ClientMethod::Get,
            Method::Put => ClientMethod::Put,
            Method::Post => ClientMethod::Post,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let query = (!query.is_empty()).then_some(query);
        let response = self
            .client
            .send(method, path, headers, query, body, Some(self.timeout))
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status_code().as_u16();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        Ok(HttpResponse {
            status,
            body: body.to_vec(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The index name.
    pub index: String,
    pub shards: u32,
    pub replicas: u32,
    /// How soon written documents become searchable; the indexing lag on AWS. 1 s keeps
    /// search fresh; raise it for heavy ingest (fewer, larger segments).
    pub refresh_interval: String,
    /// A `_bulk` body at most this big (a single larger operation goes alone).
    pub bulk_max_bytes: usize,
    /// Tries per request or item before giving up (on 429, 5xx, no answer).
    pub max_attempts: u32,
    /// The first back-off; doubled each try, with full jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            index: "chat-messages".into(),
            shards: 3,
            replicas: 1,
            refresh_interval: "1s".into(),
            bulk_max_bytes: 5 * 1024 * 1024,
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The [`SearchIndex`] on OpenSearch.
pub struct OpenSearchIndex {
    transport: Arc<dyn Transport>,
    config: Config,
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

fn internal(context: impl Into<String>, why: impl Into<String>) -> DomainError {
    let why: String = why.into();
    DomainError::internal(context, why)
}

impl OpenSearchIndex {
    pub fn new(transport: Arc<dyn Transport>, config: Config) -> Self {
        OpenSearchIndex { transport, config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Creates the index with its settings and mapping unless it exists (idempotent; safe
    /// from many Lambdas at once). Returns whether this call created it.
    pub async fn ensure_index(&self) -> Result<bool> {
        let body = requests::create_index(
            self.config.shards,
            self.config.replicas,
            &self.config.refresh_interval,
        );
        let path = format!("/{}", self.config.index);
        let response = self
            .with_retries("create the index", || {
                self.transport.request(
                    Method::Put,
                    &path,
                    &[],
                    JSON,
                    Some(body.to_string().into_bytes()),
                )
            })
            .await?;
        match response.status {
            200..=299 => Ok(true),
            400 if responses::is_already_exists(&response.body) => Ok(false),
            status => Err(internal(
                "opensearch: cannot create the index",
                format!("{status}: {}", responses::response_error(&response.body)),
            )),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .config
            .base_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.config.max_backoff);
        let millis = cap.as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(millis / 2..=millis))
    }

    /// Sends until the answer is neither 429, 5xx nor missing, or the tries run out (then
    /// the last answer, or the transport error).
    async fn with_retries<F, Fut>(&self, what: &str, send: F) -> Result<HttpResponse>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<HttpResponse, String>>,
    {
        let mut attempt = 0;
        loop {
            let outcome = send().await;
            let retry = match &outcome {
                Ok(r) => r.status == 429 || r.status >= 500,
                Err(_) => true,
            };
            attempt += 1;
            if !retry || attempt >= self.config.max_attempts {
                return match outcome {
                    Ok(response) => Ok(response),
                    Err(e) if attempt > 1 => Err(internal(
                        format!("opensearch: {what} failed after {attempt} tries"),
                        e,
                    )),
                    Err(e) => Err(internal(format!("opensearch: {what} failed"), e)),
                };
            }
            let wait = self.backoff(attempt - 1);
            match &outcome {
                Ok(r) => tracing::warn!(status = r.status, ?wait, what, "opensearch: retrying"),
                Err(e) => tracing::warn!(error = %e, ?wait, what, "opensearch: retrying"),
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Groups operation indexes into `_bulk` bodies of at most `bulk_max_bytes`.
    fn chunks(&self, lines: &[String], pending: &[usize]) -> Vec<Vec<usize>> {
        let mut chunks = Vec::new();
        let mut current = Vec::new();
        let mut bytes = 0;
        for &i in pending {
            let len = lines[i].len();
            if !current.is_empty() && bytes + len > self.config.bulk_max_bytes {
                chunks.push(std::mem::take(&mut current));
                bytes = 0;
            }
            current.push(i);
            bytes += len;
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }

    async fn send_bulk(&self, lines: &[String], chunk: &[usize]) -> Result<Vec<ItemOutcome>> {
        let mut body = String::with_capacity(chunk.iter().map(|&i| lines[i].len()).sum());
        for &i in chunk {
            body.push_str(&lines[i]);
        }
        let body = body.into_bytes();
        let response = self
            .with_retries("bulk", || {
                self.transport
                    .request(Method::Post, "/_bulk", &[], NDJSON, Some(body.clone()))
            })
            .await?;
        match response.status {
            200..=299 => responses::bulk_outcomes(&response.body, chunk.len())
                .map_err(|e| internal("opensearch: bulk", e)),
            429 => Err(DomainError::Throttled {
                retry_after_ms: self.config.max_backoff.as_millis() as u64,
            }),
            status => Err(internal(
                "opensearch: bulk refused",
                format!("{status}: {}", responses::response_error(&response.body)),
            )),
        }
    }
}

#[async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn apply(&self, ops: &[IndexOp]) -> Result<Vec<Result<Applied>>> {
        let lines: Vec<String> = ops
            .iter()
            .map(|op| requests::bulk_lines(&self.config.index, op))
            .collect();
        let mut outcomes: Vec<Option<Result<Applied>>> = (0..ops.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..ops.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let mut retry = Vec::new();
            for chunk in self.chunks(&lines, &pending) {
                let items = match self.send_bulk(&lines, &chunk).await {
                    Ok(items) => items,
                    Err(e) => {
                        // The request itself failed after its retries: every item of it.
                        let why = e.to_string();
                        let code = e.code();
                        for &i in &chunk {
                            outcomes[i] = Some(Err(if code == ErrorCode::Throttled {
                                DomainError::Throttled {
                                    retry_after_ms: self.config.max_backoff.as_millis() as u64,
                                }
                            } else {
                                internal("opensearch: bulk failed", why.clone())
                            }));
                        }
                        continue;
                    }
                };
                for (&i, item) in chunk.iter().zip(items) {
                    outcomes[i] = Some(match item {
                        ItemOutcome::Written => Ok(Applied::Written),
                        ItemOutcome::Stale => Ok(Applied::Stale),
                        ItemOutcome::Retry { status, reason } => {
                            if attempt < self.config.max_attempts {
                                retry.push(i);
                            }
                            Err(if status == 429 {
                                DomainError::Throttled {
                                    retry_after_ms: self.config.max_backoff.as_millis() as u64,
                                }
                            } else {
                                internal(
                                    "opensearch: bulk item failed",
                                    format!("{status}: {reason}"),
                                )
                            })
                        }
                        ItemOutcome::Failed { status, reason } => Err(internal(
                            format!("opensearch: document {} refused", ops[i].key().id()),
                            format!("{status}: {reason}"),
                        )),
                    });
                }
            }
            if !retry.is_empty() {
                let wait = self.backoff(attempt - 1);
                tracing::warn!(
                    items = retry.len(),
                    ?wait,
                    "opensearch: retrying bulk items"
                );
                tokio::time::sleep(wait).await;
            }
            pending = retry;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(internal("opensearch: bulk", "no outcome"))))
            .collect())
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let body = requests::search(request).to_string().into_bytes();
        let path = format!("/{}/_search", self.config.index);
        let routing = chat_key(&request.app, request.chat);
        let query = [("routing", routing.as_str())];
        let response = self
            .with_retries("search", || {
                self.transport
                    .request(Method::Post, &path, &query, JSON, Some(body.clone()))
            })
            .await?;
        match response.status {
            200..=299 => responses::search_hits(&response.body)
                .map_err(|e| internal("opensearch: search", e)),
            // Nothing was ever indexed.
            404 => Ok(Vec::new()),
            429 => Err(DomainError::Throttled {
                retry_after_ms: self.config.max_backoff.as_millis() as u64,
            }),
            status => Err(internal(
                "opensearch: search failed",
                format!("{status}: {}", responses::response_error(&response.body)),
            )),
        }
    }
}
