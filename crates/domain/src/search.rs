//! Search: the [`SearchIndex`] port, the query and its matching rules, and the change
//! records the indexer turns into index operations.
//!
//! # Normalization (the same on every index)
//! A body and a query are first put in Unicode NFKC ([`normalize`]): half-width katakana
//! become full width ("ｶﾀｶﾅ" -> "カタカナ"), full-width Latin and digits become ASCII
//! ("ＡＢＣ１２３" -> "ABC123"), compatibility characters their plain form ("ﬁ" -> "fi",
//! "①" -> "1"). Hiragana and katakana stay distinct (NFKC keeps them apart, and so do the
//! indexes: see docs/search.md for why).
//!
//! # Words
//! The normalized text is split into words ([`words`]): a run of CJK characters (Han,
//! kana, Hangul, see [`is_cjk`]) is one [`WordKind::Cjk`] word; a run of other letters and
//! digits (`char::is_alphanumeric`) is one [`WordKind::Latin`] word; everything else
//! separates. So "注文番号4471の返金" is "注文番号", "4471", "の返金". Latin words are
//! lowercased and folded to ASCII where a folding exists (Lucene's `ASCIIFoldingFilter`:
//! "Café" -> "cafe", "Straße" -> "strasse"). A message matches when **every** query word
//! matches one of its words:
//! - a Latin query word of 3 or more characters matches any Latin word that contains it
//!   ("fund" finds "Refunded");
//! - a Latin query word of 1 or 2 characters matches only an equal word ("no" finds "no",
//!   not "know");
//! - a CJK query word of any length matches any CJK word that contains it ("注文" finds
//!   "ご注文番号"; "金" finds "返金"): these scripts have no spaces between words, and their
//!   most common words are one or two characters long.
//!
//! (OpenSearch indexes n-grams of at most [`crate::limits::SEARCH_GRAM_MAX_CHARS`]
//! characters, so there a query word longer than that matches when all its windows of that
//! length are grams of the message: in practice the same.)
//!
//! # Ranking
//! Best match first, then newest. The score is an integer computed from the match alone,
//! never from corpus statistics, so it is the same on both indexes and stays put while the
//! index grows (which keeps cursor paging exact). Per query word: [`WHOLE_WORD_SCORE`] if
//! it is a whole word of the message, plus [`PREFIX_SCORE`] if a word of the message starts
//! with it and it has at most [`crate::limits::SEARCH_GRAM_MAX_CHARS`] characters (a whole
//! word does too; a Latin word needs 3). So for "fund": "fund" scores 3, "funds" 1,
//! "refund" 0; for "注文": "注文" 3, "注文番号" 1, "ご注文" 0. A CJK word is a run between
//! punctuation, spaces, digits or Latin letters: a Korean word (with its particle), often
//! a short Japanese or Chinese phrase. Ties: higher message number first (numbers grow
//! with time).
//!
//! # Versions
//! Every change of a message carries a version that grows with each change (the store keeps
//! it with the message). An operation is applied only if its version is higher than the
//! indexed one (OpenSearch's `version_type=external`), so a stale change never overwrites a
//! newer one and a re-delivered change is a no-op (reported as [`Applied::Stale`]). Deleting indexes a tombstone (no searchable
//! text) with its version, so a late INSERT cannot bring a deleted message back.

use std::borrow::Cow;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use crate::error::{DomainError, Result};
use crate::limits::{SEARCH_QUERY_MAX_CHARS, SEARCH_QUERY_MAX_WORDS};
use crate::model::*;

/// What a query word scores when it is a whole word of the message.
pub const WHOLE_WORD_SCORE: u32 = 2;
/// What a query word scores when it starts a word of the message (and is not all of it).
pub const PREFIX_SCORE: u32 = 1;
/// The shortest word matched as a substring; shorter query words match whole words only.
pub const SEARCH_GRAM_MIN_CHARS: usize = 3;
/// A CUSTOMER's search without a chat number covers its chats, at most this many (its most
/// recently active): the list is read from the store and sent to the index as a filter.
pub const SEARCH_CUSTOMER_CHATS_MAX: usize = 1_000;

