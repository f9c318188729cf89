//! The webhook functions against moto (DynamoDB, its stream, SQS in server mode) and a real
//! HTTP receiver on loopback (allowed by the development policy, as the dev server's
//! `--webhooks-allow-loopback`): the stream function records PENDING deliveries once and
//! queues them; the sender posts signed events, retries with the same event id, and the
//! redeliver mutation's delivery reaches the queue through the stream; `message.unseen`
//! goes out after the grace only for what its absent receiver has not read; a disabled
//! endpoint's pending deliveries go out once it is enabled again; two sender instances
//! together keep to the per-endpoint cap.

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::SqsEvent;
use chat_domain::attachments::{
    FileName, FileType, ImageSize, Upload, UploadId, UploadState, UploadStore, VerifiedUpload,
};
use chat_domain::webhooks::{
    DeliveryStatus, Endpoint, EndpointId, EndpointUpdate, EventType, EventTypes,
    SIGNATURE_TOLERANCE_SECS, TargetPolicy, WebhookEndpoints, WebhookSecret, WebhookUrl,
    verify_signature,
};
use chat_domain::*;
use chat_dynamodb::DynamoStore;
use chat_dynamodb::webhooks::{FeedItem, feed_items};
use chat_functions::webhooks::{SenderConfig, TaskQueue, WebhookSender, handle_webhook_stream};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEV: TargetPolicy = TargetPolicy {
    allow_loopback: true,
};

fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&chat_dynamodb::moto::sdk_config())
}

/// A queue of its own on moto.
async fn fresh_queue() -> (aws_sdk_sqs::Client, String) {
    let client = sqs_client();
    let name = chat_dynamodb::moto::unique_table_name("webhooks");
    let url = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .expect("a queue url");
    (client, url)
}

/// At most `max` messages visible now (or within `wait` seconds), removed from the queue,
/// as the SQS records Lambda would deliver them.
async fn receive(client: &aws_sdk_sqs::Client, url: &str, max: i32, wait: i32) -> Vec<Value> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .wait_time_seconds(wait)
        .send()
        .await
        .expect("ReceiveMessage");
    let mut records = Vec::new();
    for m in out.messages.unwrap_or_default() {
        client
            .delete_message()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .send()
            .await
            .expect("DeleteMessage");
        records.push(json!({
            "messageId": m.message_id().unwrap(),
            "receiptHandle": m.receipt_handle().unwrap(),
            "body": m.body().unwrap(),
            "attributes": {},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:webhooks",
            "awsRegion": "us-east-1"
        }));
    }
    records
}

