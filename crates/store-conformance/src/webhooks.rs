//! One behaviour suite for every [`WebhookStore`], run through
//! [`webhook_conformance_tests!`](crate::webhook_conformance_tests): endpoints, events
//! queued with the changes that cause them, attempts, retries, disabling, paging and
//! redelivery, and the `message.unseen` checks. Times are given, never read from a clock.

use std::sync::Arc;

use chat_domain::webhooks::{
    AttemptOutcome, DeliveryCursor, DeliveryId, DeliveryStatus, DisablePolicy, DueDelivery,
    Endpoint, EndpointId, EndpointUpdate, EventType, EventTypes, TargetPolicy,
    WEBHOOK_ENDPOINTS_MAX, WebhookStore, WebhookUrl,
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

pub async fn endpoints_are_created_listed_updated_rotated_and_deleted(t: WebhooksUnderTest) {
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

pub async fn changes_queue_one_delivery_per_subscribed_enabled_endpoint(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
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
    // And changes that fail, or happen in another application.
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
    create_chat(&chats, &other, "cust", at(16)).await;
    // Then the first endpoint has each event once, in order; the second the message only;
    // the disabled one nothing.
    let queued = due(store.as_ref(), FAR).await;
    let of = |id: &EndpointId| -> Vec<String> {
        let mut ds: Vec<&DueDelivery> = queued.iter().filter(|d| &d.endpoint.id == id).collect();
        ds.sort_by_key(|d| d.delivery.created_at);
        ds.into_iter().map(event_type).collect()
    };
    assert_eq!(
        of(&all.id),
        [
            "chat.created",
            "chat.updated",
            "message.created",
            "message.edited",
            "message.deleted"
        ]
    );
    assert_eq!(of(&messages.id), ["message.created"]);
    assert!(of(&off.id).is_empty());
    assert_eq!(queued.len(), 6);
    // Every delivery is pending with no attempt, and the body names the event.
    for d in &queued {
        assert_eq!(d.delivery.status, DeliveryStatus::Pending);
        assert_eq!(d.delivery.attempts, 0);
        let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
        assert_eq!(body["id"], d.delivery.event_id.as_str());
        assert_eq!(body["appToken"], app.as_str());
    }
    // Both endpoints got the same event for the one send (one id to de-duplicate on).
    let created: Vec<_> = queued
        .iter()
        .filter(|d| event_type(d) == "message.created")
        .map(|d| d.delivery.event_id.clone())
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0], created[1]);
    // Deliveries due later are not due now.
    assert!(due(store.as_ref(), at(9)).await.is_empty());
}

pub async fn attempts_retry_until_success_or_the_schedule_ends(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    create_chat(&chats, &app, "c1", at(10)).await;
    create_chat(&chats, &app, "c2", at(11)).await;
    let queued = due(store.as_ref(), at(11)).await;
    assert_eq!(queued.len(), 2);
    let (first, second) = (queued[0].delivery.id.clone(), queued[1].delivery.id.clone());
    // A delivery in flight is skipped.
    let skipping = store
        .due_deliveries(at(11), 10, std::slice::from_ref(&first))
        .await
        .unwrap();
    assert_eq!(skipping.len(), 1);
    assert_eq!(skipping[0].delivery.id, second);
    // When the first fails with a retry due at 500, it is not due before.
    let policy = DisablePolicy::default();
    store
        .record_attempt(&first, &failed(500), Some(at(500)), policy, at(20))
        .await
        .unwrap();
    let now_due: Vec<DeliveryId> = due(store.as_ref(), at(499))
        .await
        .into_iter()
        .map(|d| d.delivery.id)
        .collect();
    assert_eq!(now_due, vec![second.clone()]);
    let retried = due(store.as_ref(), at(500)).await;
    let again = retried.iter().find(|d| d.delivery.id == first).unwrap();
    assert_eq!(again.delivery.attempts, 1);
    assert_eq!(again.delivery.last_response_code, Some(500));
    assert_eq!(again.endpoint.consecutive_failures, 1);
    assert_eq!(again.endpoint.failing_since, Some(at(20)));
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
    // When the second fails with no retry left, it ends FAILED.
    store
        .record_attempt(&second, &failed(503), None, policy, at(502))
        .await
        .unwrap();
    assert!(due(store.as_ref(), FAR).await.is_empty());
    let listed = store.deliveries(&app, &ep.id, None, 10).await.unwrap();
    let find = |id: &DeliveryId| listed.iter().find(|d| &d.id == id).unwrap().clone();
    assert_eq!(find(&first).status, DeliveryStatus::Succeeded);
    assert_eq!(find(&first).attempts, 2);
    assert_eq!(find(&first).last_response_code, Some(204));
    assert_eq!(find(&first).next_attempt_at, None);
    assert_eq!(find(&second).status, DeliveryStatus::Failed);
    assert_eq!(find(&second).last_response_code, Some(503));
    assert_eq!(find(&second).last_error.as_deref(), Some("HTTP 503"));
    let ep = store.endpoint(&app, &ep.id).await.unwrap().unwrap();
    assert_eq!(ep.consecutive_failures, 1);
    assert_eq!(ep.failing_since, Some(at(502)));
    // Recording an attempt of a finished delivery changes nothing.
    store
        .record_attempt(&first, &failed(500), Some(at(600)), policy, at(600))
        .await
        .unwrap();
    assert!(due(store.as_ref(), FAR).await.is_empty());
}

