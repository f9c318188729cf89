//! Every request body this crate sends, built in one place and held against golden JSON
//! (`tests/golden/*.json`): the index settings and mapping (and the index template that
//! carries them), alias changes, reindexing, bulk lines, the search query.
//!
//! The mapping carries `chat_domain::search`'s rules:
//! - identifiers (`app`, `chat` = `app/chat`, `sender`) are `keyword`, and every filter is
//!   a `term` on a keyword: a `match` on an analyzed token would split it and match
//!   strangers' documents;
//! - the indexer sends the body in NFKC (`chat_domain::search::normalize`, the same code
//!   that tantivy's analyzer runs), so no normalization plugin is needed;
//! - words are cut as `chat_domain::search::words` does, by two `pattern` tokenizers that
//!   emit their matches (`group: 0`): `chat_latin_words` = runs of
//!   `[\p{IsAlphabetic}\p{N}]` (the properties of Rust's `char::is_alphanumeric`) minus
//!   the CJK class, `chat_cjk_words` = runs of the CJK class, both built from
//!   `chat_domain::search::CJK_RANGES`; then `lowercase` and `asciifolding` (the same
//!   folding table as tantivy's `AsciiFoldingFilter`);
//! - Latin words: `body` (whole words), `body.grams` (n-grams of 3..=20 characters, and the
//!   word itself, so a 1–2-character word is its own term) and `body.prefixes` (edge
//!   n-grams of 3..=20);
//! - CJK words: `body.cjk_words` (whole words), `body.cjk` (n-grams of 1..=20: any
//!   substring of up to 20 characters is a term) and `body.cjk_prefixes` (edge n-grams of
//!   1..=20);
//! - query words are analyzed with `chat_query_grams` / `chat_cjk_query_grams`: a folded
//!   word of up to 20 characters is one term; a longer one becomes its windows of 20 (the
//!   `condition` filter), all of which must match;
//! - scores are `constant_score` boosts (2 whole word, 1 word start), never BM25, so they
//!   equal tantivy's and stay put for `search_after` paging;
//! - documents are routed by chat (`routing` = `app/chat`): a chat lives in one shard and a
//!   search of one chat asks only that shard; a search across chats (an agent's whole
//!   application, a customer's chats as a `terms` filter) asks every shard.

use chat_domain::limits::SEARCH_GRAM_MAX_CHARS;
use chat_domain::search::{
    CJK_RANGES, PREFIX_SCORE, SEARCH_GRAM_MIN_CHARS, SearchScope, WHOLE_WORD_SCORE, WordKind,
    normalize,
};
use chat_domain::{IndexOp, SearchRequest, chat_key};
use serde_json::{Value, json};

/// The CJK characters as a Java regex class body (`\x{3041}-\x{3096}...`).
fn cjk_class() -> String {
    CJK_RANGES
        .iter()
        .map(|&(low, high)| format!("\\x{{{:X}}}-\\x{{{:X}}}", low as u32, high as u32))
        .collect()
}

/// The index settings (shards, replicas, refresh) and the analysis settings.
fn settings(shards: u32, replicas: u32, refresh_interval: &str) -> Value {
    let cjk = cjk_class();
    let fold = |extra: &str| -> Value {
        let mut filters = vec![json!("lowercase"), json!("asciifolding")];
        if !extra.is_empty() {
            filters.push(json!(extra));
        }
        Value::Array(filters)
    };
    json!({
        "index": {
            "number_of_shards": shards,
            "number_of_replicas": replicas,
            "refresh_interval": refresh_interval,
            "max_ngram_diff": SEARCH_GRAM_MAX_CHARS - 1,
        },
        "analysis": {
            "tokenizer": {
                "chat_latin_words": {
                    "type": "pattern",
                    "pattern": format!("[\\p{{IsAlphabetic}}\\p{{N}}&&[^{cjk}]]+"),
                    "group": 0
                },
                "chat_cjk_words": {
                    "type": "pattern",
                    "pattern": format!("[{cjk}]+"),
                    "group": 0
                }
            },
            "filter": {
                "chat_grams": {
                    "type": "ngram",
                    "min_gram": SEARCH_GRAM_MIN_CHARS,
                    "max_gram": SEARCH_GRAM_MAX_CHARS,
                    "preserve_original": true
                },
                "chat_prefixes": {
                    "type": "edge_ngram",
                    "min_gram": SEARCH_GRAM_MIN_CHARS,
                    "max_gram": SEARCH_GRAM_MAX_CHARS
                },
                "chat_cjk_grams": {
                    "type": "ngram",
                    "min_gram": 1,
                    "max_gram": SEARCH_GRAM_MAX_CHARS
                },
                "chat_cjk_prefixes": {
                    "type": "edge_ngram",
                    "min_gram": 1,
                    "max_gram": SEARCH_GRAM_MAX_CHARS
                },
                "chat_windows": {
                    "type": "ngram",
                    "min_gram": SEARCH_GRAM_MAX_CHARS,
                    "max_gram": SEARCH_GRAM_MAX_CHARS
                },
                "chat_long_words_to_windows": {
                    "type": "condition",
                    "filter": ["chat_windows"],
                    "script": {
                        "source": format!("token.getTerm().length() > {SEARCH_GRAM_MAX_CHARS}")
                    }
                }
            },
            "analyzer": {
                "chat_words": {
                    "type": "custom", "tokenizer": "chat_latin_words", "filter": fold("")
                },
                "chat_grams": {
                    "type": "custom", "tokenizer": "chat_latin_words", "filter": fold("chat_grams")
                },
                "chat_prefixes": {
                    "type": "custom", "tokenizer": "chat_latin_words",
                    "filter": fold("chat_prefixes")
                },
                "chat_query_grams": {
                    "type": "custom", "tokenizer": "chat_latin_words",
                    "filter": fold("chat_long_words_to_windows")
                },
                "chat_cjk_words": {
                    "type": "custom", "tokenizer": "chat_cjk_words", "filter": fold("")
                },
                "chat_cjk_grams": {
                    "type": "custom", "tokenizer": "chat_cjk_words",
                    "filter": fold("chat_cjk_grams")
                },
                "chat_cjk_prefixes": {
                    "type": "custom", "tokenizer": "chat_cjk_words",
                    "filter": fold("chat_cjk_prefixes")
                },
                "chat_cjk_query_grams": {
                    "type": "custom", "tokenizer": "chat_cjk_words",
                    "filter": fold("chat_long_words_to_windows")
                }
            }
        }
    })
}

