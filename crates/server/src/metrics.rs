//! The dev server's Prometheus metrics, served at `GET /metrics` (text format 0.0.4).
//!
//! What is counted where it happens: every root field a client calls (`Query.*`,
//! `Mutation.*`, and a subscription's admission) by its outcome, with the time its
//! resolver took; requests refused before any field ran (`operation="(request)"`); open
//! WebSocket connections per protocol; presence sweeps. What is read when scraped: active
//! subscriptions, the search outbox (changes not yet indexed) and the store's writer queue.
//!
//! Labels are operation names from the schema, outcomes and error codes: a fixed, small
//! set. No token, application or user ever becomes a label. Recording is a few atomic
//! operations: each operation's counters and histogram are resolved once (the first time
//! an outcome occurs) and kept; nothing per request takes a lock.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chat_appsync::outcome::Outcome;
use chat_domain::ErrorCode;
use chat_embedded::SqliteStore;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::realtime::Groups;

/// The `operation` label of a request refused before any field ran: a body that is not a
/// GraphQL request, a bad `Authorization`, a document that does not parse or validate.
pub const REQUEST_LEVEL: &str = "(request)";

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MetricsAccess {
    /// Clients connecting from a loopback address, without a key.
    #[default]
    Loopback,
    /// Any client presenting the admin key (`Authorization: Bearer <admin key>`).
    AdminKey,
    /// No endpoint, and nothing recorded.
    Off,
}

/// Latency buckets, seconds: resolvers on the embedded store answer in tens of
/// microseconds to milliseconds; a synchronous commit or a search takes longer.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Slots of an operation's outcome counters: ok, one per client error code, fault.
const OUTCOME_SLOTS: usize = ErrorCode::ALL.len() + 2;

fn slot(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Ok => 0,
        Outcome::ClientError(code) => {
            1 + ErrorCode::ALL
                .iter()
                .position(|c| *c == code)
                .unwrap_or(ErrorCode::ALL.len())
        }
        Outcome::Fault => OUTCOME_SLOTS - 1,
    }
}

fn labels(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Ok => ("ok", ""),
        Outcome::ClientError(code) => ("client_error", code.as_str()),
        Outcome::Fault => ("fault", ""),
    }
}

/// One operation's counters and latency histogram.
pub struct OperationMetrics {
    name: String,
    requests: IntCounterVec,
    latency: HistogramVec,
    outcomes: [OnceLock<IntCounter>; OUTCOME_SLOTS],
    duration: OnceLock<Histogram>,
}

impl OperationMetrics {
    /// Counts one call of the operation that ended with `outcome` after `elapsed`.
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        self.count(outcome);
        self.duration
            .get_or_init(|| self.latency.with_label_values(&[self.name.as_str()]))
            .observe(elapsed.as_secs_f64());
    }

    fn count(&self, outcome: Outcome) {
        self.outcomes[slot(outcome)]
            .get_or_init(|| {
                let (outcome, error_type) = labels(outcome);
                self.requests
                    .with_label_values(&[self.name.as_str(), outcome, error_type])
            })
            .inc();
    }
}

fn operation_metrics(
    name: &str,
    requests: &IntCounterVec,
    latency: &HistogramVec,
) -> Arc<OperationMetrics> {
    Arc::new(OperationMetrics {
        name: name.to_owned(),
        requests: requests.clone(),
        latency: latency.clone(),
        outcomes: Default::default(),
        duration: OnceLock::new(),
    })
}

/// The WebSocket protocols, as the `protocol` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// graphql-transport-ws.
    GraphqlTransportWs,
    /// AppSync's real-time protocol (`graphql-ws` subprotocol).
    AppSync,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Protocol::GraphqlTransportWs => "graphql-transport-ws",
            Protocol::AppSync => "appsync",
        }
    }
}

