//! Presence and typing over real WebSocket clients against a server in this process whose
//! clock the test moves (leases expire without sleeping): transitions arrive once each, to
//! the right people only.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chat_appsync::{Authenticator, Registry};
use chat_domain::limits::PRESENCE_LEASE_MS;
use chat_domain::{ChatService, ManualClock, ServerKey};
use chat_server::realtime::authority::AUTHORITY_RECHECK;
use common::ws::{Incoming, WsClient};
use common::*;
use serde_json::{Value, json};

const ON_PRESENCE: &str =
    "subscription($a: ID!) { onPresence(appToken: $a) { userId role status chatNumber } }";
const ON_AVAILABILITY: &str =
    "subscription($a: ID!) { onAvailability(appToken: $a) { agentsOnline agentsAway } }";
const ON_VIEWER: &str = "subscription($a: ID!, $c: Int!) { onChatViewer(appToken: $a, chatNumber: $c) { chatNumber userId role viewing } }";
const ON_TYPING: &str = "subscription($a: ID!, $c: Int!) { onTyping(appToken: $a, chatNumber: $c) { chatNumber userId role } }";
const HEARTBEAT: &str = "mutation($a: ID!, $s: PresenceStatus, $c: Int) { heartbeat(appToken: $a, status: $s, chatNumber: $c) { userId status chatNumber expiresAt } }";
const TYPING: &str =
    "mutation($a: ID!, $c: Int!) { typing(appToken: $a, chatNumber: $c) { userId chatNumber } }";

struct Server {
    registry: Arc<Registry>,
    api: chat_server::schema::Api,
    clock: ManualClock,
    url: String,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Server {
        let clock = ManualClock::starting_now();
        let store = Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
        let service = ChatService::new(store, ServerKey::generate(), Arc::new(clock.clone()))
            .with_presence(Arc::new(chat_embedded::MemoryPresence::new()));
        let registry = Arc::new(Registry::new(Arc::new(service)));
        let auth = Authenticator::new(ADMIN_KEY, registry.service().clone());
        let api = chat_server::schema::build(registry.clone()).unwrap();
        let url = serve_in_process(api.clone(), auth, AUTHORITY_RECHECK).await;
        Server {
            registry,
            api,
            clock,
            url,
            client: http_client(),
        }
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        graphql_ok(&self.client, &self.url, token, query, variables).await
    }

    async fn app(&self, name: &str) -> TestApp {
        TestApp::from_answer(
            self.ok(ADMIN_KEY, CREATE_APPLICATION, json!({ "n": name }))
                .await,
        )
    }

    async fn beat(&self, app: &TestApp, token: &str, status: &str, chat: Option<i64>) -> Value {
        self.ok(
            token,
            HEARTBEAT,
            json!({ "a": app.token, "s": status, "c": chat }),
        )
        .await["heartbeat"]
            .clone()
    }

    /// Moves the clock past every lease and runs the dev server's sweep.
    async fn expire_all(&self) -> usize {
        self.clock
            .advance(Duration::from_millis(PRESENCE_LEASE_MS as u64 + 1));
        chat_server::presence_sweep::sweep_once(&self.registry, &self.api)
            .await
            .unwrap()
    }
}

async fn live(url: &str, token: &str, subscriptions: &[(&str, &str, Value)]) -> WsClient {
    let mut client = WsClient::connect(url, token).await;
    for (id, query, variables) in subscriptions {
        client.subscribe(id, query, variables.clone()).await;
    }
    client.synced().await;
    client
}

/// The next event's data for subscription `id`, by field.
async fn event(client: &mut WsClient, id: &str, field: &str) -> Value {
    client.next_data(id).await[field].clone()
}

/// The next `n` events, whichever subscriptions they are for: (id, data).
async fn any_events(client: &mut WsClient, n: usize) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while events.len() < n {
        match client.next().await {
            Incoming::Message(m) if m["type"] == "next" => {
                let id = m["id"].as_str().unwrap_or_default().to_owned();
                events.push((id, m["payload"]["data"].clone()));
            }
            other => panic!("expected an event, got {other:?}"),
        }
    }
    events
}

