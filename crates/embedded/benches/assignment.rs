//! `chats(filter: {assignee: ME})` and `chats(filter: {assignee: UNASSIGNED})` latency
//! against application size, on the file-backed SQLite store through the use cases
//! (`ChatService`), as the dev server calls them. Run by `scripts/bench-assignment`
//! (arguments: `[rounds]`, default 2000).
//!
//! Two applications, of 1,000 and 100,000 chats. Each chat has one customer message; half
//! are assigned, round robin over 10 agents (so agent-0 has a tenth of the assigned chats),
//! half unassigned. The measurement interleaves the applications round by round; each round
//! times, for each filter, the first page of 20 (status OPEN) and the page its nextToken
//! continues to.

use std::sync::Arc;
use std::time::Instant;

use chat_domain::*;
use chat_embedded::SqliteStore;
use futures::future::try_join_all;
use hdrhistogram::Histogram;

const AGENTS: usize = 10;

struct Fixture {
    label: String,
    app: AppToken,
    agent: Caller,
}

fn user(app: &AppToken, id: &str, role: Role) -> Caller {
    Caller::User(UserIdentity {
        app: app.clone(),
        user_id: UserId::parse(id).unwrap(),
        role,
    })
}

async fn fixture(svc: &ChatService, chats: usize) -> Fixture {
    let credentials = svc
        .create_application(&Caller::Admin, AppName::parse("bench").unwrap())
        .await
        .unwrap();
    let app = credentials.application.token;
    let assigner = user(&app, "agent-0", Role::Agent);
    for batch in (0..chats).collect::<Vec<_>>().chunks(64) {
        try_join_all(batch.iter().map(|i| {
            let app = app.clone();
            let assigner = assigner.clone();
            let who = user(&app, &format!("customer-{}", i % 1000), Role::Customer);
            async move {
                let chat = svc.create_chat(&who, &app, None, None).await?;
                svc.send_message(&who, &app, chat.number, MessageBody::parse("hi")?, None)
                    .await?;
                if i % 2 == 0 {
                    let agent = UserId::parse(&format!("agent-{}", (i / 2) % AGENTS))?;
                    svc.assign_chat(&assigner, &app, chat.number, Some(agent), None)
                        .await?;
                }
                Ok::<_, DomainError>(())
            }
        }))
        .await
        .unwrap();
    }
    Fixture {
        label: format!("{chats} chats"),
        app,
        agent: assigner,
    }
}

fn micros(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("chat.db")).unwrap();
    let store: Arc<dyn ChatStore> = Arc::new(store);
    let svc = ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock));

    let started = Instant::now();
    let mut fixtures = Vec::new();
    for chats in [1_000, 100_000] {
        fixtures.push(fixture(&svc, chats).await);
    }
    eprintln!("filled in {:.1} s", started.elapsed().as_secs_f64());

    let filters = [
        ("ME", "chats(filter: ME)"),
        ("UNASSIGNED", "chats(filter: UNASSIGNED)"),
    ];
    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    // [filter][first page, next page][fixture]
    let mut h: Vec<Vec<Vec<Histogram<u64>>>> = filters
        .iter()
        .map(|_| {
            (0..2)
                .map(|_| fixtures.iter().map(|_| new_histogram()).collect())
                .collect()
        })
        .collect();
    let limit = PageSize::parse(Some(20)).unwrap();
    for round in 0..rounds + rounds / 10 {
        let warm = round < rounds / 10;
        for (i, f) in fixtures.iter().enumerate() {
            for (k, (assignee, _)) in filters.iter().enumerate() {
                let args = ChatFilterArgs {
                    assignee: Some((*assignee).to_owned()),
                    team: None,
                    status: Some(ChatStatus::Open),
                };
                let t = Instant::now();
                let first = svc
                    .inbox(&f.agent, &f.app, &args, limit, None)
                    .await
                    .unwrap();
                let elapsed = t.elapsed().as_micros() as u64;
                assert_eq!(first.items.len(), 20);
                let token = first.next_token.expect("a second page");
                let t = Instant::now();
                let next = svc
                    .inbox(&f.agent, &f.app, &args, limit, Some(&token))
                    .await
                    .unwrap();
                let next_elapsed = t.elapsed().as_micros() as u64;
                assert_eq!(next.items.len(), 20);
                if !warm {
                    h[k][0][i].record(elapsed.max(1)).unwrap();
                    h[k][1][i].record(next_elapsed.max(1)).unwrap();
                }
            }
        }
    }

    println!("| application | operation | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---:|---:|---:|");
    for (k, (_, name)) in filters.iter().enumerate() {
        for (page, which) in ["first page", "next page"].iter().enumerate() {
            for (f, hist) in fixtures.iter().zip(h[k][page].iter()) {
                println!(
                    "| {} | {name}, {which} | {:.0} | {:.0} | {:.0} |",
                    f.label,
                    micros(hist, 0.5),
                    micros(hist, 0.9),
                    micros(hist, 0.99)
                );
            }
        }
    }
    println!();
    println!("ratio 100,000 / 1,000 chats (p50, then p99):");
    for (k, (_, name)) in filters.iter().enumerate() {
        for (page, which) in ["first page", "next page"].iter().enumerate() {
            let (small, large) = (&h[k][page][0], &h[k][page][1]);
            println!(
                "- {name}, {which}: {:.2} / {:.2}",
                micros(large, 0.5) / micros(small, 0.5),
                micros(large, 0.99) / micros(small, 0.99)
            );
        }
    }
    println!("({rounds} measured rounds, {} warm-up)", rounds / 10);
}
