//! The web console is served by the dev server at `/`: the right files and content types,
//! a Content-Security-Policy, and GraphiQL still at `GET /graphql`.

use crate::common;

use common::TestServer;

const CONSOLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../console");

async fn get(server: &TestServer, path: &str, accept: &str) -> reqwest::Response {
    server
        .client()
        .get(format!("{}{path}", server.url))
        .header("Accept", accept)
        .send()
        .await
        .expect("request")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("text header")
}

#[tokio::test]
async fn root_serves_the_agent_console_with_a_content_security_policy() {
    let server = TestServer::start();

    let response = get(&server, "/", "text/html").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/html; charset=utf-8"
    );
    let csp = header(&response, "content-security-policy").to_owned();
    assert!(csp.starts_with("default-src 'self'; "), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    // WebSockets to the host the page came from, and nowhere else.
    let host = server.url.trim_start_matches("http://");
    assert!(
        csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let body = response.text().await.expect("body");
    let on_disk = std::fs::read_to_string(format!("{CONSOLE_DIR}/index.html")).expect("read");
    assert_eq!(body, on_disk);
    assert!(body.contains(r#"<script type="module" src="./app.js"></script>"#));
}

#[tokio::test]
async fn every_console_file_is_served_with_its_content_type() {
    let server = TestServer::start();
    for (path, content_type) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/customer.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/customer.js", "text/javascript; charset=utf-8"),
        ("/graphql.js", "text/javascript; charset=utf-8"),
        ("/config.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let response = get(&server, path, "*/*").await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert!(
            header(&response, "content-security-policy").starts_with("default-src 'self'"),
            "{path}"
        );
        let on_disk = std::fs::read(format!("{CONSOLE_DIR}{path}")).expect("read");
        assert_eq!(
            response.bytes().await.expect("body").as_ref(),
            on_disk,
            "{path}"
        );
    }
    for missing in [
        "/nope.js",
        "/console/index.html",
        "/../Cargo.toml",
        "/index.htm",
    ] {
        assert_eq!(
            get(&server, missing, "*/*").await.status(),
            404,
            "{missing}"
        );
    }
}

#[tokio::test]
async fn graphiql_and_health_still_answer_beside_the_console() {
    let server = TestServer::start();

    let graphiql = get(&server, "/graphql", "text/html").await;
    assert_eq!(graphiql.status(), 200);
    assert!(header(&graphiql, "content-type").starts_with("text/html"));
    // GraphiQL's own policy: its pinned files and this server, no inline script.
    let csp = header(&graphiql, "content-security-policy").to_owned();
    assert!(
        csp.contains("script-src 'self' https://unpkg.com/react@18.3.1/"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe"), "{csp}");
    let page = graphiql.text().await.expect("body");
    assert!(page.contains("integrity=\"sha384-"), "{page}");
    let script = get(&server, "/graphiql/page.js", "text/javascript").await;
    assert_eq!(script.status(), 200);

    let health = get(&server, "/health", "application/json").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.expect("json")["status"],
        "ok"
    );
}

#[tokio::test]
async fn configured_connect_sources_are_added_to_the_policy_with_their_websocket_hosts() {
    let appsync = "https://abc123.appsync-api.eu-west-1.amazonaws.com/graphql";
    let server = TestServer::start_with_args(
        &[
            "--console-connect-src",
            &format!("{appsync},wss://other.example"),
        ],
        &[],
    );

    let response = get(&server, "/", "text/html").await;

    // The AppSync endpoint brings the WebSocket hosts the console derives from it.
    let csp = header(&response, "content-security-policy");
    assert!(
        csp.contains(&format!(
            "connect-src 'self' ws://{host} wss://{host} {appsync} \
             wss://abc123.appsync-api.eu-west-1.amazonaws.com \
             wss://abc123.appsync-realtime-api.eu-west-1.amazonaws.com wss://other.example;",
            host = server.url.trim_start_matches("http://")
        )),
        "{csp}"
    );
}

#[test]
fn a_connect_source_that_would_rewrite_the_policy_stops_the_server() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--memory",
            "--listen",
            "127.0.0.1:0",
            "--console-connect-src",
            "https://a.example; script-src *",
        ])
        .output()
        .expect("run chat-server");

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("console connect source"), "{stderr}");
    assert!(output.stdout.is_empty(), "it must not start listening");
}
