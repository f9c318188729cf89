//! Small builders for the behaviours: parsed values, scopes, and one-line writes that
//! panic with context when the store refuses.

use std::sync::Arc;

use chat_domain::{
    AppName, AppToken, Caller, Chat, ChatCursor, ChatNumber, ChatQuery, ChatScope, ChatStore,
    ClientMessageId, ErrorCode, Message, MessageBody, MessageChange, MessageNumber, MessageRange,
    NewApplication, NewChat, NewMessage, Result, Role, Subject, Timestamp, UserId, UserIdentity,
};

pub type Store = Arc<dyn ChatStore>;

/// A fixed point in time plus `ms`: deterministic timestamps.
pub fn at(ms: i64) -> Timestamp {
    Timestamp(1_800_000_000_000 + ms)
}

pub fn token(raw: &str) -> AppToken {
    AppToken::parse(raw).expect("valid app token")
}

pub fn user(raw: &str) -> UserId {
    UserId::parse(raw).expect("valid user id")
}

pub fn body(raw: &str) -> MessageBody {
    MessageBody::parse(raw).expect("valid body")
}

pub fn subject(raw: &str) -> Subject {
    Subject::parse(raw)
        .expect("valid subject")
        .expect("non-blank subject")
}

pub fn cmid(raw: &str) -> ClientMessageId {
    ClientMessageId::parse(raw).expect("valid clientMessageId")
}

pub fn chat_no(n: u32) -> ChatNumber {
    ChatNumber::new(i64::from(n)).expect("valid chat number")
}

pub fn msg_no(n: u32) -> MessageNumber {
    MessageNumber::new(i64::from(n)).expect("valid message number")
}

/// A user of the application signed in with `role`, as the service sees one.
pub fn caller(app: &AppToken, id: &str, role: Role) -> Caller {
    Caller::User(UserIdentity {
        app: app.clone(),
        user_id: user(id),
        role,
    })
}

/// The scope of an agent (sees every chat of the application).
pub fn agent_scope(app: &AppToken, chat: u32) -> ChatScope {
    ChatScope {
        app: app.clone(),
        chat: chat_no(chat),
        customer: None,
    }
}

/// The scope of a customer (sees only its own chats).
pub fn customer_scope(app: &AppToken, chat: u32, customer: &str) -> ChatScope {
    ChatScope {
        app: app.clone(),
        chat: chat_no(chat),
        customer: Some(user(customer)),
    }
}

pub async fn create_app(store: &Store, raw_token: &str) -> AppToken {
    let token = token(raw_token);
    store
        .create_application(NewApplication {
            token: token.clone(),
            name: AppName::parse(&format!("App {raw_token}")).expect("valid name"),
            now: at(0),
        })
        .await
        .expect("create_application");
    token
}

pub fn new_chat(app: &AppToken, customer: &str, now: Timestamp) -> NewChat {
    NewChat {
        app: app.clone(),
        customer_id: user(customer),
        subject: None,
        now,
    }
}

pub async fn create_chat(store: &Store, app: &AppToken, customer: &str, now: Timestamp) -> Chat {
    store
        .create_chat(new_chat(app, customer, now))
        .await
        .expect("create_chat")
}

/// A message from an agent (`sender` "agent-1") unless `scope` is a customer's, in
/// which case that customer sends it.
pub fn new_message(scope: &ChatScope, text: &str, now: Timestamp) -> NewMessage {
    let (sender_id, sender_role) = match &scope.customer {
        Some(customer) => (customer.clone(), Role::Customer),
        None => (user("agent-1"), Role::Agent),
    };
    NewMessage {
        scope: scope.clone(),
        sender_id,
        sender_role,
        body: body(text),
        client_message_id: None,
        now,
    }
}

pub async fn send(store: &Store, scope: &ChatScope, text: &str, now: Timestamp) -> Message {
    let sent = store
        .send_message(new_message(scope, text, now))
        .await
        .expect("send_message");
    assert!(
        sent.created,
        "a send without clientMessageId always creates"
    );
    sent.message
}

pub async fn get_chat(store: &Store, scope: &ChatScope) -> Chat {
    store
        .chat(scope)
        .await
        .expect("chat")
        .unwrap_or_else(|| panic!("chat {} should be visible to {scope:?}", scope.chat))
}

pub fn change(
    scope: &ChatScope,
    number: u32,
    only_sender: Option<&str>,
    now: Timestamp,
) -> MessageChange {
    MessageChange {
        scope: scope.clone(),
        number: msg_no(number),
        only_sender: only_sender.map(user),
        now,
    }
}

pub fn range(
    after: Option<u32>,
    before: Option<u32>,
    newest_first: bool,
    limit: u32,
) -> MessageRange {
    MessageRange {
        after,
        before,
        newest_first,
        limit,
    }
}

pub fn query(app: &AppToken, limit: u32) -> ChatQuery {
    ChatQuery {
        app: app.clone(),
        customer: None,
        status: None,
        filter: Default::default(),
        after: None,
        limit,
    }
}

pub fn numbers_of_chats(chats: &[Chat]) -> Vec<u32> {
    chats.iter().map(|c| c.number.get()).collect()
}

pub fn numbers_of_messages(messages: &[Message]) -> Vec<u32> {
    messages.iter().map(|m| m.number.get()).collect()
}

/// Asserts the error code, with the error in the message when it differs.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T>, code: ErrorCode, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected {code}, got Ok({value:?})"),
        Err(e) => assert_eq!(e.code(), code, "{what}: expected {code}, got {e:?}"),
    }
}

/// Every chat of the query, page by page (`page` at a time), each next page starting
/// after the last chat of the previous one, as the service builds its cursors.
pub async fn all_chat_pages(store: &Store, mut q: ChatQuery, page: u32) -> Vec<Vec<Chat>> {
    q.limit = page;
    let mut pages = Vec::new();
    loop {
        let items = store.chats(&q).await.expect("chats");
        assert!(
            items.len() <= page as usize,
            "a page never exceeds the limit"
        );
        let Some(last) = items.last() else {
            break;
        };
        q.after = Some(ChatCursor {
            last_activity_at: last.last_activity_at,
            number: last.number,
        });
        let full = items.len() == page as usize;
        pages.push(items);
        if !full {
            break;
        }
        assert!(pages.len() < 10_000, "paging does not terminate");
    }
    pages
}