/// A validated search query: trimmed, 1..=200 characters, at least one word, at most
/// [`SEARCH_QUERY_MAX_WORDS`] distinct words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    text: String,
    /// `text` in NFKC, which the words are cut from.
    normalized: String,
}

impl SearchQuery {
    pub fn parse(raw: &str) -> Result<Self> {
        let text = raw.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > SEARCH_QUERY_MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "query must be 1 to {SEARCH_QUERY_MAX_CHARS} characters"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(DomainError::bad_input(
                "query must not contain control characters",
            ));
        }
        let query = SearchQuery {
            text: text.to_owned(),
            normalized: normalize(text).into_owned(),
        };
        let words = query.words();
        if words.is_empty() {
            return Err(DomainError::bad_input(
                "query must contain at least one letter or digit",
            ));
        }
        if words.len() > SEARCH_QUERY_MAX_WORDS {
            return Err(DomainError::bad_input(format!(
                "query must have at most {SEARCH_QUERY_MAX_WORDS} words"
            )));
        }
        Ok(query)
    }

    /// The query as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The distinct words of the normalized query, before case and accent folding (each
    /// index folds them with the same filter as the bodies), in order of first appearance.
    pub fn words(&self) -> Vec<Word<'_>> {
        let mut found: Vec<Word<'_>> = Vec::new();
        for word in words(&self.normalized) {
            if !found
                .iter()
                .any(|w| w.text == word.text && w.kind == word.kind)
            {
                found.push(word);
            }
        }
        found
    }
}

/// Unicode NFKC: what every index sees of a body or a query (borrowed when the text is
/// already normalized, as most text is).
pub fn normalize(text: &str) -> Cow<'_, str> {
    match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfkc().collect()),
    }
}

/// What the indexes hold of a message: its body, then the names of its attached files on
/// lines of their own, so that a file's name finds its message by the body's rules
/// ("invoice" finds a message whose only content is `invoice-4471.pdf`). Both feeds (the
/// SQLite outbox, the DynamoDB stream) build their documents' text with it.
pub fn searchable_text<'a>(body: &str, file_names: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = body.to_owned();
    for name in file_names {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(name);
    }
    text
}

/// The code points that make CJK words, inclusive ranges in order: Hangul jamo, CJK
/// radicals, ideographic iteration and number marks (々〆〇), Hiragana, Katakana (not the
/// middle dot ・, which separates), Bopomofo, Hangul compatibility jamo, CJK ideographs
/// (unified, extensions A to H, compatibility), Hangul syllables, kana supplements. Both
/// indexes use this one table (OpenSearch: a regex class built from it).
pub const CJK_RANGES: &[(char, char)] = &[
    ('\u{1100}', '\u{11FF}'),
    ('\u{2E80}', '\u{2FDF}'),
    ('\u{3005}', '\u{3007}'),
    ('\u{3021}', '\u{3029}'),
    ('\u{3031}', '\u{3035}'),
    ('\u{3038}', '\u{303C}'),
    ('\u{3041}', '\u{3096}'),
    ('\u{3099}', '\u{309F}'),
    ('\u{30A1}', '\u{30FA}'),
    ('\u{30FC}', '\u{30FF}'),
    ('\u{3105}', '\u{312F}'),
    ('\u{3131}', '\u{318E}'),
    ('\u{31A0}', '\u{31BF}'),
    ('\u{31F0}', '\u{31FF}'),
    ('\u{3400}', '\u{4DBF}'),
    ('\u{4E00}', '\u{9FFF}'),
    ('\u{A960}', '\u{A97F}'),
    ('\u{AC00}', '\u{D7A3}'),
    ('\u{D7B0}', '\u{D7FF}'),
    ('\u{F900}', '\u{FAFF}'),
    ('\u{1B000}', '\u{1B16F}'),
    ('\u{20000}', '\u{2FFFD}'),
    ('\u{30000}', '\u{323AF}'),
];

