//! `chat-search-tantivy`: the [`SearchIndex`] port on tantivy, the dev server's embedded
//! search. Matching, ranking and versioning follow `chat_domain::search`.
//!
//! # Layout
//! One document per message, id `app/chat/number` (a raw `STRING` term). Filters are exact
//! terms: `app`, `chat` (`app/chat`), `live` (1; tombstones have 0 and no text). A filter
//! on another keyword of the chat (assignee, status) would be one more `STRING` field
//! here, filled by the indexer, and a new schema (an index of an older one is rebuilt
//! from the store at start). The body is not
//! stored: a hit is a message number, and the service reads the message from the store.
//!
//! The body is indexed in one positional field by the `chat_grams` analyzer: the text in
//! NFKC, split into words by `chat_domain::search::words` (runs of CJK characters, runs of
//! other letters and digits), folded with `LowerCaser` + `AsciiFoldingFilter` (a port of
//! Lucene's, which OpenSearch's `asciifolding` filter uses too), then:
//! - a Latin word `w` becomes the trigrams of `^w$` at consecutive positions ("fund" ->
//!   `^fu fun und nd$`): a word of n characters costs n tokens (an index of every
//!   substring would cost n²/2);
//! - a CJK word `w` becomes the bigrams of `^w$` at consecutive positions, and each of its
//!   characters a unigram at the position of the bigram it starts ("注文" -> `^注`,
//!   `注文` + `注`, `文$` + `文`): 2n+1 tokens. (CJK unigrams + bigrams, as Lucene's
//!   `CJKBigramFilter` with `outputUnigrams`, plus the markers.)
//!
//! Trigrams, bigrams and unigrams never collide: their lengths differ. Then, for a folded
//! Latin query word `q`:
//! - substring (3+ characters): the phrase of the trigrams of `q`; the markers keep a
//!   phrase inside one word (a query trigram never contains `$` followed by more text);
//! - whole word (and every 1–2-character query word): the phrase of `^q$`;
//! - word start: the phrase of `^q`.
//!
//! and for a CJK query word `q`: substring: the unigram `q` (one character) or the phrase of
//! the bigrams of `q`; whole word: the phrase of the bigrams of `^q$`; word start: the
//! phrase of the bigrams of `^q`.
//!
//! Scores (+2 whole word, +1 word start) are small integers that do not depend on corpus
//! statistics. A search walks, segment by segment, the documents of its scope (`chat` for
//! one chat, `app` for the application, a union of `chat` terms for a customer's chats)
//! that match every required phrase, moves each scoring phrase forward to each of them to
//! add its points, and keeps the best page in a heap. The ranking key is exact and stable
//! for cursor paging: `(score, number)` in one chat, `(score, created_at, chat, number)`
//! across chats (`chat_number` and `created_at` are fast fields). Across chats the segments
//! go newest first, and what cannot reach a full page (older than its lowest hit, which has
//! the segment's top score) is passed over: see `Page::collect`.
//!
//! # Writes
//! [`SearchIndex::apply`] takes the one writer (a mutex), keeps for each document the
//! operation with the highest version, looks up the indexed version (a term lookup of the
//! id and the `version` fast field), writes only newer versions (delete by id + add), then
//! commits and reloads the reader before returning: durable and searchable on return. The
//! caller batches (the outbox indexer drains up to a thousand changes per call), so commits
//! are few.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chat_domain::limits::SEARCH_GRAM_MAX_CHARS;
use chat_domain::search::{
    PREFIX_SCORE, SEARCH_GRAM_MIN_CHARS, SearchScope, WHOLE_WORD_SCORE, WordKind, is_cjk,
    normalize, words,
};
use chat_domain::{
    Applied, ChatNumber, DomainError, IndexOp, MessageNumber, Result, SearchHit, SearchIndex,
    SearchRequest, Timestamp, chat_key,
};
use tantivy::SeekDangerResult;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, TERMINATED, TantivyDocument, Term,
};

/// Memory the writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;

