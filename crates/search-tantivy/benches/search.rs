//! The embedded search benchmark (re-runnable; not a test). `scripts/bench-search` runs it:
//!
//!   cargo bench -p chat-search-tantivy --bench search -- [--messages N] [--chats N]
//!       [--queries N] [--lag-seconds S] [--rate R] [--cjk-percent P] [--dir PATH]
//!       [--clients N] [--concurrent-seconds S]
//!
//! With `--dir`, an index there that holds N documents is the corpus of an earlier run
//! (the generator is deterministic) and is reused: indexing is skipped.
//!
//! 1. indexing: N synthetic messages (default 1,000,000) over C chats (default 1,000),
//!    P% of them (default 20) in Japanese, Chinese or Korean, into a file-backed index
//!    through `SearchIndex::apply` in batches of 10,000 (the versioned path: id lookup,
//!    delete + add, commit per batch); messages per second; the index's size on disk
//!    after the merges;
//! 2. search: Q queries (default 5,000) of a random chat, a mix of common 3-letter
//!    substrings, whole words, prefixes, two-word queries and 2-letter words, first page of
//!    20 (21 asked, as the service does); p50 / p99 / max, single client; then, when
//!    there are CJK messages, Q one-character and Q two-character CJK queries (each taken
//!    from a CJK message and asked in its chat, so it has hits), reported apart;
//!    then the same Latin mix across the whole application (`SearchScope::App`), single
//!    client; then `--clients` (32) concurrent clients through `SearchIndex::search` (the
//!    server's path: a permit per core, the blocking pool) for `--concurrent-seconds` (10)
//!    each, one chat's and the application's: p50 / p99 / max, searches/s, the process's
//!    CPU per search;
//! 3. index lag: a file SQLite store + its outbox indexer feeding the same index; sends
//!    at R per second (default 1,000) for S seconds (default 20); lag = from the
//!    acknowledged send to the first search that finds it; p50 / p99 / max.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::search::SearchScope;
use chat_domain::*;
use chat_embedded::SqliteStore;
use chat_embedded::feed::{IndexerConfig, run_indexer};
use chat_search_tantivy::TantivyIndex;
use hdrhistogram::Histogram;

struct Args {
    messages: u64,
    chats: u64,
    queries: u64,
    lag_seconds: u64,
    rate: u64,
    cjk_percent: u64,
    dir: Option<std::path::PathBuf>,
    /// Clients of the concurrent phase, and its seconds per scope.
    clients: usize,
    concurrent_seconds: u64,
}

