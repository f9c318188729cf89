//! `chat-bench-presence`: what presence and typing cost the dev server.
//!
//! `--scenario heartbeat`: `--clients` users (each its own user id, `--agents` of them
//! agents) call `heartbeat` every `--interval-secs`, spread evenly (client i at
//! i x interval / clients into each round), over HTTP with kept-alive connections and at
//! most `--concurrency` requests in flight. The first round creates the leases; over the
//! `--window-secs` after it, the server's CPU time (`/proc/<pid>/stat`, utime + stime) gives
//! its share of a core and its CPU per heartbeat. Whether a heartbeat wrote the lease is read
//! from its answer: `lastSeenAt` moves only when the lease was written.
//!
//! `--scenario typing`: `--subscribers` agents subscribe to `onTyping` of one chat; then
//! `--events` `typing` calls, each by another agent (calls of one user within 2 s would be
//! folded), one every `--interval-ms`. Records the time from each call leaving to the
//! event's arrival at each subscriber.
//!
//! One JSON line per run. `scripts/bench-presence` runs both.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_bench::{BenchApp, cpu_ticks, gql, rss_kib};
use chat_domain::Role;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, value_enum)]
    scenario: Scenario,
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    url: String,
    #[arg(long, env = "CHAT_ADMIN_KEY")]
    admin_key: String,
    /// The server's process id: its CPU time is read from /proc (heartbeat).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    #[arg(long, default_value = "")]
    label: String,
    /// heartbeat: simulated clients, each its own user.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// heartbeat: how many of the clients are agents (the others are customers).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// heartbeat: each client's heartbeat period.
    #[arg(long, default_value_t = 30)]
    interval_secs: u64,
    /// heartbeat: the measured window after the first round.
    #[arg(long, default_value_t = 60)]
    window_secs: u64,
    /// heartbeat: the server's CPU with no load is read over this long before the first
    /// round.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// heartbeat: requests in flight at most (and kept-alive connections).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// typing: subscribers on the chat.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// typing: typing calls, each by another user.
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// typing: time between two typing calls.
    #[arg(long, default_value_t = 25)]
    interval_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Heartbeat,
    Typing,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let url = format!("{}/graphql", args.url.trim_end_matches('/'));
    match args.scenario {
        Scenario::Heartbeat => heartbeat(&args, &url).await,
        Scenario::Typing => typing(&args, &url).await,
    }
}

fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

fn micros(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

/// A quantile in milliseconds, two decimals.
fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// CPU seconds of a process and of this one, read together.
#[derive(Clone, Copy)]
struct CpuMark {
    at: Instant,
    server: Option<u64>,
    bench: Option<u64>,
}

impl CpuMark {
    fn now(pid: Option<u32>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: pid.and_then(|p| cpu_ticks(&p.to_string())),
            bench: cpu_ticks("self"),
        }
    }

    /// (wall seconds, server CPU seconds, this process's CPU seconds) since `earlier`.
    fn since(&self, earlier: &CpuMark, clk_tck: u64) -> (f64, Option<f64>, Option<f64>) {
        let secs = |a: Option<u64>, b: Option<u64>| {
            Some(a?.checked_sub(b?)? as f64 / clk_tck.max(1) as f64)
        };
        (
            self.at.duration_since(earlier.at).as_secs_f64(),
            secs(self.server, earlier.server),
            secs(self.bench, earlier.bench),
        )
    }
}

/// One heartbeat's outcome.
struct Beat {
    /// In the first round (creating the leases) rather than the measured window.
    first_round: bool,
    latency: Duration,
    /// How late it left after its slot (waiting for a free request).
    late: Duration,
    outcome: Result<bool, String>,
}

const HEARTBEAT: &str = "mutation($a: ID!) { heartbeat(appToken: $a) { lastSeenAt } }";

