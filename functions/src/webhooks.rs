//! Webhooks on AWS: the table's stream -> `stream-webhooks` (records each event's
//! deliveries, idempotently, and hands them to an SQS queue; schedules `message.unseen`
//! checks with the grace as the message's delay) -> the queue -> `webhook-sender` (signs
//! and posts, records the attempt, re-enqueues a retry with its backoff).
//!
//! A queue message is a task: `{"kind": "delivery", "app", "endpoint", "delivery",
//! "attempts", "notBefore"?}`, `{"kind": "unseen", "app", "chat", "number", "queuedAt"}`, or
//! `{"kind": "resume", "app", "endpoint", "after"?: {"createdAt", "id"}}` (an endpoint was
//! enabled again: queue a page of its PENDING deliveries, then the next page's task).
//! SQS delivers at least once, so the sender acts on a delivery task only while the
//! delivery is PENDING with the attempts the task names, and records the attempt only on
//! that condition: a duplicate task sends at most once more and records nothing. SQS delays
//! a message at most [`MAX_DELAY_SECS`]; a later retry is re-enqueued until it is due.
//!
//! Each attempt is made as the dev server makes it, by [`chat_webhook_client::WebhookClient`]:
//! every address a name resolves to is checked at connect time, IP literals before the
//! request, no redirects, no proxy, a timeout, and a read cap. It holds one of the
//! endpoint's send slots in the table (`SenderConfig::per_endpoint`, leased a little longer
//! than the timeout), so that all sender instances together keep the dev server's
//! per-endpoint cap; a task that finds every slot taken is sent again, delayed a little.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chat_domain::webhooks::{
    Delivery, DeliveryCursor, DeliveryId, DeliveryStatus, DisablePolicy, DueDelivery, EndpointId,
    EventId, EventType, TargetPolicy, UnseenCheck, UnseenReceiver, WebhookEndpoints, WebhookEvent,
    unseen_data, unseen_still_due,
};
use chat_domain::{
    AppToken, ChatNumber, ChatScope, ChatStore, Clock, DomainError, MessageNumber, ServerKey,
    Timestamp,
};
use chat_dynamodb::DynamoStore;
use chat_dynamodb::webhooks::{FeedItem, SlotLease, feed_items};
use chat_webhook_client::{WebhookClient, retry_at};
use serde_json::{Value, json};

/// The longest delay SQS gives a message (15 minutes).
pub const MAX_DELAY_SECS: i64 = 900;
/// How much longer than an attempt's timeout its endpoint slot is leased.
const SLOT_LEASE_MARGIN: Duration = Duration::from_secs(5);

/// The queue the functions hand tasks to.
#[derive(Clone)]
pub struct TaskQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl TaskQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        TaskQueue {
            client,
            url: url.into(),
        }
    }

    /// 1 SendMessage, delayed by `delay_secs` (clamped to 0 ..= [`MAX_DELAY_SECS`]).
    pub async fn send(&self, task: &Value, delay_secs: i64) -> Result<(), DomainError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(task.to_string())
            .delay_seconds(delay_secs.clamp(0, MAX_DELAY_SECS) as i32)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                DomainError::internal(
                    "cannot queue a webhook task",
                    aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
                )
            })
    }
}

fn delivery_task(app: &AppToken, delivery: &Delivery, not_before: Option<Timestamp>) -> Value {
    let mut task = json!({
        "kind": "delivery",
        "app": app.as_str(),
        "endpoint": delivery.endpoint.as_str(),
        "delivery": delivery.id.as_str(),
        "attempts": delivery.attempts,
    });
    if let Some(at) = not_before {
        task["notBefore"] = json!(at.0);
    }
    task
}

fn resume_task(app: &AppToken, endpoint: &EndpointId, after: Option<&DeliveryCursor>) -> Value {
    let mut task = json!({
        "kind": "resume",
        "app": app.as_str(),
        "endpoint": endpoint.as_str(),
    });
    if let Some(after) = after {
        task["after"] = json!({"createdAt": after.created_at.0, "id": after.id.as_str()});
    }
    task
}

fn unseen_task(check: &UnseenCheck) -> Value {
    json!({
        "kind": "unseen",
        "app": check.app.as_str(),
        "chat": check.chat.get(),
        "number": check.number.get(),
        "queuedAt": check.queued_at.0,
    })
}

/// Seconds until `at`, rounded up (0 when due).
fn secs_until(at: Timestamp, now: Timestamp) -> i64 {
    ((at.0 - now.0).max(0) + 999) / 1000
}

