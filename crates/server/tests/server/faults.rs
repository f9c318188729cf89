//! Faults under load: kill -9 at random moments during a send load, and a disk that fills up.
//! After each fault the data is checked against what clients were told (acknowledgements,
//! tracked by clientMessageId) and recomputed through the API.
//!
//! `CHAT_FAULT_RUNS` sets the number of kill -9 rounds (default 3; 20 or more by hand),
//! `CHAT_FAULT_SEED` replays a run's random moments (each run prints its seed).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const SEND_WITH_ID: &str = "mutation($a: ID!, $c: Int!, $b: String!, $k: ID) { sendMessage(appToken: $a, chatNumber: $c, body: $b, clientMessageId: $k) { number clientMessageId } }";
const ALL_MESSAGES: &str = "query($a: ID!, $c: Int!, $t: String) { messages(appToken: $a, chatNumber: $c, limit: 100, nextToken: $t) { items { number body clientMessageId } nextToken } }";
const CHATS: &str = "query($a: ID!, $t: String) { chats(appToken: $a, limit: 100, nextToken: $t) { items { number messagesCount unreadCount customerLastRead agentsLastRead lastMessage { number } } nextToken } }";
const SUMMARY: &str = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }";
const MARK_READ: &str =
    "mutation($a: ID!, $c: Int!) { markChatRead(appToken: $a, chatNumber: $c) { lastReadNumber } }";
const SEARCH: &str = "query($a: ID!, $c: Int!, $q: String!) { searchMessages(appToken: $a, chatNumber: $c, query: $q) { items { number body } } }";

/// Concurrent customers, each sending into its own chat.
const CUSTOMERS: usize = 6;
/// How long search may take to catch up after a restart.
const SEARCH_CATCH_UP: Duration = Duration::from_secs(15);

/// A small deterministic generator (xorshift64*), so that a failing run can be replayed.
struct Moments(u64);

impl Moments {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below
    }
}

/// One send the load made: acknowledged with its number, or lost in the crash (unknown).
enum Outcome {
    Acknowledged {
        key: String,
        chat: i64,
        number: i64,
    },
    Unknown {
        key: String,
        chat: i64,
        token: String,
    },
    Refused(Value),
}

/// A body with one word that only this message has, to find it by search.
fn body_of(key: &str) -> String {
    format!("load test {}", search_word(key))
}

fn search_word(key: &str) -> String {
    format!("z{}z", key.replace('-', ""))
}

