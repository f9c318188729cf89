//! Webhook endpoints and deliveries on SQLite: the [`WebhookEndpoints`] and
//! [`WebhookStore`] ports.
//!
//! Events are queued in the transaction of the change that causes them (`queue_*` below,
//! called by the write operations): one `webhook_events` row with the JSON body, and one
//! PENDING `webhook_deliveries` row per enabled endpoint of the application that subscribes
//! to the type. A change is thus queued if and only if it commits, and a crash loses no
//! delivery: the sender finds the PENDING rows after the restart. With no subscribed
//! endpoint the cost is one indexed read per write.
//!
//! A message that may need `message.unseen` gets a `webhook_unseen` row in its send's
//! transaction (only when an endpoint subscribes to it); the sender settles it after the
//! grace: it either queues the event or drops the row.

use async_trait::async_trait;
use chat_domain::webhooks::{
    AttemptOutcome, Delivery, DeliveryCursor, DeliveryId, DeliveryStatus, DisablePolicy,
    DueDelivery, Endpoint, EndpointId, EndpointUpdate, EventId, EventType, EventTypes, UnseenCheck,
    UnseenReceiver, WEBHOOK_ENDPOINTS_MAX, WebhookEndpoints, WebhookEvent, WebhookStore,
    WebhookUrl, chat_data, event_mask, message_data, unseen_data,
};
use chat_domain::{AppToken, Chat, ChatNumber, DomainError, Message, MessageNumber, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::error::{Result, StoreError};
use crate::rows;

// ---- queueing, inside the change's transaction --------------------------------------------

/// Queues `event_type` with `data` for the application's subscribed endpoints. Nothing is
/// written when none subscribes.
fn queue_event(
    conn: &Connection,
    app: &AppToken,
    event_type: EventType,
    data: impl FnOnce() -> Result<serde_json::Value>,
    now: Timestamp,
) -> Result<()> {
    let endpoints = subscribed(conn, app, event_type)?;
    let Some((app_id, _)) = endpoints.first() else {
        return Ok(());
    };
    let event = WebhookEvent::new(event_type, app, now, data()?);
    conn.prepare_cached(
        "INSERT INTO webhook_events (id, app_id, type, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        event.id.as_str(),
        app_id,
        event_type.as_str(),
        event.body(),
        now.0
    ])?;
    for (_, endpoint) in &endpoints {
        insert_delivery(conn, endpoint, &event.id, now)?;
    }
    Ok(())
}

/// `(app_id, endpoint id)` of the enabled endpoints subscribed to `event_type`.
fn subscribed(
    conn: &Connection,
    app: &AppToken,
    event_type: EventType,
) -> Result<Vec<(i64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.app_id, e.id FROM webhook_endpoints e \
         WHERE e.app_id = (SELECT id FROM applications WHERE token = ?1) \
         AND e.enabled = 1 AND (e.events & ?2) != 0",
    )?;
    let rows = stmt
        .query_map(params![app.as_str(), event_mask(event_type)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

fn insert_delivery(
    conn: &Connection,
    endpoint: &str,
    event: &EventId,
    now: Timestamp,
) -> Result<DeliveryId> {
    let id = DeliveryId::generate();
    conn.prepare_cached(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempts, \
         next_attempt_at, created_at, updated_at) VALUES (?1, ?2, ?3, 'PENDING', 0, ?4, ?4, ?4)",
    )?
    .execute(params![id.as_str(), endpoint, event.as_str(), now.0])?;
    Ok(id)
}

pub(crate) fn chat_created(conn: &Connection, chat: &Chat) -> Result<()> {
    queue_event(
        conn,
        &chat.app,
        EventType::ChatCreated,
        || Ok(chat_data(chat)),
        chat.created_at,
    )
}

pub(crate) fn chat_updated(conn: &Connection, chat: &Chat) -> Result<()> {
    queue_event(
        conn,
        &chat.app,
        EventType::ChatUpdated,
        || Ok(chat_data(chat)),
        chat.updated_at,
    )
}

/// A message and its attached files (none once deleted).
fn message_with_files(conn: &Connection, message: &Message) -> Result<serde_json::Value> {
    let files = if message.deleted {
        Vec::new()
    } else {
        crate::attachments::message_files(conn, &message.app, message.chat_number, message.number)?
    };
    Ok(message_data(message, &files))
}

/// A message was sent (with its attachments): `message.created`, and the `message.unseen`
/// check when an endpoint subscribes to it.
pub(crate) fn message_created(conn: &Connection, message: &Message) -> Result<()> {
    let now = message.created_at;
    queue_event(
        conn,
        &message.app,
        EventType::MessageCreated,
        || message_with_files(conn, message),
        now,
    )?;
    if let Some((app_id, _)) = subscribed(conn, &message.app, EventType::MessageUnseen)?.first() {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO webhook_unseen (app_id, chat_number, number, queued_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            app_id,
            message.chat_number.get(),
            message.number.get(),
            now.0
        ])?;
    }
    Ok(())
}