// ---- the stream function --------------------------------------------------------------------

/// Handles one batch of the table's stream: every record's events are recorded and their
/// deliveries queued; a message's `message.unseen` check is queued with the grace as its
/// delay when an endpoint subscribes; a redelivery is queued. A record that fails is
/// reported in `batchItemFailures`, so Lambda retries from it (what was done is done once:
/// deliveries are put only if absent).
pub async fn handle_webhook_stream(
    store: &DynamoStore,
    queue: &TaskQueue,
    unseen_grace: Duration,
    event: StreamEvent,
) -> DynamoDbEventResponse {
    let mut failed = Vec::new();
    let mut queued = 0usize;
    for (sequence, items) in feed_items(&event.records) {
        let result = match items {
            Ok(items) => feed(store, queue, unseen_grace, items).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(n) => queued += n,
            Err(error) => {
                crate::log_error("webhook stream record failed", &error);
                failed.push(sequence);
            }
        }
    }
    tracing::info!(
        records = event.records.len(),
        queued,
        failed = failed.len(),
        "webhook batch"
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|sequence| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            failure
        })
        .collect();
    response
}

async fn feed(
    store: &DynamoStore,
    queue: &TaskQueue,
    unseen_grace: Duration,
    items: Vec<FeedItem>,
) -> Result<usize, DomainError> {
    let mut queued = 0;
    for item in items {
        match item {
            FeedItem::Event(event) => queued += queue_event(store, queue, &event).await?,
            FeedItem::Unseen(check) => {
                if store
                    .subscribes(&check.app, EventType::MessageUnseen)
                    .await?
                {
                    let delay = unseen_grace.as_secs().try_into().unwrap_or(MAX_DELAY_SECS);
                    queue.send(&unseen_task(&check), delay).await?;
                    queued += 1;
                }
            }
            FeedItem::Redelivery {
                app,
                endpoint,
                delivery,
            } => {
                let task = json!({
                    "kind": "delivery",
                    "app": app.as_str(),
                    "endpoint": endpoint.as_str(),
                    "delivery": delivery.as_str(),
                    "attempts": 0,
                });
                queue.send(&task, 0).await?;
                queued += 1;
            }
            FeedItem::Reenabled { app, endpoint } => {
                queue.send(&resume_task(&app, &endpoint, None), 0).await?;
                queued += 1;
            }
        }
    }
    Ok(queued)
}

async fn queue_event(
    store: &DynamoStore,
    queue: &TaskQueue,
    event: &WebhookEvent,
) -> Result<usize, DomainError> {
    let deliveries = store.record_event(event).await?;
    for delivery in &deliveries {
        queue
            .send(&delivery_task(&event.app, delivery, None), 0)
            .await?;
    }
    Ok(deliveries.len())
}

// ---- the sender -----------------------------------------------------------------------------

/// What the sender function is configured with.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub targets: TargetPolicy,
    pub timeout: Duration,
    pub disable: DisablePolicy,
    /// Scales the retry schedule (1.0: the documented one); tests shorten it.
    pub retry_scale: f64,
    /// Deliveries a resume task examines (one Query page, of any status).
    pub resume_page: u32,
    /// Posts to one endpoint in flight at most, across every sender instance.
    pub per_endpoint: u32,
    /// How long a delivery that found every slot of its endpoint taken waits, seconds.
    pub busy_delay_secs: i64,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            targets: TargetPolicy::default(),
            timeout: Duration::from_secs(10),
            disable: DisablePolicy::default(),
            retry_scale: 1.0,
            resume_page: 100,
            per_endpoint: 4,
            busy_delay_secs: 2,
        }
    }
}

/// The sender: the store, the queue, the key that derives the signing secrets, the client.
pub struct WebhookSender {
    pub store: DynamoStore,
    pub queue: TaskQueue,
    pub key: ServerKey,
    pub clock: Arc<dyn Clock>,
    pub config: SenderConfig,
    client: WebhookClient,
}

impl WebhookSender {
    pub fn new(
        store: DynamoStore,
        queue: TaskQueue,
        key: ServerKey,
        clock: Arc<dyn Clock>,
        config: SenderConfig,
    ) -> Result<Self, crate::Error> {
        let client = WebhookClient::new(config.targets, config.timeout)?;
        Ok(WebhookSender {
            store,
            queue,
            key,
            clock,
            config,
            client,
        })
    }

