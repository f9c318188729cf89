//! The webhook behaviour suites, times given, never read from a clock:
//!
//! - every [`WebhookEndpoints`] (the SQLite store, and DynamoDB fed by its stream), through
//!   [`webhook_endpoint_conformance_tests!`](crate::webhook_endpoint_conformance_tests):
//!   endpoints, one delivery per subscribed enabled endpoint for each change (once, however
//!   often the feed sees the change), attempts, disabling, paging and redelivery;
//! - a polled [`WebhookStore`] (the dev server's), through
//!   [`webhook_conformance_tests!`](crate::webhook_conformance_tests): the endpoint suite
//!   plus what only a polled store has: which deliveries are due when (and what comes due
//!   next), the `message.unseen` checks, and pruning.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chat_domain::webhooks::{
    AttemptOutcome, Delivery, DeliveryCursor, DeliveryId, DeliveryStatus, DisablePolicy,
    DueDelivery, Endpoint, EndpointId, EndpointUpdate, EventType, EventTypes, TargetPolicy,
    WEBHOOK_ENDPOINTS_MAX, WebhookEndpoints, WebhookStore, WebhookUrl,
};
use chat_domain::{AppToken, ChatStatus, ChatStore, ChatUpdate, ErrorCode, Timestamp};

use crate::fixtures::{
    agent_scope, assert_code, at, body, change, create_app, create_chat, customer_scope, send,
    token,
};

/// The stores for one test: the webhook store and the chat store whose writes queue its
/// events (usually the same object).
pub struct WebhooksUnderTest {
    pub chats: Arc<dyn ChatStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

/// Makes the deliveries of the changes written so far: nothing for a store that queues
/// them in the change's transaction; for a store fed by a change stream, one pass of the
/// feed over everything the stream holds (so a second call sees every change again).
pub type Feed = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The stores for one test of the endpoint suite.
pub struct EndpointsUnderTest {
    pub chats: Arc<dyn ChatStore>,
    pub webhooks: Arc<dyn WebhookEndpoints>,
    pub feed: Feed,
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

impl EndpointsUnderTest {
    async fn feed(&self) {
        (self.feed)().await;
    }
}

impl From<WebhooksUnderTest> for EndpointsUnderTest {
    /// A polled store queues with the change: its feed does nothing.
    fn from(t: WebhooksUnderTest) -> Self {
        EndpointsUnderTest {
            chats: t.chats,
            webhooks: t.webhooks,
            feed: Arc::new(|| Box::pin(async {})),
            guard: t.guard,
        }
    }
}

fn endpoint(app: &AppToken, types: &[EventType], created_at: i64) -> Endpoint {
    Endpoint {
        app: app.clone(),
        id: EndpointId::generate(),
        url: WebhookUrl::parse("https://hooks.example.com/chat", TargetPolicy::default())
            .expect("valid url"),
        events: EventTypes::of(types),
        enabled: true,
        disabled_reason: None,
        secret_generation: 1,
        previous_secret_expires_at: None,
        consecutive_failures: 0,
        failing_since: None,
        created_at: at(created_at),
        updated_at: at(created_at),
    }
}

const FAR: Timestamp = Timestamp(i64::MAX / 2);

async fn due(store: &dyn WebhookStore, now: Timestamp) -> Vec<DueDelivery> {
    store.due_deliveries(now, 1_000, &[]).await.expect("due")
}

fn event_type(d: &DueDelivery) -> String {
    let body: serde_json::Value = serde_json::from_str(&d.body).expect("json body");
    body["type"].as_str().expect("type").to_owned()
}

fn failed(status: u16) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: Some(status),
        error: format!("HTTP {status}"),
    }
}