pub(crate) fn message_changed(
    conn: &Connection,
    event_type: EventType,
    message: &Message,
    now: Timestamp,
) -> Result<()> {
    queue_event(
        conn,
        &message.app,
        event_type,
        || message_with_files(conn, message),
        now,
    )
}

// ---- rows ---------------------------------------------------------------------------------

const ENDPOINT_COLUMNS: &str = "e.id, e.url, e.events, e.enabled, e.disabled_reason, \
     e.secret_generation, e.previous_secret_expires_at, e.consecutive_failures, \
     e.failing_since, e.created_at, e.updated_at";

fn corrupt(what: &'static str) -> impl FnOnce(DomainError) -> StoreError {
    move |e| StoreError::corrupt(what, e)
}

fn endpoint_row(app: &AppToken, row: &rusqlite::Row<'_>, at: usize) -> Result<Endpoint> {
    Ok(Endpoint {
        app: app.clone(),
        id: EndpointId::parse(&row.get::<_, String>(at)?).map_err(corrupt("endpoint id"))?,
        url: WebhookUrl::stored(&row.get::<_, String>(at + 1)?).map_err(corrupt("endpoint url"))?,
        events: EventTypes::from_mask(row.get(at + 2)?).map_err(corrupt("endpoint events"))?,
        enabled: row.get(at + 3)?,
        disabled_reason: row.get(at + 4)?,
        secret_generation: rows::count(row.get(at + 5)?, "secret generation")?,
        previous_secret_expires_at: row.get::<_, Option<i64>>(at + 6)?.map(Timestamp),
        consecutive_failures: rows::count(row.get(at + 7)?, "consecutive failures")?,
        failing_since: row.get::<_, Option<i64>>(at + 8)?.map(Timestamp),
        created_at: Timestamp(row.get(at + 9)?),
        updated_at: Timestamp(row.get(at + 10)?),
    })
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.event_id, ev.type, d.status, d.attempts, \
     d.last_response_code, d.last_error, d.last_attempt_at, d.next_attempt_at, d.created_at";
const DELIVERY_COLUMN_COUNT: usize = 11;

fn delivery_row(row: &rusqlite::Row<'_>) -> Result<Delivery> {
    Ok(Delivery {
        id: DeliveryId::parse(&row.get::<_, String>(0)?).map_err(corrupt("delivery id"))?,
        endpoint: EndpointId::parse(&row.get::<_, String>(1)?).map_err(corrupt("endpoint id"))?,
        event_id: EventId::parse(&row.get::<_, String>(2)?).map_err(corrupt("event id"))?,
        event_type: EventType::parse(&row.get::<_, String>(3)?).map_err(corrupt("event type"))?,
        status: DeliveryStatus::parse(&row.get::<_, String>(4)?)
            .map_err(corrupt("delivery status"))?,
        attempts: rows::count(row.get(5)?, "attempts")?,
        last_response_code: row
            .get::<_, Option<i64>>(6)?
            .map(|c| u16::try_from(c).map_err(|e| StoreError::corrupt("response code", e)))
            .transpose()?,
        last_error: row.get(7)?,
        last_attempt_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
        next_attempt_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
        created_at: Timestamp(row.get(10)?),
    })
}

fn app_id(conn: &Connection, app: &AppToken) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM applications WHERE token = ?1")?
        .query_row([app.as_str()], |row| row.get(0))
        .optional()?
        .ok_or_else(|| DomainError::application_not_found(app).into())
}

fn not_found(id: &EndpointId) -> StoreError {
    DomainError::NotFound(format!("webhook endpoint {id} not found")).into()
}

// ---- the port's operations ------------------------------------------------------------------

