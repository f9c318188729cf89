//! `chat-bench`: drives a running dev server with concurrent clients over HTTP and reports
//! throughput and latency percentiles. `scripts/bench` starts a fresh server and runs it.
//!
//! Each client is a customer with a keep-alive connection sending into its own chat (or,
//! with `--chats 1`, everyone into one chat: the hot-chat case), one request at a time.

use std::time::{Duration, Instant};

use chat_bench::{BenchApp, gql};
use chat_domain::Role;
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Concurrent sendMessage load against a chat dev server")]
struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    url: String,
    #[arg(long, env = "CHAT_ADMIN_KEY")]
    admin_key: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Chats the clients spread over (client i sends into chat i % chats).
    #[arg(long)]
    chats: Option<usize>,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// What to send: `send` (sendMessage), `noop` (the `__typename` query: HTTP and
    /// GraphQL without the store, to see where the time goes), `messages` (a page of the
    /// client's chat, which setup fills with `--page` messages), `chats` (a page of the
    /// application's chats, as the agent), `unread` (unreadSummary), `read` (markChatRead
    /// of the client's chat) or `search` (searchMessages in the client's chat for a word
    /// every setup message holds, 20 hits).
    #[arg(long, default_value = "send")]
    operation: String,
    /// Messages per page, and in each chat, with `--operation messages`.
    #[arg(long, default_value_t = 20)]
    page: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
    /// A label for the JSON result line.
    #[arg(long, default_value = "")]
    label: String,
}

const SEND: &str = "mutation($a: ID!, $c: Int!, $b: String!) { sendMessage(appToken: $a, chatNumber: $c, body: $b) { number } }";
const MESSAGES: &str = "query($a: ID!, $c: Int!, $l: Int) { messages(appToken: $a, chatNumber: $c, limit: $l) { items { number body senderId createdAt } nextToken } }";
const CHATS: &str = "query($a: ID!, $l: Int) { chats(appToken: $a, limit: $l) { items { number customerId status messagesCount lastMessageAt } nextToken } }";
const UNREAD: &str = "query($a: ID!) { unreadSummary(appToken: $a) { totalUnread unreadChats } }";
const READ: &str = "mutation($a: ID!, $c: Int!) { markChatRead(appToken: $a, chatNumber: $c) { lastReadNumber unreadCount } }";
const SEARCH: &str = "query($a: ID!, $c: Int!, $q: String!) { searchMessages(appToken: $a, chatNumber: $c, query: $q, limit: 20) { items { number body } nextToken } }";
/// The word every message `--operation search` fills a chat with holds.
const SEARCH_WORD: &str = "parcel";

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let url = format!("{}/graphql", args.url.trim_end_matches('/'));
    let setup = chat_bench::http_client(usize::MAX);
    let bench = BenchApp::create(&setup, &url, &args.admin_key, "bench").await?;
    let app = bench.token.clone();
    let agent = bench.user("bench-agent", Role::Agent);
    let chats = args.chats.unwrap_or(args.concurrency).max(1);
    for i in 0..chats {
        gql(
            &setup,
            &url,
            &agent,
            "mutation($a: ID!, $c: ID!) { createChat(appToken: $a, customerId: $c) { number } }",
            json!({ "a": app, "c": format!("customer-{i}") }),
        )
        .await?;
    }
    let body = if args.operation == "search" {
        // Words as a customer writes them, each message with the searched one.
        let words = "where is my parcel order refund delivery tracking number";
        let mut text = String::new();
        while text.len() < args.body_bytes.max(SEARCH_WORD.len()) {
            text.push_str(words);
            text.push(' ');
        }
        text
    } else {
        "x".repeat(args.body_bytes.max(1))
    };
    if matches!(
        args.operation.as_str(),
        "messages" | "search" | "read" | "unread"
    ) {
        for chat in 1..=chats {
            for _ in 0..args.page {
                gql(
                    &setup,
                    &url,
                    &agent,
                    SEND,
                    json!({ "a": app, "c": chat, "b": body }),
                )
                .await?;
            }
        }
    }
    let page = args.page;
    let start = Instant::now();
    let warm_until = start + Duration::from_secs(args.warmup_seconds);
    let end = warm_until + Duration::from_secs(args.seconds);

    let workers = (0..args.concurrency).map(|i| {
        let (url, app, body, op) = (
            url.clone(),
            app.clone(),
            body.clone(),
            args.operation.clone(),
        );
        let chat = (i % chats) + 1;
        let token = if chats == 1 {
            agent.clone()
        } else {
            bench.user(&format!("customer-{}", i % chats), Role::Customer)
        };
        let agent = agent.clone();
        tokio::spawn(async move {
            // One connection per client, like a real app.
            let client = chat_bench::http_client(1);
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut last_error = None;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let result = match op.as_str() {
                    "noop" => gql(&client, &url, &token, "{ __typename }", json!({})).await,
                    "messages" => {
                        gql(
                            &client,
                            &url,
                            &token,
                            MESSAGES,
                            json!({ "a": app, "c": chat, "l": page }),
                        )
                        .await
                    }
                    "chats" => {
                        gql(&client, &url, &agent, CHATS, json!({ "a": app, "l": 20 })).await
                    }
                    "unread" => gql(&client, &url, &token, UNREAD, json!({ "a": app })).await,
                    "read" => {
                        gql(&client, &url, &token, READ, json!({ "a": app, "c": chat })).await
                    }
                    "search" => {
                        gql(
                            &client,
                            &url,
                            &token,
                            SEARCH,
                            json!({ "a": app, "c": chat, "q": SEARCH_WORD }),
                        )
                        .await
                    }
                    _ => {
                        gql(
                            &client,
                            &url,
                            &token,
                            SEND,
                            json!({ "a": app, "c": chat, "b": body }),
                        )
                        .await
                    }
                };
                if now < warm_until {
                    continue;
                }
                match result {
                    Ok(_) => {
                        ok += 1;
                        let _ = histogram.record(now.elapsed().as_micros() as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = Some(e);
                    }
                }
            }
            (histogram, ok, errors, last_error)
        })
    });
    let mut total =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let (mut ok, mut errors) = (0u64, 0u64);
    for result in futures::future::join_all(workers).await {
        let (histogram, o, e, last) = result.map_err(|e| e.to_string())?;
        total.add(histogram).map_err(|e| e.to_string())?;
        ok += o;
        errors += e;
        if let Some(last) = last {
            eprintln!("error: {last}");
        }
    }
    let secs = args.seconds as f64;
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    let result = json!({
        "label": args.label,
        "operation": args.operation,
        "concurrency": args.concurrency,
        "chats": chats,
        "seconds": args.seconds,
        "ok": ok,
        "errors": errors,
        "throughput_per_s": (ok as f64 / secs).round(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "max_ms": total.max() as f64 / 1000.0,
    });
    println!("{result}");
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}
