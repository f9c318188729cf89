//! `chat-bench-realtime`: subscription delivery latency and connection memory.
//!
//! Opens `--idle` connections that subscribe to a chat nobody writes to, then
//! `--subscribers` connections subscribed to one busy chat, then sends `--messages`
//! messages into the busy chat over HTTP, one every `--interval-ms`. For every event it
//! records the time from the send request leaving and from its acknowledgement to the
//! event's arrival. With `--server-pid`, it reads the server's RSS before and after the
//! idle connections to give memory per idle connection. `scripts/bench-realtime` runs it.
//!
//! Many connections: each connection is a file descriptor in this process and in the
//! server, so both need `RLIMIT_NOFILE` above the number of connections; this raises it
//! with `prlimit` where it may (as root) and says what to do where it may not. One local
//! address has about 28,000 ephemeral ports (`net.ipv4.ip_local_port_range`) towards one
//! server port, so on loopback the connections are spread over source addresses
//! 127.0.0.2, 127.0.0.3 ... (all of 127.0.0.0/8 is loopback), at most
//! [`PER_SOURCE_ADDRESS`] each.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_bench::{BenchApp, gql, rss_kib};
use chat_domain::Role;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    url: String,
    #[arg(long, env = "CHAT_ADMIN_KEY")]
    admin_key: String,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 0)]
    idle: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long, default_value = "")]
    label: String,
    /// Connections opened from one local address, at most: beyond, they come from
    /// 127.0.0.2, 127.0.0.3 ... (a loopback server only).
    #[arg(long, default_value_t = PER_SOURCE_ADDRESS)]
    per_source_address: usize,
    /// How long opening all the connections may take, in seconds.
    #[arg(long, default_value_t = 600)]
    connect_timeout_secs: u64,
}

/// Connections opened from one local address by default, at most (its ephemeral ports,
/// 28,232 by default, are what bounds it).
const PER_SOURCE_ADDRESS: usize = 20_000;
/// Connections being opened at once.
const CONNECTING_AT_ONCE: usize = 200;
/// File descriptors a process needs besides its connections.
const SPARE_FILES: u64 = 1_000;

/// Makes sure `pid` (`"self"` for this process) may hold `needed` open files, raising its
/// limit with `prlimit` (which needs root or `CAP_SYS_RESOURCE` above the hard limit).
fn ensure_open_files(pid: &str, who: &str, needed: u64) -> Result<(), String> {
    let Some(limit) = chat_bench::open_files_limit(pid) else {
        return Ok(()); // no /proc: nothing to check
    };
    if limit >= needed {
        return Ok(());
    }
    let pid_number = match pid {
        "self" => std::process::id().to_string(),
        pid => pid.to_owned(),
    };
    let raised = std::process::Command::new("prlimit")
        .args(["--pid", &pid_number, &format!("--nofile={needed}:{needed}")])
        .status()
        .is_ok_and(|s| s.success());
    match chat_bench::open_files_limit(pid) {
        Some(now) if raised && now >= needed => Ok(()),
        _ => Err(format!(
            "{who} may open {limit} files and needs {needed}: raise its limit \
             (`ulimit -n {needed}` in the shell that starts it, which above `ulimit -Hn` \
             needs root with CAP_SYS_RESOURCE; LimitNOFILE={needed} for a systemd service; \
             `docker run --ulimit nofile={needed}` in a container), or open fewer connections"
        )),
    }
}

/// The local address the `i`th connection comes from: `None` (the system's choice) when
/// one address has ports enough, else 127.0.0.2, 127.0.0.3 ... on a loopback server.
fn source_address(args: &Args, i: usize, server_is_loopback: bool) -> Option<IpAddr> {
    let per_source = args.per_source_address.max(1);
    if args.idle + args.subscribers <= per_source || !server_is_loopback {
        return None;
    }
    let n = u32::try_from(2 + i / per_source).ok()?;
    Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n)))
}

const SUBSCRIBE: &str =
    "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number } }";

/// A connection subscribed to `chat`'s messages, once live.
async fn subscriber(
    source: Option<IpAddr>,
    ws_url: &str,
    token: &str,
    app: &str,
    chat: u32,
) -> Result<chat_bench::Socket, String> {
    let variables = json!({ "a": app, "c": chat });
    match source {
        Some(source) => {
            chat_bench::subscribe_from(source, ws_url, token, SUBSCRIBE, variables).await
        }
        None => chat_bench::subscribe(ws_url, token, SUBSCRIBE, variables).await,
    }
}

fn connect_timeout(args: &Args, opened: usize) -> String {
    format!(
        "{opened} of {} connections open after {} s (--connect-timeout-secs)",
        args.idle + args.subscribers,
        args.connect_timeout_secs
    )
}