fn create_endpoint(conn: &Connection, endpoint: &Endpoint) -> Result<Endpoint> {
    let app_id = app_id(conn, &endpoint.app)?;
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM webhook_endpoints WHERE app_id = ?1")?
        .query_row([app_id], |row| row.get(0))?;
    if count >= WEBHOOK_ENDPOINTS_MAX as i64 {
        return Err(DomainError::Conflict(format!(
            "an application has at most {WEBHOOK_ENDPOINTS_MAX} webhook endpoints"
        ))
        .into());
    }
    conn.prepare_cached(
        "INSERT INTO webhook_endpoints (id, app_id, url, events, enabled, disabled_reason, \
         secret_generation, previous_secret_expires_at, consecutive_failures, failing_since, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, 0, NULL, ?8, ?9)",
    )?
    .execute(params![
        endpoint.id.as_str(),
        app_id,
        endpoint.url.as_str(),
        endpoint.events.mask(),
        endpoint.enabled,
        endpoint.secret_generation,
        endpoint.previous_secret_expires_at.map(|t| t.0),
        endpoint.created_at.0,
        endpoint.updated_at.0,
    ])?;
    Ok(endpoint.clone())
}

fn endpoint(conn: &Connection, app: &AppToken, id: &EndpointId) -> Result<Option<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e \
         WHERE e.id = ?2 AND e.app_id = (SELECT id FROM applications WHERE token = ?1)"
    ))?;
    let mut found = stmt.query(params![app.as_str(), id.as_str()])?;
    found
        .next()?
        .map(|row| endpoint_row(app, row, 0))
        .transpose()
}

fn endpoints(conn: &Connection, app: &AppToken) -> Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e \
         WHERE e.app_id = (SELECT id FROM applications WHERE token = ?1) \
         ORDER BY e.created_at, e.id"
    ))?;
    let mut found = stmt.query([app.as_str()])?;
    let mut all = Vec::new();
    while let Some(row) = found.next()? {
        all.push(endpoint_row(app, row, 0)?);
    }
    Ok(all)
}

fn update_endpoint(
    conn: &Connection,
    app: &AppToken,
    id: &EndpointId,
    update: &EndpointUpdate,
    now: Timestamp,
) -> Result<Endpoint> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_endpoints SET \
             url = COALESCE(?3, url), events = COALESCE(?4, events), \
             enabled = COALESCE(?5, enabled), \
             disabled_reason = CASE WHEN ?5 = 1 THEN NULL ELSE disabled_reason END, \
             consecutive_failures = CASE WHEN ?5 = 1 THEN 0 ELSE consecutive_failures END, \
             failing_since = CASE WHEN ?5 = 1 THEN NULL ELSE failing_since END, \
             updated_at = ?6 \
             WHERE id = ?2 AND app_id = (SELECT id FROM applications WHERE token = ?1)",
        )?
        .execute(params![
            app.as_str(),
            id.as_str(),
            update.url.as_ref().map(WebhookUrl::as_str),
            update.events.map(EventTypes::mask),
            update.enabled,
            now.0,
        ])?;
    if changed == 0 {
        return Err(not_found(id));
    }
    endpoint(conn, app, id)?.ok_or_else(|| not_found(id))
}

fn delete_endpoint(conn: &Connection, app: &AppToken, id: &EndpointId) -> Result<bool> {
    let Some(_) = endpoint(conn, app, id)? else {
        return Ok(false);
    };
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE endpoint_id = ?1")?
        .execute([id.as_str()])?;
    conn.prepare_cached("DELETE FROM webhook_endpoints WHERE id = ?1")?
        .execute([id.as_str()])?;
    Ok(true)
}

fn rotate_endpoint_secret(
    conn: &Connection,
    app: &AppToken,
    id: &EndpointId,
    previous_expires_at: Timestamp,
    now: Timestamp,
) -> Result<Endpoint> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_endpoints SET secret_generation = secret_generation + 1, \
             previous_secret_expires_at = ?3, updated_at = ?4 \
             WHERE id = ?2 AND app_id = (SELECT id FROM applications WHERE token = ?1)",
        )?
        .execute(params![
            app.as_str(),
            id.as_str(),
            previous_expires_at.0,
            now.0
        ])?;
    if changed == 0 {
        return Err(not_found(id));
    }
    endpoint(conn, app, id)?.ok_or_else(|| not_found(id))
}

