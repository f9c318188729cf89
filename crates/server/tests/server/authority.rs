//! A subscription lives no longer than its authority, on both real-time protocols: when the
//! token's `exp` passes, or its secret is rotated past its grace, the server ends what the
//! token authorized with a reason (graphql-transport-ws: close 4403; AppSync's protocol: an
//! `error` per subscription, then close 4401), and an expired token starts nothing. The
//! clock is moved, not slept: the server runs in process on a manual clock.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chat_appsync::{Authenticator, Registry};
use chat_domain::{ChatService, Clock, ManualClock, Role, ServerKey};
use chat_embedded::SqliteStore;
use chat_server::schema;
use common::appsync;
use common::ws::{Incoming, WsClient};
use serde_json::{Value, json};

const ADMIN: &str = "authority-test-admin-key";
const ON_MESSAGE: &str =
    "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number body } }";

struct World {
    url: String,
    clock: ManualClock,
    app: String,
    secret: String,
    client: reqwest::Client,
}

impl World {
    async fn start() -> World {
        let clock = ManualClock::starting_now();
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let service = Arc::new(ChatService::new(
            store,
            ServerKey::generate(),
            Arc::new(clock.clone()),
        ));
        let registry = Arc::new(Registry::new(service.clone()));
        let api = schema::build(registry).unwrap();
        let auth = Authenticator::new(ADMIN, service);
        let url = common::serve_in_process(api, auth, Duration::from_millis(50)).await;
        let client = common::http_client();
        let common::TestApp { token: app, secret } =
            common::TestApp::create_at(&client, &url, ADMIN, "A").await;
        let world = World {
            url,
            clock,
            app,
            secret,
            client,
        };
        let c1 = world.token("c1", 3600);
        world
            .ok(
                &c1,
                "mutation($a: ID!) { createChat(appToken: $a) { number } }",
            )
            .await;
        world
    }

    /// A customer or agent token living `ttl` seconds from the manual clock's now.
    fn token(&self, sub: &str, ttl: u64) -> String {
        let role = if sub.starts_with('a') {
            Role::Agent
        } else {
            Role::Customer
        };
        let now = u64::try_from(self.clock.now().0 / 1000).unwrap();
        let claims = json!({ "sub": sub, "app": self.app, "role": role.as_str(), "exp": now + ttl, "iat": now });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .unwrap()
    }

    async fn ok(&self, token: &str, query: &str) -> Value {
        common::graphql_ok(
            &self.client,
            &self.url,
            token,
            query,
            json!({ "a": self.app }),
        )
        .await
    }

    async fn send(&self, token: &str, body: &str) {
        let query = format!(
            "mutation($a: ID!) {{ sendMessage(appToken: $a, chatNumber: 1, body: \"{body}\") {{ number }} }}"
        );
        self.ok(token, &query).await;
    }

    /// Past `ttl` and the 30 s of skew tokens are given.
    fn pass(&self, ttl: u64) {
        self.clock.advance(Duration::from_secs(ttl + 31));
    }
}

