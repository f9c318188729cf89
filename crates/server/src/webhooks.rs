//! The dev server's webhook sender: delivers the PENDING deliveries the store queued with
//! each change (see `chat_embedded`'s webhooks module), and settles `message.unseen`
//! checks once their grace has passed.
//!
//! Each attempt goes through [`chat_webhook_client::WebhookClient`] (the SSRF-guarded
//! client, no redirects, a timeout, a read cap); at most [`WebhookConfig::per_endpoint`]
//! requests to one endpoint are in flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chat_domain::webhooks::{
    AttemptOutcome, DELIVERY_RETENTION_MS, DeliveryId, DisablePolicy, DueDelivery, EndpointId,
    TargetPolicy, UnseenCheck, UnseenReceiver, WebhookStore, unseen_is_due,
};
use chat_domain::{
    ChatScope, ChatStore, Clock, DomainError, PresenceCursor, PresenceStatus, PresenceStore, Role,
    ServerKey, Timestamp,
};

use chat_webhook_client::{WebhookClient, retry_at};

use crate::shutdown::Shutdown;

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

/// What the sender needs, built once.
pub struct Sender {
    pub webhooks: Arc<dyn WebhookStore>,
    pub chats: Arc<dyn ChatStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub key: ServerKey,
    pub clock: Arc<dyn Clock>,
    pub config: WebhookConfig,
    client: WebhookClient,
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
        let client = WebhookClient::new(config.targets, config.timeout)
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
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
            let outcome = self.client.post(&next, &self.key, now).await;
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
        let retry_at = retry_at(&outcome, attempts, now, self.config.retry_scale);
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
