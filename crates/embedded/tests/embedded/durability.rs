//! Acknowledged writes are on disk: across close and reopen, and across `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::*;
use chat_embedded::{SCHEMA_VERSION, SqliteStore};
use chat_store_conformance::fixtures::*;
use tokio::task::JoinSet;

const KILL9_DB_ENV: &str = "CHAT_EMBEDDED_KILL9_DB";

fn open(path: &Path) -> Store {
    Arc::new(SqliteStore::open(path).expect("open"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_counts_survive_close_and_reopen() {
    // Given a file store with applications, chats, messages, an edit and a delete.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let sqlite = Arc::new(SqliteStore::open(&path).expect("open"));
    let store: Store = sqlite.clone();
    let app = create_app(&store, "app_durable").await;
    let other = create_app(&store, "app_other").await;
    for n in 1..=3 {
        create_chat(&store, &app, &format!("cust-{n}"), at(n)).await;
    }
    let scope = agent_scope(&app, 2);
    for i in 1..=5 {
        send(&store, &scope, &format!("m{i}"), at(10 + i)).await;
    }
    store
        .send_message(NewMessage {
            client_message_id: Some(cmid("keyed")),
            ..new_message(&scope, "keyed", at(20))
        })
        .await
        .unwrap();
    store
        .edit_message(change(&scope, 1, None, at(30)), body("m1 edited"))
        .await
        .unwrap();
    store
        .delete_message(change(&scope, 6, None, at(31)))
        .await
        .unwrap();
    store
        .update_chat(
            &agent_scope(&app, 3),
            ChatUpdate {
                subject: Some(Some(subject("Kept"))),
                status: Some(ChatStatus::Resolved),
                now: at(40),
            },
        )
        .await
        .unwrap();
    store
        .update_application(
            &other,
            chat_domain::ApplicationUpdate {
                name: Some(AppName::parse("Renamed").unwrap()),
                routing: None,
                now: at(50),
            },
        )
        .await
        .unwrap();
    let apps = (
        store.application(&app).await.unwrap(),
        store.application(&other).await.unwrap(),
    );
    let chats = store.chats(&query(&app, 100)).await.unwrap();
    let messages = store
        .messages(&scope, &range(None, None, false, 100))
        .await
        .unwrap();

    // When it is closed and the file reopened.
    drop(store);
    drop(Arc::into_inner(sqlite).expect("the only reference"));
    let store = open(&path);

    // Then everything reads back the same.
    let reopened_apps = (
        store.application(&app).await.unwrap(),
        store.application(&other).await.unwrap(),
    );
    assert_eq!(reopened_apps, apps);
    assert_eq!(store.chats(&query(&app, 100)).await.unwrap(), chats);
    let reopened_messages = store
        .messages(&scope, &range(None, None, false, 100))
        .await
        .unwrap();
    assert_eq!(reopened_messages, messages);
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[0].body, "m1 edited");
    assert!(messages[5].deleted);

    // And numbering and idempotency continue where they were.
    assert_eq!(send(&store, &scope, "m7", at(60)).await.number.get(), 7);
    assert_eq!(
        create_chat(&store, &app, "cust-4", at(61))
            .await
            .number
            .get(),
        4
    );
    let retry = store
        .send_message(NewMessage {
            client_message_id: Some(cmid("keyed")),
            ..new_message(&scope, "again", at(62))
        })
        .await
        .unwrap();
    assert!(!retry.created);
    assert_eq!(retry.message.number.get(), 6);
    let chat = get_chat(&store, &scope).await;
    assert_eq!(chat.messages_count, 7);
    assert_eq!(
        store.application(&app).await.unwrap().unwrap().chats_count,
        4
    );
}

#[tokio::test]
async fn close_waits_for_the_writer_and_releases_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let sqlite = Arc::new(SqliteStore::open(&path).expect("open"));
    let store: Store = sqlite.clone();
    let app = create_app(&store, "app_close").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    drop(store);
    let sqlite = Arc::into_inner(sqlite).expect("the only reference");
    sqlite.close().await.expect("close");

    // Every connection is closed: the last one checkpointed and removed the WAL.
    let wal = dir.path().join("chat.db-wal");
    assert!(!wal.exists(), "the WAL file is still there");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let chats: i64 = conn
        .query_row("SELECT chats_count FROM applications", [], |r| r.get(0))
        .unwrap();
    assert_eq!(chats, 1);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    drop(SqliteStore::open(&path).expect("open"));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let error = SqliteStore::open(&path).expect_err("a newer schema");
    assert_eq!(error.code(), ErrorCode::Internal);
    let source = std::error::Error::source(&error).expect("keeps the source");
    assert!(source.to_string().contains("newer"), "{source}");
}

#[test]
fn opening_a_path_that_cannot_be_created_is_an_internal_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = SqliteStore::open(&dir.path().join("missing-dir").join("chat.db"))
        .expect_err("no such directory");
    assert_eq!(error.code(), ErrorCode::Internal);
    assert!(std::error::Error::source(&error).is_some());
}