fn deliveries(
    conn: &Connection,
    app: &AppToken,
    id: &EndpointId,
    after: Option<&DeliveryCursor>,
    limit: u32,
) -> Result<Vec<Delivery>> {
    if endpoint(conn, app, id)?.is_none() {
        return Err(not_found(id));
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
         JOIN webhook_events ev ON ev.id = d.event_id \
         WHERE d.endpoint_id = ?1 AND (?2 IS NULL OR (d.created_at, d.id) < (?2, ?3)) \
         ORDER BY d.created_at DESC, d.id DESC LIMIT ?4"
    ))?;
    let mut found = stmt.query(params![
        id.as_str(),
        after.map(|c| c.created_at.0),
        after.map(|c| c.id.as_str().to_owned()),
        limit
    ])?;
    let mut all = Vec::new();
    while let Some(row) = found.next()? {
        all.push(delivery_row(row)?);
    }
    Ok(all)
}

fn delivery(conn: &Connection, id: &str) -> Result<Option<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d \
         JOIN webhook_events ev ON ev.id = d.event_id WHERE d.id = ?1"
    ))?;
    let mut found = stmt.query([id])?;
    found.next()?.map(delivery_row).transpose()
}

fn redeliver(
    conn: &Connection,
    app: &AppToken,
    endpoint_id: &EndpointId,
    id: &DeliveryId,
    now: Timestamp,
) -> Result<Delivery> {
    if endpoint(conn, app, endpoint_id)?.is_none() {
        return Err(not_found(endpoint_id));
    }
    let original = delivery(conn, id.as_str())?
        .filter(|d| &d.endpoint == endpoint_id)
        .ok_or_else(|| DomainError::NotFound(format!("delivery {id} not found")))?;
    let new = insert_delivery(conn, endpoint_id.as_str(), &original.event_id, now)?;
    delivery(conn, new.as_str())?.ok_or_else(|| {
        DomainError::internal("webhooks: redelivery vanished", new.to_string()).into()
    })
}

fn due_deliveries(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    skip: &[DeliveryId],
) -> Result<Vec<DueDelivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS}, a.token, {ENDPOINT_COLUMNS}, ev.body \
         FROM webhook_deliveries d \
         JOIN webhook_events ev ON ev.id = d.event_id \
         JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         JOIN applications a ON a.id = e.app_id \
         WHERE d.status = 'PENDING' AND d.next_attempt_at <= ?1 AND e.enabled = 1 \
         ORDER BY d.next_attempt_at LIMIT ?2"
    ))?;
    let fetch = limit.saturating_add(u32::try_from(skip.len()).unwrap_or(u32::MAX));
    let mut found = stmt.query(params![now.0, fetch])?;
    let mut due = Vec::new();
    while let Some(row) = found.next()? {
        let delivery = delivery_row(row)?;
        if skip.contains(&delivery.id) {
            continue;
        }
        let app = AppToken::parse(&row.get::<_, String>(DELIVERY_COLUMN_COUNT)?)
            .map_err(corrupt("application token"))?;
        let endpoint = endpoint_row(&app, row, DELIVERY_COLUMN_COUNT + 1)?;
        let body: String = row.get(DELIVERY_COLUMN_COUNT + 12)?;
        due.push(DueDelivery {
            delivery,
            endpoint,
            body,
        });
        if due.len() == limit as usize {
            break;
        }
    }
    Ok(due)
}

fn record_attempt(
    conn: &Connection,
    id: &DeliveryId,
    outcome: &AttemptOutcome,
    retry_at: Option<Timestamp>,
    policy: DisablePolicy,
    now: Timestamp,
) -> Result<()> {
    let Some(endpoint_id) = conn
        .prepare_cached(
            "SELECT endpoint_id FROM webhook_deliveries WHERE id = ?1 AND status = 'PENDING'",
        )?
        .query_row([id.as_str()], |row| row.get::<_, String>(0))
        .optional()?
    else {
        // Deleted with its endpoint meanwhile, or recorded already.
        return Ok(());
    };
    match outcome {
        AttemptOutcome::Delivered { status } => {
            conn.prepare_cached(
                "UPDATE webhook_deliveries SET status = 'SUCCEEDED', attempts = attempts + 1, \
                 last_response_code = ?2, last_error = NULL, last_attempt_at = ?3, \
                 next_attempt_at = NULL, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id.as_str(), status, now.0])?;
            conn.prepare_cached(
                "UPDATE webhook_endpoints SET consecutive_failures = 0, failing_since = NULL \
                 WHERE id = ?1 AND consecutive_failures != 0",
            )?
            .execute([&endpoint_id])?;
        }
        AttemptOutcome::Failed { status, error } => {
            conn.prepare_cached(
                "UPDATE webhook_deliveries SET \
                 status = CASE WHEN ?4 IS NULL THEN 'FAILED' ELSE 'PENDING' END, \
                 attempts = attempts + 1, last_response_code = ?2, last_error = ?3, \
                 last_attempt_at = ?5, next_attempt_at = ?4, updated_at = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id.as_str(),
                status,
                error,
                retry_at.map(|t| t.0),
                now.0
            ])?;
            let (failures, since): (i64, i64) = conn
                .prepare_cached(
                    "UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1, \
                     failing_since = COALESCE(failing_since, ?2) WHERE id = ?1 \
                     RETURNING consecutive_failures, failing_since",
                )?
                .query_row(params![endpoint_id, now.0], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let failures = rows::count(failures, "consecutive failures")?;
            if let Some(reason) = policy.reason(failures, Timestamp(since), now, outcome) {
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET enabled = 0, disabled_reason = ?2, \
                     updated_at = ?3 WHERE id = ?1 AND enabled = 1",
                )?
                .execute(params![endpoint_id, reason, now.0])?;
            }
        }
    }
    Ok(())
}

