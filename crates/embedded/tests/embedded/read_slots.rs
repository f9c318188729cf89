//! A burst of reads waits for a reader thread as futures, not as blocked threads.
//!
//! Alone in its test binary: it counts the process's threads.

use chat_embedded::SqliteStore;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reads_starts_no_thread() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("skipped: no /proc/self/task to count threads");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("chat.sqlite3")).unwrap();
    store.outbox_len().await.unwrap();
    let before = threads();

    let reads = (0..200).map(|_| store.outbox_len());
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(|r| matches!(r, Ok(0))), "{results:?}");

    // Tokio keeps an idle blocking thread for 10 s, so a thread started for the burst
    // would still be counted here. When reads went through `spawn_blocking` and waited
    // there for one of the few connections, this burst started 40 to 120 threads.
    let after = threads();
    assert!(
        after <= before,
        "threads: {before} before the burst, {after} after"
    );
}