    /// Handles one batch of queue messages, concurrently; a message that fails is
    /// reported in `batchItemFailures` (SQS makes it visible again after its visibility
    /// timeout), the others are deleted.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let results = futures::future::join_all(event.records.iter().map(|message| async move {
            let body = message.body.as_deref().unwrap_or_default();
            (message.message_id.clone(), self.task(body).await)
        }))
        .await;
        let mut response = SqsBatchResponse::default();
        for (id, result) in results {
            if let Err(error) = result {
                crate::log_error("webhook task failed", &error);
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// One task. A malformed one is dropped with an error log (retrying cannot help).
    pub async fn task(&self, body: &str) -> Result<(), DomainError> {
        let Ok(task) = serde_json::from_str::<Value>(body) else {
            tracing::error!(body, "webhook task is not JSON: dropped");
            return Ok(());
        };
        match task["kind"].as_str() {
            Some("delivery") => match parse_delivery_task(&task) {
                Some(parsed) => self.deliver(parsed, &task).await,
                None => {
                    tracing::error!(%task, "malformed delivery task: dropped");
                    Ok(())
                }
            },
            Some("resume") => match parse_resume_task(&task) {
                Some(resume) => self.resume(resume).await,
                None => {
                    tracing::error!(%task, "malformed resume task: dropped");
                    Ok(())
                }
            },
            Some("unseen") => match parse_unseen_task(&task) {
                Some(check) => self.settle_unseen(&check).await,
                None => {
                    tracing::error!(%task, "malformed unseen task: dropped");
                    Ok(())
                }
            },
            _ => {
                tracing::error!(%task, "unknown webhook task: dropped");
                Ok(())
            }
        }
    }

    async fn deliver(&self, task: DeliveryTask, raw: &Value) -> Result<(), DomainError> {
        let now = self.clock.now();
        if let Some(at) = task.not_before
            && at.0 > now.0 + 1_000
        {
            // Not due yet (SQS delays 15 minutes at most): wait another round.
            return self.queue.send(raw, secs_until(at, now)).await;
        }
        let Some(due) = self
            .store
            .load_delivery(&task.app, &task.endpoint, &task.delivery)
            .await?
        else {
            return Ok(());
        };
        if due.delivery.status != DeliveryStatus::Pending || due.delivery.attempts != task.attempts
        {
            // Done, or a duplicate of an attempt already made.
            return Ok(());
        }
        if !due.endpoint.enabled {
            // Stays PENDING; it is not sent while the endpoint is disabled.
            return Ok(());
        }
        let Some(slot) = self.acquire_slot(&task, &due, now).await? else {
            // Every slot is taken: the task comes back later as a new message (returning
            // it to the queue would count a receive toward the dead-letter queue).
            tracing::debug!(delivery = %due.delivery.id, "webhook endpoint busy");
            return self.queue.send(raw, self.config.busy_delay_secs).await;
        };
        let outcome = self.client.post(&due, &self.key, now).await;
        if let Err(error) = self
            .store
            .release_endpoint_slot(&task.app, &task.endpoint, &slot)
            .await
        {
            crate::log_error("cannot release a webhook slot (its lease ends)", &error);
        }
        let attempts = due.delivery.attempts + 1;
        let retry_at = retry_at(&outcome, attempts, now, self.config.retry_scale);
        tracing::info!(
            delivery = %due.delivery.id,
            endpoint = %due.endpoint.id,
            ?outcome,
            attempts,
            "webhook attempt"
        );
        let recorded = self
            .store
            .record_loaded_attempt(
                &due,
                &outcome,
                retry_at,
                self.config.disable,
                self.clock.now(),
            )
            .await?;
        if recorded && let Some(at) = retry_at {
            let mut next = due.delivery.clone();
            next.attempts = attempts;
            let task = delivery_task(&task.app, &next, Some(at));
            self.queue
                .send(&task, secs_until(at, self.clock.now()))
                .await?;
        }
        Ok(())
    }

    /// One of the endpoint's send slots for this attempt, leased for as long as the attempt
    /// may take and a little more (a crashed sender's slot frees itself then).
    async fn acquire_slot(
        &self,
        task: &DeliveryTask,
        due: &DueDelivery,
        now: Timestamp,
    ) -> Result<Option<SlotLease>, DomainError> {
        let lease_ms = i64::try_from((self.config.timeout + SLOT_LEASE_MARGIN).as_millis())
            .unwrap_or(i64::MAX);
        let cap = self.config.per_endpoint.max(1);
        self.store
            .acquire_endpoint_slot(
                &task.app,
                &task.endpoint,
                cap,
                rand::random_range(0..cap),
                &format!("{}#{}", due.delivery.id, due.delivery.attempts),
                now,
                Timestamp(now.0.saturating_add(lease_ms)),
            )
            .await
    }

    /// One page of a re-enabled endpoint's PENDING deliveries: a delivery task for each
    /// (due at its next attempt, as the dev server's poller would take it), then the task of
    /// the next page. Nothing while the endpoint is gone or disabled again.
    async fn resume(&self, task: ResumeTask) -> Result<(), DomainError> {
        let enabled = self
            .store
            .endpoint(&task.app, &task.endpoint)
            .await?
            .is_some_and(|e| e.enabled);
        if !enabled {
            return Ok(());
        }
        let (pending, next) = self
            .store
            .pending_deliveries(
                &task.app,
                &task.endpoint,
                task.after.as_ref(),
                self.config.resume_page,
            )
            .await?;
        let now = self.clock.now();
        futures::future::try_join_all(pending.iter().map(|delivery| {
            let at = delivery.next_attempt_at.unwrap_or(now);
            let queued = delivery_task(&task.app, delivery, Some(at));
            async move { self.queue.send(&queued, secs_until(at, now)).await }
        }))
        .await?;
        tracing::info!(
            endpoint = %task.endpoint,
            queued = pending.len(),
            more = next.is_some(),
            "resumed webhook deliveries"
        );
        if let Some(after) = next {
            let more = resume_task(&task.app, &task.endpoint, Some(&after));
            self.queue.send(&more, 0).await?;
        }
        Ok(())
    }

    /// After the grace: when the receiver still has not seen the message, records
    /// `message.unseen` for the subscribed endpoints and queues its deliveries.
    async fn settle_unseen(&self, check: &UnseenCheck) -> Result<(), DomainError> {
        let now = self.clock.now();
        if !unseen_still_due(&self.store, &self.store, check, now).await? {
            return Ok(());
        }
        let scope = ChatScope {
            app: check.app.clone(),
            chat: check.chat,
            customer: None,
        };
        let (Some(chat), Some((message, files))) = (
            self.store.chat(&scope).await?,
            self.store
                .message_with_files(&check.app, check.chat, check.number)
                .await?,
        ) else {
            return Ok(());
        };
        let receiver = UnseenReceiver::of(message.sender_role, &chat.customer_id);
        let event = WebhookEvent {
            id: EventId::derive(&[
                EventType::MessageUnseen.as_str(),
                check.app.as_str(),
                &check.chat.get().to_string(),
                &check.number.get().to_string(),
            ]),
            event_type: EventType::MessageUnseen,
            app: check.app.clone(),
            created_at: now,
            data: unseen_data(&message, &files, &receiver),
        };
        queue_event(&self.store, &self.queue, &event).await?;
        Ok(())
    }
}

struct DeliveryTask {
    app: AppToken,
    endpoint: EndpointId,
    delivery: DeliveryId,
    attempts: u32,
    not_before: Option<Timestamp>,
}

fn parse_delivery_task(task: &Value) -> Option<DeliveryTask> {
    Some(DeliveryTask {
        app: AppToken::parse(task["app"].as_str()?).ok()?,
        endpoint: EndpointId::parse(task["endpoint"].as_str()?).ok()?,
        delivery: DeliveryId::parse(task["delivery"].as_str()?).ok()?,
        attempts: u32::try_from(task["attempts"].as_u64()?).ok()?,
        not_before: task["notBefore"].as_i64().map(Timestamp),
    })
}

struct ResumeTask {
    app: AppToken,
    endpoint: EndpointId,
    after: Option<DeliveryCursor>,
}

fn parse_resume_task(task: &Value) -> Option<ResumeTask> {
    let after = match &task["after"] {
        Value::Null => None,
        after => Some(DeliveryCursor {
            created_at: Timestamp(after["createdAt"].as_i64()?),
            id: DeliveryId::parse(after["id"].as_str()?).ok()?,
        }),
    };
    Some(ResumeTask {
        app: AppToken::parse(task["app"].as_str()?).ok()?,
        endpoint: EndpointId::parse(task["endpoint"].as_str()?).ok()?,
        after,
    })
}

fn parse_unseen_task(task: &Value) -> Option<UnseenCheck> {
    Some(UnseenCheck {
        app: AppToken::parse(task["app"].as_str()?).ok()?,
        chat: ChatNumber::new(task["chat"].as_i64()?).ok()?,
        number: MessageNumber::new(task["number"].as_i64()?).ok()?,
        queued_at: Timestamp(task["queuedAt"].as_i64()?),
    })
}
