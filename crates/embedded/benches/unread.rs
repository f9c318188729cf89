//! unreadSummary and markChatRead latency against chat size and application size, on the
//! file-backed SQLite store through the use cases (`ChatService`), as the dev server calls
//! them. Run by `scripts/bench-unread` (arguments: `[rounds]`, default 2000).
//!
//! Three applications: 10 chats whose busy chat has 10 messages; 1,000 chats, busy chat
//! 1,000 messages; 10,000 chats, busy chat 100,000 messages. Every chat has unread
//! messages for the agents. The measurement interleaves the three applications round by
//! round (so drift of the shared machine hits them alike); each round times one
//! unreadSummary (agent), one unreadSummary (customer), and one markChatRead of the busy
//! chat by an agent after the customer sent one more message (so every mark moves the
//! watermark and the counters). Last, one markAllRead by an agent over the largest
//! application's 10,000 unread chats.

use std::sync::Arc;
use std::time::Instant;

use chat_domain::*;
use chat_embedded::SqliteStore;
use futures::future::try_join_all;
use hdrhistogram::Histogram;

struct Fixture {
    label: String,
    app: AppToken,
    agent: Caller,
    customer: Caller,
    busy_chat: ChatNumber,
}

fn user(app: &AppToken, id: &str, role: Role) -> Caller {
    Caller::User(UserIdentity {
        app: app.clone(),
        user_id: UserId::parse(id).unwrap(),
        role,
    })
}

async fn fixture(svc: &ChatService, chats: usize, busy_messages: usize) -> Fixture {
    let credentials = svc
        .create_application(&Caller::Admin, AppName::parse("bench").unwrap())
        .await
        .unwrap();
    let app = credentials.application.token;
    let customer = user(&app, "customer-0", Role::Customer);
    let agent = user(&app, "agent-0", Role::Agent);
    // Chats, each with one customer message (unread for the agents), 64 at a time.
    for batch in (0..chats).collect::<Vec<_>>().chunks(64) {
        try_join_all(batch.iter().map(|i| {
            let app = app.clone();
            let who = user(&app, &format!("customer-{}", i % 100), Role::Customer);
            async move {
                let chat = svc.create_chat(&who, &app, None, None).await?;
                svc.send_message(&who, &app, chat.number, MessageBody::parse("hi")?, None)
                    .await
            }
        }))
        .await
        .unwrap();
    }
    // The busy chat (chat 1, customer-0's) up to its size, customer and agent alternating.
    let busy_chat = ChatNumber::new(1).unwrap();
    let body = MessageBody::parse("a message of ordinary length for a support chat").unwrap();
    let mut sent = 1;
    while sent < busy_messages {
        let n = (busy_messages - sent).min(256);
        try_join_all((0..n).map(|i| {
            let who = if i % 2 == 0 { &customer } else { &agent };
            svc.send_message(who, &app, busy_chat, body.clone(), None)
        }))
        .await
        .unwrap();
        sent += n;
    }
    Fixture {
        label: format!("{chats} chats, busy chat {busy_messages} msgs"),
        app,
        agent,
        customer,
        busy_chat,
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
    for (chats, busy) in [(10, 10), (1_000, 1_000), (10_000, 100_000)] {
        fixtures.push(fixture(&svc, chats, busy).await);
    }
    eprintln!("filled in {:.1} s", started.elapsed().as_secs_f64());

    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut summary_agent: Vec<_> = fixtures.iter().map(|_| new_histogram()).collect();
    let mut summary_customer: Vec<_> = fixtures.iter().map(|_| new_histogram()).collect();
    let mut mark: Vec<_> = fixtures.iter().map(|_| new_histogram()).collect();
    let body = MessageBody::parse("one more").unwrap();
    for round in 0..rounds + rounds / 10 {
        let warm = round < rounds / 10;
        for (i, f) in fixtures.iter().enumerate() {
            let t = Instant::now();
            let s = svc.unread_summary(&f.agent, &f.app).await.unwrap();
            let elapsed = t.elapsed().as_micros() as u64;
            assert!(s.total_unread > 0);
            if !warm {
                summary_agent[i].record(elapsed.max(1)).unwrap();
            }
            let t = Instant::now();
            svc.unread_summary(&f.customer, &f.app).await.unwrap();
            let elapsed = t.elapsed().as_micros() as u64;
            if !warm {
                summary_customer[i].record(elapsed.max(1)).unwrap();
            }
            svc.send_message(&f.customer, &f.app, f.busy_chat, body.clone(), None)
                .await
                .unwrap();
            let t = Instant::now();
            let receipt = svc
                .mark_chat_read(&f.agent, &f.app, f.busy_chat, None)
                .await
                .unwrap();
            let elapsed = t.elapsed().as_micros() as u64;
            assert_eq!(receipt.unread_count, 0);
            if !warm {
                mark[i].record(elapsed.max(1)).unwrap();
            }
        }
    }

    println!("| application | operation | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---:|---:|---:|");
    for (name, hs) in [
        ("unreadSummary (agent)", &summary_agent),
        ("unreadSummary (customer)", &summary_customer),
        ("markChatRead (agent)", &mark),
    ] {
        for (f, h) in fixtures.iter().zip(hs.iter()) {
            println!(
                "| {} | {name} | {:.0} | {:.0} | {:.0} |",
                f.label,
                micros(h, 0.5),
                micros(h, 0.9),
                micros(h, 0.99)
            );
        }
    }
    println!();
    println!("ratio largest/smallest application (p50, then p90):");
    for (name, hs) in [
        ("unreadSummary (agent)", &summary_agent),
        ("unreadSummary (customer)", &summary_customer),
        ("markChatRead (agent)", &mark),
    ] {
        let (small, large) = (&hs[0], &hs[hs.len() - 1]);
        println!(
            "- {name}: {:.2} / {:.2}",
            micros(large, 0.5) / micros(small, 0.5),
            micros(large, 0.9) / micros(small, 0.9)
        );
    }
    println!("({rounds} measured rounds, {} warm-up)", rounds / 10);

    // markAllRead over the largest application: every chat but the busy one is unread.
    let f = &fixtures[fixtures.len() - 1];
    let before = svc.unread_summary(&f.agent, &f.app).await.unwrap();
    let t = Instant::now();
    let after = svc.mark_all_read(&f.agent, &f.app).await.unwrap();
    println!();
    println!(
        "markAllRead (agent) over {} unread chats: {:.0} ms, summary after {} / {}",
        before.unread_chats,
        t.elapsed().as_secs_f64() * 1000.0,
        after.total_unread,
        after.unread_chats
    );
}
