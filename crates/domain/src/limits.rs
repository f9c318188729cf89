//! Every limit of the API, named once. Adapters and the server read them from here.

/// Application names: 1..=100 characters after trimming.
pub const APP_NAME_MAX_CHARS: usize = 100;
/// Chat subjects: at most 200 characters (empty after trimming means "no subject").
pub const SUBJECT_MAX_CHARS: usize = 200;
/// Message bodies: non-empty after trimming, at most 8 KiB of UTF-8.
pub const MESSAGE_BODY_MAX_BYTES: usize = 8 * 1024;
/// User ids (JWT `sub`, customerId): 1..=128 visible characters.
pub const USER_ID_MAX_CHARS: usize = 128;
/// clientMessageId: 1..=64 visible characters.
pub const CLIENT_MESSAGE_ID_MAX_CHARS: usize = 64;
/// Application tokens: at most this many characters of `[A-Za-z0-9_-]`.
pub const APP_TOKEN_MAX_CHARS: usize = 64;
/// The longest a user token may live, `exp` minus `iat` (or minus now, without `iat`), by
/// default: a stolen token is worth at most a day. Configurable per deployment
/// (`--max-token-lifetime-secs`, `CHAT_MAX_TOKEN_LIFETIME_SECS`).
pub const TOKEN_LIFETIME_MAX_SECS: u64 = 86_400;
/// Page sizes: `limit` is 1..=100, 20 when absent.
pub const PAGE_SIZE_MAX: u32 = 100;
pub const PAGE_SIZE_DEFAULT: u32 = 20;
/// Page tokens longer than this are rejected before decoding.
pub const PAGE_TOKEN_MAX_CHARS: usize = 512;
/// HTTP request bodies. A maximal message body escaped as `\uXXXX` is 48 KiB, so this
/// leaves room for the rest of a request without letting anyone post megabytes.
pub const REQUEST_BODY_MAX_BYTES: usize = 128 * 1024;
/// Largest chat or message number: GraphQL `Int` is a signed 32-bit integer.
pub const NUMBER_MAX: u32 = i32::MAX as u32;
/// Search queries: 1..=200 characters after trimming.
pub const SEARCH_QUERY_MAX_CHARS: usize = 200;
/// Search queries: at most this many distinct words.
pub const SEARCH_QUERY_MAX_WORDS: usize = 16;
/// The longest n-gram indexed for substring search. Longer query words match by windows.
pub const SEARCH_GRAM_MAX_CHARS: usize = 20;
/// rotateApplicationSecret: how long tokens signed with the replaced secret keep verifying,
/// by default (a day to roll the new secret out to the application's backends) and at most.
pub const SECRET_GRACE_DEFAULT_SECS: i64 = 24 * 60 * 60;
pub const SECRET_GRACE_MAX_SECS: i64 = 7 * 24 * 60 * 60;
/// How long a process trusts what it read of an application's secret generations
/// ([`crate::keyring`]): a rotation reaches other processes within this time.
pub const SECRET_CACHE_TTL_MS: i64 = 5_000;
/// At most this many applications are cached per process.
pub const SECRET_CACHE_MAX_APPS: usize = 10_000;
/// markAllRead marks the caller's unread chats this many at a time (one store write each
/// page where the store can, e.g. one SQLite transaction).
pub const MARK_ALL_READ_PAGE: u32 = 100;
/// markAllRead stops starting new pages after this long (AppSync gives a resolver 30 s), or
/// sooner when its invocation has less time left (a Lambda's deadline), and answers with the
/// summary as it then is; calling it again continues. 10,000 unread chats finish well
/// inside it on SQLite (docs/unread.md has the figures).
pub const MARK_ALL_READ_BUDGET_MS: i64 = 20_000;

