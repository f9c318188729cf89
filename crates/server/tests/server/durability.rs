//! An acknowledged write survives kill -9 of the server.

use crate::common;

use common::*;
use futures::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_on(dir.path());
    let app = TestApp::create(&server, "Acme").await;
    let customer = app.customer("c1");
    let chat = open_chat(&server, &app, &customer).await;

    // Given 100 acknowledged sends, some concurrent ...
    let sends = (0..100).map(|i| {
        let (server, app, customer) = (&server, &app, &customer);
        async move {
            send(server, app, customer, chat, &format!("m{i}")).await["number"]
                .as_i64()
                .unwrap()
        }
    });
    let mut acknowledged = join_all(sends).await;
    acknowledged.sort_unstable();
    // ... when the server is killed right after the last acknowledgement and restarted,
    server.kill_hard();
    let server = TestServer::start_on(dir.path());

    // then every acknowledged message is there and the counts match.
    let data = server
        .ok(&customer, CHAT, json!({ "a": app.token, "n": chat }))
        .await;
    assert_eq!(data["chat"]["messagesCount"], 100);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = server
            .ok(
                &customer,
                MESSAGES,
                json!({ "a": app.token, "c": chat, "l": 30, "t": token }),
            )
            .await;
        for item in page["messages"]["items"].as_array().unwrap() {
            seen.push(item["number"].as_i64().unwrap());
        }
        match page["messages"]["nextToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, acknowledged);
    // The application secret and user tokens still work: the keys were kept.
    let again = send(&server, &app, &customer, chat, "after restart").await;
    assert_eq!(again["number"], 101);
}