fn sqs_event(records: Vec<Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// Every message visible now (and within `wait`), removed from the queue, as the SQS event
/// Lambda would deliver them.
async fn drain(client: &aws_sdk_sqs::Client, url: &str, wait: i32) -> SqsEvent {
    let mut records = Vec::new();
    loop {
        let wait = if records.is_empty() { wait } else { 0 };
        let more = receive(client, url, 10, wait).await;
        if more.is_empty() {
            return sqs_event(records);
        }
        records.extend(more);
    }
}

fn tasks(event: &SqsEvent) -> Vec<Value> {
    event
        .records
        .iter()
        .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
        .collect()
}

async fn stream_event(store: &DynamoStore) -> StreamEvent {
    let records = chat_dynamodb::moto_stream::stream_records(store).await;
    let mut event = StreamEvent::default();
    event.records = records;
    event
}

async fn app_with_endpoint(
    store: &DynamoStore,
    url: &str,
    types: &[EventType],
) -> (AppToken, Endpoint) {
    let app = AppToken::parse(&format!(
        "app_{}",
        EndpointId::generate().as_str()[3..13].replace(['-', '_'], "x")
    ))
    .unwrap();
    store
        .create_application(NewApplication {
            token: app.clone(),
            name: AppName::parse("Webhooks").unwrap(),
            now: Timestamp(1_000),
        })
        .await
        .unwrap();
    let endpoint = store
        .create_endpoint(&Endpoint {
            app: app.clone(),
            id: EndpointId::generate(),
            url: WebhookUrl::parse(url, DEV).unwrap(),
            events: EventTypes::of(types),
            enabled: true,
            disabled_reason: None,
            secret_generation: 1,
            previous_secret_expires_at: None,
            consecutive_failures: 0,
            failing_since: None,
            created_at: Timestamp(1_000),
            updated_at: Timestamp(1_000),
        })
        .await
        .unwrap();
    (app, endpoint)
}

/// Records a pending upload of `name` in the chat at `created_at`, as createUpload does,
/// and answers it as verified (the bytes are S3's business: `tests/attachments.rs`).
async fn pending_upload(
    store: &DynamoStore,
    scope: &ChatScope,
    uploader: &str,
    created_at: Timestamp,
    (name, file_type, size, image): (&str, FileType, u64, Option<ImageSize>),
) -> VerifiedUpload {
    let upload = Upload {
        id: UploadId::generate(),
        app: scope.app.clone(),
        chat: scope.chat,
        uploader: UserId::parse(uploader).unwrap(),
        name: FileName::parse(name).unwrap(),
        file_type,
        size,
        created_at,
        state: UploadState::Pending,
        image: None,
    };
    store.create_upload(&upload).await.unwrap();
    VerifiedUpload {
        id: upload.id,
        image,
    }
}

/// What a test sender is configured with: loopback allowed, a short timeout, and the
/// retry schedule's 30 s, 2 min ... as 3 ms, 12 ms (the retries come due at once).
fn dev_config() -> SenderConfig {
    SenderConfig {
        targets: DEV,
        timeout: Duration::from_secs(5),
        retry_scale: 0.0001,
        ..SenderConfig::default()
    }
}

fn sender(
    store: &DynamoStore,
    queue: &TaskQueue,
    key: ServerKey,
    config: SenderConfig,
) -> WebhookSender {
    WebhookSender::new(
        store.clone(),
        queue.clone(),
        key,
        Arc::new(SystemClock),
        config,
    )
    .unwrap()
}

/// A new chat of the customer `cust-1`, and the scope its messages are sent in.
async fn open_chat(store: &DynamoStore, app: &AppToken) -> ChatScope {
    let chat = store
        .create_chat(NewChat {
            app: app.clone(),
            customer_id: UserId::parse("cust-1").unwrap(),
            subject: None,
            now: SystemClock.now(),
        })
        .await
        .unwrap();
    ChatScope {
        app: app.clone(),
        chat: chat.number,
        customer: None,
    }
}

/// A message from `sender` in the chat of `scope`, sent at `now`.
async fn send(store: &DynamoStore, scope: &ChatScope, role: Role, text: &str, now: Timestamp) {
    let sender = if role == Role::Customer {
        "cust-1"
    } else {
        "agent-1"
    };
    store
        .send_message(NewMessage {
            scope: scope.clone(),
            body: MessageBody::parse(text).unwrap(),
            sender_id: UserId::parse(sender).unwrap(),
            sender_role: role,
            client_message_id: None,
            now,
        })
        .await
        .unwrap();
}

/// What the receiver got: the headers that matter and the body.
#[derive(Debug, Clone)]
struct Received {
    signature: String,
    event_id: String,
    body: String,
}

/// An HTTP receiver on loopback answering each request with the next scripted status
/// (then 200), after holding it for a while.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    /// The most requests it held at once.
    most_at_once: Arc<AtomicUsize>,
}

async fn receiver(script: &[u16]) -> Receiver {
    receiver_holding(script, Duration::ZERO).await
}