/// Presence: how often a client should call `heartbeat`.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 30;
/// Presence: how long a lease runs from the heartbeat that wrote it.
pub const PRESENCE_LEASE_MS: i64 = 90_000;
/// Presence: a heartbeat that changes nothing writes only when the lease has less than this
/// left (so on-time heartbeats write every other time; presence ends 45-90 s after the
/// last one).
pub const PRESENCE_RENEW_BELOW_MS: i64 = 45_000;
/// The sweep of expired leases ends at most this many per run (the next run goes on).
pub const PRESENCE_SWEEP_BATCH: u32 = 500;
/// Typing: one event per user and chat per this interval; calls in between are folded.
pub const TYPING_INTERVAL_MS: i64 = 2_000;
/// Typing: past this many remembered (user, chat) keys, those older than the interval go.
pub const TYPING_KEYS_RETAINED: usize = 10_000;

// ---- the shape of a GraphQL operation (checked by the dev server before validation) ----
//
// Counted with fragments expanded (a fragment spread twice counts twice), so nested
// fragments cannot multiply work unseen. AppSync enforces its own limits on AWS.

/// Nesting depth of fields. The deepest legitimate queries are introspection queries:
/// `__schema types fields args type` then `kind` under 7 levels of `ofType` is 13 (graphql
/// 16, GraphiQL's), under 9 is 15 (graphql 17's default); data queries need at most 4
/// (`chats items lastMessage body`).
pub const QUERY_DEPTH_MAX: usize = 15;
/// Fields selected by one operation, every alias and every fragment expansion counted.
/// The largest introspection query (graphql 17's, every option on) selects 230 with its
/// fragments expanded, GraphiQL's 194; data queries a few dozen.
pub const QUERY_FIELDS_MAX: usize = 500;
/// Root fields of one operation (aliases count): each one is a resolver call, a store read
/// or write. `{ a1: chats(...) a2: chats(...) ... }` stops here before any resolver runs.
pub const QUERY_ROOT_FIELDS_MAX: usize = 10;
/// Directives on one field or fragment: the dev server knows two (`@skip`, `@include`),
/// each allowed once.
pub const QUERY_DIRECTIVES_PER_FIELD_MAX: usize = 2;
/// Nesting of selection sets, fragments and inline fragments included: async-graphql's
/// recursion guard, a backstop behind the checks above.
pub const QUERY_RECURSION_MAX: usize = 32;
/// Nesting of `{`, `[` and `(` in a document's text, checked before it is parsed: the
/// parser builds nested argument values by recursion, and 2,000 `[` overflowed its stack
/// (found by scripts/fuzz). Selections stop at [`QUERY_RECURSION_MAX`]; this leaves room
/// for their arguments.
pub const QUERY_BRACKETS_MAX: usize = 64;

// ---- rate limits on writes that create (sendMessage, createChat) ---------------------------
//
// Token buckets (GCRA) per user and per application; `chat_domain::throttle` has the
// mechanics. These are the dev server's defaults: ceilings against runaway clients that stay
// out of the way of the test suite (one user sends 2,400 messages as fast as it can there);
// docs/limits.md gives production values. A rate of 0 turns a limit off.

/// Per user (application + user id): sustained sends per second.
pub const SEND_RATE_PER_USER_DEFAULT: u32 = 1_000;
/// Per user: the burst allowed on top of an idle bucket.
pub const SEND_BURST_PER_USER_DEFAULT: u32 = 2_000;
/// Per application: sustained sends per second, all its users together.
pub const SEND_RATE_PER_APP_DEFAULT: u32 = 10_000;
/// Per application: the burst.
pub const SEND_BURST_PER_APP_DEFAULT: u32 = 20_000;
/// The throttle forgets idle buckets (ones that are full again) once it holds more than this
/// many keys; it checks every [`THROTTLE_SWEEP_EVERY`] decisions.
pub const THROTTLE_KEYS_RETAINED: usize = 10_000;
pub const THROTTLE_SWEEP_EVERY: u64 = 1_024;
