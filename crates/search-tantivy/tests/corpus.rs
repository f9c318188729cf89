//! The multi-script corpus (`tests/fixtures/corpus.json`: Japanese, Chinese, Korean, Thai,
//! German, emoji-laden English) and its expected hits, against the tantivy index. The
//! OpenSearch live test runs the same file against a cluster.

use chat_domain::*;
use chat_search_tantivy::TantivyIndex;
use serde_json::Value;

fn corpus() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_script_finds_what_the_corpus_expects() {
    // Given the corpus's messages in one chat.
    let corpus = corpus();
    let index = TantivyIndex::in_memory().unwrap();
    let app = AppToken::parse("app_corpus").unwrap();
    let chat = ChatNumber::new(1).unwrap();
    let ops: Vec<IndexOp> = corpus["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            IndexOp::Upsert(SearchDocument {
                key: DocKey {
                    app: app.clone(),
                    chat,
                    number: MessageNumber::new(m[0].as_i64().unwrap()).unwrap(),
                },
                body: m[1].as_str().unwrap().to_owned(),
                sender_id: UserId::parse("u").unwrap(),
                created_at: Timestamp(1),
                version: 1,
            })
        })
        .collect();
    for outcome in index.apply(&ops).await.unwrap() {
        outcome.unwrap();
    }
    // When each query runs, then its hits and scores are the expected ones, in order.
    let mut wrong = Vec::new();
    for query in corpus["queries"].as_array().unwrap() {
        let text = query[0].as_str().unwrap();
        let expected: Vec<(u32, u32)> = query[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_u64().unwrap() as u32, h[1].as_u64().unwrap() as u32))
            .collect();
        let hits = index
            .search(&SearchRequest {
                app: app.clone(),
                scope: chat_domain::search::SearchScope::Chat(chat),
                query: SearchQuery::parse(text).unwrap(),
                after: None,
                limit: 50,
            })
            .await
            .unwrap();
        let found: Vec<(u32, u32)> = hits.iter().map(|h| (h.number.get(), h.score)).collect();
        if found != expected {
            wrong.push(format!("{text}: found {found:?}, expected {expected:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_query_of_emoji_only_is_refused() {
    assert!(SearchQuery::parse("🎉🙏").is_err());
}
