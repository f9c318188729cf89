//! The search outbox: written in the transaction of each message change, never for a
//! failed one, and filled with the existing messages when an older database is migrated.

use std::sync::Arc;

use chat_domain::*;
use chat_embedded::SqliteStore;
use chat_store_conformance::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_queued_with_growing_versions_and_failed_writes_queue_nothing() {
    let sqlite = Arc::new(SqliteStore::open_in_memory().unwrap());
    let store: Store = sqlite.clone();
    let app = create_app(&store, "app_outbox").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let scope = agent_scope(&app, 1);
    send(&store, &scope, "first", at(2)).await;
    store
        .edit_message(change(&scope, 1, None, at(3)), body("edited"))
        .await
        .unwrap();
    store
        .delete_message(change(&scope, 1, None, at(4)))
        .await
        .unwrap();
    // Failures: a chat that does not exist, an edit of a deleted message, a second delete.
    assert!(
        store
            .send_message(new_message(&agent_scope(&app, 9), "x", at(5)))
            .await
            .is_err()
    );
    assert!(
        store
            .edit_message(change(&scope, 1, None, at(6)), body("again"))
            .await
            .is_err()
    );
    store
        .delete_message(change(&scope, 1, None, at(7)))
        .await
        .unwrap();

    let records = sqlite.outbox_batch(100).await.unwrap();
    let kinds: Vec<ChangeKind> = records.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::Insert, ChangeKind::Modify, ChangeKind::Modify]
    );
    // The image is the message as it is now, with its current version (3: sent, edited,
    // deleted), so every record converges on the newest state.
    for record in &records {
        assert_eq!(record.version, 3);
        assert!(record.new.as_ref().unwrap().deleted);
        assert_eq!(record.key.id(), format!("{app}/1/1"));
    }
    // Acknowledged rows go; unknown ones are ignored (a re-delivered batch).
    let sequences: Vec<String> = records.iter().map(|r| r.sequence.clone()).collect();
    assert_eq!(sqlite.outbox_ack(&sequences[..2]).await.unwrap(), 2);
    assert_eq!(sqlite.outbox_ack(&sequences).await.unwrap(), 1);
    assert_eq!(sqlite.outbox_len().await.unwrap(), 0);

    // A reindex queues every message of the scope; unknown scopes are NotFound.
    send(&store, &scope, "second", at(8)).await;
    sqlite
        .outbox_ack(&[sqlite.outbox_batch(1).await.unwrap()[0].sequence.clone()])
        .await
        .unwrap();
    assert_eq!(
        sqlite
            .enqueue_reindex(Some(app.clone()), None)
            .await
            .unwrap(),
        2
    );
    let chat = ChatNumber::new(1).unwrap();
    assert_eq!(
        sqlite
            .enqueue_reindex(Some(app.clone()), Some(chat))
            .await
            .unwrap(),
        2
    );
    let missing = sqlite
        .enqueue_reindex(Some(app.clone()), Some(ChatNumber::new(5).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    let missing = sqlite
        .enqueue_reindex(Some(AppToken::parse("app_nope").unwrap()), None)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), ErrorCode::NotFound);
    assert_eq!(sqlite.outbox_len().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_a_version_1_database_queues_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    // A database as the first release wrote it: migration 1 only.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE applications (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL, secret_generation INTEGER NOT NULL DEFAULT 1,
                chats_count INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL) STRICT;
             CREATE TABLE chats (app_id INTEGER NOT NULL REFERENCES applications (id),
                number INTEGER NOT NULL, customer_id TEXT NOT NULL, subject TEXT,
                status TEXT NOT NULL CHECK (status IN ('OPEN', 'RESOLVED')),
                messages_count INTEGER NOT NULL DEFAULT 0, last_message_at INTEGER,
                last_activity_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL, PRIMARY KEY (app_id, number)) STRICT, WITHOUT ROWID;
             CREATE INDEX chats_inbox ON chats (app_id, last_activity_at DESC, number DESC);
             CREATE INDEX chats_inbox_status
                ON chats (app_id, status, last_activity_at DESC, number DESC);
             CREATE INDEX chats_inbox_customer
                ON chats (app_id, customer_id, last_activity_at DESC, number DESC);
             CREATE TABLE messages (app_id INTEGER NOT NULL, chat_number INTEGER NOT NULL,
                number INTEGER NOT NULL, body TEXT NOT NULL, sender_id TEXT NOT NULL,
                sender_role TEXT NOT NULL CHECK (sender_role IN ('AGENT', 'CUSTOMER')),
                client_message_id TEXT, created_at INTEGER NOT NULL, edited_at INTEGER,
                deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
                PRIMARY KEY (app_id, chat_number, number),
                FOREIGN KEY (app_id, chat_number) REFERENCES chats (app_id, number))
                STRICT, WITHOUT ROWID;
             CREATE UNIQUE INDEX messages_client_message_id
                ON messages (app_id, chat_number, client_message_id)
                WHERE client_message_id IS NOT NULL;
             INSERT INTO applications VALUES (1, 'app_old', 'Old', 1, 1, 0, 0);
             INSERT INTO chats VALUES (1, 1, 'c', NULL, 'OPEN', 2, 2, 2, 0, 2);
             INSERT INTO messages VALUES (1, 1, 1, 'hello', 'c', 'CUSTOMER', NULL, 1, NULL, 0);
             INSERT INTO messages VALUES (1, 1, 2, 'world', 'c', 'CUSTOMER', NULL, 2, NULL, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let records = store.outbox_batch(10).await.unwrap();
    let bodies: Vec<&str> = records
        .iter()
        .map(|r| r.new.as_ref().unwrap().body.as_str())
        .collect();
    assert_eq!(bodies, ["hello", "world"]);
    assert!(records.iter().all(|r| r.version == 1));
}
