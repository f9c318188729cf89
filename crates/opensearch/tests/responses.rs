//! Real-shaped OpenSearch answers: parsing, per-item outcomes, retries with back-off, and
//! what the indexer reports for a batch with failures.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chat_domain::*;
use chat_opensearch::responses::{self, ItemOutcome};
use chat_opensearch::{Config, HttpResponse, Method, OpenSearchIndex, Transport};
use common::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Answers from a script, recording every request.
/// A request the fake server saw: method, path, headers, body.
type RecordedRequest = (Method, String, Vec<(String, String)>, String);

#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<HttpResponse, String>>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

impl Scripted {
    fn new(answers: Vec<Result<(u16, Vec<u8>), String>>) -> Arc<Self> {
        Arc::new(Scripted {
            answers: Mutex::new(
                answers
                    .into_iter()
                    .map(|a| a.map(|(status, body)| HttpResponse { status, body }))
                    .collect(),
            ),
            requests: Mutex::default(),
        })
    }

    fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The `_id`s of the bulk request `n`.
    fn bulk_ids(&self, n: usize) -> Vec<String> {
        let body = &self.requests()[n].3;
        body.lines()
            .step_by(2)
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["index"]["_id"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

#[async_trait]
impl Transport for Scripted {
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        _content_type: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, String> {
        self.requests.lock().unwrap().push((
            method,
            path.to_owned(),
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            String::from_utf8(body.unwrap_or_default()).unwrap(),
        ));
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err("the script has no more answers".into()))
    }
}

fn index(transport: Arc<Scripted>) -> OpenSearchIndex {
    OpenSearchIndex::new(
        transport,
        Config {
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..Config::default()
        },
    )
}

/// Six operations matching the six items of `bulk_mixed.json`.
fn six_ops() -> Vec<IndexOp> {
    (1..=6)
        .map(|n| upsert("app_abc-1", 7, n, "text", 2))
        .collect()
}

#[test]
fn a_bulk_response_is_read_item_by_item() {
    let outcomes = responses::bulk_outcomes(&fixture("bulk_mixed.json"), 6).unwrap();
    assert_eq!(outcomes[0], ItemOutcome::Written);
    assert_eq!(outcomes[1], ItemOutcome::Written);
    assert_eq!(outcomes[2], ItemOutcome::Stale);
    assert!(
        matches!(&outcomes[3], ItemOutcome::Retry { status: 429, reason } if reason.starts_with("es_rejected_execution_exception"))
    );
    assert!(
        matches!(&outcomes[4], ItemOutcome::Failed { status: 400, reason } if reason.starts_with("mapper_parsing_exception"))
    );
    assert!(matches!(
        &outcomes[5],
        ItemOutcome::Retry { status: 503, .. }
    ));
    assert!(responses::bulk_outcomes(&fixture("bulk_mixed.json"), 5).is_err());
    assert!(responses::bulk_outcomes(b"<html>502 Bad Gateway</html>", 1).is_err());
}

#[test]
fn errors_and_hits_are_read() {
    assert_eq!(
        responses::response_error(&fixture("too_many_requests.json")),
        "es_rejected_execution_exception: rejected execution of coordinating operation [coordinating_and_primary_bytes=105696283, replica_bytes=0, all_bytes=105696283, coordinating_operation_bytes=50233, max_coordinating_and_primary_bytes=105630000]"
    );
    assert!(responses::is_already_exists(&fixture(
        "already_exists.json"
    )));
    assert!(!responses::is_already_exists(&fixture(
        "too_many_requests.json"
    )));
    let hits = responses::search_hits(&fixture("search.json")).unwrap();
    let pairs: Vec<(u32, u32)> = hits.iter().map(|h| (h.score, h.number.get())).collect();
    assert_eq!(pairs, vec![(3, 9), (3, 4), (1, 12), (0, 2)]);
}

#[tokio::test]
async fn failed_items_are_retried_alone_and_reported_per_operation() {
    // The first bulk answers the mixed response; the retry carries only the 429 and the
    // 503 items and succeeds.
    let transport = Scripted::new(vec![
        Ok((200, fixture("bulk_mixed.json"))),
        Ok((200, fixture("bulk_ok.json"))),
    ]);
    let outcomes = index(transport.clone()).apply(&six_ops()).await.unwrap();
    assert_eq!(
        transport.bulk_ids(1),
        vec!["app_abc-1/7/4", "app_abc-1/7/6"]
    );
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Ok(a) => format!("{a:?}"),
            Err(e) => e.code().to_string(),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "Written", "Written", "Stale", "Written", "Internal", "Written"
        ]
    );
    let (method, path, _, body) = &transport.requests()[0];
    assert_eq!((*method, path.as_str()), (Method::Post, "/_bulk"));
    assert!(body.contains("\"version_type\":\"external\""));
}

