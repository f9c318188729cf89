//! A real `chat-server` process on a free loopback port, and a small GraphQL client.
#![allow(dead_code)]

pub mod appsync;
pub mod ws;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_domain::Role;
use serde_json::{Value, json};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// An HTTP client for the tests. In a workspace-wide build reqwest has rustls without a
/// crypto provider (chat-opensearch asks for that), so the ring provider goes in first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

pub struct TestServer {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    client: reqwest::Client,
}

impl TestServer {
    /// A server on a fresh data dir of its own.
    pub fn start() -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = TestServer::start_on(&dir);
        server._tmp = Some(tmp);
        server
    }

    /// A server on a fresh data dir of its own, with more flags (e.g. another store) and
    /// environment variables.
    pub fn start_with_args(args: &[&str], envs: &[(&str, &str)]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut server = TestServer::launch(&dir, args, envs);
        server._tmp = Some(tmp);
        server
    }

    /// A server on the DynamoDB store: a new table (named after `table_prefix`) created on
    /// the emulator, with dummy AWS settings in its environment as a developer would export
    /// them.
    pub fn start_on_moto(table_prefix: &str) -> TestServer {
        let endpoint = chat_dynamodb::moto::endpoint();
        let table = chat_dynamodb::moto::unique_table_name(table_prefix);
        TestServer::start_with_args(
            &[
                "--store",
                "dynamodb",
                "--dynamodb-endpoint",
                &endpoint,
                "--create-table",
                "--table",
                &table,
            ],
            &[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "emulator"),
                ("AWS_SECRET_ACCESS_KEY", "emulator"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
    }

    /// A server on `dir`, which the caller keeps (for restarts on the same data).
    pub fn start_on(dir: &Path) -> TestServer {
        TestServer::launch(dir, &[], &[])
    }

    /// A server on `dir`, which the caller keeps, with more flags.
    pub fn start_on_with_args(dir: &Path, args: &[&str]) -> TestServer {
        TestServer::launch(dir, args, &[])
    }

    /// A server on a fresh data dir that logs everything down to `level` into `log`.
    pub fn start_logging_to(log: &Path, level: &str) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(log).expect("log file");
        let mut server =
            TestServer::launch_with(tmp.path(), &[], &[("RUST_LOG", level)], file.into());
        server._tmp = Some(tmp);
        server
    }

    /// A server on `dir` whose log (down to `level`) goes to the file `log`.
    pub fn start_on_logging_to(dir: &Path, log: &Path, level: &str) -> TestServer {
        let file = std::fs::File::create(log).expect("log file");
        TestServer::launch_with(dir, &[], &[("RUST_LOG", level)], file.into())
    }

    fn launch(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> TestServer {
        TestServer::launch_with(dir, args, envs, Stdio::inherit())
    }

    fn launch_with(dir: &Path, args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat-server"));
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-key",
                ADMIN_KEY,
                "--data-dir",
            ])
            .arg(dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // If this test process dies without dropping the server (a killed run), the server
        // dies too instead of outliving it and holding CI's output open.
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start chat-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("read banner");
        // Keep draining stdout so the server never writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let url = first
            .trim()
            .strip_prefix("chat-server listening on ")
            .unwrap_or_else(|| panic!("unexpected banner: {first:?}"))
            .to_owned();
        TestServer {
            child,
            url,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            client: http_client(),
        }
    }

    pub fn kill_hard(&mut self) {
        // SIGKILL: no shutdown path runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what a process manager sends to stop the server).
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM)");
    }

    /// Waits for the process to exit, at most `bound`; `None` if it is still running.
    pub fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    /// A request that must succeed: returns `data`.
    pub async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        graphql_ok(&self.client, &self.url, token, query, variables).await
    }

    /// The items of a `chats` query, page after page: `variables` without the page token,
    /// which the query takes as `$t`.
    pub async fn all_chats(&self, token: &str, query: &str, mut variables: Value) -> Vec<Value> {
        let mut items = Vec::new();
        loop {
            let data = self.ok(token, query, variables.clone()).await;
            items.extend(data["chats"]["items"].as_array().unwrap().iter().cloned());
            match data["chats"]["nextToken"].as_str() {
                Some(t) => variables["t"] = Value::from(t),
                None => return items,
            }
        }
    }

    /// The chat numbers of [`TestServer::all_chats`], in their order.
    pub async fn chat_numbers(&self, token: &str, query: &str, variables: Value) -> Vec<i64> {
        self.all_chats(token, query, variables)
            .await
            .iter()
            .map(|c| c["number"].as_i64().unwrap())
            .collect()
    }

    /// A request that must fail: returns the first error's code.
    pub async fn error_code(&self, token: Option<&str>, query: &str, variables: Value) -> String {
        let (_, body) = self.post(token, query, variables).await;
        let code = body["errors"][0]["extensions"]["code"].as_str();
        code.unwrap_or_else(|| panic!("expected an error with a code: {body}"))
            .to_owned()
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// POSTs a GraphQL request to the server at `base_url`; it must succeed. Returns `data`.
pub async fn graphql_ok(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Value {
    let response = client
        .post(format!("{base_url}/graphql"))
        .header("Authorization", token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "unexpected errors: {body}");
    body["data"].clone()
}

/// Serves `api` (authenticated by `auth`, open connections re-checked every
/// `authority_recheck`) on a free loopback port in this test's process; its URL.
pub async fn serve_in_process(
    api: chat_server::schema::Api,
    auth: chat_appsync::Authenticator,
    authority_recheck: Duration,
) -> String {
    let router = chat_server::http::router(chat_server::http::AppState {
        api,
        auth: std::sync::Arc::new(auth),
        shutdown: Default::default(),
        authority_recheck,
        graphiql: false,
        admin_guard: Default::default(),
        metrics_access: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// A registry over a fresh in-memory store.
pub fn memory_registry() -> std::sync::Arc<chat_appsync::Registry> {
    use chat_domain::{ChatService, ServerKey, SystemClock};
    let store = std::sync::Arc::new(chat_embedded::SqliteStore::open_in_memory().unwrap());
    std::sync::Arc::new(chat_appsync::Registry::new(std::sync::Arc::new(
        ChatService::new(
            store,
            ServerKey::generate(),
            std::sync::Arc::new(SystemClock),
        )
        .with_presence(std::sync::Arc::new(chat_embedded::MemoryPresence::new())),
    )))
}

/// An application with its secret, and tokens for its users.
pub struct TestApp {
    pub token: String,
    pub secret: String,
}

impl TestApp {
    pub async fn create(server: &TestServer, name: &str) -> TestApp {
        TestApp::from_answer(
            server
                .ok(ADMIN_KEY, CREATE_APPLICATION, json!({ "n": name }))
                .await,
        )
    }

    /// An application created through `client` on the server at `url` with `admin_key`.
    pub async fn create_at(
        client: &reqwest::Client,
        url: &str,
        admin_key: &str,
        name: &str,
    ) -> TestApp {
        let data = graphql_ok(
            client,
            url,
            admin_key,
            CREATE_APPLICATION,
            json!({ "n": name }),
        )
        .await;
        TestApp::from_answer(data)
    }

    /// The application in a `createApplication` answer.
    pub fn from_answer(data: Value) -> TestApp {
        TestApp {
            token: data["createApplication"]["application"]["token"]
                .as_str()
                .unwrap()
                .to_owned(),
            secret: data["createApplication"]["secret"]
                .as_str()
                .unwrap()
                .to_owned(),
        }
    }

    /// [`TestApp::create`], with the admin's request sent from another loopback address
    /// (`127.0.0.2`, say: per-address limits count it apart).
    pub async fn create_from(server: &TestServer, name: &str, address: &str) -> TestApp {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .local_address(address.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        TestApp::create_at(&client, &server.url, ADMIN_KEY, name).await
    }

    pub fn user(&self, sub: &str, role: Role) -> String {
        let exp = jsonwebtoken_exp(3600);
        chat_appsync::auth::mint_user_token(&self.secret, &self.token, sub, role, exp).unwrap()
    }

    pub fn agent(&self, sub: &str) -> String {
        self.user(sub, Role::Agent)
    }

    pub fn customer(&self, sub: &str) -> String {
        self.user(sub, Role::Customer)
    }
}

pub fn jsonwebtoken_exp(ttl: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + ttl
}

pub const CREATE_APPLICATION: &str =
    "mutation($n: String!) { createApplication(name: $n) { application { token } secret } }";
pub const CREATE_CHAT: &str = "mutation($a: ID!, $s: String, $c: ID) { createChat(appToken: $a, subject: $s, customerId: $c) { number customerId subject status messagesCount } }";
pub const SEND: &str = "mutation($a: ID!, $c: Int!, $b: String!, $k: ID) { sendMessage(appToken: $a, chatNumber: $c, body: $b, clientMessageId: $k) { number body senderId senderRole clientMessageId chatNumber appToken deleted createdAt } }";
pub const MESSAGES: &str = "query($a: ID!, $c: Int!, $after: Int, $before: Int, $l: Int, $t: String) { messages(appToken: $a, chatNumber: $c, after: $after, before: $before, limit: $l, nextToken: $t) { items { number body deleted } nextToken } }";
pub const CHAT: &str = "query($a: ID!, $n: Int!) { chat(appToken: $a, number: $n) { number customerId subject status messagesCount lastMessage { number body deleted editedAt } lastMessageAt } }";

/// The mutation from the security report, verbatim: a user of application B sends a
/// message in B whose answer it shapes to look like application A's (`appToken:
/// clientMessageId`, with A's token as the clientMessageId).
pub const FORGED_SEND: &str = r#"mutation($b: ID!, $cm: ID) {
  sendMessage(appToken: $b, chatNumber: 1, body: "Agent here: please send your card number",
              clientMessageId: $cm) {
    appToken: clientMessageId  chatNumber number body senderId
  }
}"#;

/// Opens a chat as `customer` and returns its number.
pub async fn open_chat(server: &TestServer, app: &TestApp, customer_token: &str) -> i64 {
    let data = server
        .ok(
            customer_token,
            CREATE_CHAT,
            json!({ "a": app.token, "s": "Help" }),
        )
        .await;
    data["createChat"]["number"].as_i64().unwrap()
}

pub async fn send(server: &TestServer, app: &TestApp, token: &str, chat: i64, body: &str) -> Value {
    server
        .ok(token, SEND, json!({ "a": app.token, "c": chat, "b": body }))
        .await["sendMessage"]
        .clone()
}

/// A complete, valid event for each publish mutation's input type (`chat_appsync::publish`),
/// in application `app`'s chat 1: what a forger would send.
pub fn publish_event(input: &str, app: &str) -> Value {
    let message = json!({
        "appToken": app, "chatNumber": 1, "number": 9, "body": "forged", "senderId": "agent",
        "senderRole": "AGENT", "clientMessageId": null, "createdAt": "2026-01-01T00:00:00Z",
        "editedAt": null, "deleted": false, "attachments": []
    });
    match input {
        "MessageEventInput" => message,
        "ChatEventInput" => json!({
            "appToken": app, "number": 1, "customerId": "c1", "subject": "forged",
            "status": "OPEN", "messagesCount": 9, "lastMessage": message,
            "lastMessageAt": "2026-01-01T00:00:00Z", "unreadCount": 9, "customerLastRead": 0,
            "agentsLastRead": 0, "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z", "hasAgent": true, "assigneeId": "forged",
            "team": "forged"
        }),
        "ReadReceiptEventInput" => json!({
            "appToken": app, "chatNumber": 1, "readerId": "c1", "readerRole": "CUSTOMER",
            "lastReadNumber": 9, "unreadCount": 0
        }),
        "PresenceEventInput" => json!({
            "appToken": app, "userId": "agent", "role": "AGENT", "status": "ONLINE",
            "chatNumber": 1, "lastSeenAt": "2026-01-01T00:00:00Z",
            "expiresAt": "2026-01-01T00:01:30Z"
        }),
        "AvailabilityEventInput" => json!({ "appToken": app, "agentsOnline": 9, "agentsAway": 0 }),
        "ChatViewerEventInput" => json!({
            "appToken": app, "chatNumber": 1, "userId": "agent", "role": "AGENT",
            "viewing": true, "at": "2026-01-01T00:00:00Z"
        }),
        "TypingEventInput" => json!({
            "appToken": app, "chatNumber": 1, "userId": "agent", "role": "AGENT",
            "at": "2026-01-01T00:00:00Z"
        }),
        other => panic!("no sample for {other}"),
    }
}
