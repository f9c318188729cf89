//! The web console (`console/` at the repository root: plain HTML, CSS and ES modules),
//! embedded in the binary and served at `/` with a Content-Security-Policy.
//!
//! Embedded with `include_bytes!` rather than the `rust-embed` crate: a dozen small files
//! with no build step fit in a table, nothing is added to the dependency tree, and a test
//! keeps the table equal to the directory (a file added to `console/` but not here fails it).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Extension;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the console, served at `path`.
pub struct Asset {
    pub path: &'static str,
    pub bytes: &'static [u8],
}

impl Asset {
    pub fn content_type(&self) -> &'static str {
        // Every file has a known extension (a test checks); the fallback is never served.
        content_type_for(self.path).unwrap_or("application/octet-stream")
    }
}

macro_rules! asset {
    ($file:literal) => {
        Asset {
            path: concat!("/", $file),
            bytes: include_bytes!(concat!("../../../console/", $file)),
        }
    };
}

/// Every file of `console/`. `/` serves `index.html`.
pub const ASSETS: &[Asset] = &[
    asset!("index.html"),
    asset!("customer.html"),
    asset!("admin.html"),
    asset!("style.css"),
    asset!("favicon.svg"),
    asset!("config.js"),
    asset!("app.js"),
    asset!("admin.js"),
    asset!("attachments.js"),
    asset!("customer.js"),
    asset!("conversation.js"),
    asset!("graphql.js"),
    asset!("highlight.js"),
    asset!("queries.js"),
    asset!("session.js"),
    asset!("shell.js"),
    asset!("signin.js"),
];

const INDEX: &Asset = &ASSETS[0];

/// The content type of a console file, from its extension (`None`: not servable).
pub fn content_type_for(path: &str) -> Option<&'static str> {
    let (_, extension) = path.rsplit_once('.')?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        // Module scripts must come with a JavaScript MIME type or browsers refuse them.
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

/// The console's Content-Security-Policy: scripts, styles and images from its own origin
/// only (no inline script, nothing fetched from elsewhere), requests to its own origin and
/// WebSockets to its own host (`ws://HOST wss://HOST`, from the request's `Host`), plus the
/// sources given with `--console-connect-src` (an AppSync endpoint, say, when the console
/// is opened with `?endpoint=`). No other host can be reached, by HTTP or WebSocket.
#[derive(Clone, Debug)]
pub struct ConsolePolicy {
    /// The configured sources, validated, each preceded by a space.
    extra: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsolePolicyError {
    #[error(
        "console connect source {0:?}: expected a URL such as https://api.example.com or \
         wss://host:8443/graphql (http, https, ws or wss; no spaces, quotes, ';' or ',')"
    )]
    BadSource(String),
}

impl ConsolePolicy {
    /// The policy with extra `connect-src` sources (each an http(s) or ws(s) URL).
    /// An http(s) source brings its WebSocket sources with it ([`websocket_sources`]), so
    /// that the console's live connection to an allowed endpoint is allowed too.
    pub fn new<S: AsRef<str>>(
        connect_src: impl IntoIterator<Item = S>,
    ) -> Result<Self, ConsolePolicyError> {
        let mut sources: Vec<String> = Vec::new();
        for source in connect_src {
            let source = source.as_ref().trim();
            if source.is_empty() {
                continue;
            }
            if !is_url_source(source) || HeaderValue::from_str(source).is_err() {
                return Err(ConsolePolicyError::BadSource(source.to_owned()));
            }
            for source in std::iter::once(source.to_owned()).chain(websocket_sources(source)) {
                if !sources.contains(&source) {
                    sources.push(source);
                }
            }
        }
        let extra = sources.iter().map(|s| format!(" {s}")).collect();
        Ok(ConsolePolicy { extra })
    }

    /// The policy for a page requested with `Host: host` (its own WebSocket origin; a
    /// missing or odd `Host` gets `'self'` alone).
    pub fn header_value(&self, host: Option<&str>) -> HeaderValue {
        let mut connect = String::from("'self'");
        if let Some(host) = host.filter(|h| is_host(h)) {
            connect.push_str(&format!(" ws://{host} wss://{host}"));
        }
        connect.push_str(&self.extra);
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'"
        );
        HeaderValue::from_str(&csp).unwrap_or_else(|_| {
            HeaderValue::from_static(
                "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
            )
        })
    }
}

