//! The resolver functions' CloudWatch metrics, written to stdout in the embedded metric
//! format (EMF): CloudWatch Logs turns each such log line into metric values, with no API
//! call in the request (docs/deploy.md, "Metrics and logs", cites the specification).
//!
//! Per invocation, one document in namespace [`NAMESPACE`] with the dimension `Operation`
//! (`"Query.messages"`): `Requests` (events answered: 1, or a batch's size), `ClientError`
//! and `Fault` (how many of them ended so, by [`Outcome`]: a client error is never a fault),
//! and `Latency` (the invocation, ms). Then one document per `errorType` the invocation's
//! client errors had, with the dimensions `Operation` and `ErrorType` and the metric
//! `ClientError`. Each document carries the Lambda request id as a plain property (not a
//! dimension) to find its logs; nothing else about the caller.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use chat_appsync::outcome::Outcome;
use serde_json::{Value, json};

/// The CloudWatch namespace of the functions' metrics.
pub const NAMESPACE: &str = "Chat";

/// What one invocation of a resolver function did, counted for its metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationMetrics {
    operation: String,
    requests: u32,
    faults: u32,
    client_errors: BTreeMap<&'static str, u32>,
}

impl InvocationMetrics {
    /// For the function of `operation` (`"Type.field"`).
    pub fn new(operation: &str) -> InvocationMetrics {
        InvocationMetrics {
            operation: operation.to_owned(),
            requests: 0,
            faults: 0,
            client_errors: BTreeMap::new(),
        }
    }

    /// Counts one answered event.
    pub fn count(&mut self, outcome: Outcome) {
        self.requests += 1;
        match outcome {
            Outcome::Ok => {}
            Outcome::ClientError(code) => {
                *self.client_errors.entry(code.as_str()).or_default() += 1
            }
            Outcome::Fault => self.faults += 1,
        }
    }

    /// The EMF documents of the invocation, which took `latency` and ended at
    /// `timestamp_ms` (ms since the epoch).
    pub fn documents(&self, latency: Duration, timestamp_ms: u64, request_id: &str) -> Vec<Value> {
        let client_errors: u32 = self.client_errors.values().sum();
        let mut documents = vec![json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Operation"]],
                    "Metrics": [
                        { "Name": "Requests", "Unit": "Count" },
                        { "Name": "ClientError", "Unit": "Count" },
                        { "Name": "Fault", "Unit": "Count" },
                        { "Name": "Latency", "Unit": "Milliseconds" },
                    ],
                }],
            },
            "Operation": self.operation,
            "Requests": self.requests,
            "ClientError": client_errors,
            "Fault": self.faults,
            "Latency": latency.as_secs_f64() * 1000.0,
            "requestId": request_id,
        })];
        for (error_type, count) in &self.client_errors {
            documents.push(json!({
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [{
                        "Namespace": NAMESPACE,
                        "Dimensions": [["Operation", "ErrorType"]],
                        "Metrics": [{ "Name": "ClientError", "Unit": "Count" }],
                    }],
                },
                "Operation": self.operation,
                "ErrorType": error_type,
                "ClientError": count,
                "requestId": request_id,
            }));
        }
        documents
    }
}