pub async fn endpoints_are_created_listed_updated_rotated_and_deleted(t: EndpointsUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let other = create_app(&chats, "app_w2").await;
    // Given an endpoint, it is listed for its application only.
    let first = store
        .create_endpoint(&endpoint(&app, &[EventType::MessageCreated], 1))
        .await
        .unwrap();
    assert_eq!(store.endpoints(&app).await.unwrap(), vec![first.clone()]);
    assert!(store.endpoints(&other).await.unwrap().is_empty());
    assert_eq!(store.endpoint(&other, &first.id).await.unwrap(), None);
    assert_code(
        store
            .create_endpoint(&endpoint(&token("app_none"), &[EventType::ChatCreated], 1))
            .await,
        ErrorCode::NotFound,
        "endpoint of an unknown application",
    );
    // At most WEBHOOK_ENDPOINTS_MAX per application.
    for i in 1..WEBHOOK_ENDPOINTS_MAX {
        store
            .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1 + i as i64))
            .await
            .unwrap();
    }
    assert_code(
        store
            .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 100))
            .await,
        ErrorCode::Conflict,
        "one endpoint too many",
    );
    // Updates change what they name; another application's token finds nothing.
    let update = EndpointUpdate {
        events: Some(EventTypes::of(&[EventType::ChatUpdated])),
        enabled: Some(false),
        ..Default::default()
    };
    let updated = store
        .update_endpoint(&app, &first.id, &update, at(200))
        .await
        .unwrap();
    assert_eq!(updated.events, EventTypes::of(&[EventType::ChatUpdated]));
    assert!(!updated.enabled);
    assert_eq!(updated.url, first.url);
    assert_eq!(updated.updated_at, at(200));
    assert_code(
        store
            .update_endpoint(&other, &first.id, &update, at(200))
            .await,
        ErrorCode::NotFound,
        "update through another application",
    );
    // Rotation takes the next generation and keeps the previous one's end.
    let rotated = store
        .rotate_endpoint_secret(&app, &first.id, at(9_000), at(300))
        .await
        .unwrap();
    assert_eq!(rotated.secret_generation, 2);
    assert_eq!(rotated.previous_secret_expires_at, Some(at(9_000)));
    assert_code(
        store
            .rotate_endpoint_secret(&other, &first.id, at(9_000), at(300))
            .await,
        ErrorCode::NotFound,
        "rotation through another application",
    );
    // Deleting through another application does nothing; through its own, it is gone.
    assert!(!store.delete_endpoint(&other, &first.id).await.unwrap());
    assert!(store.delete_endpoint(&app, &first.id).await.unwrap());
    assert!(!store.delete_endpoint(&app, &first.id).await.unwrap());
    assert_eq!(store.endpoint(&app, &first.id).await.unwrap(), None);
    assert_eq!(
        store.endpoints(&app).await.unwrap().len(),
        WEBHOOK_ENDPOINTS_MAX - 1
    );
}

/// The deliveries of one endpoint, oldest first (by time, then id).
async fn listed(store: &dyn WebhookEndpoints, app: &AppToken, id: &EndpointId) -> Vec<Delivery> {
    let mut all = store
        .deliveries(app, id, None, 1_000)
        .await
        .expect("deliveries");
    all.reverse();
    all
}