/// One indexing thread. Every commit ends the segment of each indexing thread that got
/// documents, and a segment writer starts with about 8 MB of zeroed tables whatever it
/// holds (tantivy's hash tables and columnar arenas). The outbox indexer commits small
/// batches several times a second, so with two threads that was two segments and some
/// 17 MB allocated and freed per commit (heaptrack under the soak mix, docs/loadtest.md),
/// and twice the segments to merge. One thread indexes far more messages a second than the
/// store accepts (docs/benchmarks.md).
const WRITER_THREADS: usize = 1;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    app: Field,
    chat: Field,
    chat_number: Field,
    created_at: Field,
    number: Field,
    version: Field,
    live: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let trigrams = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(GRAMS)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions)
            .set_fieldnorms(false),
    );
    let fields = Fields {
        id: builder.add_text_field("id", STRING),
        app: builder.add_text_field("app", STRING),
        chat: builder.add_text_field("chat", STRING),
        chat_number: builder.add_u64_field("chat_number", FAST),
        created_at: builder.add_i64_field("created_at", FAST),
        number: builder.add_u64_field("number", FAST),
        version: builder.add_u64_field("version", FAST),
        live: builder.add_u64_field("live", INDEXED),
        body: builder.add_text_field("body", trigrams),
    };
    (builder.build(), fields)
}

/// Whether [`TantivyIndex::open`] found an index or made a new, empty one (then the caller
/// should rebuild it from the store: `SqliteStore::enqueue_reindex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Existing,
    Created,
}

fn internal(context: &'static str) -> impl FnOnce(tantivy::TantivyError) -> DomainError {
    move |e| DomainError::internal(format!("tantivy index: {context}"), e)
}

struct Inner {
    index: Index,
    /// The index's directory when it is on disk, kept to prune its mmap cache (see
    /// [`TantivyIndex::prune_mmap_cache`]).
    files: Option<MmapDirectory>,
    reader: IndexReader,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    fields: Fields,
    analyzer: TextAnalyzer,
    /// One permit per core, taken before a search goes to the blocking pool: searches are
    /// CPU work, so more at once only share the cores, and each would hold a thread of the
    /// pool (which keeps an idle thread 10 s); a burst waits here as futures instead.
    search_slots: Arc<tokio::sync::Semaphore>,
}

/// The embedded search index. Cheap to clone (shared).
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex")
            .field("docs", &self.num_docs())
            .finish()
    }
}

