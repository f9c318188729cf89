//! The matching, ranking, versioning and paging rules of `chat_domain::search`, held
//! against the tantivy index.

use chat_domain::search::SearchScope;
use chat_domain::*;
use chat_search_tantivy::{Opened, TantivyIndex};

fn app(token: &str) -> AppToken {
    AppToken::parse(token).unwrap()
}

fn key(a: &str, chat: i64, number: i64) -> DocKey {
    DocKey {
        app: app(a),
        chat: ChatNumber::new(chat).unwrap(),
        number: MessageNumber::new(number).unwrap(),
    }
}

fn upsert(a: &str, chat: i64, number: i64, body: &str, version: u64) -> IndexOp {
    IndexOp::Upsert(SearchDocument {
        key: key(a, chat, number),
        body: body.to_owned(),
        sender_id: UserId::parse("u1").unwrap(),
        created_at: Timestamp(number),
        version,
    })
}

fn delete(a: &str, chat: i64, number: i64, version: u64) -> IndexOp {
    IndexOp::Delete {
        key: key(a, chat, number),
        version,
    }
}

fn request(
    a: &str,
    chat: i64,
    query: &str,
    after: Option<SearchCursor>,
    limit: u32,
) -> SearchRequest {
    SearchRequest {
        app: app(a),
        scope: SearchScope::Chat(ChatNumber::new(chat).unwrap()),
        query: SearchQuery::parse(query).unwrap(),
        after,
        limit,
    }
}

async fn apply(index: &TantivyIndex, ops: &[IndexOp]) -> Vec<Applied> {
    index
        .apply(ops)
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// The message numbers chat `chat` of `a` finds for `query`, in ranking order.
async fn find(index: &TantivyIndex, a: &str, chat: i64, query: &str) -> Vec<u32> {
    index
        .search(&request(a, chat, query, None, 100))
        .await
        .unwrap()
        .iter()
        .map(|h| h.number.get())
        .collect()
}

async fn index_with(bodies: &[&str]) -> TantivyIndex {
    let index = TantivyIndex::in_memory().unwrap();
    let ops: Vec<IndexOp> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| upsert("app_a", 1, i as i64 + 1, body, 1))
        .collect();
    apply(&index, &ops).await;
    index
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

#[tokio::test]
async fn any_substring_of_three_or_more_characters_matches() {
    let index = index_with(&[
        "Your order was Refunded yesterday",
        "refunds take 3 days",
        "no match here",
    ])
    .await;
    assert_eq!(sorted(find(&index, "app_a", 1, "fund").await), vec![1, 2]);
    assert_eq!(find(&index, "app_a", 1, "unded").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "REFUNDED").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "yes").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "terday").await, vec![1]);
    assert!(find(&index, "app_a", 1, "refundeds").await.is_empty());
    // Substrings do not span words.
    assert!(find(&index, "app_a", 1, "wasref").await.is_empty());
}

#[tokio::test]
async fn case_and_accents_are_ignored_both_ways() {
    let index = index_with(&["Café au lait", "NAÏVE question", "Straße 5", "cafe"]).await;
    assert_eq!(sorted(find(&index, "app_a", 1, "cafe").await), vec![1, 4]);
    assert_eq!(sorted(find(&index, "app_a", 1, "CAFÉ").await), vec![1, 4]);
    assert_eq!(find(&index, "app_a", 1, "naive").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "aïv").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "strasse").await, vec![3]);
}

#[tokio::test]
async fn words_of_one_or_two_characters_match_whole_words_only() {
    let index = index_with(&["no way", "I know nobody", "ok, 5 items", "item 55"]).await;
    assert_eq!(find(&index, "app_a", 1, "no").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "NO").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "5").await, vec![3]);
    assert_eq!(find(&index, "app_a", 1, "55").await, vec![4]);
    assert_eq!(find(&index, "app_a", 1, "I").await, vec![2]);
    assert!(find(&index, "app_a", 1, "wa").await.is_empty());
}

#[tokio::test]
async fn every_query_word_must_match() {
    let index = index_with(&["refund to card", "refund to account", "card declined"]).await;
    assert_eq!(find(&index, "app_a", 1, "refund card").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "card, refund!").await, vec![1]);
    assert!(find(&index, "app_a", 1, "refund declined").await.is_empty());
}

