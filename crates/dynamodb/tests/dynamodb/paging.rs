//! Inbox pages across the sharded index: every chat exactly once, in order, for every
//! filter and page size, against an oracle sorted from the chats themselves.

use chat_domain::*;
use chat_store_conformance::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_pages_merge_the_index_partitions_exactly_once_in_order() {
    // Given 23 chats of three customers, created in pairs at the same instant, some with
    // later messages (ties again), some resolved.
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let store: Store = std::sync::Arc::new(store);
    let app = create_app(&store, "app_many").await;
    let chat_count: u32 = 23;
    for n in 1..=chat_count {
        let customer = format!("cust-{}", n % 3);
        create_chat(&store, &app, &customer, at(1000 + i64::from(n / 2))).await;
    }
    for n in (1..=chat_count).filter(|n| n % 5 == 0 || n % 7 == 0) {
        send(
            &store,
            &agent_scope(&app, n),
            "bump",
            at(5000 + i64::from(n % 3)),
        )
        .await;
    }
    for n in (1..=chat_count).filter(|n| n % 4 == 0) {
        store
            .update_chat(
                &agent_scope(&app, n),
                ChatUpdate {
                    subject: None,
                    status: Some(ChatStatus::Resolved),
                    now: at(9000),
                },
            )
            .await
            .unwrap();
    }
    let mut everything = Vec::new();
    for n in 1..=chat_count {
        everything.push(get_chat(&store, &agent_scope(&app, n)).await);
    }
    everything.sort_by_key(|c| std::cmp::Reverse((c.last_activity_at, c.number)));

    let filters: [(Option<&str>, Option<ChatStatus>); 6] = [
        (None, None),
        (None, Some(ChatStatus::Open)),
        (None, Some(ChatStatus::Resolved)),
        (Some("cust-0"), None),
        (Some("cust-1"), Some(ChatStatus::Open)),
        (Some("cust-2"), Some(ChatStatus::Resolved)),
    ];
    for (customer, status) in filters {
        let expected: Vec<Chat> = everything
            .iter()
            .filter(|c| customer.is_none_or(|id| c.customer_id.as_str() == id))
            .filter(|c| status.is_none_or(|s| c.status == s))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        let q = ChatQuery {
            customer: customer.map(user),
            status,
            ..query(&app, 100)
        };
        // Then every page size yields exactly the oracle, whole chats included.
        for page in [1, 2, 3, 5, 8, 23, 100] {
            let pages = all_chat_pages(&store, q.clone(), page).await;
            let flat: Vec<Chat> = pages.into_iter().flatten().collect();
            assert_eq!(
                numbers_of_chats(&flat),
                numbers_of_chats(&expected),
                "{customer:?} {status:?} by {page}"
            );
            assert_eq!(flat, expected, "{customer:?} {status:?} by {page}");
        }
    }
}
