//! Against a real OpenSearch when `OPENSEARCH_URL` is set (e.g. `http://127.0.0.1:9200`,
//! security plugin off; `OPENSEARCH_USER`/`OPENSEARCH_PASSWORD` for basic auth). No
//! OpenSearch server can be installed on this project's machines, so this test is skipped
//! there; it prints why.
//!
//! It runs the same matching, ranking, versioning and paging checks as the tantivy index
//! on the same documents and compares the answers of both indexes; runs the multi-script
//! corpus (`crates/search-tantivy/tests/fixtures/corpus.json`) against its expected hits;
//! rebuilds the index with `reindex` and asks again; and checks that nothing is written
//! while the index cannot be ensured.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chat_domain::*;
use chat_opensearch::opensearch::auth::Credentials;
use chat_opensearch::{Auth, ClientTransport, Config, Method, OpenSearchIndex, Transport};
use chat_search_tantivy::TantivyIndex;
use common::*;

#[tokio::test]
#[ignore = "needs a cluster: OPENSEARCH_URL=... cargo test -p chat-opensearch --test live -- --ignored"]
async fn live_opensearch_matches_the_embedded_index() {
    let url = std::env::var("OPENSEARCH_URL").expect(
        "OPENSEARCH_URL is not set: no OpenSearch server can be installed here; set it to a \
         cluster's URL (OPENSEARCH_USER/OPENSEARCH_PASSWORD for basic auth)",
    );
    let auth = match (
        std::env::var("OPENSEARCH_USER"),
        std::env::var("OPENSEARCH_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) => Auth::Credentials(Credentials::Basic(user, password)),
        _ => Auth::None,
    };
    let transport: Arc<dyn Transport> =
        Arc::new(ClientTransport::connect(&url, auth, "es", Duration::from_secs(30)).unwrap());
    let name = format!(
        "chat-messages-test-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let index = OpenSearchIndex::new(
        transport.clone(),
        Config {
            index: name.clone(),
            shards: 2,
            replicas: 0,
            ..Config::default()
        },
    );
    assert!(index.ensure_index().await.unwrap());
    assert!(!index.ensure_index().await.unwrap(), "idempotent");

    let embedded = TantivyIndex::in_memory().unwrap();
    let mut ops = vec![
        upsert("app_a", 1, 1, "Your order was Refunded", 1),
        upsert("app_a", 1, 2, "Café au lait, no sugar", 1),
        upsert("app_a", 1, 3, "I know nobody", 1),
        upsert("app_a", 1, 4, "a refund", 1),
        upsert("app_a", 1, 5, "refunds and Straße", 1),
        upsert("app_a", 1, 6, "it is Supercalifragilisticexpialidocious", 1),
        upsert("app_a", 1, 7, "to be deleted refund", 1),
        upsert("app_a", 2, 1, "refund in another chat", 1),
        upsert("app_a1", 1, 1, "refund in another app", 1),
        // Attachments' names follow the body (chat_domain::search::searchable_text).
        upsert(
            "app_a",
            1,
            8,
            &search::searchable_text("see attached", ["invoice-4471.pdf", "parcel.png"]),
            1,
        ),
        upsert(
            "app_a",
            1,
            9,
            &search::searchable_text("", ["Refund-form.pdf"]),
            1,
        ),
    ];
    ops.extend((10..40).map(|n| upsert("app_a", 1, n, &format!("ticket {n}"), 1)));
    ops.push(delete("app_a", 1, 7, 2));
    ops.push(upsert("app_a", 1, 7, "stale refund", 1));
    for target in [&index as &dyn SearchIndex, &embedded as &dyn SearchIndex] {
        for outcome in target.apply(&ops).await.unwrap() {
            outcome.unwrap();
        }
    }
    refresh(&*transport, &name).await;

    for query in [
        "fund",
        "REFUNDED",
        "cafe",
        "CAFÉ",
        "no",
        "strasse",
        "refund",
        "califragilisticexpialido",
        "ticket",
        "refund no",
        "nothing",
        "invoice",
        "4471 pdf",
        "attached parcel",
        "form",
    ] {
        let mut pages = Vec::new();
        for target in [&index as &dyn SearchIndex, &embedded as &dyn SearchIndex] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let hits = target
                    .search(&request("app_a", 1, query, after, 7))
                    .await
                    .unwrap();
                let Some(last) = hits.last() else { break };
                after = Some(last.cursor(false));
                seen.extend(hits.iter().map(|h| (h.score, h.number.get())));
            }
            pages.push(seen);
        }
        assert_eq!(pages[0], pages[1], "{query}: OpenSearch vs tantivy");
    }

    // The multi-script corpus, in chat 9 of both indexes.
    let corpus: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../search-tantivy/tests/fixtures/corpus.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let corpus_ops: Vec<IndexOp> = corpus["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            upsert(
                "app_a",
                9,
                m[0].as_i64().unwrap(),
                m[1].as_str().unwrap(),
                1,
            )
        })
        .collect();
    for target in [&index as &dyn SearchIndex, &embedded as &dyn SearchIndex] {
        for outcome in target.apply(&corpus_ops).await.unwrap() {
            outcome.unwrap();
        }
    }
    refresh(&*transport, &name).await;
    for round in ["before reindex", "after reindex"] {
        let mut wrong = Vec::new();
        for query in corpus["queries"].as_array().unwrap() {
            let text = query[0].as_str().unwrap();
            let expected: Vec<(u32, u32)> = query[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_u64().unwrap() as u32, h[1].as_u64().unwrap() as u32))
                .collect();
            let found: Vec<(u32, u32)> = index
                .search(&request("app_a", 9, text, None, 50))
                .await
                .unwrap()
                .iter()
                .map(|h| (h.number.get(), h.score))
                .collect();
            if found != expected {
                wrong.push(format!("{text}: found {found:?}, expected {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{round}:\n{}", wrong.join("\n"));
        if round == "before reindex" {
            // Rebuild into a new index behind the alias; the answers stay.
            let report = index.reindex(Duration::from_millis(200)).await.unwrap();
            assert_eq!(report.from, [format!("{name}-v2")]);
            assert!(report.copied >= corpus_ops.len() as u64, "{report:?}");
            refresh(&*transport, &name).await;
        }
    }

    // A plain index in the way of an alias: nothing is written, every operation fails.
    let blocked = format!("{name}-blocked");
    let created = transport
        .request(
            Method::Put,
            &format!("/{blocked}"),
            &[],
            "application/json",
            None,
        )
        .await
        .unwrap();
    assert!(created.status < 300, "{}", created.status);
    let refusing = OpenSearchIndex::new(
        transport.clone(),
        Config {
            index: blocked.clone(),
            shards: 1,
            replicas: 0,
            ..Config::default()
        },
    );
    assert!(refusing.ensure_index().await.is_err());
    assert!(
        refusing.apply(&corpus_ops[..2]).await.is_err(),
        "not ensured: refused"
    );
    let count = transport
        .request(
            Method::Get,
            &format!("/{blocked}/_count"),
            &[],
            "application/json",
            None,
        )
        .await
        .unwrap();
    let count: serde_json::Value = serde_json::from_slice(&count.body).unwrap();
    assert_eq!(count["count"], 0, "nothing written");

    for index in [format!("{name}-v2*"), blocked] {
        let _ = transport
            .request(
                Method::Post,
                &format!("/{index}/_close"),
                &[],
                "application/json",
                None,
            )
            .await;
    }
}

async fn refresh(transport: &dyn Transport, name: &str) {
    let refresh = transport
        .request(
            Method::Post,
            &format!("/{name}/_refresh"),
            &[],
            "application/json",
            None,
        )
        .await
        .unwrap();
    assert!(refresh.status < 300, "refresh: {}", refresh.status);
}