/// Delivery latency: over all events, and per message (its deliveries to every subscriber).
struct Latency {
    from_send: Histogram<u64>,
    from_ack: Histogram<u64>,
    per_message: HashMap<u64, Histogram<u64>>,
    before_ack: usize,
}

type Sent = HashMap<u64, (Instant, Instant)>;

impl Latency {
    fn new() -> Result<Latency, String> {
        let histogram = || Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string());
        Ok(Latency {
            from_send: histogram()?,
            from_ack: histogram()?,
            per_message: HashMap::new(),
            before_ack: 0,
        })
    }

    /// Records message `n`'s arrival at one subscriber; `false` while its send is not
    /// acknowledged yet.
    fn record(&mut self, sent: &Sent, n: u64, at: Instant) -> bool {
        let Some((started, acked)) = sent.get(&n) else {
            return false;
        };
        let micros =
            |since: &Instant| at.saturating_duration_since(*since).as_micros().max(1) as u64;
        let _ = self.from_send.record(micros(started));
        let _ = self.from_ack.record(micros(acked));
        if at < *acked {
            self.before_ack += 1;
        }
        let message = self.per_message.entry(n).or_insert_with(|| {
            Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds that hdrhistogram takes")
        });
        let _ = message.record(micros(started));
        true
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/').to_owned();
    let url = format!("{base}/graphql");
    let ws_url = url.replacen("http", "ws", 1);
    let total = args.idle + args.subscribers;
    let needed = total as u64 + SPARE_FILES;
    ensure_open_files("self", "this load generator", needed)?;
    if let Some(pid) = args.server_pid {
        ensure_open_files(&pid.to_string(), "the server", needed)?;
    }
    let loopback = reqwest::Url::parse(&base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()));
    if total > args.per_source_address && !loopback {
        return Err(format!(
            "more than {} connections need a loopback server (they come from several 127.x addresses)",
            args.per_source_address
        ));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(args.connect_timeout_secs);
    let http = chat_bench::http_client(usize::MAX);
    let bench = BenchApp::create(&http, &url, &args.admin_key, "realtime bench").await?;
    let app = bench.token.clone();
    let agent = bench.user("bench-agent", Role::Agent);
    for customer in ["busy", "quiet"] {
        gql(
            &http,
            &url,
            &agent,
            "mutation($a: ID!, $c: ID!) { createChat(appToken: $a, customerId: $c) { number } }",
            json!({ "a": app, "c": customer }),
        )
        .await?;
    }

    // Idle connections: subscribed to chat 2, where nothing happens.
    let rss_before = args.server_pid.and_then(rss_kib);
    let mut idle = Vec::with_capacity(args.idle);
    let connect_started = Instant::now();
    let batches: Vec<usize> = (0..args.idle).collect();
    for batch in batches.chunks(CONNECTING_AT_ONCE) {
        let opened = futures::future::join_all(batch.iter().map(|&i| {
            let source = source_address(&args, i, loopback);
            subscriber(source, &ws_url, &agent, &app, 2)
        }));
        let opened = tokio::time::timeout_at(connect_deadline.into(), opened)
            .await
            .map_err(|_| connect_timeout(&args, idle.len()))?;
        for socket in opened {
            idle.push(socket.map_err(|e| format!("idle connection {}: {e}", idle.len()))?);
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    // Let the server settle (tasks that served the upgrades end, allocator caches) first.
    tokio::time::sleep(Duration::from_millis(500 + args.idle as u64 / 50)).await;
    let rss_idle = args.server_pid.and_then(rss_kib);

    // Busy subscribers on chat 1; each reports (message number, arrival).
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(u64, Instant)>();
    let mut tasks = Vec::new();
    let batches: Vec<usize> = (args.idle..total).collect();
    for batch in batches.chunks(CONNECTING_AT_ONCE) {
        let opened = futures::future::join_all(batch.iter().map(|&i| {
            let source = source_address(&args, i, loopback);
            subscriber(source, &ws_url, &agent, &app, 1)
        }));
        let opened = tokio::time::timeout_at(connect_deadline.into(), opened)
            .await
            .map_err(|_| connect_timeout(&args, args.idle + tasks.len()))?;
        for socket in opened {
            tasks.push(chat_bench::record_arrivals(
                socket?,
                arrivals_tx.clone(),
                |data: &Value| data["onMessage"]["number"].as_u64(),
            ));
        }
    }
    drop(arrivals_tx);

    // CPU time of the delivery phase (clock ticks, 100 a second on Linux).
    let server_ticks = || {
        args.server_pid
            .and_then(|p| chat_bench::cpu_ticks(&p.to_string()))
    };
    let cpu_before = (server_ticks(), chat_bench::cpu_ticks("self"));

    // The sender: one message per interval, recording when each left and was acknowledged.
    let sent: Arc<std::sync::Mutex<Sent>> = Default::default();
    let sender = {
        let (http, url, agent, app, sent) = (
            http.clone(),
            url.clone(),
            agent.clone(),
            app.clone(),
            sent.clone(),
        );
        let (messages, interval) = (args.messages, Duration::from_millis(args.interval_ms));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for i in 0..messages {
                tick.tick().await;
                let started = Instant::now();
                let data = gql(&http, &url, &agent, "mutation($a: ID!, $b: String!) { sendMessage(appToken: $a, chatNumber: 1, body: $b) { appToken chatNumber number } }", json!({ "a": app, "b": format!("m{i}") })).await?;
                let acked = Instant::now();
                let number = data["sendMessage"]["number"].as_u64().ok_or("no number")?;
                sent.lock()
                    .map_err(|_| "poisoned")?
                    .insert(number, (started, acked));
            }
            Ok::<(), String>(())
        })
    };

    let expected = args.subscribers * args.messages;
    let mut latency = Latency::new()?;
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let mut received = 0usize;
    let deadline = Instant::now()
        + Duration::from_millis(args.interval_ms * args.messages as u64)
        + Duration::from_secs(30);
    while received < expected {
        let Ok(Some(arrival)) = tokio::time::timeout_at(deadline.into(), arrivals.recv()).await
        else {
            break;
        };
        received += 1;
        pending.push(arrival);
        if pending.len() >= 1000 || received == expected {
            let sent = sent.lock().map_err(|_| "poisoned")?;
            // Those whose acknowledgement is still on the way stay pending.
            pending.retain(|&(n, at)| !latency.record(&sent, n, at));
        }
    }
    let cpu_after = (server_ticks(), chat_bench::cpu_ticks("self"));
    sender.await.map_err(|e| e.to_string())??;
    let sent = sent.lock().map_err(|_| "poisoned")?;
    for (n, at) in pending.drain(..) {
        latency.record(&sent, n, at);
    }
    let Latency {
        from_send,
        from_ack,
        per_message,
        before_ack,
    } = latency;
    // One message to every subscriber: the p99 of each message's deliveries.
    let message_p99s: Vec<f64> = per_message
        .values()
        .map(|h| h.value_at_quantile(0.99) as f64 / 1000.0)
        .collect();
    // Microseconds of CPU per event delivered, from clock ticks of 10 ms.
    let per_event = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if received > 0 => {
            Some((a.saturating_sub(b) as f64 * 10_000.0 / received as f64 * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let per_idle = match (rss_before, rss_idle) {
        (Some(a), Some(b)) if args.idle > 0 => Some(
            ((b.saturating_sub(a)) as f64 * 1024.0 / args.idle as f64 / 1024.0 * 10.0).round()
                / 10.0,
        ),
        _ => None,
    };
    println!(
        "{}",
        json!({
            "label": args.label,
            "subscribers": args.subscribers,
            "idle_connections": args.idle,
            "messages": args.messages,
            "events_expected": expected,
            "events_received": received,
            "from_send_p50_ms": ms(&from_send, 0.5),
            "from_send_p99_ms": ms(&from_send, 0.99),
            "from_send_max_ms": from_send.max() as f64 / 1000.0,
            "from_ack_p50_ms": ms(&from_ack, 0.5),
            "from_ack_p99_ms": ms(&from_ack, 0.99),
            "one_message_from_send_p99_ms_min": message_p99s.iter().copied().reduce(f64::min),
            "one_message_from_send_p99_ms_max": message_p99s.iter().copied().reduce(f64::max),
            "arrived_before_ack_pct": (before_ack as f64 * 1000.0 / received.max(1) as f64).round() / 10.0,
            "server_cpu_us_per_event": per_event(cpu_before.0, cpu_after.0),
            "bench_cpu_us_per_event": per_event(cpu_before.1, cpu_after.1),
            "idle_connect_seconds": (connect_secs * 10.0).round() / 10.0,
            "server_rss_mib_before": rss_before.map(|k| k / 1024),
            "server_rss_mib_with_idle": rss_idle.map(|k| k / 1024),
            "server_kib_per_idle_connection": per_idle,
        })
    );
    drop(idle);
    drop(sent);
    for task in tasks {
        task.abort();
    }
    if received < expected {
        return Err(format!(
            "{} of {expected} events did not arrive",
            expected - received
        ));
    }
    Ok(())
}
