//! The attachment conformance suite against the SQLite store, in memory and on a file.

use std::sync::Arc;

use chat_embedded::SqliteStore;
use chat_store_conformance::attachments::AttachmentsUnderTest;

async fn in_memory() -> AttachmentsUnderTest {
    let store = Arc::new(SqliteStore::open_in_memory().expect("open in memory"));
    AttachmentsUnderTest {
        chats: store.clone(),
        uploads: store,
        guard: None,
    }
}

async fn file_backed() -> AttachmentsUnderTest {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("chat.db")).expect("open file"));
    AttachmentsUnderTest {
        chats: store.clone(),
        uploads: store,
        guard: Some(Box::new(dir)),
    }
}

mod memory {
    chat_store_conformance::attachment_conformance_tests!(super::in_memory());
}

mod file {
    chat_store_conformance::attachment_conformance_tests!(super::file_backed());
}
