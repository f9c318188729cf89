//! The webhook endpoint suite against DynamoDB (moto's server mode), each test on a table
//! of its own. Deliveries come from the table's stream, as on AWS: the feed reads every
//! record so far and records each event's deliveries as the stream function does, so a
//! second pass is a stream batch delivered again.

use std::sync::Arc;

use chat_dynamodb::webhooks::{FeedItem, feed_items};
use chat_store_conformance::webhooks::EndpointsUnderTest;

async fn on_emulator() -> EndpointsUnderTest {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    let fed = store.clone();
    EndpointsUnderTest {
        chats: Arc::new(store.clone()),
        webhooks: Arc::new(store),
        feed: Arc::new(move || {
            let store = fed.clone();
            Box::pin(async move {
                let records = chat_dynamodb::moto_stream::stream_records(&store).await;
                for (sequence, items) in feed_items(&records) {
                    let items = items.unwrap_or_else(|e| panic!("record {sequence}: {e}"));
                    for item in items {
                        if let FeedItem::Event(event) = item {
                            store.record_event(&event).await.expect("record_event");
                        }
                    }
                }
            })
        }),
        guard: None,
    }
}

mod dynamodb {
    chat_store_conformance::webhook_endpoint_conformance_tests!(super::on_emulator());
}