/// A `Host` header value that is safe inside a CSP source: `name[:port]` or `[v6]:port`.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
}

impl Default for ConsolePolicy {
    fn default() -> Self {
        static DEFAULT: LazyLock<ConsolePolicy> =
            LazyLock::new(|| ConsolePolicy::new::<&str>([]).expect("the default policy is valid"));
        DEFAULT.clone()
    }
}

/// A CSP host source with a scheme: `scheme://host[:port][/path]`, in characters that
/// cannot end the directive or start another source.
fn is_url_source(source: &str) -> bool {
    let Some((scheme, rest)) = source.split_once("://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    matches!(scheme, "http" | "https" | "ws" | "wss")
        && !host.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~:/[]*%".contains(c))
}

/// Where the console opens WebSockets for an http(s) GraphQL endpoint (`console/graphql.js`,
/// `realtimeUrl`): the endpoint's host over ws(s) (graphql-transport-ws at the endpoint,
/// AppSync's protocol at `<endpoint>/realtime` on a custom domain) and, for an AppSync API
/// host, its real-time host (`<id>.appsync-api.<region>.amazonaws.com` ->
/// `wss://<id>.appsync-realtime-api.<region>.amazonaws.com`). Both belong to the endpoint
/// already trusted with the token.
fn websocket_sources(source: &str) -> Vec<String> {
    let Some((scheme, rest)) = source.split_once("://") else {
        return Vec::new();
    };
    let ws = match scheme {
        "https" => "wss",
        "http" => "ws",
        _ => return Vec::new(),
    };
    let host = rest.split('/').next().unwrap_or_default();
    let mut sources = vec![format!("{ws}://{host}")];
    if let Some(realtime) = appsync_realtime_host(host) {
        sources.push(format!("wss://{realtime}"));
    }
    sources
}

/// `<id>.appsync-realtime-api.<region>.amazonaws.com[.cn]` for an AppSync API host.
fn appsync_realtime_host(host: &str) -> Option<String> {
    let (id, rest) = host.split_once(".appsync-api.")?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    let valid = !id.is_empty()
        && id.chars().all(|c| c.is_ascii_alphanumeric())
        && !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    valid.then(|| format!("{id}.appsync-realtime-api.{rest}"))
}

/// The console's routes: `/` and one per file. The policy comes from an
/// `Extension<ConsolePolicy>` layered on the app (the default one without it).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route(
        "/",
        get(
            |policy: Option<Extension<ConsolePolicy>>, headers: HeaderMap| async move {
                serve(INDEX, policy, &headers)
            },
        ),
    );
    for asset in ASSETS {
        router = router.route(
            asset.path,
            get(
                move |policy: Option<Extension<ConsolePolicy>>, headers: HeaderMap| async move {
                    serve(asset, policy, &headers)
                },
            ),
        );
    }
    router
}

