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

    /// Scripted answers after the two of an index that is ensured already (the template is
    /// installed, the alias exists).
    fn ready(answers: Vec<Result<(u16, Vec<u8>), String>>) -> Arc<Self> {
        let mut all = vec![
            Ok((200, br#"{"acknowledged":true}"#.to_vec())),
            Ok((200, ALIAS.to_vec())),
        ];
        all.extend(answers);
        Self::new(all)
    }

    fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The `_bulk` requests only.
    fn bulks(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.1 == "/_bulk")
            .collect()
    }

    /// The `_id`s of the bulk request `n`.
    fn bulk_ids(&self, n: usize) -> Vec<String> {
        let body = &self.bulks()[n].3;
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

/// `GET /_alias/chat-messages` when the alias points to the first index of the layout.
const ALIAS: &[u8] =
    br#"{"chat-messages-v2":{"aliases":{"chat-messages":{"is_write_index":true}}}}"#;

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
    assert!(hits.iter().all(|h| h.chat.get() == 7));
    // Across chats: the chat from the id, the creation time from the second sort value.
    let hits = responses::search_hits(&fixture("search_across_chats.json")).unwrap();
    let found: Vec<(u32, u32, u32, i64)> = hits
        .iter()
        .map(|h| (h.score, h.chat.get(), h.number.get(), h.created_at.0))
        .collect();
    assert_eq!(
        found,
        vec![
            (3, 12, 3, 1_764_979_200_500),
            (3, 7, 9, 1_764_979_100_000),
            (1, 7, 4, 1_764_979_000_000)
        ]
    );
    let cursor = hits[2].cursor(true);
    assert_eq!(
        (cursor.chat, cursor.created_at),
        (Some(7), Some(1_764_979_000_000))
    );
    // A hit whose id is not a message's is an error, not a wrong hit.
    let bad = br#"{"hits":{"hits":[{"_id":"app_abc-1/x/3","sort":[1.0,3]}]}}"#;
    assert!(responses::search_hits(bad).is_err());
    let bad = br#"{"hits":{"hits":[{"_id":"app_abc-1/7/3","sort":[1.0,3,4]}]}}"#;
    assert!(responses::search_hits(bad).is_err());
}

#[tokio::test]
async fn a_search_across_chats_asks_every_shard() {
    let transport = Scripted::new(vec![Ok((200, fixture("search_across_chats.json")))]);
    let index = index(transport.clone());
    let mut app_wide = request("app_abc-1", 7, "refund", None, 5);
    app_wide.scope = chat_domain::search::SearchScope::App;
    let hits = index.search(&app_wide).await.unwrap();
    assert_eq!(hits.len(), 3);
    let (method, path, query, body) = &transport.requests()[0];
    assert_eq!(
        (*method, path.as_str()),
        (Method::Post, "/chat-messages/_search")
    );
    assert!(query.is_empty(), "no routing: {query:?}");
    assert!(body.contains(r#"{"created_at":"desc"}"#));
}

#[tokio::test]
async fn failed_items_are_retried_alone_and_reported_per_operation() {
    // The first bulk answers the mixed response; the retry carries only the 429 and the
    // 503 items and succeeds.
    let transport = Scripted::ready(vec![
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
    let (method, path, query, body) = &transport.bulks()[0];
    assert_eq!((*method, path.as_str()), (Method::Post, "/_bulk"));
    assert_eq!(query, &[("require_alias".to_owned(), "true".to_owned())]);
    assert!(body.contains("\"version_type\":\"external\""));
    assert!(
        body.contains("\"_index\":\"chat-messages\""),
        "through the alias"
    );
}

#[tokio::test]
async fn a_throttled_or_failing_request_is_retried_with_back_off() {
    let transport = Scripted::ready(vec![
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
    assert_eq!(transport.bulks().len(), 3);
}

#[tokio::test]
async fn persistent_throttling_fails_every_operation_of_the_batch() {
    let transport = Scripted::ready(vec![
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
        Ok((429, fixture("too_many_requests.json"))),
    ]);
    let ops = [
        upsert("app_abc-1", 7, 4, "a", 1),
        upsert("app_abc-1", 7, 6, "b", 1),
    ];
    let outcomes = index(transport.clone()).apply(&ops).await.unwrap();
    assert_eq!(transport.bulks().len(), 3, "max_attempts");
    for outcome in outcomes {
        assert_eq!(outcome.unwrap_err().code(), ErrorCode::Throttled);
    }
}

#[tokio::test]
async fn the_indexer_reports_the_failed_records_for_batch_item_failures() {
    let transport = Scripted::ready(vec![
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
async fn file_names_are_indexed_with_the_body_and_a_deleted_message_leaves_a_tombstone() {
    let transport = Scripted::ready(vec![Ok((
        200,
        br#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":200}}]}"#
            .to_vec(),
    ))]);
    let index = index(transport.clone());
    // As the feeds give them: the body followed by the files' names; then the delete.
    let with_files = |n: i64, body: &str, files: &[&str]| {
        let mut message = message(n);
        message.body = chat_domain::search::searchable_text(body, files.iter().copied());
        message
    };
    let mut deleted = message(1);
    deleted.body = String::new();
    deleted.deleted = true;
    let records: Vec<ChangeRecord> = [
        (
            1,
            with_files(1, "See attached", &["invoice-4471.pdf", "ｐａｒｃｅｌ.png"]),
        ),
        (1, with_files(2, "", &["Ｒｅｃｅｉｐｔ ①.pdf"])),
        (2, deleted),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (version, message))| ChangeRecord {
        sequence: format!("{}", 2000 + i),
        kind: if version == 1 {
            ChangeKind::Insert
        } else {
            ChangeKind::Modify
        },
        key: DocKey::of(&message),
        old: None,
        new: Some(message),
        version,
    })
    .collect();
    let report = index_changes(&index, &records).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.written, 3);
    let bulks = transport.bulks();
    assert_eq!(bulks.len(), 1);
    let sources: Vec<serde_json::Value> = bulks[0]
        .3
        .lines()
        .skip(1)
        .step_by(2)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The names are body text, in NFKC like the body: the mapping's analyzers give them
    // the body's partial-match rules.
    assert_eq!(
        sources[0]["body"],
        "See attached\ninvoice-4471.pdf\nparcel.png"
    );
    assert_eq!(sources[1]["body"], "Receipt 1.pdf");
    assert_eq!(sources[1]["live"], true);
    // The delete: a tombstone without text, over the document that had the names.
    assert_eq!(sources[2]["live"], false);
    assert_eq!(sources[2]["number"], 1);
    assert!(sources[2].get("body").is_none(), "{}", sources[2]);
}

#[tokio::test]
async fn bulk_bodies_are_split_by_bytes() {
    let transport = Scripted::ready(vec![
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
    for (_, _, _, body) in transport.bulks() {
        assert!(body.len() <= 2 * line + 1, "{}", body.len());
    }
}

const NOT_FOUND: &[u8] = br#"{"error":{"type":"index_not_found_exception","reason":"no such index [chat-messages]"},"status":404}"#;
const ALIAS_MISSING: &[u8] = br#"{"error":"alias [chat-messages] missing","status":404}"#;

#[tokio::test]
async fn the_first_start_installs_the_template_and_creates_the_versioned_index_with_its_alias() {
    // Given an empty cluster: no alias, no index of that name.
    let transport = Scripted::new(vec![
        Ok((200, br#"{"acknowledged":true}"#.to_vec())),
        Ok((404, ALIAS_MISSING.to_vec())),
        Ok((404, NOT_FOUND.to_vec())),
        Ok((200, fixture("created.json"))),
        Ok((200, fixture("search.json"))),
        Ok((404, NOT_FOUND.to_vec())),
    ]);
    let index = index(transport.clone());
    assert!(!index.is_ensured());
    assert!(index.ensure_index().await.unwrap(), "created");
    assert!(index.is_ensured());
    assert!(!index.ensure_index().await.unwrap(), "once per process");
    let requests = transport.requests();
    let calls: Vec<(Method, &str)> = requests[..4]
        .iter()
        .map(|(m, p, _, _)| (*m, p.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            (Method::Put, "/_index_template/chat-messages"),
            (Method::Get, "/_alias/chat-messages"),
            (Method::Get, "/chat-messages"),
            (Method::Put, "/chat-messages-v2"),
        ]
    );
    let template: serde_json::Value = serde_json::from_str(&requests[0].3).unwrap();
    assert_eq!(
        template["index_patterns"],
        serde_json::json!(["chat-messages-v*"])
    );
    assert_eq!(template["template"]["mappings"]["dynamic"], "strict");
    let created: serde_json::Value = serde_json::from_str(&requests[3].3).unwrap();
    assert_eq!(
        created["aliases"],
        serde_json::json!({"chat-messages": {"is_write_index": true}})
    );

    // Searches go through the alias, routed by chat.
    let hits = index
        .search(&request("app_abc-1", 7, "refund", None, 5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 4);
    let (method, path, query, _) = &transport.requests()[4];
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

#[tokio::test]
async fn another_instance_creating_the_index_first_is_success() {
    let transport = Scripted::new(vec![
        Ok((200, br#"{"acknowledged":true}"#.to_vec())),
        Ok((404, ALIAS_MISSING.to_vec())),
        Ok((404, NOT_FOUND.to_vec())),
        Ok((400, fixture("already_exists.json"))),
        Ok((200, ALIAS.to_vec())),
    ]);
    let index = index(transport.clone());
    assert!(!index.ensure_index().await.unwrap());
    assert!(index.is_ensured());
}

#[tokio::test]
async fn nothing_is_bulked_into_an_index_that_is_not_ensured() {
    // Given a cluster that refuses the template (say, while the role's permissions
    // propagate), then accepts it.
    let forbidden = br#"{"error":{"type":"security_exception","reason":"no permissions for [indices:admin/index_template/put]"},"status":403}"#;
    let transport = Scripted::new(vec![
        Ok((403, forbidden.to_vec())),
        Ok((200, br#"{"acknowledged":true}"#.to_vec())),
        Ok((200, ALIAS.to_vec())),
        Ok((200, fixture("bulk_ok.json"))),
    ]);
    let index = index(transport.clone());
    assert!(
        index.ensure_index().await.is_err(),
        "the start's ensure fails"
    );
    let records: Vec<ChangeRecord> = (4..=6)
        .step_by(2)
        .map(|n| ChangeRecord {
            sequence: format!("{}", 1000 + n),
            kind: ChangeKind::Insert,
            key: key("app_abc-1", 7, n),
            old: None,
            new: Some(message(n)),
            version: 1,
        })
        .collect();
    // When a batch arrives, the ensure is tried again first; it fails: the whole batch
    // fails, and nothing was sent to _bulk.
    let transport2 = Scripted::new(vec![Ok((403, forbidden.to_vec()))]);
    let refusing = self::index(transport2.clone());
    let report = index_changes(&refusing, &records).await;
    assert_eq!(report.failures.len(), 2);
    assert!(report.indexed.is_empty());
    assert!(
        transport2.bulks().is_empty(),
        "no bulk before the index is ensured"
    );
    let why = chain(&report.failures[0].error);
    assert!(why.contains("not ready"), "{why}");
    // The next batch finds the cluster ready: ensured, then written.
    let report = index_changes(&index, &records).await;
    assert_eq!(report.indexed, ["1004", "1006"]);
    assert_eq!(transport.bulks().len(), 1);
}

#[tokio::test]
async fn an_index_named_like_the_alias_is_refused() {
    let transport = Scripted::new(vec![
        Ok((200, br#"{"acknowledged":true}"#.to_vec())),
        Ok((404, ALIAS_MISSING.to_vec())),
        Ok((200, br#"{"chat-messages":{"settings":{}}}"#.to_vec())),
    ]);
    let index = index(transport.clone());
    let error = chain(&index.ensure_index().await.unwrap_err());
    assert!(error.contains("in the way"), "{error}");
    assert!(!index.is_ensured());
}

#[tokio::test]
async fn reindex_builds_a_new_index_swaps_the_alias_and_catches_up() {
    let running = br#"{"completed":false,"task":{"status":{"total":3,"created":1}}}"#;
    let done = |created: u64| {
        format!(r#"{{"completed":true,"response":{{"took":5,"created":{created},"updated":0,"version_conflicts":2,"failures":[]}}}}"#)
            .into_bytes()
    };
    let transport = Scripted::new(vec![
        Ok((200, br#"{"acknowledged":true}"#.to_vec())), // template
        Ok((200, ALIAS.to_vec())),                       // the alias -> chat-messages-v2
        Ok((200, fixture("created.json"))),              // the new index
        Ok((200, br#"{"task":"node-1:41"}"#.to_vec())),  // first copy
        Ok((200, running.to_vec())),
        Ok((200, done(3))),
        Ok((200, br#"{"acknowledged":true}"#.to_vec())), // swap
        Ok((200, br#"{"task":"node-1:42"}"#.to_vec())),  // catch-up copy
        Ok((200, done(1))),
    ]);
    let index = index(transport.clone());
    let report = index.reindex(Duration::from_millis(1)).await.unwrap();
    assert_eq!(report.from, ["chat-messages-v2"]);
    assert!(report.to.starts_with("chat-messages-v2-"), "{}", report.to);
    assert_eq!((report.copied, report.caught_up), (3, 1));
    let requests = transport.requests();
    let calls: Vec<(Method, String)> = requests
        .iter()
        .map(|(m, p, _, _)| (*m, p.clone()))
        .collect();
    assert_eq!(calls[2], (Method::Put, format!("/{}", report.to)));
    assert_eq!(calls[3], (Method::Post, "/_reindex".to_owned()));
    assert_eq!(
        requests[3].2,
        [("wait_for_completion".to_owned(), "false".to_owned())]
    );
    assert_eq!(calls[4], (Method::Get, "/_tasks/node-1:41".to_owned()));
    assert_eq!(calls[6], (Method::Post, "/_aliases".to_owned()));
    assert_eq!(calls[7], (Method::Post, "/_reindex".to_owned()));
    let copy: serde_json::Value = serde_json::from_str(&requests[3].3).unwrap();
    assert_eq!(copy["dest"]["version_type"], "external");
    assert_eq!(copy["conflicts"], "proceed");
    let swap: serde_json::Value = serde_json::from_str(&requests[6].3).unwrap();
    assert_eq!(
        swap["actions"],
        serde_json::json!([
            {"remove": {"index": "chat-messages-v2", "alias": "chat-messages"}},
            {"add": {"index": report.to, "alias": "chat-messages", "is_write_index": true}}
        ])
    );
}

#[tokio::test]
async fn a_failed_copy_leaves_the_alias_where_it_was() {
    let transport = Scripted::new(vec![
        Ok((200, br#"{"acknowledged":true}"#.to_vec())),
        Ok((200, br#"{"chat-messages-v1x":{"aliases":{"chat-messages":{}}}}"#.to_vec())),
        Ok((200, fixture("created.json"))),
        Ok((200, br#"{"task":"node-1:41"}"#.to_vec())),
        Ok((200, br#"{"completed":true,"response":{"created":1,"failures":[{"index":"chat-messages-v2","id":"a/1/1","cause":{"type":"mapper_parsing_exception","reason":"failed to parse"}}]}}"#.to_vec())),
    ]);
    let index = index(transport.clone());
    let error = chain(&index.reindex(Duration::from_millis(1)).await.unwrap_err());
    assert!(error.contains("mapper_parsing_exception"), "{error}");
    assert!(
        transport.requests().iter().all(|r| r.1 != "/_aliases"),
        "no swap"
    );
    assert_eq!(transport.requests()[2].1, "/chat-messages-v2");
}

/// An error and its sources, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn message(n: i64) -> Message {
    Message {
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
    }
}
