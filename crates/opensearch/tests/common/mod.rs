//! Shared by the OpenSearch adapter's tests.
#![allow(dead_code)]

use chat_domain::*;

pub fn key(app: &str, chat: i64, number: i64) -> DocKey {
    DocKey {
        app: AppToken::parse(app).unwrap(),
        chat: ChatNumber::new(chat).unwrap(),
        number: MessageNumber::new(number).unwrap(),
    }
}

pub fn upsert(app: &str, chat: i64, number: i64, body: &str, version: u64) -> IndexOp {
    IndexOp::Upsert(SearchDocument {
        key: key(app, chat, number),
        body: body.to_owned(),
        sender_id: UserId::parse("cust-1").unwrap(),
        created_at: Timestamp(1_795_255_200_000 + number),
        version,
    })
}

pub fn delete(app: &str, chat: i64, number: i64, version: u64) -> IndexOp {
    IndexOp::Delete {
        key: key(app, chat, number),
        version,
    }
}

pub fn request(
    app: &str,
    chat: i64,
    query: &str,
    after: Option<SearchCursor>,
    limit: u32,
) -> SearchRequest {
    SearchRequest {
        app: AppToken::parse(app).unwrap(),
        scope: chat_domain::search::SearchScope::Chat(ChatNumber::new(chat).unwrap()),
        query: SearchQuery::parse(query).unwrap(),
        after,
        limit,
    }
}
