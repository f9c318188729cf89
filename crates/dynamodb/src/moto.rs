//! A DynamoDB emulator for tests: one `moto_server` per test process, started on first
//! use on a free loopback port, each test on a table of its own.
//!
//! - `DYNAMODB_ENDPOINT` set: that endpoint is used and nothing is started.
//! - Otherwise `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server` (installed by
//!   `scripts/test`) is started as `moto_server -H 127.0.0.1 -p <port>`, with
//!   `moto/sitecustomize.py` on its `PYTHONPATH`: it serializes moto's request handling
//!   (moto's transactions are not atomic under concurrency) and makes the server exit when
//!   its stdin closes, which happens when this process ends, however it ends.
//! - Neither available: the test fails, saying to run `scripts/test`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{Client, DynamoStore, RequestCounter, create_table_if_missing, emulator_client};

/// How long moto may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Running {
    endpoint: String,
    // Held until the process exits: closing stdin is moto's signal to exit.
    child: Mutex<Option<(Child, ChildStdin)>>,
}

/// At a normal exit, stop moto and reap it (after a crash it still exits, on EOF).
extern "C" fn stop_at_exit() {
    if let Some(Ok(running)) = EMULATOR.get()
        && let Ok(mut child) = running.child.lock()
        && let Some((mut child, stdin)) = child.take()
    {
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
    }
}

static EMULATOR: OnceLock<Result<Running, String>> = OnceLock::new();

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The emulator's endpoint URL, starting it on first use. Panics (failing the test) with
/// what to do when no emulator is available.
pub fn endpoint() -> String {
    if let Ok(url) = std::env::var("DYNAMODB_ENDPOINT")
        && !url.is_empty()
    {
        return url;
    }
    match EMULATOR.get_or_init(start) {
        Ok(running) => running.endpoint.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn start() -> Result<Running, String> {
    let program = std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/moto_server"));
    if !program.is_file() {
        return Err(format!(
            "no DynamoDB emulator: {} does not exist. Run scripts/test (it installs moto \
             into .venv), or set MOTO_SERVER to a moto_server, or DYNAMODB_ENDPOINT to a \
             running emulator.",
            program.display()
        ));
    }
    let port = free_port().map_err(|e| format!("no free port for moto_server: {e}"))?;
    let log = std::env::temp_dir().join(format!("chat-moto-{}-{port}.log", std::process::id()));
    let log_file =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let support = Path::new(env!("CARGO_MANIFEST_DIR")).join("moto");
    let python_path = match std::env::var_os("PYTHONPATH") {
        Some(existing) if !existing.is_empty() => {
            let mut joined = support.into_os_string();
            joined.push(":");
            joined.push(existing);
            joined
        }
        _ => support.into_os_string(),
    };
    let mut child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("PYTHONPATH", python_path)
        .env("CHAT_MOTO_EXIT_WITH_PARENT", "1")
        .stdin(Stdio::piped())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if answers(address) {
            break;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!(
                "moto_server ({}) did not start on port {port} ({}):\n{output}",
                program.display(),
                exited.map_or_else(|| "timed out".to_owned(), |s| s.to_string()),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&log);
    // SAFETY: registers a plain function; it only touches the static above.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    Ok(Running {
        endpoint: format!("http://{address}"),
        child: Mutex::new(Some((child, stdin))),
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether an HTTP server answers at `address`.
fn answers(address: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

/// A client for the emulator (dummy credentials and region; nothing from the environment).
pub fn client(counter: Option<RequestCounter>) -> Client {
    emulator_client(&endpoint(), counter)
}

/// The shared configuration of other services' clients on the emulator (S3, SQS ...):
/// dummy credentials and region, nothing from the environment.
pub fn sdk_config() -> aws_config::SdkConfig {
    use aws_sdk_dynamodb::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(crate::http_client())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "emulator", "emulator", None, None, "emulator",
        )))
        .build()
}

/// A table name no other test (of this or another process) uses.
pub fn unique_table_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a new, empty table of its own, and the counter of its requests.
pub async fn fresh_store() -> (DynamoStore, RequestCounter) {
    let counter = RequestCounter::new();
    let client = client(Some(counter.clone()));
    let table = unique_table_name("chat-test");
    create_table_if_missing(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("create table {table}: {e:?}"));
    counter.take();
    (DynamoStore::new(client, table), counter)
}

/// `n` stores on one fresh table, each with a client of its own as if in a process of its
/// own, and the first (for raw access to the table).
pub async fn stores_on_one_table(
    n: usize,
) -> (Vec<std::sync::Arc<dyn chat_domain::ChatStore>>, DynamoStore) {
    let (first, _) = fresh_store().await;
    let stores = (0..n)
        .map(|_| {
            std::sync::Arc::new(DynamoStore::new(client(None), first.table_name()))
                as std::sync::Arc<dyn chat_domain::ChatStore>
        })
        .collect();
    (stores, first)
}