fn next_due(conn: &Connection, grace_ms: i64) -> Result<Option<Timestamp>> {
    let delivery: Option<i64> = conn
        .prepare_cached(
            "SELECT min(d.next_attempt_at) FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'PENDING' AND e.enabled = 1",
        )?
        .query_row([], |row| row.get(0))?;
    let unseen: Option<i64> = conn
        .prepare_cached("SELECT min(queued_at) FROM webhook_unseen")?
        .query_row([], |row| row.get(0))?;
    let unseen = unseen.map(|t| t.saturating_add(grace_ms));
    Ok(match (delivery, unseen) {
        (Some(a), Some(b)) => Some(Timestamp(a.min(b))),
        (a, b) => a.or(b).map(Timestamp),
    })
}

fn prune(conn: &Connection, before: Timestamp, limit: u32) -> Result<u64> {
    // Rowid order is creation order: the oldest rows come first, without an index.
    let deliveries = conn
        .prepare_cached(
            "DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries \
             WHERE created_at < ?1 AND status != 'PENDING' LIMIT ?2)",
        )?
        .execute(params![before.0, limit])?;
    let events = conn
        .prepare_cached(
            "DELETE FROM webhook_events WHERE rowid IN (SELECT e.rowid FROM webhook_events e \
             WHERE e.created_at < ?1 AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) LIMIT ?2)",
        )?
        .execute(params![before.0, limit])?;
    Ok((deliveries + events) as u64)
}

fn due_unseen(conn: &Connection, before: Timestamp, limit: u32) -> Result<Vec<UnseenCheck>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.token, u.chat_number, u.number, u.queued_at FROM webhook_unseen u \
         JOIN applications a ON a.id = u.app_id WHERE u.queued_at <= ?1 \
         ORDER BY u.queued_at LIMIT ?2",
    )?;
    let mut found = stmt.query(params![before.0, limit])?;
    let mut due = Vec::new();
    while let Some(row) = found.next()? {
        due.push(UnseenCheck {
            app: AppToken::parse(&row.get::<_, String>(0)?)
                .map_err(corrupt("application token"))?,
            chat: rows::chat_number(row.get(1)?)?,
            number: rows::message_number(row.get(2)?)?,
            queued_at: Timestamp(row.get(3)?),
        });
    }
    Ok(due)
}

fn settle_unseen(conn: &Connection, check: &UnseenCheck, send: bool, now: Timestamp) -> Result<()> {
    let removed = conn
        .prepare_cached(
            "DELETE FROM webhook_unseen WHERE app_id = (SELECT id FROM applications WHERE token = ?1) \
             AND chat_number = ?2 AND number = ?3",
        )?
        .execute(params![
            check.app.as_str(),
            check.chat.get(),
            check.number.get()
        ])?;
    if removed == 0 || !send {
        return Ok(());
    }
    let Some((message, customer)) = unseen_message(conn, &check.app, check.chat, check.number)?
    else {
        return Ok(());
    };
    let receiver = UnseenReceiver::of(message.sender_role, &customer);
    queue_event(
        conn,
        &check.app,
        EventType::MessageUnseen,
        || {
            let files = crate::attachments::message_files(
                conn,
                &check.app,
                message.chat_number,
                message.number,
            )?;
            Ok(unseen_data(&message, &files, &receiver))
        },
        now,
    )
}