/// The child of [`acknowledged_writes_survive_kill_9`]: sends messages from several tasks
/// at once (so commits are grouped) and prints each acknowledged one, until killed. Not a
/// test of its own: ignored, and run only by that test (with `--ignored`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of acknowledged_writes_survive_kill_9, which runs it"]
async fn kill9_child() {
    let path = std::env::var(KILL9_DB_ENV)
        .unwrap_or_else(|_| panic!("{KILL9_DB_ENV} is not set: this runs as another test's child"));
    let store = open(Path::new(&path));
    let app = token("app_kill9");
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..8 {
        let (store, app) = (store.clone(), app.clone());
        tasks.spawn(async move {
            let scope = agent_scope(&app, 1);
            // Bounded, so that an orphaned child ends by itself.
            for i in 0..100_000 {
                if started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let text = format!("t{task}-{i}");
                let sent = store
                    .send_message(new_message(&scope, &text, at(i)))
                    .await
                    .expect("send_message");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {} {text}", sent.message.number).unwrap();
                out.flush().unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// `ACK <number> <body>` as printed by the child; the last line may be cut by the kill.
fn parse_ack(line: &str) -> Option<(u32, String)> {
    let (number, text) = line.strip_prefix("ACK ")?.split_once(' ')?;
    Some((number.parse().ok()?, text.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    // Given a database with one chat.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    {
        let store = open(&path);
        let app = create_app(&store, "app_kill9").await;
        create_chat(&store, &app, "cust-1", at(0)).await;
    }

    // When a process writing to it is killed with SIGKILL after 2,000 acknowledgements.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            // The test's name in this binary: its module path without the crate's.
            concat!(module_path!(), "::kill9_child")
                .split_once("::")
                .unwrap()
                .1,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 2_000 {
        let Some(line) = lines.next() else {
            panic!(
                "the child ended early after {} acknowledgements",
                acked.len()
            );
        };
        acked.extend(parse_ack(&line.unwrap()));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    // Acknowledgements printed before the kill count too.
    for line in lines {
        let Ok(line) = line else { break };
        acked.extend(parse_ack(&line));
    }

    // Then every acknowledged message is there, under its number, and numbering is dense.
    let store = open(&path);
    let scope = agent_scope(&token("app_kill9"), 1);
    let chat = get_chat(&store, &scope).await;
    let highest = acked.iter().map(|(n, _)| *n).max().unwrap();
    assert!(
        chat.messages_count >= highest,
        "{} < {highest}",
        chat.messages_count
    );
    let mut stored = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .messages(&scope, &range(after, None, false, 100))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.number.get());
        stored.extend(page);
    }
    assert_eq!(
        numbers_of_messages(&stored),
        (1..=chat.messages_count).collect::<Vec<_>>()
    );
    for (number, text) in &acked {
        assert_eq!(&stored[*number as usize - 1].body, text, "message {number}");
    }
}