/// POSTs without panicking on a transport error (the server may be dead).
async fn try_gql(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, reqwest::Error> {
    client
        .post(format!("{url}/graphql"))
        .header("Authorization", token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json::<Value>()
        .await
}

/// Sends until `stop` (or the server dies); returns every send's outcome.
async fn send_load(
    url: String,
    app: String,
    token: String,
    chat: i64,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let client = http_client();
    let mut outcomes = Vec::new();
    for seq in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("{prefix}-{seq}");
        let variables = json!({ "a": app, "c": chat, "b": body_of(&key), "k": key });
        match try_gql(&client, &url, &token, SEND_WITH_ID, variables).await {
            Ok(body) if body.get("errors").is_none() => {
                let number = body["data"]["sendMessage"]["number"].as_i64().unwrap();
                outcomes.push(Outcome::Acknowledged { key, chat, number });
            }
            Ok(body) => outcomes.push(Outcome::Refused(body)),
            Err(_) => {
                // The connection died with the server: written or not, nobody knows.
                outcomes.push(Outcome::Unknown { key, chat, token });
                break;
            }
        }
    }
    outcomes
}

/// The agents read chats while customers write: marks move watermarks and counters.
async fn read_load(
    url: String,
    app: String,
    agent: String,
    chats: Vec<i64>,
    stop: Arc<AtomicBool>,
) {
    let client = http_client();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let chat = chats[i % chats.len()];
        let variables = json!({ "a": app, "c": chat });
        if try_gql(&client, &url, &agent, MARK_READ, variables)
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_send_load_loses_nothing_and_duplicates_nothing() {
    let runs: usize = std::env::var("CHAT_FAULT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("CHAT_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill -9 rounds: {runs}, CHAT_FAULT_SEED={seed}");
    let mut moments = Moments(seed);

    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_on(dir.path());
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("agent-1");
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let token = app.customer(&format!("customer-{i}"));
        let chat = open_chat(&server, &app, &token).await;
        customers.push((token, chat));
    }
    let chats: Vec<i64> = customers.iter().map(|(_, chat)| *chat).collect();
    // Every message the clients were told about: clientMessageId -> (chat, number).
    let mut acknowledged: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let (mut lost, mut duplicated, mut unknown_total) = (0usize, 0usize, 0usize);

    for run in 0..runs {
        // Given a send load (and agents marking read) ...
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for (i, (token, chat)) in customers.iter().enumerate() {
            senders.push(tokio::spawn(send_load(
                server.url.clone(),
                app.token.clone(),
                token.clone(),
                *chat,
                format!("r{run}-c{i}"),
                stop.clone(),
            )));
        }
        // The agent answers too, so customers have unread messages.
        senders.push(tokio::spawn(send_load(
            server.url.clone(),
            app.token.clone(),
            agent.clone(),
            chats[run % chats.len()],
            format!("r{run}-a"),
            stop.clone(),
        )));
        let reader = tokio::spawn(read_load(
            server.url.clone(),
            app.token.clone(),
            agent.clone(),
            chats.clone(),
            stop.clone(),
        ));
        // ... when the server is killed at a random moment of it,
        let after = Duration::from_millis(150 + moments.next(600));
        tokio::time::sleep(after).await;
        server.kill_hard();
        stop.store(true, Ordering::SeqCst);
        let mut unknown = Vec::new();
        let mut sent_this_run = 0;
        for sender in senders {
            for outcome in sender.await.unwrap() {
                match outcome {
                    Outcome::Acknowledged { key, chat, number } => {
                        sent_this_run += 1;
                        acknowledged.insert(key, (chat, number));
                    }
                    Outcome::Unknown { key, chat, token } => unknown.push((key, chat, token)),
                    Outcome::Refused(body) => panic!("a send was refused under load: {body}"),
                }
            }
        }
        reader.await.unwrap();
        unknown_total += unknown.len();

        // and restarted on the same data dir,
        server = TestServer::start_on(dir.path());
        let restarted = Instant::now();
        // the clients retry what they never heard back about, with the same
        // clientMessageId: each is then acknowledged exactly once (written before the
        // crash or now).
        for (key, chat, token) in unknown {
            let data = server
                .ok(
                    &token,
                    SEND_WITH_ID,
                    json!({ "a": app.token, "c": chat, "b": body_of(&key), "k": key }),
                )
                .await;
            let number = data["sendMessage"]["number"].as_i64().unwrap();
            acknowledged.insert(key, (chat, number));
        }

        // Then the store holds every acknowledged message exactly once, densely numbered.
        let (run_lost, run_duplicated) =
            check_messages(&server, &app, &customers, &acknowledged).await;
        lost += run_lost;
        duplicated += run_duplicated;
        check_unread(&server, &app, &agent, &customers).await;
        // Search caught up: each chat's last acknowledged message is found.
        let caught_up = check_search(&server, &app, &customers, &acknowledged).await;
        eprintln!(
            "round {run}: killed after {after:?}, {sent_this_run} sends acknowledged, \
             search caught up {:?} after the restart (its check took {caught_up:?})",
            restarted.elapsed()
        );
    }
    assert_eq!((lost, duplicated), (0, 0), "lost, duplicated");
    eprintln!(
        "kill -9 rounds: {runs}, acknowledged: {}, unknown at the kill and retried: {unknown_total}, lost: {lost}, duplicated: {duplicated}",
        acknowledged.len()
    );

    server.kill_hard();
    assert_integrity(dir.path());
}

/// Every chat's messages against the acknowledgements; returns (lost, duplicated), after
/// asserting both are 0 and that numbers are dense and counts match.
async fn check_messages(
    server: &TestServer,
    app: &TestApp,
    customers: &[(String, i64)],
    acknowledged: &BTreeMap<String, (i64, i64)>,
) -> (usize, usize) {
    let mut stored: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (token, chat) in customers {
        let numbers = all_messages(server, app, token, *chat)
            .await
            .into_iter()
            .map(|item| {
                let key = item["clientMessageId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let number = item["number"].as_i64().unwrap();
                stored.entry(key).or_default().push((*chat, number));
                number
            })
            .collect::<Vec<_>>();
        let dense: Vec<i64> = (1..=numbers.len() as i64).collect();
        assert_eq!(numbers, dense, "chat {chat}: numbers are not dense");
        let data = server
            .ok(token, CHAT, json!({ "a": app.token, "n": chat }))
            .await;
        assert_eq!(data["chat"]["messagesCount"], numbers.len(), "chat {chat}");
        if let Some(last) = numbers.last() {
            assert_eq!(data["chat"]["lastMessage"]["number"], *last, "chat {chat}");
        }
    }
    let lost = acknowledged
        .iter()
        .filter(|(key, at)| stored.get(*key).is_none_or(|found| !found.contains(at)))
        .count();
    let duplicated = stored.values().filter(|found| found.len() > 1).count();
    // Nothing appears that no client sent.
    let unexpected: BTreeSet<&String> = stored
        .keys()
        .filter(|key| !acknowledged.contains_key(*key))
        .collect();
    assert_eq!(lost, 0, "acknowledged messages missing after the restart");
    assert_eq!(duplicated, 0, "messages stored twice");
    assert!(
        unexpected.is_empty(),
        "messages nobody sent: {unexpected:?}"
    );
    (lost, duplicated)
}

async fn all_messages(server: &TestServer, app: &TestApp, token: &str, chat: i64) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = server
            .ok(
                token,
                ALL_MESSAGES,
                json!({ "a": app.token, "c": chat, "t": next }),
            )
            .await;
        items.extend(
            page["messages"]["items"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        match page["messages"]["nextToken"].as_str() {
            Some(token) => next = Some(token.to_owned()),
            None => return items,
        }
    }
}

/// The unread counters (kept in the same write as every send and read) against a
/// recomputation from each chat's count and watermarks, for the agents and each customer.
async fn check_unread(
    server: &TestServer,
    app: &TestApp,
    agent: &str,
    customers: &[(String, i64)],
) {
    let readers = std::iter::once(agent).chain(customers.iter().map(|(token, _)| token.as_str()));
    for (i, reader) in readers.enumerate() {
        let is_agent = i == 0;
        let chats = server
            .ok(reader, CHATS, json!({ "a": app.token, "t": null }))
            .await;
        let items = chats["chats"]["items"].as_array().unwrap();
        assert!(chats["chats"]["nextToken"].is_null());
        let (mut total, mut unread_chats) = (0, 0);
        for chat in items {
            let count = chat["messagesCount"].as_i64().unwrap();
            let watermark = if is_agent {
                chat["agentsLastRead"].as_i64().unwrap()
            } else {
                chat["customerLastRead"].as_i64().unwrap()
            };
            assert!((0..=count).contains(&watermark), "{chat}");
            assert_eq!(chat["unreadCount"], count - watermark, "{chat}");
            total += count - watermark;
            unread_chats += i64::from(count > watermark);
        }
        let summary = server.ok(reader, SUMMARY, json!({ "a": app.token })).await;
        assert_eq!(
            summary["unreadSummary"],
            json!({ "totalUnread": total, "unreadChats": unread_chats }),
            "the unread counters of reader {i} differ from the recomputation"
        );
    }
}

/// Waits until each chat's last acknowledged message is searchable; returns how long.
async fn check_search(
    server: &TestServer,
    app: &TestApp,
    customers: &[(String, i64)],
    acknowledged: &BTreeMap<String, (i64, i64)>,
) -> Duration {
    let started = Instant::now();
    for (token, chat) in customers {
        let Some((key, (_, number))) = acknowledged
            .iter()
            .filter(|(_, (c, _))| c == chat)
            .max_by_key(|(_, (_, number))| *number)
        else {
            continue;
        };
        let query = search_word(key);
        loop {
            let found = server
                .ok(
                    token,
                    SEARCH,
                    json!({ "a": app.token, "c": chat, "q": query }),
                )
                .await;
            let items = found["searchMessages"]["items"].as_array().unwrap();
            if items.iter().any(|item| item["number"] == *number) {
                break;
            }
            assert!(
                started.elapsed() < SEARCH_CATCH_UP,
                "search did not find message {number} of chat {chat} ({key}) within {SEARCH_CATCH_UP:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

fn assert_integrity(dir: &Path) {
    let db = rusqlite::Connection::open(dir.join("chat.sqlite3")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

/// Sets the server's RLIMIT_FSIZE soft limit: with `Some(1)` no file of it can grow (or be
/// written past its first byte): the disk is full, as far as the server can tell.
fn limit_file_size(server: &TestServer, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    let pid = libc::pid_t::try_from(server.pid()).unwrap();
    // SAFETY: prlimit(2) on our own child, with a valid rlimit and no old value wanted.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_sends_clearly_and_recovers_when_space_returns() {
    // Over the limit a write gets EFBIG; the signal that comes with it is ignored (and the
    // server inherits that), as a process ignores nothing on a real full disk.
    // SAFETY: setting a signal's disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let dir = tempfile::tempdir().unwrap();
    // The log is a file on the same (full) disk: the server must survive failing to write it.
    let log = dir.path().join("server.log");
    let mut server = TestServer::start_on_logging_to(dir.path(), &log, "info");
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("bob");
    let chat = open_chat(&server, &app, &customer).await;
    for i in 0..30 {
        send(&server, &app, &customer, chat, &format!("before {i}")).await;
    }

    // Given a disk that is full,
    limit_file_size(&server, Some(1));
    // when customers keep sending, every send fails with a clear error, and none is
    // acknowledged;
    let mut refused = 0;
    for i in 0..20 {
        let (status, body) = server
            .post(
                Some(&customer),
                SEND_WITH_ID,
                json!({ "a": app.token, "c": chat, "b": format!("full {i}"), "k": format!("full-{i}") }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["data"].is_null(),
            "a send was acknowledged on a full disk: {body}"
        );
        assert_eq!(body["errors"][0]["errorType"], "Internal", "{body}");
        refused += 1;
    }
    assert_eq!(refused, 20);
    // reads still answer.
    let page = server
        .ok(
            &customer,
            ALL_MESSAGES,
            json!({ "a": app.token, "c": chat, "t": null }),
        )
        .await;
    assert_eq!(page["messages"]["items"].as_array().unwrap().len(), 30);

    // When space returns, sends succeed again without a restart; the failed ones took no
    // number,
    limit_file_size(&server, None);
    let mut recovered = None;
    for _ in 0..50 {
        let (_, body) = server
            .post(
                Some(&customer),
                SEND_WITH_ID,
                json!({ "a": app.token, "c": chat, "b": "space is back zqspacez", "k": "after-full" }),
            )
            .await;
        if body.get("errors").is_none() {
            recovered = Some(body["data"]["sendMessage"]["number"].as_i64().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        recovered,
        Some(31),
        "sends did not recover once space returned"
    );
    // and what was written is searchable (the indexer retried through the full disk).
    let started = Instant::now();
    loop {
        let found = server
            .ok(
                &customer,
                SEARCH,
                json!({ "a": app.token, "c": chat, "q": "zqspacez" }),
            )
            .await;
        if found["searchMessages"]["items"][0]["number"] == 31 {
            break;
        }
        assert!(
            started.elapsed() < SEARCH_CATCH_UP,
            "search did not catch up: {found}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nothing is corrupt: after kill -9 and a restart every message is there, dense.
    server.kill_hard();
    assert_integrity(dir.path());
    let server = TestServer::start_on(dir.path());
    let numbers: Vec<i64> = all_messages(&server, &app, &customer, chat)
        .await
        .iter()
        .map(|item| item["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=31).collect::<Vec<_>>());
}
