//! A development server's demo application: sign-in links in the banner that work, the same
//! application after a restart, and none of it on a server reachable from outside.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::common;

use serde_json::json;

/// Starts the server with `args`, reads its banner up to the customer link (or to the end
/// when there is none), and returns it with the running child.
fn start(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--data-dir"])
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chat-server");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read banner") == 0 {
            break;
        }
        let last = line.contains("customer widget:") || line.contains("demo: off");
        lines.push(line.trim_end().to_owned());
        // The banner ends with the curl example when there is no demo.
        if last || (lines.len() > 2 && line.contains("createApplication") && !demo_on(args)) {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    (child, lines)
}

fn demo_on(args: &[&str]) -> bool {
    !args.windows(2).any(|w| w == ["--demo", "false"])
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The value after `label` on the banner line that has it.
fn after(lines: &[String], label: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no {label:?} in {lines:#?}"));
    line.split_once(label).unwrap().1.trim().to_owned()
}

#[tokio::test]
async fn a_development_server_prints_working_sign_in_links_for_one_demo_application() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, lines) = start(tmp.path(), &["--listen", "127.0.0.1:0"]);
    let base = after(&lines, "chat-server listening on ");
    let app = after(&lines, "demo:      application ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let agent_link = after(&lines, "agent console:");
    let customer_link = after(&lines, "customer widget:");
    assert!(
        agent_link.starts_with(&format!("{base}/#token=")),
        "{agent_link}"
    );
    assert!(
        customer_link.starts_with(&format!("{base}/customer.html#token=")),
        "{customer_link}"
    );
    let agent = agent_link.split_once("#token=").unwrap().1.to_owned();
    let customer = customer_link.split_once("#token=").unwrap().1.to_owned();

    // The tokens are the application's: the customer opens a chat, the agent answers it.
    let client = common::http_client();
    let gql = |token: String, query: &'static str, variables: serde_json::Value| {
        let client = client.clone();
        let url = format!("{base}/graphql");
        async move {
            let body: serde_json::Value = client
                .post(url)
                .header("Authorization", token)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(body["errors"].is_null(), "{body}");
            body["data"].clone()
        }
    };
    let chat = gql(
        customer.clone(),
        "mutation($a: ID!) { createChat(appToken: $a) { number customerId } }",
        json!({"a": app}),
    )
    .await;
    assert_eq!(chat["createChat"]["customerId"], "demo-customer");
    let sent = gql(
        agent.clone(),
        "mutation($a: ID!) { sendMessage(appToken: $a, chatNumber: 1, body: \"hello\") { senderRole } }",
        json!({"a": app}),
    )
    .await;
    assert_eq!(sent["sendMessage"]["senderRole"], "AGENT");
    stop(child);

    // A restart on the same data keeps the one demo application (and its chat).
    let (child, lines) = start(tmp.path(), &["--listen", "127.0.0.1:0"]);
    let again = after(&lines, "demo:      application ");
    assert!(again.starts_with(&app), "{again} vs {app}");
    stop(child);
}

#[test]
fn no_demo_on_request_and_never_on_an_outside_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (child, lines) = start(tmp.path(), &["--listen", "127.0.0.1:0", "--demo", "false"]);
    assert!(!lines.iter().any(|l| l.contains("#token=")), "{lines:#?}");
    stop(child);
    assert!(!tmp.path().join("demo-app").exists());

    // Asked for on an address others can reach: refused, and the server does not start.
    let output = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["--listen", "0.0.0.0:0", "--memory", "--demo", "true"])
        .output()
        .expect("run chat-server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--demo is for development"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("#token="));
}