#[tokio::test]
async fn long_words_match_beyond_the_longest_gram() {
    let word = "Supercalifragilisticexpialidocious";
    let index = index_with(&[&format!("it is {word}!"), "supercalifragilistic only"]).await;
    assert_eq!(
        find(&index, "app_a", 1, "califragilisticexpialido").await,
        vec![1]
    );
    assert_eq!(find(&index, "app_a", 1, word).await, vec![1]);
    assert_eq!(
        sorted(find(&index, "app_a", 1, "supercalifragilistic").await),
        vec![1, 2]
    );
}

#[tokio::test]
async fn best_match_first_then_newest() {
    let index = index_with(&[
        "refunding soon",   // 1: prefix
        "a refund",         // 2: whole word
        "we refund",        // 3: whole word, newer
        "prerefund policy", // 4: inside a word
        "refunds",          // 5: prefix, newer than 1
    ])
    .await;
    assert_eq!(
        find(&index, "app_a", 1, "refund").await,
        vec![3, 2, 5, 1, 4]
    );
    let hits = index
        .search(&request("app_a", 1, "refund", None, 10))
        .await
        .unwrap();
    let scores: Vec<u32> = hits.iter().map(|h| h.score).collect();
    assert_eq!(scores, vec![3, 3, 1, 1, 0]);
}

#[tokio::test]
async fn no_hit_of_another_chat_or_application() {
    let index = TantivyIndex::in_memory().unwrap();
    apply(
        &index,
        &[
            upsert("app_a", 1, 1, "secret refund", 1),
            upsert("app_a", 2, 1, "secret refund", 1),
            upsert("app_b", 1, 1, "secret refund", 1),
            // An application whose token is a prefix of another's.
            upsert("app_a1", 1, 1, "secret refund", 1),
            upsert("app_a", 11, 1, "secret refund", 1),
        ],
    )
    .await;
    for (a, chat) in [
        ("app_a", 1),
        ("app_a", 2),
        ("app_b", 1),
        ("app_a1", 1),
        ("app_a", 11),
    ] {
        assert_eq!(find(&index, a, chat, "secret").await, vec![1], "{a}/{chat}");
    }
    assert!(find(&index, "app_c", 1, "secret").await.is_empty());
    assert!(find(&index, "app_a", 3, "secret").await.is_empty());
}

#[tokio::test]
async fn deleted_messages_are_never_found_even_after_a_late_stale_insert() {
    let index = index_with(&["please delete me", "keep me"]).await;
    assert_eq!(
        apply(&index, &[delete("app_a", 1, 1, 2)]).await,
        vec![Applied::Written]
    );
    assert!(find(&index, "app_a", 1, "delete").await.is_empty());
    // The INSERT arrives again (re-delivery, out of order): the tombstone's version wins.
    assert_eq!(
        apply(&index, &[upsert("app_a", 1, 1, "please delete me", 1)]).await,
        vec![Applied::Stale]
    );
    assert!(find(&index, "app_a", 1, "delete").await.is_empty());
    assert_eq!(find(&index, "app_a", 1, "keep").await, vec![2]);
}

#[tokio::test]
async fn an_edit_is_reindexed_and_a_stale_version_is_ignored() {
    let index = index_with(&["old words"]).await;
    apply(&index, &[upsert("app_a", 1, 1, "new text", 2)]).await;
    assert!(find(&index, "app_a", 1, "old").await.is_empty());
    assert_eq!(find(&index, "app_a", 1, "text").await, vec![1]);
    // Version 3 then a late version 2 in one batch, and version 2 again alone.
    let outcomes = apply(
        &index,
        &[
            upsert("app_a", 1, 1, "third", 3),
            upsert("app_a", 1, 1, "second", 2),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Applied::Written, Applied::Stale]);
    assert_eq!(
        apply(&index, &[upsert("app_a", 1, 1, "second", 2)]).await,
        vec![Applied::Stale]
    );
    assert_eq!(find(&index, "app_a", 1, "third").await, vec![1]);
    assert!(find(&index, "app_a", 1, "second").await.is_empty());
    assert_eq!(index.num_docs(), 1);
}

#[tokio::test]
async fn redelivering_a_batch_changes_nothing() {
    let index = TantivyIndex::in_memory().unwrap();
    let batch: Vec<IndexOp> = (1..=50)
        .map(|n| upsert("app_a", 1, n, &format!("message number {n}"), 1))
        .chain([delete("app_a", 1, 7, 2), upsert("app_a", 1, 8, "edited", 2)])
        .collect();
    apply(&index, &batch).await;
    let before = (find(&index, "app_a", 1, "message").await, index.num_docs());
    let again = apply(&index, &batch).await;
    assert!(again.iter().all(|a| *a == Applied::Stale), "{again:?}");
    assert_eq!(
        (find(&index, "app_a", 1, "message").await, index.num_docs()),
        before
    );
    assert_eq!(before.0.len(), 48);
}

