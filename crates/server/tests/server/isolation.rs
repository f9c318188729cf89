//! Tenant and customer isolation for every operation of the schema: refused with the right
//! code, no data of others, nothing changed. The matrix: every query and mutation
//! ([`operations`]) and every subscription ([`subscriptions`]) × every wrong identity (no
//! token, malformed tokens, alg "none", a wrong signature, expired, a rotated-out secret, an
//! unknown application, another application's agent, a customer of another chat, a customer
//! on agent-only operations, a user token on admin operations, the admin key on user
//! operations). SECURITY.md states its size.

use crate::common;

use std::time::Duration;

use base64::Engine as _;
use common::ws::{Incoming, WsClient};
use common::*;
use serde_json::{Value, json};

/// Every operation, aimed at application `a`'s chat 1 / message 1.
fn operations(a: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "application",
            "query($a: ID!) { application(token: $a) { token chatsCount } }",
            json!({ "a": a }),
        ),
        (
            "chat",
            "query($a: ID!) { chat(appToken: $a, number: 1) { number customerId } }",
            json!({ "a": a }),
        ),
        (
            "chats",
            "query($a: ID!) { chats(appToken: $a) { items { number } } }",
            json!({ "a": a }),
        ),
        (
            "chatsFiltered",
            "query($a: ID!) { chatsFiltered: chats(appToken: $a, filter: { assignee: \"UNASSIGNED\", status: OPEN }) { items { number assigneeId } } }",
            json!({ "a": a }),
        ),
        (
            "message",
            "query($a: ID!) { message(appToken: $a, chatNumber: 1, number: 1) { body } }",
            json!({ "a": a }),
        ),
        (
            "messages",
            "query($a: ID!) { messages(appToken: $a, chatNumber: 1) { items { body } } }",
            json!({ "a": a }),
        ),
        (
            "searchMessages",
            "query($a: ID!) { searchMessages(appToken: $a, chatNumber: 1, query: \"private\") { items { body } } }",
            json!({ "a": a }),
        ),
        (
            "unreadSummary",
            "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }",
            json!({ "a": a }),
        ),
        (
            "updateApplication",
            "mutation($a: ID!) { updateApplication(token: $a, name: \"Hacked\") { name } }",
            json!({ "a": a }),
        ),
        (
            "createChat",
            "mutation($a: ID!) { createChat(appToken: $a, customerId: \"x\") { number } }",
            json!({ "a": a }),
        ),
        (
            "updateChat",
            "mutation($a: ID!) { updateChat(appToken: $a, number: 1, status: RESOLVED) { status } }",
            json!({ "a": a }),
        ),
        (
            "assignChat",
            "mutation($a: ID!) { assignChat(appToken: $a, chatNumber: 1, assignee: \"intruder\", team: \"Mine\") { assigneeId team } }",
            json!({ "a": a }),
        ),
        (
            "sendMessage",
            "mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: \"intruder\") { number } }",
            json!({ "a": a }),
        ),
        (
            "createUpload",
            "mutation($a: ID!) { createUpload(appToken: $a, chatNumber: 1, fileName: \"x.png\", contentType: \"image/png\", size: 10) { id url } }",
            json!({ "a": a }),
        ),
        (
            "editMessage",
            "mutation($a: ID!) { editMessage(appToken: $a, chatNumber: 1, number: 1, body: \"edited\") { body } }",
            json!({ "a": a }),
        ),
        (
            "deleteMessage",
            "mutation($a: ID!) { deleteMessage(appToken: $a, chatNumber: 1, number: 1) { deleted } }",
            json!({ "a": a }),
        ),
        (
            "markChatRead",
            "mutation($a: ID!) { markChatRead(appToken: $a, chatNumber: 1) { lastReadNumber unreadCount } }",
            json!({ "a": a }),
        ),
        (
            "markAllRead",
            "mutation($a: ID!) { markAllRead(appToken: $a) { totalUnread unreadChats } }",
            json!({ "a": a }),
        ),
        (
            "rotateApplicationSecret",
            "mutation($a: ID!) { rotateApplicationSecret(token: $a) { secret } }",
            json!({ "a": a }),
        ),
        (
            "presences",
            "query($a: ID!) { presences(appToken: $a) { items { userId chatNumber } } }",
            json!({ "a": a }),
        ),
        (
            "availability",
            "query($a: ID!) { availability(appToken: $a) { agentsOnline agentsAway } }",
            json!({ "a": a }),
        ),
        (
            "chatViewers",
            "query($a: ID!) { chatViewers(appToken: $a, chatNumber: 1) { userId } }",
            json!({ "a": a }),
        ),
        (
            "heartbeat",
            "mutation($a: ID!) { heartbeat(appToken: $a, chatNumber: 1) { status } }",
            json!({ "a": a }),
        ),
        (
            "typing",
            "mutation($a: ID!) { typing(appToken: $a, chatNumber: 1) { userId } }",
            json!({ "a": a }),
        ),
    ]
}

