//! The webhook conformance suite against the SQLite store, in memory and on a file.

use std::sync::Arc;

use chat_embedded::SqliteStore;
use chat_store_conformance::webhooks::WebhooksUnderTest;

async fn in_memory() -> WebhooksUnderTest {
    let store = Arc::new(SqliteStore::open_in_memory().expect("open in memory"));
    WebhooksUnderTest {
        chats: store.clone(),
        webhooks: store,
        guard: None,
    }
}

async fn file_backed() -> WebhooksUnderTest {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("chat.db")).expect("open file"));
    WebhooksUnderTest {
        chats: store.clone(),
        webhooks: store,
        guard: Some(Box::new(dir)),
    }
}

mod memory {
    chat_store_conformance::webhook_conformance_tests!(super::in_memory());
}

mod file {
    chat_store_conformance::webhook_conformance_tests!(super::file_backed());
}
