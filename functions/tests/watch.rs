//! The real function binaries under `cargo lambda watch` (the Lambda runtime API emulator
//! of cargo-lambda, installed into `.venv` by scripts/test), invoked with
//! `cargo lambda invoke --data-file` and the fixtures of `functions/fixtures/`, against the
//! DynamoDB emulator (moto) and, for the stream indexer, a stub OpenSearch (no OpenSearch
//! server can be installed here; the stub answers `_bulk` like OpenSearch, rejecting
//! documents whose body contains "REJECT").
//!
//! `CARGO_LAMBDA` names the cargo-lambda binary (default `.venv/bin/cargo-lambda`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_appsync::auth::mint_user_token;
use chat_domain::{Role, ServerKey};
use common::*;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "adm_watch_test";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo_lambda() -> PathBuf {
    let program = std::env::var_os("CARGO_LAMBDA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/cargo-lambda"));
    assert!(
        program.is_file(),
        "no cargo-lambda at {}: run scripts/test (it installs cargo-lambda into .venv) or set CARGO_LAMBDA",
        program.display()
    );
    program
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cargo lambda watch` serving every binary of this crate; stopped when dropped.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
    scratch: tempfile_dir::Dir,
}

impl Watch {
    /// `release`: the binaries are built as `cargo lambda build --release` builds them (as
    /// deployed; for the figures; x86_64 hosts).
    fn start(env: &[(&str, String)], release: bool) -> Watch {
        let port = free_port();
        let scratch = tempfile_dir::Dir::new();
        let log = scratch.path().join("watch.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(cargo_lambda());
        command
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            // Release builds share `cargo lambda build --release`'s artifacts (its target dir).
            .args(if release {
                &["--release", "--target", "x86_64-unknown-linux-gnu"][..]
            } else {
                &[]
            })
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // An env file, not `--env-var`: that flag splits its value at commas, so a value
        // such as RUST_LOG=info,chat_functions=debug would arrive cut in two.
        let env_file = scratch.path().join("functions.env");
        // Values double-quoted (JSON's escaping is dotenv's): `=` and `,` stay inside.
        let lines: String = env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", serde_json::to_string(v).unwrap()))
            .collect();
        std::fs::write(&env_file, lines).unwrap();
        command.arg("--env-file").arg(&env_file);
        // cargo lambda watch builds with `cargo run`. Without the variables cargo sets for
        // this test process, that build sees the environment of any other build: ring's
        // build script reruns when CARGO_MANIFEST_DIR or CARGO_PKG_* change, which would
        // rebuild TLS and all above it twice per test run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name.as_ref(),
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                command.env_remove(name.as_ref());
            }
        }
        let child = command.spawn().expect("start cargo lambda watch");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "cargo lambda watch did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Watch {
            child,
            port,
            log,
            scratch,
        }
    }

    /// `cargo lambda invoke <function> --data-file <fixture>`: the answer, or the error text.
    fn invoke(&self, function: &str, payload: &Value) -> Result<Value, String> {
        let file = self.scratch.path().join(format!("{function}-payload.json"));
        std::fs::write(&file, serde_json::to_vec(payload).unwrap()).unwrap();
        let output = Command::new(cargo_lambda())
            .args(["lambda", "invoke", function, "-A", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(&file)
            .args(["--output-format", "json"])
            .output()
            .expect("run cargo lambda invoke");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            serde_json::from_str(stdout.trim())
                .map_err(|e| format!("{function}: not JSON ({e}): {stdout}"))
        } else {
            Err(format!("{stdout}{stderr}"))
        }
    }

    /// [`Watch::invoke`] that must succeed: a failure panics with the watch log.
    fn answer(&self, function: &str, payload: &Value) -> Value {
        self.invoke(function, payload)
            .unwrap_or_else(|e| panic!("{function}: {e}\n--- watch log ---\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SIGTERM first so that cargo-lambda stops its function instances too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory removed when dropped (std only).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "chat-functions-watch-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A stub of the endpoints the functions call besides DynamoDB: OpenSearch's index creation
/// and `_bulk` (the indexer), and AppSync's GraphQL endpoint (the publish mutations).
#[derive(Clone, Default)]
struct EndpointStub {
    indexed: Arc<Mutex<Vec<Value>>>,
    /// Each publish request: its `authorization` header and its JSON body.
    published: Arc<Mutex<Vec<(String, Value)>>>,
}

impl EndpointStub {
    fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stub = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let stub = stub.clone();
                std::thread::spawn(move || stub.serve(stream));
            }
        });
        port
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0;
            let mut authorization = String::new();
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    } else if name.eq_ignore_ascii_case("authorization") {
                        authorization = value.trim().to_owned();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let (status, answer) = self.answer(&request_line, &authorization, &body);
            let answer = answer.to_string();
            write!(
                writer,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
        }
    }

    fn answer(&self, request_line: &str, authorization: &str, body: &[u8]) -> (u16, Value) {
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        match (method, path.split('?').next().unwrap_or("")) {
            ("POST", "/graphql") => {
                let request: Value = serde_json::from_slice(body).unwrap();
                let event = request["variables"]["event"].clone();
                self.published
                    .lock()
                    .unwrap()
                    .push((authorization.to_owned(), request));
                (200, json!({"data": {"published": event}}))
            }
            // The indexer's ensure: the index template, then the alias (found here, as
            // after a first start).
            ("PUT", "/_index_template/chat-messages") => (200, json!({"acknowledged": true})),
            ("GET", "/_alias/chat-messages") => (
                200,
                json!({"chat-messages-v2": {"aliases": {"chat-messages": {"is_write_index": true}}}}),
            ),
            ("POST", "/_bulk") => {
                let lines: Vec<Value> = String::from_utf8_lossy(body)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
                let items = lines
                    .chunks(2)
                    .map(|pair| {
                        let source = &pair[1];
                        if source["body"].as_str().is_some_and(|b| b.contains("REJECT")) {
                            json!({"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "rejected by the stub"}}})
                        } else {
                            self.indexed.lock().unwrap().push(source.clone());
                            json!({"index": {"status": 201, "result": "created"}})
                        }
                    })
                    .collect::<Vec<_>>();
                (200, json!({"took": 1, "errors": true, "items": items}))
            }
            _ => (404, json!({"error": "not stubbed", "status": 404})),
        }
    }
}

/// A Secrets Manager client for the emulator at `endpoint`.
fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("emulator", "emulator", None, None, "test"))
        .http_client(chat_dynamodb::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// cargo lambda watch with every function configured for a fresh table on the emulator
/// and for the stub search endpoint; and the table's name.
fn start_watch(stub: &EndpointStub, log_filter: &str, release: bool) -> (Watch, String) {
    let endpoint = chat_dynamodb::moto::endpoint();
    let table = chat_dynamodb::moto::unique_table_name("chat-watch");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(chat_dynamodb::create_table_if_missing(
            &chat_dynamodb::moto::client(None),
            &table,
        ))
        .unwrap();
    // The server key and the admin key are in Secrets Manager, as on AWS: the functions
    // read them at init.
    let (key_secret, admin_secret) = (format!("{table}/server-key"), format!("{table}/admin-key"));
    let secrets = secrets_client(&endpoint);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (name, value) in [
        (&key_secret, ServerKey::generate().encode()),
        (&admin_secret, ADMIN_KEY.to_owned()),
    ] {
        runtime
            .block_on(
                secrets
                    .create_secret()
                    .name(name)
                    .secret_string(value)
                    .send(),
            )
            .unwrap();
    }
    let stub_port = stub.start();
    let watch = Watch::start(
        &[
            ("CHAT_TABLE", table.clone()),
            ("CHAT_SERVER_KEY_SECRET", key_secret),
            ("CHAT_ADMIN_KEY_SECRET", admin_secret),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint.clone()),
            ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "emulator".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "emulator".to_owned()),
            ("OPENSEARCH_URL", format!("http://127.0.0.1:{stub_port}")),
            ("OPENSEARCH_AUTH", "none".to_owned()),
            (
                "CHAT_APPSYNC_URL",
                format!("http://127.0.0.1:{stub_port}/graphql"),
            ),
            ("RUST_LOG", log_filter.to_owned()),
        ],
        release,
    );
    (watch, table)
}

#[test]
fn the_function_binaries_answer_appsync_and_stream_events_under_cargo_lambda_watch() {
    // Given a fresh table on the emulator, a stub search endpoint and every function
    // binary served by cargo lambda watch.
    let stub = EndpointStub::default();
    let (watch, table) = start_watch(&stub, "info", false);
    let invoke = |function: &str, payload: Value| watch.answer(function, &payload);
    // A resolver answers an envelope: its data, here, with no error in it.
    let resolve = |function: &str, payload: Value| {
        let mut answer = watch.answer(function, &payload);
        assert!(answer.get("errorType").is_none(), "{function}: {answer}");
        answer["data"].take()
    };

    // The admin creates an application; its secret signs a customer's token.
    let created = resolve(
        "mutation-create-application",
        fixture("appsync-create-application.json", &[]),
    );
    let app = created["application"]["token"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let token = mint_user_token(&secret, &app, "cust-1", Role::Customer, now() + 600).unwrap();

    // The authorizer admits the token with its caller as resolverContext, for at most its
    // lifetime, and the admin key; it refuses a forged one.
    let admitted = invoke(
        "authorizer",
        fixture("authorizer-request.json", &[("TOKEN", &token)]),
    );
    assert_eq!(admitted["isAuthorized"], true);
    assert_eq!(
        admitted["resolverContext"],
        json!({"kind": "user", "app": app, "sub": "cust-1", "role": "CUSTOMER"})
    );
    assert!(admitted["ttlOverride"].as_i64().unwrap() <= 300);
    let admin = invoke(
        "authorizer",
        fixture("authorizer-request.json", &[("TOKEN", ADMIN_KEY)]),
    );
    assert_eq!(admin["resolverContext"], json!({"kind": "admin"}));
    let forged = invoke(
        "authorizer",
        fixture(
            "authorizer-request.json",
            &[("TOKEN", &format!("{token}x"))],
        ),
    );
    assert_eq!(forged["isAuthorized"], false);

    // The customer opens a chat and writes (identity from the authorizer's context).
    let values = [("APP", app.as_str())];
    let chat = resolve(
        "mutation-create-chat",
        fixture("appsync-create-chat.json", &values),
    );
    assert_eq!(chat["number"], 1);
    let sent = resolve(
        "mutation-send-message",
        fixture("appsync-send-message.json", &values),
    );
    assert_eq!(sent["number"], 1);
    assert_eq!(sent["body"], "Where is order 1234?");
    assert_eq!(sent["senderRole"], "CUSTOMER");

    // Each write published its event through its own publish mutation, signed with the
    // function's credentials for AppSync: the whole object, with the fixed document.
    let published = stub.published.lock().unwrap().clone();
    let mutations: Vec<&str> = published
        .iter()
        .map(|(_, request)| request["query"].as_str().unwrap())
        .collect();
    assert_eq!(
        mutations,
        [
            chat_appsync::publish::document("publishChat").unwrap(),
            chat_appsync::publish::document("publishMessageSent").unwrap()
        ]
    );
    let (authorization, request) = &published[1];
    assert_eq!(request["variables"]["event"], sent);
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=emulator/")
            && authorization.contains("/us-east-1/appsync/aws4_request")
            && authorization.contains("Signature="),
        "{authorization}"
    );

    // A batch is answered item by item, in order.
    let batch = invoke("query-chat", fixture("appsync-chat-batch.json", &values));
    assert_eq!(batch[0]["data"]["number"], 1);
    assert_eq!(batch[1], json!({"data": null}));
    assert_eq!(batch[2]["errorType"], "BadInput");

    // A single event's client error is a successful invocation whose envelope carries the
    // error (the response template raises it): Lambda counts no error for it.
    let refused = watch.answer(
        "mutation-create-application",
        &fixture("appsync-create-application-as-customer.json", &values),
    );
    assert_eq!(
        (&refused["data"], &refused["errorType"]),
        (&Value::Null, &json!("Forbidden")),
        "a customer cannot create applications: {refused}"
    );

    // Each resolver invocation wrote its metrics (EMF) to stdout: the refused
    // createApplication as a client error by type, not a fault.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !watch.log().contains(r#""ErrorType":"Forbidden""#) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = watch.log();
    let documents = json_lines(&log);
    let emf = |operation: &str| -> Vec<&Value> {
        documents
            .iter()
            .filter(|d| d.get("_aws").is_some() && d["Operation"] == operation)
            .collect()
    };
    let sends = emf("Mutation.sendMessage");
    assert_eq!(sends.len(), 1, "{log}");
    assert_eq!(
        (&sends[0]["Requests"], &sends[0]["Fault"]),
        (&json!(1), &json!(0))
    );
    assert!(sends[0]["Latency"].as_f64().unwrap() > 0.0);
    assert!(!sends[0]["requestId"].as_str().unwrap().is_empty());
    let creates = emf("Mutation.createApplication");
    let counted = |metric: &str| {
        creates
            .iter()
            .filter_map(|d| d[metric].as_u64())
            .sum::<u64>()
    };
    assert_eq!(counted("Fault"), 0, "{creates:?}");
    assert!(
        creates
            .iter()
            .any(|d| d["ErrorType"] == "Forbidden" && d["ClientError"] == 1),
        "{creates:?}"
    );
    // The functions' logs are JSON lines; those written during an invocation carry its
    // request id.
    assert!(
        documents
            .iter()
            .any(|d| d["message"] == "initialized" && d["function"] == "mutation-send-message"),
        "{log}"
    );
    let denied = documents
        .iter()
        .find(|d| d["message"] == "denied")
        .unwrap_or_else(|| panic!("no `denied` log line for the forged token:\n{log}"));
    assert!(
        !denied["span"]["requestId"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{denied}"
    );

    // The stream indexer indexes the message, skips the chat item and reports the record
    // the index rejected and the malformed one.
    let response = invoke(
        "stream-indexer",
        fixture("dynamodb-stream-batch.json", &[("APP", "app_fixture")]),
    );
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "400"}, {"itemIdentifier": "300"}]})
    );
    let indexed = stub.indexed.lock().unwrap().clone();
    assert_eq!(indexed.len(), 1);
    assert_eq!(indexed[0]["body"], "Where is order 1234?");

    // The customer's heartbeat holds its presence and publishes the transition: its
    // presence, and that it looks at chat 1.
    stub.published.lock().unwrap().clear();
    let presence = resolve(
        "mutation-heartbeat",
        fixture("appsync-heartbeat.json", &values),
    );
    assert_eq!(
        (&presence["status"], &presence["chatNumber"]),
        (&json!("ONLINE"), &json!(1))
    );
    // (A function publishes its events concurrently: in no particular order.)
    let mut published: Vec<String> = stub
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|(_, request)| request["query"].as_str().unwrap().to_owned())
        .collect();
    published.sort();
    let mut expected = [
        chat_appsync::publish::document("publishPresence").unwrap(),
        chat_appsync::publish::document("publishChatViewer").unwrap(),
    ];
    expected.sort();
    assert_eq!(published, expected);

    // Typing is published and never stored; a second call within 2 s is folded (null).
    stub.published.lock().unwrap().clear();
    let typing = resolve("mutation-typing", fixture("appsync-typing.json", &values));
    assert_eq!(
        (&typing["userId"], &typing["chatNumber"], &typing["role"]),
        (&json!("cust-1"), &json!(1), &json!("CUSTOMER"))
    );
    assert_eq!(
        resolve("mutation-typing", fixture("appsync-typing.json", &values)),
        Value::Null
    );
    let published = stub.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].1["variables"]["event"], typing);

    // The scheduled sweeper ends a lease that expired (an agent who vanished) and
    // announces it: OFFLINE, and the availability it moved; the live lease stays.
    stub.published.lock().unwrap().clear();
    let store = chat_dynamodb::DynamoStore::new(chat_dynamodb::moto::client(None), table);
    let expired = chat_domain::Presence {
        app: chat_domain::AppToken::parse(&app).unwrap(),
        user_id: chat_domain::UserId::parse("agent-gone").unwrap(),
        role: Role::Agent,
        status: chat_domain::PresenceStatus::Online,
        chat: None,
        last_seen_at: chat_domain::Timestamp(1_000),
        expires_at: chat_domain::Timestamp(91_000),
        version: 1,
    };
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(chat_domain::PresenceStore::put_presence(
            &store, &expired, None,
        ))
        .unwrap();
    let swept = invoke("presence-sweeper", json!({}));
    assert_eq!(swept, json!({"found": 1, "published": 2}));
    let published = stub.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2, "{published:?}");
    let event_of = |mutation: &str| {
        published
            .iter()
            .find(|(_, request)| {
                request["query"].as_str() == chat_appsync::publish::document(mutation).as_deref()
            })
            .map(|(_, request)| request["variables"]["event"].clone())
            .unwrap_or_else(|| panic!("no {mutation}: {published:?}"))
    };
    let offline = event_of("publishPresence");
    assert_eq!(
        (&offline["userId"], &offline["status"]),
        (&json!("agent-gone"), &json!("OFFLINE"))
    );
    assert_eq!(
        event_of("publishAvailability"),
        json!({"appToken": app, "agentsOnline": 0, "agentsAway": 0})
    );
    assert_eq!(
        invoke("presence-sweeper", json!({})),
        json!({"found": 0, "published": 0})
    );

    // Every function logged its init time (docs/deploy.md reads them with scripts/bench-lambda).
    let log = watch.log();
    for function in ["authorizer", "mutation-send-message", "stream-indexer"] {
        assert!(
            log.lines()
                .any(|l| l.contains("initialized") && l.contains(function)),
            "{function} did not log its init:\n{log}"
        );
    }
}

/// The lines of `log` that are JSON objects (the functions' logs and metrics; cargo lambda
/// watch writes its own lines too).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| line.find('{').map(|at| &line[at..]))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The figures of docs/deploy.md (`scripts/bench-lambda` runs this): every function's init
/// time under cargo lambda watch (release builds, measured by the function from the start
/// of `main` to the hand-over to the runtime) and the warm handler time of sendMessage
/// against the emulator. Prints a Markdown table.
#[test]
#[ignore = "a benchmark: scripts/bench-lambda"]
fn bench_init_and_warm_send_message() {
    let stub = EndpointStub::default();
    let (watch, _) = start_watch(&stub, "info,chat_functions=debug", true);
    let invoke = |function: &str, payload: Value| watch.answer(function, &payload);
    // A resolver answers an envelope: its data, here, with no error in it.
    let resolve = |function: &str, payload: Value| {
        let mut answer = watch.answer(function, &payload);
        assert!(answer.get("errorType").is_none(), "{function}: {answer}");
        answer["data"].take()
    };
    let created = resolve(
        "mutation-create-application",
        fixture("appsync-create-application.json", &[]),
    );
    let app = created["application"]["token"].as_str().unwrap().to_owned();
    let values = [("APP", app.as_str())];
    resolve(
        "mutation-create-chat",
        fixture("appsync-create-chat.json", &values),
    );
    let sends: usize = std::env::var("BENCH_SENDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    for i in 0..sends {
        let mut event = fixture("appsync-send-message.json", &values);
        event["arguments"]["clientMessageId"] = json!(format!("bench-{i}"));
        invoke("mutation-send-message", event);
    }
    // Client errors are answers, not failed invocations: count the invocations that fail
    // among refused requests (a customer creating an application: Forbidden).
    let refusals: usize = std::env::var("BENCH_CLIENT_ERRORS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let refused = fixture("appsync-create-application-as-customer.json", &values);
    let mut failed_invocations = 0;
    for _ in 0..refusals {
        match watch.invoke("mutation-create-application", &refused) {
            Ok(answer) => assert_eq!(answer["errorType"], "Forbidden", "{answer}"),
            Err(_) => failed_invocations += 1,
        }
    }
    println!(
        "Lambda errors per 1,000 client errors: {} ({failed_invocations} of {refusals} \
         refused requests failed their invocation)",
        failed_invocations * 1000 / refusals.max(1)
    );
    // Every other function once (an empty event is enough to start it).
    let bins = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin")).unwrap();
    let mut functions: Vec<String> = bins
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    functions.sort();
    let init_ms = |log: &str, function: &str| {
        json_lines(log)
            .iter()
            .filter(|d| d["message"] == "initialized" && d["function"] == function)
            .find_map(|d| d["init_ms"].as_str()?.parse::<f64>().ok())
    };
    for function in &functions {
        if init_ms(&watch.log(), function).is_none() {
            let payload = if function == "stream-indexer" {
                json!({"Records": []})
            } else {
                json!({})
            };
            let _ = watch.invoke(function, &payload);
        }
    }
    let log = watch.log();
    println!("| function | init (ms) |\n|---|---|");
    for function in &functions {
        let init = init_ms(&log, function);
        println!(
            "| {function} | {} |",
            init.map_or("?".to_owned(), |ms| format!("{ms:.2}"))
        );
    }
    let mut handler: Vec<f64> = json_lines(&log)
        .iter()
        .filter(|d| d["message"] == "handled")
        .filter_map(|d| d["handler_ms"].as_str()?.parse().ok())
        .collect();
    // The sends are the only resolver invocations after the first two.
    handler.drain(..2.min(handler.len()));
    handler.truncate(sends);
    assert!(
        !handler.is_empty(),
        "no `handled ... handler_ms` lines in the watch log (RUST_LOG must reach the \
         functions at debug):\n{}",
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );
    handler.sort_by(f64::total_cmp);
    let at = |q: f64| handler[((handler.len() - 1) as f64 * q).round() as usize];
    println!(
        "\nsendMessage warm handler time over {} sends (ms): p50 {:.2}, p90 {:.2}, p99 {:.2}, max {:.2}",
        handler.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}