fn unseen_message(
    conn: &Connection,
    app: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
) -> Result<Option<(Message, chat_domain::UserId)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.customer_id, {} FROM messages m JOIN chats c \
         ON c.app_id = m.app_id AND c.number = m.chat_number \
         WHERE m.app_id = (SELECT id FROM applications WHERE token = ?1) \
         AND m.chat_number = ?2 AND m.number = ?3",
        rows::MESSAGE_COLUMNS
    ))?;
    let mut found = stmt.query(params![app.as_str(), chat.get(), number.get()])?;
    let Some(row) = found.next()? else {
        return Ok(None);
    };
    let customer = rows::user_id(&row.get::<_, String>(0)?)?;
    Ok(rows::message(app, chat, row, 1)?.map(|m| (m, customer)))
}

#[async_trait]
impl WebhookEndpoints for SqliteStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint, DomainError> {
        let endpoint = endpoint.clone();
        self.write("create_webhook_endpoint", move |c| {
            create_endpoint(c, &endpoint)
        })
        .await
    }

    async fn update_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
        update: &EndpointUpdate,
        now: Timestamp,
    ) -> Result<Endpoint, DomainError> {
        let (app, id, update) = (app.clone(), id.clone(), update.clone());
        self.write("update_webhook_endpoint", move |c| {
            update_endpoint(c, &app, &id, &update, now)
        })
        .await
    }

    async fn delete_endpoint(&self, app: &AppToken, id: &EndpointId) -> Result<bool, DomainError> {
        let (app, id) = (app.clone(), id.clone());
        self.write("delete_webhook_endpoint", move |c| {
            delete_endpoint(c, &app, &id)
        })
        .await
    }

    async fn endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
    ) -> Result<Option<Endpoint>, DomainError> {
        let (app, id) = (app.clone(), id.clone());
        self.read("webhook_endpoint", move |c| endpoint(c, &app, &id))
            .await
    }

    async fn endpoints(&self, app: &AppToken) -> Result<Vec<Endpoint>, DomainError> {
        let app = app.clone();
        self.read("webhook_endpoints", move |c| endpoints(c, &app))
            .await
    }

    async fn rotate_endpoint_secret(
        &self,
        app: &AppToken,
        id: &EndpointId,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Endpoint, DomainError> {
        let (app, id) = (app.clone(), id.clone());
        self.write("rotate_webhook_secret", move |c| {
            rotate_endpoint_secret(c, &app, &id, previous_expires_at, now)
        })
        .await
    }

    async fn deliveries(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> Result<Vec<Delivery>, DomainError> {
        let (app, endpoint, after) = (app.clone(), endpoint.clone(), after.cloned());
        self.read("webhook_deliveries", move |c| {
            deliveries(c, &app, &endpoint, after.as_ref(), limit)
        })
        .await
    }

    async fn redeliver(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery, DomainError> {
        let (app, endpoint, delivery) = (app.clone(), endpoint.clone(), delivery.clone());
        self.write("redeliver_webhook", move |c| {
            redeliver(c, &app, &endpoint, &delivery, now)
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery: &DeliveryId,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        let (delivery, outcome) = (delivery.clone(), outcome.clone());
        self.write("record_webhook_attempt", move |c| {
            record_attempt(c, &delivery, &outcome, retry_at, policy, now)
        })
        .await
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        skip: &[DeliveryId],
    ) -> Result<Vec<DueDelivery>, DomainError> {
        let skip = skip.to_vec();
        self.read("due_webhook_deliveries", move |c| {
            due_deliveries(c, now, limit, &skip)
        })
        .await
    }

    async fn next_due(&self, grace_ms: i64) -> Result<Option<Timestamp>, DomainError> {
        self.read("next_webhook_due", move |c| next_due(c, grace_ms))
            .await
    }

    async fn prune(&self, before: Timestamp, limit: u32) -> Result<u64, DomainError> {
        self.write("prune_webhooks", move |c| prune(c, before, limit))
            .await
    }

    async fn due_unseen(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<UnseenCheck>, DomainError> {
        self.read("due_unseen", move |c| due_unseen(c, before, limit))
            .await
    }

    async fn settle_unseen(
        &self,
        check: &UnseenCheck,
        send: bool,
        now: Timestamp,
    ) -> Result<(), DomainError> {
        let check = check.clone();
        self.write("settle_unseen", move |c| {
            settle_unseen(c, &check, send, now)
        })
        .await
    }
}
