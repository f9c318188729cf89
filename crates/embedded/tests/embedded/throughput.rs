//! Store-level write throughput, for judging group commit (not a pass/fail gate beyond a
//! low floor). Run: `cargo test --release -p chat-embedded --test embedded throughput:: -- --ignored
//! --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use chat_domain::NewMessage;
use chat_embedded::SqliteStore;
use chat_store_conformance::fixtures::*;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run on demand in release mode"]
async fn send_message_throughput_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Store = Arc::new(SqliteStore::open(&dir.path().join("chat.db")).unwrap());
    let app = create_app(&store, "app_throughput").await;
    let chats = 50;
    for n in 0..chats {
        create_chat(&store, &app, &format!("cust-{n}"), at(0)).await;
    }
    let (tasks_n, per_task) = (256_u32, 80_u32);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for t in 0..tasks_n {
        let (store, app) = (store.clone(), app.clone());
        tasks.spawn(async move {
            let scope = agent_scope(&app, t % chats + 1);
            for i in 0..per_task {
                let keyed = i % 2 == 0;
                store
                    .send_message(NewMessage {
                        client_message_id: keyed.then(|| cmid(&format!("t{t}-{i}"))),
                        ..new_message(&scope, "a typical chat message of some length", at(1))
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let total = f64::from(tasks_n * per_task);
    let rate = total / started.elapsed().as_secs_f64();
    println!(
        "{total} sends in {:?}: {rate:.0} sends/s",
        started.elapsed()
    );
    assert!(rate > 1_000.0, "{rate:.0} sends/s");
}