impl TantivyIndex {
    /// Opens the index in `dir` (created if needed). An index whose schema is not this
    /// build's (an older layout) is derived data: it is removed and made anew, and
    /// [`Opened::Created`] tells the caller to rebuild it from the store.
    pub fn open(dir: &Path) -> Result<(Self, Opened)> {
        let io = |e: std::io::Error| {
            DomainError::internal(
                format!("cannot open the search index in {}", dir.display()),
                e,
            )
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = schema();
        let open_dir = || {
            MmapDirectory::open(dir).map_err(|e| {
                DomainError::internal(
                    format!("cannot open the search index in {}", dir.display()),
                    e,
                )
            })
        };
        let exists = Index::exists(&open_dir()?).map_err(|e| {
            DomainError::internal(
                format!("cannot read the search index in {}", dir.display()),
                e,
            )
        })?;
        let mut opened = Opened::Existing;
        // The directory is kept beside the index (a clone shares its cache) to prune it.
        let existing = if exists {
            let files = open_dir()?;
            let index = Index::open(files.clone()).map_err(internal("open"))?;
            if index.schema() == schema {
                Some((index, files))
            } else {
                tracing::warn!(dir = %dir.display(), "the search index has another layout: rebuilding it");
                drop((index, files));
                std::fs::remove_dir_all(dir).map_err(io)?;
                std::fs::create_dir_all(dir).map_err(io)?;
                None
            }
        } else {
            None
        };
        let (index, files) = match existing {
            Some(found) => found,
            None => {
                opened = Opened::Created;
                let files = open_dir()?;
                let index = Index::create(files.clone(), schema, Default::default())
                    .map_err(internal("create"))?;
                (index, files)
            }
        };
        Ok((Self::start(index, fields, Some(files))?, opened))
    }

    /// An index in memory (`--memory`, tests).
    pub fn in_memory() -> Result<Self> {
        let (schema, fields) = schema();
        Self::start(Index::create_in_ram(schema), fields, None)
    }

    fn start(index: Index, fields: Fields, files: Option<MmapDirectory>) -> Result<Self> {
        index.tokenizers().register(
            GRAMS,
            TextAnalyzer::builder(Words::default())
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .filter(MarkedGrams)
                .build(),
        );
        let writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY)
            .map_err(internal("open the writer"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(internal("open a reader"))?;
        let analyzer = TextAnalyzer::builder(Words::default())
            .filter(LowerCaser)
            .filter(AsciiFoldingFilter)
            .build();
        Ok(TantivyIndex {
            inner: Arc::new(Inner {
                index,
                files,
                reader,
                writer: Mutex::new(writer),
                fields,
                analyzer,
                search_slots: Arc::new(tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                )),
            }),
        })
    }

    /// Documents in the index, tombstones included.
    pub fn num_docs(&self) -> u64 {
        self.inner.reader.searcher().num_docs()
    }

    /// Segments of the last commit (for benchmarks and diagnostics).
    pub fn segments(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }

    /// Waits for the background merges to finish (benchmarks; shutdown).
    pub fn wait_merging(self) -> Result<()> {
        let inner = Arc::try_unwrap(self.inner)
            .map_err(|_| DomainError::internal("tantivy index", "still shared"))?;
        let writer = inner
            .writer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        writer
            .wait_merging_threads()
            .map_err(internal("wait for merges"))
    }

    /// Body words, split and folded as the module documentation says.
    fn folded_words(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.inner.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut words = Vec::new();
        while let Some(token) = TokenStream::next(&mut stream) {
            words.push(token.text.clone());
        }
        words
    }

    fn document(&self, op: &IndexOp) -> TantivyDocument {
        let f = self.inner.fields;
        let key = op.key();
        let mut doc = TantivyDocument::new();
        doc.add_text(f.id, key.id());
        doc.add_text(f.app, key.app.as_str());
        doc.add_text(f.chat, key.chat_key());
        doc.add_u64(f.chat_number, u64::from(key.chat.get()));
        doc.add_u64(f.number, u64::from(key.number.get()));
        doc.add_u64(f.version, op.version());
        match op {
            IndexOp::Delete { .. } => {
                doc.add_u64(f.live, 0);
                doc.add_i64(f.created_at, 0);
            }
            IndexOp::Upsert(document) => {
                doc.add_u64(f.live, 1);
                doc.add_i64(f.created_at, document.created_at.0);
                doc.add_text(f.body, &document.body);
            }
        }
        doc
    }

    fn apply_blocking(&self, ops: &[IndexOp]) -> Result<Vec<Result<Applied>>> {
        let f = self.inner.fields;
        // The winner per document: the highest version (the last of equal ones).
        let mut winner: HashMap<String, usize> = HashMap::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let id = op.key().id();
            match winner.get(&id) {
                Some(&j) if ops[j].version() > op.version() => {}
                _ => {
                    winner.insert(id, i);
                }
            }
        }
        let mut writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let versions = IndexedVersions::new(&self.inner.reader, f)?;
        let mut outcomes: Vec<Result<Applied>> = ops.iter().map(|_| Ok(Applied::Stale)).collect();
        let mut written = 0usize;
        for (id, i) in winner {
            let op = &ops[i];
            let term = Term::from_field_text(f.id, &id);
            if versions.get(&term)?.is_some_and(|v| v >= op.version()) {
                continue;
            }
            writer.delete_term(term);
            if let Err(e) = writer.add_document(self.document(op)) {
                outcomes[i] = Err(internal("add a document")(e));
                continue;
            }
            outcomes[i] = Ok(Applied::Written);
            written += 1;
        }
        if written > 0 {
            if let Err(e) = writer.commit() {
                // Nothing of this batch is durable: every operation failed.
                let _ = writer.rollback();
                let e = internal("commit")(e);
                let why = e.to_string();
                return Ok(ops
                    .iter()
                    .map(|_| Err(DomainError::internal("tantivy index: commit", why.clone())))
                    .collect());
            }
            self.inner.reader.reload().map_err(internal("reload"))?;
            self.prune_mmap_cache();
        }
        Ok(outcomes)
    }

