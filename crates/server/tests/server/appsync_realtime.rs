//! AppSync's own real-time protocol (what Amplify JS and Amplify Flutter speak) against a
//! started server, over a raw WebSocket: the handshakes Amplify makes, ack and keep-alive,
//! start/start_ack/data/stop/complete, refusals and bad frames as `error`s, the limits, and
//! TLS on the same port (Amplify always connects with wss://).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::appsync::*;
use common::ws::{Incoming, WsClient};
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Named, and sent without `operationName`, as Amplify sends its subscriptions.
const ON_MESSAGE: &str = "subscription OnMessage($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { chatNumber number body } }";
const ON_INBOX: &str =
    "subscription($a: ID!) { onInboxMessage(appToken: $a) { chatNumber number } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handshake_amplify_makes_gets_an_ack_with_the_connection_timeout() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    // Amplify JS: /graphql/realtime, header- subprotocol (covered by `connect`).
    connect(&server.url, &agent).await;
    // Amplify Flutter: the query parameters; its connection_init carries an id.
    for path in ["/graphql/realtime", "/graphql"] {
        let mut client = open(&server.url, path, Handshake::Query(&agent)).await;
        client
            .send(json!({ "id": "f1", "type": "connection_init" }))
            .await;
        let ack = next(&mut client).await;
        assert_eq!(ack["type"], "connection_ack", "{path}: {ack}");
        assert_eq!(ack["payload"]["connectionTimeoutMs"], 300_000);
    }
    // The upgrade request's own Authorization header.
    let mut client = open(&server.url, "/graphql/realtime", Handshake::Header(&agent)).await;
    client.send(json!({ "type": "connection_init" })).await;
    assert_eq!(next(&mut client).await["type"], "connection_ack");
    // connection_init is optional, as on AppSync: a start initialises the connection.
    let mut client = open(&server.url, "/graphql/realtime", Handshake::Header(&agent)).await;
    subscribe(&mut client, "1", ON_INBOX, json!({ "a": app.token })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_as_data_in_order_and_stop_completes() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (c1, agent) = (app.customer("c1"), app.agent("a1"));
    let chat = open_chat(&server, &app, &c1).await;
    let mut client = connect(&server.url, &c1).await;
    subscribe(
        &mut client,
        "sub-1",
        ON_MESSAGE,
        json!({ "a": app.token, "c": chat }),
    )
    .await;

    for i in 1..=10 {
        let token = if i % 2 == 0 { &agent } else { &c1 };
        send(&server, &app, token, chat, &format!("m{i}")).await;
    }
    for i in 1..=10 {
        let data = next_not_ka(&mut client).await;
        assert_eq!(
            data,
            json!({ "type": "data", "id": "sub-1", "payload": { "data": { "onMessage": {
                "chatNumber": chat, "number": i, "body": format!("m{i}") } } } })
        );
    }

    client.send(json!({ "type": "stop", "id": "sub-1" })).await;
    assert_eq!(
        next_not_ka(&mut client).await,
        json!({ "type": "complete", "id": "sub-1" })
    );
    send(&server, &app, &agent, chat, "after stop").await;
    nothing_arrives(&mut client).await;
    // The id is free again.
    subscribe(
        &mut client,
        "sub-1",
        ON_MESSAGE,
        json!({ "a": app.token, "c": chat }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mutation_reaches_both_protocols_alike() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let mut appsync = connect(&server.url, &c1).await;
    subscribe(
        &mut appsync,
        "a",
        ON_MESSAGE,
        json!({ "a": app.token, "c": chat }),
    )
    .await;
    let mut transport_ws = WsClient::connect(&server.url, &c1).await;
    transport_ws
        .subscribe("t", ON_MESSAGE, json!({ "a": app.token, "c": chat }))
        .await;
    transport_ws.synced().await;

    send(&server, &app, &c1, chat, "to both").await;
    let over_appsync = next_not_ka(&mut appsync).await;
    let over_ws = transport_ws.next_data("t").await;
    assert_eq!(over_appsync["payload"]["data"], over_ws);
    assert_eq!(over_ws["onMessage"]["body"], "to both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscriptions_get_an_error_in_appsyncs_shape_and_nothing_after() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let other = TestApp::create(&server, "Other").await;
    let owner = app.customer("owner");
    let chat = open_chat(&server, &app, &owner).await;

    let mut stranger = connect(&server.url, &app.customer("stranger")).await;
    stranger
        .send(start(
            "a",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat }),
            None,
        ))
        .await;
    let (id, error) = expect_error(&mut stranger).await;
    assert_eq!(
        (id, error["errorType"].clone()),
        (json!("a"), json!("NotFound"))
    );
    assert_eq!(error["extensions"]["code"], "NotFound");
    stranger
        .send(start("b", ON_INBOX, json!({ "a": app.token }), None))
        .await;
    let (id, error) = expect_error(&mut stranger).await;
    assert_eq!(
        (id, error["errorType"].clone()),
        (json!("b"), json!("Forbidden"))
    );

    let mut foreign = connect(&server.url, &other.agent("a1")).await;
    foreign
        .send(start("a", ON_INBOX, json!({ "a": app.token }), None))
        .await;
    assert_eq!(expect_error(&mut foreign).await.1["errorType"], "Forbidden");
    foreign
        .send(start("b", "subscription { nope }", json!({}), None))
        .await;
    assert_eq!(expect_error(&mut foreign).await.1["errorType"], "BadInput");
    foreign
        .send(start("c", "subscription {", json!({}), None))
        .await;
    assert_eq!(expect_error(&mut foreign).await.1["errorType"], "BadInput");

    // The refused ids hold nothing: events do not reach them, and they can be reused.
    send(&server, &app, &owner, chat, "private").await;
    nothing_arrives(&mut stranger).await;
    nothing_arrives(&mut foreign).await;
    stranger
        .send(start(
            "a",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat }),
            None,
        ))
        .await;
    assert_eq!(expect_error(&mut stranger).await.1["errorType"], "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_start_is_authorized_with_its_own_token_else_the_connections() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let (c1, c2) = (app.customer("c1"), app.customer("c2"));
    let chat1 = open_chat(&server, &app, &c1).await;
    // The connection is c2's; a start with c1's token subscribes as c1.
    let mut client = connect(&server.url, &c2).await;
    client
        .send(start(
            "as-c1",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat1 }),
            Some(&c1),
        ))
        .await;
    assert_eq!(
        next_not_ka(&mut client).await,
        json!({ "type": "start_ack", "id": "as-c1" })
    );
    client
        .send(start(
            "as-c2",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat1 }),
            None,
        ))
        .await;
    assert_eq!(expect_error(&mut client).await.1["errorType"], "NotFound");
    client
        .send(start(
            "forged",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat1 }),
            Some("garbage"),
        ))
        .await;
    let (id, error) = expect_error(&mut client).await;
    assert_eq!(
        (id, error["errorType"].clone()),
        (json!("forged"), json!("Unauthorized"))
    );

    send(&server, &app, &c1, chat1, "hello").await;
    let data = next_not_ka(&mut client).await;
    assert_eq!(data["id"], "as-c1");
    assert_eq!(data["payload"]["data"]["onMessage"]["body"], "hello");
    nothing_arrives(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_without_a_valid_token_gets_connection_error_then_close() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let expired = {
        let exp = jsonwebtoken_exp(0) - 3600;
        chat_appsync::auth::mint_user_token(
            &app.secret,
            &app.token,
            "c1",
            chat_domain::Role::Customer,
            exp,
        )
        .unwrap()
    };
    let cases = [
        (Handshake::None, "UnauthorizedException", 401, 4401),
        (
            Handshake::Subprotocol("garbage"),
            "UnauthorizedException",
            401,
            4401,
        ),
        (
            Handshake::Query(&expired),
            "UnauthorizedException",
            401,
            4401,
        ),
        (
            Handshake::Subprotocol(""),
            "UnauthorizedException",
            401,
            4401,
        ),
    ];
    for (handshake, error_type, error_code, close_code) in cases {
        let mut client = open(&server.url, "/graphql/realtime", handshake).await;
        client.send(json!({ "type": "connection_init" })).await;
        let refusal = next(&mut client).await;
        assert_eq!(refusal["type"], "connection_error", "{refusal}");
        let error = &refusal["payload"]["errors"][0];
        assert_eq!(error["errorType"], error_type, "{refusal}");
        assert_eq!(error["errorCode"], error_code, "{refusal}");
        match client.next().await {
            Incoming::Closed(Some(frame)) => assert_eq!(u16::from(frame.code), close_code),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    // Authorization headers that are not base64 JSON: a bad request.
    let url = format!(
        "{}/graphql/realtime?header=%25%25%25&payload=e30%3D",
        server.url.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-ws".parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = WsClient { socket };
    client.send(json!({ "type": "connection_init" })).await;
    let refusal = next(&mut client).await;
    assert_eq!(
        refusal["payload"]["errors"][0]["errorType"],
        "BadRequestException"
    );
    assert_eq!(refusal["payload"]["errors"][0]["errorCode"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_errors_and_the_connection_stays_usable() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;
    let mut client = connect(&server.url, &c1).await;

    let text = |s: &str| Message::Text(s.to_owned().into());
    let cases: Vec<(Message, Value, &str)> = vec![
        (text("not json"), Value::Null, "BadInput"),
        (text("[1, 2, 3]"), Value::Null, "BadInput"),
        (text(r#"{"id": "x"}"#), json!("x"), "BadInput"),
        (
            text(r#"{"type": "subscribe", "id": "y"}"#),
            json!("y"),
            "UnsupportedOperation",
        ),
        (
            text(r#"{"type": "ka"}"#),
            Value::Null,
            "UnsupportedOperation",
        ),
        (
            text(r#"{"type": "start", "payload": {"data": "{}"}}"#),
            Value::Null,
            "BadInput",
        ),
        (
            text(
                r#"{"type": "start", "id": "", "payload": {"data": "{\"query\":\"subscription { x }\"}"}}"#,
            ),
            Value::Null,
            "BadInput",
        ),
        (
            text(r#"{"type": "start", "id": "z", "payload": {"data": {"query": "{ x }"}}}"#),
            json!("z"),
            "BadInput",
        ),
        (
            text(r#"{"type": "start", "id": "z", "payload": {"data": "not json"}}"#),
            json!("z"),
            "BadInput",
        ),
        (
            text(
                r#"{"type": "start", "id": "z", "payload": {"data": "{\"query\":\"subscription { x }\",\"variables\":[1]}"}}"#,
            ),
            json!("z"),
            "BadInput",
        ),
        (text(r#"{"type": "stop"}"#), Value::Null, "BadInput"),
        (
            Message::Binary(vec![0, 159, 146, 150].into()),
            Value::Null,
            "BadInput",
        ),
    ];
    for (frame, id, error_type) in cases {
        let shown = format!("{frame:?}");
        client.socket.send(frame).await.unwrap();
        let message = next_not_ka(&mut client).await;
        assert_eq!(message["type"], "error", "{shown}: {message}");
        assert_eq!(
            message.get("id").cloned().unwrap_or(Value::Null),
            id,
            "{shown}: {message}"
        );
        assert_eq!(
            message["payload"]["errors"][0]["errorType"], error_type,
            "{shown}: {message}"
        );
    }

    // A query or mutation is not for this channel, and does not run.
    let create = "mutation($a: ID!) { createChat(appToken: $a) { number } }";
    client
        .send(start("q", create, json!({ "a": app.token }), None))
        .await;
    assert_eq!(
        expect_error(&mut client).await.1["errorType"],
        "UnsupportedOperation"
    );
    let chats = server
        .ok(
            &c1,
            "query($a: ID!) { chats(appToken: $a) { items { number } } }",
            json!({ "a": app.token }),
        )
        .await;
    assert_eq!(chats["chats"]["items"].as_array().unwrap().len(), 1);

    // A second start with a running id.
    subscribe(
        &mut client,
        "live",
        ON_MESSAGE,
        json!({ "a": app.token, "c": chat }),
    )
    .await;
    client
        .send(start(
            "live",
            ON_MESSAGE,
            json!({ "a": app.token, "c": chat }),
            None,
        ))
        .await;
    let (id, error) = expect_error(&mut client).await;
    assert_eq!(
        (id, error["errorType"].clone()),
        (json!("live"), json!("DuplicatedOperationError"))
    );
    // Stopping what does not run changes nothing.
    client
        .send(json!({ "type": "stop", "id": "never-started" }))
        .await;

    // After all that, the subscription still works.
    send(&server, &app, &c1, chat, "still here").await;
    let data = next_not_ka(&mut client).await;
    assert_eq!(data["id"], "live");
    assert_eq!(data["payload"]["data"]["onMessage"]["body"], "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_capped() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let mut client = connect(&server.url, &agent).await;
    for i in 0..100 {
        client
            .send(start(
                &format!("s{i}"),
                ON_INBOX,
                json!({ "a": app.token }),
                None,
            ))
            .await;
    }
    for i in 0..100 {
        assert_eq!(
            next_not_ka(&mut client).await,
            json!({ "type": "start_ack", "id": format!("s{i}") })
        );
    }
    client
        .send(start("one-more", ON_INBOX, json!({ "a": app.token }), None))
        .await;
    let (id, error) = expect_error(&mut client).await;
    assert_eq!(id, "one-more");
    assert_eq!(error["errorType"], "MaxSubscriptionsReachedError");
    // Stopping one makes room.
    client.send(json!({ "type": "stop", "id": "s0" })).await;
    assert_eq!(next_not_ka(&mut client).await["type"], "complete");
    subscribe(&mut client, "one-more", ON_INBOX, json!({ "a": app.token })).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_closes_only_its_own_connection() {
    let server = TestServer::start();
    let app = TestApp::create(&server, "Acme").await;
    let agent = app.agent("a1");
    let mut bystander = connect(&server.url, &agent).await;
    subscribe(&mut bystander, "1", ON_INBOX, json!({ "a": app.token })).await;
    let mut client = connect(&server.url, &agent).await;
    let huge = "x".repeat(chat_domain::limits::REQUEST_BODY_MAX_BYTES + 1);
    let _ = client
        .socket
        .send(Message::Text(
            start("big", &huge, json!({}), None).to_string().into(),
        ))
        .await;
    loop {
        match client.next().await {
            Incoming::Closed(_) => break,
            Incoming::Message(m) if m["type"] == "ka" => continue,
            Incoming::Message(m) => panic!("unexpected {m}"),
        }
    }
    let customer = app.customer("c1");
    let chat = open_chat(&server, &app, &customer).await;
    send(&server, &app, &customer, chat, "still served").await;
    let data = next_not_ka(&mut bystander).await;
    assert_eq!(
        data["payload"]["data"]["onInboxMessage"]["chatNumber"],
        chat
    );
}

/// A CA and a certificate for localhost and 127.0.0.1 that it signed, as mkcert makes
/// them: (CA, certificate, key).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=chat test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "tls.key",
                "-out",
                "tls.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (path("ca.crt"), path("tls.crt"), path("tls.key"))
}

async fn next_text<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] != "ka" {
                    return message;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_port_serves_wss_and_https_next_to_plain_http() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let certificates = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(certificates.path());
    let server = TestServer::start_with_args(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    // Plain HTTP on the port, as Amplify sends queries and mutations to an http:// endpoint.
    let app = TestApp::create(&server, "Acme").await;
    let c1 = app.customer("c1");
    let chat = open_chat(&server, &app, &c1).await;

    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = server.url.trim_start_matches("http://").to_owned();
    let tls = |host: &'static str| {
        let (connector, addr) = (connector.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let name = ServerName::try_from(host).unwrap();
            connector.connect(name, tcp).await.expect("TLS handshake")
        }
    };

    // wss://, as Amplify derives it from the http:// endpoint: /graphql/realtime.
    let port = addr.rsplit(':').next().unwrap();
    let header = URL_SAFE_NO_PAD.encode(auth_headers(&c1, &server.url).to_string());
    let mut request = format!("wss://localhost:{port}/graphql/realtime")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("graphql-ws,header-{header}").parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls("localhost").await)
        .await
        .expect("WebSocket over TLS");
    socket
        .send(Message::Text(
            json!({ "type": "connection_init" }).to_string().into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await["type"], "connection_ack");
    let subscription = start("s", ON_MESSAGE, json!({ "a": app.token, "c": chat }), None);
    socket
        .send(Message::Text(subscription.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await["type"], "start_ack");
    send(&server, &app, &c1, chat, "over wss").await;
    let data = next_text(&mut socket).await;
    assert_eq!(data["payload"]["data"]["onMessage"]["body"], "over wss");

    // https:// on the same port (by IP address too).
    let mut stream = tls("127.0.0.1").await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#"{"status":"ok"}"#), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reported_forgery_reaches_no_subscriber_of_the_other_application() {
    let server = TestServer::start();
    let a = TestApp::create(&server, "A").await;
    let b = TestApp::create(&server, "B").await;
    let (c1, agent) = (a.customer("c1"), a.agent("agent"));
    let chat = open_chat(&server, &a, &c1).await;
    let mallory = b.customer("mallory");
    open_chat(&server, &b, &mallory).await;
    let mut feed = connect(&server.url, &agent).await;
    subscribe(
        &mut feed,
        "m",
        ON_MESSAGE,
        json!({ "a": a.token, "c": chat }),
    )
    .await;
    subscribe(&mut feed, "i", ON_INBOX, json!({ "a": a.token })).await;

    server
        .ok(
            &mallory,
            FORGED_SEND,
            json!({ "b": b.token, "cm": a.token }),
        )
        .await;
    send(&server, &a, &c1, chat, "real").await;
    let mut events = Vec::new();
    for _ in 0..2 {
        let message = next_not_ka(&mut feed).await;
        assert_eq!(message["type"], "data", "{message}");
        events.push((message["id"].clone(), message["payload"]["data"].clone()));
    }
    events.sort_by_key(|(id, _)| id.to_string());
    assert_eq!(
        events,
        [
            (
                json!("i"),
                json!({ "onInboxMessage": { "chatNumber": chat, "number": 1 } })
            ),
            (
                json!("m"),
                json!({ "onMessage": { "chatNumber": chat, "number": 1, "body": "real" } })
            ),
        ]
    );
    nothing_arrives(&mut feed).await;
}
