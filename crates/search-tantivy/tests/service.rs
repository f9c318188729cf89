//! `ChatService::search_messages` over the SQLite store, its outbox feed and the tantivy
//! index: access rules, the feed's crash safety, and what the store says about a hit.

use std::sync::Arc;

use chat_domain::*;
use chat_embedded::SqliteStore;
use chat_embedded::feed::drain_outbox;
use chat_search_tantivy::TantivyIndex;

struct World {
    store: Arc<SqliteStore>,
    index: Arc<TantivyIndex>,
    service: ChatService,
    app: AppToken,
}

fn user(app: &AppToken, id: &str, role: Role) -> Caller {
    Caller::User(UserIdentity {
        app: app.clone(),
        user_id: UserId::parse(id).unwrap(),
        role,
    })
}

async fn world() -> World {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let index = Arc::new(TantivyIndex::in_memory().unwrap());
    let service = ChatService::new(store.clone(), ServerKey::generate(), Arc::new(SystemClock))
        .with_search(index.clone());
    let app = service
        .create_application(&Caller::Admin, AppName::parse("Acme").unwrap())
        .await
        .unwrap()
        .application
        .token;
    World {
        store,
        index,
        service,
        app,
    }
}

impl World {
    async fn chat(&self, customer: &str) -> ChatNumber {
        self.service
            .create_chat(
                &user(&self.app, customer, Role::Customer),
                &self.app,
                None,
                None,
            )
            .await
            .unwrap()
            .number
    }

    async fn send(&self, customer: &str, chat: ChatNumber, body: &str) -> Message {
        self.service
            .send_message(
                &user(&self.app, customer, Role::Customer),
                &self.app,
                chat,
                MessageBody::parse(body).unwrap(),
                None,
            )
            .await
            .unwrap()
            .message
    }

    async fn drain(&self) {
        let drained = drain_outbox(&self.store, self.index.as_ref(), 1000)
            .await
            .unwrap();
        assert_eq!(drained.failed, 0);
        assert_eq!(self.store.outbox_len().await.unwrap(), 0);
    }

    async fn search(
        &self,
        caller: &Caller,
        chat: impl Into<Option<ChatNumber>>,
        query: &str,
        limit: i64,
        token: Option<&str>,
    ) -> Result<Page<Message>> {
        self.service
            .search_messages(
                caller,
                &self.app,
                chat.into(),
                None,
                SearchQuery::parse(query).unwrap(),
                PageSize::parse(Some(limit)).unwrap(),
                token,
            )
            .await
    }

