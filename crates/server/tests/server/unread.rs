//! Unread counts over HTTP: badges, receipts, markAllRead, read receipts in real time, and
//! exact counters after concurrent senders and readers (on SQLite and on DynamoDB).

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::ws::WsClient;
use common::*;
use futures::future::join_all;
use serde_json::{Value, json};

const SUMMARY: &str =
    "query($a: ID!) { unreadSummary(appToken: $a) { appToken totalUnread unreadChats } }";
const MARK: &str = "mutation($a: ID!, $c: Int!, $u: Int) { markChatRead(appToken: $a, chatNumber: $c, upTo: $u) { appToken chatNumber readerId readerRole lastReadNumber unreadCount } }";
const MARK_ALL: &str =
    "mutation($a: ID!) { markAllRead(appToken: $a) { totalUnread unreadChats } }";
const CHATS: &str = "query($a: ID!, $t: String) { chats(appToken: $a, limit: 100, nextToken: $t) { items { number customerId messagesCount unreadCount customerLastRead agentsLastRead } nextToken } }";

async fn summary(server: &TestServer, app: &TestApp, token: &str) -> (i64, i64) {
    let data = server.ok(token, SUMMARY, json!({ "a": app.token })).await;
    let s = &data["unreadSummary"];
    assert_eq!(s["appToken"], app.token.as_str());
    (
        s["totalUnread"].as_i64().unwrap(),
        s["unreadChats"].as_i64().unwrap(),
    )
}

async fn mark(
    server: &TestServer,
    app: &TestApp,
    token: &str,
    chat: i64,
    up_to: Option<i64>,
) -> Value {
    server
        .ok(
            token,
            MARK,
            json!({ "a": app.token, "c": chat, "u": up_to }),
        )
        .await["markChatRead"]
        .clone()
}