fn args() -> Args {
    let mut args = Args {
        messages: 1_000_000,
        chats: 1_000,
        queries: 5_000,
        lag_seconds: 20,
        rate: 1_000,
        cjk_percent: 20,
        dir: None,
        clients: 32,
        concurrent_seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--messages" => args.messages = value().parse().unwrap(),
            "--chats" => args.chats = value().parse().unwrap(),
            "--queries" => args.queries = value().parse().unwrap(),
            "--lag-seconds" => args.lag_seconds = value().parse().unwrap(),
            "--rate" => args.rate = value().parse().unwrap(),
            "--cjk-percent" => args.cjk_percent = value().parse().unwrap(),
            "--dir" => args.dir = Some(value().into()),
            "--clients" => args.clients = value().parse().unwrap(),
            "--concurrent-seconds" => args.concurrent_seconds = value().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// A deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Skewed towards small numbers: a few common words, a long tail of rare ones.
    fn zipfish(&mut self, n: u64) -> u64 {
        let x = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((x * x * x) * n as f64) as u64
    }
}

/// 20,000 pseudo-words of 2 to 15 letters (about 5 on average), some accented.
fn vocabulary() -> Vec<String> {
    const SYLLABLES: [&str; 24] = [
        "re", "fun", "ded", "or", "der", "ca", "fé", "ship", "ping", "ac", "count", "pay", "ment",
        "de", "lay", "in", "voice", "ti", "cket", "no", "ta", "ble", "sé", "mo",
    ];
    let mut rng = Rng(0x5eed);
    let mut words: Vec<String> = ["the", "and", "to", "is", "my", "no", "ok", "a", "I"]
        .iter()
        .map(|w| (*w).to_owned())
        .collect();
    while words.len() < 20_000 {
        // English-like lengths: mostly one or two syllables (about 5 letters).
        let parts = match rng.below(20) {
            0..=8 => 1,
            9..=16 => 2,
            _ => 3,
        };
        let word: String = (0..parts)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
            .collect();
        words.push(word);
    }
    words
}

fn body(rng: &mut Rng, words: &[String]) -> String {
    let n = 4 + rng.below(16);
    let mut text = String::new();
    for i in 0..n {
        if i > 0 {
            text.push(' ');
        }
        let w = &words[rng.zipfish(words.len() as u64) as usize];
        if rng.below(10) == 0 {
            let mut c = w.chars();
            if let Some(first) = c.next() {
                text.extend(first.to_uppercase());
                text.push_str(c.as_str());
            }
        } else {
            text.push_str(w);
        }
    }
    text
}

/// Characters of one script: `count` code points from `first`.
fn pool(first: u32, count: u32) -> Vec<char> {
    (first..first + count).filter_map(char::from_u32).collect()
}

/// Synthetic CJK text: words of 1–3 Han characters, kana words and particles (Japanese),
/// or Hangul words with particles (Korean), common characters more often than rare ones.
struct Cjk {
    han: Vec<char>,
    hiragana: Vec<char>,
    katakana: Vec<char>,
    hangul: Vec<char>,
}

impl Cjk {
    fn new() -> Self {
        let mut rng = Rng(0xc1c);
        // Syllables spread over the block (a block-ordered run is all one initial).
        let hangul = (0..600)
            .filter_map(|_| char::from_u32(0xAC00 + rng.below(11_172) as u32))
            .collect();
        Cjk {
            han: pool(0x4E00, 3_000),
            hiragana: pool(0x3041, 83),
            katakana: pool(0x30A1, 83),
            hangul,
        }
    }

    /// `min` plus up to `spread - 1` characters of `chars`.
    fn pick(rng: &mut Rng, chars: &[char], text: &mut String, min: u64, spread: u64) {
        let n = min + rng.below(spread);
        for _ in 0..n {
            text.push(chars[rng.zipfish(chars.len() as u64) as usize]);
        }
    }

    fn body(&self, rng: &mut Rng) -> String {
        let mut text = String::new();
        match rng.below(3) {
            // Japanese: clauses of Han words, kana and particles, no spaces.
            0 => {
                for clause in 0..1 + rng.below(3) {
                    if clause > 0 {
                        text.push('、');
                    }
                    for _ in 0..2 + rng.below(4) {
                        match rng.below(3) {
                            0 => Self::pick(rng, &self.katakana, &mut text, 2, 4),
                            _ => Self::pick(rng, &self.han, &mut text, 1, 3),
                        }
                        Self::pick(rng, &self.hiragana, &mut text, 1, 3);
                    }
                    if rng.below(5) == 0 {
                        text.push_str(&rng.below(10_000).to_string());
                    }
                }
                text.push('。');
            }
            // Chinese: runs of Han words, commas between clauses.
            1 => {
                for clause in 0..1 + rng.below(3) {
                    if clause > 0 {
                        text.push('，');
                    }
                    for _ in 0..2 + rng.below(5) {
                        Self::pick(rng, &self.han, &mut text, 1, 3);
                    }
                }
                text.push('。');
            }
            // Korean: words of 2–4 syllables with a particle, spaces between.
            _ => {
                for word in 0..3 + rng.below(6) {
                    if word > 0 {
                        text.push(' ');
                    }
                    Self::pick(rng, &self.hangul, &mut text, 2, 3);
                }
                text.push('.');
            }
        }
        text
    }
}

/// Runs of CJK characters of `text` (a query source).
fn cjk_runs(text: &str) -> Vec<Vec<char>> {
    chat_domain::search::words(text)
        .filter(|w| w.kind == chat_domain::search::WordKind::Cjk)
        .map(|w| w.text.chars().collect())
        .collect()
}

/// The size of the files under `dir`, in bytes.
fn size_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                size_on_disk(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn app() -> AppToken {
    AppToken::parse("app_bench").unwrap()
}

fn percentiles(label: &str, h: &Histogram<u64>, unit: &str, scale: f64) -> String {
    format!(
        "{label}: n={} p50={:.2}{unit} p99={:.2}{unit} max={:.2}{unit}",
        h.len(),
        h.value_at_quantile(0.50) as f64 / scale,
        h.value_at_quantile(0.99) as f64 / scale,
        h.max() as f64 / scale
    )
}

fn main() {
    let args = args();
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let words = vocabulary();
    let (index, _) = TantivyIndex::open(&dir.join("search")).unwrap();
    let index = Arc::new(index);
    println!(
        "# {} messages over {} chats, {}% CJK; index in {}",
        args.messages,
        args.chats,
        args.cjk_percent,
        dir.display()
    );
    let cjk = Cjk::new();
    // CJK bodies and their chats, kept as sources of CJK queries.
    let mut cjk_samples: Vec<(u64, String)> = Vec::new();

    // 1. indexing throughput (skipped when `--dir` holds the corpus from an earlier run:
    // the same generator makes the same messages).
    let reused = index.num_docs() == args.messages;
    let mut rng = Rng(42);
    let per_chat = args.messages.div_ceil(args.chats);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut done = 0u64;
    for number in 1..=per_chat {
        for chat in 1..=args.chats {
            if done == args.messages || (reused && cjk_samples.len() >= 10_000) {
                break;
            }
            batch.push(IndexOp::Upsert(SearchDocument {
                key: DocKey {
                    app: app(),
                    chat: ChatNumber::new(chat as i64).unwrap(),
                    number: MessageNumber::new(number as i64).unwrap(),
                },
                body: if rng.below(100) < args.cjk_percent {
                    let text = cjk.body(&mut rng);
                    if cjk_samples.len() < 10_000 {
                        cjk_samples.push((chat, text.clone()));
                    }
                    text
                } else {
                    body(&mut rng, &words)
                },
                sender_id: UserId::parse("bench").unwrap(),
                created_at: Timestamp(number as i64),
                version: 1,
            }));
            done += 1;
            if reused {
                batch.clear();
            } else if batch.len() == 10_000 {
                index.apply_now(&batch).unwrap();
                batch.clear();
            }
        }
    }
    if !batch.is_empty() {
        index.apply_now(&batch).unwrap();
    }
    let elapsed = started.elapsed();
    if reused {
        println!("indexing: skipped, the corpus in --dir is reused");
    } else {
        println!(
            "indexing: {done} messages in {:.1} s = {:.0} messages/s ({} segments)",
            elapsed.as_secs_f64(),
            done as f64 / elapsed.as_secs_f64(),
            index.segments()
        );
    }
    // Search a settled index: let the background merges of the bulk load finish (they
    // compete for the 2 cores), then reopen it as a server would.
    let merging = Instant::now();
    Arc::try_unwrap(index)
        .expect("the only reference")
        .wait_merging()
        .unwrap();
    let (index, _) = TantivyIndex::open(&dir.join("search")).unwrap();
    let index = Arc::new(index);
    println!(
        "merges after the load: {:.1} s; {} segments; index size {:.1} MB",
        merging.elapsed().as_secs_f64(),
        index.segments(),
        size_on_disk(&dir.join("search")) as f64 / 1e6
    );

    // 2. search latency.
    let mut queries: Vec<String> = Vec::new();
    for w in words.iter().take(400) {
        let chars: Vec<char> = w.chars().collect();
        if chars.len() >= 4 {
            queries.push(chars[1..4].iter().collect()); // a common infix
            queries.push(chars[..chars.len() - 1].iter().collect()); // a prefix
        }
        queries.push(w.to_uppercase()); // a whole word, other case
    }
    queries.push("cafe".into());
    queries.push("no".into());
    queries.push("refund cafe".into());
    let mut rng = Rng(7);
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut hits_total = 0usize;
    for _ in 0..args.queries {
        let q = &queries[rng.below(queries.len() as u64) as usize];
        let request = SearchRequest {
            app: app(),
            scope: SearchScope::Chat(ChatNumber::new(1 + rng.below(args.chats) as i64).unwrap()),
            query: SearchQuery::parse(q).unwrap(),
            after: None,
            limit: 21,
        };
        let t = Instant::now();
        hits_total += index.search_now(&request).unwrap().len();
        latency.record(t.elapsed().as_micros() as u64).unwrap();
    }
    println!(
        "{} (mean hits per page {:.1})",
        percentiles("search", &latency, " ms", 1000.0),
        hits_total as f64 / args.queries as f64
    );

    // CJK queries of one and two characters, each taken from a CJK message and asked in
    // its chat (so it has at least that hit).
    if !cjk_samples.is_empty() {
        for chars in [1usize, 2] {
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let mut hits_total = 0usize;
            let mut asked = 0u64;
            while asked < args.queries {
                let (chat, sample) = &cjk_samples[rng.below(cjk_samples.len() as u64) as usize];
                let runs = cjk_runs(sample);
                let run = &runs[rng.below(runs.len() as u64) as usize];
                if run.len() < chars {
                    continue;
                }
                let at = rng.below((run.len() - chars + 1) as u64) as usize;
                let q: String = run[at..at + chars].iter().collect();
                let request = SearchRequest {
                    app: app(),
                    scope: SearchScope::Chat(ChatNumber::new(*chat as i64).unwrap()),
                    query: SearchQuery::parse(&q).unwrap(),
                    after: None,
                    limit: 21,
                };
                let t = Instant::now();
                hits_total += index.search_now(&request).unwrap().len();
                latency.record(t.elapsed().as_micros() as u64).unwrap();
                asked += 1;
            }
            println!(
                "{} (mean hits per page {:.1})",
                percentiles(
                    &format!("search, CJK {chars}-character queries"),
                    &latency,
                    " ms",
                    1000.0
                ),
                hits_total as f64 / args.queries as f64
            );
        }
    }

    // The same mix across the whole application (an agent's search without a chat).
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut hits_total = 0usize;
    let mut slowest: Vec<(u64, &str)> = Vec::new();
    for _ in 0..args.queries {
        let q = &queries[rng.below(queries.len() as u64) as usize];
        let request = SearchRequest {
            app: app(),
            scope: SearchScope::App,
            query: SearchQuery::parse(q).unwrap(),
            after: None,
            limit: 21,
        };
        let t = Instant::now();
        hits_total += index.search_now(&request).unwrap().len();
        let micros = t.elapsed().as_micros() as u64;
        latency.record(micros).unwrap();
        slowest.push((micros, q.as_str()));
    }
    println!(
        "{} (mean hits per page {:.1})",
        percentiles("search, whole application", &latency, " ms", 1000.0),
        hits_total as f64 / args.queries as f64
    );
    // The tail's queries: what the p99 is made of.
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    let mut seen = std::collections::HashSet::new();
    let tail: Vec<String> = slowest
        .iter()
        .filter(|(_, q)| seen.insert(*q))
        .take(8)
        .map(|(micros, q)| format!("{q:?} {:.1} ms", *micros as f64 / 1000.0))
        .collect();
    println!("search, whole application, slowest: {}", tail.join(", "));

    // Concurrent clients through `SearchIndex::search` (the server's path) on a runtime
    // of one worker per core, one chat's and then the application's.
    if args.concurrent_seconds > 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .enable_all()
            .build()
            .unwrap();
        for app_wide in [false, true] {
            rt.block_on(concurrent(&args, index.clone(), &queries, app_wide));
        }
    }

    // 3. index lag through the outbox at a fixed send rate.
    if args.lag_seconds > 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(lag(&args, &dir, index.clone()));
    }
}

