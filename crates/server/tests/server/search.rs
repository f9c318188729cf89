//! searchMessages over HTTP against a started server: partial words within a bounded lag,
//! access rules, edits and deletes, and the outbox surviving kill -9.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use serde_json::json;

const SEARCH: &str = "query($a: ID!, $c: Int!, $q: String!, $l: Int, $t: String) { searchMessages(appToken: $a, chatNumber: $c, query: $q, limit: $l, nextToken: $t) { items { number body deleted } nextToken } }";
const EDIT: &str = "mutation($a: ID!, $c: Int!, $n: Int!, $b: String!) { editMessage(appToken: $a, chatNumber: $c, number: $n, body: $b) { number } }";
const DELETE: &str = "mutation($a: ID!, $c: Int!, $n: Int!) { deleteMessage(appToken: $a, chatNumber: $c, number: $n) { number } }";

/// How long a change may take to become searchable before a test fails.
const LAG_DEADLINE: Duration = Duration::from_secs(10);

async fn search(server: &TestServer, token: &str, app: &TestApp, chat: i64, q: &str) -> Vec<i64> {
    let data = server
        .ok(
            token,
            SEARCH,
            json!({ "a": app.token, "c": chat, "q": q, "l": 100 }),
        )
        .await;
    data["searchMessages"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["number"].as_i64().unwrap())
        .collect()
}

/// Polls until the search answers `expected` (sorted), failing after [`LAG_DEADLINE`].
/// Returns how long it took.
async fn eventually(
    server: &TestServer,
    token: &str,
    app: &TestApp,
    chat: i64,
    q: &str,
    expected: &[i64],
) -> Duration {
    let started = Instant::now();
    loop {
        let mut found = search(server, token, app, chat, q).await;
        found.sort_unstable();
        if found == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < LAG_DEADLINE,
            "{q:?}: still {found:?} instead of {expected:?} after {LAG_DEADLINE:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_messages_are_found_by_partial_words_within_a_bounded_lag() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let alice = app.customer("alice");
    let chat = open_chat(&server, &app, &alice).await;
    send(&server, &app, &alice, chat, "My order was Refunded twice").await;
    send(&server, &app, &alice, chat, "Le Café est fermé").await;
    send(&server, &app, &alice, chat, "no idea").await;
    let lag = eventually(&server, &alice, &app, chat, "fund", &[1]).await;
    eprintln!("searchable after {lag:?}");
    eventually(&server, &alice, &app, chat, "idea", &[3]).await;
    assert_eq!(search(&server, &alice, &app, chat, "CAFE").await, vec![2]);
    assert_eq!(search(&server, &alice, &app, chat, "ferme").await, vec![2]);
    assert_eq!(search(&server, &alice, &app, chat, "no").await, vec![3]);
    assert!(
        search(&server, &alice, &app, chat, "wice refund")
            .await
            .len()
            == 1
    );

    // An edit is re-indexed; a delete disappears at once.
    server
        .ok(
            &alice,
            EDIT,
            json!({ "a": app.token, "c": chat, "n": 1, "b": "Thanks, solved" }),
        )
        .await;
    eventually(&server, &alice, &app, chat, "fund", &[]).await;
    eventually(&server, &alice, &app, chat, "solv", &[1]).await;
    server
        .ok(&alice, DELETE, json!({ "a": app.token, "c": chat, "n": 2 }))
        .await;
    assert!(search(&server, &alice, &app, chat, "cafe").await.is_empty());

    // Bad queries are BadInput.
    for q in ["", "   ", "?!", &"x".repeat(201)] {
        let code = server
            .error_code(
                Some(&alice),
                SEARCH,
                json!({ "a": app.token, "c": chat, "q": q }),
            )
            .await;
        assert_eq!(code, "BadInput", "{q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cannot_search_another_customers_chat() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let alice = app.customer("alice");
    let bob = app.customer("bob");
    let alices = open_chat(&server, &app, &alice).await;
    send(&server, &app, &alice, alices, "secret refund").await;
    let agent = app.agent("agent-1");
    eventually(&server, &agent, &app, alices, "refund", &[1]).await;
    let code = server
        .error_code(
            Some(&bob),
            SEARCH,
            json!({ "a": app.token, "c": alices, "q": "refund" }),
        )
        .await;
    assert_eq!(code, "NotFound");
    let other = TestApp::create(&server, "Other").await;
    let code = server
        .error_code(
            Some(&other.agent("x")),
            SEARCH,
            json!({ "a": app.token, "c": alices, "q": "refund" }),
        )
        .await;
    assert_eq!(code, "Forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_over_http_return_each_hit_once() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let alice = app.customer("alice");
    let chat = open_chat(&server, &app, &alice).await;
    for i in 1..=30 {
        send(&server, &app, &alice, chat, &format!("ticket {i}")).await;
    }
    eventually(
        &server,
        &alice,
        &app,
        chat,
        "tick",
        &(1..=30).collect::<Vec<_>>(),
    )
    .await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let data = server
            .ok(
                &alice,
                SEARCH,
                json!({ "a": app.token, "c": chat, "q": "tick", "l": 8, "t": token }),
            )
            .await;
        let page = &data["searchMessages"];
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["number"].as_i64().unwrap()),
        );
        match page["nextToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, (1..=30).rev().collect::<Vec<_>>());
}

/// Every hit of the query, over all pages.
async fn all_hits(server: &TestServer, token: &str, app: &TestApp, chat: i64, q: &str) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let data = server
            .ok(
                token,
                SEARCH,
                json!({ "a": app.token, "c": chat, "q": q, "l": 100, "t": next }),
            )
            .await;
        let page = &data["searchMessages"];
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["number"].as_i64().unwrap()),
        );
        match page["nextToken"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => return seen,
        }
    }
}