/// Every chat of the application as `token` sees it, by number.
async fn all_chats(server: &TestServer, app: &TestApp, token: &str) -> HashMap<i64, Value> {
    server
        .all_chats(token, CHATS, json!({ "a": app.token }))
        .await
        .into_iter()
        .map(|chat| (chat["number"].as_i64().unwrap(), chat))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn badges_follow_sends_and_reads() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Badges").await;
    let (customer, ann, bob) = (app.customer("cust-1"), app.agent("ann"), app.agent("bob"));
    let chat = open_chat(&server, &app, &customer).await;
    send(&server, &app, &customer, chat, "hello").await;
    send(&server, &app, &customer, chat, "anyone there?").await;

    // The agents see two unread messages in one chat; the customer none.
    assert_eq!(summary(&server, &app, &ann).await, (2, 1));
    assert_eq!(summary(&server, &app, &customer).await, (0, 0));
    let as_agent = &all_chats(&server, &app, &bob).await[&chat];
    assert_eq!(
        (
            &as_agent["unreadCount"],
            &as_agent["customerLastRead"],
            &as_agent["agentsLastRead"]
        ),
        (&json!(2), &json!(2), &json!(0))
    );
    let as_customer = &all_chats(&server, &app, &customer).await[&chat];
    assert_eq!(as_customer["unreadCount"], 0);

    // One agent reads the first: the receipt, and the team's badge drops by one.
    let receipt = mark(&server, &app, &ann, chat, Some(1)).await;
    assert_eq!(
        receipt,
        json!({ "appToken": app.token, "chatNumber": chat, "readerId": "ann",
                "readerRole": "AGENT", "lastReadNumber": 1, "unreadCount": 1 })
    );
    assert_eq!(summary(&server, &app, &bob).await, (1, 1));

    // An older upTo changes nothing; one beyond the last message is BadInput; so is 0.
    let again = mark(&server, &app, &ann, chat, Some(1)).await;
    assert_eq!(again, receipt);
    for bad in [3, 0, -1] {
        let code = server
            .error_code(
                Some(&ann),
                MARK,
                json!({ "a": app.token, "c": chat, "u": bad }),
            )
            .await;
        assert_eq!(code, "BadInput", "upTo {bad}");
    }

    // An agent answers: read by the agents, unread for the customer.
    send(&server, &app, &bob, chat, "Hi! How can I help?").await;
    assert_eq!(summary(&server, &app, &ann).await, (0, 0));
    assert_eq!(summary(&server, &app, &customer).await, (1, 1));
    let receipt = mark(&server, &app, &customer, chat, None).await;
    assert_eq!(
        (&receipt["lastReadNumber"], &receipt["unreadCount"]),
        (&json!(3), &json!(0))
    );
    assert_eq!(summary(&server, &app, &customer).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_all_read_clears_every_chat_the_caller_sees() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Mark all").await;
    let agent = app.agent("ann");
    let customers: Vec<String> = (0..3).map(|i| app.customer(&format!("c{i}"))).collect();
    // 250 chats (more than one page of 100), each with a customer message and an answer
    // for two of the customers.
    for i in 0..250 {
        let customer = &customers[i % 3];
        let chat = open_chat(&server, &app, customer).await;
        send(&server, &app, customer, chat, "question").await;
        if i % 3 != 2 {
            send(&server, &app, &agent, chat, "answer").await;
            send(&server, &app, customer, chat, "thanks").await;
        }
    }
    assert_eq!(summary(&server, &app, &agent).await, (250, 250));
    send(&server, &app, &agent, 3, "more").await;
    let c2_before = summary(&server, &app, &customers[2]).await;
    assert_eq!(c2_before, (1, 1));

    // A customer's markAllRead touches only its chats.
    let data = server
        .ok(&customers[2], MARK_ALL, json!({ "a": app.token }))
        .await;
    assert_eq!(
        data["markAllRead"],
        json!({ "totalUnread": 0, "unreadChats": 0 })
    );
    assert_eq!(summary(&server, &app, &agent).await, (249, 249));

    // The agents' markAllRead clears all 250 pages' worth.
    let data = server.ok(&agent, MARK_ALL, json!({ "a": app.token })).await;
    assert_eq!(
        data["markAllRead"],
        json!({ "totalUnread": 0, "unreadChats": 0 })
    );
    let chats = all_chats(&server, &app, &agent).await;
    assert_eq!(chats.len(), 250);
    assert!(
        chats
            .values()
            .all(|c| c["unreadCount"] == 0 && c["agentsLastRead"] == c["messagesCount"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_reach_the_chats_subscribers() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Receipts").await;
    let (customer, agent) = (app.customer("cust-1"), app.agent("ann"));
    let chat = open_chat(&server, &app, &customer).await;
    send(&server, &app, &customer, chat, "hello").await;

    let mut ws = WsClient::connect(&server.url, &customer).await;
    ws.subscribe(
        "r",
        "subscription($a: ID!, $c: Int!) { onReadReceipt(appToken: $a, chatNumber: $c) { chatNumber readerId readerRole lastReadNumber } }",
        json!({ "a": app.token, "c": chat }),
    )
    .await;
    // Another customer may not watch the chat's receipts.
    let mut stranger = WsClient::connect(&server.url, &app.customer("stranger")).await;
    stranger
        .subscribe(
            "r",
            "subscription($a: ID!, $c: Int!) { onReadReceipt(appToken: $a, chatNumber: $c) { readerId } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    let refused = stranger.next().await;
    assert!(format!("{refused:?}").contains("NotFound"), "{refused:?}");

    // Give the subscription time to register, then the agent reads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    mark(&server, &app, &agent, chat, None).await;
    let event = ws.next_data("r").await;
    assert_eq!(
        event["onReadReceipt"],
        json!({ "chatNumber": chat, "readerId": "ann", "readerRole": "AGENT", "lastReadNumber": 1 })
    );
}

/// 32 concurrent senders (customers and agents over 8 chats) and 8 concurrent readers,
/// then every counter against an oracle built from what the calls returned: a chat's last
/// number is its sends; a role's watermark is the highest number it sent or a receipt
/// reported.
pub async fn concurrent_senders_and_readers_leave_exact_counters(
    server: &TestServer,
    rounds: usize,
) {
    let app = TestApp::create(server, "Concurrent unread").await;
    let customers: Vec<String> = (0..4).map(|i| app.customer(&format!("c{i}"))).collect();
    let agents: Vec<String> = (0..3).map(|i| app.agent(&format!("a{i}"))).collect();
    let chats = 8usize;
    for chat in 0..chats {
        open_chat(server, &app, &customers[chat % 4]).await;
    }
    // (chat, role is agent, number): every send and every reported read.
    let senders = (0..32).map(|i| {
        let (server, app, customers, agents) = (server, &app, &customers, &agents);
        async move {
            let mut seen = Vec::new();
            for round in 0..rounds {
                let chat = (i + round) % chats + 1;
                let agent = i % 2 == 1;
                let token = if agent {
                    &agents[i % 3]
                } else {
                    &customers[(chat - 1) % 4]
                };
                let sent = send(server, app, token, chat as i64, "concurrent").await;
                seen.push((chat, agent, sent["number"].as_i64().unwrap()));
            }
            seen
        }
    });
    let readers = (0..8).map(|i| {
        let (server, app, customers, agents) = (server, &app, &customers, &agents);
        async move {
            let mut seen = Vec::new();
            for round in 0..rounds {
                let chat = (i * 3 + round) % chats + 1;
                let agent = i % 2 == 0;
                let token = if agent {
                    &agents[i % 3]
                } else {
                    &customers[(chat - 1) % 4]
                };
                let receipt = mark(server, app, token, chat as i64, None).await;
                seen.push((chat, agent, receipt["lastReadNumber"].as_i64().unwrap()));
            }
            seen
        }
    });
    let (sent, read) = futures::join!(join_all(senders), join_all(readers));

    let mut last = vec![0i64; chats + 1];
    let mut customer_read = vec![0i64; chats + 1];
    let mut agents_read = vec![0i64; chats + 1];
    for (chat, agent, number) in sent.iter().flatten() {
        last[*chat] += 1;
        let mark = if *agent {
            &mut agents_read
        } else {
            &mut customer_read
        };
        mark[*chat] = mark[*chat].max(*number);
    }
    for (chat, agent, number) in read.iter().flatten() {
        let mark = if *agent {
            &mut agents_read
        } else {
            &mut customer_read
        };
        mark[*chat] = mark[*chat].max(*number);
    }
    let seen = all_chats(server, &app, &agents[0]).await;
    let (mut team, mut per_customer) = ((0, 0), vec![(0, 0); 4]);
    for chat in 1..=chats {
        let c = &seen[&(chat as i64)];
        assert_eq!(
            (
                &c["messagesCount"],
                &c["customerLastRead"],
                &c["agentsLastRead"]
            ),
            (
                &json!(last[chat]),
                &json!(customer_read[chat]),
                &json!(agents_read[chat])
            ),
            "chat {chat}"
        );
        let agents_unread = last[chat] - agents_read[chat];
        assert_eq!(c["unreadCount"], agents_unread);
        team.0 += agents_unread;
        team.1 += i64::from(agents_unread > 0);
        let customer_unread = last[chat] - customer_read[chat];
        let badge = &mut per_customer[(chat - 1) % 4];
        badge.0 += customer_unread;
        badge.1 += i64::from(customer_unread > 0);
    }
    for agent in &agents {
        assert_eq!(summary(server, &app, agent).await, team);
    }
    for (customer, badge) in customers.iter().zip(per_customer) {
        assert_eq!(summary(server, &app, customer).await, badge);
    }
    // And everything read leaves every badge at zero.
    let data = server
        .ok(&agents[1], MARK_ALL, json!({ "a": app.token }))
        .await;
    assert_eq!(
        data["markAllRead"],
        json!({ "totalUnread": 0, "unreadChats": 0 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_are_exact_after_concurrent_senders_and_readers() {
    let server = TestServer::start();
    concurrent_senders_and_readers_leave_exact_counters(&server, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_are_exact_after_concurrent_senders_and_readers_on_dynamodb() {
    let server = TestServer::start_on_moto("unread");
    concurrent_senders_and_readers_leave_exact_counters(&server, 4).await;
}
