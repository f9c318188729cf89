//! GraphiQL, for trying the API in a browser at `GET /graphql` (development: on by default
//! when the server listens on loopback only, `--graphiql` decides).
//!
//! The page loads React and GraphiQL from unpkg.com, each pinned to an exact version and
//! checked by its Subresource Integrity hash (a changed file does not run), under a
//! Content-Security-Policy that allows scripts and styles only from those exact URLs and
//! this server, and requests only to this server. The page's own script and style are
//! served from the binary (no inline script). Queries and mutations go over HTTP; the token
//! goes in GraphiQL's Headers tab.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The page, its script and its style.
pub const PAGE: &str = include_str!("graphiql/index.html");
pub const SCRIPT: &str = include_str!("graphiql/page.js");
pub const STYLE: &str = include_str!("graphiql/page.css");

/// The pinned files the page loads, each the exact URL its `<script>`/`<link>` names.
pub const PINNED: [&str; 4] = [
    "https://unpkg.com/react@18.3.1/umd/react.production.min.js",
    "https://unpkg.com/react-dom@18.3.1/umd/react-dom.production.min.js",
    "https://unpkg.com/graphiql@3.9.0/graphiql.min.js",
    "https://unpkg.com/graphiql@3.9.0/graphiql.min.css",
];

/// The page's policy: the pinned files and this server, nothing else.
pub fn policy() -> String {
    let scripts = PINNED[..3].join(" ");
    let style = PINNED[3];
    format!(
        "default-src 'none'; script-src 'self' {scripts}; style-src 'self' {style}; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn respond(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&policy()).expect("a valid header"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

pub fn page() -> Response {
    respond("text/html; charset=utf-8", PAGE)
}

pub fn script() -> Response {
    respond("text/javascript; charset=utf-8", SCRIPT)
}

pub fn style() -> Response {
    respond("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_external_file_is_pinned_with_an_integrity_hash_and_named_in_the_policy() {
        let policy = policy();
        let mut external = 0;
        for tag in PAGE
            .split('<')
            .filter(|t| t.starts_with("script") || t.starts_with("link"))
        {
            let url = tag.split(['"', '\'']).find(|part| part.starts_with("http"));
            let Some(url) = url else { continue };
            external += 1;
            assert!(PINNED.contains(&url), "{url} is not pinned");
            assert!(
                tag.contains("integrity=\"sha384-"),
                "{url} has no integrity hash"
            );
            assert!(tag.contains("crossorigin=\"anonymous\""), "{url}");
            assert!(
                url.contains('@')
                    && url
                        .split('@')
                        .nth(1)
                        .unwrap()
                        .starts_with(|c: char| c.is_ascii_digit()),
                "{url}: no exact version"
            );
            assert!(policy.contains(url), "{url} not in the policy");
        }
        assert_eq!(external, PINNED.len());
        // No inline script: every <script> has a src.
        for tag in PAGE.split("<script").skip(1) {
            assert!(tag.trim_start().starts_with("src="), "inline script: {tag}");
        }
        assert!(!policy.contains("unsafe"), "{policy}");
        assert!(policy.contains("connect-src 'self';"), "{policy}");
    }
}
