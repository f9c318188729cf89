//! `chat-opensearch`: the [`SearchIndex`] port on OpenSearch, for AWS (Amazon OpenSearch
//! Service, requests signed with SigV4 by the `opensearch` crate's `aws-auth`).
//!
//! - [`requests`]: the mapping, bulk lines and the query: the one module that knows their
//!   JSON, held against golden files;
//! - [`responses`]: bulk items (written / stale / retry / failed), hits, errors;
//! - [`OpenSearchIndex`]: ensures the index (an index template for `<alias>-v*`, then the
//!   alias, creating `<alias>-v<LAYOUT>` behind it if there is none) and refuses to write
//!   before that succeeded; applies operations through the alias in `_bulk` requests of at
//!   most [`Config::bulk_max_bytes`] (`require_alias`: a bulk never creates an index), with
//!   `version_type=external` (a stale change is a 409, reported as [`Applied::Stale`]),
//!   retries 429/5xx (whole requests and single items) with exponential back-off and
//!   jitter, and reports per operation; [`OpenSearchIndex::reindex`] rebuilds into a new
//!   index and swaps the alias.
//!
//! HTTP goes through the [`Transport`] trait: [`ClientTransport`] is the `opensearch`
//! client; tests script answers with their own implementation.

pub mod requests;
pub mod responses;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chat_domain::{
    Applied, DomainError, ErrorCode, IndexOp, Result, SearchHit, SearchIndex, SearchRequest,
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
    /// The alias that searches and writes go through. The indexes behind it are named
    /// `<alias>-v<LAYOUT>` (the first of a layout) and `<alias>-v<LAYOUT>-<time>` (rebuilt
    /// by [`OpenSearchIndex::reindex`]).
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
    /// Whether [`OpenSearchIndex::ensure_index`] succeeded: until then nothing is written.
    ensured: AtomicBool,
    /// One ensure at a time per process.
    ensuring: tokio::sync::Mutex<()>,
}

/// What the alias name stands for in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasState {
    /// Neither an alias nor an index: nothing was indexed yet.
    Missing,
    /// The alias, and the indexes it points to.
    Alias(Vec<String>),
    /// A plain index has the alias's name (the layout from before versioned indexes): it
    /// is in the way of the alias and must be deleted (then indexing starts afresh).
    Index,
}

/// What [`OpenSearchIndex::reindex`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reindexed {
    /// The indexes the alias pointed to (left in place: delete them once satisfied).
    pub from: Vec<String>,
    /// The index the alias points to now.
    pub to: String,
    /// Documents copied by the first pass, and by the pass after the swap (the writes that
    /// reached the old index meanwhile).
    pub copied: u64,
    pub caught_up: u64,
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

fn internal(context: impl Into<String>, why: impl Into<String>) -> DomainError {
    let why: String = why.into();
    DomainError::internal(context, why)
}