/// The mapping.
fn mappings() -> Value {
    let subfield = |analyzer: &str, search_analyzer: &str| {
        json!({
            "type": "text",
            "analyzer": analyzer,
            "search_analyzer": search_analyzer,
            "index_options": "docs",
            "norms": false
        })
    };
    json!({
        "dynamic": "strict",
        "properties": {
            "app": { "type": "keyword" },
            "chat": { "type": "keyword" },
            "sender": { "type": "keyword" },
            "number": { "type": "long" },
            "created_at": { "type": "date", "format": "epoch_millis" },
            "live": { "type": "boolean" },
            "body": {
                "type": "text",
                "analyzer": "chat_words",
                "index_options": "docs",
                "norms": false,
                "fields": {
                    "grams": subfield("chat_grams", "chat_query_grams"),
                    "prefixes": subfield("chat_prefixes", "chat_words"),
                    "cjk_words": subfield("chat_cjk_words", "chat_cjk_words"),
                    "cjk": subfield("chat_cjk_grams", "chat_cjk_query_grams"),
                    "cjk_prefixes": subfield("chat_cjk_prefixes", "chat_cjk_words")
                }
            }
        }
    })
}

/// The index settings and mapping, for `PUT /<index>`.
pub fn create_index(shards: u32, replicas: u32, refresh_interval: &str) -> Value {
    json!({
        "settings": settings(shards, replicas, refresh_interval),
        "mappings": mappings(),
    })
}

/// The index layout this build writes and queries; part of the versioned index names
/// (`<alias>-v<LAYOUT>`). 1 was the layout before CJK words (an index named like the alias).
pub const LAYOUT: u32 = 2;

/// The pattern of the versioned indexes behind `alias`.
pub fn index_pattern(alias: &str) -> String {
    format!("{alias}-v*")
}

/// The first index of this layout behind `alias`: `<alias>-v<LAYOUT>`.
pub fn versioned_index(alias: &str) -> String {
    format!("{alias}-v{LAYOUT}")
}

/// The index template for `PUT /_index_template/<alias>`: every index of the pattern gets
/// this layout's settings and mapping, whoever creates it (a `_reindex` destination, an
/// operator, an automatic creation), so none can get a dynamic mapping.
pub fn index_template(alias: &str, shards: u32, replicas: u32, refresh_interval: &str) -> Value {
    json!({
        "index_patterns": [index_pattern(alias)],
        "priority": 100,
        "template": create_index(shards, replicas, refresh_interval),
        "_meta": { "layout": LAYOUT, "alias": alias }
    })
}

/// The body of `PUT /<alias>-v<LAYOUT>` at the first start: the index with its alias, in
/// one step (another writer never sees the index without the alias).
pub fn create_index_with_alias(
    alias: &str,
    shards: u32,
    replicas: u32,
    refresh_interval: &str,
) -> Value {
    let mut body = create_index(shards, replicas, refresh_interval);
    body["aliases"] = json!({ alias: { "is_write_index": true } });
    body
}

