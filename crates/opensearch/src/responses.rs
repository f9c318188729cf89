//! Parsing OpenSearch's answers: bulk responses item by item, search hits, error bodies.

use chat_domain::{ChatNumber, MessageNumber, SearchHit, Timestamp};
use serde::Deserialize;
use serde_json::Value;

/// What became of one bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// 200/201: written.
    Written,
    /// 409 `version_conflict_engine_exception`: this version or a newer one is indexed.
    Stale,
    /// 429 or 5xx: worth another try.
    Retry { status: u16, reason: String },
    /// Anything else (400 mapping errors ...): trying again will not help.
    Failed { status: u16, reason: String },
}

#[derive(Debug, Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<serde_json::Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// The outcome of each item of a `_bulk` response, in request order. `expected` is the
/// number of items sent; a response with another count is an error.
pub fn bulk_outcomes(body: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, String> {
    let response: BulkResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable bulk response: {e}"))?;
    if response.items.len() != expected {
        return Err(format!(
            "the bulk response has {} items for {expected} operations",
            response.items.len()
        ));
    }
    response
        .items
        .into_iter()
        .map(|item| {
            // Each item is `{ "<action>": { ... } }`.
            let (_, inner) = item
                .into_iter()
                .next()
                .ok_or_else(|| "an empty bulk item".to_owned())?;
            let item: BulkItem =
                serde_json::from_value(inner).map_err(|e| format!("unreadable bulk item: {e}"))?;
            Ok(item_outcome(item.status, item.error.as_ref()))
        })
        .collect()
}

fn item_outcome(status: u16, error: Option<&Value>) -> ItemOutcome {
    let reason = error.map(error_reason).unwrap_or_default();
    match status {
        200 | 201 => ItemOutcome::Written,
        409 => ItemOutcome::Stale,
        429 | 500..=599 => ItemOutcome::Retry { status, reason },
        _ => ItemOutcome::Failed { status, reason },
    }
}

/// `type: reason` of an OpenSearch error object (or the value as text).
pub fn error_reason(error: &Value) -> String {
    match (error.get("type"), error.get("reason")) {
        (Some(Value::String(t)), Some(Value::String(r))) => format!("{t}: {r}"),
        (Some(Value::String(t)), _) => t.clone(),
        _ => error.to_string(),
    }
}

/// The error of a non-2xx response body (`{"error": {...}, "status": n}`), as text.
pub fn response_error(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => match value.get("error") {
            Some(error) => error_reason(error),
            None => value.to_string(),
        },
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// Whether an error body says the index exists already (an idempotent create).
pub fn is_already_exists(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/type").cloned())
        .is_some_and(|t| t == "resource_already_exists_exception")
}

/// The indexes of a `GET /_alias/<alias>` answer (`{"<index>": {"aliases": {...}}, ...}`),
/// sorted.
pub fn alias_indexes(body: &[u8]) -> Result<Vec<String>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable alias answer: {e}"))?;
    let map = value
        .as_object()
        .ok_or_else(|| format!("unexpected alias answer: {value}"))?;
    let mut indexes: Vec<String> = map.keys().cloned().collect();
    indexes.sort();
    Ok(indexes)
}

/// The task of a `_reindex` started with `wait_for_completion=false` (`{"task": "node:7"}`).
pub fn task_id(body: &[u8]) -> Result<String, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable task answer: {e}"))?;
    value
        .get("task")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no task in {value}"))
}

/// A `GET /_tasks/<id>` answer for a `_reindex`: `None` while it runs; when done, the
/// documents it wrote (created + updated), or why it failed (an error, or failures of
/// documents other than version conflicts, which `conflicts: proceed` skips).
pub fn task_outcome(body: &[u8]) -> Result<Option<u64>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable task answer: {e}"))?;
    if value.get("completed") != Some(&Value::Bool(true)) {
        return Ok(None);
    }
    if let Some(error) = value.get("error") {
        return Err(error_reason(error));
    }
    let response = value
        .get("response")
        .ok_or_else(|| format!("a finished task without a response: {value}"))?;
    if let Some(failures) = response.get("failures").and_then(Value::as_array)
        && let Some(first) = failures.first()
    {
        return Err(format!(
            "{} documents failed, the first: {}",
            failures.len(),
            first
                .get("cause")
                .map_or_else(|| first.to_string(), error_reason)
        ));
    }
    let count = |field: &str| response.get(field).and_then(Value::as_u64).unwrap_or(0);
    Ok(Some(count("created") + count("updated")))
}

#[derive(Debug, Deserialize)]
struct SearchResponse {
    hits: Hits,
}

#[derive(Debug, Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Debug, Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    sort: Vec<Value>,
}

/// The hits of a search response: the chat and number from the document id
/// (`app/chat/number`), the score from the first sort value, and the creation time from
/// the second when the search was across chats (`[score, created_at, chat, number]`;
/// one chat's is `[score, number]`).
pub fn search_hits(body: &[u8]) -> Result<Vec<SearchHit>, String> {
    let response: SearchResponse =
        serde_json::from_slice(body).map_err(|e| format!("unreadable search response: {e}"))?;
    response
        .hits
        .hits
        .into_iter()
        .map(|hit| {
            let mut parts = hit.id.rsplit('/');
            let (Some(number), Some(chat), Some(_app)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("a hit with the id {:?}", hit.id));
            };
            let parse = |text: &str| {
                text.parse::<i64>()
                    .map_err(|_| format!("a hit with the id {:?}", hit.id))
            };
            let number = MessageNumber::new(parse(number)?).map_err(|e| e.to_string())?;
            let chat = ChatNumber::new(parse(chat)?).map_err(|e| e.to_string())?;
            let score = hit.sort.first().and_then(Value::as_f64).unwrap_or(-1.0);
            if !(0.0..=f64::from(u32::MAX)).contains(&score) {
                return Err(format!("a hit with the score {score}"));
            }
            let created_at = match hit.sort.len() {
                2 => 0,
                4 => hit.sort[1]
                    .as_i64()
                    .ok_or_else(|| format!("a hit with the sort values {:?}", hit.sort))?,
                _ => return Err(format!("a hit with the sort values {:?}", hit.sort)),
            };
            Ok(SearchHit {
                chat,
                number,
                score: score.round() as u32,
                created_at: Timestamp(created_at),
            })
        })
        .collect()
}