/// Whether `c` belongs to CJK words ([`CJK_RANGES`]).
pub fn is_cjk(c: char) -> bool {
    CJK_RANGES
        .binary_search_by(|&(low, high)| {
            if high < c {
                std::cmp::Ordering::Less
            } else if low > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The two kinds of words, matched by different rules (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WordKind {
    /// A run of [`is_cjk`] characters.
    Cjk,
    /// A run of other letters and digits.
    Latin,
}

/// A word of a text and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Word<'a> {
    pub text: &'a str,
    pub kind: WordKind,
    /// Where the word starts in the text, in bytes.
    pub offset: usize,
}

fn kind_of(c: char) -> Option<WordKind> {
    if is_cjk(c) {
        Some(WordKind::Cjk)
    } else if c.is_alphanumeric() {
        Some(WordKind::Latin)
    } else {
        None
    }
}

/// Splits (normalized) text into words: runs of CJK characters, and runs of other letters
/// and digits; everything else separates. Both indexes use this rule (OpenSearch: pattern
/// tokenizers built from [`CJK_RANGES`] and `[\p{IsAlphabetic}\p{N}]`, the properties
/// behind `char::is_alphanumeric`).
pub fn words(text: &str) -> impl Iterator<Item = Word<'_>> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, kind) = loop {
            let (i, c) = rest.next()?;
            if let Some(kind) = kind_of(c) {
                break (i, kind);
            }
        };
        let mut end = text.len();
        while let Some(&(i, c)) = rest.peek() {
            if kind_of(c) != Some(kind) {
                end = i;
                break;
            }
            rest.next();
        }
        Some(Word {
            text: &text[start..end],
            kind,
            offset: start,
        })
    })
}

/// A message's document id in every index: `app/chat/number`. App tokens are
/// `[A-Za-z0-9_-]`, so the id is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    pub app: AppToken,
    pub chat: ChatNumber,
    pub number: MessageNumber,
}

impl DocKey {
    pub fn of(message: &Message) -> Self {
        DocKey {
            app: message.app.clone(),
            chat: message.chat_number,
            number: message.number,
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.app, self.chat, self.number)
    }

    /// The exact-match key of the chat: `app/chat`.
    pub fn chat_key(&self) -> String {
        chat_key(&self.app, self.chat)
    }
}

/// The exact-match key of a chat in every index: `app/chat`.
pub fn chat_key(app: &AppToken, chat: ChatNumber) -> String {
    format!("{app}/{chat}")
}

/// A message as the index stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDocument {
    pub key: DocKey,
    pub body: String,
    pub sender_id: UserId,
    pub created_at: Timestamp,
    pub version: u64,
}

/// One write to an index. Both carry the version that orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOp {
    /// Index (or replace) the document, unless a higher version is indexed.
    Upsert(SearchDocument),
    /// Replace the document with a tombstone that matches nothing, unless a higher version
    /// is indexed.
    Delete { key: DocKey, version: u64 },
}

impl IndexOp {
    pub fn key(&self) -> &DocKey {
        match self {
            IndexOp::Upsert(doc) => &doc.key,
            IndexOp::Delete { key, .. } => key,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            IndexOp::Upsert(doc) => doc.version,
            IndexOp::Delete { version, .. } => *version,
        }
    }

    /// The operation that brings the index to this state of the message.
    pub fn for_message(message: &Message, version: u64) -> Self {
        if message.deleted {
            IndexOp::Delete {
                key: DocKey::of(message),
                version,
            }
        } else {
            IndexOp::Upsert(SearchDocument {
                key: DocKey::of(message),
                body: message.body.clone(),
                sender_id: message.sender_id.clone(),
                created_at: message.created_at,
                version,
            })
        }
    }
}

/// What happened to one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written.
    Written,
    /// Not written: the index holds this version or a newer one already.
    Stale,
}

/// Where a page of search results continues: after this hit in ranking order. `chat` and
/// `created_at` are set in a search across chats (whose order uses them), absent in one
/// chat's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchCursor {
    pub score: u32,
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
}

/// Which chats of the application a search covers. The caller (the service) decides, by
/// role: an AGENT may search one chat or the whole application; a CUSTOMER one of its
/// chats or the list of its chats, read from the store. The index never decides who sees
/// what: it only applies the filter it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchScope {
    /// One chat: ranked best match first, then by message number (newest first).
    Chat(ChatNumber),
    /// These chats (an empty list matches nothing): ranked as [`SearchScope::App`].
    Chats(Vec<ChatNumber>),
    /// Every chat of the application: ranked best match first, then newest by creation
    /// time, then by chat number and message number (both descending), a total order.
    App,
}

