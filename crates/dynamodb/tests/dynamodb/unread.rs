//! Unread counters under races between processes. The conformance suite's model-based
//! behaviour runs one operation at a time; here several stores ("processes", each with
//! its own client and writer lanes) send into and read the same chats at once, so only the
//! conditions on the watermarks (a write whose deltas were computed from marks that moved
//! meanwhile fails and starts again) keep the counters equal to a recount.

use std::collections::BTreeMap;

use chat_domain::*;
use chat_store_conformance::fixtures::*;
use chat_store_conformance::unread::{reader, summary};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;

const CUSTOMERS: [&str; 3] = ["cust-1", "cust-2", "cust-1"];
const AGENTS: [&str; 2] = ["agent-ann", "agent-bob"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counters_equal_a_recount_after_racing_sends_and_reads_across_processes() {
    // Given three chats, and four processes on one table.
    let (stores, _) = chat_dynamodb::moto::stores_on_one_table(4).await;
    let store = stores[0].clone();
    let app = create_app(&store, "app_unread_race").await;
    for (i, customer) in CUSTOMERS.iter().enumerate() {
        create_chat(&store, &app, customer, at(i as i64)).await;
    }

    // When each process runs four writers sending and reading at random, all at once.
    let mut tasks = JoinSet::new();
    for (p, process) in stores.iter().enumerate() {
        for w in 0..4 {
            let (process, app) = (process.clone(), app.clone());
            tasks.spawn(async move {
                let mut rng = StdRng::seed_from_u64((p * 4 + w) as u64);
                for step in 0..10 {
                    let chat = rng.random_range(1..=CUSTOMERS.len() as u32);
                    let who = if rng.random_bool(0.5) {
                        reader(&app, CUSTOMERS[chat as usize - 1], Role::Customer)
                    } else {
                        reader(&app, AGENTS[rng.random_range(0..AGENTS.len())], Role::Agent)
                    };
                    if rng.random_bool(0.5) {
                        process
                            .send_message(NewMessage {
                                scope: who.scope(chat_no(chat)),
                                sender_id: who.user_id.clone(),
                                sender_role: who.role,
                                body: body("racing"),
                                client_message_id: None,
                                now: at(1_000 + step),
                            })
                            .await
                            .expect("send");
                    } else {
                        process
                            .mark_chat_read(MarkRead {
                                scope: who.scope(chat_no(chat)),
                                reader: who.clone(),
                                up_to: None,
                            })
                            .await
                            .expect("mark_chat_read");
                    }
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }

    // Then every counter equals a recount of the chats' marks, and the unread listings
    // name exactly the chats with something unread.
    let mut team = (0u64, 0u64);
    let mut per_customer: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut agents_unread = Vec::new();
    let mut customers_unread: BTreeMap<&str, Vec<ChatNumber>> = BTreeMap::new();
    let mut sent = 0;
    for (i, customer) in CUSTOMERS.iter().enumerate() {
        let chat = get_chat(&store, &agent_scope(&app, i as u32 + 1)).await;
        sent += chat.messages_count;
        let (agents, own) = (
            chat.unread_for(Role::Agent),
            chat.unread_for(Role::Customer),
        );
        team.0 += u64::from(agents);
        team.1 += u64::from(agents > 0);
        let counter = per_customer.entry(customer).or_default();
        counter.0 += u64::from(own);
        counter.1 += u64::from(own > 0);
        if agents > 0 {
            agents_unread.push(chat.number);
        }
        if own > 0 {
            customers_unread
                .entry(customer)
                .or_default()
                .push(chat.number);
        }
    }
    assert!(sent > 0, "the writers sent something");
    for agent in AGENTS {
        assert_eq!(
            summary(&store, &reader(&app, agent, Role::Agent)).await,
            team
        );
    }
    for customer in ["cust-1", "cust-2"] {
        let who = reader(&app, customer, Role::Customer);
        assert_eq!(
            summary(&store, &who).await,
            per_customer.get(customer).copied().unwrap_or_default(),
            "{customer}"
        );
        assert_eq!(
            store.unread_chats(&who, None, 100).await.unwrap(),
            customers_unread.get(customer).cloned().unwrap_or_default(),
            "{customer}"
        );
    }
    let ann = reader(&app, AGENTS[0], Role::Agent);
    assert_eq!(
        store.unread_chats(&ann, None, 100).await.unwrap(),
        agents_unread
    );
}