/// `POST /_reindex?wait_for_completion=false`: copies `source` into `dest` keeping each
/// document's version (`version_type: external`: a copy never overwrites a newer write
/// made meanwhile, and copying again is harmless) and routing.
pub fn reindex(source: &str, dest: &str) -> Value {
    json!({
        "source": { "index": source },
        "dest": { "index": dest, "version_type": "external" },
        "conflicts": "proceed"
    })
}

/// `POST /_aliases`: moves `alias` from `old` to `new` atomically.
pub fn swap_alias(alias: &str, old: &[String], new: &str) -> Value {
    let mut actions: Vec<Value> = old
        .iter()
        .map(|index| json!({ "remove": { "index": index, "alias": alias } }))
        .collect();
    actions.push(json!({ "add": { "index": new, "alias": alias, "is_write_index": true } }));
    json!({ "actions": actions })
}

/// The two NDJSON lines of one operation in a `_bulk` body (each ends with `\n`). Both
/// kinds are `index` actions with `version_type: external`: a delete writes a tombstone
/// (`live: false`, no body) so that a late, stale INSERT cannot bring the message back,
/// which a real delete (whose version OpenSearch forgets after `index.gc_deletes`) would
/// allow.
pub fn bulk_lines(index: &str, op: &IndexOp) -> String {
    let key = op.key();
    let action = json!({
        "index": {
            "_index": index,
            "_id": key.id(),
            "routing": key.chat_key(),
            "version": op.version(),
            "version_type": "external"
        }
    });
    let source = match op {
        IndexOp::Upsert(doc) => json!({
            "app": key.app.as_str(),
            "chat": key.chat_key(),
            "number": key.number.get(),
            "sender": doc.sender_id.as_str(),
            "created_at": doc.created_at.0,
            "live": true,
            "body": normalize(&doc.body),
        }),
        IndexOp::Delete { .. } => json!({
            "app": key.app.as_str(),
            "chat": key.chat_key(),
            "number": key.number.get(),
            "live": false,
        }),
    };
    format!("{action}\n{source}\n")
}

/// The `routing` of a search: the chat's key for one chat (one shard is asked), none
/// across chats (every shard is).
pub fn search_routing(request: &SearchRequest) -> Option<String> {
    match &request.scope {
        SearchScope::Chat(chat) => Some(chat_key(&request.app, *chat)),
        SearchScope::Chats(_) | SearchScope::App => None,
    }
}

/// The search body. The scope is a `term` on the `app` keyword, plus a `term` (one chat)
/// or `terms` (a customer's chats) on the `chat` keyword. One chat's hits are sorted by
/// score then number; hits across chats by score, `created_at`, the `chat` keyword and the
/// number (the order tantivy uses), so `search_after` pages them exactly.
pub fn search(request: &SearchRequest) -> Value {
    let mut filter = vec![json!({ "term": { "app": request.app.as_str() } })];
    match &request.scope {
        SearchScope::Chat(chat) => {
            filter.push(json!({ "term": { "chat": chat_key(&request.app, *chat) } }));
        }
        SearchScope::Chats(chats) => {
            let keys: Vec<String> = chats.iter().map(|c| chat_key(&request.app, *c)).collect();
            filter.push(json!({ "terms": { "chat": keys } }));
        }
        SearchScope::App => {}
    }
    filter.push(json!({ "term": { "live": true } }));
    let mut should = Vec::new();
    for word in request.query.words() {
        let (grams, whole, prefixes) = match word.kind {
            WordKind::Latin => ("body.grams", "body", "body.prefixes"),
            WordKind::Cjk => ("body.cjk", "body.cjk_words", "body.cjk_prefixes"),
        };
        let text = word.text;
        filter.push(json!({
            "match": { grams: { "query": text, "operator": "and" } }
        }));
        should.push(json!({
            "constant_score": {
                "filter": { "match": { whole: { "query": text, "operator": "and" } } },
                "boost": WHOLE_WORD_SCORE
            }
        }));
        should.push(json!({
            "constant_score": {
                "filter": { "match": { prefixes: { "query": text, "operator": "and" } } },
                "boost": PREFIX_SCORE
            }
        }));
    }
    let across = request.scope.across_chats();
    let sort = if across {
        json!([
            { "_score": "desc" }, { "created_at": "desc" }, { "chat": "desc" },
            { "number": "desc" }
        ])
    } else {
        json!([ { "_score": "desc" }, { "number": "desc" } ])
    };
    let mut body = json!({
        "size": request.limit,
        "_source": false,
        "track_total_hits": false,
        "query": { "bool": { "filter": filter, "should": should } },
        "sort": sort
    });
    if let Some(after) = request.after {
        body["search_after"] = match (across, after.chat, after.created_at) {
            (true, Some(chat), Some(created_at)) => {
                let chat = chat_domain::ChatNumber::new(i64::from(chat))
                    .map(|chat| chat_key(&request.app, chat))
                    .unwrap_or_default();
                json!([after.score, created_at, chat, after.number])
            }
            _ => json!([after.score, after.number]),
        };
    }
    body
}