async fn heartbeat(args: &Args, url: &str) -> Result<(), String> {
    let http = chat_bench::http_client(args.concurrency);
    let bench = BenchApp::create(&http, url, &args.admin_key, "presence bench").await?;
    let app = bench.token.clone();
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..args.clients)
            .map(|i| {
                if i < args.agents {
                    bench.user(&format!("agent-{i}"), Role::Agent)
                } else {
                    bench.user(&format!("customer-{i}"), Role::Customer)
                }
            })
            .collect(),
    );
    // Each client's last `lastSeenAt`: a heartbeat that moved it wrote the lease.
    let last_seen: Arc<Vec<Mutex<Option<String>>>> =
        Arc::new((0..args.clients).map(|_| Mutex::new(None)).collect());

    let idle_start = CpuMark::now(args.server_pid);
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let idle = CpuMark::now(args.server_pid).since(&idle_start, args.clk_tck);

    // Heartbeat n is client n % clients, due at start + n x interval / clients.
    let interval = Duration::from_secs(args.interval_secs);
    let window = Duration::from_secs(args.window_secs);
    let total =
        (args.clients as u128 * (interval + window).as_millis() / interval.as_millis()) as usize;
    let clients = args.clients;
    let slot = move |n: usize| interval.mul_f64(n as f64 / clients as f64);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);

    // The CPU window: from the end of the first round to the end of the last slot.
    let marks = {
        let (pid, start) = (args.server_pid, start);
        tokio::spawn(async move {
            tokio::time::sleep_until(start + interval).await;
            let from = CpuMark::now(pid);
            tokio::time::sleep_until(start + interval + window).await;
            (from, CpuMark::now(pid))
        })
    };

    let (beats_tx, mut beats) = mpsc::unbounded_channel::<Beat>();
    let dispatcher = {
        let (http, url, app) = (http.clone(), url.to_owned(), app.clone());
        let (tokens, last_seen) = (tokens.clone(), last_seen.clone());
        let permits = Arc::new(Semaphore::new(args.concurrency));
        tokio::spawn(async move {
            for n in 0..total {
                let due = start + slot(n);
                tokio::time::sleep_until(due).await;
                let permit = permits.clone().acquire_owned().await.expect("never closed");
                let client = n % clients;
                let (http, url, app) = (http.clone(), url.clone(), app.clone());
                let (tokens, last_seen, tx) = (tokens.clone(), last_seen.clone(), beats_tx.clone());
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let answer = tokio::time::timeout(
                        Duration::from_secs(10),
                        gql(&http, &url, &tokens[client], HEARTBEAT, json!({ "a": app })),
                    )
                    .await;
                    let latency = started.elapsed();
                    drop(permit);
                    let outcome = match answer {
                        Err(_) => Err("timed out after 10 s".to_owned()),
                        Ok(Err(e)) => Err(e),
                        Ok(Ok(data)) => match data["heartbeat"]["lastSeenAt"].as_str() {
                            None => Err(format!("unexpected answer: {data}")),
                            Some(seen) => {
                                let mut last = last_seen[client].lock().expect("not poisoned");
                                let wrote = last.as_deref() != Some(seen);
                                *last = Some(seen.to_owned());
                                Ok(wrote)
                            }
                        },
                    };
                    let _ = tx.send(Beat {
                        first_round: n < clients,
                        latency,
                        late: started.duration_since(due),
                        outcome,
                    });
                });
            }
        })
    };

    let (mut first, mut steady, mut late) = (histogram()?, histogram()?, histogram()?);
    let (mut first_wrote, mut steady_wrote) = (0usize, 0usize);
    // Heartbeats due in the window, and those of them answered.
    let (mut steady_count, mut steady_ok) = (0usize, 0usize);
    let mut errors = Vec::new();
    let mut done = 0usize;
    while done < total {
        let Some(beat) = beats.recv().await else {
            break;
        };
        done += 1;
        let _ = late.record(micros(beat.late));
        let (histogram, wrote) = if beat.first_round {
            (&mut first, &mut first_wrote)
        } else {
            steady_count += 1;
            (&mut steady, &mut steady_wrote)
        };
        match beat.outcome {
            Ok(w) => {
                let _ = histogram.record(micros(beat.latency));
                *wrote += usize::from(w);
                steady_ok += usize::from(!beat.first_round);
            }
            Err(e) => errors.push(e),
        }
    }
    dispatcher.await.map_err(|e| e.to_string())?;
    let (from, to) = marks.await.map_err(|e| e.to_string())?;
    let (wall, server_cpu, bench_cpu) = to.since(&from, args.clk_tck);
    let rate = steady_count as f64 / wall;
    println!(
        "{}",
        json!({
            "label": args.label,
            "clients": args.clients,
            "agents": args.agents,
            "interval_secs": args.interval_secs,
            "concurrency": args.concurrency,
            "first_round_heartbeats": args.clients.min(total),
            "first_round_wrote": first_wrote,
            "first_round_p50_ms": ms(&first, 0.5),
            "first_round_p99_ms": ms(&first, 0.99),
            "window_secs": round(wall, 1),
            "window_heartbeats": steady_count,
            "window_heartbeats_per_s": round(rate, 1),
            "window_wrote": steady_wrote,
            "window_not_written": steady_ok - steady_wrote,
            "heartbeat_p50_ms": ms(&steady, 0.5),
            "heartbeat_p99_ms": ms(&steady, 0.99),
            "heartbeat_max_ms": round(steady.max() as f64 / 1000.0, 2),
            "left_late_p99_ms": ms(&late, 0.99),
            "server_cpu_share": server_cpu.map(|s| round(s / wall, 4)),
            "server_cpu_us_per_heartbeat": server_cpu.map(|s| round(s * 1e6 / steady_count.max(1) as f64, 1)),
            "server_cpu_share_idle_before": match idle { (w, Some(s), _) => Some(round(s / w, 4)), _ => None },
            "bench_cpu_share": bench_cpu.map(|s| round(s / wall, 4)),
            "server_rss_mib_after": args.server_pid.and_then(rss_kib).map(|k| round(k as f64 / 1024.0, 1)),
            "errors": errors.len(),
        })
    );
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} heartbeats failed, the first: {e}",
            errors.len()
        ));
    }
    Ok(())
}