/// This process's CPU time (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// `args.clients` clients, each searching one after another for `args.concurrent_seconds`
/// seconds: latency percentiles and CPU per search.
async fn concurrent(args: &Args, index: Arc<TantivyIndex>, queries: &[String], app_wide: bool) {
    let end = Instant::now() + Duration::from_secs(args.concurrent_seconds);
    let cpu = cpu_time();
    let clients = (0..args.clients).map(|client| {
        let index = index.clone();
        let queries = queries.to_vec();
        let chats = args.chats;
        tokio::spawn(async move {
            let mut rng = Rng(1000 + client as u64);
            let mut latency = Histogram::<u64>::new(3).unwrap();
            while Instant::now() < end {
                let q = &queries[rng.below(queries.len() as u64) as usize];
                let scope = if app_wide {
                    SearchScope::App
                } else {
                    SearchScope::Chat(ChatNumber::new(1 + rng.below(chats) as i64).unwrap())
                };
                let request = SearchRequest {
                    app: app(),
                    scope,
                    query: SearchQuery::parse(q).unwrap(),
                    after: None,
                    limit: 21,
                };
                let t = Instant::now();
                index.search(&request).await.unwrap();
                latency.record(t.elapsed().as_micros() as u64).unwrap();
            }
            latency
        })
    });
    let mut total = Histogram::<u64>::new(3).unwrap();
    for h in futures_join(clients.collect()).await {
        total.add(h).unwrap();
    }
    let cpu = cpu_time() - cpu;
    println!(
        "{} ({:.0} searches/s, CPU {:.0} µs per search)",
        percentiles(
            &format!(
                "search, {} clients, {}",
                args.clients,
                if app_wide {
                    "whole application"
                } else {
                    "one chat"
                }
            ),
            &total,
            " ms",
            1000.0
        ),
        total.len() as f64 / args.concurrent_seconds as f64,
        cpu.as_micros() as f64 / total.len().max(1) as f64
    );
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn lag(args: &Args, dir: &std::path::Path, index: Arc<TantivyIndex>) {
    let store = Arc::new(SqliteStore::open(&dir.join("lag.sqlite3")).unwrap());
    let service = ChatService::new(store.clone(), ServerKey::generate(), Arc::new(SystemClock));
    let created = service
        .create_application(&Caller::Admin, AppName::parse("Lag").unwrap())
        .await
        .unwrap()
        .application
        .token;
    let agent = Caller::User(UserIdentity {
        app: created.clone(),
        user_id: UserId::parse("agent").unwrap(),
        role: Role::Agent,
    });
    let chat = service
        .create_chat(&agent, &created, None, Some(UserId::parse("c").unwrap()))
        .await
        .unwrap()
        .number;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let feed: Arc<dyn SearchIndex> = index.clone();
    let indexer = tokio::spawn(run_indexer(
        store.clone(),
        feed,
        IndexerConfig::default(),
        stopped,
    ));

    // The watcher: the newest searchable number of the chat; the outbox is drained in
    // order and each batch commits at once, so every lower number is searchable too.
    let acked: Arc<std::sync::Mutex<HashMap<u32, Instant>>> = Arc::default();
    let watcher = {
        let (index, acked, app) = (index.clone(), acked.clone(), created.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = 0u32;
            let mut lag = Histogram::<u64>::new(3).unwrap();
            let request = SearchRequest {
                app,
                scope: SearchScope::Chat(chat),
                query: SearchQuery::parse("lagprobe").unwrap(),
                after: None,
                limit: 1,
            };
            let deadline = Instant::now() + Duration::from_secs(3600);
            loop {
                let top = index.search_now(&request).unwrap();
                let newest = top.first().map_or(0, |h| h.number.get());
                let now = Instant::now();
                let acked = acked.lock().unwrap();
                for n in seen + 1..=newest {
                    if let Some(at) = acked.get(&n) {
                        lag.record(now.duration_since(*at).as_micros() as u64)
                            .unwrap();
                    }
                }
                seen = seen.max(newest);
                if acked.get(&0).is_some() && seen as usize >= acked.len() - 1 || now > deadline {
                    return lag;
                }
                drop(acked);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let total = args.rate * args.lag_seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let service = Arc::new(service);
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (service, agent, app, acked) = (
            service.clone(),
            agent.clone(),
            created.clone(),
            acked.clone(),
        );
        tasks.spawn(async move {
            let sent = service
                .send_message(
                    &agent,
                    &app,
                    chat,
                    MessageBody::parse(&format!("lagprobe message {i} about a refund")).unwrap(),
                    None,
                )
                .await
                .unwrap();
            acked
                .lock()
                .unwrap()
                .insert(sent.message.number.get(), Instant::now());
        });
    }
    while tasks.join_next().await.is_some() {}
    let send_elapsed = started.elapsed();
    acked.lock().unwrap().insert(0, Instant::now());
    let lag = watcher.await.unwrap();
    println!(
        "{} ({} sends in {:.1} s = {:.0}/s)",
        percentiles("index lag at the send rate", &lag, " ms", 1000.0),
        total,
        send_elapsed.as_secs_f64(),
        total as f64 / send_elapsed.as_secs_f64()
    );
    let _ = stop.send(true);
    let _ = indexer.await;
}