/// Polls [`all_hits`] until it is `expected` (sorted), failing after [`LAG_DEADLINE`].
async fn eventually_all(
    server: &TestServer,
    token: &str,
    app: &TestApp,
    chat: i64,
    q: &str,
    expected: &[i64],
) {
    let started = Instant::now();
    loop {
        let mut found = all_hits(server, token, app, chat, q).await;
        found.sort_unstable();
        if found == expected {
            return;
        }
        assert!(
            started.elapsed() < LAG_DEADLINE,
            "{q:?}: {} of {} hits after {LAG_DEADLINE:?}",
            found.len(),
            expected.len()
        );
        tokio::task::yield_now().await;
    }
}

/// Changes queued in the outbox of a stopped server's database.
async fn outbox_len(dir: &std::path::Path) -> u64 {
    let store = chat_embedded::SqliteStore::open(&dir.join("chat.sqlite3")).unwrap();
    let queued = store.outbox_len().await.unwrap();
    store.close().await.unwrap();
    queued
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_index_catches_up_after_kill_9_with_a_queued_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_on(dir.path());
    let app = TestApp::create(&server, "Acme").await;
    let alice = app.customer("alice");
    let chat = open_chat(&server, &app, &alice).await;

    // A burst of acknowledged sends, killed right after the last acknowledgement: the
    // indexer is typically still gathering the tail of the burst.
    let sends = (0..200).map(|i| {
        let (server, app, alice) = (&server, &app, &alice);
        async move {
            let number =
                send(server, app, alice, chat, &format!("burst{i:03} word")).await["number"]
                    .as_i64()
                    .unwrap();
            (number, i)
        }
    });
    let sent: Vec<(i64, i32)> = join_all(sends).await;
    let mut acked: Vec<i64> = sent.iter().map(|(n, _)| *n).collect();
    acked.sort_unstable();
    let mut burst19: Vec<i64> = sent
        .iter()
        .filter(|(_, i)| (190..200).contains(i))
        .map(|(n, _)| *n)
        .collect();
    burst19.sort_unstable();
    server.kill_hard();
    eprintln!(
        "outbox at kill -9: {} changes",
        outbox_len(dir.path()).await
    );

    // Restarted, every acknowledged message becomes searchable and the outbox empties.
    let mut server = TestServer::start_on(dir.path());
    eventually_all(&server, &alice, &app, chat, "word", &acked).await;
    eventually_all(&server, &alice, &app, chat, "urst19", &burst19).await;
    server.kill_hard();
    assert_eq!(outbox_len(dir.path()).await, 0);

    // Deterministically queued: a deleted index directory is rebuilt from the store at
    // start (every message goes through the outbox again), after another kill -9.
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();
    let server = TestServer::start_on(dir.path());
    eventually_all(&server, &alice, &app, chat, "word", &acked).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_command_queues_a_chat_for_the_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_on(dir.path());
    let app = TestApp::create(&server, "Acme").await;
    let alice = app.customer("alice");
    let chat = open_chat(&server, &app, &alice).await;
    send(&server, &app, &alice, chat, "reindexed words").await;
    eventually(&server, &alice, &app, chat, "index", &[1]).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "reindex",
            "--app",
            &app.token,
            "--chat",
            &chat.to_string(),
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "queued 1 messages for indexing"
    );
    // The running server drains what another process queued (by polling) and writes go on.
    send(&server, &app, &alice, chat, "more words").await;
    eventually(&server, &alice, &app, chat, "word", &[1, 2]).await;
    let started = Instant::now();
    while outbox_len_via_reader(dir.path()) > 0 {
        assert!(started.elapsed() < LAG_DEADLINE, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["reindex", "--app", "app_nope", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// The outbox length read with a plain read-only connection (the server is running).
fn outbox_len_via_reader(dir: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("chat.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row("SELECT count(*) FROM search_outbox", [], |r| r.get(0))
        .unwrap()
}

const SEARCH_ACROSS: &str = "query($a: ID!, $q: String!) { searchMessages(appToken: $a, query: $q) { items { chatNumber number body } nextToken } }";

/// `(chatNumber, body)` of the hits of a search without a chat number.
async fn across(server: &TestServer, token: &str, app: &TestApp, q: &str) -> Vec<(i64, String)> {
    let data = server
        .ok(token, SEARCH_ACROSS, json!({ "a": app.token, "q": q }))
        .await;
    data["searchMessages"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["chatNumber"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_chat_number_an_agent_searches_the_application_and_a_customer_its_chats() {
    // Given two customers' chats in one application and a chat in another application,
    // all mentioning the same order number.
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let other = TestApp::create(&server, "Other").await;
    let (alice, bob) = (app.customer("alice"), app.customer("bob"));
    let alices = open_chat(&server, &app, &alice).await;
    let bobs = open_chat(&server, &app, &bob).await;
    let carol = other.customer("carol");
    let carols = open_chat(&server, &other, &carol).await;
    send(&server, &app, &alice, alices, "order 4471 is late").await;
    send(&server, &app, &bob, bobs, "bob's order 4471").await;
    send(&server, &other, &carol, carols, "carol's order 4471").await;
    let agent = app.agent("agent");
    let started = Instant::now();
    while across(&server, &agent, &app, "4471").await.len() < 2 {
        assert!(started.elapsed() < LAG_DEADLINE, "not indexed in time");
        tokio::task::yield_now().await;
    }
    // When the agent searches without a chat number, then both chats' messages come, each
    // with its chat number, and none of the other application.
    let mut found = across(&server, &agent, &app, "4471").await;
    found.sort();
    assert_eq!(
        found,
        [
            (alices, "order 4471 is late".to_owned()),
            (bobs, "bob's order 4471".to_owned())
        ]
    );
    // When a customer does, then only its own chat's.
    assert_eq!(
        across(&server, &alice, &app, "4471").await,
        [(alices, "order 4471 is late".to_owned())]
    );
    assert_eq!(
        across(&server, &bob, &app, "4471").await,
        [(bobs, "bob's order 4471".to_owned())]
    );
    // With an inbox filter: the agent's own chats only; with a chat number, BadInput.
    server
        .ok(
            &agent,
            "mutation($a: ID!, $c: Int!) { assignChat(appToken: $a, chatNumber: $c, assignee: \"agent\") { number } }",
            json!({ "a": app.token, "c": bobs }),
        )
        .await;
    let mine = server
        .ok(
            &agent,
            "query($a: ID!, $f: ChatFilter) { searchMessages(appToken: $a, query: \"4471\", filter: $f) { items { chatNumber } } }",
            json!({ "a": app.token, "f": { "assignee": "ME" } }),
        )
        .await;
    assert_eq!(
        mine["searchMessages"]["items"],
        json!([{ "chatNumber": bobs }])
    );
    let code = server
        .error_code(
            Some(&agent),
            "query($a: ID!, $c: Int) { searchMessages(appToken: $a, chatNumber: $c, query: \"4471\", filter: { status: OPEN }) { nextToken } }",
            json!({ "a": app.token, "c": bobs }),
        )
        .await;
    assert_eq!(code, "BadInput");
    // And the other application's agent sees only its own (once indexed); asking for this
    // application
    // with its token is refused.
    while across(&server, &other.agent("agent"), &other, "4471")
        .await
        .is_empty()
    {
        assert!(started.elapsed() < LAG_DEADLINE, "not indexed in time");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        across(&server, &other.agent("agent"), &other, "4471").await,
        [(carols, "carol's order 4471".to_owned())]
    );
    let (_, refused) = server
        .post(
            Some(&other.agent("agent")),
            SEARCH_ACROSS,
            json!({ "a": app.token, "q": "4471" }),
        )
        .await;
    assert!(refused["errors"].is_array(), "{refused}");
    assert!(refused["data"].is_null() || refused["data"]["searchMessages"].is_null());
}