pub async fn changes_record_one_delivery_per_subscribed_enabled_endpoint(t: EndpointsUnderTest) {
    let (chats, store) = (t.chats.clone(), t.webhooks.clone());
    let app = create_app(&chats, "app_w1").await;
    let other = create_app(&chats, "app_w2").await;
    // Given one endpoint for everything, one for messages only, and a disabled one.
    let all = store
        .create_endpoint(&endpoint(&app, &EventType::ALL, 1))
        .await
        .unwrap();
    let messages = store
        .create_endpoint(&endpoint(&app, &[EventType::MessageCreated], 2))
        .await
        .unwrap();
    let off = store
        .create_endpoint(&endpoint(&app, &EventType::ALL, 3))
        .await
        .unwrap();
    let disable = EndpointUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    store
        .update_endpoint(&app, &off.id, &disable, at(3))
        .await
        .unwrap();
    let elsewhere = store
        .create_endpoint(&endpoint(&other, &EventType::ALL, 4))
        .await
        .unwrap();
    // When a chat is created, updated, and a message sent, edited and deleted.
    create_chat(&chats, &app, "cust", at(10)).await;
    let scope = agent_scope(&app, 1);
    chats
        .update_chat(
            &scope,
            ChatUpdate {
                subject: None,
                status: Some(ChatStatus::Resolved),
                now: at(11),
            },
        )
        .await
        .unwrap();
    send(&chats, &scope, "hello", at(12)).await;
    chats
        .edit_message(change(&scope, 1, Some("agent-1"), at(13)), body("hello!"))
        .await
        .unwrap();
    chats
        .delete_message(change(&scope, 1, None, at(14)))
        .await
        .unwrap();
    // And a change that fails.
    assert!(
        chats
            .send_message(crate::fixtures::new_message(
                &agent_scope(&app, 9),
                "x",
                at(15)
            ))
            .await
            .is_err()
    );
    t.feed().await;
    // Then the first endpoint has each event once; the second the message only; the
    // disabled one and the other application's nothing.
    let types = |ds: &[Delivery]| -> Vec<&'static str> {
        let mut types: Vec<&'static str> = ds.iter().map(|d| d.event_type.as_str()).collect();
        types.sort_unstable();
        types
    };
    let to_all = listed(store.as_ref(), &app, &all.id).await;
    assert_eq!(
        types(&to_all),
        [
            "chat.created",
            "chat.updated",
            "message.created",
            "message.deleted",
            "message.edited",
        ]
    );
    let to_messages = listed(store.as_ref(), &app, &messages.id).await;
    assert_eq!(types(&to_messages), ["message.created"]);
    assert!(listed(store.as_ref(), &app, &off.id).await.is_empty());
    assert!(
        listed(store.as_ref(), &other, &elsewhere.id)
            .await
            .is_empty()
    );
    // Every delivery is pending with no attempt, due at once, and the events differ.
    for d in to_all.iter().chain(&to_messages) {
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 0);
        assert_eq!(
            d.endpoint,
            if to_messages.contains(d) {
                messages.id.clone()
            } else {
                all.id.clone()
            }
        );
        assert!(d.next_attempt_at.is_some());
    }
    let mut events: Vec<_> = to_all.iter().map(|d| d.event_id.clone()).collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), 5);
    // Both endpoints got the same event for the one send (one id to de-duplicate on).
    let created = to_all
        .iter()
        .find(|d| d.event_type == EventType::MessageCreated)
        .unwrap();
    assert_eq!(created.event_id, to_messages[0].event_id);
    // When the feed sees every change again, nothing more is recorded.
    t.feed().await;
    assert_eq!(listed(store.as_ref(), &app, &all.id).await, to_all);
    assert_eq!(
        listed(store.as_ref(), &app, &messages.id).await,
        to_messages
    );
}

pub async fn attempts_are_recorded_until_success_or_the_schedule_ends(t: EndpointsUnderTest) {
    let (chats, store) = (t.chats.clone(), t.webhooks.clone());
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    create_chat(&chats, &app, "c1", at(10)).await;
    create_chat(&chats, &app, "c2", at(11)).await;
    t.feed().await;
    let queued = listed(store.as_ref(), &app, &ep.id).await;
    assert_eq!(queued.len(), 2);
    let (first, second) = (queued[0].id.clone(), queued[1].id.clone());
    let find =
        |all: &[Delivery], id: &DeliveryId| all.iter().find(|d| &d.id == id).unwrap().clone();
    // When the first fails with a retry due at 500, it waits for it, and the endpoint's
    // failure run begins.
    let policy = DisablePolicy::default();
    store
        .record_attempt(&first, &failed(500), Some(at(500)), policy, at(20))
        .await
        .unwrap();
    let after_one = find(&listed(store.as_ref(), &app, &ep.id).await, &first);
    assert_eq!(after_one.status, DeliveryStatus::Pending);
    assert_eq!(after_one.attempts, 1);
    assert_eq!(after_one.last_response_code, Some(500));
    assert_eq!(after_one.last_error.as_deref(), Some("HTTP 500"));
    assert_eq!(after_one.last_attempt_at, Some(at(20)));
    assert_eq!(after_one.next_attempt_at, Some(at(500)));
    let failing = store.endpoint(&app, &ep.id).await.unwrap().unwrap();
    assert_eq!(failing.consecutive_failures, 1);
    assert_eq!(failing.failing_since, Some(at(20)));
    // When it then succeeds, it is done and the endpoint's failure run ends.
    store
        .record_attempt(
            &first,
            &AttemptOutcome::Delivered { status: 204 },
            None,
            policy,
            at(501),
        )
        .await
        .unwrap();
    let healthy = store.endpoint(&app, &ep.id).await.unwrap().unwrap();
    assert_eq!(healthy.consecutive_failures, 0);
    assert_eq!(healthy.failing_since, None);
    // When the second fails with no retry left, it ends FAILED.
    store
        .record_attempt(&second, &failed(503), None, policy, at(502))
        .await
        .unwrap();
    let listed_now = listed(store.as_ref(), &app, &ep.id).await;
    let done = find(&listed_now, &first);
    assert_eq!(done.status, DeliveryStatus::Succeeded);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.last_response_code, Some(204));
    assert_eq!(done.next_attempt_at, None);
    let gave_up = find(&listed_now, &second);
    assert_eq!(gave_up.status, DeliveryStatus::Failed);
    assert_eq!(gave_up.last_response_code, Some(503));
    assert_eq!(gave_up.next_attempt_at, None);
    let ep_now = store.endpoint(&app, &ep.id).await.unwrap().unwrap();
    assert_eq!(ep_now.consecutive_failures, 1);
    assert_eq!(ep_now.failing_since, Some(at(502)));
    // Recording an attempt of a finished delivery, or of an unknown one, changes nothing.
    store
        .record_attempt(&first, &failed(500), Some(at(600)), policy, at(600))
        .await
        .unwrap();
    store
        .record_attempt(&DeliveryId::generate(), &failed(500), None, policy, at(600))
        .await
        .unwrap();
    assert_eq!(listed(store.as_ref(), &app, &ep.id).await, listed_now);
    assert_eq!(store.endpoint(&app, &ep.id).await.unwrap().unwrap(), ep_now);
}

