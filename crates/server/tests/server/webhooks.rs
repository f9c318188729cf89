//! Webhooks end to end: a started dev server delivers to a real HTTP receiver on loopback
//! (an axum listener in the test), signed, retried, de-duplicable, and never to a refused
//! address.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chat_domain::webhooks::{WebhookSecret, verify_signature};
use common::{ADMIN_KEY, TestApp, TestServer, open_chat, send};
use serde_json::{Value, json};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: String,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }

    fn event_id(&self) -> String {
        self.json()["id"].as_str().unwrap().to_owned()
    }
}

/// A receiver on a loopback port. Paths: `/ok` answers 204; `/fail` 500; `/flaky` 500 to
/// its first three requests, then 200; `/redirect` 302 to `/target`; `/big` 200 with a
/// body that never ends; `/slow` 200 after 300 ms; `/hang` after 30 s.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// The most requests `/slow` had in progress at once.
    slow_peak: Arc<std::sync::atomic::AtomicUsize>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::serve(listener)
    }

    fn serve(listener: tokio::net::TcpListener) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let recorded = hits.clone();
        let slow_now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow_peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = slow_peak.clone();
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
                let (hits, counts) = (recorded.clone(), counts.clone());
                async move {
                    let path = uri.path().to_owned();
                    let seen = {
                        let mut counts = counts.lock().unwrap();
                        let n = counts.entry(path.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    hits.lock().unwrap().push(Hit {
                        path: path.clone(),
                        headers,
                        body,
                    });
                    let status = |code: u16| {
                        Response::builder()
                            .status(StatusCode::from_u16(code).unwrap())
                            .body(Body::empty())
                            .unwrap()
                    };
                    match path.as_str() {
                        "/fail" => status(500),
                        "/flaky" if seen <= 3 => status(500),
                        "/redirect" => Response::builder()
                            .status(302)
                            .header("Location", format!("http://{addr}/target"))
                            .body(Body::empty())
                            .unwrap(),
                        "/big" => {
                            let chunks = futures::stream::unfold((), |()| async {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                Some((Ok::<_, std::io::Error>(vec![b'x'; 16 * 1024]), ()))
                            });
                            Response::builder()
                                .status(200)
                                .body(Body::from_stream(chunks))
                                .unwrap()
                        }
                        "/slow" => {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = slow_now.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(now, SeqCst);
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            slow_now.fetch_sub(1, SeqCst);
                            status(200)
                        }
                        "/hang" => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            status(200)
                        }
                        "/ok" => status(204),
                        _ => status(200),
                    }
                }
            });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            addr,
            hits,
            slow_peak,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    async fn wait_for(&self, path: &str, n: usize, bound: Duration) -> Vec<Hit> {
        let deadline = Instant::now() + bound;
        loop {
            let hits = self.hits(path);
            if hits.len() >= n || Instant::now() >= deadline {
                return hits;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

const CREATE_ENDPOINT: &str = "mutation($a: ID!, $u: String!, $e: [String!]!) { createWebhookEndpoint(appToken: $a, url: $u, events: $e) { endpoint { id url events enabled } secret } }";
const ENDPOINTS: &str =
    "query($a: ID!) { webhookEndpoints(appToken: $a) { id enabled disabledReason } }";
const DELIVERIES: &str = "query($a: ID!, $e: ID!, $l: Int, $t: String) { webhookDeliveries(appToken: $a, endpointId: $e, limit: $l, nextToken: $t) { items { id eventId eventType status attempts lastResponseCode lastError nextAttemptAt } nextToken } }";
const ALL_EVENTS: [&str; 6] = [
    "chat.created",
    "chat.updated",
    "message.created",
    "message.edited",
    "message.deleted",
    "message.unseen",
];

const CREATE_UPLOAD: &str = "mutation($a: ID!, $c: Int!, $n: String!, $t: String!, $s: Int!) { createUpload(appToken: $a, chatNumber: $c, fileName: $n, contentType: $t, size: $s) { id url headers { name value } } }";
const SEND_FILES: &str = "mutation($a: ID!, $c: Int!, $b: String, $ids: [ID!]) { sendMessage(appToken: $a, chatNumber: $c, body: $b, attachmentIds: $ids) { number } }";

/// A PNG of 2 x 3 pixels as far as a reader of its header is concerned.
fn png_2x3() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend_from_slice(&2u32.to_be_bytes());
    png.extend_from_slice(&3u32.to_be_bytes());
    png.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
    png
}

/// Sends `body` with one file: createUpload, the PUT of `bytes` to its URL, sendMessage.
async fn send_with_file(
    server: &TestServer,
    app: &TestApp,
    token: &str,
    chat: i64,
    body: &str,
    (name, content_type, bytes): (&str, &str, Vec<u8>),
) {
    let upload = server
        .ok(
            token,
            CREATE_UPLOAD,
            json!({ "a": app.token, "c": chat, "n": name, "t": content_type, "s": bytes.len() }),
        )
        .await["createUpload"]
        .clone();
    let mut put = server
        .client()
        .put(upload["url"].as_str().unwrap())
        .body(bytes);
    for header in upload["headers"].as_array().unwrap() {
        put = put.header(
            header["name"].as_str().unwrap(),
            header["value"].as_str().unwrap(),
        );
    }
    assert_eq!(put.send().await.unwrap().status(), 200);
    server
        .ok(
            token,
            SEND_FILES,
            json!({ "a": app.token, "c": chat, "b": body, "ids": [upload["id"]] }),
        )
        .await;
}

/// A dev server that may deliver to loopback, with `extra` flags.
fn dev_server(extra: &[&str]) -> TestServer {
    let mut args = vec!["--webhooks-allow-loopback"];
    args.extend_from_slice(extra);
    TestServer::start_with_args(&args, &[])
}

/// Creates an endpoint; returns (id, secret).
async fn endpoint(
    server: &TestServer,
    app: &TestApp,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let data = server
        .ok(
            ADMIN_KEY,
            CREATE_ENDPOINT,
            json!({ "a": app.token, "u": url, "e": events }),
        )
        .await;
    let created = &data["createWebhookEndpoint"];
    (
        created["endpoint"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(server: &TestServer, app: &TestApp, endpoint: &str) -> Vec<Value> {
    let data = server
        .ok(
            ADMIN_KEY,
            DELIVERIES,
            json!({ "a": app.token, "e": endpoint, "l": 100 }),
        )
        .await;
    data["webhookDeliveries"]["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn wait_until<F, Fut>(bound: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_signed(hit: &Hit, secret: &str) {
    let header = hit.headers["chat-signature"].to_str().unwrap();
    verify_signature(
        header,
        &WebhookSecret::from_shown(secret),
        hit.body.as_bytes(),
        now_secs(),
        300,
    )
    .unwrap_or_else(|e| panic!("{} does not verify: {e}", hit.event_type()));
    assert_eq!(hit.headers["chat-event-id"], hit.event_id().as_str());
    assert_eq!(hit.headers["chat-event-type"], hit.event_type().as_str());
    assert_eq!(hit.headers["content-type"], "application/json");
    // Tampering with the body breaks the signature.
    let forged = hit.body.replace("\"type\"", "\"typ\"");
    assert!(
        verify_signature(
            header,
            &WebhookSecret::from_shown(secret),
            forged.as_bytes(),
            now_secs(),
            300
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_arrives_signed_and_verifiable() {
    let receiver = Receiver::start().await;
    let server = dev_server(&["--unseen-grace-ms", "300"]);
    let app = TestApp::create(&server, "Hooks").await;
    let (_, secret) = endpoint(&server, &app, &receiver.url("/ok"), &ALL_EVENTS).await;
    // Given a customer's chat: it opens it, writes (with a PDF), edits, writes (with a text
    // file) and deletes; an agent resolves it and answers with an image while the customer
    // is away.
    let customer = app.customer("cust-1");
    let agent = app.agent("agent-1");
    let chat = open_chat(&server, &app, &customer).await;
    let pdf = b"%PDF-1.4 invoice".to_vec();
    let pdf_size = pdf.len();
    send_with_file(
        &server,
        &app,
        &customer,
        chat,
        "my order is late",
        ("invoice-4471.pdf", "application/pdf", pdf),
    )
    .await;
    server
        .ok(
            &customer,
            "mutation($a: ID!, $c: Int!) { editMessage(appToken: $a, chatNumber: $c, number: 1, body: \"my order #12 is late\") { number } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    send_with_file(
        &server,
        &app,
        &customer,
        chat,
        "oops",
        ("oops.txt", "text/plain", b"wrong chat".to_vec()),
    )
    .await;
    server
        .ok(
            &customer,
            "mutation($a: ID!, $c: Int!) { deleteMessage(appToken: $a, chatNumber: $c, number: 2) { number } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    server
        .ok(
            &agent,
            "mutation($a: ID!, $c: Int!) { updateChat(appToken: $a, number: $c, status: RESOLVED) { number } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    send_with_file(
        &server,
        &app,
        &agent,
        chat,
        "it ships today",
        ("label.png", "image/png", png_2x3()),
    )
    .await;
    // Then every type arrives, each signed with the endpoint's secret.
    receiver.wait_for("/ok", 8, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = receiver.hits("/ok");
    let mut types: Vec<String> = hits.iter().map(Hit::event_type).collect();
    types.sort();
    assert_eq!(
        types,
        [
            "chat.created",
            "chat.updated",
            "message.created",
            "message.created",
            "message.created",
            "message.deleted",
            "message.edited",
            // The agent's answer, for the customer who is away (the customer's messages
            // are not unseen: the agent's answer moved the agents' watermark past them).
            "message.unseen",
        ]
    );
    let ids: std::collections::HashSet<String> = hits.iter().map(Hit::event_id).collect();
    assert_eq!(ids.len(), hits.len(), "each event once, with its own id");
    for hit in &hits {
        assert_signed(hit, &secret);
        let body = hit.json();
        assert_eq!(body["appToken"], app.token.as_str());
        assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    let unseen: Vec<Value> = hits
        .iter()
        .filter(|h| h.event_type() == "message.unseen")
        .map(Hit::json)
        .collect();
    let to_customer = unseen
        .iter()
        .find(|u| u["data"]["receiver"]["role"] == "CUSTOMER")
        .expect("message.unseen for the customer");
    assert_eq!(to_customer["data"]["receiver"]["userId"], "cust-1");
    assert_eq!(to_customer["data"]["message"]["body"], "it ships today");
    assert_eq!(to_customer["data"]["chatNumber"], chat);
    // The deleted message had no unseen (it was deleted before the grace ended).
    assert!(unseen.iter().all(|u| u["data"]["message"]["number"] != 2));
    let edited = hits
        .iter()
        .find(|h| h.event_type() == "message.edited")
        .unwrap();
    assert_eq!(
        edited.json()["data"]["message"]["body"],
        "my order #12 is late"
    );
    // Message events carry the files' metadata, never a URL; a deleted message none.
    let pdf = json!([{ "name": "invoice-4471.pdf", "contentType": "application/pdf",
                       "size": pdf_size, "width": null, "height": null }]);
    assert_eq!(edited.json()["data"]["message"]["attachments"], pdf);
    let image = json!([{ "name": "label.png", "contentType": "image/png",
                         "size": png_2x3().len(), "width": 2, "height": 3 }]);
    assert_eq!(to_customer["data"]["message"]["attachments"], image);
    let created: HashMap<i64, Value> = hits
        .iter()
        .filter(|h| h.event_type() == "message.created")
        .map(|h| {
            let message = h.json()["data"]["message"].clone();
            (
                message["number"].as_i64().unwrap(),
                message["attachments"].clone(),
            )
        })
        .collect();
    assert_eq!(created[&1], pdf);
    assert_eq!(created[&2][0]["name"], "oops.txt");
    assert_eq!(created[&3], image);
    let deleted = hits
        .iter()
        .find(|h| h.event_type() == "message.deleted")
        .unwrap();
    assert_eq!(deleted.json()["data"]["message"]["attachments"], json!([]));
    assert!(
        hits.iter().all(|h| !h.body.contains("\"url\"")),
        "no URL in any event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_event_once_after_retries() {
    let receiver = Receiver::start().await;
    // Retries 1000 times sooner than documented: 30 ms, 120 ms, 600 ms ...
    let server = dev_server(&["--webhook-retry-scale", "0.001"]);
    let app = TestApp::create(&server, "Hooks").await;
    let (id, secret) = endpoint(&server, &app, &receiver.url("/flaky"), &["chat.created"]).await;
    open_chat(&server, &app, &app.customer("c")).await;
    let hits = receiver
        .wait_for("/flaky", 4, Duration::from_secs(10))
        .await;
    assert_eq!(hits.len(), 4, "three failures and one success");
    // Every attempt carries the same event (one id to de-duplicate on), signed each time.
    let event = hits[0].event_id();
    for hit in &hits {
        assert_eq!(hit.event_id(), event);
        assert_signed(hit, &secret);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.hits("/flaky").len(),
        4,
        "nothing after the success"
    );
    let listed = deliveries(&server, &app, &id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "SUCCEEDED");
    assert_eq!(listed[0]["attempts"], 4);
    assert_eq!(listed[0]["lastResponseCode"], 200);
    assert_eq!(listed[0]["eventId"], event.as_str());
    // Redelivering sends the same event again, under a new delivery.
    let again = server
        .ok(
            ADMIN_KEY,
            "mutation($a: ID!, $e: ID!, $d: ID!) { redeliverWebhook(appToken: $a, endpointId: $e, deliveryId: $d) { id eventId status attempts } }",
            json!({ "a": app.token, "e": id, "d": listed[0]["id"] }),
        )
        .await;
    assert_eq!(again["redeliverWebhook"]["eventId"], event.as_str());
    assert_ne!(again["redeliverWebhook"]["id"], listed[0]["id"]);
    let hits = receiver.wait_for("/flaky", 5, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[4].event_id(), event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_of_failures_disables_the_endpoint_with_its_reason() {
    let receiver = Receiver::start().await;
    let server = dev_server(&[
        "--webhook-retry-scale",
        "0.001",
        "--webhook-disable-after-failures",
        "3",
        "--webhook-disable-after-secs",
        "0",
    ]);
    let app = TestApp::create(&server, "Hooks").await;
    let (id, _) = endpoint(&server, &app, &receiver.url("/fail"), &["chat.created"]).await;
    open_chat(&server, &app, &app.customer("c")).await;
    let disabled = wait_until(Duration::from_secs(10), || async {
        let data = server
            .ok(ADMIN_KEY, ENDPOINTS, json!({ "a": app.token }))
            .await;
        data["webhookEndpoints"][0]["enabled"] == false
    })
    .await;
    assert!(disabled, "the endpoint was disabled");
    let data = server
        .ok(ADMIN_KEY, ENDPOINTS, json!({ "a": app.token }))
        .await;
    let reason = data["webhookEndpoints"][0]["disabledReason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("3 failed attempts"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    // Nothing more is sent to it, neither retries nor new events.
    let before = receiver.hits("/fail").len();
    assert_eq!(before, 3);
    open_chat(&server, &app, &app.customer("d")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.hits("/fail").len(), before);
    let listed = deliveries(&server, &app, &id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "PENDING");
    assert_eq!(listed[0]["lastResponseCode"], 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed_and_response_bodies_are_capped() {
    let receiver = Receiver::start().await;
    let server = dev_server(&["--webhook-timeout-ms", "3000"]);
    let app = TestApp::create(&server, "Hooks").await;
    let (redirect, _) =
        endpoint(&server, &app, &receiver.url("/redirect"), &["chat.created"]).await;
    let (big, _) = endpoint(&server, &app, &receiver.url("/big"), &["chat.created"]).await;
    let started = Instant::now();
    open_chat(&server, &app, &app.customer("c")).await;
    // The endless body is cut after the cap: the attempt succeeds well before the timeout.
    let done = wait_until(Duration::from_secs(5), || async {
        deliveries(&server, &app, &big).await[0]["status"] == "SUCCEEDED"
    })
    .await;
    assert!(done, "the delivery to /big succeeded");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The 302 is a failed attempt; its target is never requested.
    let failed = wait_until(Duration::from_secs(5), || async {
        deliveries(&server, &app, &redirect).await[0]["lastResponseCode"] == 302
    })
    .await;
    assert!(failed, "the redirect was recorded as a failure");
    let listed = deliveries(&server, &app, &redirect).await;
    assert_eq!(listed[0]["status"], "PENDING");
    assert!(listed[0]["nextAttemptAt"].is_string());
    assert!(
        receiver.hits("/target").is_empty(),
        "the redirect was followed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_outside_development() {
    // A plain listener that counts connections: nothing may reach it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let server = TestServer::start();
    let app = TestApp::create(&server, "Hooks").await;
    // IP literals are refused when the endpoint is created.
    for url in [
        format!("https://10.0.0.1:{port}/"),
        format!("https://169.254.169.254:{port}/latest/meta-data/"),
        format!("https://[::1]:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://[::ffff:127.0.0.1]:{port}/"),
        format!("http://127.0.0.1:{port}/"),
    ] {
        let code = server
            .error_code(
                Some(ADMIN_KEY),
                CREATE_ENDPOINT,
                json!({ "a": app.token, "u": url, "e": ["chat.created"] }),
            )
            .await;
        assert_eq!(code, "BadInput", "{url}");
    }
    // A name is judged on what it resolves to, when the sender connects.
    let (id, _) = endpoint(
        &server,
        &app,
        &format!("https://localhost:{port}/"),
        &["chat.created"],
    )
    .await;
    open_chat(&server, &app, &app.customer("c")).await;
    let refused = wait_until(Duration::from_secs(5), || async {
        deliveries(&server, &app, &id).await[0]["attempts"] == 1
    })
    .await;
    assert!(refused);
    let listed = deliveries(&server, &app, &id).await;
    let error = listed[0]["lastError"].as_str().unwrap();
    assert!(
        error.contains("refused") && error.contains("loopback"),
        "{error}"
    );
    assert_eq!(listed[0]["lastResponseCode"], Value::Null);
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "something connected to a loopback address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseen_is_sent_only_to_receivers_who_neither_read_nor_look() {
    let receiver = Receiver::start().await;
    let server = dev_server(&["--unseen-grace-ms", "400"]);
    let app = TestApp::create(&server, "Hooks").await;
    endpoint(&server, &app, &receiver.url("/ok"), &["message.unseen"]).await;
    let customer = app.customer("cust-1");
    let agent = app.agent("agent-1");
    let chat = open_chat(&server, &app, &customer).await;
    let heartbeat = |token: String, status: &'static str, on: Option<i64>| {
        let server = &server;
        let app = &app;
        async move {
            server
                .ok(
                    &token,
                    "mutation($a: ID!, $s: PresenceStatus, $c: Int) { heartbeat(appToken: $a, status: $s, chatNumber: $c) { status } }",
                    json!({ "a": app.token, "s": status, "c": on }),
                )
                .await;
        }
    };
    // 1: the customer reads the agent's message within the grace: nothing.
    send(&server, &app, &agent, chat, "read me").await;
    server
        .ok(
            &customer,
            "mutation($a: ID!, $c: Int!) { markChatRead(appToken: $a, chatNumber: $c) { chatNumber } }",
            json!({ "a": app.token, "c": chat }),
        )
        .await;
    // 2: the customer has the chat on screen: nothing.
    heartbeat(customer.clone(), "ONLINE", Some(chat)).await;
    send(&server, &app, &agent, chat, "you are here").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        receiver.hits("/ok").is_empty(),
        "{:?}",
        receiver.hits("/ok")
    );
    // 3: the customer left: message.unseen for the customer, once.
    heartbeat(customer.clone(), "OFFLINE", None).await;
    send(&server, &app, &agent, chat, "are you there?").await;
    let hits = receiver.wait_for("/ok", 1, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 1);
    let data = &hits[0].json()["data"];
    assert_eq!(data["receiver"]["role"], "CUSTOMER");
    assert_eq!(data["message"]["body"], "are you there?");
    // 4: an agent online: the customer's message is not unseen for the agents.
    heartbeat(agent.clone(), "ONLINE", None).await;
    send(&server, &app, &customer, chat, "agents, anyone?").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(receiver.hits("/ok").len(), 1);
    // 5: no agent online: it is.
    heartbeat(agent.clone(), "OFFLINE", None).await;
    send(&server, &app, &customer, chat, "hello?").await;
    let hits = receiver.wait_for("/ok", 2, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 2);
    let data = &hits[1].json()["data"];
    assert_eq!(data["receiver"]["role"], "AGENT");
    assert_eq!(data["receiver"]["userId"], Value::Null);
    assert_eq!(data["message"]["body"], "hello?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_deliveries_pending_loses_none() {
    // A port with nobody listening yet.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--webhooks-allow-loopback",
        "--webhook-retry-scale",
        "0.001",
    ];
    let mut server = TestServer::start_on_with_args(dir.path(), &args);
    let app = TestApp::create(&server, "Hooks").await;
    let (_, _) = endpoint(
        &server,
        &app,
        &format!("http://127.0.0.1:{port}/ok"),
        &["message.created"],
    )
    .await;
    let customer = app.customer("c");
    let chat = open_chat(&server, &app, &customer).await;
    for i in 0..20 {
        send(&server, &app, &customer, chat, &format!("m{i}")).await;
    }
    server.kill_hard();
    // The receiver comes up; the server restarts on the same data and delivers every one.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let receiver = Receiver::serve(listener);
    let _server = TestServer::start_on_with_args(dir.path(), &args);
    let hits = receiver.wait_for("/ok", 20, Duration::from_secs(15)).await;
    let mut bodies: Vec<String> = hits
        .iter()
        .map(|h| {
            h.json()["data"]["message"]["body"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        20,
        "every acknowledged message's event arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_managed_with_the_admin_key_only() {
    let server = dev_server(&[]);
    let app = TestApp::create(&server, "Hooks").await;
    let other = TestApp::create(&server, "Other").await;
    let (id, first_secret) = endpoint(
        &server,
        &app,
        "https://hooks.example.com/a",
        &["chat.created"],
    )
    .await;
    assert!(first_secret.starts_with("whsec_"));
    let agent = app.agent("a");
    let customer = app.customer("c");
    let other_agent = other.agent("a");
    let operations: Vec<(&str, Value)> = vec![
        (ENDPOINTS, json!({ "a": app.token })),
        (DELIVERIES, json!({ "a": app.token, "e": id })),
        (
            CREATE_ENDPOINT,
            json!({ "a": app.token, "u": "https://hooks.example.com/b", "e": ["chat.created"] }),
        ),
        (
            "mutation($a: ID!, $i: ID!) { updateWebhookEndpoint(appToken: $a, id: $i, enabled: false) { id } }",
            json!({ "a": app.token, "i": id }),
        ),
        (
            "mutation($a: ID!, $i: ID!) { rotateWebhookSecret(appToken: $a, id: $i) { secret } }",
            json!({ "a": app.token, "i": id }),
        ),
        (
            "mutation($a: ID!, $e: ID!) { redeliverWebhook(appToken: $a, endpointId: $e, deliveryId: \"dl_AAAAAAAAAAAAAAAAAAAAAA\") { id } }",
            json!({ "a": app.token, "e": id }),
        ),
        (
            "mutation($a: ID!, $i: ID!) { deleteWebhookEndpoint(appToken: $a, id: $i) }",
            json!({ "a": app.token, "i": id }),
        ),
    ];
    for (query, variables) in &operations {
        for (who, token) in [
            ("agent", Some(agent.as_str())),
            ("customer", Some(customer.as_str())),
            ("another application's agent", Some(other_agent.as_str())),
        ] {
            let code = server.error_code(token, query, variables.clone()).await;
            assert_eq!(code, "Forbidden", "{who}: {query}");
        }
        let code = server.error_code(None, query, variables.clone()).await;
        assert_eq!(code, "Unauthorized", "anonymous: {query}");
    }
    // The admin naming another application sees none of this one's endpoints.
    let data = server
        .ok(ADMIN_KEY, ENDPOINTS, json!({ "a": other.token }))
        .await;
    assert_eq!(data["webhookEndpoints"], json!([]));
    let code = server
        .error_code(
            Some(ADMIN_KEY),
            DELIVERIES,
            json!({ "a": other.token, "e": id }),
        )
        .await;
    assert_eq!(code, "NotFound");
    let code = server
        .error_code(
            Some(ADMIN_KEY),
            "mutation($a: ID!, $i: ID!) { rotateWebhookSecret(appToken: $a, id: $i) { secret } }",
            json!({ "a": other.token, "i": id }),
        )
        .await;
    assert_eq!(code, "NotFound");
    // Bad input is BadInput, never a 500.
    for (url, events) in [
        ("ftp://hooks.example.com/", json!(["chat.created"])),
        ("https://hooks.example.com/", json!([])),
        ("https://hooks.example.com/", json!(["message.read"])),
        ("not a url", json!(["chat.created"])),
    ] {
        let code = server
            .error_code(
                Some(ADMIN_KEY),
                CREATE_ENDPOINT,
                json!({ "a": app.token, "u": url, "e": events }),
            )
            .await;
        assert_eq!(code, "BadInput", "{url} {events}");
    }
    // Rotation shows a new secret once; the endpoint lists no secret.
    let rotated = server
        .ok(
            ADMIN_KEY,
            "mutation($a: ID!, $i: ID!) { rotateWebhookSecret(appToken: $a, id: $i, graceSeconds: 60) { secret endpoint { previousSecretExpiresAt } } }",
            json!({ "a": app.token, "i": id }),
        )
        .await;
    let second = rotated["rotateWebhookSecret"]["secret"].as_str().unwrap();
    assert_ne!(second, first_secret);
    assert!(rotated["rotateWebhookSecret"]["endpoint"]["previousSecretExpiresAt"].is_string());
    // At most ten endpoints.
    for i in 1..10 {
        endpoint(
            &server,
            &app,
            &format!("https://hooks.example.com/{i}"),
            &["chat.created"],
        )
        .await;
    }
    let code = server
        .error_code(
            Some(ADMIN_KEY),
            CREATE_ENDPOINT,
            json!({ "a": app.token, "u": "https://hooks.example.com/11", "e": ["chat.created"] }),
        )
        .await;
    assert_eq!(code, "Conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_gets_at_most_four_requests_at_once_each_within_the_timeout() {
    let receiver = Receiver::start().await;
    let server = dev_server(&["--webhook-timeout-ms", "1000"]);
    let app = TestApp::create(&server, "Hooks").await;
    let (slow, _) = endpoint(&server, &app, &receiver.url("/slow"), &["message.created"]).await;
    let (hang, _) = endpoint(&server, &app, &receiver.url("/hang"), &["chat.created"]).await;
    let customer = app.customer("c");
    let chat = open_chat(&server, &app, &customer).await;
    for i in 0..12 {
        send(&server, &app, &customer, chat, &format!("m{i}")).await;
    }
    // Twelve deliveries of 300 ms each, at most four at a time: about a second.
    let hits = receiver
        .wait_for("/slow", 12, Duration::from_secs(10))
        .await;
    assert_eq!(hits.len(), 12);
    let peak = receiver.slow_peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "peak concurrency {peak}");
    let done = wait_until(Duration::from_secs(5), || async {
        deliveries(&server, &app, &slow)
            .await
            .iter()
            .all(|d| d["status"] == "SUCCEEDED")
    })
    .await;
    assert!(done);
    // A receiver that does not answer within the timeout: a failed attempt, to retry.
    let timed_out = wait_until(Duration::from_secs(5), || async {
        deliveries(&server, &app, &hang).await[0]["lastError"] == "timed out"
    })
    .await;
    assert!(timed_out, "{:?}", deliveries(&server, &app, &hang).await);
    let listed = deliveries(&server, &app, &hang).await;
    assert_eq!(listed[0]["status"], "PENDING");
    assert_eq!(listed[0]["lastResponseCode"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_both_secrets_sign_until_the_grace_ends() {
    let receiver = Receiver::start().await;
    let server = dev_server(&[]);
    let app = TestApp::create(&server, "Hooks").await;
    let (id, old) = endpoint(&server, &app, &receiver.url("/ok"), &["chat.created"]).await;
    let rotate = "mutation($a: ID!, $i: ID!, $g: Int) { rotateWebhookSecret(appToken: $a, id: $i, graceSeconds: $g) { secret } }";
    let rotated = server
        .ok(
            ADMIN_KEY,
            rotate,
            json!({ "a": app.token, "i": id, "g": 3600 }),
        )
        .await;
    let new = rotated["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    open_chat(&server, &app, &app.customer("c1")).await;
    let hits = receiver.wait_for("/ok", 1, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 1);
    // During the grace a receiver holding either secret verifies.
    assert_signed(&hits[0], &new);
    assert_signed(&hits[0], &old);
    // With no grace, only the newest verifies.
    let rotated = server
        .ok(
            ADMIN_KEY,
            rotate,
            json!({ "a": app.token, "i": id, "g": 0 }),
        )
        .await;
    let newest = rotated["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    open_chat(&server, &app, &app.customer("c2")).await;
    let hits = receiver.wait_for("/ok", 2, Duration::from_secs(5)).await;
    assert_eq!(hits.len(), 2);
    assert_signed(&hits[1], &newest);
    let header = hits[1].headers["chat-signature"].to_str().unwrap();
    for stale in [&old, &new] {
        assert!(
            verify_signature(
                header,
                &WebhookSecret::from_shown(stale),
                hits[1].body.as_bytes(),
                now_secs(),
                300
            )
            .is_err()
        );
    }
}
