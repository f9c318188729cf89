//! The dev server's webhook sender: delivers the PENDING deliveries the store queued with
//! each change (see `chat_embedded`'s webhooks module), and settles `message.unseen`
//! checks once their grace has passed.
//!
//! Safety (the classic holes of webhook senders):
//! - every address a host name resolves to is checked at connect time by the client's own
//!   resolver ([`GuardedResolver`]): private, loopback (unless allowed), link-local,
//!   unique-local, multicast and other special addresses are dropped, and a name left with
//!   none is refused. An IP literal in a URL never reaches a resolver, so it is checked
//!   before each request as well;
//! - no redirect is followed (a 3xx is a failed attempt), no proxy is used;
//! - each attempt has a timeout, and at most [`BODY_CAP`] bytes of a response are read;
//! - at most [`WebhookConfig::per_endpoint`] requests to one endpoint are in flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chat_domain::webhooks::{
    AttemptOutcome, DELIVERY_RETENTION_MS, DeliveryId, DisablePolicy, DueDelivery, EndpointId,
    TargetPolicy, UnseenCheck, UnseenReceiver, WebhookStore, next_attempt_at, refused_address,
    signature_header, unseen_is_due,
};
use chat_domain::{
    ChatScope, ChatStore, Clock, DomainError, PresenceCursor, PresenceStatus, PresenceStore, Role,
    ServerKey, Timestamp,
};

use crate::shutdown::Shutdown;

/// The most of a response body the sender reads (then it drops the connection).
pub const BODY_CAP: usize = 4 * 1024;
/// The signature header.
pub const SIGNATURE_HEADER: &str = "Chat-Signature";
/// The event id header (also in the body): what receivers de-duplicate on.
pub const EVENT_ID_HEADER: &str = "Chat-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Chat-Event-Type";

/// How often the sender looks for due work when nothing woke it.
const POLL: Duration = Duration::from_millis(100);
/// How often finished deliveries past their retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows one prune write removes at most (the writer stays responsive).
const PRUNE_BATCH: u32 = 5_000;
/// Deliveries held in memory at most (queued, being sent or being recorded): a slow
/// endpoint's backlog waits in the store, not here.
const MAX_QUEUED: usize = 1_000;
/// Deliveries and checks taken per round.
const BATCH: u32 = 200;

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub targets: TargetPolicy,
    /// The `message.unseen` grace.
    pub unseen_grace: Duration,
    /// One attempt's whole time: connect, send, response head, body up to the cap.
    pub timeout: Duration,
    /// Requests in flight to one endpoint at most.
    pub per_endpoint: usize,
    pub disable: DisablePolicy,
    /// Scales the retry schedule (1.0: the documented one); tests shorten it.
    pub retry_scale: f64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            targets: TargetPolicy::default(),
            unseen_grace: Duration::from_millis(
                chat_domain::webhooks::UNSEEN_GRACE_DEFAULT_MS as u64,
            ),
            timeout: Duration::from_secs(10),
            per_endpoint: 4,
            disable: DisablePolicy::default(),
            retry_scale: 1.0,
        }
    }
}

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

/// The sender's HTTP client: the guarded resolver, no redirects, no proxy.
pub fn client(config: &WebhookConfig) -> Result<reqwest::Client, String> {
    // reqwest's rustls takes the process's provider: the one the rest of the server uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: config.targets,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent("chat-webhooks/1")
        .build()
        .map_err(|e| format!("cannot build the webhook client: {e}"))
}

/// What the sender needs, built once.
pub struct Sender {
    pub webhooks: Arc<dyn WebhookStore>,
    pub chats: Arc<dyn ChatStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub key: ServerKey,
    pub clock: Arc<dyn Clock>,
    pub config: WebhookConfig,
    client: reqwest::Client,
    in_flight: Mutex<InFlight>,
}

/// What the sender holds: every delivery taken from the store and not yet recorded
/// (queued, being sent, or being recorded), and per endpoint the deliveries waiting for a
/// slot and how many slots are taken.
#[derive(Default)]
struct InFlight {
    deliveries: HashSet<DeliveryId>,
    endpoints: HashMap<EndpointId, EndpointQueue>,
}