    /// tantivy's `MmapDirectory` caches a weak reference to every file it maps, by path,
    /// and drops the entries of files no longer mapped only when asked for its cache
    /// statistics. Segments are short-lived here (a commit every few hundred milliseconds
    /// under load, then merged away), so without this the cache grew by some hundred bytes
    /// per file ever opened: about a megabyte a minute at 100 requests/s, without bound
    /// (docs/loadtest.md, "What the memory was"). Asking after each commit keeps it at
    /// the files of the live segments.
    fn prune_mmap_cache(&self) {
        if let Some(files) = &self.inner.files {
            let _ = files.get_cache_info();
        }
    }

    /// The matching clauses (every result has all of them) and the scoring clauses (each
    /// adds its points to the results it matches).
    fn clauses(&self, request: &SearchRequest) -> (Vec<Box<dyn Query>>, Vec<Scoring>) {
        let f = self.inner.fields;
        let term = |field: Field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let scope: Box<dyn Query> = match &request.scope {
            SearchScope::Chat(chat) => term(f.chat, &chat_key(&request.app, *chat)),
            SearchScope::Chats(chats) => Box::new(BooleanQuery::new(
                chats
                    .iter()
                    .map(|chat| (Occur::Should, term(f.chat, &chat_key(&request.app, *chat))))
                    .collect(),
            )),
            SearchScope::App => term(f.app, request.app.as_str()),
        };
        let mut required: Vec<Box<dyn Query>> = vec![
            scope,
            Box::new(TermQuery::new(
                Term::from_field_u64(f.live, 1),
                IndexRecordOption::Basic,
            )),
        ];
        let mut scoring: Vec<Scoring> = Vec::new();
        // One set of clauses per distinct query word (OpenSearch analyzes each the same
        // way), so scores are equal on both indexes.
        for word in request.query.words() {
            for folded in self.folded_words(word.text) {
                let chars = folded.chars().count();
                let whole = format!("^{folded}$");
                let start = format!("^{folded}");
                match word.kind {
                    WordKind::Cjk => {
                        required.push(if chars == 1 {
                            Box::new(TermQuery::new(
                                Term::from_field_text(f.body, &folded),
                                IndexRecordOption::Basic,
                            ))
                        } else {
                            phrase(f.body, &folded, 2)
                        });
                        scoring.push((Clause::Query(phrase(f.body, &whole, 2)), WHOLE_WORD_SCORE));
                        if chars <= SEARCH_GRAM_MAX_CHARS {
                            scoring.push((Clause::Query(phrase(f.body, &start, 2)), PREFIX_SCORE));
                        }
                    }
                    WordKind::Latin if chars >= SEARCH_GRAM_MIN_CHARS => {
                        required.push(phrase(f.body, &folded, 3));
                        scoring.push((Clause::Query(phrase(f.body, &whole, 3)), WHOLE_WORD_SCORE));
                        if chars <= SEARCH_GRAM_MAX_CHARS {
                            scoring.push((Clause::Query(phrase(f.body, &start, 3)), PREFIX_SCORE));
                        }
                    }
                    WordKind::Latin => {
                        // Matched as a whole word only: every result scores it.
                        required.push(phrase(f.body, &whole, 3));
                        scoring.push((Clause::Always, WHOLE_WORD_SCORE));
                    }
                }
            }
        }
        (required, scoring)
    }

