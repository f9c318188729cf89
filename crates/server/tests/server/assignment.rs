//! Assignment over HTTP and WebSocket against a started dev server: the GraphQL shape of
//! assignChat, the inbox filters and "my unread", what a customer sees, and onChat.

use crate::common;

use common::ws::WsClient;
use common::*;
use serde_json::{Value, json};

const ASSIGN: &str = "mutation($a: ID!, $c: Int!, $to: ID, $team: String) { assignChat(appToken: $a, chatNumber: $c, assignee: $to, team: $team) { number hasAgent assigneeId team updatedAt } }";
const FILTERED: &str = "query($a: ID!, $f: ChatFilter, $l: Int, $t: String) { chats(appToken: $a, filter: $f, limit: $l, nextToken: $t) { items { number assigneeId team hasAgent } nextToken } }";
const SUMMARY: &str = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats assignedUnread assignedUnreadChats } }";
const ON_CHAT: &str =
    "subscription($a: ID!) { onChat(appToken: $a) { number assigneeId team hasAgent } }";

async fn filtered(server: &TestServer, token: &str, app: &TestApp, filter: Value) -> Vec<i64> {
    server
        .chat_numbers(
            token,
            FILTERED,
            json!({ "a": app.token, "f": filter, "l": 2 }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_assign_and_filter_customers_see_only_whether_an_agent_is_there() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (alice, bob) = (app.agent("alice"), app.agent("bob"));
    let customer = app.customer("c1");
    let mut chats = Vec::new();
    for _ in 0..5 {
        chats.push(open_chat(&server, &app, &customer).await);
    }
    let mut feed = WsClient::connect(&server.url, &bob).await;
    feed.subscribe("chats", ON_CHAT, json!({ "a": app.token }))
        .await;

    // Alice takes chats 1 and 2 (one with a team), then transfers 2 to bob.
    let taken = server
        .ok(
            &alice,
            ASSIGN,
            json!({ "a": app.token, "c": 1, "to": "alice", "team": "Billing" }),
        )
        .await;
    assert_eq!(taken["assignChat"]["assigneeId"], "alice");
    assert_eq!(taken["assignChat"]["team"], "Billing");
    assert_eq!(taken["assignChat"]["hasAgent"], true);
    assert_eq!(
        feed.next_data("chats").await["onChat"],
        json!({ "number": 1, "assigneeId": "alice", "team": "Billing", "hasAgent": true })
    );
    server
        .ok(
            &alice,
            ASSIGN,
            json!({ "a": app.token, "c": 2, "to": "alice" }),
        )
        .await;
    feed.next_data("chats").await;
    let moved = server
        .ok(
            &alice,
            ASSIGN,
            json!({ "a": app.token, "c": 2, "to": "bob" }),
        )
        .await;
    assert_eq!(moved["assignChat"]["assigneeId"], "bob");
    assert_eq!(feed.next_data("chats").await["onChat"]["assigneeId"], "bob");

    // Each filter, paged by 2: every chat once, most recent activity first.
    let mine = filtered(&server, &alice, &app, json!({ "assignee": "ME" })).await;
    assert_eq!(mine, vec![1]);
    let bobs = filtered(&server, &alice, &app, json!({ "assignee": "bob" })).await;
    assert_eq!(bobs, vec![2]);
    let open = filtered(
        &server,
        &alice,
        &app,
        json!({ "assignee": "UNASSIGNED", "status": "OPEN" }),
    )
    .await;
    assert_eq!(open, vec![5, 4, 3]);
    let team = filtered(&server, &alice, &app, json!({ "team": "Billing" })).await;
    assert_eq!(team, vec![1]);
    let all = filtered(&server, &alice, &app, json!({ "assignee": "ANY" })).await;
    assert_eq!(all, vec![5, 4, 3, 2, 1]);

    // "My unread": customer messages in alice's chat.
    send(&server, &app, &customer, 1, "where is my order?").await;
    send(&server, &app, &customer, 1, "hello?").await;
    send(&server, &app, &customer, 3, "unassigned").await;
    let summary = server.ok(&alice, SUMMARY, json!({ "a": app.token })).await;
    assert_eq!(
        summary["unreadSummary"],
        json!({ "totalUnread": 3, "unreadChats": 2, "assignedUnread": 2, "assignedUnreadChats": 1 })
    );
    let summary = server.ok(&bob, SUMMARY, json!({ "a": app.token })).await;
    assert_eq!(summary["unreadSummary"]["assignedUnread"], 0);

    // The customer sees that an agent is there, never who, nor the team.
    let own = server
        .ok(
            &customer,
            "query($a: ID!) { chat(appToken: $a, number: 1) { hasAgent assigneeId team } chats(appToken: $a) { items { number hasAgent assigneeId team } } }",
            json!({ "a": app.token }),
        )
        .await;
    assert_eq!(
        own["chat"],
        json!({ "hasAgent": true, "assigneeId": null, "team": null })
    );
    for chat in own["chats"]["items"].as_array().unwrap() {
        assert!(
            chat["assigneeId"].is_null() && chat["team"].is_null(),
            "{chat}"
        );
        let assigned = chat["number"] == 1 || chat["number"] == 2;
        assert_eq!(chat["hasAgent"], assigned, "{chat}");
    }
    let summary = server
        .ok(&customer, SUMMARY, json!({ "a": app.token }))
        .await;
    assert_eq!(summary["unreadSummary"]["assignedUnread"], 0);

    // A customer may neither assign nor filter.
    let code = server
        .error_code(
            Some(&customer),
            ASSIGN,
            json!({ "a": app.token, "c": 1, "to": "c1" }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = server
        .error_code(
            Some(&customer),
            FILTERED,
            json!({ "a": app.token, "f": { "assignee": "ME" } }),
        )
        .await;
    assert_eq!(code, "Forbidden");

    // Unassigning (null) and clearing the team (null).
    let freed = server
        .ok(
            &bob,
            ASSIGN,
            json!({ "a": app.token, "c": 1, "to": null, "team": null }),
        )
        .await;
    assert_eq!(freed["assignChat"]["hasAgent"], false, "{freed}");
    assert!(freed["assignChat"]["assigneeId"].is_null());
    assert!(freed["assignChat"]["team"].is_null());
    let summary = server.ok(&alice, SUMMARY, json!({ "a": app.token })).await;
    assert_eq!(summary["unreadSummary"]["assignedUnread"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_assignments_and_filters_are_bad_input() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("alice");
    let customer = app.customer("c1");
    open_chat(&server, &app, &customer).await;
    for (vars, what) in [
        (
            json!({ "a": app.token, "c": 1, "to": "a b" }),
            "an id with a space",
        ),
        (
            json!({ "a": app.token, "c": 1, "to": "alice", "team": "a#b" }),
            "a team with #",
        ),
        (
            json!({ "a": app.token, "c": 1, "to": "alice", "team": "t".repeat(65) }),
            "a team of 65 characters",
        ),
    ] {
        let code = server.error_code(Some(&agent), ASSIGN, vars).await;
        assert_eq!(code, "BadInput", "{what}");
    }
    let code = server
        .error_code(
            Some(&agent),
            ASSIGN,
            json!({ "a": app.token, "c": 9, "to": "alice" }),
        )
        .await;
    assert_eq!(code, "NotFound");
    for filter in [
        json!({ "assignee": "ME", "team": "Billing" }),
        json!({ "assignee": "\u{200B}alice" }),
    ] {
        let code = server
            .error_code(
                Some(&agent),
                FILTERED,
                json!({ "a": app.token, "f": filter }),
            )
            .await;
        assert_eq!(code, "BadInput", "{filter}");
    }
    let code = server
        .error_code(
            Some(&agent),
            "query($a: ID!) { chats(appToken: $a, status: OPEN, filter: { status: RESOLVED }) { items { number } } }",
            json!({ "a": app.token }),
        )
        .await;
    assert_eq!(code, "BadInput");
    // A page token of one filter does not continue another.
    for _ in 0..3 {
        let chat = open_chat(&server, &app, &customer).await;
        server
            .ok(
                &agent,
                ASSIGN,
                json!({ "a": app.token, "c": chat, "to": "alice" }),
            )
            .await;
    }
    let page = server
        .ok(
            &agent,
            FILTERED,
            json!({ "a": app.token, "f": { "assignee": "ME" }, "l": 1 }),
        )
        .await;
    let token = page["chats"]["nextToken"].as_str().unwrap().to_owned();
    let code = server
        .error_code(
            Some(&agent),
            FILTERED,
            json!({ "a": app.token, "f": { "assignee": "UNASSIGNED" }, "l": 1, "t": token }),
        )
        .await;
    assert_eq!(code, "BadInput");
}

const ROUTING: &str = "mutation($t: ID!, $r: RoutingInput, $n: String) { updateApplication(token: $t, name: $n, routing: $r) { name routing { enabled maxOpenChatsPerAgent } } }";
const HEARTBEAT: &str =
    "mutation($a: ID!, $s: PresenceStatus) { heartbeat(appToken: $a, status: $s) { status } }";
const CREATE: &str =
    "mutation($a: ID!) { createChat(appToken: $a) { number assigneeId hasAgent } }";
const RESOLVE: &str = "mutation($a: ID!, $c: Int!) { updateChat(appToken: $a, number: $c, status: RESOLVED) { number status } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_gives_chats_to_online_agents_and_picks_up_waiting_ones() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Routed").await;
    let (alice, bob) = (app.agent("alice"), app.agent("bob"));
    let customer = app.customer("c1");

    // Only the admin turns routing on; the cap is bounded; the name stays.
    let code = server
        .error_code(
            Some(&alice),
            ROUTING,
            json!({ "t": app.token, "r": { "enabled": true } }),
        )
        .await;
    assert_eq!(code, "Forbidden");
    let code = server
        .error_code(
            Some(ADMIN_KEY),
            ROUTING,
            json!({ "t": app.token, "r": { "enabled": true, "maxOpenChatsPerAgent": 101 } }),
        )
        .await;
    assert_eq!(code, "BadInput");
    let code = server
        .error_code(Some(ADMIN_KEY), ROUTING, json!({ "t": app.token }))
        .await;
    assert_eq!(code, "BadInput");
    let on = server
        .ok(
            ADMIN_KEY,
            ROUTING,
            json!({ "t": app.token, "r": { "enabled": true, "maxOpenChatsPerAgent": 1 } }),
        )
        .await;
    assert_eq!(
        on["updateApplication"],
        json!({ "name": "Routed", "routing": { "enabled": true, "maxOpenChatsPerAgent": 1 } })
    );

    // With alice ONLINE, a customer's new chat is hers at once, and agents see it on onChat.
    let mut feed = WsClient::connect(&server.url, &bob).await;
    feed.subscribe("chats", ON_CHAT, json!({ "a": app.token }))
        .await;
    server
        .ok(&alice, HEARTBEAT, json!({ "a": app.token, "s": "ONLINE" }))
        .await;
    let first = server
        .ok(&customer, CREATE, json!({ "a": app.token }))
        .await;
    assert_eq!(
        first["createChat"],
        json!({ "number": 1, "assigneeId": null, "hasAgent": true }),
        "the customer sees that an agent is there, not who"
    );
    assert_eq!(
        feed.next_data("chats").await["onChat"]["assigneeId"],
        "alice"
    );

    // Alice is full: the next chat waits; bob coming ONLINE picks it up, published.
    let second = server
        .ok(&customer, CREATE, json!({ "a": app.token }))
        .await;
    assert_eq!(second["createChat"]["hasAgent"], false);
    assert_eq!(
        feed.next_data("chats").await["onChat"]["assigneeId"],
        Value::Null
    );
    server
        .ok(&bob, HEARTBEAT, json!({ "a": app.token, "s": "ONLINE" }))
        .await;
    assert_eq!(
        feed.next_data("chats").await["onChat"],
        json!({ "number": 2, "assigneeId": "bob", "team": null, "hasAgent": true })
    );

    // A third waits; alice resolving her chat frees her slot and it goes to her.
    server
        .ok(&customer, CREATE, json!({ "a": app.token }))
        .await;
    assert_eq!(feed.next_data("chats").await["onChat"]["number"], 3);
    server
        .ok(&alice, RESOLVE, json!({ "a": app.token, "c": 1 }))
        .await;
    assert_eq!(feed.next_data("chats").await["onChat"]["number"], 1);
    assert_eq!(
        feed.next_data("chats").await["onChat"],
        json!({ "number": 3, "assigneeId": "alice", "team": null, "hasAgent": true })
    );
    let mine = filtered(
        &server,
        &alice,
        &app,
        json!({ "assignee": "ME", "status": "OPEN" }),
    )
    .await;
    assert_eq!(mine, vec![3]);
}
