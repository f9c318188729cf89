//! The store conformance suite against both ways of opening the SQLite store.

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