#[derive(Default)]
struct EndpointQueue {
    waiting: VecDeque<DueDelivery>,
    sending: usize,
}

impl Sender {
    pub fn new(
        webhooks: Arc<dyn WebhookStore>,
        chats: Arc<dyn ChatStore>,
        presence: Arc<dyn PresenceStore>,
        key: ServerKey,
        clock: Arc<dyn Clock>,
        config: WebhookConfig,
    ) -> Result<Arc<Self>, String> {
        let client = client(&config)?;
        Ok(Arc::new(Sender {
            webhooks,
            chats,
            presence,
            key,
            clock,
            config,
            client,
            in_flight: Mutex::default(),
        }))
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One round: settles due `message.unseen` checks, then queues due deliveries (while
    /// fewer than [`MAX_QUEUED`] wait) and starts the slots their endpoints have free.
    /// Whether it took a full batch (more may be due now).
    pub async fn round(self: &Arc<Self>) -> Result<bool, DomainError> {
        let now = self.clock.now();
        let grace = i64::try_from(self.config.unseen_grace.as_millis()).unwrap_or(i64::MAX);
        for check in self
            .webhooks
            .due_unseen(Timestamp(now.0.saturating_sub(grace)), BATCH)
            .await?
        {
            let send = self.unseen_still_due(&check, now).await?;
            self.webhooks.settle_unseen(&check, send, now).await?;
        }
        let (skip, room) = {
            let in_flight = self.in_flight();
            let skip: Vec<DeliveryId> = in_flight.deliveries.iter().cloned().collect();
            let room = MAX_QUEUED.saturating_sub(in_flight.deliveries.len());
            (skip, u32::try_from(room).unwrap_or(u32::MAX).min(BATCH))
        };
        if room == 0 {
            return Ok(false);
        }
        let due = self.webhooks.due_deliveries(now, room, &skip).await?;
        let full = due.len() == room as usize;
        let mut start = Vec::new();
        {
            let mut in_flight = self.in_flight();
            for delivery in due {
                in_flight.deliveries.insert(delivery.delivery.id.clone());
                let queue = in_flight
                    .endpoints
                    .entry(delivery.endpoint.id.clone())
                    .or_default();
                queue.waiting.push_back(delivery);
            }
            for (endpoint, queue) in &mut in_flight.endpoints {
                while queue.sending < self.config.per_endpoint
                    && queue.sending < queue.waiting.len()
                {
                    queue.sending += 1;
                    start.push(endpoint.clone());
                }
            }
        }
        for endpoint in start {
            let sender = Arc::clone(self);
            tokio::spawn(async move { sender.send_queued(endpoint).await });
        }
        Ok(full)
    }

    /// One of an endpoint's slots: sends its waiting deliveries one after the other, and
    /// gives the slot back when none is left. Recording an attempt does not hold the slot.
    async fn send_queued(self: Arc<Self>, endpoint: EndpointId) {
        loop {
            let next = {
                let mut in_flight = self.in_flight();
                let Some(queue) = in_flight.endpoints.get_mut(&endpoint) else {
                    return;
                };
                match queue.waiting.pop_front() {
                    Some(next) => next,
                    None => {
                        queue.sending -= 1;
                        if queue.sending == 0 {
                            in_flight.endpoints.remove(&endpoint);
                        }
                        return;
                    }
                }
            };
            let now = self.clock.now();
            let outcome = self.send(&next, now).await;
            let sender = Arc::clone(&self);
            tokio::spawn(async move {
                let id = next.delivery.id.clone();
                if let Err(error) = sender.record(&next, outcome, now).await {
                    tracing::error!(%error, delivery = %id, "cannot record a webhook attempt");
                }
                sender.in_flight().deliveries.remove(&id);
            });
        }
    }

    /// Whether the receiver of the checked message still has not seen it.
    async fn unseen_still_due(
        &self,
        check: &UnseenCheck,
        now: Timestamp,
    ) -> Result<bool, DomainError> {
        let scope = ChatScope {
            app: check.app.clone(),
            chat: check.chat,
            customer: None,
        };
        let Some(chat) = self.chats.chat(&scope).await? else {
            return Ok(false);
        };
        let Some(message) = self.chats.message(&scope, check.number).await? else {
            return Ok(false);
        };
        if message.deleted {
            return Ok(false);
        }
        let receiver = UnseenReceiver::of(message.sender_role, &chat.customer_id);
        let (customer, agents_online) = match &receiver {
            UnseenReceiver::Customer(id) => {
                (self.presence.stored_presence(&check.app, id).await?, 0)
            }
            UnseenReceiver::Agents => (None, self.agents_online(check).await?),
        };
        Ok(unseen_is_due(
            &chat,
            check.number,
            &receiver,
            customer.as_ref(),
            agents_online,
            now,
        ))
    }

    async fn agents_online(&self, check: &UnseenCheck) -> Result<u32, DomainError> {
        const PAGE: u32 = 100;
        let now = self.clock.now();
        let mut after: Option<PresenceCursor> = None;
        loop {
            let page = self
                .presence
                .presences(&check.app, Some(Role::Agent), now, after.as_ref(), PAGE)
                .await?;
            if page.iter().any(|p| p.status == PresenceStatus::Online) {
                return Ok(1);
            }
            if page.len() < PAGE as usize {
                return Ok(0);
            }
            after = page.last().map(PresenceCursor::of);
        }
    }

    /// Records an attempt made at `now`, with its retry when it failed.
    async fn record(
        &self,
        due: &DueDelivery,
        outcome: AttemptOutcome,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        let attempts = due.delivery.attempts + 1;
        let retry_at = match outcome {
            AttemptOutcome::Delivered { .. } => None,
            AttemptOutcome::Failed { .. } => {
                next_attempt_at(attempts, Timestamp(0), rand::random::<f64>()).map(|delay| {
                    Timestamp(now.0 + (delay.0 as f64 * self.config.retry_scale) as i64)
                })
            }
        };
        tracing::debug!(
            delivery = %due.delivery.id,
            endpoint = %due.endpoint.id,
            ?outcome,
            attempts,
            "webhook attempt"
        );
        self.webhooks
            .record_attempt(
                &due.delivery.id,
                &outcome,
                retry_at,
                self.config.disable,
                self.clock.now(),
            )
            .await
    }

    async fn send(&self, due: &DueDelivery, now: Timestamp) -> AttemptOutcome {
        let url = due.endpoint.url.url();
        // IP literals never reach the resolver: check them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Some(why) = refused_address(ip, self.config.targets)
        {
            return AttemptOutcome::Failed {
                status: None,
                error: format!("refused: {ip} is {why}"),
            };
        }
        let secrets = due.endpoint.signing_secrets(&self.key, now);
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

    /// Removes finished deliveries older than [`DELIVERY_RETENTION_MS`] and then their
    /// events, a batch per write.
    async fn prune(&self) {
        let before = Timestamp(self.clock.now().0 - DELIVERY_RETENTION_MS);
        loop {
            match self.webhooks.prune(before, PRUNE_BATCH).await {
                Ok(removed) if removed >= u64::from(PRUNE_BATCH) => continue,
                Ok(_) => return,
                Err(error) => {
                    tracing::error!(%error, "cannot prune webhook deliveries");
                    return;
                }
            }
        }
    }

    /// Rounds until the server stops: the next one at once after a full batch, else after
    /// [`POLL`].
    pub fn spawn(self: Arc<Self>, shutdown: Shutdown) {
        tokio::spawn(async move {
            let mut pruned_at: Option<std::time::Instant> = None;
            loop {
                let more = match self.round().await {
                    Ok(more) => more,
                    Err(error) => {
                        tracing::error!(%error, "webhook round failed; the next one retries");
                        false
                    }
                };
                if pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned_at = Some(std::time::Instant::now());
                    self.prune().await;
                }
                let pause = if more { Duration::ZERO } else { POLL };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.stopping() => return,
                }
            }
        });
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
        let resolver = GuardedResolver {
            policy: TargetPolicy { allow_loopback },
        };
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
