//! The store conformance suite against both ways of opening the SQLite store, and the
//! presence suite against the in-memory leases.

use std::sync::Arc;

use chat_embedded::SqliteStore;
use chat_store_conformance::StoreUnderTest;

async fn in_memory() -> StoreUnderTest {
    StoreUnderTest::new(Arc::new(
        SqliteStore::open_in_memory().expect("open in memory"),
    ))
}

async fn file_backed() -> StoreUnderTest {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("chat.db")).expect("open file");
    StoreUnderTest::with_guard(Arc::new(store), dir)
}

mod memory {
    chat_store_conformance::conformance_tests!(super::in_memory());
}

mod file {
    chat_store_conformance::conformance_tests!(super::file_backed());
}

async fn presence_in_memory() -> chat_store_conformance::presence::PresenceUnderTest {
    chat_store_conformance::presence::PresenceUnderTest {
        presence: Arc::new(chat_embedded::MemoryPresence::new()),
        chats: Arc::new(SqliteStore::open_in_memory().expect("open in memory")),
        guard: None,
    }
}

mod presence {
    chat_store_conformance::presence_conformance_tests!(super::presence_in_memory());
}