fn serve(
    asset: &'static Asset,
    policy: Option<Extension<ConsolePolicy>>,
    headers: &HeaderMap,
) -> Response {
    let policy = policy.map(|Extension(p)| p).unwrap_or_default();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type()),
            ),
            (header::CONTENT_SECURITY_POLICY, policy.header_value(host)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            // Always revalidate: a new build's console shows up on the next reload.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        asset.bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_console_directory_is_served_with_a_content_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("console/ exists")
            .map(|entry| format!("/{}", entry.expect("entry").file_name().to_string_lossy()))
            .collect();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        on_disk.sort();
        served.sort();
        assert_eq!(
            served, on_disk,
            "ASSETS must list exactly the files of console/"
        );
        for asset in ASSETS {
            let bytes = std::fs::read(dir.join(&asset.path[1..])).expect("read");
            assert_eq!(asset.bytes, bytes.as_slice(), "{}", asset.path);
            assert!(content_type_for(asset.path).is_some(), "{}", asset.path);
        }
        assert_eq!(INDEX.path, "/index.html");
    }

    #[test]
    fn the_default_policy_allows_only_the_console_itself_and_its_own_websockets() {
        let csp = ConsolePolicy::default()
            .header_value(Some("127.0.0.1:4000"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'self'; "), "{csp}");
        assert!(
            csp.contains("; connect-src 'self' ws://127.0.0.1:4000 wss://127.0.0.1:4000; "),
            "{csp}"
        );
        // No scheme-wide source: another host's WebSocket is not reachable.
        assert!(!csp.contains(" ws: ") && !csp.contains(" wss:;"), "{csp}");
        // A Host that could change the policy is left out.
        for hostile in ["evil.example; script-src *", "a b", "", "x'y"] {
            let csp = ConsolePolicy::default().header_value(Some(hostile));
            let csp = csp.to_str().unwrap();
            assert!(csp.contains("connect-src 'self'; "), "{hostile:?}: {csp}");
        }
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
    }

    #[test]
    fn configured_endpoints_are_added_to_connect_src() {
        let policy = ConsolePolicy::new([
            "https://abc.appsync-api.eu-west-1.amazonaws.com/graphql",
            " wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com ",
            "",
        ])
        .unwrap();
        let csp = policy.header_value(Some("localhost:4000"));
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains(
                "connect-src 'self' ws://localhost:4000 wss://localhost:4000 \
                 https://abc.appsync-api.eu-west-1.amazonaws.com/graphql \
                 wss://abc.appsync-api.eu-west-1.amazonaws.com \
                 wss://abc.appsync-realtime-api.eu-west-1.amazonaws.com;"
            ),
            "{csp}"
        );
    }

    #[test]
    fn an_endpoint_brings_the_websocket_hosts_the_console_derives_from_it() {
        let connect_src = |sources: &[&str]| {
            let csp = ConsolePolicy::new(sources).unwrap().header_value(None);
            let csp = csp.to_str().unwrap().to_owned();
            let start = csp.find("connect-src ").unwrap() + "connect-src ".len();
            let end = start + csp[start..].find(';').unwrap();
            csp[start..end].to_owned()
        };
        // AppSync: the real-time host of the same API (graphql.js: appsync-api ->
        // appsync-realtime-api, always wss).
        assert_eq!(
            connect_src(&["https://x1.appsync-api.us-east-1.amazonaws.com/graphql"]),
            "'self' https://x1.appsync-api.us-east-1.amazonaws.com/graphql \
             wss://x1.appsync-api.us-east-1.amazonaws.com \
             wss://x1.appsync-realtime-api.us-east-1.amazonaws.com"
        );
        assert_eq!(
            connect_src(&["https://x1.appsync-api.cn-north-1.amazonaws.com.cn/graphql"]),
            "'self' https://x1.appsync-api.cn-north-1.amazonaws.com.cn/graphql \
             wss://x1.appsync-api.cn-north-1.amazonaws.com.cn \
             wss://x1.appsync-realtime-api.cn-north-1.amazonaws.com.cn"
        );
        // A custom domain or another server: its own host over ws(s), any path (the
        // endpoint itself, or the endpoint + /realtime).
        assert_eq!(
            connect_src(&["https://api.example.com/graphql"]),
            "'self' https://api.example.com/graphql wss://api.example.com"
        );
        assert_eq!(
            connect_src(&["http://localhost:5000/graphql"]),
            "'self' http://localhost:5000/graphql ws://localhost:5000"
        );
        // Nothing else: a WebSocket source brings nothing, a look-alike host no AppSync host,
        // and a source given twice is listed once.
        assert_eq!(
            connect_src(&["wss://a.example", "wss://a.example"]),
            "'self' wss://a.example"
        );
        assert_eq!(
            connect_src(&["https://x.appsync-api.evil.example/graphql"]),
            "'self' https://x.appsync-api.evil.example/graphql wss://x.appsync-api.evil.example"
        );
    }

    #[test]
    fn sources_that_could_change_the_policy_are_refused() {
        for bad in [
            "https://a.example; script-src *",
            "https://a.example 'unsafe-inline'",
            "*",
            "'self'",
            "javascript://x",
            "https://",
            "https:///path",
            "https://a.example,https://b.example",
            "https://user@a.example",
            "data:",
        ] {
            assert!(ConsolePolicy::new([bad]).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type_for("/app.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            content_type_for("/index.html"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            content_type_for("/style.css"),
            Some("text/css; charset=utf-8")
        );
        assert_eq!(content_type_for("/favicon.svg"), Some("image/svg+xml"));
        assert_eq!(content_type_for("/notes.md"), None);
        assert_eq!(content_type_for("/Makefile"), None);
    }
}