impl OpenSearchIndex {
    pub fn new(transport: Arc<dyn Transport>, config: Config) -> Self {
        OpenSearchIndex {
            transport,
            config,
            ensured: AtomicBool::new(false),
            ensuring: tokio::sync::Mutex::new(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Makes the index ready for writes, idempotently (safe from many Lambdas at once):
    /// installs the index template for `<alias>-v*`, then finds the alias or, when there is
    /// none, creates `<alias>-v<LAYOUT>` with the alias. Returns whether this call created
    /// the index. Until a call succeeds, [`SearchIndex::apply`] calls it again first and
    /// fails the whole batch if it still fails (the stream delivers the batch again), so a
    /// `_bulk` can never auto-create an index with a dynamic mapping.
    pub async fn ensure_index(&self) -> Result<bool> {
        let _one = self.ensuring.lock().await;
        if self.ensured.load(Ordering::Acquire) {
            return Ok(false);
        }
        self.put_template().await?;
        let created = match self.alias_state().await? {
            AliasState::Alias(indexes) => {
                if indexes.len() != 1 {
                    tracing::warn!(?indexes, alias = %self.config.index, "opensearch: the alias points to several indexes");
                }
                false
            }
            AliasState::Index => return Err(self.index_in_the_way()),
            AliasState::Missing => self.create_first_index().await?,
        };
        self.ensured.store(true, Ordering::Release);
        Ok(created)
    }

    /// Whether [`OpenSearchIndex::ensure_index`] has succeeded in this process.
    pub fn is_ensured(&self) -> bool {
        self.ensured.load(Ordering::Acquire)
    }

    fn index_in_the_way(&self) -> DomainError {
        internal(
            "opensearch: an index is in the way of the alias",
            format!(
                "an index named {} (from before versioned indexes) holds the alias's name; \
                 delete it, then the indexer creates {} behind the alias",
                self.config.index,
                requests::versioned_index(&self.config.index)
            ),
        )
    }

    async fn send_json(
        &self,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<HttpResponse> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.with_retries(what, || {
            self.transport
                .request(method, path, query, JSON, body.clone())
        })
        .await
    }

    fn refused(what: &str, response: &HttpResponse) -> DomainError {
        internal(
            format!("opensearch: {what} refused"),
            format!(
                "{}: {}",
                response.status,
                responses::response_error(&response.body)
            ),
        )
    }

    async fn put_template(&self) -> Result<()> {
        let c = &self.config;
        let body = requests::index_template(&c.index, c.shards, c.replicas, &c.refresh_interval);
        let path = format!("/_index_template/{}", c.index);
        let response = self
            .send_json(
                "install the index template",
                Method::Put,
                &path,
                &[],
                Some(&body),
            )
            .await?;
        match response.status {
            200..=299 => Ok(()),
            _ => Err(Self::refused("the index template", &response)),
        }
    }

    /// What the alias name stands for now.
    pub async fn alias_state(&self) -> Result<AliasState> {
        let alias = &self.config.index;
        let response = self
            .send_json(
                "read the alias",
                Method::Get,
                &format!("/_alias/{alias}"),
                &[],
                None,
            )
            .await?;
        match response.status {
            200..=299 => responses::alias_indexes(&response.body)
                .map(AliasState::Alias)
                .map_err(|e| internal("opensearch: read the alias", e)),
            404 => {
                let index = self
                    .send_json(
                        "look for an index",
                        Method::Get,
                        &format!("/{alias}"),
                        &[],
                        None,
                    )
                    .await?;
                match index.status {
                    200..=299 => Ok(AliasState::Index),
                    404 => Ok(AliasState::Missing),
                    _ => Err(Self::refused("looking for an index", &index)),
                }
            }
            _ => Err(Self::refused("reading the alias", &response)),
        }
    }

    async fn create_first_index(&self) -> Result<bool> {
        let c = &self.config;
        let body =
            requests::create_index_with_alias(&c.index, c.shards, c.replicas, &c.refresh_interval);
        let path = format!("/{}", requests::versioned_index(&c.index));
        let response = self
            .send_json("create the index", Method::Put, &path, &[], Some(&body))
            .await?;
        match response.status {
            200..=299 => Ok(true),
            // Another instance created it (with the alias, in the same step) meanwhile.
            400 if responses::is_already_exists(&response.body) => {
                match self.alias_state().await? {
                    AliasState::Alias(_) => Ok(false),
                    _ => Err(internal(
                        "opensearch: cannot create the index",
                        format!("{path} exists without the alias {}", c.index),
                    )),
                }
            }
            _ => Err(Self::refused("creating the index", &response)),
        }
    }

    /// Rebuilds the index into a new one of this build's layout and moves the alias to it:
    /// creates `<alias>-v<LAYOUT>` (or `<alias>-v<LAYOUT>-<unix seconds>` when that is the
    /// current one), copies every document into it with `_reindex` (versions kept), swaps
    /// the alias in one `_aliases` request, then copies again what was written to the old
    /// index during the first copy (versions make that exact: a copy never overwrites a
    /// newer write). Searches and writes go on throughout; the old indexes are left in
    /// place. `poll` is how often the copy task is polled.
    pub async fn reindex(&self, poll: Duration) -> Result<Reindexed> {
        self.put_template().await?;
        let from = match self.alias_state().await? {
            AliasState::Missing => {
                self.ensure_index().await?;
                return Ok(Reindexed {
                    from: Vec::new(),
                    to: requests::versioned_index(&self.config.index),
                    copied: 0,
                    caught_up: 0,
                });
            }
            AliasState::Index => return Err(self.index_in_the_way()),
            AliasState::Alias(indexes) => indexes,
        };
        let c = &self.config;
        let first = requests::versioned_index(&c.index);
        let to = if from.contains(&first) {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{first}-{secs}")
        } else {
            first
        };
        let body = requests::create_index(c.shards, c.replicas, &c.refresh_interval);
        let response = self
            .send_json(
                "create the new index",
                Method::Put,
                &format!("/{to}"),
                &[],
                Some(&body),
            )
            .await?;
        if !(200..=299).contains(&response.status) {
            return Err(Self::refused("creating the new index", &response));
        }
        let source = from.join(",");
        let copied = self.copy(&source, &to, poll).await?;
        let swap = requests::swap_alias(&c.index, &from, &to);
        let response = self
            .send_json(
                "swap the alias",
                Method::Post,
                "/_aliases",
                &[],
                Some(&swap),
            )
            .await?;
        if !(200..=299).contains(&response.status) {
            return Err(Self::refused("swapping the alias", &response));
        }
        let caught_up = self.copy(&source, &to, poll).await?;
        tracing::info!(?from, %to, copied, caught_up, "opensearch: reindexed");
        Ok(Reindexed {
            from,
            to,
            copied,
            caught_up,
        })
    }

    /// One `_reindex` task from `source` into `dest`, polled until done: the documents it
    /// wrote (created + updated).
    async fn copy(&self, source: &str, dest: &str, poll: Duration) -> Result<u64> {
        let body = requests::reindex(source, dest);
        let response = self
            .send_json(
                "start the copy",
                Method::Post,
                "/_reindex",
                &[("wait_for_completion", "false")],
                Some(&body),
            )
            .await?;
        if !(200..=299).contains(&response.status) {
            return Err(Self::refused("the copy", &response));
        }
        let task = responses::task_id(&response.body)
            .map_err(|e| internal("opensearch: start the copy", e))?;
        loop {
            let response = self
                .send_json(
                    "follow the copy",
                    Method::Get,
                    &format!("/_tasks/{task}"),
                    &[],
                    None,
                )
                .await?;
            if !(200..=299).contains(&response.status) {
                return Err(Self::refused("following the copy", &response));
            }
            match responses::task_outcome(&response.body)
                .map_err(|e| internal("opensearch: the copy failed", e))?
            {
                Some(written) => return Ok(written),
                None => tokio::time::sleep(poll).await,
            }
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
        // `require_alias`: every action must name an alias, so a bulk can never create an
        // index (a missing alias fails the items instead).
        let response = self
            .with_retries("bulk", || {
                self.transport.request(
                    Method::Post,
                    "/_bulk",
                    &[("require_alias", "true")],
                    NDJSON,
                    Some(body.clone()),
                )
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
        if !self.is_ensured() {
            // Never into an index that is not ensured: the whole batch fails, and its feed
            // delivers it again.
            if let Err(e) = self.ensure_index().await {
                return Err(internal(
                    "opensearch: the index is not ready, nothing written",
                    e.to_string(),
                ));
            }
        }
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
        let routing = requests::search_routing(request);
        let query: Vec<(&str, &str)> = routing.iter().map(|r| ("routing", r.as_str())).collect();
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
