//! `chat-bench-realtime`: subscription delivery latency and connection memory.
//!
//! Opens `--idle` connections that subscribe to a chat nobody writes to, then
//! `--subscribers` connections subscribed to one busy chat, then sends `--messages`
//! messages into the busy chat over HTTP, one every `--interval-ms`. For every event it
//! records the time from the send request leaving and from its acknowledgement to the
//! event's arrival. With `--server-pid`, it reads the server's RSS before and after the
//! idle connections to give memory per idle connection. `scripts/bench-realtime` runs it.

use std::collections::HashMap;
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
}

const SUBSCRIBE: &str =
    "subscription($a: ID!, $c: Int!) { onMessage(appToken: $a, chatNumber: $c) { number } }";

/// A connection subscribed to `chat`'s messages, once live.
async fn subscriber(
    ws_url: &str,
    token: &str,
    app: &str,
    chat: u32,
) -> Result<chat_bench::Socket, String> {
    chat_bench::subscribe(ws_url, token, SUBSCRIBE, json!({ "a": app, "c": chat })).await
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let base = args.url.trim_end_matches('/').to_owned();
    let url = format!("{base}/graphql");
    let ws_url = url.replacen("http", "ws", 1);
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
    for batch in batches.chunks(200) {
        let opened =
            futures::future::join_all(batch.iter().map(|_| subscriber(&ws_url, &agent, &app, 2)))
                .await;
        for socket in opened {
            idle.push(socket?);
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = args.server_pid.and_then(rss_kib);

    // Busy subscribers on chat 1; each reports (message number, arrival).
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(u64, Instant)>();
    let mut tasks = Vec::new();
    let batches: Vec<usize> = (0..args.subscribers).collect();
    for batch in batches.chunks(200) {
        let opened =
            futures::future::join_all(batch.iter().map(|_| subscriber(&ws_url, &agent, &app, 1)))
                .await;
        for socket in opened {
            tasks.push(chat_bench::record_arrivals(
                socket?,
                arrivals_tx.clone(),
                |data: &Value| data["onMessage"]["number"].as_u64(),
            ));
        }
    }
    drop(arrivals_tx);

    // The sender: one message per interval, recording when each left and was acknowledged.
    let sent: Arc<std::sync::Mutex<HashMap<u64, (Instant, Instant)>>> = Default::default();
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
    let mut from_send =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut from_ack =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let mut pending: Vec<(u64, Instant)> = Vec::new();
    let mut received = 0usize;
    let mut before_ack = 0usize;
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
            pending.retain(|(n, at)| match sent.get(n) {
                Some((started, acked)) => {
                    let _ = from_send
                        .record(at.saturating_duration_since(*started).as_micros().max(1) as u64);
                    if at < acked {
                        before_ack += 1;
                    }
                    let _ = from_ack
                        .record(at.saturating_duration_since(*acked).as_micros().max(1) as u64);
                    false
                }
                None => true, // its acknowledgement is still on the way
            });
        }
    }
    sender.await.map_err(|e| e.to_string())??;
    let sent = sent.lock().map_err(|_| "poisoned")?;
    for (n, at) in pending.drain(..) {
        if let Some((started, acked)) = sent.get(&n) {
            let _ =
                from_send.record(at.saturating_duration_since(*started).as_micros().max(1) as u64);
            let _ = from_ack.record(at.saturating_duration_since(*acked).as_micros().max(1) as u64);
        }
    }
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
            "arrived_before_ack_pct": (before_ack as f64 * 1000.0 / received.max(1) as f64).round() / 10.0,
            "idle_connect_seconds": (connect_secs * 10.0).round() / 10.0,
            "server_rss_mib_before": rss_before.map(|k| k / 1024),
            "server_rss_mib_with_idle": rss_idle.map(|k| k / 1024),
            "server_kib_per_idle_connection": per_idle,
        })
    );
    drop(idle);
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