/// Every subscription, aimed at application `a`'s chat 1.
fn subscriptions(a: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "onMessage",
            "subscription($a: ID!) { onMessage(appToken: $a, chatNumber: 1) { number body } }",
            json!({ "a": a }),
        ),
        (
            "onReadReceipt",
            "subscription($a: ID!) { onReadReceipt(appToken: $a, chatNumber: 1) { lastReadNumber } }",
            json!({ "a": a }),
        ),
        (
            "onInboxMessage",
            "subscription($a: ID!) { onInboxMessage(appToken: $a) { number body } }",
            json!({ "a": a }),
        ),
        (
            "onChat",
            "subscription($a: ID!) { onChat(appToken: $a) { number } }",
            json!({ "a": a }),
        ),
        (
            "onPresence",
            "subscription($a: ID!) { onPresence(appToken: $a) { userId status } }",
            json!({ "a": a }),
        ),
        (
            "onAvailability",
            "subscription($a: ID!) { onAvailability(appToken: $a) { agentsOnline } }",
            json!({ "a": a }),
        ),
        (
            "onChatViewer",
            "subscription($a: ID!) { onChatViewer(appToken: $a, chatNumber: 1) { userId } }",
            json!({ "a": a }),
        ),
        (
            "onTyping",
            "subscription($a: ID!) { onTyping(appToken: $a, chatNumber: 1) { userId } }",
            json!({ "a": a }),
        ),
    ]
}

/// Subscribes to every subscription as `token` over graphql-transport-ws: each must be
/// refused with `expected(op)` ("allowed": what the caller may see, not refused), and
/// nothing of application `a` may arrive afterwards.
async fn refuse_all_subscriptions(w: &World, token: &str, expected: impl Fn(&str) -> &'static str) {
    let mut client = WsClient::connect(&w.server.url, token).await;
    for (op, query, vars) in subscriptions(&w.a.token) {
        client.subscribe(op, query, vars).await;
        if expected(op) == "allowed" {
            continue;
        }
        match client.next().await {
            Incoming::Message(m) if m["type"] == "error" && m["id"] == op => {
                let code = m["payload"][0]["extensions"]["code"].as_str();
                assert_eq!(code, Some(expected(op)), "{op}: {m}");
            }
            other => panic!("{op}: expected a refusal, got {other:?}"),
        }
    }
    // Activity in `a` reaches none of the refused subscriptions.
    let owner = w.a.customer("owner");
    send(&w.server, &w.a, &owner, 1, "after the refusals").await;
    assert!(
        client
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a refused subscription delivered an event"
    );
}

/// A token that does not verify never gets a WebSocket connection: closed with 4403.
async fn refuse_connection(w: &World, token: &str) {
    let mut client = WsClient::open(&w.server.url).await;
    client
        .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
        .await;
    match client.next().await {
        Incoming::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), 4403, "{frame:?}"),
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