    async fn bodies(&self, caller: &Caller, chat: ChatNumber, query: &str) -> Vec<String> {
        let page = self.search(caller, chat, query, 100, None).await.unwrap();
        page.items.into_iter().map(|m| m.body).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_searches_only_its_own_chats() {
    let w = world().await;
    let mine = w.chat("alice").await;
    let theirs = w.chat("bob").await;
    w.send("alice", mine, "my refund").await;
    w.send("bob", theirs, "bob's refund").await;
    w.drain().await;
    let alice = user(&w.app, "alice", Role::Customer);
    assert_eq!(w.bodies(&alice, mine, "fund").await, vec!["my refund"]);
    let err = w
        .search(&alice, theirs, "fund", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    let absent = ChatNumber::new(99).unwrap();
    let err = w
        .search(&alice, absent, "fund", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotFound);
    // An agent sees every chat of its application; another application's agent none.
    let agent = user(&w.app, "agent", Role::Agent);
    assert_eq!(w.bodies(&agent, theirs, "fund").await, vec!["bob's refund"]);
    let stranger = user(&AppToken::parse("app_other").unwrap(), "agent", Role::Agent);
    let err = w
        .search(&stranger, theirs, "fund", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = w
        .search(&Caller::Admin, theirs, "fund", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = w
        .search(&Caller::Anonymous, theirs, "fund", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_flow_through_the_outbox() {
    let w = world().await;
    let chat = w.chat("alice").await;
    let alice = user(&w.app, "alice", Role::Customer);
    let first = w.send("alice", chat, "Café order").await;
    let second = w.send("alice", chat, "second order").await;
    assert_eq!(w.store.outbox_len().await.unwrap(), 2);
    w.drain().await;
    assert_eq!(w.bodies(&alice, chat, "cafe").await, vec!["Café order"]);

    // A delete not indexed yet: the store's word counts, the hit is left out.
    w.service
        .delete_message(&alice, &w.app, chat, second.number)
        .await
        .unwrap();
    assert_eq!(w.bodies(&alice, chat, "order").await, vec!["Café order"]);
    // An edit: the hit shows the new body at once, matches by it once indexed.
    w.service
        .edit_message(
            &alice,
            &w.app,
            chat,
            first.number,
            MessageBody::parse("Tea please").unwrap(),
        )
        .await
        .unwrap();
    w.drain().await;
    assert!(w.bodies(&alice, chat, "order").await.is_empty());
    assert!(w.bodies(&alice, chat, "cafe").await.is_empty());
    assert_eq!(w.bodies(&alice, chat, "tea").await, vec!["Tea please"]);
    // Re-delivering everything (a reindex) changes nothing.
    assert_eq!(w.store.enqueue_reindex(None, None).await.unwrap(), 2);
    let docs = w.index.num_docs();
    w.drain().await;
    assert_eq!(w.index.num_docs(), docs);
    assert_eq!(w.bodies(&alice, chat, "tea").await, vec!["Tea please"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_signed_and_bound_to_chat_and_query() {
    let w = world().await;
    let chat = w.chat("alice").await;
    let other = w.chat("alice").await;
    let alice = user(&w.app, "alice", Role::Customer);
    for i in 1..=25 {
        w.send("alice", chat, &format!("ticket {i}")).await;
    }
    w.drain().await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = w
            .search(&alice, chat, "ticket", 10, token.as_deref())
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|m| m.number.get()));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        (1..=25).rev().collect::<Vec<_>>(),
        "newest first, each once"
    );

    let first = w.search(&alice, chat, "ticket", 10, None).await.unwrap();
    let next = first.next_token.unwrap();
    for (chat, query) in [(chat, "tick"), (other, "ticket")] {
        let err = w
            .search(&alice, chat, query, 10, Some(&next))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadInput);
    }
    let err = w
        .search(&alice, chat, "ticket", 10, Some("forged.token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadInput);
    // An exactly full last page has no token.
    let page = w.search(&alice, chat, "ticket", 25, None).await.unwrap();
    assert_eq!(page.items.len(), 25);
    assert!(page.next_token.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_an_index_says_so() {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let service = ChatService::new(store, ServerKey::generate(), Arc::new(SystemClock));
    let app = AppToken::parse("app_x").unwrap();
    let err = service
        .search_messages(
            &user(&app, "a", Role::Agent),
            &app,
            Some(ChatNumber::new(1).unwrap()),
            None,
            SearchQuery::parse("x").unwrap(),
            PageSize::parse(None).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_searches_the_whole_application_and_hits_carry_their_chat() {
    // Given two chats of this application and a chat of another application in the same
    // store and index, all mentioning an order number.
    let w = world().await;
    let first = w.chat("alice").await;
    let second = w.chat("bob").await;
    w.send("alice", first, "order 4471 is late").await;
    w.send("bob", second, "where is order 4471?").await;
    w.send("bob", second, "nothing to see").await;
    let other_app = w
        .service
        .create_application(&Caller::Admin, AppName::parse("Other").unwrap())
        .await
        .unwrap()
        .application
        .token;
    let other_customer = user(&other_app, "carol", Role::Customer);
    let other_chat = w
        .service
        .create_chat(&other_customer, &other_app, None, None)
        .await
        .unwrap()
        .number;
    w.service
        .send_message(
            &other_customer,
            &other_app,
            other_chat,
            MessageBody::parse("my order 4471 too").unwrap(),
            None,
        )
        .await
        .unwrap();
    w.drain().await;

    // When an agent searches without a chat number, then it finds both chats' messages,
    // newest first, each with its chat number, and nothing of the other application.
    let agent = user(&w.app, "agent", Role::Agent);
    let page = w.search(&agent, None, "4471", 20, None).await.unwrap();
    let found: Vec<(u32, &str)> = page
        .items
        .iter()
        .map(|m| (m.chat_number.get(), m.body.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (second.get(), "where is order 4471?"),
            (first.get(), "order 4471 is late")
        ]
    );
    assert!(page.items.iter().all(|m| m.app == w.app));

    // Filtered by the inbox: the agent's own chats, a status; a filter with a chat number
    // is BadInput; a customer filters by status only.
    w.service
        .assign_chat(
            &agent,
            &w.app,
            first,
            Some(UserId::parse("agent").unwrap()),
            None,
        )
        .await
        .unwrap();
    let filtered = |assignee: Option<&str>, status: Option<ChatStatus>| ChatFilterArgs {
        assignee: assignee.map(str::to_owned),
        team: None,
        status,
    };
    let search_in = |who: Caller, chat: Option<ChatNumber>, filter: ChatFilterArgs| {
        let w = &w;
        async move {
            w.service
                .search_messages(
                    &who,
                    &w.app,
                    chat,
                    Some(&filter),
                    SearchQuery::parse("4471").unwrap(),
                    PageSize::parse(None).unwrap(),
                    None,
                )
                .await
        }
    };
    let mine = search_in(agent.clone(), None, filtered(Some("ME"), None))
        .await
        .unwrap();
    let bodies: Vec<&str> = mine.items.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["order 4471 is late"]);
    let unassigned = search_in(agent.clone(), None, filtered(Some("UNASSIGNED"), None))
        .await
        .unwrap();
    let bodies: Vec<&str> = unassigned.items.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["where is order 4471?"]);
    let resolved = search_in(
        agent.clone(),
        None,
        filtered(None, Some(ChatStatus::Resolved)),
    )
    .await
    .unwrap();
    assert!(resolved.items.is_empty());
    let both = search_in(agent.clone(), Some(first), filtered(Some("ME"), None))
        .await
        .unwrap_err();
    assert_eq!(both.code(), ErrorCode::BadInput);
    let customer = user(&w.app, "alice", Role::Customer);
    let refused = search_in(customer.clone(), None, filtered(Some("ME"), None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Forbidden);
    let own_open = search_in(customer, None, filtered(None, Some(ChatStatus::Open)))
        .await
        .unwrap();
    let bodies: Vec<&str> = own_open.items.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["order 4471 is late"]);

    // And the other application's agent finds only its own.
    let other_agent = user(&other_app, "agent", Role::Agent);
    let page = w
        .service
        .search_messages(
            &other_agent,
            &other_app,
            None,
            None,
            SearchQuery::parse("4471").unwrap(),
            PageSize::parse(None).unwrap(),
            None,
        )
        .await
        .unwrap();
    let bodies: Vec<&str> = page.items.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["my order 4471 too"]);
    // A user of another application asking for this one is refused.
    let err = w
        .search(&other_agent, None, "4471", 20, None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_without_a_chat_number_searches_only_its_own_chats() {
    // Given alice with two chats, bob with one, all mentioning a refund.
    let w = world().await;
    let a1 = w.chat("alice").await;
    let b1 = w.chat("bob").await;
    let a2 = w.chat("alice").await;
    w.send("alice", a1, "refund please").await;
    w.send("bob", b1, "bob wants a refund").await;
    w.send("alice", a2, "refund again").await;
    w.drain().await;

    // When alice searches without a chat number, then she sees her two chats' messages
    // and never bob's.
    let alice = user(&w.app, "alice", Role::Customer);
    let page = w.search(&alice, None, "refund", 20, None).await.unwrap();
    let found: Vec<(u32, &str)> = page
        .items
        .iter()
        .map(|m| (m.chat_number.get(), m.body.as_str()))
        .collect();
    assert_eq!(
        found,
        [(a2.get(), "refund again"), (a1.get(), "refund please")]
    );
    // And a customer with no chat finds nothing, not the others' messages.
    let dave = user(&w.app, "dave", Role::Customer);
    let page = w.search(&dave, None, "refund", 20, None).await.unwrap();
    assert!(page.items.is_empty() && page.next_token.is_none());
    // And bob's token replayed by alice does not turn into bob's scope.
    let bob = user(&w.app, "bob", Role::Customer);
    for i in 0..3 {
        w.send("bob", b1, &format!("refund {i}")).await;
    }
    w.drain().await;
    let bobs = w.search(&bob, None, "refund", 1, None).await.unwrap();
    let err = w
        .search(&alice, None, "refund", 1, bobs.next_token.as_deref())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_across_chats_return_every_hit_once_in_ranking_order() {
    // Given 30 matching messages over 4 chats, some scoring more (a whole word).
    let w = world().await;
    let mut chats = Vec::new();
    for c in 0..4 {
        chats.push(w.chat(&format!("customer-{c}")).await);
    }
    let mut sent = Vec::new();
    for i in 0..30 {
        let chat = chats[i % 4];
        let whole = i % 3 == 0;
        let body = if whole {
            format!("parcel {i}")
        } else {
            format!("parcels {i}")
        };
        let m = w.send(&format!("customer-{}", i % 4), chat, &body).await;
        sent.push((
            whole,
            m.created_at.0,
            m.chat_number.to_string(),
            m.number.get(),
            body,
        ));
    }
    w.drain().await;
    // When an agent pages through app-wide results 7 at a time.
    let agent = user(&w.app, "agent", Role::Agent);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = w
            .search(&agent, None, "parcel", 7, token.as_deref())
            .await
            .unwrap();
        seen.extend(page.items.into_iter().map(|m| m.body));
        match page.next_token {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    // Then every message comes once: the whole words first, then newest first (creation
    // time, then the chat's key as text, then the number).
    sent.sort_by(|a, b| (b.0, b.1, &b.2, b.3).cmp(&(a.0, a.1, &a.2, a.3)));
    let expected: Vec<String> = sent.into_iter().map(|s| s.4).collect();
    assert_eq!(seen, expected);
}