/// Writes each document as one line on stdout, where Lambda sends it to CloudWatch Logs.
/// A line is written whole (stdout locked for it), so it never interleaves with a log line.
pub fn emit(documents: &[Value]) {
    let mut out = std::io::stdout().lock();
    for document in documents {
        let mut line = document.to_string();
        line.push('\n');
        // Metrics are not worth failing an answered request for.
        let _ = out.write_all(line.as_bytes());
    }
    let _ = out.flush();
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use chat_domain::ErrorCode;

    use super::*;

    /// The units CloudWatch accepts (`MetricDatum.Unit`).
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];

    /// Checks a log line against the EMF specification: a JSON object alone on its line,
    /// `_aws` with a numeric `Timestamp` and `CloudWatchMetrics` directives, each with a
    /// namespace, dimension sets of at most 30 keys naming string members of the root, and
    /// metrics naming numeric members of the root (or arrays of at most 100 numbers).
    fn check_emf(line: &str) -> Result<Value, String> {
        if line.contains('\n') {
            return Err("more than one line".into());
        }
        let root: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let aws = root.get("_aws").ok_or("no _aws")?;
        aws.get("Timestamp")
            .and_then(Value::as_u64)
            .ok_or("_aws.Timestamp is not a number of ms")?;
        let directives = aws
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .ok_or("_aws.CloudWatchMetrics is not an array")?;
        if directives.is_empty() {
            return Err("no metric directive".into());
        }
        for directive in directives {
            let namespace = directive["Namespace"].as_str().ok_or("no Namespace")?;
            if namespace.is_empty() || namespace.len() > 255 {
                return Err(format!("bad namespace {namespace:?}"));
            }
            let sets = directive["Dimensions"]
                .as_array()
                .ok_or("Dimensions is not an array")?;
            for set in sets {
                let keys = set.as_array().ok_or("a dimension set is not an array")?;
                if keys.len() > 30 {
                    return Err("more than 30 dimensions in a set".into());
                }
                for key in keys {
                    let key = key.as_str().ok_or("a dimension key is not a string")?;
                    let value = root[key]
                        .as_str()
                        .ok_or(format!("dimension {key} is not a string member"))?;
                    if value.trim().is_empty() || !value.is_ascii() {
                        return Err(format!("dimension {key} has value {value:?}"));
                    }
                }
            }
            let metrics = directive["Metrics"]
                .as_array()
                .ok_or("Metrics is not an array")?;
            if metrics.is_empty() || metrics.len() > 100 {
                return Err("a directive needs 1 to 100 metrics".into());
            }
            for metric in metrics {
                let name = metric["Name"].as_str().ok_or("a metric has no Name")?;
                if let Some(unit) = metric.get("Unit") {
                    let unit = unit.as_str().ok_or("Unit is not a string")?;
                    if !UNITS.contains(&unit) {
                        return Err(format!("unknown unit {unit}"));
                    }
                }
                match &root[name] {
                    Value::Number(_) => {}
                    Value::Array(values)
                        if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                    other => return Err(format!("metric {name} is {other}, not a number")),
                }
            }
        }
        Ok(root)
    }

    fn lines(metrics: &InvocationMetrics) -> Vec<Value> {
        metrics
            .documents(Duration::from_micros(12_500), 1_765_000_000_000, "req-1")
            .iter()
            .map(|document| check_emf(&document.to_string()).unwrap())
            .collect()
    }

    #[test]
    fn an_answered_invocation_is_one_valid_emf_line() {
        let mut metrics = InvocationMetrics::new("Query.messages");
        metrics.count(Outcome::Ok);
        let lines = lines(&metrics);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Chat");
        assert_eq!(line["Operation"], "Query.messages");
        assert_eq!(line["Requests"], 1);
        assert_eq!(line["ClientError"], 0);
        assert_eq!(line["Fault"], 0);
        assert_eq!(line["Latency"], 12.5);
        assert_eq!(line["requestId"], "req-1");
    }

    #[test]
    fn client_errors_count_by_type_and_never_as_faults() {
        let mut metrics = InvocationMetrics::new("Query.chat");
        metrics.count(Outcome::ClientError(ErrorCode::NotFound));
        metrics.count(Outcome::ClientError(ErrorCode::NotFound));
        metrics.count(Outcome::ClientError(ErrorCode::Throttled));
        metrics.count(Outcome::Ok);
        let lines = lines(&metrics);
        assert_eq!(lines[0]["Requests"], 4);
        assert_eq!(lines[0]["ClientError"], 3);
        assert_eq!(lines[0]["Fault"], 0);
        let by_type: Vec<_> = lines[1..]
            .iter()
            .map(|l| {
                (
                    l["ErrorType"].as_str().unwrap(),
                    l["ClientError"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(by_type, [("NotFound", 2), ("Throttled", 1)]);
    }

    #[test]
    fn a_fault_counts_as_a_fault_only() {
        let mut metrics = InvocationMetrics::new("Mutation.sendMessage");
        metrics.count(Outcome::Fault);
        let lines = lines(&metrics);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["Fault"], 1);
        assert_eq!(lines[0]["ClientError"], 0);
    }

    /// The invocations a resolver function answers, counted as its main counts them.
    async fn counted(field: &str, payloads: Vec<Value>) -> InvocationMetrics {
        use std::sync::Arc;
        let store = Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
        let service = chat_domain::ChatService::new(
            store,
            chat_domain::ServerKey::generate(),
            Arc::new(chat_domain::SystemClock),
        );
        let registry = chat_appsync::Registry::new(Arc::new(service));
        let mut metrics = InvocationMetrics::new(field);
        for payload in payloads {
            let (_, outcomes) = crate::resolve_invocation(&registry, None, field, payload).await;
            outcomes.into_iter().for_each(|o| metrics.count(o));
        }
        metrics
    }

    fn chat_event(parent: &str, field: &str) -> Value {
        let admin = chat_appsync::auth::resolver_context(&chat_domain::Caller::Admin);
        let arguments = json!({ "appToken": "app_0000000000000000000000", "number": 1 });
        serde_json::to_value(chat_appsync::registry::event_for(
            parent, field, arguments, admin,
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn a_resolvers_client_errors_are_not_faults_its_internal_errors_are() {
        // Given: a chat that does not exist, asked for alone and in a batch of two; then an
        // event for another field (a deployment error: Internal).
        let missing = chat_event("Query", "chat");
        let metrics = counted(
            "Query.chat",
            vec![missing.clone(), json!([missing.clone(), missing])],
        )
        .await;
        let lines = lines(&metrics);
        assert_eq!(lines[0]["Requests"], 3);
        assert_eq!(lines[0]["Fault"], 0, "{lines:?}");
        assert_eq!(lines[0]["ClientError"], 3);
        assert_eq!(lines.len(), 2, "one ErrorType line: {lines:?}");
        let misrouted = counted("Query.chat", vec![chat_event("Query", "chats")]).await;
        let lines = super::InvocationMetrics::documents(&misrouted, Duration::ZERO, 1, "r");
        assert_eq!(lines[0]["Fault"], 1);
        assert_eq!(lines[0]["ClientError"], 0);
    }

    #[test]
    fn the_checker_refuses_a_directive_naming_an_absent_member() {
        let mut document =
            InvocationMetrics::new("Query.chat").documents(Duration::ZERO, 1, "req")[0].clone();
        document.as_object_mut().unwrap().remove("Fault");
        assert!(check_emf(&document.to_string()).is_err());
        let mut document =
            InvocationMetrics::new("Query.chat").documents(Duration::ZERO, 1, "req")[0].clone();
        document.as_object_mut().unwrap().remove("Operation");
        assert!(check_emf(&document.to_string()).is_err());
    }
}