#[tokio::test]
async fn pages_return_every_hit_exactly_once_in_ranking_order() {
    let index = TantivyIndex::in_memory().unwrap();
    // 250 hits of three scores, interleaved, over several commits (segments).
    for chunk in (1..=250i64).collect::<Vec<_>>().chunks(40) {
        let ops: Vec<IndexOp> = chunk
            .iter()
            .map(|&n| {
                let body = match n % 3 {
                    0 => "order",
                    1 => "orders shipped",
                    _ => "reorder please",
                };
                upsert("app_a", 1, n, body, 1)
            })
            .collect();
        apply(&index, &ops).await;
    }
    let all = find(&index, "app_a", 1, "order").await;
    assert_eq!(all.len(), 100, "one page of 100 at most");
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = index
            .search(&request("app_a", 1, "order", after, 7))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.cursor(false));
        seen.extend(page.iter().map(|h| (h.score, h.number.get())));
        assert!(page.len() <= 7);
    }
    assert_eq!(seen.len(), 250);
    let mut expected = seen.clone();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected, "(score, number) descending");
    let mut numbers: Vec<u32> = seen.iter().map(|(_, n)| *n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=250).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_index_persists_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    {
        let (index, opened) = TantivyIndex::open(&path).unwrap();
        assert_eq!(opened, Opened::Created);
        apply(&index, &[upsert("app_a", 1, 1, "persisted refund", 1)]).await;
    }
    let (index, opened) = TantivyIndex::open(&path).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert_eq!(find(&index, "app_a", 1, "fund").await, vec![1]);
    assert_eq!(
        apply(&index, &[upsert("app_a", 1, 1, "persisted refund", 1)]).await,
        vec![Applied::Stale]
    );
}

/// The numbers and scores of chat 1's hits for `query`, in ranking order.
async fn scored(index: &TantivyIndex, query: &str) -> Vec<(u32, u32)> {
    index
        .search(&request("app_a", 1, query, None, 100))
        .await
        .unwrap()
        .iter()
        .map(|h| (h.number.get(), h.score))
        .collect()
}

#[tokio::test]
async fn cjk_queries_of_any_length_match_wherever_the_sequence_occurs() {
    let index = index_with(&[
        "注文番号4471の返金をお願いします",
        "我要退款",
        "환불을 요청합니다",
        "返金",
        "ご注文ありがとうございます",
        "refund please",
    ])
    .await;
    assert_eq!(sorted(find(&index, "app_a", 1, "注文").await), vec![1, 5]);
    assert_eq!(sorted(find(&index, "app_a", 1, "返金").await), vec![1, 4]);
    assert_eq!(find(&index, "app_a", 1, "退款").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "환불").await, vec![3]);
    assert_eq!(sorted(find(&index, "app_a", 1, "金").await), vec![1, 4]);
    assert_eq!(find(&index, "app_a", 1, "款").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "번호").await, Vec::<u32>::new());
    assert_eq!(find(&index, "app_a", 1, "をお願い").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "문번").await, Vec::<u32>::new());
    // Not across a digit, a space or punctuation.
    assert!(find(&index, "app_a", 1, "号の").await.is_empty());
    assert!(find(&index, "app_a", 1, "을요").await.is_empty());
    // Mixed queries: every word must match.
    assert_eq!(find(&index, "app_a", 1, "注文 4471").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "注文4471").await, vec![1]);
    assert!(find(&index, "app_a", 1, "注文 4472").await.is_empty());
    // Latin behaviour is unchanged beside CJK.
    assert_eq!(find(&index, "app_a", 1, "447").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "fund").await, vec![6]);
}

#[tokio::test]
async fn cjk_ranking_whole_word_then_word_start_then_inside() {
    let index = index_with(&["ご注文", "注文番号", "注文", "환불을", "환불", "전액환불"]).await;
    assert_eq!(scored(&index, "注文").await, vec![(3, 3), (2, 1), (1, 0)]);
    assert_eq!(scored(&index, "환불").await, vec![(5, 3), (4, 1), (6, 0)]);
    assert_eq!(scored(&index, "注").await, vec![(3, 1), (2, 1), (1, 0)]);
}

