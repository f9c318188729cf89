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
/// markAllRead marks the caller's unread chats this many at a time (one store write each
/// page where the store can, e.g. one SQLite transaction).
pub const MARK_ALL_READ_PAGE: u32 = 100;
/// markAllRead stops starting new pages after this long (AppSync gives a resolver 30 s) and
/// answers with the summary as it then is; calling it again continues. 10,000 unread chats
/// finish well inside it (docs/unread.md has the figures).
pub const MARK_ALL_READ_BUDGET_MS: i64 = 20_000;