impl SearchScope {
    /// Whether hits are ranked across chats (by creation time) rather than in one chat
    /// (by message number).
    pub fn across_chats(&self) -> bool {
        !matches!(self, SearchScope::Chat(_))
    }
}

/// Messages of a [`SearchScope`] of one application matching a query, in ranking order.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub app: AppToken,
    pub scope: SearchScope,
    pub query: SearchQuery,
    pub after: Option<SearchCursor>,
    /// How many hits at most.
    pub limit: u32,
}

impl SearchRequest {
    /// One chat's messages (the common case).
    pub fn in_chat(app: AppToken, chat: ChatNumber, query: SearchQuery, limit: u32) -> Self {
        SearchRequest {
            app,
            scope: SearchScope::Chat(chat),
            query,
            after: None,
            limit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchHit {
    pub chat: ChatNumber,
    pub number: MessageNumber,
    pub score: u32,
    /// The message's creation time (milliseconds), which orders hits across chats.
    pub created_at: Timestamp,
}

impl SearchHit {
    /// Where the next page starts; `across_chats` as the request's scope says.
    pub fn cursor(&self, across_chats: bool) -> SearchCursor {
        SearchCursor {
            score: self.score,
            number: self.number.get(),
            chat: across_chats.then(|| self.chat.get()),
            created_at: across_chats.then_some(self.created_at.0),
        }
    }

    /// The ranking key across chats: higher is first.
    pub fn across_key(&self) -> (u32, i64, u32, u32) {
        (
            self.score,
            self.created_at.0,
            self.chat.get(),
            self.number.get(),
        )
    }
}

impl SearchCursor {
    /// The ranking key across chats of the hit this cursor was taken from.
    pub fn across_key(&self) -> (u32, i64, u32, u32) {
        (
            self.score,
            self.created_at.unwrap_or(i64::MAX),
            self.chat.unwrap_or(u32::MAX),
            self.number,
        )
    }
}

/// The search port. `chat-search-tantivy` (embedded) and `chat-opensearch` implement it
/// with the matching, ranking and versioning rules of this module's documentation.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Applies the operations; the answer has one outcome per operation, in order. When it
    /// returns, the written operations are durable; they are searchable at once (tantivy)
    /// or after the index's refresh interval (OpenSearch). `Err` when nothing can be said
    /// about any operation (the index is unreachable).
    async fn apply(&self, ops: &[IndexOp]) -> Result<Vec<Result<Applied>>>;

    /// Hits of the request's scope in its ranking order ([`SearchScope`]), strictly after
    /// `request.after`. Never a hit outside the scope or of another application, never a
    /// deleted message.
    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>>;
}

// ---- the change feed ------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Modify => "MODIFY",
            ChangeKind::Remove => "REMOVE",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "INSERT" => Ok(ChangeKind::Insert),
            "MODIFY" => Ok(ChangeKind::Modify),
            "REMOVE" => Ok(ChangeKind::Remove),
            _ => Err(DomainError::bad_input(format!(
                "unknown change kind {raw:?}"
            ))),
        }
    }
}

/// One change of a message as a feed delivers it (the local outbox, a DynamoDB stream
/// record). `sequence` identifies the record in its feed, for reporting failures (the
/// outbox row id; the stream record's sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub sequence: String,
    pub kind: ChangeKind,
    pub key: DocKey,
    pub old: Option<Message>,
    pub new: Option<Message>,
    /// The message's version after this change.
    pub version: u64,
}

impl ChangeRecord {
    /// The index operation that applies this change. INSERT and MODIFY need the new image;
    /// a new image that is deleted, or a REMOVE, is a delete.
    pub fn to_op(&self) -> Result<IndexOp> {
        match (self.kind, &self.new) {
            (ChangeKind::Remove, _) => Ok(IndexOp::Delete {
                key: self.key.clone(),
                version: self.version,
            }),
            (_, Some(new)) => {
                if DocKey::of(new) != self.key {
                    return Err(DomainError::bad_input(format!(
                        "change {}: the new image is of another message",
                        self.sequence
                    )));
                }
                Ok(IndexOp::for_message(new, self.version))
            }
            (kind, None) => Err(DomainError::bad_input(format!(
                "change {}: {} without a new image",
                self.sequence,
                kind.as_str()
            ))),
        }
    }
}

