//! The request bodies against golden JSON in `tests/golden/`. After a deliberate change,
//! `UPDATE_GOLDEN=1 cargo test -p chat-opensearch --test golden` rewrites the files; review
//! the diff like code.

mod common;

use std::path::PathBuf;

use chat_domain::SearchCursor;
use chat_opensearch::requests;
use common::*;
use serde_json::Value;

fn check(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    let expected: Value = serde_json::from_str(&expected).unwrap();
    assert_eq!(
        actual, &expected,
        "{name} differs from its golden file; actual:\n{pretty}"
    );
}

#[test]
fn index_settings_and_mapping() {
    check("create_index", &requests::create_index(3, 1, "1s"));
}

#[test]
fn index_template_alias_and_reindex_bodies() {
    let template = requests::index_template("chat-messages", 3, 1, "1s");
    assert_eq!(
        template["template"],
        requests::create_index(3, 1, "1s"),
        "the template carries the index's settings and mapping"
    );
    check("index_template", &template);
    check(
        "create_index_with_alias",
        &requests::create_index_with_alias("chat-messages", 3, 1, "1s")["aliases"],
    );
    check(
        "swap_alias",
        &requests::swap_alias(
            "chat-messages",
            &["chat-messages-v2".to_owned()],
            "chat-messages-v2-1796000000",
        ),
    );
    check(
        "reindex",
        &requests::reindex("chat-messages-v2", "chat-messages-v2-1796000000"),
    );
}

#[test]
fn identifiers_are_keywords_and_filters_are_terms() {
    let mapping = requests::create_index(3, 1, "1s");
    for field in ["app", "chat", "sender"] {
        assert_eq!(
            mapping["mappings"]["properties"][field]["type"], "keyword",
            "{field}"
        );
    }
    let query = requests::search(&request("app_abc-1", 7, "refund", None, 21));
    for filter in query["query"]["bool"]["filter"].as_array().unwrap() {
        let kind = filter.as_object().unwrap().keys().next().unwrap().as_str();
        let field = filter[kind]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .as_str();
        match kind {
            "term" => assert!(["app", "chat", "live"].contains(&field), "{field}"),
            // Body text only: never an identifier.
            "match" => assert!(field.starts_with("body"), "{field}"),
            other => panic!("unexpected filter {other}"),
        }
    }
}

#[test]
fn bulk_lines_with_external_versions_and_tombstones() {
    let ops = [
        upsert("app_abc-1", 7, 1, "Refund for my Café order", 1),
        upsert("app_abc-1", 7, 2, "edited text", 3),
        delete("app_abc-1", 7, 3, 2),
        // A message with files: their names follow the body, a line each.
        upsert(
            "app_abc-1",
            7,
            4,
            &chat_domain::search::searchable_text("See attached", ["invoice-4471.pdf"]),
            1,
        ),
    ];
    let lines: Vec<Value> = ops
        .iter()
        .flat_map(|op| {
            let text = requests::bulk_lines("chat-messages", op);
            assert!(text.ends_with('\n'));
            assert_eq!(text.matches('\n').count(), 2, "two NDJSON lines: {text}");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    check("bulk", &Value::Array(lines));
}

#[test]
fn search_first_page() {
    check(
        "search_first_page",
        &requests::search(&request("app_abc-1", 7, "  Café refund no ", None, 21)),
    );
}

#[test]
fn search_cjk_and_mixed_words() {
    check(
        "search_cjk",
        &requests::search(&request("app_abc-1", 7, "ｶｰﾄﾞ 注文4471 환불", None, 21)),
    );
}

#[test]
fn bulk_bodies_are_sent_in_nfkc() {
    let line = requests::bulk_lines("chat-messages", &upsert("app_abc-1", 7, 1, "ｶｰﾄﾞ ＡＢＣ", 1));
    let source: Value = serde_json::from_str(line.lines().nth(1).unwrap()).unwrap();
    assert_eq!(source["body"], "カード ABC");
}

#[test]
fn search_next_page_and_long_word() {
    let after = Some(SearchCursor {
        score: 3,
        number: 42,
        chat: None,
        created_at: None,
    });
    check(
        "search_after",
        &requests::search(&request(
            "app_abc-1",
            7,
            "supercalifragilisticexpialidocious",
            after,
            11,
        )),
    );
}

#[test]
fn search_across_the_application_and_across_a_customers_chats() {
    use chat_domain::ChatNumber;
    use chat_domain::search::SearchScope;
    // An agent's search of the whole application: the app term only, the order across
    // chats, and a cursor of four values.
    let mut app_wide = request("app_abc-1", 7, "refund", None, 21);
    app_wide.scope = SearchScope::App;
    app_wide.after = Some(SearchCursor {
        score: 2,
        number: 9,
        chat: Some(7),
        created_at: Some(1_764_979_100_000),
    });
    let body = requests::search(&app_wide);
    check("search_app", &body);
    assert_eq!(requests::search_routing(&app_wide), None, "every shard");
    let filters = body["query"]["bool"]["filter"].as_array().unwrap();
    assert!(
        filters
            .iter()
            .all(|f| f.get("match").is_some()
                || f.get("term").is_some_and(|t| t.get("chat").is_none())),
        "no chat filter: {filters:?}"
    );
    // A customer's search without a chat number: a terms filter on the chat keyword.
    let mut customer = request("app_abc-1", 7, "refund", None, 21);
    customer.scope = SearchScope::Chats(vec![
        ChatNumber::new(3).unwrap(),
        ChatNumber::new(12).unwrap(),
    ]);
    let body = requests::search(&customer);
    check("search_chats", &body);
    assert_eq!(
        body["query"]["bool"]["filter"][1],
        serde_json::json!({ "terms": { "chat": ["app_abc-1/3", "app_abc-1/12"] } })
    );
    // One chat stays routed to its shard.
    assert_eq!(
        requests::search_routing(&request("app_abc-1", 7, "refund", None, 21)).as_deref(),
        Some("app_abc-1/7")
    );
}