struct World {
    server: TestServer,
    a: TestApp,
    b: TestApp,
}

async fn world() -> World {
    let server = TestServer::start();
    let a = TestApp::create(&server, "Tenant A").await;
    let b = TestApp::create(&server, "Tenant B").await;
    for app in [&a, &b] {
        let owner = app.customer("owner");
        let chat = open_chat(&server, app, &owner).await;
        send(&server, app, &owner, chat, "private words").await;
    }
    World { server, a, b }
}

/// The state of application `a` as its agent sees it, to prove nothing changed.
async fn snapshot(w: &World) -> Value {
    let agent = w.a.agent("auditor");
    w.server
        .ok(
            &agent,
            "query($a: ID!) { chats(appToken: $a) { items { number subject status messagesCount customerLastRead agentsLastRead assigneeId team hasAgent updatedAt lastMessage { body editedAt deleted } } } unreadSummary(appToken: $a) { totalUnread unreadChats } messages(appToken: $a, chatNumber: 1) { items { number body deleted } } }",
            json!({ "a": w.a.token }),
        )
        .await
}

async fn app_name(w: &World) -> Value {
    w.server
        .ok(
            ADMIN_KEY,
            "query($a: ID!) { application(token: $a) { name chatsCount } }",
            json!({ "a": w.a.token }),
        )
        .await
}