/// A record the indexer could not apply; its feed delivers it again (the outbox keeps the
/// row; the Lambda returns the sequence in `batchItemFailures`).
#[derive(Debug)]
pub struct RecordFailure {
    pub sequence: String,
    pub error: DomainError,
}

#[derive(Debug, Default)]
pub struct IndexReport {
    /// Records written or found stale (already indexed at this or a newer version).
    pub indexed: Vec<String>,
    pub written: usize,
    pub stale: usize,
    pub failures: Vec<RecordFailure>,
}

/// The one indexer, shared by every feed: turns change records into index operations,
/// applies them as one batch, and reports per record. Re-delivering a batch changes
/// nothing (versions).
pub async fn index_changes(index: &dyn SearchIndex, records: &[ChangeRecord]) -> IndexReport {
    let mut report = IndexReport::default();
    let mut ops = Vec::with_capacity(records.len());
    let mut sequences = Vec::with_capacity(records.len());
    for record in records {
        match record.to_op() {
            Ok(op) => {
                ops.push(op);
                sequences.push(record.sequence.clone());
            }
            Err(error) => report.failures.push(RecordFailure {
                sequence: record.sequence.clone(),
                error,
            }),
        }
    }
    if ops.is_empty() {
        return report;
    }
    match index.apply(&ops).await {
        Ok(outcomes) if outcomes.len() == ops.len() => {
            for (sequence, outcome) in sequences.into_iter().zip(outcomes) {
                match outcome {
                    Ok(Applied::Written) => {
                        report.written += 1;
                        report.indexed.push(sequence);
                    }
                    Ok(Applied::Stale) => {
                        report.stale += 1;
                        report.indexed.push(sequence);
                    }
                    Err(error) => report.failures.push(RecordFailure { sequence, error }),
                }
            }
        }
        Ok(outcomes) => {
            let why = format!(
                "the index answered {} outcomes for {} operations",
                outcomes.len(),
                ops.len()
            );
            for sequence in sequences {
                report.failures.push(RecordFailure {
                    sequence,
                    error: DomainError::internal("search index: apply failed", why.clone()),
                });
            }
        }
        Err(error) => {
            let why = error.to_string();
            for sequence in sequences {
                report.failures.push(RecordFailure {
                    sequence,
                    error: DomainError::internal("search index: apply failed", why.clone()),
                });
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_trimmed_bounded_and_need_a_word() {
        assert_eq!(SearchQuery::parse("  fund ").unwrap().as_str(), "fund");
        assert!(SearchQuery::parse("   ").is_err());
        assert!(SearchQuery::parse("?! ...").is_err());
        assert!(SearchQuery::parse(&"a".repeat(SEARCH_QUERY_MAX_CHARS)).is_ok());
        assert!(SearchQuery::parse(&"a".repeat(SEARCH_QUERY_MAX_CHARS + 1)).is_err());
        assert!(SearchQuery::parse("a\u{7}b").is_err());
        let many = (0..=SEARCH_QUERY_MAX_WORDS)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(SearchQuery::parse(&many).is_err());
        let texts = |q: &str| -> Vec<String> {
            SearchQuery::parse(q)
                .unwrap()
                .words()
                .iter()
                .map(|w| w.text.to_owned())
                .collect()
        };
        assert_eq!(texts("Café, café! no-no"), ["Café", "café", "no"]);
    }

    #[test]
    fn file_names_follow_the_body_on_lines_of_their_own() {
        assert_eq!(
            searchable_text("Here it is", ["invoice-4471.pdf", "parcel.jpg"]),
            "Here it is\ninvoice-4471.pdf\nparcel.jpg"
        );
        assert_eq!(
            searchable_text("", ["invoice-4471.pdf"]),
            "invoice-4471.pdf"
        );
        assert_eq!(searchable_text("no files", []), "no files");
        let words: Vec<&str> = words("note\ninvoice-4471.pdf").map(|w| w.text).collect();
        assert_eq!(words, ["note", "invoice", "4471", "pdf"]);
    }

    #[test]
    fn text_is_normalized_nfkc() {
        assert_eq!(normalize("ｶﾀｶﾅ ｶﾞｲﾄﾞ"), "カタカナ ガイド");
        assert_eq!(normalize("ＡＢＣ１２３"), "ABC123");
        assert_eq!(normalize("ﬁle ①"), "file 1");
        assert!(matches!(normalize("plain café 注文"), Cow::Borrowed(_)));
        // Hiragana and katakana stay apart.
        assert_eq!(normalize("りんご リンゴ"), "りんご リンゴ");
    }

    #[test]
    fn words_are_runs_of_one_script_kind() {
        let split = |t: &str| -> Vec<(String, WordKind)> {
            words(t).map(|w| (w.text.to_owned(), w.kind)).collect()
        };
        use WordKind::{Cjk, Latin};
        assert_eq!(
            split("注文番号4471の返金をお願いします。"),
            [
                ("注文番号".into(), Cjk),
                ("4471".into(), Latin),
                ("の返金をお願いします".into(), Cjk)
            ]
        );
        assert_eq!(
            split("환불을 요청합니다 ok?"),
            [
                ("환불을".into(), Cjk),
                ("요청합니다".into(), Cjk),
                ("ok".into(), Latin)
            ]
        );
        assert_eq!(
            split("コーヒー・ミルク 々"),
            [
                ("コーヒー".into(), Cjk),
                ("ミルク".into(), Cjk),
                ("々".into(), Cjk)
            ]
        );
        assert_eq!(
            split("Straße 🎉🎉 ok"),
            [("Straße".into(), Latin), ("ok".into(), Latin)]
        );
        let q = SearchQuery::parse("ｶｰﾄﾞ 注文4471").unwrap();
        let found: Vec<(&str, WordKind)> = q.words().iter().map(|w| (w.text, w.kind)).collect();
        assert_eq!(found, [("カード", Cjk), ("注文", Cjk), ("4471", Latin)]);
    }

    #[test]
    fn the_cjk_table_is_sorted_and_disjoint() {
        for pair in CJK_RANGES.windows(2) {
            assert!(pair[0].0 <= pair[0].1 && pair[0].1 < pair[1].0, "{pair:?}");
        }
        for c in ['注', '文', 'の', 'カ', 'ー', '환', '々', '\u{20B9F}'] {
            assert!(is_cjk(c), "{c}");
        }
        for c in ['a', '4', '・', '。', 'ก', '🎉', '　'] {
            assert!(!is_cjk(c), "{c}");
        }
    }

    fn message(deleted: bool) -> Message {
        Message {
            app: AppToken::parse("app_x").unwrap(),
            chat_number: ChatNumber::new(2).unwrap(),
            number: MessageNumber::new(7).unwrap(),
            body: if deleted { String::new() } else { "hi".into() },
            sender_id: UserId::parse("u").unwrap(),
            sender_role: Role::Customer,
            client_message_id: None,
            created_at: Timestamp(1),
            edited_at: None,
            deleted,
        }
    }

    #[test]
    fn change_records_become_upserts_and_deletes() {
        let live = message(false);
        let key = DocKey::of(&live);
        assert_eq!(key.id(), "app_x/2/7");
        assert_eq!(key.chat_key(), "app_x/2");
        let record = |kind, new: Option<Message>| ChangeRecord {
            sequence: "1".into(),
            kind,
            key: key.clone(),
            old: None,
            new,
            version: 3,
        };
        let upsert = record(ChangeKind::Insert, Some(live.clone()))
            .to_op()
            .unwrap();
        assert!(matches!(upsert, IndexOp::Upsert(ref d) if d.version == 3 && d.body == "hi"));
        let deleted = record(ChangeKind::Modify, Some(message(true)))
            .to_op()
            .unwrap();
        assert_eq!(
            deleted,
            IndexOp::Delete {
                key: key.clone(),
                version: 3
            }
        );
        assert!(matches!(
            record(ChangeKind::Remove, None).to_op().unwrap(),
            IndexOp::Delete { .. }
        ));
        assert!(record(ChangeKind::Modify, None).to_op().is_err());
    }
}
