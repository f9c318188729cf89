//! The DynamoDB store's integration tests against moto's server mode (started once for the
//! binary, crates/dynamodb/src/moto.rs), one module a topic. One test binary, so that the
//! workspace builds and links it once; `cargo test -p chat-dynamodb --test dynamodb <module>::`
//! runs one topic.

use std::collections::BTreeMap;

/// The requests of each operation name, from pairs.
fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| ((*op).to_owned(), *n)).collect()
}

/// Runs `what`, then asserts the requests it sent (by operation name), printing the
/// figure. Defined before the modules, so that every one of them has it.
macro_rules! assert_requests {
    ($counter:expr, $name:literal, $what:expr, $expected:expr) => {{
        $counter.take();
        let result = $what;
        let sent = $counter.take();
        println!("requests | {:<40} | {:?}", $name, sent);
        assert_eq!(sent, crate::counts($expected), "{}", $name);
        result
    }};
}

mod attachments;
mod conformance;
mod numbering;
mod paging;
mod presence;
mod requests;
mod stream;
mod unread;
mod webhooks;