const ON_TYPING: &str =
    "subscription($a: ID!, $c: Int!) { onTyping(appToken: $a, chatNumber: $c) { userId } }";
const TYPING: &str =
    "mutation($a: ID!, $c: Int!) { typing(appToken: $a, chatNumber: $c) { userId } }";

async fn typing(args: &Args, url: &str) -> Result<(), String> {
    let ws_url = url.replacen("http", "ws", 1);
    let http = chat_bench::http_client(usize::MAX);
    let bench = BenchApp::create(&http, url, &args.admin_key, "typing bench").await?;
    let app = bench.token.clone();
    let agent = bench.user("bench-agent", Role::Agent);
    let chat = gql(
        &http,
        url,
        &agent,
        "mutation($a: ID!, $c: ID!) { createChat(appToken: $a, customerId: $c) { number } }",
        json!({ "a": app, "c": "typing-customer" }),
    )
    .await?["createChat"]["number"]
        .as_u64()
        .ok_or("createChat answered no number")?;

    // Subscribers: agents of the application; each reports (typist, arrival).
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    let watchers: Vec<usize> = (0..args.subscribers).collect();
    let connect_started = Instant::now();
    for batch in watchers.chunks(200) {
        let opened = futures::future::join_all(batch.iter().map(|i| {
            let token = bench.user(&format!("watcher-{i}"), Role::Agent);
            let ws_url = ws_url.clone();
            let variables = json!({ "a": app, "c": chat });
            async move { chat_bench::subscribe(&ws_url, &token, ON_TYPING, variables).await }
        }))
        .await;
        for socket in opened {
            tasks.push(chat_bench::record_arrivals(
                socket?,
                arrivals_tx.clone(),
                |data: &Value| {
                    let user = data["onTyping"]["userId"].as_str()?;
                    user.strip_prefix("typist-")?.parse::<usize>().ok()
                },
            ));
        }
    }
    drop(arrivals_tx);
    let connect_secs = connect_started.elapsed().as_secs_f64();

    // The typists: one call per interval, each by another agent; when each left is noted
    // before it leaves.
    let typists: Vec<String> = (0..args.events)
        .map(|i| bench.user(&format!("typist-{i}"), Role::Agent))
        .collect();
    let sent: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; args.events]));
    let sender = {
        let (http, url, app, sent) = (http.clone(), url.to_owned(), app.clone(), sent.clone());
        let interval = Duration::from_millis(args.interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            let mut calls = histogram()?;
            let mut folded = 0usize;
            for (i, token) in typists.iter().enumerate() {
                tick.tick().await;
                let started = Instant::now();
                sent.lock().map_err(|_| "poisoned")?[i] = Some(started);
                let data = gql(&http, &url, token, TYPING, json!({ "a": app, "c": chat })).await?;
                let _ = calls.record(micros(started.elapsed()));
                folded += usize::from(data["typing"].is_null());
            }
            Ok::<_, String>((calls, folded))
        })
    };

    let expected = args.subscribers * args.events;
    let mut from_send = histogram()?;
    let mut received = 0usize;
    let deadline = Instant::now()
        + Duration::from_millis(args.interval_ms * args.events as u64)
        + Duration::from_secs(30);
    while received < expected {
        let Ok(Some((i, at))) = tokio::time::timeout_at(deadline.into(), arrivals.recv()).await
        else {
            break;
        };
        received += 1;
        if let Some(Some(started)) = sent.lock().map_err(|_| "poisoned")?.get(i) {
            let _ = from_send.record(micros(at.saturating_duration_since(*started)));
        }
    }
    let (calls, folded) = sender.await.map_err(|e| e.to_string())??;
    println!(
        "{}",
        json!({
            "label": args.label,
            "subscribers": args.subscribers,
            "typing_calls": args.events,
            "interval_ms": args.interval_ms,
            "folded": folded,
            "events_expected": expected,
            "events_received": received,
            "from_send_p50_ms": ms(&from_send, 0.5),
            "from_send_p99_ms": ms(&from_send, 0.99),
            "from_send_max_ms": round(from_send.max() as f64 / 1000.0, 2),
            "typing_call_p50_ms": ms(&calls, 0.5),
            "typing_call_p99_ms": ms(&calls, 0.99),
            "subscribe_seconds": round(connect_secs, 1),
        })
    );
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