async fn closed_with(client: &mut WsClient) -> (u16, String) {
    loop {
        match client.next().await {
            Incoming::Closed(Some(frame)) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Incoming::Closed(None) => panic!("closed without a frame"),
            Incoming::Message(m) if m["type"] == "ka" => continue,
            Incoming::Message(m) => panic!("expected a close, got {m}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_ws_subscriptions_end_when_the_token_expires() {
    let world = World::start().await;
    let c1 = world.token("c1", 600);
    let mut sub = WsClient::connect(&world.url, &c1).await;
    sub.subscribe("1", ON_MESSAGE, json!({ "a": world.app, "c": 1 }))
        .await;
    sub.synced().await;
    world.send(&world.token("c1", 3600), "before").await;
    assert_eq!(sub.next_data("1").await["onMessage"]["body"], "before");

    world.pass(600);
    let (code, reason) = closed_with(&mut sub).await;
    assert_eq!(code, 4403);
    assert!(
        reason.contains("expired") && reason.contains("reconnect with a fresh token"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_connection_starts_no_subscription() {
    let world = World::start().await;
    let token = world.token("c1", 600);
    let mut sub = WsClient::connect(&world.url, &token).await;
    world.pass(600);
    sub.subscribe("late", ON_MESSAGE, json!({ "a": world.app, "c": 1 }))
        .await;
    let (code, reason) = closed_with(&mut sub).await;
    assert_eq!(code, 4403, "{reason}");
    // And a new connection with that token is refused at once.
    let mut again = WsClient::open(&world.url).await;
    again
        .send(json!({ "type": "connection_init", "payload": { "Authorization": token } }))
        .await;
    assert!(matches!(closed_with(&mut again).await, (4403, _)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_without_grace_ends_subscriptions_and_one_with_grace_ends_them_at_its_end() {
    let world = World::start().await;
    let agent = world.token("a1", 3600);
    let mut sub = WsClient::connect(&world.url, &agent).await;
    sub.subscribe("1", ON_MESSAGE, json!({ "a": world.app, "c": 1 }))
        .await;

    // With a grace period the old secret still verifies: nothing ends.
    let rotate = |grace: u32| {
        format!(
            "mutation($a: ID!) {{ rotateApplicationSecret(token: $a, graceSeconds: {grace}) {{ secret }} }}"
        )
    };
    world.ok(ADMIN, &rotate(120)).await;
    assert!(sub.next_within(Duration::from_millis(400)).await.is_none());
    // When the grace ends, so does the subscription.
    world.pass(120);
    let (code, reason) = closed_with(&mut sub).await;
    assert_eq!(code, 4403);
    assert!(reason.contains("invalid token"), "{reason}");

    // Without grace, at once (within the recheck).
    let fresh_secret = world.ok(ADMIN, &rotate(3600)).await["rotateApplicationSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let world = World {
        secret: fresh_secret,
        ..world
    };
    let mut sub = WsClient::connect(&world.url, &world.token("a1", 3600)).await;
    sub.subscribe("1", ON_MESSAGE, json!({ "a": world.app, "c": 1 }))
        .await;
    world.ok(ADMIN, &rotate(0)).await;
    let (code, reason) = closed_with(&mut sub).await;
    assert_eq!(code, 4403, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appsync_subscriptions_end_with_their_own_token_or_the_connections() {
    let world = World::start().await;
    // The connection's token lives an hour; one start brings its own, living ten minutes.
    let mut conn = appsync::connect(&world.url, &world.token("a1", 3600)).await;
    appsync::subscribe(
        &mut conn,
        "long",
        ON_MESSAGE,
        json!({ "a": world.app, "c": 1 }),
    )
    .await;
    let short = world.token("a2", 600);
    conn.send(appsync::start(
        "short",
        ON_MESSAGE,
        json!({ "a": world.app, "c": 1 }),
        Some(&short),
    ))
    .await;
    assert_eq!(
        appsync::next_not_ka(&mut conn).await,
        json!({ "type": "start_ack", "id": "short" })
    );

    // The start's token expires: that subscription ends with an error, the other goes on.
    world.pass(600);
    let error = appsync::next_not_ka(&mut conn).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "short");
    assert_eq!(
        error["payload"]["errors"][0]["errorType"],
        "UnauthorizedException"
    );
    world.send(&world.token("c1", 60), "still here").await;
    let data = appsync::next_not_ka(&mut conn).await;
    assert_eq!(data["id"], "long", "{data}");
    assert_eq!(data["payload"]["data"]["onMessage"]["body"], "still here");

    // The connection's token expires: its subscription gets an error and the connection
    // closes with 4401.
    world.pass(3600 - 600);
    let error = appsync::next_not_ka(&mut conn).await;
    assert_eq!(
        (error["type"].as_str(), error["id"].as_str()),
        (Some("error"), Some("long")),
        "{error}"
    );
    let (code, reason) = closed_with(&mut conn).await;
    assert_eq!(code, 4401);
    assert!(reason.contains("expired"), "{reason}");
}