#[tokio::test]
async fn a_throttled_or_failing_request_is_retried_with_back_off() {
    let transport = Scripted::new(vec![
        Ok((429, fixture("too_many_requests.json"))),
        Ok((502, b"<html>502 Bad Gateway</html>".to_vec())),
        Ok((200, fixture("bulk_ok.json"))),
    ]);
    let ops = [
        upsert("app_abc-1", 7, 4, "a", 1),
        upsert("app_abc-1", 7, 6, "b", 1),
    ];
    let outcomes = index(transport.clone()).apply(&ops).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Applied::Written))));
    assert_eq!(transport.requests().len(), 3);
}

#[tokio::test]
async fn persistent_throttling_fails_every_operation_of_the_batch() {
    let transport = Scripted::new(vec![
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
    ]);
    let ops = [
        upsert("app_abc-1", 7, 4, "a", 1),
        upsert("app_abc-1", 7, 6, "b", 1),
    ];
    let outcomes = index(transport.clone()).apply(&ops).await.unwrap();
    assert_eq!(transport.requests().len(), 3, "max_attempts");
    for outcome in outcomes {
        assert_eq!(outcome.unwrap_err().code(), ErrorCode::Throttled);
    }
}

#[tokio::test]
async fn the_indexer_reports_the_failed_records_for_batch_item_failures() {
    let transport = Scripted::new(vec![
        Ok((200, fixture("bulk_mixed.json"))),
        // The retry of items 4 and 6 is throttled to the end.
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
    ]);
    let index = index(transport);
    let records: Vec<ChangeRecord> = (1..=6)
        .map(|n| ChangeRecord {
            sequence: format!("{}", 1000 + n),
            kind: ChangeKind::Insert,
            key: key("app_abc-1", 7, n),
            old: None,
            new: Some(Message {
                app: AppToken::parse("app_abc-1").unwrap(),
                chat_number: ChatNumber::new(7).unwrap(),
                number: MessageNumber::new(n).unwrap(),
                body: "text".into(),
                sender_id: UserId::parse("c").unwrap(),
                sender_role: Role::Customer,
                client_message_id: None,
                created_at: Timestamp(n),
                edited_at: None,
                deleted: false,
            }),
            version: 1,
        })
        .collect();
    let report = index_changes(&index, &records).await;
    let failed: Vec<&str> = report
        .failures
        .iter()
        .map(|f| f.sequence.as_str())
        .collect();
    assert_eq!(failed, ["1004", "1005", "1006"]);
    assert_eq!(report.indexed, ["1001", "1002", "1003"]);
    assert_eq!((report.written, report.stale), (2, 1));
}

#[tokio::test]
async fn bulk_bodies_are_split_by_bytes() {
    let transport = Scripted::new(vec![
        Ok((
            200,
            br#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}}]}"#
                .to_vec(),
        )),
        Ok((
            200,
            br#"{"errors":false,"items":[{"index":{"status":201}}]}"#.to_vec(),
        )),
    ]);
    let body = "x".repeat(250);
    let ops: Vec<IndexOp> = (1..=3)
        .map(|n| upsert("app_abc-1", 7, n, &body, 1))
        .collect();
    let line = chat_opensearch::requests::bulk_lines("chat-messages", &ops[0]).len();
    let index = OpenSearchIndex::new(
        transport.clone(),
        Config {
            bulk_max_bytes: 2 * line + 1,
            ..Config::default()
        },
    );
    let outcomes = index.apply(&ops).await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_ok()));
    assert_eq!(transport.bulk_ids(0).len(), 2);
    assert_eq!(transport.bulk_ids(1).len(), 1);
    for (_, _, _, body) in transport.requests() {
        assert!(body.len() <= 2 * line + 1, "{}", body.len());
    }
}

#[tokio::test]
async fn the_index_is_created_idempotently_and_searched_by_routing() {
    let transport = Scripted::new(vec![
        Ok((200, fixture("created.json"))),
        Ok((400, fixture("already_exists.json"))),
        Ok((200, fixture("search.json"))),
        Ok((404, br#"{"error":{"type":"index_not_found_exception","reason":"no such index [chat-messages]"},"status":404}"#.to_vec())),
    ]);
    let index = index(transport.clone());
    assert!(index.ensure_index().await.unwrap());
    assert!(!index.ensure_index().await.unwrap());
    let hits = index
        .search(&request("app_abc-1", 7, "refund", None, 5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4);
    let (method, path, query, _) = &transport.requests()[2];
    assert_eq!(
        (*method, path.as_str()),
        (Method::Post, "/chat-messages/_search")
    );
    assert_eq!(query, &[("routing".to_owned(), "app_abc-1/7".to_owned())]);
    assert!(
        index
            .search(&request("app_abc-1", 7, "refund", None, 5))
            .await
            .unwrap()
            .is_empty()
    );
}