    fn search_blocking(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        if request.limit == 0 || matches!(&request.scope, SearchScope::Chats(c) if c.is_empty()) {
            return Ok(Vec::new());
        }
        // One pass per segment, document at a time: the matching clauses (one intersection,
        // driven by its rarest term, so every step skips through the index) yield the
        // candidates in order, each scoring clause is moved forward to the candidate to see
        // whether it adds its points, and the best `limit` keys are kept in a heap. Memory
        // stays at the page, whatever the matches (an application-wide query for a common
        // word matches a large part of the index), and no scoring clause is evaluated over
        // documents outside the matches (a union of optional clauses in one boolean query
        // would be, over whole windows of documents).
        let (required, scoring) = self.clauses(request);
        let searcher = self.inner.reader.searcher();
        let disabled = EnableScoring::disabled_from_searcher(&searcher);
        let mut bonus = 0u32;
        let mut weights = Vec::with_capacity(scoring.len());
        for (clause, points) in scoring {
            match clause {
                Clause::Always => bonus += points,
                Clause::Query(query) => {
                    weights.push((query.weight(disabled).map_err(internal("search"))?, points));
                }
            }
        }
        let across = request.scope.across_chats();
        let single_chat = match request.scope {
            SearchScope::Chat(chat) => Some(chat),
            _ => None,
        };
        // (score, created_at, chat, number), higher first; one chat's ranking leaves the
        // middle two at 0.
        let after = request.after.map(|c| {
            if across {
                let (score, created_at, chat, number) = c.across_key();
                (score, created_at, ChatKeyOrder(chat), number)
            } else {
                (c.score, 0, ChatKeyOrder(0), c.number)
            }
        });
        let limit = request.limit as usize;
        let must = |queries: Vec<Box<dyn Query>>| -> Result<Box<dyn tantivy::query::Weight>> {
            BooleanQuery::new(queries.into_iter().map(|q| (Occur::Must, q)).collect())
                .weight(disabled)
                .map_err(internal("search"))
        };
        let page = Page {
            across,
            after,
            limit,
        };
        let best = page.collect(&searcher, must(required)?.as_ref(), &weights, bonus)?;
        let mut keys: Vec<RankKey> = best.into_iter().map(|Reverse(key)| key).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        keys.into_iter()
            .map(|(score, created_at, ChatKeyOrder(chat), number)| {
                let corrupt = |e| DomainError::internal("tantivy index: corrupt number", e);
                let chat = match single_chat {
                    Some(chat) => chat,
                    None => ChatNumber::new(i64::from(chat)).map_err(corrupt)?,
                };
                Ok(SearchHit {
                    chat,
                    number: MessageNumber::new(i64::from(number)).map_err(corrupt)?,
                    score,
                    created_at: Timestamp(created_at),
                })
            })
            .collect()
    }
}

/// The ranking of one search: its order, its cursor and its page size.
struct Page {
    across: bool,
    after: Option<RankKey>,
    limit: usize,
}

