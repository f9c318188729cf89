//! What the load generators share: a GraphQL call over HTTP, a fresh application with
//! tokens for its users, a graphql-transport-ws subscription, and the server process's
//! memory and CPU time.

use chat_domain::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client for the benchmarks. In a workspace-wide build reqwest has rustls without a
/// crypto provider (chat-opensearch asks for that), so the ring provider goes in first.
pub fn http_client(max_idle_per_host: usize) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(max_idle_per_host)
        .build()
        .expect("an HTTP client")
}

/// POSTs a GraphQL request to `graphql_url`; any error (HTTP or GraphQL) is an `Err`.
pub async fn gql(
    client: &reqwest::Client,
    graphql_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value, String> {
    let response = client
        .post(graphql_url)
        .header("Authorization", token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() || body.get("errors").is_some() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["data"].clone())
}

/// An application created for a benchmark run, able to mint user tokens.
pub struct BenchApp {
    pub token: String,
    secret: String,
    expires_at: u64,
}

impl BenchApp {
    pub async fn create(
        client: &reqwest::Client,
        graphql_url: &str,
        admin_key: &str,
        name: &str,
    ) -> Result<BenchApp, String> {
        let created = gql(
            client,
            graphql_url,
            admin_key,
            "mutation($n: String!) { createApplication(name: $n) { application { token } secret } }",
            json!({ "n": name }),
        )
        .await?;
        let field = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("unexpected answer: {created}"))
        };
        let expires_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs()
            + 3600;
        Ok(BenchApp {
            token: field(&created["createApplication"]["application"]["token"])?,
            secret: field(&created["createApplication"]["secret"])?,
            expires_at,
        })
    }

    pub fn user(&self, sub: &str, role: Role) -> String {
        chat_appsync::auth::mint_user_token(&self.secret, &self.token, sub, role, self.expires_at)
            .expect("HS256 signing does not fail")
    }
}

/// A graphql-transport-ws connection of a benchmark.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `ws_url`, initializes with `token` and subscribes (operation id `s`); returns
/// once the subscription is live (a query sent after it on the same socket has answered).
pub async fn subscribe(
    ws_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Socket, String> {
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    // A small read buffer, as browsers and mobile clients have: tungstenite's default
    // (128 KiB, zeroed on every read) made this client, not the server, the bottleneck.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
        .await
        .map_err(|e| e.to_string())?;
    start_subscription(socket, token, query, variables).await
}

/// [`subscribe`] over a TCP connection made from the local address `source` (bound before
/// it connects): one client can then open more connections to one server port than one
/// address's ephemeral ports allow, e.g. from 127.0.0.2, 127.0.0.3 ... on loopback.
pub async fn subscribe_from(
    source: std::net::IpAddr,
    ws_url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Socket, String> {
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or("no host in the URL")?
        .trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(80);
    let server = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| e.to_string())?
        .find(|a| a.is_ipv4() == source.is_ipv4())
        .ok_or_else(|| format!("{host} has no address of {source}'s family"))?;
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    socket
        .bind(std::net::SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        request,
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
        Some(config),
    )
    .await
    .map_err(|e| e.to_string())?;
    start_subscription(socket, token, query, variables).await
}

/// Initializes a connected socket with `token` and subscribes (operation id `s`); returns
/// once the subscription is live.
async fn start_subscription(
    mut socket: Socket,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Socket, String> {
    let frames = [
        json!({ "type": "connection_init", "payload": { "Authorization": token } }),
        json!({ "type": "subscribe", "id": "s", "payload": { "query": query, "variables": variables } }),
        json!({ "type": "subscribe", "id": "fence", "payload": { "query": "{ __typename }" } }),
    ];
    for frame in frames {
        socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    while let Some(frame) = socket.next().await {
        if let Message::Text(text) = frame.map_err(|e| e.to_string())? {
            let m: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            match (m["type"].as_str(), m["id"].as_str()) {
                (Some("complete"), Some("fence")) => return Ok(socket),
                (Some("error"), _) => return Err(m.to_string()),
                _ => {}
            }
        }
    }
    Err("closed before the subscription was live".into())
}

/// Reads `socket`'s events until it closes, sending each one's key (what `key_of` finds in
/// the event's `data`) with the moment it arrived: how a benchmark times delivery.
pub fn record_arrivals<K, F>(
    mut socket: Socket,
    arrivals: tokio::sync::mpsc::UnboundedSender<(K, std::time::Instant)>,
    key_of: F,
) -> tokio::task::JoinHandle<()>
where
    K: Send + 'static,
    F: Fn(&Value) -> Option<K> + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(text) = frame {
                let now = std::time::Instant::now();
                if let Ok(m) = serde_json::from_str::<Value>(&text)
                    && let Some(key) = key_of(&m["payload"]["data"])
                {
                    let _ = arrivals.send((key, now));
                }
            }
        }
    })
}

/// A process's resident memory (KiB), from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A process's limit on open files (its soft `RLIMIT_NOFILE`), from `/proc/<pid>/limits`
/// (`"self"` for this process).
pub fn open_files_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A process's CPU time so far, user + system, in clock ticks (all its threads), from
/// `/proc/<pid>/stat` (`"self"` for this process). Ticks per second: `getconf CLK_TCK`.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let mut fields = stat.get(stat.rfind(')')? + 2..)?.split_whitespace();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}
