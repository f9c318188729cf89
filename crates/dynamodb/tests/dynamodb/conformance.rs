//! The store conformance suite and the presence suite against DynamoDB (moto's server
//! mode), each test on a table of its own.

use std::sync::Arc;

use chat_store_conformance::StoreUnderTest;

async fn on_emulator() -> StoreUnderTest {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    StoreUnderTest::new(Arc::new(store))
}

mod dynamodb {
    chat_store_conformance::conformance_tests!(super::on_emulator());
}

/// The presence suite: leases in a fresh table, chats in the same table.
async fn presence_on_emulator() -> chat_store_conformance::presence::PresenceUnderTest {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    chat_store_conformance::presence::PresenceUnderTest {
        presence: Arc::new(store.clone()),
        chats: Arc::new(store),
        guard: None,
    }
}

mod presence {
    chat_store_conformance::presence_conformance_tests!(super::presence_on_emulator());
}

/// The attachment suite: uploads and chats in one fresh table.
async fn attachments_on_emulator() -> chat_store_conformance::attachments::AttachmentsUnderTest {
    let (store, _requests) = chat_dynamodb::moto::fresh_store().await;
    chat_store_conformance::attachments::AttachmentsUnderTest {
        uploads: Arc::new(store.clone()),
        chats: Arc::new(store),
        guard: None,
    }
}

mod attachments {
    chat_store_conformance::attachment_conformance_tests!(super::attachments_on_emulator());
}