impl Page {
    /// The best `limit` keys after the cursor among the documents `matching` yields, each
    /// scoring `bonus` plus the points of the `weights` it matches: one pass per segment,
    /// document at a time, a heap of the page. No document of a segment scores more than
    /// the points of the clauses that match anything in it (the segment's top score):
    /// across chats, where creation time ranks next, a full page whose lowest key has that
    /// score and is newer than a document cannot be beaten by it. Such documents are not
    /// scored, and a segment whose newest document is older is passed over; segments go
    /// newest first, so that for a common word the page fills with recent best-scoring
    /// hits and older segments are not read.
    fn collect(
        &self,
        searcher: &tantivy::Searcher,
        matching: &dyn tantivy::query::Weight,
        weights: &[(Box<dyn tantivy::query::Weight>, u32)],
        bonus: u32,
    ) -> Result<BinaryHeap<Reverse<RankKey>>> {
        let (across, after, limit) = (self.across, self.after, self.limit);
        let beaten = |best: &BinaryHeap<Reverse<RankKey>>, top: u32, created_at: i64| {
            best.len() >= limit
                && best
                    .peek()
                    .is_some_and(|min| (min.0.0, min.0.1) > (top, created_at))
        };
        let all_points = bonus + weights.iter().map(|(_, points)| points).sum::<u32>();
        let mut best: BinaryHeap<Reverse<RankKey>> = BinaryHeap::with_capacity(limit + 1);
        for (segment, newest) in self.segments_newest_first(searcher)? {
            let mut top = all_points;
            if across {
                // Passed over before its clauses are asked, when even every clause's points
                // would not do.
                if beaten(&best, top, newest) {
                    continue;
                }
                // The segment's own top score: the points of the clauses that match any of
                // its documents (an infix that is seldom a whole word is often never one).
                top = bonus;
                for (weight, points) in weights {
                    let scorer = weight.scorer(segment, 1.0).map_err(internal("search"))?;
                    if scorer.doc() != TERMINATED {
                        top += points;
                    }
                }
                if beaten(&best, top, newest) {
                    continue;
                }
            }
            let mut docs = matching.scorer(segment, 1.0).map_err(internal("search"))?;
            if docs.doc() == TERMINATED {
                continue;
            }
            let first = docs.doc();
            let mut scorers = Vec::with_capacity(weights.len());
            for (weight, points) in weights {
                let (found, scorer) = weight
                    .scorer_danger(segment, first, 1.0)
                    .map_err(internal("search"))?;
                scorers.push(Probe {
                    scorer,
                    points: *points,
                    first: Some((first, found)),
                    next: 0,
                });
            }
            let fast = segment.fast_fields();
            let numbers = fast.u64("number").map_err(internal("read the numbers"))?;
            let columns = if across {
                Some((
                    fast.u64("chat_number")
                        .map_err(internal("read the chat numbers"))?,
                    fast.i64("created_at")
                        .map_err(internal("read the creation times"))?,
                ))
            } else {
                None
            };
            let alive = segment.alive_bitset();
            let mut doc = docs.doc();
            while doc != TERMINATED {
                let created_at = columns
                    .as_ref()
                    .map(|(_, created)| created.first(doc).unwrap_or(0));
                let passed = created_at.is_some_and(|at| beaten(&best, top, at));
                if !passed && alive.is_none_or(|bits| bits.is_alive(doc)) {
                    let mut score = bonus;
                    for probe in scorers.iter_mut() {
                        if probe.matches(doc) {
                            score += probe.points;
                        }
                    }
                    let number = numbers.first(doc).unwrap_or(0) as u32;
                    let key = match (&columns, created_at) {
                        (Some((chats, _)), Some(created_at)) => (
                            score,
                            created_at,
                            ChatKeyOrder(chats.first(doc).unwrap_or(0) as u32),
                            number,
                        ),
                        _ => (score, 0, ChatKeyOrder(0), number),
                    };
                    let wanted = number > 0
                        && after.is_none_or(|after| key < after)
                        && (best.len() < limit || best.peek().is_some_and(|min| key > min.0));
                    if wanted {
                        best.push(Reverse(key));
                        if best.len() > limit {
                            best.pop();
                        }
                    }
                }
                doc = docs.advance();
            }
        }
        Ok(best)
    }

    /// The segments with their newest creation time, newest first across chats (where
    /// creation time ranks right after the score); in their own order in one chat.
    fn segments_newest_first<'s>(
        &self,
        searcher: &'s tantivy::Searcher,
    ) -> Result<Vec<(&'s tantivy::SegmentReader, i64)>> {
        let mut segments = Vec::with_capacity(searcher.segment_readers().len());
        for segment in searcher.segment_readers() {
            let newest = if self.across {
                segment
                    .fast_fields()
                    .i64("created_at")
                    .map_err(internal("read the creation times"))?
                    .max_value()
            } else {
                0
            };
            segments.push((segment, newest));
        }
        if self.across {
            segments.sort_by_key(|(_, newest)| Reverse(*newest));
        }
        Ok(segments)
    }
}

/// A hit's place in the ranking, higher first: (score, created_at, chat, number).
type RankKey = (u32, i64, ChatKeyOrder, u32);

/// A chat number ordered as OpenSearch orders the `chat` keyword (`app/<number>`) within
/// one application: by its decimal digits as text ("10" < "9"), so that hits across chats
/// tie-break the same way on both indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChatKeyOrder(u32);

impl ChatKeyOrder {
    fn digits(self, buffer: &mut [u8; 10]) -> &[u8] {
        let mut n = self.0;
        let mut at = buffer.len();
        loop {
            at -= 1;
            buffer[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return &buffer[at..];
            }
        }
    }
}

impl Ord for ChatKeyOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == other.0 {
            return std::cmp::Ordering::Equal;
        }
        let (mut a, mut b) = ([0u8; 10], [0u8; 10]);
        self.digits(&mut a).cmp(other.digits(&mut b))
    }
}

