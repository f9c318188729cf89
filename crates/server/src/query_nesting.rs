//! A bound on bracket nesting in a GraphQL document, checked on its text before anything
//! parses it.
//!
//! async-graphql's parser limits the nesting of selection sets, but not of values: it
//! builds `[[[ ... ]]]` and `{a: {a: ...}}` argument values by recursion, so a request of a
//! few kilobytes (2,000 `[`) overflowed a worker thread's stack and aborted the whole
//! server (found by `scripts/fuzz`). The check here is one pass over the bytes: brackets
//! `{`, `[` and `(` outside strings, block strings and comments, at most
//! [`QUERY_BRACKETS_MAX`] deep.

use async_graphql::{ErrorExtensionValues, ServerError};
use chat_domain::ErrorCode;
use chat_domain::limits::QUERY_BRACKETS_MAX;

/// How deep `{`, `[` and `(` nest in `query`, ignoring those inside strings and comments.
/// An unterminated string ends the scan: the parser reports it.
pub fn bracket_depth(query: &str) -> usize {
    let bytes = query.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // A block string ends at the next `"""` not escaped as `\"""`.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// BadInput when `query` nests brackets deeper than [`QUERY_BRACKETS_MAX`].
pub fn check(query: &str) -> Result<(), ServerError> {
    let depth = bracket_depth(query);
    if depth <= QUERY_BRACKETS_MAX {
        return Ok(());
    }
    let mut error = ServerError::new(
        format!(
            "the document nests brackets ({{, [ and ( together) {depth} deep; the limit is \
             {QUERY_BRACKETS_MAX}"
        ),
        None,
    );
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", ErrorCode::BadInput.as_str());
    extensions.set("errorType", ErrorCode::BadInput.as_str());
    error.extensions = Some(extensions);
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_kind_of_bracket_together() {
        assert_eq!(bracket_depth("{ __typename }"), 1);
        assert_eq!(
            bracket_depth(r#"{ chat(appToken: "a", number: 1) { number } }"#),
            2
        );
        assert_eq!(bracket_depth("{ a(x: [[{b: [1]}]]) { c } }"), 6);
        assert_eq!(bracket_depth(""), 0);
        assert_eq!(
            bracket_depth("}}}{"),
            1,
            "unbalanced closers do not go below 0"
        );
    }

    #[test]
    fn ignores_brackets_in_strings_block_strings_and_comments() {
        assert_eq!(bracket_depth(r#"{ a(x: "[[[{{{(((") }"#), 2);
        assert_eq!(bracket_depth(r#"{ a(x: "\"[[[") }"#), 2, "an escaped quote");
        assert_eq!(bracket_depth("{ a(x: \"\"\"[[[ \\\"\"\" [[[ \"\"\") }"), 2);
        assert_eq!(bracket_depth("# [[[[[[\n{ a }"), 1);
        assert_eq!(bracket_depth("{ a } # ((((\r{ b }"), 1);
    }

    #[test]
    fn an_unterminated_string_ends_the_scan() {
        assert_eq!(bracket_depth(r#"{ a(x: "[[[[ "#), 2);
        assert_eq!(bracket_depth(r#"{ a(x: """[[[[ "#), 2);
    }

    #[test]
    fn refuses_deep_values_and_accepts_the_limit() {
        let nested = |n: usize| {
            format!(
                "{{ chat(appToken: {}1{}) {{ number }} }}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        // The outer `{` and `(` count too.
        assert!(check(&nested(QUERY_BRACKETS_MAX - 2)).is_ok());
        let error = check(&nested(QUERY_BRACKETS_MAX - 1)).unwrap_err();
        assert!(error.message.contains("the limit is"), "{}", error.message);
        assert!(check(&nested(100_000)).is_err());
    }
}
