//! One webhook attempt, as both senders make it (the dev server's poller and the AWS
//! `webhook-sender` function): a signed POST through an HTTP client that cannot be turned
//! against the network it runs in.
//!
//! Safety (the classic holes of webhook senders):
//! - every address a host name resolves to is checked at connect time by the client's own
//!   resolver ([`GuardedResolver`]): private, loopback (unless allowed), link-local,
//!   unique-local, multicast and other special addresses are dropped, and a name left with
//!   none is refused. An IP literal in a URL never reaches a resolver, so it is checked
//!   before each request as well;
//! - no redirect is followed (a 3xx is a failed attempt), no proxy is used;
//! - each attempt has a timeout, and at most [`BODY_CAP`] bytes of a response are read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chat_domain::webhooks::{
    AttemptOutcome, DueDelivery, TargetPolicy, next_attempt_at, refused_address, signature_header,
};
use chat_domain::{ServerKey, Timestamp};

/// The most of a response body an attempt reads (then it drops the connection).
pub const BODY_CAP: usize = 4 * 1024;
/// The signature header.
pub const SIGNATURE_HEADER: &str = "Chat-Signature";
/// The event id header (also in the body): what receivers de-duplicate on.
pub const EVENT_ID_HEADER: &str = "Chat-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Chat-Event-Type";
pub const USER_AGENT: &str = "chat-webhooks/1";

/// Why the resolver refused a name: shown as the attempt's error.
#[derive(Debug, thiserror::Error)]
#[error("refused: {host} resolves only to {why}")]
pub struct RefusedTarget {
    host: String,
    why: &'static str,
}

/// A resolver that drops the addresses [`refused_address`] refuses, so that a name is
/// checked on what it resolves to when the connection is made (a DNS answer that changed
/// since the endpoint was created included).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: TargetPolicy,
}

impl GuardedResolver {
    pub fn new(policy: TargetPolicy) -> Self {
        GuardedResolver { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = "no address";
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match refused_address(addr.ip(), policy) {
                    Some(reason) => {
                        why = reason;
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(RefusedTarget { host, why }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of webhook attempts: the guarded resolver, no redirects, no proxy, a
/// timeout for the whole attempt.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    client: reqwest::Client,
    targets: TargetPolicy,
}

impl WebhookClient {
    /// `timeout` bounds one attempt: connect, send, response head, body up to the cap.
    pub fn new(targets: TargetPolicy, timeout: Duration) -> Result<Self, reqwest::Error> {
        // reqwest's rustls takes the process's provider: the one the rest of the code uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(targets)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(WebhookClient { client, targets })
    }

    /// One attempt of `due` at `now`, signed with the endpoint's current secrets.
    pub async fn post(&self, due: &DueDelivery, key: &ServerKey, now: Timestamp) -> AttemptOutcome {
        let url = due.endpoint.url.url();
        // IP literals never reach the resolver: check them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Some(why) = refused_address(ip, self.targets)
        {
            return AttemptOutcome::Failed {
                status: None,
                error: format!("refused: {ip} is {why}"),
            };
        }
        let secrets = due.endpoint.signing_secrets(key, now);
        let signature = signature_header(&secrets, now.0.div_euclid(1000), due.body.as_bytes());
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, due.delivery.event_id.as_str())
            .header(EVENT_TYPE_HEADER, due.delivery.event_type.as_str())
            .body(due.body.clone());
        match request.send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                // Read a little of the body, so a small answer completes; never more.
                let mut read = 0usize;
                while read < BODY_CAP {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                if response.status().is_success() {
                    AttemptOutcome::Delivered { status }
                } else {
                    AttemptOutcome::Failed {
                        status: Some(status),
                        error: format!("HTTP {status}"),
                    }
                }
            }
            Err(error) => AttemptOutcome::Failed {
                status: None,
                error: describe(&error),
            },
        }
    }
}

/// When the attempt numbered `attempts` (made at `now`, ended with `outcome`) is tried
/// again: the retry schedule's wait with its random factor, times `scale` (1.0: the
/// documented schedule; tests shorten it). `None` when it was delivered or was the last.
pub fn retry_at(
    outcome: &AttemptOutcome,
    attempts: u32,
    now: Timestamp,
    scale: f64,
) -> Option<Timestamp> {
    match outcome {
        AttemptOutcome::Delivered { .. } => None,
        AttemptOutcome::Failed { .. } => {
            next_attempt_at(attempts, Timestamp(0), rand::random::<f64>())
                .map(|delay| Timestamp(now.0 + (delay.0 as f64 * scale) as i64))
        }
    }
}

/// An attempt's error as the admin sees it: the refusal, a timeout, or the connection
/// error, without the request's URL (it is the endpoint's, shown beside it).
fn describe(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedTarget>() {
            return refused.to_string();
        }
        source = cause.source();
    }
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        let mut chain = String::from("cannot connect");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        chain
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve;

    use super::*;

    async fn resolve(host: &str, allow_loopback: bool) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver::new(TargetPolicy { allow_loopback });
        let name: reqwest::dns::Name = host.parse().map_err(|_| "bad name".to_owned())?;
        resolver
            .resolve(name)
            .await
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_unless_allowed() {
        let refused = resolve("localhost", false).await.unwrap_err();
        assert!(
            refused.contains("refused: localhost resolves only to a loopback address"),
            "{refused}"
        );
        let allowed = resolve("localhost", true).await.unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()) && !allowed.is_empty());
    }

    #[tokio::test]
    async fn private_address_literals_given_as_names_are_refused() {
        // getaddrinfo answers a dotted quad given as a name with itself.
        for host in ["10.1.2.3", "169.254.169.254", "192.168.1.1", "0.0.0.0"] {
            let refused = resolve(host, true).await.unwrap_err();
            assert!(refused.starts_with("refused:"), "{host}: {refused}");
        }
    }
}