pub async fn a_long_failure_run_disables_the_endpoint_with_its_reason(t: EndpointsUnderTest) {
    let (chats, store) = (t.chats.clone(), t.webhooks.clone());
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    let policy = DisablePolicy {
        after_failures: 3,
        min_failing_ms: 1_000,
    };
    for i in 0..4 {
        create_chat(&chats, &app, &format!("c{i}"), at(10 + i)).await;
    }
    t.feed().await;
    let ids: Vec<DeliveryId> = listed(store.as_ref(), &app, &ep.id)
        .await
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), 4);
    // Three failures within a second do not disable it.
    for (i, id) in ids.iter().take(3).enumerate() {
        store
            .record_attempt(
                id,
                &failed(500),
                Some(at(10_000)),
                policy,
                at(100 + i as i64),
            )
            .await
            .unwrap();
    }
    assert!(store.endpoint(&app, &ep.id).await.unwrap().unwrap().enabled);
    // The fourth, over a second after the first, does.
    store
        .record_attempt(&ids[3], &failed(502), Some(at(10_000)), policy, at(1_100))
        .await
        .unwrap();
    let disabled = store.endpoint(&app, &ep.id).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    let reason = disabled.disabled_reason.expect("a reason");
    assert!(reason.contains("4 failed attempts"), "{reason}");
    assert!(reason.contains("HTTP 502"), "{reason}");
    // No new event is recorded for it; its deliveries stay pending.
    create_chat(&chats, &app, "late", at(1_200)).await;
    t.feed().await;
    let kept = listed(store.as_ref(), &app, &ep.id).await;
    assert_eq!(kept.len(), 4);
    assert!(kept.iter().all(|d| d.status == DeliveryStatus::Pending));
    // Enabling it again clears the reason and the run.
    let enable = EndpointUpdate {
        enabled: Some(true),
        ..Default::default()
    };
    let enabled = store
        .update_endpoint(&app, &ep.id, &enable, at(2_000))
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.disabled_reason, None);
    assert_eq!(enabled.consecutive_failures, 0);
    assert_eq!(enabled.failing_since, None);
}

