//! Subscriptions over graphql-transport-ws against a started server: AppSync's delivery
//! rule, authorization at subscribe time, gap-free recovery, slow subscribers.

use crate::common;

use std::time::Duration;

use common::ws::{Incoming, WsClient};
use common::*;
use futures::future::join_all;
use serde_json::{Value, json};

const ON_MESSAGE: &str = "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { chatNumber number body senderId } }";
const ON_INBOX: &str =
    "subscription($a: ID!) { onInboxMessage(appToken: $a) { chatNumber number } }";
const ON_CHAT: &str = "subscription($a: ID!) { onChat(appToken: $a) { number status } }";

async fn expect_error(client: &mut WsClient, id: &str) -> String {
    match client.next().await {
        Incoming::Message(m) if m["type"] == "error" && m["id"] == id => {
            m["payload"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
        other => panic!("expected an error for {id}, got {other:?}"),
    }
}

async fn nothing_arrives(client: &mut WsClient) {
    if let Some(Incoming::Message(m)) = client.next_within(Duration::from_millis(300)).await {
        panic!("unexpected message: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_right_subscribers_in_order_exactly_once() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (c1, c2, agent) = (app.customer("c1"), app.customer("c2"), app.agent("a1"));
    let chat1 = open_chat(&server, &app, &c1).await;
    let chat2 = open_chat(&server, &app, &c2).await;

    let mut sub1 = WsClient::connect(&server.url, &c1).await;
    sub1.subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat1 }))
        .await;
    let mut sub2 = WsClient::connect(&server.url, &c2).await;
    sub2.subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat2 }))
        .await;
    let mut inbox = WsClient::connect(&server.url, &agent).await;
    inbox
        .subscribe("inbox", ON_INBOX, json!({ "a": app.token }))
        .await;
    inbox
        .subscribe("chats", ON_CHAT, json!({ "a": app.token }))
        .await;
    // Subscriptions are registered once the server has processed them; a ping round trip
    // after the subscribe messages proves that (messages are handled in order).
    for client in [&mut sub1, &mut sub2, &mut inbox] {
        client.synced().await;
    }

    for i in 1..=10 {
        send(&server, &app, &c1, chat1, &format!("one-{i}")).await;
        if i % 2 == 0 {
            send(&server, &app, &agent, chat2, &format!("two-{i}")).await;
        }
    }
    let mut got1 = Vec::new();
    for _ in 0..10 {
        let event = sub1.next_data("1").await;
        assert_eq!(event["onMessage"]["chatNumber"], chat1, "{event}");
        got1.push(event["onMessage"]["number"].as_i64().unwrap());
    }
    assert_eq!(got1, (1..=10).collect::<Vec<_>>());
    let mut got2 = Vec::new();
    for _ in 0..5 {
        got2.push(
            sub2.next_data("1").await["onMessage"]["body"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(got2, ["two-2", "two-4", "two-6", "two-8", "two-10"]);
    let mut inbox_numbers = Vec::new();
    for _ in 0..15 {
        let event = inbox.next_data("inbox").await;
        inbox_numbers.push((
            event["onInboxMessage"]["chatNumber"].as_i64().unwrap(),
            event["onInboxMessage"]["number"].as_i64().unwrap(),
        ));
    }
    assert_eq!(
        inbox_numbers.iter().filter(|(c, _)| *c == chat1).count(),
        10
    );
    nothing_arrives(&mut sub1).await;
    nothing_arrives(&mut sub2).await;
    nothing_arrives(&mut inbox).await;

    // Chat changes reach onChat; an edit reaches onMessage but not the inbox feed.
    let update = "mutation($a: ID!, $n: Int!) { updateChat(appToken: $a, number: $n, status: RESOLVED) { appToken number status } }";
    server
        .ok(&agent, update, json!({ "a": app.token, "n": chat2 }))
        .await;
    assert_eq!(
        inbox.next_data("chats").await["onChat"],
        json!({ "number": chat2, "status": "RESOLVED" })
    );
    let edit = "mutation($a: ID!, $c: Int!) { editMessage(appToken: $a, chatNumber: $c, number: 1, body: \"edited\") { appToken chatNumber number body senderId } }";
    server
        .ok(&c1, edit, json!({ "a": app.token, "c": chat1 }))
        .await;
    assert_eq!(sub1.next_data("1").await["onMessage"]["body"], "edited");
    nothing_arrives(&mut inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_is_authorized() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let other = TestApp::create(&server, "Other").await;
    let (c1, c2) = (app.customer("c1"), app.customer("c2"));
    let chat1 = open_chat(&server, &app, &c1).await;

    let mut stranger = WsClient::connect(&server.url, &c2).await;
    stranger
        .subscribe("a", ON_MESSAGE, json!({ "a": app.token, "c": chat1 }))
        .await;
    assert_eq!(expect_error(&mut stranger, "a").await, "NotFound");
    stranger
        .subscribe("b", ON_INBOX, json!({ "a": app.token }))
        .await;
    assert_eq!(expect_error(&mut stranger, "b").await, "Forbidden");
    stranger
        .subscribe("c", ON_CHAT, json!({ "a": app.token }))
        .await;
    assert_eq!(expect_error(&mut stranger, "c").await, "Forbidden");

    let mut foreign = WsClient::connect(&server.url, &other.agent("a1")).await;
    foreign
        .subscribe("a", ON_INBOX, json!({ "a": app.token }))
        .await;
    assert_eq!(expect_error(&mut foreign, "a").await, "Forbidden");
    foreign
        .subscribe("b", "subscription { nope }", json!({}))
        .await;
    assert_eq!(expect_error(&mut foreign, "b").await, "BadInput");

    // Refused subscriptions receive nothing afterwards.
    send(&server, &app, &c1, chat1, "private").await;
    nothing_arrives(&mut stranger).await;
    nothing_arrives(&mut foreign).await;

    // No or a bad token: the connection is closed with 4403.
    for token in ["", "garbage"] {
        let mut client = WsClient::open(&server.url).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
            .await;
        match client.next().await {
            Incoming::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4403),
            other => panic!("expected close 4403, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscriber_recovers_every_message_exactly_once() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (c1, agent) = (app.customer("c1"), app.agent("a1"));
    let chat = open_chat(&server, &app, &c1).await;
    let total = 60;

    // The sender runs on its own while the subscriber comes and goes.
    let sender = {
        let (url, token, app_token) = (server.url.clone(), agent.clone(), app.token.clone());
        tokio::spawn(async move {
            let client = common::http_client();
            for i in 1..=total {
                let body = json!({ "query": SEND, "variables": { "a": app_token, "c": chat, "b": format!("m{i}") } });
                let response = client
                    .post(format!("{url}/graphql"))
                    .header("Authorization", &token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // The client recipe: subscribe, wait until the subscription is live (pong), then fetch
    // what came before with messages(after: lastSeen); merge by number (an event may
    // arrive both ways). lastSeen is the highest number the client holds without a gap.
    let mut seen: Vec<i64> = Vec::new();
    let last_contiguous = |seen: &[i64]| -> i64 {
        let mut sorted = seen.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        sorted
            .iter()
            .zip(1..)
            .take_while(|(n, i)| **n == *i)
            .count() as i64
    };

    let mut client = subscribe_live(&server, &app, &c1, chat, &mut seen).await;
    catch_up(&server, &app, &c1, chat, last_contiguous(&seen), &mut seen).await;
    while seen.len() < 10 {
        seen.push(
            client.next_data("1").await["onMessage"]["number"]
                .as_i64()
                .unwrap(),
        );
    }
    // The connection drops mid-stream (no goodbye) while the sender goes on.
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut client = subscribe_live(&server, &app, &c1, chat, &mut seen).await;
    catch_up(&server, &app, &c1, chat, last_contiguous(&seen), &mut seen).await;
    sender.await.unwrap();
    while *seen.iter().max().unwrap() < total {
        seen.push(
            client.next_data("1").await["onMessage"]["number"]
                .as_i64()
                .unwrap(),
        );
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
}

/// Connects, subscribes to the chat and returns once the subscription is live, keeping
/// any events that arrive meanwhile.
async fn subscribe_live(
    server: &TestServer,
    app: &TestApp,
    token: &str,
    chat: i64,
    seen: &mut Vec<i64>,
) -> WsClient {
    let mut client = WsClient::connect(&server.url, token).await;
    client
        .subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    client.send(json!({ "type": "ping" })).await;
    loop {
        match client.next().await {
            Incoming::Message(m) if m["type"] == "pong" => return client,
            Incoming::Message(m) if m["type"] == "next" => {
                seen.push(
                    m["payload"]["data"]["onMessage"]["number"]
                        .as_i64()
                        .unwrap(),
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// messages(after: lastSeen), every page.
async fn catch_up(
    server: &TestServer,
    app: &TestApp,
    token: &str,
    chat: i64,
    mut after: i64,
    seen: &mut Vec<i64>,
) {
    loop {
        let page = server
            .ok(
                token,
                MESSAGES,
                json!({ "a": app.token, "c": chat, "after": after, "l": 100 }),
            )
            .await;
        let items = page["messages"]["items"].as_array().unwrap().clone();
        let Some(last) = items.last() else { return };
        after = last["number"].as_i64().unwrap();
        seen.extend(items.iter().map(|m| m["number"].as_i64().unwrap()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_stops_reading_is_cut_off_and_blocks_nobody() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (c1, agent) = (app.customer("c1"), app.agent("a1"));
    let chat = open_chat(&server, &app, &c1).await;
    let mut slow = WsClient::connect(&server.url, &agent).await;
    slow.subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    let mut fast = WsClient::connect(&server.url, &c1).await;
    fast.subscribe(
        "1",
        "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number } }",
        json!({ "a": app.token, "c": chat }),
    )
    .await;
    for client in [&mut slow, &mut fast] {
        client.synced().await;
    }
    // `slow` never reads while 8 KiB messages pour in: its socket buffers fill, then its
    // queue in the hub. The fast subscriber reads along.
    let big = "x".repeat(8000);
    let (tasks, per_task) = (8, 300);
    let total = tasks * per_task;
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            n = fast.next_data("1").await["onMessage"]["number"]
                .as_i64()
                .unwrap();
        }
        n
    });
    let started = std::time::Instant::now();
    let sends = (0..tasks).map(|_| {
        let (server, app, c1, big) = (&server, &app, &c1, &big);
        async move {
            for _ in 0..per_task {
                let data = server.ok(c1, "mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { appToken chatNumber number body } }", json!({ "a": app.token, "c": chat, "b": big })).await;
                assert!(data["sendMessage"]["number"].is_i64());
            }
        }
    });
    join_all(sends).await;
    let elapsed = started.elapsed();

    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .unwrap()
            .unwrap(),
        total
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "senders were held up: {elapsed:?}"
    );

    // The slow one, reading at last, finds its events and then a close with the reason.
    let mut received = 0;
    let frame = loop {
        match slow.next().await {
            Incoming::Message(m) if m["type"] == "next" => received += 1,
            Incoming::Message(m) => panic!("unexpected {m}"),
            Incoming::Closed(frame) => break frame,
        }
    };
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4029, "{frame:?}");
    assert!(frame.reason.contains("fell behind"), "{frame:?}");
    assert!(
        received < total,
        "it was cut off before the end ({received})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_mutations_work_over_the_socket_and_publish() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let mut client = WsClient::connect(&server.url, &c1).await;
    client
        .subscribe("events", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    client
        .subscribe(
            "send",
            SEND,
            json!({ "a": app.token, "c": chat, "b": "over the socket" }),
        )
        .await;
    let mut got: Vec<Value> = Vec::new();
    let mut completed = false;
    while got.len() < 2 || !completed {
        match client.next().await {
            Incoming::Message(m) if m["type"] == "next" => got.push(m),
            Incoming::Message(m) if m["type"] == "complete" && m["id"] == "send" => {
                completed = true
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let reply = got.iter().find(|m| m["id"] == "send").unwrap();
    assert_eq!(reply["payload"]["data"]["sendMessage"]["number"], 1);
    let event = got.iter().find(|m| m["id"] == "events").unwrap();
    assert_eq!(
        event["payload"]["data"]["onMessage"]["body"],
        "over the socket"
    );
}

// Subscription groups: identical subscriptions (same query, operation name and variables)
// share one execution. These tests run the server in-process to look at its groups.

/// A server in this process, so that a test can look at its hub and groups.
struct InProcess {
    api: chat_server::schema::Api,
    url: String,
    client: reqwest::Client,
}

impl InProcess {
    async fn start() -> (InProcess, TestApp) {
        use chat_appsync::Authenticator;
        use chat_server::realtime::authority::AUTHORITY_RECHECK;

        let registry = common::memory_registry();
        let auth = Authenticator::new(ADMIN_KEY, registry.service().clone());
        let api = chat_server::schema::build(registry).unwrap();
        let url = common::serve_in_process(api.clone(), auth, AUTHORITY_RECHECK).await;
        let server = InProcess {
            api,
            url,
            client: common::http_client(),
        };
        let created = server
            .ok(
                ADMIN_KEY,
                "mutation { createApplication(name: \"Acme\") { application { token } secret } }",
                json!({}),
            )
            .await;
        let app = TestApp {
            token: created["createApplication"]["application"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
            secret: created["createApplication"]["secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        };
        (server, app)
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        common::graphql_ok(&self.client, &self.url, token, query, variables).await
    }

    async fn open_chat(&self, app: &TestApp, customer: &str) -> i64 {
        self.ok(customer, CREATE_CHAT, json!({ "a": app.token }))
            .await["createChat"]["number"]
            .as_i64()
            .unwrap()
    }

    async fn send(&self, app: &TestApp, token: &str, chat: i64, body: &str) -> i64 {
        self.ok(token, SEND, json!({ "a": app.token, "c": chat, "b": body }))
            .await["sendMessage"]["number"]
            .as_i64()
            .unwrap()
    }

    /// (groups, members of groups, hub subscribers)
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.api.groups.group_count(),
            self.api.groups.member_count(),
            self.api.hub.subscriber_count(),
        )
    }

    /// Waits (up to 5 s) for the counts to become `expected`.
    async fn counts_become(&self, expected: (usize, usize, usize)) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.counts() != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "counts {:?}, expected {expected:?}",
                self.counts()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Connects and subscribes; returns once the subscription is live (a ping round trip
/// after the subscribe: messages are handled in order).
async fn live(url: &str, token: &str, id: &str, query: &str, variables: Value) -> WsClient {
    let mut client = WsClient::connect(url, token).await;
    client.subscribe(id, query, variables).await;
    client.synced().await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_share_one_execution_and_each_subscriber_gets_every_event_once() {
    let (server, app) = InProcess::start().await;
    let c1 = app.customer("c1");
    let agents: Vec<String> = (0..5).map(|i| app.agent(&format!("a{i}"))).collect();
    let chat = server.open_chat(&app, &c1).await;
    let vars = json!({ "a": app.token, "c": chat });

    // 50 connections, callers mixed (the chat's customer and agents), one subscription.
    let tokens: Vec<&str> = (0..50)
        .map(|i| {
            if i % 6 == 0 {
                c1.as_str()
            } else {
                agents[i % 5].as_str()
            }
        })
        .collect();
    let mut same = join_all(
        tokens
            .iter()
            .map(|token| live(&server.url, token, "s", ON_MESSAGE, vars.clone())),
    )
    .await;
    // Another selection on the same chat is another subscription, with its own shape.
    let other_shape = "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number body } }";
    let mut other = live(&server.url, &agents[0], "o", other_shape, vars.clone()).await;
    assert_eq!(server.counts(), (2, 51, 2));

    let total = 20;
    for i in 1..=total {
        let sender = if i % 2 == 0 { &c1 } else { &agents[1] };
        assert_eq!(server.send(&app, sender, chat, &format!("m{i}")).await, i);
    }
    let received = join_all(same.iter_mut().map(|client| async move {
        let mut numbers = Vec::new();
        for _ in 0..total {
            let event = client.next_data("s").await["onMessage"].clone();
            assert_eq!(event["chatNumber"], chat, "{event}");
            assert_eq!(
                event["body"],
                format!("m{}", event["number"].as_i64().unwrap())
            );
            assert!(
                event["senderId"] == "c1" || event["senderId"] == "a1",
                "{event}"
            );
            numbers.push(event["number"].as_i64().unwrap());
        }
        nothing_arrives(client).await;
        numbers
    }))
    .await;
    for numbers in received {
        assert_eq!(numbers, (1..=total).collect::<Vec<_>>());
    }
    for i in 1..=total {
        assert_eq!(
            other.next_data("o").await["onMessage"],
            json!({ "number": i, "body": format!("m{i}") })
        );
    }
    nothing_arrives(&mut other).await;
}

/// The data of the next `n` events, by operation id (their order across operations is not
/// defined).
async fn next_of_each(client: &mut WsClient, n: usize) -> std::collections::HashMap<String, Value> {
    let mut events = std::collections::HashMap::new();
    while events.len() < n {
        match client.next().await {
            Incoming::Message(m) if m["type"] == "next" => {
                let id = m["id"].as_str().unwrap().to_owned();
                assert!(
                    events.insert(id, m["payload"]["data"].clone()).is_none(),
                    "{m}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_caller_cannot_ride_on_an_authorized_group() {
    let (server, app) = InProcess::start().await;
    let (c1, c2, agent) = (app.customer("c1"), app.customer("c2"), app.agent("a1"));
    let chat = server.open_chat(&app, &c1).await;
    let vars = json!({ "a": app.token, "c": chat });
    let mut authorized = live(&server.url, &agent, "m", ON_MESSAGE, vars.clone()).await;
    authorized
        .subscribe("i", ON_INBOX, json!({ "a": app.token }))
        .await;
    authorized.synced().await;
    assert_eq!(server.counts(), (2, 2, 2));

    // Another customer, with exactly the agent's query and variables, is refused as if the
    // group did not exist; so is the inbox feed, which is for agents.
    let mut stranger = WsClient::connect(&server.url, &c2).await;
    stranger.subscribe("m", ON_MESSAGE, vars.clone()).await;
    assert_eq!(expect_error(&mut stranger, "m").await, "NotFound");
    stranger
        .subscribe("i", ON_INBOX, json!({ "a": app.token }))
        .await;
    assert_eq!(expect_error(&mut stranger, "i").await, "Forbidden");
    assert_eq!(server.counts(), (2, 2, 2));

    let number = server.send(&app, &c1, chat, "private").await;
    let events = next_of_each(&mut authorized, 2).await;
    assert_eq!(events["i"]["onInboxMessage"]["number"], number);
    assert_eq!(events["m"]["onMessage"]["number"], number);
    nothing_arrives(&mut stranger).await;

    // The owner joins the existing group (authorized on its own) and gets what follows.
    let mut owner = live(&server.url, &c1, "m", ON_MESSAGE, vars).await;
    assert_eq!(server.counts(), (2, 3, 2));
    let number = server.send(&app, &agent, chat, "reply").await;
    assert_eq!(owner.next_data("m").await["onMessage"]["number"], number);
    let events = next_of_each(&mut authorized, 2).await;
    assert_eq!(events["m"]["onMessage"]["number"], number);
    nothing_arrives(&mut stranger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_ends_when_its_last_member_leaves() {
    let (server, app) = InProcess::start().await;
    let (c1, agent) = (app.customer("c1"), app.agent("a1"));
    let chat = server.open_chat(&app, &c1).await;
    let vars = json!({ "a": app.token, "c": chat });
    let mut completes = live(&server.url, &c1, "1", ON_MESSAGE, vars.clone()).await;
    let disconnects = live(&server.url, &agent, "1", ON_MESSAGE, vars.clone()).await;
    let mut closes = live(&server.url, &agent, "1", ON_MESSAGE, vars.clone()).await;
    let mut inbox = live(
        &server.url,
        &agent,
        "i",
        ON_INBOX,
        json!({ "a": app.token }),
    )
    .await;
    assert_eq!(server.counts(), (2, 4, 2));

    // One member completes its subscription: the group goes on for the others.
    completes
        .send(json!({ "type": "complete", "id": "1" }))
        .await;
    server.counts_become((2, 3, 2)).await;
    let number = server.send(&app, &c1, chat, "still there").await;
    assert_eq!(closes.next_data("1").await["onMessage"]["number"], number);
    nothing_arrives(&mut completes).await;
    // One drops its connection without a word, one closes it properly.
    drop(disconnects);
    closes.socket.close(None).await.unwrap();
    server.counts_become((1, 1, 1)).await;
    // The last member of the inbox feed leaves: nothing is left, in the hub either.
    inbox.send(json!({ "type": "complete", "id": "i" })).await;
    server.counts_become((0, 0, 0)).await;

    // A new subscriber starts a new group, which works as the first did.
    let mut again = live(&server.url, &agent, "1", ON_MESSAGE, vars).await;
    assert_eq!(server.counts(), (1, 1, 1));
    let number = server.send(&app, &c1, chat, "again").await;
    assert_eq!(again.next_data("1").await["onMessage"]["number"], number);
    drop(again);
    server.counts_become((0, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_stops_reading_is_cut_off_and_the_rest_of_its_group_goes_on() {
    let (server, app) = InProcess::start().await;
    let (c1, agent, agent2) = (app.customer("c1"), app.agent("a1"), app.agent("a2"));
    let chat = server.open_chat(&app, &c1).await;
    let query = "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number body } }";
    let vars = json!({ "a": app.token, "c": chat });
    let mut slow = live(&server.url, &agent, "1", query, vars.clone()).await;
    let fast =
        join_all([&c1, &agent2].map(|token| live(&server.url, token, "1", query, vars.clone())))
            .await;
    assert_eq!(server.counts(), (1, 3, 1));

    // `slow` never reads while 8 KiB messages pour in: its socket buffers fill, then its
    // queue in the group. The others read along.
    let big = "x".repeat(8000);
    let (tasks, per_task) = (8, 300);
    let total = tasks * per_task;
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut numbers = Vec::new();
                while numbers.len() < total {
                    numbers.push(
                        client.next_data("1").await["onMessage"]["number"]
                            .as_i64()
                            .unwrap(),
                    );
                }
                numbers
            })
        })
        .collect();
    let started = std::time::Instant::now();
    join_all((0..tasks).map(|_| {
        let (server, app, c1, big) = (&server, &app, &c1, &big);
        async move {
            for _ in 0..per_task {
                server.send(app, c1, chat, big).await;
            }
        }
    }))
    .await;
    let elapsed = started.elapsed();
    // Every member of the group gets every event once, all in the same order (the
    // group's: concurrent senders publish in no particular order).
    let mut sequences = Vec::new();
    for reader in readers {
        let numbers = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .unwrap()
            .unwrap();
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert!(
            sorted == (1..=total as i64).collect::<Vec<_>>(),
            "not every event exactly once"
        );
        sequences.push(numbers);
    }
    assert!(sequences[0] == sequences[1], "members saw different orders");
    assert!(
        elapsed < Duration::from_secs(60),
        "senders were held up: {elapsed:?}"
    );

    // The slow one, reading at last, finds its events in order, then a close with the reason.
    let mut received = 0;
    let frame = loop {
        match slow.next().await {
            Incoming::Message(m) if m["type"] == "next" => {
                assert_eq!(
                    m["payload"]["data"]["onMessage"]["number"],
                    sequences[0][received]
                );
                received += 1;
            }
            Incoming::Message(m) => panic!("unexpected {m}"),
            Incoming::Closed(frame) => break frame,
        }
    };
    let frame = frame.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4029, "{frame:?}");
    assert_eq!(
        frame.reason.as_str(),
        chat_server::realtime::connection::FELL_BEHIND_REASON
    );
    assert!(
        received < total,
        "it was cut off before the end ({received})"
    );
}

/// A document's only operation may be named and sent without `operationName` (GraphQL
/// allows it); it is still a subscription, not "a query on this transport".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_subscription_without_operation_name_streams() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Named").await;
    let customer = app.customer("c1");
    let chat = open_chat(&server, &app, &customer).await;
    let mut client = WsClient::connect(&server.url, &customer).await;
    client
        .subscribe(
            "named",
            "subscription OnMessage($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { body } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    client.synced().await;
    send(&server, &app, &customer, chat, "named and live").await;
    let event = client.next_data("named").await;
    assert_eq!(event["onMessage"]["body"], "named and live", "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aliased_mutation_reaches_no_other_application_or_chat() {
    let server = TestServer::start();
    let a = TestApp::create(&server, "A").await;
    let b = TestApp::create(&server, "B").await;
    let (c1, c2, agent) = (a.customer("c1"), a.customer("c2"), a.agent("agent"));
    let chat1 = open_chat(&server, &a, &c1).await;
    let chat2 = open_chat(&server, &a, &c2).await;
    let mallory = b.customer("mallory");
    open_chat(&server, &b, &mallory).await;
    let all = "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { appToken chatNumber number body senderId } }";
    let mut feed = WsClient::connect(&server.url, &agent).await;
    feed.subscribe("chat1", all, json!({ "a": a.token, "c": chat1 }))
        .await;
    feed.subscribe("inbox", ON_INBOX, json!({ "a": a.token }))
        .await;
    feed.synced().await;

    // Across applications: B's answer says "A", and nothing of it reaches A.
    let forged = server
        .ok(
            &mallory,
            FORGED_SEND,
            json!({ "b": b.token, "cm": a.token }),
        )
        .await;
    assert_eq!(
        forged["sendMessage"]["appToken"], a.token,
        "the caller's own view"
    );
    // Inside one application: c2 makes its chat-2 message look like chat 1's.
    let inside = "mutation($a: ID!, $c: Int!) { sendMessage(appToken: $a, chatNumber: $c, body: \"not yours\") { appToken chatNumber: number number body } }";
    let shaped = server
        .ok(&c2, inside, json!({ "a": a.token, "c": chat2 }))
        .await;
    assert_eq!(shaped["sendMessage"]["chatNumber"], 1);

    // Chat 1 sees only its own message; the inbox sees c2's real one, then c1's.
    send(&server, &a, &c1, chat1, "real").await;
    let mut events: Vec<(String, Value)> = Vec::new();
    while events.len() < 3 {
        match feed.next().await {
            Incoming::Message(m) if m["type"] == "next" => events.push((
                m["id"].as_str().unwrap().to_owned(),
                m["payload"]["data"].clone(),
            )),
            other => panic!("unexpected {other:?}"),
        }
    }
    let of = |id: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|(i, _)| i == id)
            .map(|(_, e)| e.clone())
            .collect()
    };
    assert_eq!(
        of("chat1"),
        [
            json!({ "onMessage": { "appToken": a.token, "chatNumber": chat1, "number": 1, "body": "real", "senderId": "c1" } })
        ]
    );
    assert_eq!(
        of("inbox"),
        [
            json!({ "onInboxMessage": { "chatNumber": chat2, "number": 1 } }),
            json!({ "onInboxMessage": { "chatNumber": chat1, "number": 1 } })
        ]
    );
    nothing_arrives(&mut feed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_the_fields_they_select_whatever_the_mutation_selected() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let mut sub = WsClient::connect(&server.url, &c1).await;
    sub.subscribe("1", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    sub.synced().await;
    let bare = "mutation($a: ID!, $c: Int!) { sendMessage(appToken: $a, chatNumber: $c, body: \"hi\") { __typename } }";
    server
        .ok(&c1, bare, json!({ "a": app.token, "c": chat }))
        .await;
    let event = sub.next_data("1").await;
    assert_eq!(
        event["onMessage"],
        json!({ "chatNumber": chat, "number": 1, "body": "hi", "senderId": "c1" })
    );
}
