//! Every request body this crate sends, built in one place and held against golden JSON
//! (`tests/golden/*.json`): the index settings and mapping, bulk lines, the search query.
//!
//! The mapping carries `chat_domain::search`'s rules:
//! - identifiers (`app`, `chat` = `app/chat`, `sender`) are `keyword`, and every filter is
//!   a `term` on a keyword: a `match` on an analyzed token would split it and match
//!   strangers' documents;
//! - `body` is analyzed by `chat_words` (split at every non-letter/digit, `lowercase`,
//!   `asciifolding`: the same folding table as tantivy's `AsciiFoldingFilter`) for whole
//!   words, with two subfields: `body.grams` (n-grams of 3..=20 characters, and the word
//!   itself, so a 1–2-character word is its own term) and `body.prefixes` (edge n-grams of
//!   3..=20);
//! - query words are analyzed with `chat_query_grams`: a folded word of up to 20 characters
//!   is one term; a longer one becomes its windows of 20 (the `condition` filter), all of
//!   which must match, as `chat_domain::search::query_terms` says;
//! - scores are `constant_score` boosts (2 whole word, 1 word start), never BM25, so they
//!   equal tantivy's and stay put for `search_after` paging;
//! - documents are routed by chat (`routing` = `app/chat`): a chat lives in one shard and a
//!   search asks only that shard.

use chat_domain::limits::SEARCH_GRAM_MAX_CHARS;
use chat_domain::search::{PREFIX_SCORE, SEARCH_GRAM_MIN_CHARS, WHOLE_WORD_SCORE};
use chat_domain::{IndexOp, SearchRequest, chat_key};
use serde_json::{Value, json};

/// The index settings and mapping, for `PUT /<index>`.
pub fn create_index(shards: u32, replicas: u32, refresh_interval: &str) -> Value {
    let words = json!(["lowercase", "asciifolding"]);
    json!({
        "settings": {
            "index": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": refresh_interval,
                "max_ngram_diff": SEARCH_GRAM_MAX_CHARS - SEARCH_GRAM_MIN_CHARS,
            },
            "analysis": {
                "tokenizer": {
                    "chat_words": { "type": "pattern", "pattern": "[^\\p{L}\\p{N}]+" }
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
                        "type": "custom", "tokenizer": "chat_words", "filter": words
                    },
                    "chat_grams": {
                        "type": "custom", "tokenizer": "chat_words",
                        "filter": ["lowercase", "asciifolding", "chat_grams"]
                    },
                    "chat_prefixes": {
                        "type": "custom", "tokenizer": "chat_words",
                        "filter": ["lowercase", "asciifolding", "chat_prefixes"]
                    },
                    "chat_query_grams": {
                        "type": "custom", "tokenizer": "chat_words",
                        "filter": ["lowercase", "asciifolding", "chat_long_words_to_windows"]
                    }
                }
            }
        },
        "mappings": {
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
                        "grams": {
                            "type": "text",
                            "analyzer": "chat_grams",
                            "search_analyzer": "chat_query_grams",
                            "index_options": "docs",
                            "norms": false
                        },
                        "prefixes": {
                            "type": "text",
                            "analyzer": "chat_prefixes",
                            "search_analyzer": "chat_words",
                            "index_options": "docs",
                            "norms": false
                        }
                    }
                }
            }
        }
    })
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
            "body": doc.body,
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

/// The search body for one chat; send it with `routing` = [`chat_key`].
pub fn search(request: &SearchRequest) -> Value {
    let chat = chat_key(&request.app, request.chat);
    let mut filter = vec![
        json!({ "term": { "app": request.app.as_str() } }),
        json!({ "term": { "chat": chat } }),
        json!({ "term": { "live": true } }),
    ];
    let mut should = Vec::new();
    for word in request.query.raw_words() {
        filter.push(json!({
            "match": {
                "body.grams": { "query": word, "operator": "and" }
            }
        }));
        should.push(json!({
            "constant_score": {
                "filter": { "match": { "body": { "query": word, "operator": "and" } } },
                "boost": WHOLE_WORD_SCORE
            }
        }));
        should.push(json!({
            "constant_score": {
                "filter": { "match": { "body.prefixes": { "query": word, "operator": "and" } } },
                "boost": PREFIX_SCORE
            }
        }));
    }
    let mut body = json!({
        "size": request.limit,
        "_source": false,
        "track_total_hits": false,
        "query": { "bool": { "filter": filter, "should": should } },
        "sort": [ { "_score": "desc" }, { "number": "desc" } ]
    });
    if let Some(after) = request.after {
        body["search_after"] = json!([after.score, after.number]);
    }
    body
}