/// An open WebSocket connection, counted until dropped.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The server's metrics: the registry they are exposed from and the handles that record.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    operations: HashMap<String, Arc<OperationMetrics>>,
    request_level: Arc<OperationMetrics>,
    connections: [IntGauge; 2],
    subscriptions: IntGauge,
    subscription_groups: IntGauge,
    outbox: IntGauge,
    writer_queue: IntGauge,
    sweeps: IntCounter,
    sweep_failures: IntCounter,
    swept_leases: IntCounter,
    sweep_events: IntCounter,
    store: OnceLock<Arc<SqliteStore>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Metrics {
    /// Metrics for a schema whose root fields (`"Type.field"`) are `operations` (more can
    /// be added while the schema is built: [`Metrics::add_operation`]).
    pub fn new<'a>(operations: impl IntoIterator<Item = &'a str>) -> Metrics {
        let registry = Registry::new();
        let requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "chat_requests_total",
                    "Root fields called, by operation and outcome (ok, client_error with its errorType, fault)",
                ),
                &["operation", "outcome", "error_type"],
            )
            .expect("valid metric"),
        );
        let latency = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "chat_request_duration_seconds",
                    "Time a root field's resolver took, by operation",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["operation"],
            )
            .expect("valid metric"),
        );
        let operations = operations
            .into_iter()
            .map(|name| {
                (
                    name.to_owned(),
                    operation_metrics(name, &requests, &latency),
                )
            })
            .collect();
        let request_level = operation_metrics(REQUEST_LEVEL, &requests, &latency);
        let connections = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "chat_websocket_connections",
                    "Open WebSocket connections, by protocol",
                ),
                &["protocol"],
            )
            .expect("valid metric"),
        );
        let gauge = |name: &str, help: &str| {
            register(&registry, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
        };
        Metrics {
            connections: [Protocol::GraphqlTransportWs, Protocol::AppSync]
                .map(|p| connections.with_label_values(&[p.label()])),
            subscriptions: gauge(
                "chat_subscriptions",
                "Active subscriptions over WebSocket connections",
            ),
            subscription_groups: gauge(
                "chat_subscription_groups",
                "Distinct subscriptions, each executed once for all its subscribers",
            ),
            outbox: gauge(
                "chat_search_outbox_changes",
                "Message changes committed and not yet indexed for search",
            ),
            writer_queue: gauge(
                "chat_store_writer_queue",
                "Write commands waiting for the store's writer",
            ),
            sweeps: counter("chat_presence_sweeps_total", "Presence sweeps run"),
            sweep_failures: counter(
                "chat_presence_sweep_failures_total",
                "Presence sweeps that failed (the next one retries)",
            ),
            swept_leases: counter(
                "chat_presence_expired_leases_total",
                "Expired presence leases the sweeps ended",
            ),
            sweep_events: counter(
                "chat_presence_sweep_events_total",
                "Events the presence sweeps published",
            ),
            store: OnceLock::new(),
            registry,
            requests,
            latency,
            operations,
            request_level,
        }
    }

    /// Adds a root field (`"Query.messages"`); its metrics.
    pub fn add_operation(&mut self, name: &str) -> Arc<OperationMetrics> {
        let operation = operation_metrics(name, &self.requests, &self.latency);
        self.operations.insert(name.to_owned(), operation.clone());
        operation
    }

    /// The metrics of a root field (`"Query.messages"`), if the schema has it.
    pub fn operation(&self, name: &str) -> Option<Arc<OperationMetrics>> {
        self.operations.get(name).cloned()
    }

    /// Counts a request refused before any field ran, with its error code.
    pub fn refused(&self, error_type: &str) {
        self.request_level.count(Outcome::of_error_type(error_type));
    }

    /// Counts a WebSocket connection as open until the returned guard drops.
    pub fn connection_opened(&self, protocol: Protocol) -> OpenConnection {
        let gauge = self.connections[protocol as usize].clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// Counts one presence sweep: the leases it ended and the events it published, or its
    /// failure.
    pub fn presence_swept(&self, result: Result<(usize, usize), ()>) {
        self.sweeps.inc();
        match result {
            Ok((leases, events)) => {
                self.swept_leases.inc_by(leases as u64);
                self.sweep_events.inc_by(events as u64);
            }
            Err(()) => self.sweep_failures.inc(),
        }
    }

    /// The embedded store whose outbox and writer queue are read at each scrape.
    pub fn watch_store(&self, store: Arc<SqliteStore>) {
        let _ = self.store.set(store);
    }

    /// The metrics in Prometheus' text format, gauges read now.
    pub async fn render(&self, groups: &Groups) -> String {
        self.subscriptions.set(gauge_value(groups.member_count()));
        self.subscription_groups
            .set(gauge_value(groups.group_count()));
        if let Some(store) = self.store.get() {
            self.writer_queue
                .set(gauge_value(store.writer_queue_depth()));
            match store.outbox_len().await {
                Ok(len) => self.outbox.set(i64::try_from(len).unwrap_or(i64::MAX)),
                Err(error) => tracing::warn!(%error, "metrics: cannot count the search outbox"),
            }
        }
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::error!(%error, "metrics: cannot encode");
        }
        String::from_utf8(text).unwrap_or_default()
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[tokio::test]
    async fn outcomes_are_counted_per_operation_with_latency() {
        let metrics = Metrics::new(["Query.chat", "Mutation.sendMessage"]);
        let chat = metrics.operation("Query.chat").unwrap();
        chat.record(Outcome::Ok, Duration::from_micros(300));
        chat.record(Outcome::Ok, Duration::from_millis(2));
        chat.record(
            Outcome::ClientError(ErrorCode::NotFound),
            Duration::from_micros(50),
        );
        chat.record(Outcome::Fault, Duration::from_micros(50));
        metrics.refused("BadInput");
        assert!(metrics.operation("Query.unknown").is_none());
        let text = metrics
            .render(&Groups::new(crate::realtime::Hub::new(&[]), false))
            .await;
        let requests = |labels: &str| sample(&text, &format!("chat_requests_total{{{labels}}}"));
        assert_eq!(
            requests(r#"error_type="",operation="Query.chat",outcome="ok""#),
            Some(2.0)
        );
        assert_eq!(
            requests(r#"error_type="NotFound",operation="Query.chat",outcome="client_error""#),
            Some(1.0)
        );
        assert_eq!(
            requests(r#"error_type="",operation="Query.chat",outcome="fault""#),
            Some(1.0)
        );
        assert_eq!(
            requests(r#"error_type="BadInput",operation="(request)",outcome="client_error""#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"chat_request_duration_seconds_bucket{operation="Query.chat",le="0.0005"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"chat_request_duration_seconds_count{operation="Query.chat"}"#
            ),
            Some(4.0)
        );
        // An operation nobody called has no series yet.
        assert!(!text.contains("Mutation.sendMessage"), "{text}");
    }

    #[tokio::test]
    async fn connections_are_open_until_their_guard_drops() {
        let metrics = Metrics::new([]);
        let groups = Groups::new(crate::realtime::Hub::new(&[]), false);
        let first = metrics.connection_opened(Protocol::AppSync);
        let _second = metrics.connection_opened(Protocol::AppSync);
        let _other = metrics.connection_opened(Protocol::GraphqlTransportWs);
        drop(first);
        let text = metrics.render(&groups).await;
        assert_eq!(
            sample(&text, r#"chat_websocket_connections{protocol="appsync"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"chat_websocket_connections{protocol="graphql-transport-ws"}"#
            ),
            Some(1.0)
        );
    }
}