impl PartialOrd for ChatKeyOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A scoring clause's scorer in one segment, asked about the candidates in increasing
/// order with `seek_danger`: it checks the one document (a phrase's positions there)
/// instead of running ahead to its next match, which for a phrase of common grams can
/// mean reading far through the segment for documents outside the scope.
struct Probe {
    scorer: Box<dyn tantivy::query::Scorer>,
    points: u32,
    /// The answer for the first candidate, from `scorer_danger`.
    first: Option<(DocId, SeekDangerResult)>,
    /// No document below this can match.
    next: DocId,
}

impl Probe {
    fn matches(&mut self, doc: DocId) -> bool {
        if let Some((first, answer)) = self.first.take() {
            let found = self.record(first, answer);
            if first == doc {
                return found;
            }
        }
        if doc < self.next {
            return false;
        }
        let answer = self.scorer.seek_danger(doc);
        self.record(doc, answer)
    }

    fn record(&mut self, doc: DocId, answer: SeekDangerResult) -> bool {
        match answer {
            SeekDangerResult::Found => {
                self.next = doc + 1;
                true
            }
            SeekDangerResult::SeekLowerBound(bound) => {
                self.next = bound.max(doc + 1);
                false
            }
        }
    }
}

/// A scoring clause: a query, or one that every match satisfies.
enum Clause {
    Query(Box<dyn Query>),
    Always,
}

/// A scoring clause and the points it adds.
type Scoring = (Clause, u32);

/// The name of the body's analyzer (a new name is a new schema: an index of an older
/// layout is rebuilt at start).
const GRAMS: &str = "chat_grams_v2";

/// The `n`-grams of a (marked) word, in order.
fn grams(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

/// Documents whose body has `text`'s `n`-grams at consecutive positions.
fn phrase(field: Field, text: &str, n: usize) -> Box<dyn Query> {
    let terms: Vec<Term> = grams(text, n)
        .iter()
        .map(|t| Term::from_field_text(field, t))
        .collect();
    match <[Term; 1]>::try_from(terms) {
        Ok([term]) => Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        Err(terms) => Box::new(PhraseQuery::new(terms)),
    }
}

/// The tokenizer: the text in NFKC, cut into `chat_domain::search::words`, one token per
/// word at consecutive positions.
#[derive(Clone, Default)]
struct Words {
    /// The normalized text of the current stream.
    text: String,
}

impl Tokenizer for Words {
    type TokenStream<'a> = WordsStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordsStream<'a> {
        self.text.clear();
        self.text.push_str(&normalize(text));
        let text: &'a str = &self.text;
        WordsStream {
            words: Box::new(words(text)),
            token: Token::default(),
            position: 0,
        }
    }
}

struct WordsStream<'a> {
    words: Box<dyn Iterator<Item = chat_domain::search::Word<'a>> + 'a>,
    token: Token,
    position: usize,
}

impl TokenStream for WordsStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(word) = self.words.next() else {
            return false;
        };
        self.token.text.clear();
        self.token.text.push_str(word.text);
        self.token.offset_from = word.offset;
        self.token.offset_to = word.offset + word.text.len();
        self.token.position = self.position;
        self.position += 1;
        true
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// A token filter: a Latin word `w` becomes the trigrams of `^w$`, a CJK word the bigrams
/// of `^w$` and the unigrams of `w` (module documentation).
#[derive(Clone)]
struct MarkedGrams;

impl TokenFilter for MarkedGrams {
    type Tokenizer<T: Tokenizer> = MarkedGramsTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> MarkedGramsTokenizer<T> {
        MarkedGramsTokenizer(tokenizer)
    }
}

#[derive(Clone)]
struct MarkedGramsTokenizer<T>(T);

impl<T: Tokenizer> Tokenizer for MarkedGramsTokenizer<T> {
    type TokenStream<'a> = MarkedGramsStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        MarkedGramsStream {
            tail: self.0.token_stream(text),
            word: Vec::new(),
            gram: 3,
            next: 0,
            unigram_due: false,
            token: Token::default(),
            position: 0,
        }
    }
}

