//! Unread behaviours: watermarks, receipts, counters, markAllRead, and a model-based test
//! that holds every counter to a recount after random interleavings.

use std::collections::{BTreeMap, HashMap};

use chat_domain::{
    AppToken, ChatNumber, ErrorCode, MarkRead, NewMessage, ReadMarks, ReadReceipt, Result, Role,
    Timestamp, UserIdentity,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::fixtures::*;

pub fn reader(app: &AppToken, id: &str, role: Role) -> UserIdentity {
    UserIdentity {
        app: app.clone(),
        user_id: user(id),
        role,
    }
}

pub async fn mark(
    store: &Store,
    who: &UserIdentity,
    chat: u32,
    up_to: Option<u32>,
) -> Result<ReadReceipt> {
    store
        .mark_chat_read(MarkRead {
            scope: who.scope(chat_no(chat)),
            reader: who.clone(),
            up_to: up_to.map(msg_no),
        })
        .await
}

fn sent_by(who: &UserIdentity, chat: u32, text: &str, now: Timestamp) -> NewMessage {
    NewMessage {
        scope: who.scope(chat_no(chat)),
        sender_id: who.user_id.clone(),
        sender_role: who.role,
        body: body(text),
        client_message_id: None,
        now,
    }
}

/// The reader's summary as (totalUnread, unreadChats), checked to be its application's.
pub async fn summary(store: &Store, who: &UserIdentity) -> (u64, u64) {
    let s = store.unread_summary(who).await.expect("unread_summary");
    assert_eq!(&s.app, &who.app);
    (s.total_unread, s.unread_chats)
}

pub async fn unread_follows_watermarks(store: Store) {
    // Given a chat where the customer sent two messages.
    let app = create_app(&store, "app_unread").await;
    create_chat(&store, &app, "cust-1", at(1)).await;
    let customer = reader(&app, "cust-1", Role::Customer);
    let ann = reader(&app, "agent-ann", Role::Agent);
    let bob = reader(&app, "agent-bob", Role::Agent);
    for (i, text) in ["hello", "anyone?"].iter().enumerate() {
        store
            .send_message(sent_by(&customer, 1, text, at(10 + i as i64)))
            .await
            .unwrap();
    }

    // Then the sender has read them and the agents have not.
    let chat = get_chat(&store, &agent_scope(&app, 1)).await;
    assert_eq!(
        (chat.customer_last_read, chat.agents_last_read),
        (2, 0),
        "a send moves its sender's watermark"
    );
    assert_eq!(
        (
            chat.unread_for(Role::Customer),
            chat.unread_for(Role::Agent)
        ),
        (0, 2)
    );
    assert_eq!(summary(&store, &ann).await, (2, 1));
    assert_eq!(
        summary(&store, &bob).await,
        (2, 1),
        "agents share one badge"
    );
    assert_eq!(summary(&store, &customer).await, (0, 0));

    // When one agent reads up to 1: its own and the team's watermark move.
    let receipt = mark(&store, &ann, 1, Some(1)).await.unwrap();
    assert_eq!(
        receipt,
        ReadReceipt {
            app: app.clone(),
            chat_number: chat_no(1),
            reader_id: user("agent-ann"),
            reader_role: Role::Agent,
            last_read_number: 1,
            unread_count: 1,
        }
    );
    assert_eq!(summary(&store, &bob).await, (1, 1));

    // When another agent reads everything (no upTo): the team has read all.
    let receipt = mark(&store, &bob, 1, None).await.unwrap();
    assert_eq!((receipt.last_read_number, receipt.unread_count), (2, 0));
    assert_eq!(summary(&store, &ann).await, (0, 0));
    // The first agent's own watermark stays where it read; the team's is 2.
    let receipt = mark(&store, &ann, 1, Some(1)).await.unwrap();
    assert_eq!((receipt.last_read_number, receipt.unread_count), (1, 0));
    assert_eq!(
        get_chat(&store, &agent_scope(&app, 1))
            .await
            .agents_last_read,
        2
    );

    // An older upTo changes nothing; one beyond the last message is BadInput.
    let receipt = mark(&store, &bob, 1, Some(1)).await.unwrap();
    assert_eq!((receipt.last_read_number, receipt.unread_count), (2, 0));
    assert_code(
        mark(&store, &bob, 1, Some(3)).await,
        ErrorCode::BadInput,
        "upTo beyond",
    );

    // When an agent answers: unread for the customer, and the agents' watermark moves.
    store
        .send_message(sent_by(&ann, 1, "hi!", at(20)))
        .await
        .unwrap();
    assert_eq!(summary(&store, &customer).await, (1, 1));
    assert_eq!(summary(&store, &ann).await, (0, 0));
    let receipt = mark(&store, &ann, 1, Some(2)).await.unwrap();
    assert_eq!(
        receipt.last_read_number, 3,
        "sending moved the sender's own watermark"
    );

    // A deleted unread message still counts (it shows as a tombstone until read).
    store
        .delete_message(change(&agent_scope(&app, 1), 3, None, at(30)))
        .await
        .unwrap();
    assert_eq!(summary(&store, &customer).await, (1, 1));
    let receipt = mark(&store, &customer, 1, None).await.unwrap();
    assert_eq!(
        receipt,
        ReadReceipt {
            app: app.clone(),
            chat_number: chat_no(1),
            reader_id: user("cust-1"),
            reader_role: Role::Customer,
            last_read_number: 3,
            unread_count: 0,
        }
    );
    assert_eq!(summary(&store, &customer).await, (0, 0));

    // Another customer's chat does not exist for a customer, nor another app's for anyone.
    let stranger = reader(&app, "cust-2", Role::Customer);
    assert_code(
        mark(&store, &stranger, 1, None).await,
        ErrorCode::NotFound,
        "stranger",
    );
    assert_code(
        mark(&store, &ann, 2, None).await,
        ErrorCode::NotFound,
        "absent chat",
    );
    assert_eq!(summary(&store, &stranger).await, (0, 0));
    let other_app = create_app(&store, "app_unread_other").await;
    assert_eq!(
        summary(&store, &reader(&other_app, "agent-ann", Role::Agent)).await,
        (0, 0)
    );

    // Marking an empty chat read is fine and changes nothing.
    create_chat(&store, &app, "cust-2", at(40)).await;
    let receipt = mark(&store, &stranger, 2, None).await.unwrap();
    assert_eq!((receipt.last_read_number, receipt.unread_count), (0, 0));
}

pub async fn mark_all_read_clears_what_the_reader_sees(store: Store) {
    // Given chats of two customers, each with unread messages on both sides.
    let app = create_app(&store, "app_markall").await;
    let ann = reader(&app, "agent-ann", Role::Agent);
    let c1 = reader(&app, "cust-1", Role::Customer);
    let c2 = reader(&app, "cust-2", Role::Customer);
    for (i, customer) in [&c1, &c2, &c1, &c2, &c1].iter().enumerate() {
        let number = i as u32 + 1;
        create_chat(&store, &app, customer.user_id.as_str(), at(i as i64)).await;
        for who in [*customer, &ann, *customer] {
            store
                .send_message(sent_by(who, number, "text", at(100)))
                .await
                .unwrap();
        }
    }
    assert_eq!(summary(&store, &ann).await, (5, 5));
    assert_eq!(summary(&store, &c1).await, (0, 0));
    mark(&store, &ann, 2, None).await.unwrap();
    let unread = |chats: Vec<ChatNumber>| chats.iter().map(|c| c.get()).collect::<Vec<_>>();
    assert_eq!(
        unread(store.unread_chats(&ann, None, 100).await.unwrap()),
        vec![1, 3, 4, 5]
    );
    assert_eq!(
        unread(store.unread_chats(&ann, Some(chat_no(3)), 1).await.unwrap()),
        vec![4],
        "after is exclusive, limit holds"
    );

    // When an agent answers in every chat, the customers have one unread each.
    for number in 1..=5 {
        store
            .send_message(sent_by(&ann, number, "answer", at(200)))
            .await
            .unwrap();
    }
    assert_eq!(summary(&store, &c1).await, (3, 3));
    assert_eq!(
        unread(store.unread_chats(&c2, None, 100).await.unwrap()),
        vec![2, 4],
        "a customer's unread chats are its own"
    );

    // When the first customer marks all read: its chats only.
    store
        .mark_chats_read(&c1, &[chat_no(1), chat_no(3), chat_no(5)])
        .await
        .unwrap();
    assert_eq!(summary(&store, &c1).await, (0, 0));
    assert_eq!(summary(&store, &c2).await, (2, 2));
    assert!(store.unread_chats(&c1, None, 100).await.unwrap().is_empty());
    for number in [1, 3, 5] {
        assert_eq!(
            get_chat(&store, &agent_scope(&app, number))
                .await
                .customer_last_read,
            4
        );
    }
}

// ---- model-based ---------------------------------------------------------------------------

/// The oracle's view of one chat.
#[derive(Debug, Default, Clone)]
struct ChatModel {
    customer: String,
    last: u32,
    customer_read: u32,
    agents_read: u32,
    own: HashMap<String, u32>,
    /// clientMessageId -> (sender, number)
    sent_ids: BTreeMap<String, (UserIdentity, u32)>,
}

impl ChatModel {
    fn marks(&self) -> ReadMarks {
        ReadMarks {
            last: self.last,
            customer: self.customer_read,
            agents: self.agents_read,
        }
    }
}

/// How many random steps the model-based behaviour takes (`UNREAD_MODEL_STEPS` overrides).
fn model_steps() -> usize {
    std::env::var("UNREAD_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(160)
}

pub async fn unread_counters_equal_a_recount_after_random_interleavings(store: Store) {
    let app = create_app(&store, "app_unread_model").await;
    let agents = [
        reader(&app, "agent-ann", Role::Agent),
        reader(&app, "agent-bob", Role::Agent),
    ];
    let customers = [
        reader(&app, "cust-1", Role::Customer),
        reader(&app, "cust-2", Role::Customer),
        reader(&app, "cust-3", Role::Customer),
    ];
    let owners = [0usize, 0, 1, 1, 2, 0];
    let mut chats: Vec<ChatModel> = Vec::new();
    for (i, owner) in owners.iter().enumerate() {
        let id = customers[*owner].user_id.as_str();
        create_chat(&store, &app, id, at(i as i64)).await;
        chats.push(ChatModel {
            customer: id.to_owned(),
            ..ChatModel::default()
        });
    }
    let seed: u64 = std::env::var("UNREAD_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0005);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut now = 1_000;

    for step in 0..model_steps() {
        now += 1;
        let index = rng.random_range(0..chats.len());
        let number = index as u32 + 1;
        let owner = customers[owners[index]].clone();
        let agent = agents[rng.random_range(0..agents.len())].clone();
        let who = if rng.random_bool(0.5) { owner } else { agent };
        let what = rng.random_range(0..100);
        let context = format!("seed {seed:#x} step {step}");
        let chat = &mut chats[index];
        match what {
            // A send, sometimes with a clientMessageId.
            0..=39 => {
                let mut new = sent_by(&who, number, "message", at(now));
                let id = format!("cmid-{step}");
                if rng.random_bool(0.5) {
                    new.client_message_id = Some(cmid(&id));
                }
                let sent = store.send_message(new.clone()).await.expect("send");
                assert!(sent.created, "{context}");
                let after = chat.marks().after_send(who.role);
                (chat.last, chat.customer_read, chat.agents_read) =
                    (after.last, after.customer, after.agents);
                assert_eq!(sent.message.number.get(), chat.last, "{context}");
                if who.role == Role::Agent {
                    chat.own.insert(who.user_id.as_str().to_owned(), chat.last);
                }
                if new.client_message_id.is_some() {
                    chat.sent_ids.insert(id, (who.clone(), chat.last));
                }
            }
            // A duplicated delivery: the same send again with its clientMessageId.
            40..=49 => {
                let Some((id, (sender, sent_number))) = chat
                    .sent_ids
                    .iter()
                    .nth(rng.random_range(0..chat.sent_ids.len().max(1)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                else {
                    continue;
                };
                let mut new = sent_by(&sender, number, "message", at(now));
                new.client_message_id = Some(cmid(&id));
                let sent = store.send_message(new).await.expect("retried send");
                assert!(!sent.created, "{context}: a retry creates nothing");
                assert_eq!(sent.message.number.get(), sent_number, "{context}");
            }
            // markChatRead: to the end, an earlier number, or one beyond the end.
            50..=84 => {
                let up_to = match rng.random_range(0..4) {
                    0 => None,
                    1 => Some(chat.last + 1),
                    _ if chat.last == 0 => None,
                    _ => Some(rng.random_range(1..=chat.last)),
                };
                let result = mark(&store, &who, number, up_to).await;
                if up_to.is_some_and(|n| n > chat.last) {
                    assert_code(result, ErrorCode::BadInput, &context);
                    continue;
                }
                let receipt = result.expect("mark_chat_read");
                let target = up_to.unwrap_or(chat.last);
                let after = chat.marks().after_read(who.role, target);
                (chat.customer_read, chat.agents_read) = (after.customer, after.agents);
                let own = match who.role {
                    Role::Customer => chat.customer_read,
                    Role::Agent => {
                        let own = chat.own.entry(who.user_id.as_str().to_owned()).or_default();
                        *own = (*own).max(target);
                        *own
                    }
                };
                assert_eq!(
                    (receipt.last_read_number, receipt.unread_count),
                    (own, after.unread_for(who.role)),
                    "{context}: receipt of {who:?}"
                );
            }
            // markAllRead, a page of two chats at a time as the service pages.
            85..=92 => {
                let mut after = None;
                loop {
                    let page = store
                        .unread_chats(&who, after, 2)
                        .await
                        .expect("unread_chats");
                    let Some(last) = page.last().copied() else {
                        break;
                    };
                    store
                        .mark_chats_read(&who, &page)
                        .await
                        .expect("mark_chats_read");
                    after = Some(last);
                }
                // Every chat with something unread for the reader's side was marked to
                // its end (an agent's own watermark with it); the others were not visited.
                for chat in chats.iter_mut() {
                    if who.role == Role::Customer && chat.customer != who.user_id.as_str() {
                        continue;
                    }
                    if chat.marks().unread_for(who.role) == 0 {
                        continue;
                    }
                    let after = chat.marks().after_read(who.role, chat.last);
                    (chat.customer_read, chat.agents_read) = (after.customer, after.agents);
                    if who.role == Role::Agent {
                        chat.own.insert(who.user_id.as_str().to_owned(), chat.last);
                    }
                }
            }
            // A delete (by an agent, who may delete any message).
            _ => {
                if chat.last == 0 {
                    continue;
                }
                let n = rng.random_range(1..=chat.last);
                store
                    .delete_message(change(&agent_scope(&app, number), n, None, at(now)))
                    .await
                    .expect("delete");
            }
        }
        check_against_recount(&store, &app, &chats, &agents, &customers, &context).await;
    }
}

async fn check_against_recount(
    store: &Store,
    app: &AppToken,
    chats: &[ChatModel],
    agents: &[UserIdentity],
    customers: &[UserIdentity],
    context: &str,
) {
    let mut team = (0u64, 0u64);
    let mut per_customer: HashMap<&str, (u64, u64)> = HashMap::new();
    for (i, model) in chats.iter().enumerate() {
        let chat = get_chat(store, &agent_scope(app, i as u32 + 1)).await;
        assert_eq!(
            (
                chat.messages_count,
                chat.customer_last_read,
                chat.agents_last_read
            ),
            (model.last, model.customer_read, model.agents_read),
            "{context}: chat {}",
            i + 1
        );
        let marks = model.marks();
        let agents_unread = u64::from(marks.unread_for(Role::Agent));
        team.0 += agents_unread;
        team.1 += u64::from(agents_unread > 0);
        let customer = per_customer.entry(&model.customer).or_default();
        let customer_unread = u64::from(marks.unread_for(Role::Customer));
        customer.0 += customer_unread;
        customer.1 += u64::from(customer_unread > 0);
    }
    for agent in agents {
        assert_eq!(summary(store, agent).await, team, "{context}: {agent:?}");
    }
    for customer in customers {
        let expected = per_customer
            .get(customer.user_id.as_str())
            .copied()
            .unwrap_or_default();
        assert_eq!(
            summary(store, customer).await,
            expected,
            "{context}: {customer:?}"
        );
    }
}