/// Runs every operation as `token` and checks each answer: an error with code
/// `expected(op)` and no data; or "null" (a nullable query that must not reveal whether a
/// chat exists); or "empty" (a list with nothing in it); or "zero" (the caller's own
/// summary, with nothing unread); or "allowed" (what any user of the application may see:
/// an answer without errors).
async fn refuse_all(w: &World, token: Option<&str>, expected: impl Fn(&str) -> &'static str) {
    let before = (snapshot(w).await, app_name(w).await);
    for (op, query, vars) in operations(&w.a.token) {
        let (_, body) = w.server.post(token, query, vars).await;
        let want = expected(op);
        if want == "null" {
            assert!(body.get("errors").is_none(), "{op}: {body}");
            assert_eq!(body["data"][op], Value::Null, "{op} leaked data: {body}");
            continue;
        }
        if want == "allowed" {
            assert!(body.get("errors").is_none(), "{op}: {body}");
            continue;
        }
        if want == "zero" {
            assert!(body.get("errors").is_none(), "{op}: {body}");
            assert_eq!(
                body["data"][op],
                json!({ "totalUnread": 0, "unreadChats": 0 }),
                "{op} leaked data: {body}"
            );
            continue;
        }
        if want == "empty" {
            assert!(body.get("errors").is_none(), "{op}: {body}");
            assert_eq!(
                body["data"][op]["items"],
                json!([]),
                "{op} leaked data: {body}"
            );
            continue;
        }
        let code = body["errors"][0]["extensions"]["code"].as_str();
        assert_eq!(code, Some(want), "{op}: {body}");
        let data = &body["data"];
        assert!(
            data.is_null() || data[op].is_null(),
            "{op} leaked data: {body}"
        );
    }
    assert_eq!(
        (snapshot(w).await, app_name(w).await),
        before,
        "something changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_unauthorized_everywhere() {
    let w = world().await;
    refuse_all(&w, None, |_| "Unauthorized").await;
    refuse_connection(&w, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_401() {
    let w = world().await;
    let expired = chat_appsync::auth::mint_user_token(
        &w.a.secret,
        &w.a.token,
        "u",
        chat_domain::Role::Agent,
        1_000,
    )
    .unwrap();
    let forged = chat_appsync::auth::mint_user_token(
        "sk_wrong",
        &w.a.token,
        "u",
        chat_domain::Role::Agent,
        jsonwebtoken_exp(60),
    )
    .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(
            json!({ "sub": "u", "app": w.a.token, "role": "AGENT", "exp": jsonwebtoken_exp(60) })
                .to_string()
        )
    );
    // Well signed, but for an application that does not exist (its key derived the way
    // the server would, were it to exist: only the store says it does not).
    let unknown_app = chat_appsync::auth::mint_user_token(
        &w.a.secret,
        "app_doesnotexist",
        "u",
        chat_domain::Role::Agent,
        jsonwebtoken_exp(60),
    )
    .unwrap();
    // Signed with a secret of `b` that has since been rotated out without grace.
    let rotated_out = w.b.agent("before-rotation");
    w.server
        .ok(
            ADMIN_KEY,
            "mutation($b: ID!) { rotateApplicationSecret(token: $b, graceSeconds: 0) { secret } }",
            json!({ "b": w.b.token }),
        )
        .await;
    let before = (snapshot(&w).await, app_name(&w).await);
    let tokens = [
        expired.as_str(),
        forged.as_str(),
        alg_none.as_str(),
        unknown_app.as_str(),
        rotated_out.as_str(),
        "a.b.c",
    ];
    for token in tokens {
        for (op, query, vars) in operations(&w.a.token) {
            let (status, body) = w.server.post(Some(token), query, vars).await;
            assert_eq!(status, 401, "{op}: {body}");
            assert_eq!(body["errors"][0]["extensions"]["code"], "Unauthorized");
            assert!(body["data"].is_null());
        }
        refuse_connection(&w, token).await;
    }
    assert_eq!(
        (snapshot(&w).await, app_name(&w).await),
        before,
        "something changed"
    );
    // "not-a-token" can only be a guess at the admin key: after 10 failures from this
    // address it is throttled (429) instead of compared.
    for (attempt, (op, query, vars)) in operations(&w.a.token).into_iter().enumerate() {
        let (status, body) = w.server.post(Some("not-a-token"), query, vars).await;
        let (want_status, want_code) = if attempt < 10 {
            (401, "Unauthorized")
        } else {
            (429, "Throttled")
        };
        assert_eq!(status, want_status, "{op}: {body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], want_code);
        assert!(body["data"].is_null());
    }
    refuse_connection(&w, "not-a-token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_applications_agent_is_forbidden_everywhere() {
    let w = world().await;
    let intruder = w.b.agent("agent-of-b");
    refuse_all(&w, Some(&intruder), |_| "Forbidden").await;
    refuse_all_subscriptions(&w, &intruder, |_| "Forbidden").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customer_sees_no_chat_and_changes_nothing() {
    let w = world().await;
    let stranger = w.a.customer("stranger");
    refuse_all(&w, Some(&stranger), |op| match op {
        "application" | "updateApplication" => "Forbidden",
        // Assignment and the assignee filters are for agents.
        "assignChat" | "chatsFiltered" => "Forbidden",
        // A customer must not learn whether another customer's chat exists.
        "chat" | "message" => "null",
        "createChat" => "Forbidden",
        // Its own (empty) list of chats, its own (empty) badge.
        "chats" => "empty",
        "unreadSummary" | "markAllRead" => "zero",
        "rotateApplicationSecret" => "Forbidden",
        // The application's presence is for agents; whether an agent is online is the
        // widget's to show to every customer.
        "presences" => "Forbidden",
        "availability" => "allowed",
        _ => "NotFound",
    })
    .await;
    // Its subscriptions: another customer's chat does not exist for it; the application's
    // feeds are for agents, but for availability.
    refuse_all_subscriptions(&w, &stranger, |op| match op {
        "onMessage" | "onReadReceipt" | "onChatViewer" | "onTyping" => "NotFound",
        "onAvailability" => "allowed",
        _ => "Forbidden",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_opens_no_websocket_and_is_no_oracle_there() {
    // Real time takes user tokens only: the admin key is refused like any wrong key, with
    // the same close, so a WebSocket cannot tell a guess from the key.
    let w = world().await;
    for token in [ADMIN_KEY, "adm_wrong_guess_0123456789"] {
        let mut client = WsClient::open(&w.server.url).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
            .await;
        match client.next().await {
            Incoming::Closed(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 4403, "{frame:?}");
                assert_eq!(
                    frame.reason,
                    "Forbidden: a valid Authorization token is required"
                );
            }
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_key_attempts_are_throttled_per_address_and_logged_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = TestServer::start_logging_to(&log, "warn");
    let query = "mutation { createApplication(name: \"X\") { secret } }";
    let guesses: Vec<String> = (0..10)
        .map(|i| format!("adm_guess_{i:04}_abcdefgh"))
        .collect();
    for guess in &guesses {
        let (status, _) = server.post(Some(guess), query, json!({})).await;
        assert_eq!(status, 401);
    }
    // The eleventh attempt from this address is throttled before it is compared: even the
    // right key is refused, so a guesser cannot tell it found it.
    for token in ["adm_guess_9999_abcdefgh", ADMIN_KEY] {
        let (status, body) = server.post(Some(token), query, json!({})).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["errors"][0]["errorType"], "Throttled", "{body}");
    }
    // User tokens from the same address are not affected; nor is another address.
    let a = TestApp::create_from(&server, "Acme", "127.0.0.2").await;
    let (status, _) = server
        .post(
            Some(&a.agent("a1")),
            "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread } }",
            json!({ "a": a.token }),
        )
        .await;
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("admin key: failed attempt"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(text.contains("too many failed attempts"), "{text}");
    for guess in &guesses {
        assert!(!text.contains(guess.as_str()), "a guess reached the log");
    }
    assert!(!text.contains(ADMIN_KEY), "the key reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_tokens_cannot_use_admin_operations_and_admin_cannot_chat() {
    let w = world().await;
    let agent = w.a.agent("a1");
    let code = w
        .server
        .error_code(
            Some(&agent),
            "mutation { createApplication(name: \"Mine\") { secret } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = w
        .server
        .error_code(
            Some(&agent),
            "mutation($a: ID!) { rotateApplicationSecret(token: $a) { secret } }",
            json!({ "a": w.a.token }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = w
        .server
        .error_code(
            Some(&agent),
            "mutation($a: ID!) { updateApplication(token: $a, name: \"X\") { name } }",
            json!({ "a": w.a.token }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = w
        .server
        .error_code(Some(ADMIN_KEY), "mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: \"x\") { number } }", json!({ "a": w.a.token }))
        .await;
    assert_eq!(code, "Forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_mutations_refuse_every_client_identity_and_deliver_nothing() {
    let w = world().await;
    let agent = w.a.agent("a1");
    let mut feed = WsClient::connect(&w.server.url, &agent).await;
    for (op, query, vars) in subscriptions(&w.a.token) {
        feed.subscribe(op, query, vars).await;
    }
    feed.synced().await;

    let identities = [
        ("no token", None),
        ("the admin key", Some(ADMIN_KEY.to_owned())),
        ("its own agent", Some(agent.clone())),
        ("its own customer", Some(w.a.customer("owner"))),
        ("another application's agent", Some(w.b.agent("agent-of-b"))),
    ];
    for (who, token) in &identities {
        for (mutation, input) in chat_appsync::publish::MUTATIONS {
            let document = chat_appsync::publish::document(mutation).unwrap();
            let variables = json!({ "event": publish_event(input, &w.a.token) });
            let (_, body) = w.server.post(token.as_deref(), &document, variables).await;
            assert_eq!(body["data"][mutation], Value::Null, "{who}: {body}");
            assert_eq!(
                body["errors"][0]["errorType"], "Unauthorized",
                "{who}: {body}"
            );
        }
    }
    if let Some(Incoming::Message(m)) = feed.next_within(Duration::from_millis(300)).await {
        panic!("a forged event arrived: {m}");
    }
}