struct MarkedGramsStream<T> {
    tail: T,
    /// `^word$` of the current word.
    word: Vec<char>,
    /// 3 for a Latin word, 2 for a CJK word.
    gram: usize,
    /// Where the next gram starts in `word`.
    next: usize,
    /// A CJK word: the unigram of the character that the last bigram started with is next.
    unigram_due: bool,
    token: Token,
    position: usize,
}

impl<T: TokenStream> TokenStream for MarkedGramsStream<T> {
    fn advance(&mut self) -> bool {
        loop {
            if self.unigram_due {
                // At the position of the bigram just emitted, which starts with it.
                self.unigram_due = false;
                self.token.text.clear();
                self.token.text.push(self.word[self.next - 1]);
                return true;
            }
            if self.next + self.gram <= self.word.len() {
                self.token.text.clear();
                self.token
                    .text
                    .extend(&self.word[self.next..self.next + self.gram]);
                self.token.position = self.position;
                self.unigram_due = self.gram == 2 && self.next > 0;
                self.position += 1;
                self.next += 1;
                return true;
            }
            if !self.tail.advance() {
                return false;
            }
            let word = self.tail.token();
            self.token.offset_from = word.offset_from;
            self.token.offset_to = word.offset_to;
            self.word.clear();
            self.word.push('^');
            self.word.extend(word.text.chars());
            self.word.push('$');
            self.gram = if self.word.get(1).copied().is_some_and(is_cjk) {
                2
            } else {
                3
            };
            self.next = 0;
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// The indexed version of documents, from the last commit: per segment, the id's postings
/// and the `version` fast field.
struct IndexedVersions {
    segments: Vec<(
        Arc<tantivy::InvertedIndexReader>,
        tantivy::columnar::Column<u64>,
        tantivy::SegmentReader,
    )>,
}

impl IndexedVersions {
    fn new(reader: &IndexReader, f: Fields) -> Result<Self> {
        let searcher = reader.searcher();
        let mut segments = Vec::new();
        for segment in searcher.segment_readers() {
            let postings = segment
                .inverted_index(f.id)
                .map_err(internal("read the ids"))?;
            let versions = segment
                .fast_fields()
                .u64("version")
                .map_err(internal("read the versions"))?;
            segments.push((postings, versions, segment.clone()));
        }
        Ok(IndexedVersions { segments })
    }

    fn get(&self, term: &Term) -> Result<Option<u64>> {
        let io = |e: std::io::Error| DomainError::internal("tantivy index: read a version", e);
        for (postings, versions, segment) in &self.segments {
            let Some(mut docs) = postings
                .read_postings(term, IndexRecordOption::Basic)
                .map_err(io)?
            else {
                continue;
            };
            let mut doc = docs.doc();
            while doc != TERMINATED {
                if !segment.is_deleted(doc) {
                    return Ok(versions.first(doc));
                }
                doc = docs.advance();
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, ops: &[IndexOp]) -> Result<Vec<Result<Applied>>> {
        let this = self.clone();
        let ops = ops.to_vec();
        tokio::task::spawn_blocking(move || this.apply_blocking(&ops))
            .await
            .map_err(|e| DomainError::internal("tantivy index: apply", e))?
    }

    async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let permit = Arc::clone(&self.inner.search_slots)
            .acquire_owned()
            .await
            .map_err(|e| DomainError::internal("tantivy index: no search slot", e))?;
        let this = self.clone();
        let request = request.clone();
        tokio::task::spawn_blocking(move || {
            let hits = this.search_blocking(&request);
            drop(permit);
            hits
        })
        .await
        .map_err(|e| DomainError::internal("tantivy index: search", e))?
    }
}

impl TantivyIndex {
    /// [`SearchIndex::apply`] on the calling thread (bulk loads, benchmarks).
    pub fn apply_now(&self, ops: &[IndexOp]) -> Result<Vec<Result<Applied>>> {
        self.apply_blocking(ops)
    }

    /// [`SearchIndex::search`] on the calling thread (benchmarks).
    pub fn search_now(&self, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.search_blocking(request)
    }

    /// The tantivy index itself (diagnostics).
    pub fn tantivy(&self) -> &Index {
        &self.inner.index
    }
}