pub async fn deliveries_are_paged_newest_first_and_redelivered_with_the_same_event(
    t: EndpointsUnderTest,
) {
    let (chats, store) = (t.chats.clone(), t.webhooks.clone());
    let app = create_app(&chats, "app_w1").await;
    let other = create_app(&chats, "app_w2").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    for i in 0..5 {
        create_chat(&chats, &app, &format!("c{i}"), at(10 + i)).await;
    }
    t.feed().await;
    // Pages of two, newest first, each delivery once.
    let mut seen = Vec::new();
    let mut after: Option<DeliveryCursor> = None;
    loop {
        let page = store
            .deliveries(&app, &ep.id, after.as_ref(), 2)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|d| DeliveryCursor {
            created_at: d.created_at,
            id: d.id.clone(),
        });
        seen.extend(page);
    }
    let times: Vec<i64> = seen.iter().map(|d| d.created_at.0).collect();
    assert_eq!(times, [14, 13, 12, 11, 10].map(|ms| at(ms).0));
    assert_code(
        store.deliveries(&other, &ep.id, None, 10).await,
        ErrorCode::NotFound,
        "deliveries through another application",
    );
    // Redelivering a finished one makes a new pending delivery of the same event, due at
    // once, listed first.
    let oldest = seen.last().unwrap().clone();
    store
        .record_attempt(
            &oldest.id,
            &AttemptOutcome::Delivered { status: 200 },
            None,
            DisablePolicy::default(),
            at(20),
        )
        .await
        .unwrap();
    let again = store
        .redeliver(&app, &ep.id, &oldest.id, at(30))
        .await
        .unwrap();
    assert_ne!(again.id, oldest.id);
    assert_eq!(again.event_id, oldest.event_id);
    assert_eq!(again.event_type, oldest.event_type);
    assert_eq!(again.status, DeliveryStatus::Pending);
    assert_eq!(again.attempts, 0);
    assert_eq!(again.next_attempt_at, Some(at(30)));
    assert_eq!(again.created_at, at(30));
    let newest = store.deliveries(&app, &ep.id, None, 1).await.unwrap();
    assert_eq!(newest, vec![again.clone()]);
    assert_code(
        store.redeliver(&other, &ep.id, &oldest.id, at(30)).await,
        ErrorCode::NotFound,
        "redelivery through another application",
    );
    assert_code(
        store
            .redeliver(&app, &ep.id, &DeliveryId::generate(), at(30))
            .await,
        ErrorCode::NotFound,
        "redelivery of an unknown delivery",
    );
    // Deleting the endpoint removes its deliveries with it.
    assert!(store.delete_endpoint(&app, &ep.id).await.unwrap());
    assert_code(
        store.deliveries(&app, &ep.id, None, 10).await,
        ErrorCode::NotFound,
        "deliveries of a deleted endpoint",
    );
}

