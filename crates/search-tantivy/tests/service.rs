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
        chat: ChatNumber,
        query: &str,
        limit: i64,
        token: Option<&str>,
    ) -> Result<Page<Message>> {
        self.service
            .search_messages(
                caller,
                &self.app,
                chat,
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
            ChatNumber::new(1).unwrap(),
            SearchQuery::parse("x").unwrap(),
            PageSize::parse(None).unwrap(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal);
}