async fn nothing_arrives(client: &mut WsClient) {
    if let Some(Incoming::Message(m)) = client.next_within(Duration::from_millis(300)).await {
        panic!("unexpected message: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_transitions_reach_the_right_people_once_and_expiry_is_announced() {
    let server = Server::start().await;
    let app = server.app("Acme").await;
    let other = server.app("Other").await;
    let (a1, a2) = (app.agent("a1"), app.agent("a2"));
    let (c1, c2) = (app.customer("c1"), app.customer("c2"));
    let chat1 =
        server.ok(&c1, CREATE_CHAT, json!({ "a": app.token })).await["createChat"]["number"]
            .as_i64()
            .unwrap();
    let chat2 =
        server.ok(&c2, CREATE_CHAT, json!({ "a": app.token })).await["createChat"]["number"]
            .as_i64()
            .unwrap();
    let a = || json!({ "a": app.token });
    let in_chat = |c: i64| json!({ "a": app.token, "c": c });

    // Given: an agent watching presence and typing in chat 1; each customer watching
    // availability and its own chat's viewers and typing; another application's agent.
    let mut agent = live(
        &server.url,
        &a1,
        &[("p", ON_PRESENCE, a()), ("t", ON_TYPING, in_chat(chat1))],
    )
    .await;
    let mut customer1 = live(
        &server.url,
        &c1,
        &[
            ("av", ON_AVAILABILITY, a()),
            ("v", ON_VIEWER, in_chat(chat1)),
        ],
    )
    .await;
    let mut customer2 = live(
        &server.url,
        &c2,
        &[
            ("v", ON_VIEWER, in_chat(chat2)),
            ("t", ON_TYPING, in_chat(chat2)),
        ],
    )
    .await;
    let mut stranger = live(
        &server.url,
        &other.agent("x1"),
        &[("p", ON_PRESENCE, json!({ "a": other.token }))],
    )
    .await;

    // When agent 2 comes online: the agent sees it, customer 1 sees one agent online.
    let answer = server.beat(&app, &a2, "ONLINE", None).await;
    assert_eq!(answer["status"], "ONLINE");
    let seen = event(&mut agent, "p", "onPresence").await;
    assert_eq!(
        (&seen["userId"], &seen["status"], &seen["role"]),
        (&json!("a2"), &json!("ONLINE"), &json!("AGENT"))
    );
    let availability = event(&mut customer1, "av", "onAvailability").await;
    assert_eq!(availability, json!({ "agentsOnline": 1, "agentsAway": 0 }));

    // A heartbeat that changes nothing publishes nothing.
    server.beat(&app, &a2, "ONLINE", None).await;
    nothing_arrives(&mut agent).await;
    nothing_arrives(&mut customer1).await;

    // Agent 2 opens chat 1: its customer sees an agent viewing; customer 2 sees nothing.
    server.beat(&app, &a2, "ONLINE", Some(chat1)).await;
    assert_eq!(
        event(&mut agent, "p", "onPresence").await["chatNumber"],
        chat1
    );
    let viewer = event(&mut customer1, "v", "onChatViewer").await;
    assert_eq!(
        viewer,
        json!({ "chatNumber": chat1, "userId": "a2", "role": "AGENT", "viewing": true })
    );

    // Customer 1 looks at its chat: agents see it; no customer sees another's presence.
    server.beat(&app, &c1, "ONLINE", Some(chat1)).await;
    let seen = event(&mut agent, "p", "onPresence").await;
    assert_eq!(
        (&seen["userId"], &seen["chatNumber"], &seen["role"]),
        (&json!("c1"), &json!(chat1), &json!("CUSTOMER"))
    );
    assert_eq!(
        event(&mut customer1, "v", "onChatViewer").await["userId"],
        "c1"
    );
    nothing_arrives(&mut customer2).await;

    // Typing reaches the chat's participants only.
    let typed = server
        .ok(&c1, TYPING, json!({ "a": app.token, "c": chat1 }))
        .await;
    assert_eq!(typed["typing"]["userId"], "c1");
    assert_eq!(
        event(&mut agent, "t", "onTyping").await,
        json!({ "chatNumber": chat1, "userId": "c1", "role": "CUSTOMER" })
    );
    // A second call within the interval is folded: null, and no event.
    let folded = server
        .ok(&c1, TYPING, json!({ "a": app.token, "c": chat1 }))
        .await;
    assert_eq!(folded["typing"], Value::Null);
    nothing_arrives(&mut agent).await;
    nothing_arrives(&mut customer2).await;

    // Then every lease runs out: the sweep announces each end once.
    assert!(server.expire_all().await > 0);
    let mut ended = [
        event(&mut agent, "p", "onPresence").await,
        event(&mut agent, "p", "onPresence").await,
    ];
    ended.sort_by_key(|p| p["userId"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        ended
            .iter()
            .map(|p| (p["userId"].clone(), p["status"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("a2"), json!("OFFLINE")),
            (json!("c1"), json!("OFFLINE"))
        ]
    );
    // The sweep's events come in no particular order across subscriptions.
    let mut customer_events = any_events(&mut customer1, 3).await;
    customer_events.sort_by_key(|(id, data)| (id.clone(), data.to_string()));
    assert_eq!(
        customer_events,
        [
            (
                "av".to_owned(),
                json!({ "onAvailability": { "agentsOnline": 0, "agentsAway": 0 } })
            ),
            (
                "v".to_owned(),
                json!({ "onChatViewer": { "chatNumber": chat1, "userId": "a2", "role": "AGENT", "viewing": false } })
            ),
            (
                "v".to_owned(),
                json!({ "onChatViewer": { "chatNumber": chat1, "userId": "c1", "role": "CUSTOMER", "viewing": false } })
            ),
        ]
    );
    assert_eq!(server.expire_all().await, 0, "each end is announced once");
    nothing_arrives(&mut agent).await;
    nothing_arrives(&mut customer1).await;
    nothing_arrives(&mut stranger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_refused_to_whoever_may_not_see_it() {
    let server = Server::start().await;
    let app = server.app("Acme").await;
    let other = server.app("Other").await;
    let c1 = app.customer("c1");
    let chat1 =
        server.ok(&c1, CREATE_CHAT, json!({ "a": app.token })).await["createChat"]["number"]
            .as_i64()
            .unwrap();
    let code = |answer: &Value| answer["errors"][0]["extensions"]["code"].clone();
    let post = |token: String, query: &'static str, variables: Value| {
        let client = server.client.clone();
        let url = format!("{}/graphql", server.url);
        async move {
            client
                .post(url)
                .header("Authorization", token)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // A customer cannot list presence, subscribe to it, or name a chat that is not its own.
    let listed = post(
        c1.clone(),
        "query($a: ID!) { presences(appToken: $a) { items { userId } } }",
        json!({ "a": app.token }),
    )
    .await;
    assert_eq!(code(&listed), "Forbidden");
    let other_chat = post(
        app.customer("c2"),
        HEARTBEAT,
        json!({ "a": app.token, "c": chat1 }),
    )
    .await;
    assert_eq!(code(&other_chat), "NotFound");
    let typing = post(
        app.customer("c2"),
        TYPING,
        json!({ "a": app.token, "c": chat1 }),
    )
    .await;
    assert_eq!(code(&typing), "NotFound");
    let mut customer = WsClient::connect(&server.url, &c1).await;
    customer
        .subscribe("p", ON_PRESENCE, json!({ "a": app.token }))
        .await;
    match customer.next().await {
        Incoming::Message(m) if m["type"] == "error" => {
            assert_eq!(m["payload"][0]["extensions"]["code"], "Forbidden", "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Another application's users see nothing of this one.
    let stranger = other.agent("x1");
    for (query, variables) in [
        (
            "query($a: ID!) { availability(appToken: $a) { agentsOnline } }",
            json!({ "a": app.token }),
        ),
        (
            "query($a: ID!, $c: Int!) { chatViewers(appToken: $a, chatNumber: $c) { userId } }",
            json!({ "a": app.token, "c": chat1 }),
        ),
        (HEARTBEAT, json!({ "a": app.token })),
    ] {
        let answer = post(stranger.clone(), query, variables).await;
        assert_eq!(code(&answer), "Forbidden", "{query}: {answer}");
    }
    // Bad input is refused with its reason.
    let bad = post(
        c1,
        "mutation($a: ID!) { heartbeat(appToken: $a, chatNumber: 0) { status } }",
        json!({ "a": app.token }),
    )
    .await;
    assert_eq!(code(&bad), "BadInput");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_ending_together_are_counted_once() {
    let server = Server::start().await;
    let app = server.app("Acme").await;
    let mut customer = live(
        &server.url,
        &app.customer("c1"),
        &[("av", ON_AVAILABILITY, json!({ "a": app.token }))],
    )
    .await;
    for (agent, online) in [("a1", 1), ("a2", 2)] {
        server.beat(&app, &app.agent(agent), "ONLINE", None).await;
        assert_eq!(
            event(&mut customer, "av", "onAvailability").await["agentsOnline"],
            online
        );
    }
    // Both leases end in one sweep: one availability event, with the count after both.
    assert!(server.expire_all().await > 0);
    assert_eq!(
        event(&mut customer, "av", "onAvailability").await,
        json!({ "agentsOnline": 0, "agentsAway": 0 })
    );
    nothing_arrives(&mut customer).await;
}