pub async fn deliveries_are_due_with_their_bodies_from_their_next_attempt(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(
            &app,
            &[EventType::ChatCreated, EventType::MessageCreated],
            1,
        ))
        .await
        .unwrap();
    // Given a chat created at 10 and a message sent at 11.
    create_chat(&chats, &app, "cust", at(10)).await;
    send(&chats, &agent_scope(&app, 1), "hello", at(11)).await;
    // Nothing is due before it was queued; then each is, earliest first, with its endpoint
    // and the body that names its event.
    assert!(due(store.as_ref(), at(9)).await.is_empty());
    assert_eq!(store.next_due(0).await.unwrap(), Some(at(10)));
    let queued = due(store.as_ref(), at(11)).await;
    let types: Vec<String> = queued.iter().map(event_type).collect();
    assert_eq!(types, ["chat.created", "message.created"]);
    for d in &queued {
        assert_eq!(d.endpoint.id, ep.id);
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["id"], d.delivery.event_id.as_str());
        assert_eq!(body["type"], d.delivery.event_type.as_str());
        assert_eq!(body["appToken"], app.as_str());
    }
    let (first, second) = (queued[0].delivery.id.clone(), queued[1].delivery.id.clone());
    // The limit takes the earliest; a delivery in flight is skipped.
    let one = store.due_deliveries(at(11), 1, &[]).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].delivery.id, first);
    let skipping = store
        .due_deliveries(at(11), 10, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(skipping.len(), 1);
    assert_eq!(skipping[0].delivery.id, second);
    // When the first fails with a retry due at 500, it is not due before then; at 500 it
    // is, with its attempt and the endpoint's failure run.
    let policy = DisablePolicy::default();
    store
        .record_attempt(&first, &failed(500), Some(at(500)), policy, at(20))
        .await
        .unwrap();
    let before: Vec<DeliveryId> = due(store.as_ref(), at(499))
        .await
        .into_iter()
        .map(|d| d.delivery.id)
        .collect();
    assert_eq!(before, vec![second.clone()]);
    let retried = due(store.as_ref(), at(500)).await;
    let again = retried.iter().find(|d| d.delivery.id == first).unwrap();
    assert_eq!(again.delivery.attempts, 1);
    assert_eq!(again.delivery.last_response_code, Some(500));
    assert_eq!(again.endpoint.consecutive_failures, 1);
    assert_eq!(again.endpoint.failing_since, Some(at(20)));
    // Once the second is delivered, the retry is the next thing due.
    let delivered = AttemptOutcome::Delivered { status: 204 };
    store
        .record_attempt(&second, &delivered, None, policy, at(21))
        .await
        .unwrap();
    assert_eq!(store.next_due(0).await.unwrap(), Some(at(500)));
    // Finished deliveries are never due; a redelivery is, at once.
    store
        .record_attempt(&first, &delivered, None, policy, at(501))
        .await
        .unwrap();
    assert!(due(store.as_ref(), FAR).await.is_empty());
    assert_eq!(store.next_due(0).await.unwrap(), None);
    let redelivered = store
        .redeliver(&app, &ep.id, &first, at(600))
        .await
        .unwrap();
    let now_due = due(store.as_ref(), at(600)).await;
    assert_eq!(now_due.len(), 1);
    assert_eq!(now_due[0].delivery.id, redelivered.id);
    assert_eq!(now_due[0].delivery.attempts, 0);
    assert_eq!(now_due[0].body, queued[0].body);
}

pub async fn a_disabled_endpoints_deliveries_are_due_again_once_it_is_enabled(
    t: WebhooksUnderTest,
) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    create_chat(&chats, &app, "c1", at(10)).await;
    create_chat(&chats, &app, "c2", at(11)).await;
    // Given the endpoint disabled with two deliveries pending, none is due and nothing
    // comes due.
    let set_enabled = |enabled| EndpointUpdate {
        enabled: Some(enabled),
        ..Default::default()
    };
    store
        .update_endpoint(&app, &ep.id, &set_enabled(false), at(20))
        .await
        .unwrap();
    assert!(due(store.as_ref(), FAR).await.is_empty());
    assert_eq!(store.next_due(0).await.unwrap(), None);
    // When it is enabled again, both are due as they were.
    store
        .update_endpoint(&app, &ep.id, &set_enabled(true), at(30))
        .await
        .unwrap();
    assert_eq!(store.next_due(0).await.unwrap(), Some(at(10)));
    assert_eq!(due(store.as_ref(), at(30)).await.len(), 2);
}

pub async fn unseen_checks_are_queued_when_subscribed_and_settled_once(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    create_chat(&chats, &app, "cust", at(1)).await;
    let agent = agent_scope(&app, 1);
    // Without an endpoint for message.unseen, a send queues no check.
    send(&chats, &agent, "before", at(5)).await;
    assert!(store.due_unseen(FAR, 10).await.unwrap().is_empty());
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::MessageUnseen], 6))
        .await
        .unwrap();
    // With one, each send queues a check, due after the grace.
    send(&chats, &agent, "to the customer", at(10)).await;
    send(
        &chats,
        &customer_scope(&app, 1, "cust"),
        "to the agents",
        at(20),
    )
    .await;
    assert_eq!(store.next_due(1_000).await.unwrap(), Some(at(1_010)));
    let checks = store.due_unseen(at(15), 10).await.unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].number.get(), 2);
    assert_eq!(checks[0].queued_at, at(10));
    let both = store.due_unseen(at(20), 10).await.unwrap();
    assert_eq!(both.len(), 2);
    // Settled without sending: gone, nothing queued.
    store
        .settle_unseen(&both[0], false, at(2_000))
        .await
        .unwrap();
    // Settled with sending: message.unseen for the receiver; settling again does nothing.
    store
        .settle_unseen(&both[1], true, at(2_000))
        .await
        .unwrap();
    store
        .settle_unseen(&both[1], true, at(2_001))
        .await
        .unwrap();
    assert!(store.due_unseen(FAR, 10).await.unwrap().is_empty());
    let queued = due(store.as_ref(), FAR).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].endpoint.id, ep.id);
    let body: serde_json::Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(body["type"], "message.unseen");
    assert_eq!(body["data"]["chatNumber"], 1);
    assert_eq!(body["data"]["message"]["number"], 3);
    assert_eq!(body["data"]["message"]["body"], "to the agents");
    assert_eq!(body["data"]["receiver"]["role"], "AGENT");
    assert_eq!(body["data"]["receiver"]["userId"], serde_json::Value::Null);
}