#[tokio::test]
async fn bodies_and_queries_are_normalized_nfkc() {
    let index = index_with(&["ｶｰﾄﾞの支払い", "ＡＢＣ１２３ order", "ﬁle ①"]).await;
    assert_eq!(find(&index, "app_a", 1, "カード").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "ｶｰﾄﾞ").await, vec![1]);
    assert_eq!(find(&index, "app_a", 1, "abc123").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "ＡＢＣ").await, vec![2]);
    assert_eq!(find(&index, "app_a", 1, "file").await, vec![3]);
    assert_eq!(find(&index, "app_a", 1, "1").await, vec![3]);
    // Hiragana and katakana do not match each other.
    assert!(find(&index, "app_a", 1, "かーど").await.is_empty());
}

/// Every hit in `scope`, one page at a time of `limit`.
async fn pages(
    index: &TantivyIndex,
    scope: &SearchScope,
    query: &str,
    limit: u32,
) -> Vec<(u32, i64, u32, u32)> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = index
            .search(&SearchRequest {
                app: app("app_a"),
                scope: scope.clone(),
                query: SearchQuery::parse(query).unwrap(),
                after,
                limit,
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.cursor(scope.across_chats()));
        seen.extend(page.iter().map(|h| h.across_key()));
    }
    seen
}

#[tokio::test]
async fn pages_over_segments_of_any_age_match_one_page_of_all() {
    // Given hits of three scores over 9 chats, committed in 12 batches whose creation times
    // are out of order (an old batch committed last, as a late re-index would), some with no
    // hit of the best score, with ties in creation time across chats, and edits of old
    // messages landing in new segments.
    let index = TantivyIndex::in_memory().unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let bodies = ["order", "orders shipped", "reorder please", "nothing here"];
    let mut batches: Vec<Vec<IndexOp>> = Vec::new();
    let mut numbers = [0i64; 9];
    for batch in 0..12i64 {
        let mut ops = Vec::new();
        for _ in 0..40 {
            let chat = next(9) as usize;
            numbers[chat] += 1;
            // Every third batch without whole words: its segment's best score is lower.
            let body = if batch % 3 == 0 {
                bodies[1 + next(3) as usize]
            } else {
                bodies[next(4) as usize]
            };
            let mut op = upsert("app_a", chat as i64 + 1, numbers[chat], body, 1);
            if let IndexOp::Upsert(doc) = &mut op {
                doc.created_at = Timestamp(batch * 10 + next(10) as i64);
            }
            ops.push(op);
        }
        batches.push(ops);
    }
    batches.swap(0, 11);
    for ops in &batches {
        apply(&index, ops).await;
    }
    let edits: Vec<IndexOp> = batches[5]
        .iter()
        .take(10)
        .map(|op| match op {
            IndexOp::Upsert(doc) => IndexOp::Upsert(SearchDocument {
                body: "order again".to_owned(),
                version: 2,
                ..doc.clone()
            }),
            IndexOp::Delete { .. } => unreachable!(),
        })
        .collect();
    apply(&index, &edits).await;
    assert!(index.segments() > 1, "several segments");
    for query in ["order", "orders", "reorder", "der"] {
        // When the hits across the application are paged 7 at a time, or 1 at a time.
        let app = SearchScope::App;
        let whole = pages(&index, &app, query, 10_000).await;
        assert!(whole.len() > 50, "{query}: {} hits", whole.len());
        let mut sorted = whole.clone();
        sorted.sort_by(|a, b| {
            let key = |k: &(u32, i64, u32, u32)| (k.0, k.1, k.2.to_string(), k.3);
            key(b).cmp(&key(a))
        });
        // Then they come in the order of one page of everything, each once.
        assert_eq!(whole, sorted, "{query}: one page is in ranking order");
        assert_eq!(
            pages(&index, &app, query, 7).await,
            whole,
            "{query}, 7 a page"
        );
        assert_eq!(
            pages(&index, &app, query, 1).await,
            whole,
            "{query}, 1 a page"
        );
        // And so do one chat's, by (score, number).
        for chat in 1..=3 {
            let scope = SearchScope::Chat(ChatNumber::new(chat).unwrap());
            let whole = pages(&index, &scope, query, 10_000).await;
            assert!(whole.len() > 5, "{query} in {chat}: {} hits", whole.len());
            let mut sorted = whole.clone();
            sorted.sort_by_key(|k| std::cmp::Reverse((k.0, k.3)));
            assert_eq!(whole, sorted, "{query} in {chat}: ranking order");
            assert_eq!(
                pages(&index, &scope, query, 3).await,
                whole,
                "{query} in {chat}"
            );
        }
    }
}