pub async fn a_long_run_of_failures_disables_the_endpoint_with_its_reason(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
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
    let ids: Vec<DeliveryId> = due(store.as_ref(), at(20))
        .await
        .into_iter()
        .map(|d| d.delivery.id)
        .collect();
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
    // Its pending deliveries wait, and no new event is queued for it.
    assert!(due(store.as_ref(), FAR).await.is_empty());
    assert_eq!(store.next_due(0).await.unwrap(), None);
    create_chat(&chats, &app, "late", at(1_200)).await;
    assert_eq!(
        store
            .deliveries(&app, &ep.id, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    // Enabling it again clears the reason and the run; its deliveries resume.
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
    assert_eq!(due(store.as_ref(), at(10_000)).await.len(), 4);
    assert_eq!(store.next_due(0).await.unwrap(), Some(at(10_000)));
}

pub async fn deliveries_page_newest_first_and_redelivery_repeats_the_event(t: WebhooksUnderTest) {
    let (chats, store) = (t.chats, t.webhooks);
    let app = create_app(&chats, "app_w1").await;
    let other = create_app(&chats, "app_w2").await;
    let ep = store
        .create_endpoint(&endpoint(&app, &[EventType::ChatCreated], 1))
        .await
        .unwrap();
    for i in 0..5 {
        create_chat(&chats, &app, &format!("c{i}"), at(10 + i)).await;
    }
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
    // Redelivering makes a new pending delivery of the same event, due at once.
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
    assert_eq!(again.status, DeliveryStatus::Pending);
    assert_eq!(again.attempts, 0);
    assert_eq!(again.next_attempt_at, Some(at(30)));
    assert!(
        due(store.as_ref(), at(30))
            .await
            .iter()
            .any(|d| d.delivery.id == again.id)
    );
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

/// Expands to one `#[tokio::test]` per webhook behaviour; `$make` is a future of a
/// [`WebhooksUnderTest`], evaluated afresh in each test.
#[macro_export]
macro_rules! webhook_conformance_tests {
    ($make:expr) => {
        $crate::__webhook_test_fns! {$make;
            endpoints_are_created_listed_updated_rotated_and_deleted,
            changes_queue_one_delivery_per_subscribed_enabled_endpoint,
            attempts_retry_until_success_or_the_schedule_ends,
            a_long_run_of_failures_disables_the_endpoint_with_its_reason,
            deliveries_page_newest_first_and_redelivery_repeats_the_event,
            unseen_checks_are_queued_when_subscribed_and_settled_once,
            finished_deliveries_and_then_their_events_are_pruned,
        }
    };
}