pub async fn finished_deliveries_and_then_their_events_are_pruned(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    for i in 0..3 {
        create_chat(&chats, &app, &format!("c{i}"), at(10 + i)).await;
    }
    let listed = store.deliveries(&app, &ep.id, None, 10).await.unwrap();
    let (newest, middle, oldest) = (&listed[0], &listed[1], &listed[2]);
    let policy = DisablePolicy::default();
    // The oldest succeeded, the middle failed for good, the newest is still pending.
    store
        .record_attempt(
            &oldest.id,
            &AttemptOutcome::Delivered { status: 200 },
            None,
            policy,
            at(20),
        )
        .await
        .unwrap();
    store
        .record_attempt(&middle.id, &failed(500), None, policy, at(20))
        .await
        .unwrap();
    // Before the cut-off nothing goes.
    assert_eq!(store.prune(at(10), 100).await.unwrap(), 0);
    // After it the two finished deliveries and their events go; the pending one stays, and
    // so does its event (a redelivery needs it).
    assert_eq!(store.prune(at(100), 100).await.unwrap(), 4);
    let left = store.deliveries(&app, &ep.id, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, newest.id);
    assert_eq!(due(store.as_ref(), FAR).await.len(), 1);
    let again = store
        .redeliver(&app, &ep.id, &newest.id, at(200))
        .await
        .unwrap();
    assert_eq!(again.event_id, newest.event_id);
    assert_eq!(store.prune(at(1_000), 100).await.unwrap(), 0);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __webhook_test_fns {
    ($make:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let under_test: $crate::webhooks::WebhooksUnderTest = $make.await;
                $crate::webhooks::$behaviour(under_test).await;
            }
        )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __webhook_endpoint_test_fns {
    ($make:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let under_test: $crate::webhooks::EndpointsUnderTest = $make.await.into();
                $crate::webhooks::$behaviour(under_test).await;
            }
        )+
    };
}

/// Expands to one `#[tokio::test]` per behaviour of [`WebhookEndpoints`]; `$make` is a
/// future of an [`EndpointsUnderTest`] (or of what converts into one), evaluated afresh in
/// each test.
#[macro_export]
macro_rules! webhook_endpoint_conformance_tests {
    ($make:expr) => {
        $crate::__webhook_endpoint_test_fns! {$make;
            endpoints_are_created_listed_updated_rotated_and_deleted,
            changes_record_one_delivery_per_subscribed_enabled_endpoint,
            attempts_are_recorded_until_success_or_the_schedule_ends,
            a_long_failure_run_disables_the_endpoint_with_its_reason,
            deliveries_are_paged_newest_first_and_redelivered_with_the_same_event,
        }
    };
}

/// Expands to one `#[tokio::test]` per behaviour of a polled [`WebhookStore`], the
/// endpoint suite included; `$make` is a future of a [`WebhooksUnderTest`], evaluated
/// afresh in each test.
#[macro_export]
macro_rules! webhook_conformance_tests {
    ($make:expr) => {
        $crate::webhook_endpoint_conformance_tests!($make);
        $crate::__webhook_test_fns! {$make;
            deliveries_are_due_with_their_bodies_from_their_next_attempt,
            a_disabled_endpoints_deliveries_are_due_again_once_it_is_enabled,
            unseen_checks_are_queued_when_subscribed_and_settled_once,
            finished_deliveries_and_then_their_events_are_pruned,
        }
    };
}