async fn receiver_holding(script: &[u16], hold: Duration) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let got = Arc::new(Mutex::new(Vec::new()));
    let script = Arc::new(Mutex::new(
        script.iter().copied().collect::<VecDeque<u16>>(),
    ));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let holding = Arc::new(AtomicUsize::new(0));
    let (got2, script2, most2) = (got.clone(), script.clone(), most_at_once.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (got, script) = (got2.clone(), script2.clone());
            let (most, holding) = (most2.clone(), holding.clone());
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body_start) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..n]);
                    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&raw[..i]).to_string(), i + 4);
                    }
                };
                let header = |name: &str| {
                    head.lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                        })
                        .unwrap_or_default()
                };
                let length: usize = header("content-length").parse().unwrap_or(0);
                while raw.len() < body_start + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                let body = String::from_utf8_lossy(&raw[body_start..]).to_string();
                most.fetch_max(holding.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                got.lock().unwrap().push(Received {
                    signature: header("chat-signature"),
                    event_id: header("chat-event-id"),
                    body,
                });
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    Receiver {
        url,
        got,
        most_at_once,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_fixture_records_pending_deliveries_once_and_queues_them() {
    let (store, requests) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let (app, endpoint) = app_with_endpoint(
        &store,
        "https://hooks.example.com/chat",
        &[
            EventType::ChatCreated,
            EventType::ChatUpdated,
            EventType::MessageCreated,
        ],
    )
    .await;
    let event: StreamEvent = serde_json::from_value(fixture(
        "dynamodb-stream-webhooks.json",
        &[("APP", app.as_str())],
    ))
    .unwrap();
    requests.take();
    let response =
        handle_webhook_stream(&store, &queue, Duration::from_secs(30), event.clone()).await;
    // 600: a message without a version is malformed; every other record is handled.
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failed, ["600"]);
    // Three events (chat.created, message.created, chat.updated; the MODIFY that only
    // counted a message and the counter are no events): per event 1 Query of the endpoints
    // and 1 PutItem; the message's unseen check asks once more whether anyone subscribes.
    let counted = requests.take();
    assert_eq!(counted.get("Query"), Some(&4), "{counted:?}");
    assert_eq!(counted.get("PutItem"), Some(&3), "{counted:?}");
    let deliveries = store
        .deliveries(&app, &endpoint.id, None, 10)
        .await
        .unwrap();
    let mut types: Vec<_> = deliveries.iter().map(|d| d.event_type.as_str()).collect();
    types.sort_unstable();
    assert_eq!(types, ["chat.created", "chat.updated", "message.created"]);
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0)
    );
    let queued = tasks(&drain(&sqs, &url, 1).await);
    assert_eq!(queued.len(), 3);
    for task in &queued {
        assert_eq!(task["kind"], "delivery");
        assert_eq!(task["attempts"], 0);
        assert!(deliveries.iter().any(|d| d.id.as_str() == task["delivery"]));
    }
    // The same batch again (Lambda retries a batch): no delivery twice. The deliveries not
    // yet attempted are queued again; the sender drops what it already sent.
    handle_webhook_stream(&store, &queue, Duration::from_secs(30), event).await;
    assert_eq!(
        store
            .deliveries(&app, &endpoint.id, None, 10)
            .await
            .unwrap(),
        deliveries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_the_receiver_signed_after_retries_with_one_event_id() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let hook = receiver(&[500, 503]).await;
    let (app, endpoint) = app_with_endpoint(&store, &hook.url, &[EventType::MessageCreated]).await;
    let key = ServerKey::generate();
    let sender = sender(&store, &queue, key.clone(), dev_config());
    // A customer sends a message; the stream function turns it into a delivery.
    let now = SystemClock.now();
    let scope = open_chat(&store, &app).await;
    send(&store, &scope, Role::Customer, "Where is my order?", now).await;
    let response = handle_webhook_stream(
        &store,
        &queue,
        Duration::from_secs(30),
        stream_event(&store).await,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    // The sender takes what the queue holds until the receiver has answered 200.
    for _ in 0..10 {
        let batch = drain(&sqs, &url, 2).await;
        if batch.records.is_empty() {
            break;
        }
        let answer = sender.handle(batch).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two failures, then the success: {got:?}");
    assert!(
        got.iter()
            .all(|r| r.event_id == got[0].event_id && r.body == got[0].body)
    );
    let body: Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(body["type"], "message.created");
    assert_eq!(body["id"], got[2].event_id);
    assert_eq!(body["appToken"], app.as_str());
    assert_eq!(body["data"]["message"]["body"], "Where is my order?");
    let secret = WebhookSecret::derive(&key, &app, &endpoint.id, 1);
    let unix = SystemClock.now().0 / 1000;
    verify_signature(
        &got[2].signature,
        &secret,
        got[2].body.as_bytes(),
        unix,
        SIGNATURE_TOLERANCE_SECS,
    )
    .expect("the signature verifies with the endpoint's secret");
    let deliveries = store
        .deliveries(&app, &endpoint.id, None, 10)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Succeeded);
    assert_eq!(deliveries[0].attempts, 3);
    assert_eq!(deliveries[0].last_response_code, Some(200));
    // A stale copy of the first task (SQS delivers at least once) sends nothing more.
    let stale = json!({"kind": "delivery", "app": app.as_str(), "endpoint": endpoint.id.as_str(),
        "delivery": deliveries[0].id.as_str(), "attempts": 0});
    sender.task(&stale.to_string()).await.unwrap();
    assert_eq!(hook.got.lock().unwrap().len(), 3);

    // Redelivering it (the mutation's store call) reaches the queue through the stream, and
    // the receiver gets the same event again.
    let again = store
        .redeliver(&app, &endpoint.id, &deliveries[0].id, SystemClock.now())
        .await
        .unwrap();
    handle_webhook_stream(
        &store,
        &queue,
        Duration::from_secs(30),
        stream_event(&store).await,
    )
    .await;
    let batch = drain(&sqs, &url, 1).await;
    let redelivery: Vec<Value> = tasks(&batch)
        .into_iter()
        .filter(|t| t["delivery"] == again.id.as_str())
        .collect();
    assert_eq!(redelivery.len(), 1);
    sender.handle(batch).await;
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    assert_eq!(got[3].event_id, got[0].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sender_refuses_private_targets_and_drops_malformed_tasks() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let hook = receiver(&[]).await;
    // An endpoint on loopback, but a sender in production mode.
    let (app, endpoint) = app_with_endpoint(&store, &hook.url, &[EventType::ChatCreated]).await;
    let sender = sender(
        &store,
        &queue,
        ServerKey::generate(),
        SenderConfig::default(),
    );
    open_chat(&store, &app).await;
    handle_webhook_stream(
        &store,
        &sender.queue,
        Duration::from_secs(30),
        stream_event(&store).await,
    )
    .await;
    let task = tasks(&drain(&sqs, &url, 1).await).remove(0);
    // The fixture's shape: one malformed message (dropped, not retried) and the task.
    let event: SqsEvent = serde_json::from_str(&fixture_text(
        "sqs-webhook-tasks.json",
        &[("TASK", &task.to_string().replace('"', "\\\""))],
    ))
    .unwrap();
    let answer = sender.handle(event).await;
    assert!(answer.batch_item_failures.is_empty());
    assert!(
        hook.got.lock().unwrap().is_empty(),
        "nothing reaches loopback"
    );
    let delivery = &store.deliveries(&app, &endpoint.id, None, 1).await.unwrap()[0];
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    let error = delivery.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("refused: 127.0.0.1 is a loopback address"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_unseen_goes_out_for_what_an_absent_customer_has_not_read() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let hook = receiver(&[]).await;
    let (app, _) = app_with_endpoint(&store, &hook.url, &[EventType::MessageUnseen]).await;
    let sender = sender(&store, &queue, ServerKey::generate(), dev_config());
    let now = SystemClock.now();
    let scope = open_chat(&store, &app).await;
    // An agent answers twice, the second time with a photo of the label; the customer,
    // with no presence anywhere, reads the first answer only before the grace is over.
    send(&store, &scope, Role::Agent, "Your parcel left today.", now).await;
    let label = ImageSize {
        width: 640,
        height: 480,
    };
    let photo = pending_upload(
        &store,
        &scope,
        "agent-1",
        now,
        ("label.jpg", FileType::Jpeg, 48_213, Some(label)),
    )
    .await;
    store
        .send_with_attachments(
            NewMessage {
                scope: scope.clone(),
                body: MessageBody::parse("Tracking: ZX-1.").unwrap(),
                sender_id: UserId::parse("agent-1").unwrap(),
                sender_role: Role::Agent,
                client_message_id: None,
                now,
            },
            vec![photo],
        )
        .await
        .unwrap();
    // The stream function queues one check per message, delayed by the grace (0 here).
    let response =
        handle_webhook_stream(&store, &queue, Duration::ZERO, stream_event(&store).await).await;
    assert!(response.batch_item_failures.is_empty());
    store
        .mark_chat_read(MarkRead {
            scope: scope.clone(),
            reader: UserIdentity {
                app: app.clone(),
                user_id: UserId::parse("cust-1").unwrap(),
                role: Role::Customer,
            },
            up_to: Some(MessageNumber::new(1).unwrap()),
        })
        .await
        .unwrap();
    let mut checks = 0;
    for _ in 0..10 {
        let batch = drain(&sqs, &url, 2).await;
        if batch.records.is_empty() {
            break;
        }
        checks += tasks(&batch)
            .iter()
            .filter(|t| t["kind"] == "unseen")
            .count();
        let answer = sender.handle(batch).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    assert_eq!(checks, 2, "one check per message");
    // The read message is settled silently; the unread one reaches the receiver, addressed
    // to the customer.
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["type"], "message.unseen");
    assert_eq!(body["data"]["message"]["number"], 2);
    assert_eq!(body["data"]["receiver"]["role"], "CUSTOMER");
    assert_eq!(body["data"]["receiver"]["userId"], "cust-1");
    // With the photo's metadata, read with the message (no URL: it would expire).
    assert_eq!(
        body["data"]["message"]["attachments"],
        json!([{ "name": "label.jpg", "contentType": "image/jpeg", "size": 48_213,
                 "width": 640, "height": 480 }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_events_from_the_stream_carry_files_and_a_deleted_message_none() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (app, _) = app_with_endpoint(
        &store,
        "https://hooks.example.com/chat",
        &[EventType::MessageCreated],
    )
    .await;
    let now = SystemClock.now();
    let scope = open_chat(&store, &app).await;
    // Given a message sent with a PDF and a photo (uploaded in that order), edited, then
    // deleted.
    let pdf = pending_upload(
        &store,
        &scope,
        "cust-1",
        now,
        ("invoice-4471.pdf", FileType::Pdf, 5_120, None),
    )
    .await;
    let photo = pending_upload(
        &store,
        &scope,
        "cust-1",
        Timestamp(now.0 + 1),
        (
            "parcel.png",
            FileType::Png,
            482_113,
            Some(ImageSize {
                width: 1_200,
                height: 900,
            }),
        ),
    )
    .await;
    let sent = store
        .send_with_attachments(
            NewMessage {
                scope: scope.clone(),
                body: MessageBody::parse("Broken on arrival").unwrap(),
                sender_id: UserId::parse("cust-1").unwrap(),
                sender_role: Role::Customer,
                client_message_id: None,
                now,
            },
            vec![photo, pdf],
        )
        .await
        .unwrap();
    let change = MessageChange {
        scope: scope.clone(),
        number: sent.message.number,
        only_sender: None,
        now: SystemClock.now(),
    };
    store
        .edit_message(
            change.clone(),
            MessageBody::parse("Broken on arrival, see both").unwrap(),
        )
        .await
        .unwrap();
    store.delete_message(change).await.unwrap();
    // When the stream function turns the stream's records into events.
    let mut events: Vec<(String, Value)> = Vec::new();
    for (sequence, items) in feed_items(&stream_event(&store).await.records) {
        for item in items.unwrap_or_else(|e| panic!("record {sequence}: {e}")) {
            if let FeedItem::Event(event) = item {
                let body: Value = serde_json::from_str(&event.body()).unwrap();
                events.push((event.event_type.as_str().to_owned(), body));
            }
        }
    }
    // Then created and edited carry both files' metadata, in upload order, without URLs;
    // deleted carries none.
    let files = json!([
        { "name": "invoice-4471.pdf", "contentType": "application/pdf", "size": 5_120,
          "width": null, "height": null },
        { "name": "parcel.png", "contentType": "image/png", "size": 482_113,
          "width": 1_200, "height": 900 },
    ]);
    let attachments = |kind: &str| -> Value {
        let (_, body) = events
            .iter()
            .find(|(t, _)| t == kind)
            .unwrap_or_else(|| panic!("no {kind} in {events:?}"));
        body["data"]["message"]["attachments"].clone()
    };
    assert_eq!(attachments("message.created"), files);
    assert_eq!(attachments("message.edited"), files);
    assert_eq!(attachments("message.deleted"), json!([]));
    // And the message item keeps no file names once deleted.
    let (message, kept) = store
        .message_with_files(&app, scope.chat, sent.message.number)
        .await
        .unwrap()
        .unwrap();
    assert!(message.deleted && kept.is_empty());
}

/// The stream records not handed over yet, as the next batch Lambda would deliver.
async fn new_stream_event(store: &DynamoStore, seen: &mut HashSet<String>) -> StreamEvent {
    let mut event = StreamEvent::default();
    event.records = chat_dynamodb::moto_stream::stream_records(store)
        .await
        .into_iter()
        .filter(|r| seen.insert(r.change.sequence_number.clone().unwrap_or_default()))
        .collect();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_enabled_endpoint_gets_its_pending_deliveries() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let hook = receiver(&[]).await;
    let (app, endpoint) = app_with_endpoint(&store, &hook.url, &[EventType::MessageCreated]).await;
    // Two deliveries examined per resume task: the resumption takes several pages.
    let config = SenderConfig {
        resume_page: 2,
        ..dev_config()
    };
    let sender = sender(&store, &queue, ServerKey::generate(), config);
    let mut seen = HashSet::new();
    let stream = async |seen: &mut HashSet<String>| {
        let event = new_stream_event(&store, seen).await;
        let response = handle_webhook_stream(&store, &queue, Duration::from_secs(30), event).await;
        assert!(response.batch_item_failures.is_empty());
    };
    // The sender takes what the queue holds until it is empty; the kinds of tasks it took.
    let run_sender = async || {
        let mut kinds = Vec::new();
        for _ in 0..10 {
            let batch = drain(&sqs, &url, 1).await;
            if batch.records.is_empty() {
                break;
            }
            kinds.extend(
                tasks(&batch)
                    .iter()
                    .map(|t| t["kind"].as_str().unwrap().to_owned()),
            );
            assert!(sender.handle(batch).await.batch_item_failures.is_empty());
        }
        kinds
    };
    let scope = open_chat(&store, &app).await;
    let send = async |text: &str| {
        send(&store, &scope, Role::Customer, text, SystemClock.now()).await;
    };
    let set_enabled = |enabled| EndpointUpdate {
        enabled: Some(enabled),
        ..Default::default()
    };
    // Given one message delivered, and three recorded and queued when the endpoint is
    // disabled before the sender takes them.
    send("one").await;
    stream(&mut seen).await;
    run_sender().await;
    for text in ["two", "three", "four"] {
        send(text).await;
    }
    stream(&mut seen).await;
    store
        .update_endpoint(&app, &endpoint.id, &set_enabled(false), SystemClock.now())
        .await
        .unwrap();
    stream(&mut seen).await;
    assert_eq!(run_sender().await, ["delivery"; 3]);
    // A message sent while it is disabled gets no delivery at all.
    send("five").await;
    stream(&mut seen).await;
    let bodies = |got: &[Received]| -> Vec<String> {
        let mut bodies: Vec<String> = got
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                body["data"]["message"]["body"].as_str().unwrap().to_owned()
            })
            .collect();
        bodies.sort();
        bodies
    };
    assert_eq!(bodies(&hook.got.lock().unwrap()), ["one"]);
    let pending = store
        .deliveries(&app, &endpoint.id, None, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 4);
    assert_eq!(
        pending
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending && d.attempts == 0)
            .count(),
        3
    );
    // When it is enabled again, the stream function queues its resumption, and the sender
    // pages through the endpoint's deliveries and sends the three pending ones, once each.
    store
        .update_endpoint(&app, &endpoint.id, &set_enabled(true), SystemClock.now())
        .await
        .unwrap();
    let event = new_stream_event(&store, &mut seen).await;
    handle_webhook_stream(&store, &queue, Duration::from_secs(30), event).await;
    let kinds = run_sender().await;
    let resumes = kinds.iter().filter(|k| *k == "resume").count();
    assert!(resumes >= 2, "four deliveries, two per page: {kinds:?}");
    assert_eq!(
        bodies(&hook.got.lock().unwrap()),
        ["four", "one", "three", "two"]
    );
    let after = store
        .deliveries(&app, &endpoint.id, None, 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 4);
    assert!(after.iter().all(|d| d.status == DeliveryStatus::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_instances_together_keep_to_the_per_endpoint_cap() {
    let (store, _) = chat_dynamodb::moto::fresh_store().await;
    let (sqs, url) = fresh_queue().await;
    let queue = TaskQueue::new(sqs.clone(), url.clone());
    let hook = receiver_holding(&[], Duration::from_millis(300)).await;
    let (app, endpoint) = app_with_endpoint(&store, &hook.url, &[EventType::MessageCreated]).await;
    let config = SenderConfig {
        per_endpoint: 2,
        // A task that finds both slots taken comes back at once: the test waits for nothing.
        busy_delay_secs: 0,
        ..dev_config()
    };
    let key = ServerKey::generate();
    let instances = [
        sender(&store, &queue, key.clone(), config.clone()),
        sender(&store, &queue, key, config),
    ];
    // Given eight messages, each a delivery task on the queue.
    let scope = open_chat(&store, &app).await;
    for i in 0..8 {
        let text = format!("message {i}");
        send(&store, &scope, Role::Customer, &text, SystemClock.now()).await;
    }
    let event = stream_event(&store).await;
    handle_webhook_stream(&store, &queue, Duration::from_secs(30), event).await;
    // When two sender instances take four tasks at a time each, as Lambda scales out,
    // until the receiver has all eight (it holds each request 300 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let delivered = || hook.got.lock().unwrap().len();
    let run = async |sender: &WebhookSender| {
        while delivered() < 8 && std::time::Instant::now() < deadline {
            // No long polling: moto answers nothing else while one waits.
            let records = receive(&sqs, &url, 4, 0).await;
            if records.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            } else {
                let answer = sender.handle(sqs_event(records)).await;
                assert!(answer.batch_item_failures.is_empty());
            }
        }
    };
    futures::join!(run(&instances[0]), run(&instances[1]));
    // Then each arrived once, never more than two at a time, each at its first attempt
    // (waiting for a slot is not an attempt).
    let mut ids: Vec<String> = hook
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.event_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert_eq!(delivered(), 8);
    assert_eq!(hook.most_at_once.load(Ordering::SeqCst), 2);
    let deliveries = store
        .deliveries(&app, &endpoint.id, None, 10)
        .await
        .unwrap();
    assert!(
        deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Succeeded && d.attempts == 1)
    );
}
