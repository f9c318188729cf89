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

/// The send slots behind the AWS sender's per-endpoint cap, times given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slots_are_leased_up_to_the_cap_and_free_again_when_released_or_ended() {
    use chat_domain::Timestamp;
    use chat_domain::webhooks::EndpointId;
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    let app = chat_domain::AppToken::parse("app_slots").unwrap();
    let endpoint = EndpointId::generate();
    let other = EndpointId::generate();
    let at = |ms: i64| Timestamp(1_800_000_000_000 + ms);
    let acquire = |endpoint: &EndpointId, first: u32, holder: &str, now: i64| {
        let (store, app, endpoint, holder) = (
            store.clone(),
            app.clone(),
            endpoint.clone(),
            holder.to_owned(),
        );
        async move {
            store
                .acquire_endpoint_slot(&app, &endpoint, 2, first, &holder, at(now), at(now + 1_000))
                .await
                .unwrap()
        }
    };
    // Given a cap of two, two holders get the two slots, whichever slot they try first.
    let a = acquire(&endpoint, 1, "a", 0).await.expect("a slot for a");
    let b = acquire(&endpoint, 1, "b", 0).await.expect("a slot for b");
    assert_ne!(a.slot, b.slot);
    // A third gets none while both leases run; another endpoint's slots are its own.
    assert_eq!(acquire(&endpoint, 0, "c", 500).await, None);
    assert!(acquire(&other, 0, "x", 500).await.is_some());
    // Released, a slot is free at once; a late release by a former holder frees nothing.
    store
        .release_endpoint_slot(&app, &endpoint, &a)
        .await
        .unwrap();
    let c = acquire(&endpoint, 0, "c", 600)
        .await
        .expect("the released slot");
    assert_eq!(c.slot, a.slot);
    store
        .release_endpoint_slot(&app, &endpoint, &a)
        .await
        .unwrap();
    assert_eq!(acquire(&endpoint, 0, "d", 700).await, None);
    // A holder that never releases (a crashed sender) holds its slot until its lease ends.
    let d = acquire(&endpoint, 0, "d", 1_000)
        .await
        .expect("b's lease has ended");
    assert_eq!(d.slot, b.slot);
}
