//! The search feed as the Lambda will run it, on the emulator: the store writes, the
//! table's stream (read with the DynamoDB Streams API) delivers the records, they become
//! `aws_lambda_events` records (the JSON Lambda sends), then `stream::change_records`,
//! then the one indexer into an embedded index.

use aws_lambda_events::event::dynamodb::EventRecord;
use chat_domain::*;
use chat_dynamodb::stream::change_records;
use chat_search_tantivy::TantivyIndex;
use chat_store_conformance::fixtures::*;

async fn hits(index: &TantivyIndex, app: &AppToken, chat: u32, query: &str) -> Vec<u32> {
    let request = SearchRequest {
        app: app.clone(),
        scope: chat_domain::search::SearchScope::Chat(chat_no(chat)),
        query: SearchQuery::parse(query).unwrap(),
        after: None,
        limit: 50,
    };
    let mut numbers: Vec<u32> = index
        .search(&request)
        .await
        .expect("search")
        .iter()
        .map(|hit| hit.number.get())
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tables_stream_feeds_the_index_through_the_indexer() {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    let dynamo = std::sync::Arc::new(store);
    let store: Store = dynamo.clone();
    let app = create_app(&store, "app_stream").await;
    let chat = create_chat(&store, &app, "cust-1", at(1_000)).await;
    let scope = agent_scope(&app, chat.number.get());
    send(&store, &scope, "Refund requested for order 42", at(2_000)).await;
    send(&store, &scope, "Shipping delayed again", at(3_000)).await;
    let mut with_key = new_message(&scope, "Invoice attached here", at(4_000));
    with_key.client_message_id = Some(cmid("k-1"));
    store.send_message(with_key).await.expect("send with a key");
    send(&store, &scope, "Temporary secret code", at(5_000)).await;
    let edited = store
        .edit_message(
            change(&scope, 2, None, at(6_000)),
            body("Package arrived safely"),
        )
        .await
        .expect("edit");
    assert_eq!(edited.body, "Package arrived safely");
    store
        .delete_message(change(&scope, 4, None, at(7_000)))
        .await
        .expect("delete");
    // Unread counters and read watermarks are written too (by a customer's message and an
    // agent's read): they are in the stream and are no search changes.
    send(
        &store,
        &customer_scope(&app, chat.number.get(), "cust-1"),
        "Thanks",
        at(7_500),
    )
    .await;
    let agent = UserIdentity {
        app: app.clone(),
        user_id: user("agent-2"),
        role: Role::Agent,
    };
    store
        .mark_chat_read(MarkRead {
            scope: scope.clone(),
            reader: agent,
            up_to: None,
        })
        .await
        .expect("mark read");

    let lambda: Vec<EventRecord> = chat_dynamodb::moto_stream::stream_records(&dynamo).await;
    let types: std::collections::BTreeSet<String> = lambda
        .iter()
        .filter_map(|r| {
            let image = serde_json::to_value(&r.change.new_image).ok()?;
            image["type"]["S"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(
        types.contains("READ") && types.contains("UNREAD"),
        "watermark and counter items reach the stream: {types:?}"
    );
    let converted = change_records(&lambda);
    assert_eq!(converted.len(), lambda.len());
    let mut records = Vec::new();
    let mut skipped = 0;
    for (sequence, result) in converted {
        match result {
            Ok(Some(record)) => {
                assert_eq!(record.sequence, sequence);
                records.push(record);
            }
            Ok(None) => skipped += 1,
            Err(e) => panic!("record {sequence}: {e:?}"),
        }
    }
    assert!(
        skipped > 0,
        "application, chat, key, watermark and counter items are skipped"
    );
    // Every message's insert, the edit (version 2) and the delete (version 2) arrived; how
    // many records each write made is the emulator's business.
    let versions = |number: u32, kind: ChangeKind| -> Vec<u64> {
        records
            .iter()
            .filter(|r| r.key.number.get() == number && r.kind == kind)
            .map(|r| r.version)
            .collect()
    };
    for number in 1..=4 {
        assert!(
            versions(number, ChangeKind::Insert).contains(&1),
            "message {number} inserted at version 1"
        );
    }
    assert_eq!(versions(2, ChangeKind::Modify), [2]);
    assert_eq!(versions(4, ChangeKind::Modify), [2]);
    assert!(versions(1, ChangeKind::Modify).is_empty());
    let deleted = records
        .iter()
        .find(|r| r.key.number.get() == 4 && r.kind == ChangeKind::Modify)
        .unwrap();
    assert!(deleted.new.as_ref().unwrap().deleted);
    assert_eq!(deleted.old.as_ref().unwrap().body, "Temporary secret code");

    let index = TantivyIndex::in_memory().expect("an index in memory");
    let report = index_changes(&index, &records).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.indexed.len(), records.len());

    let n = chat.number.get();
    let check = async |index: &TantivyIndex| {
        assert_eq!(hits(index, &app, n, "fund").await, [1], "partial word");
        assert_eq!(hits(index, &app, n, "REQUEST ord").await, [1]);
        assert_eq!(hits(index, &app, n, "voic").await, [3]);
        assert_eq!(hits(index, &app, n, "arriv").await, [2], "the new body");
        assert!(hits(index, &app, n, "ship").await.is_empty(), "not the old");
        assert!(hits(index, &app, n, "delayed").await.is_empty());
        assert!(hits(index, &app, n, "secret").await.is_empty(), "deleted");
        assert!(hits(index, &app, n, "Temporary").await.is_empty());
    };
    check(&index).await;

    // Lambda delivers at least once: the same batch again changes nothing.
    let again = index_changes(&index, &records).await;
    assert!(again.failures.is_empty(), "{:?}", again.failures);
    assert_eq!((again.written, again.stale), (0, records.len()));
    check(&index).await;
}
