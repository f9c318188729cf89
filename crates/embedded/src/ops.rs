//! The operations as synchronous functions of a connection. Writes run on the writer
//! thread inside a savepoint of the current group-commit transaction; reads on a read
//! connection. Every statement is prepared once per connection (`prepare_cached`).

use chat_domain::webhooks::EventType;
use chat_domain::{
    AppName, AppToken, Application, ApplicationUpdate, AssigneeFilter, ChangeKind, ChangeRecord,
    Chat, ChatNumber, ChatQuery, ChatScope, ChatStatus, ChatUpdate, ClientMessageId, DocKey,
    DomainError, Message, MessageBody, MessageChange, MessageNumber, MessageRange, NewApplication,
    NewChat, NewMessage, RoutingSettings, Sent, Subject, Team, Timestamp, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::rows;

/// `?1` app token, `?2` chat number, `?3` customer or NULL: the chat as the scope sees it.
pub(crate) const SCOPE: &str = "c.app_id = (SELECT id FROM applications WHERE token = ?1) \
     AND c.number = ?2 AND (?3 IS NULL OR c.customer_id = ?3)";

fn customer(scope: &ChatScope) -> Option<&str> {
    scope.customer.as_ref().map(UserId::as_str)
}

fn app_not_found(token: &AppToken) -> StoreError {
    DomainError::application_not_found(token).into()
}

// ---- applications -----------------------------------------------------------------------

/// The columns [`application_row`] reads, in its order (a macro, so that `concat!` builds
/// each statement at compile time).
macro_rules! application_columns {
    () => {
        "name, secret_generation, chats_count, created_at, updated_at, previous_secret_expires_at, \
         routing_enabled, routing_cap"
    };
}

pub(crate) fn create_application(conn: &Connection, new: &NewApplication) -> Result<Application> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO applications \
             (token, name, secret_generation, chats_count, created_at, updated_at) \
             VALUES (?1, ?2, 1, 0, ?3, ?3) ON CONFLICT (token) DO NOTHING RETURNING id",
        )?
        .query_row(
            params![new.token.as_str(), new.name.as_str(), new.now.0],
            |row| row.get::<_, i64>(0),
        )
        .optional()?;
    if inserted.is_none() {
        return Err(
            DomainError::Conflict(format!("application {} already exists", new.token)).into(),
        );
    }
    Ok(Application {
        token: new.token.clone(),
        name: new.name.clone(),
        secret_generation: 1,
        previous_secret_expires_at: None,
        chats_count: 0,
        routing: RoutingSettings::default(),
        created_at: new.now,
        updated_at: new.now,
    })
}

pub(crate) fn update_application(
    conn: &Connection,
    token: &AppToken,
    update: &ApplicationUpdate,
) -> Result<Application> {
    let mut stmt = conn.prepare_cached(concat!(
        "UPDATE applications SET name = COALESCE(?2, name), \
         routing_enabled = COALESCE(?3, routing_enabled), routing_cap = COALESCE(?4, routing_cap), \
         updated_at = ?5 WHERE token = ?1 RETURNING ",
        application_columns!()
    ))?;
    let mut rows = stmt.query(params![
        token.as_str(),
        update.name.as_ref().map(AppName::as_str),
        update.routing.map(|r| r.enabled),
        update.routing.map(|r| r.max_open_chats),
        update.now.0
    ])?;
    match rows.next()? {
        Some(row) => application_row(token, row),
        None => Err(app_not_found(token)),
    }
}

pub(crate) fn rotate_application_secret(
    conn: &Connection,
    token: &AppToken,
    previous_expires_at: Timestamp,
    now: Timestamp,
) -> Result<Application> {
    let mut stmt = conn.prepare_cached(concat!(
        "UPDATE applications SET secret_generation = secret_generation + 1, \
         previous_secret_expires_at = ?2, updated_at = ?3 WHERE token = ?1 RETURNING ",
        application_columns!()
    ))?;
    let mut rows = stmt.query(params![token.as_str(), previous_expires_at.0, now.0])?;
    match rows.next()? {
        Some(row) => application_row(token, row),
        None => Err(app_not_found(token)),
    }
}

pub(crate) fn application(conn: &Connection, token: &AppToken) -> Result<Option<Application>> {
    let mut stmt = conn.prepare_cached(concat!(
        "SELECT ",
        application_columns!(),
        " FROM applications WHERE token = ?1"
    ))?;
    let mut rows = stmt.query([token.as_str()])?;
    rows.next()?
        .map(|row| application_row(token, row))
        .transpose()
}

fn application_row(token: &AppToken, row: &rusqlite::Row<'_>) -> Result<Application> {
    Ok(Application {
        token: token.clone(),
        name: rows::app_name(&row.get::<_, String>(0)?)?,
        secret_generation: rows::count(row.get(1)?, "secret generation")?,
        previous_secret_expires_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
        chats_count: rows::count(row.get(2)?, "chats count")?,
        routing: RoutingSettings {
            enabled: row.get(6)?,
            max_open_chats: rows::count(row.get(7)?, "routing cap")?,
        },
        created_at: Timestamp(row.get(3)?),
        updated_at: Timestamp(row.get(4)?),
    })
}

// ---- chats --------------------------------------------------------------------------------

pub(crate) fn create_chat(conn: &Connection, new: &NewChat) -> Result<Chat> {
    let allocated = conn
        .prepare_cached(
            "UPDATE applications SET chats_count = chats_count + 1 WHERE token = ?1 \
             RETURNING id, chats_count",
        )?
        .query_row([new.app.as_str()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    let Some((app_id, number)) = allocated else {
        return Err(app_not_found(&new.app));
    };
    // The savepoint rollback undoes the increment, so a full application consumes nothing.
    let number = ChatNumber::new(number).map_err(|_| DomainError::chat_numbers_exhausted())?;
    conn.prepare_cached(
        "INSERT INTO chats (app_id, number, customer_id, subject, status, messages_count, \
         last_message_at, last_activity_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'OPEN', 0, NULL, ?5, ?5, ?5)",
    )?
    .execute(params![
        app_id,
        number.get(),
        new.customer_id.as_str(),
        new.subject.as_ref().map(Subject::as_str),
        new.now.0,
    ])?;
    let chat = new.opened_as(number);
    crate::webhooks::chat_created(conn, &chat)?;
    Ok(chat)
}

pub(crate) fn update_chat(
    conn: &Connection,
    scope: &ChatScope,
    update: &ChatUpdate,
) -> Result<Chat> {
    let changed = conn
        .prepare_cached(&format!(
            "UPDATE chats AS c SET \
             subject = CASE WHEN ?4 THEN ?5 ELSE subject END, \
             status = COALESCE(?6, status), \
             updated_at = ?7 \
             WHERE {SCOPE} RETURNING number"
        ))?
        .query_row(
            params![
                scope.app.as_str(),
                scope.chat.get(),
                customer(scope),
                update.subject.is_some(),
                update
                    .subject
                    .as_ref()
                    .and_then(|s| s.as_ref().map(Subject::as_str)),
                update.status.map(ChatStatus::as_str),
                update.now.0,
            ],
            |row| row.get::<_, i64>(0),
        )
        .optional()?;
    if changed.is_none() {
        return Err(DomainError::chat_not_found(scope.chat).into());
    }
    let updated = chat(conn, scope)?
        .ok_or_else(|| StoreError::from(DomainError::chat_not_found(scope.chat)))?;
    crate::webhooks::chat_updated(conn, &updated)?;
    Ok(updated)
}

pub(crate) fn chat(conn: &Connection, scope: &ChatScope) -> Result<Option<Chat>> {
    let mut stmt = conn.prepare_cached(&format!("{} WHERE {SCOPE}", rows::CHAT_SELECT))?;
    let mut found = stmt.query(params![
        scope.app.as_str(),
        scope.chat.get(),
        customer(scope)
    ])?;
    found
        .next()?
        .map(|row| rows::chat(&scope.app, row))
        .transpose()
}

/// Which assignee condition an inbox query has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AssigneeCondition {
    Any,
    Unassigned,
    Agent,
}

/// The inbox query with a condition only for the filters present: one SQL text (and one
/// cached statement) per combination, so that the planner picks the matching index (named
/// with `INDEXED BY` for the assignee and team filters: without statistics the planner may
/// prefer walking the whole inbox in order and filtering).
/// Placeholders: the token, then customer, assignee, team, status, cursor (two) as
/// present, then limit.
fn chats_sql(
    customer: bool,
    assignee: AssigneeCondition,
    team: bool,
    status: bool,
    after: bool,
) -> String {
    let index = match (assignee, team, status) {
        (AssigneeCondition::Any, false, _) => None,
        (AssigneeCondition::Any, true, false) => Some("chats_inbox_team"),
        (AssigneeCondition::Any, true, true) => Some("chats_inbox_team_status"),
        (_, _, false) => Some("chats_inbox_assignee"),
        (_, _, true) => Some("chats_inbox_assignee_status"),
    };
    let select = match index {
        Some(index) => rows::CHAT_SELECT.replacen(
            "FROM chats c ",
            &format!("FROM chats c INDEXED BY {index} "),
            1,
        ),
        None => rows::CHAT_SELECT.to_owned(),
    };
    let mut sql =
        format!("{select} WHERE c.app_id = (SELECT id FROM applications WHERE token = ?1)");
    let mut n = 1;
    if customer {
        n += 1;
        sql.push_str(&format!(" AND c.customer_id = ?{n}"));
    }
    match assignee {
        AssigneeCondition::Any => {}
        AssigneeCondition::Unassigned => sql.push_str(" AND c.assignee_id IS NULL"),
        AssigneeCondition::Agent => {
            n += 1;
            sql.push_str(&format!(" AND c.assignee_id = ?{n}"));
        }
    }
    if team {
        n += 1;
        sql.push_str(&format!(" AND c.team = ?{n}"));
    }
    if status {
        n += 1;
        sql.push_str(&format!(" AND c.status = ?{n}"));
    }
    if after {
        n += 2;
        sql.push_str(&format!(
            " AND (c.last_activity_at, c.number) < (?{}, ?{n})",
            n - 1
        ));
    }
    n += 1;
    sql.push_str(&format!(
        " ORDER BY c.last_activity_at DESC, c.number DESC LIMIT ?{n}"
    ));
    sql
}

pub(crate) fn chats(conn: &Connection, query: &ChatQuery) -> Result<Vec<Chat>> {
    let token = query.app.as_str();
    let customer = query.customer.as_ref().map(UserId::as_str);
    let (assignee, agent) = match &query.filter.assignee {
        AssigneeFilter::Any => (AssigneeCondition::Any, None),
        AssigneeFilter::Unassigned => (AssigneeCondition::Unassigned, None),
        AssigneeFilter::Agent(id) => (AssigneeCondition::Agent, Some(id.as_str())),
    };
    let team = query.filter.team.as_ref().map(Team::as_str);
    let status = query.status.map(ChatStatus::as_str);
    let after = query.after.map(|a| (a.last_activity_at.0, a.number.get()));
    let limit = i64::from(query.limit);

    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&token];
    if let Some(customer) = &customer {
        values.push(customer);
    }
    if let Some(agent) = &agent {
        values.push(agent);
    }
    if let Some(team) = &team {
        values.push(team);
    }
    if let Some(status) = &status {
        values.push(status);
    }
    if let Some((at, number)) = &after {
        values.push(at);
        values.push(number);
    }
    values.push(&limit);

    let sql = chats_sql(
        customer.is_some(),
        assignee,
        team.is_some(),
        status.is_some(),
        after.is_some(),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt.query(rusqlite::params_from_iter(values))?;
    let mut chats = Vec::new();
    while let Some(row) = found.next()? {
        chats.push(rows::chat(&query.app, row)?);
    }
    Ok(chats)
}

// ---- messages -----------------------------------------------------------------------------

/// The visible chat's internal application id, and the message `number` in it if any.
/// `None`: the scope does not see the chat. `?4` is matched against `match_column`.
fn chat_and_message(
    conn: &Connection,
    scope: &ChatScope,
    match_column: &'static str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<(i64, Option<Message>)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.app_id, {cols} FROM chats c LEFT JOIN messages m \
         ON m.app_id = c.app_id AND m.chat_number = c.number AND m.{match_column} = ?4 \
         WHERE {SCOPE}",
        cols = rows::MESSAGE_COLUMNS
    ))?;
    let mut found = stmt.query(params![
        scope.app.as_str(),
        scope.chat.get(),
        customer(scope),
        value
    ])?;
    match found.next()? {
        None => Ok(None),
        Some(row) => Ok(Some((
            row.get(0)?,
            rows::message(&scope.app, scope.chat, row, 1)?,
        ))),
    }
}

pub(crate) fn send_message(conn: &Connection, new: &NewMessage) -> Result<Sent> {
    let sent = insert_message(conn, new)?;
    if sent.created {
        crate::webhooks::message_created(conn, &sent.message)?;
    }
    Ok(sent)
}

/// The send without its webhook events, which the caller queues once the message is
/// complete (with its attachments: `crate::attachments`).
pub(crate) fn insert_message(conn: &Connection, new: &NewMessage) -> Result<Sent> {
    let scope = &new.scope;
    if let Some(id) = &new.client_message_id {
        // Idempotency first: a retry must not allocate a number.
        match chat_and_message(conn, scope, "client_message_id", &id.as_str())? {
            None => return Err(DomainError::chat_not_found(scope.chat).into()),
            Some((_, Some(message))) => {
                return Ok(Sent {
                    message,
                    created: false,
                });
            }
            Some((_, None)) => {}
        }
    }
    // The chat as the scope sees it, with its marks before the send (the writer is alone,
    // so they stay as read); the update below then needs only its key.
    let Some(marks) = crate::unread::chat_marks(conn, scope)? else {
        return Err(DomainError::chat_not_found(scope.chat).into());
    };
    let app_id = marks.app_id;
    let (number, created_at) = conn
        .prepare_cached(
            // Times never go backwards along the numbers: a send whose clock reading is
            // older than the chat's last activity (a concurrent send numbered first) takes
            // the later time.
            "UPDATE chats SET messages_count = messages_count + 1, \
             last_message_at = MAX(last_activity_at, ?3), \
             last_activity_at = MAX(last_activity_at, ?3), updated_at = MAX(updated_at, ?3) \
             WHERE app_id = ?1 AND number = ?2 RETURNING messages_count, last_message_at",
        )?
        .query_row(params![app_id, scope.chat.get(), new.now.0], |row| {
            Ok((row.get::<_, i64>(0)?, Timestamp(row.get::<_, i64>(1)?)))
        })?;
    let number =
        MessageNumber::new(number).map_err(|_| DomainError::message_numbers_exhausted())?;
    conn.prepare_cached(
        "INSERT INTO messages (app_id, chat_number, number, body, sender_id, sender_role, \
         client_message_id, created_at, edited_at, deleted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, 0)",
    )?
    .execute(params![
        app_id,
        scope.chat.get(),
        number.get(),
        new.body.as_str(),
        new.sender_id.as_str(),
        new.sender_role.as_str(),
        new.client_message_id.as_ref().map(ClientMessageId::as_str),
        created_at.0,
    ])?;
    outbox(conn, app_id, scope.chat, number, ChangeKind::Insert, 1)?;
    crate::unread::sent(conn, &marks, scope.chat, &new.sender_id, new.sender_role)?;
    Ok(Sent {
        message: new.sent_as(number, created_at),
        created: true,
    })
}

pub(crate) fn message(
    conn: &Connection,
    scope: &ChatScope,
    number: MessageNumber,
) -> Result<Option<Message>> {
    Ok(chat_and_message(conn, scope, "number", &number.get())?.and_then(|(_, m)| m))
}

/// The internal application id of the chat the scope sees; NotFound otherwise.
fn visible_app_id(conn: &Connection, scope: &ChatScope) -> Result<i64> {
    conn.prepare_cached(&format!("SELECT c.app_id FROM chats c WHERE {SCOPE}"))?
        .query_row(
            params![scope.app.as_str(), scope.chat.get(), customer(scope)],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .ok_or_else(|| StoreError::from(DomainError::chat_not_found(scope.chat)))
}

pub(crate) fn messages(
    conn: &Connection,
    scope: &ChatScope,
    range: &MessageRange,
) -> Result<Vec<Message>> {
    let app_id = visible_app_id(conn, scope)?;
    let order = if range.newest_first { "DESC" } else { "ASC" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM messages m \
         WHERE m.app_id = ?1 AND m.chat_number = ?2 AND m.number > ?3 AND m.number < ?4 \
         ORDER BY m.number {order} LIMIT ?5",
        cols = rows::MESSAGE_COLUMNS
    ))?;
    let mut found = stmt.query(params![
        app_id,
        scope.chat.get(),
        range.after.map_or(0, i64::from),
        range.before.map_or(i64::MAX, i64::from),
        i64::from(range.limit),
    ])?;
    let mut messages = Vec::new();
    while let Some(row) = found.next()? {
        if let Some(message) = rows::message(&scope.app, scope.chat, row, 0)? {
            messages.push(message);
        }
    }
    Ok(messages)
}

/// Messages of the visible chat with these numbers, in any order.
pub(crate) fn messages_by_number(
    conn: &Connection,
    scope: &ChatScope,
    numbers: &[MessageNumber],
) -> Result<Vec<Message>> {
    let app_id = visible_app_id(conn, scope)?;
    let list = serde_json::to_string(&numbers.iter().map(|n| n.get()).collect::<Vec<_>>())
        .map_err(|e| StoreError::corrupt("message numbers", e))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {cols} FROM messages m \
         WHERE m.app_id = ?1 AND m.chat_number = ?2 \
         AND m.number IN (SELECT value FROM json_each(?3))",
        cols = rows::MESSAGE_COLUMNS
    ))?;
    let mut found = stmt.query(params![app_id, scope.chat.get(), list])?;
    let mut messages = Vec::with_capacity(numbers.len());
    while let Some(row) = found.next()? {
        if let Some(message) = rows::message(&scope.app, scope.chat, row, 0)? {
            messages.push(message);
        }
    }
    Ok(messages)
}

/// The message a change applies to, after the NotFound and Forbidden rules.
fn changeable(conn: &Connection, change: &MessageChange, verb: &str) -> Result<(i64, Message)> {
    let (app_id, message) =
        match chat_and_message(conn, &change.scope, "number", &change.number.get())? {
            None => return Err(DomainError::chat_not_found(change.scope.chat).into()),
            Some((_, None)) => return Err(DomainError::message_not_found(change.number).into()),
            Some((app_id, Some(message))) => (app_id, message),
        };
    if let Some(only) = &change.only_sender
        && *only != message.sender_id
    {
        return Err(DomainError::Forbidden(format!(
            "only the sender may {verb} message {}",
            change.number
        ))
        .into());
    }
    Ok((app_id, message))
}

pub(crate) fn edit_message(
    conn: &Connection,
    change: &MessageChange,
    body: &MessageBody,
) -> Result<Message> {
    let (app_id, mut message) = changeable(conn, change, "edit")?;
    if message.deleted {
        return Err(DomainError::Conflict(format!(
            "message {} was deleted and cannot be edited",
            change.number
        ))
        .into());
    }
    let version: i64 = conn
        .prepare_cached(
            "UPDATE messages SET body = ?4, edited_at = ?5, version = version + 1 \
             WHERE app_id = ?1 AND chat_number = ?2 AND number = ?3 RETURNING version",
        )?
        .query_row(
            params![
                app_id,
                change.scope.chat.get(),
                change.number.get(),
                body.as_str(),
                change.now.0,
            ],
            |row| row.get(0),
        )?;
    outbox(
        conn,
        app_id,
        change.scope.chat,
        change.number,
        ChangeKind::Modify,
        version,
    )?;
    message.body = body.as_str().to_owned();
    message.edited_at = Some(change.now);
    crate::webhooks::message_changed(conn, EventType::MessageEdited, &message, change.now)?;
    Ok(message)
}

pub(crate) fn delete_message(conn: &Connection, change: &MessageChange) -> Result<Message> {
    let (app_id, mut message) = changeable(conn, change, "delete")?;
    if message.deleted {
        return Ok(message);
    }
    let version: i64 = conn
        .prepare_cached(
            "UPDATE messages SET body = '', deleted = 1, version = version + 1 \
             WHERE app_id = ?1 AND chat_number = ?2 AND number = ?3 RETURNING version",
        )?
        .query_row(
            params![app_id, change.scope.chat.get(), change.number.get()],
            |row| row.get(0),
        )?;
    outbox(
        conn,
        app_id,
        change.scope.chat,
        change.number,
        ChangeKind::Modify,
        version,
    )?;
    message.body = String::new();
    message.deleted = true;
    crate::webhooks::message_changed(conn, EventType::MessageDeleted, &message, change.now)?;
    Ok(message)
}

// ---- the search outbox ----------------------------------------------------------------------

/// Queues a change of a message for the search indexer, in the transaction of the change.
fn outbox(
    conn: &Connection,
    app_id: i64,
    chat: ChatNumber,
    number: MessageNumber,
    kind: ChangeKind,
    version: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO search_outbox (app_id, chat_number, number, kind, version) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        app_id,
        chat.get(),
        number.get(),
        kind.as_str(),
        version
    ])?;
    Ok(())
}

/// The oldest `limit` outbox rows as change records. The new image is the message as it
/// is now (at least as new as the change; the version says which state it is), its body
/// followed by the names of its attached files, which are searchable as its words.
pub(crate) fn outbox_batch(conn: &Connection, limit: u32) -> Result<Vec<ChangeRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT o.seq, o.kind, o.version, a.token, o.chat_number, o.number, m.version, {cols}, \
         {names} \
         FROM search_outbox o JOIN applications a ON a.id = o.app_id \
         LEFT JOIN messages m ON m.app_id = o.app_id AND m.chat_number = o.chat_number \
         AND m.number = o.number ORDER BY o.seq LIMIT ?1",
        cols = rows::MESSAGE_COLUMNS,
        names = crate::attachments::FILE_NAMES_OF_OUTBOX_ROW,
    ))?;
    let mut found = stmt.query([i64::from(limit)])?;
    let mut records = Vec::new();
    while let Some(row) = found.next()? {
        let seq: i64 = row.get(0)?;
        let kind = ChangeKind::parse(&row.get::<_, String>(1)?)
            .map_err(|e| StoreError::corrupt("outbox kind", e))?;
        let queued_version: i64 = row.get(2)?;
        let app = AppToken::parse(&row.get::<_, String>(3)?)
            .map_err(|e| StoreError::corrupt("application token", e))?;
        let chat = rows::chat_number(row.get(4)?)?;
        let number = rows::message_number(row.get(5)?)?;
        let current_version: Option<i64> = row.get(6)?;
        let mut new = rows::message(&app, chat, row, 7)?;
        if let (Some(message), Some(names)) = (&mut new, row.get::<_, Option<String>>(15)?) {
            message.body = crate::attachments::searchable_text(&message.body, &names);
        }
        let (kind, version) = match (&new, current_version) {
            (Some(_), Some(version)) => (kind, version),
            // The message is gone: remove it from the index.
            _ => (ChangeKind::Remove, queued_version.saturating_add(1)),
        };
        records.push(ChangeRecord {
            sequence: seq.to_string(),
            kind,
            key: DocKey { app, chat, number },
            old: None,
            new,
            version: u64::try_from(version).map_err(|e| StoreError::corrupt("version", e))?,
        });
    }
    Ok(records)
}

pub(crate) fn outbox_ack(conn: &Connection, sequences: &[i64]) -> Result<usize> {
    let mut stmt = conn.prepare_cached("DELETE FROM search_outbox WHERE seq = ?1")?;
    let mut deleted = 0;
    for seq in sequences {
        deleted += stmt.execute([seq])?;
    }
    Ok(deleted)
}

pub(crate) fn outbox_len(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM search_outbox")?
        .query_row([], |row| row.get(0))?;
    Ok(n as u64)
}

/// Where [`enqueue_reindex`] continues: after this (app id, chat, number).
pub(crate) type ReindexPosition = (i64, i64, i64);

/// Which messages a reindex covers, resolved to internal ids.
pub(crate) fn reindex_scope(
    conn: &Connection,
    app: Option<&AppToken>,
    chat: Option<ChatNumber>,
) -> Result<(Option<i64>, Option<i64>)> {
    let Some(app) = app else {
        return Ok((None, None));
    };
    let app_id: i64 = conn
        .prepare_cached("SELECT id FROM applications WHERE token = ?1")?
        .query_row([app.as_str()], |row| row.get(0))
        .optional()?
        .ok_or_else(|| app_not_found(app))?;
    if let Some(chat) = chat {
        let exists = conn
            .prepare_cached("SELECT 1 FROM chats WHERE app_id = ?1 AND number = ?2")?
            .query_row(params![app_id, chat.get()], |_| Ok(()))
            .optional()?;
        if exists.is_none() {
            return Err(DomainError::chat_not_found(chat).into());
        }
    }
    Ok((Some(app_id), chat.map(|c| i64::from(c.get()))))
}

/// Queues up to `limit` messages of the scope after `after` for indexing at their current
/// version; returns how many and where to continue (`None`: done).
pub(crate) fn enqueue_reindex(
    conn: &Connection,
    app_id: Option<i64>,
    chat: Option<i64>,
    after: ReindexPosition,
    limit: u32,
) -> Result<(u64, Option<ReindexPosition>)> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO search_outbox (app_id, chat_number, number, kind, version) \
         SELECT app_id, chat_number, number, 'MODIFY', version FROM messages \
         WHERE (?1 IS NULL OR app_id = ?1) AND (?2 IS NULL OR chat_number = ?2) \
         AND (app_id, chat_number, number) > (?3, ?4, ?5) \
         ORDER BY app_id, chat_number, number LIMIT ?6 \
         RETURNING app_id, chat_number, number",
    )?;
    let mut rows = stmt.query(params![
        app_id,
        chat,
        after.0,
        after.1,
        after.2,
        i64::from(limit)
    ])?;
    let mut count = 0u64;
    let mut last = after;
    while let Some(row) = rows.next()? {
        count += 1;
        last = last.max((row.get(0)?, row.get(1)?, row.get(2)?));
    }
    Ok((count, (count == u64::from(limit)).then_some(last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::schema::query_plan as plan;

    #[test]
    fn every_inbox_query_walks_an_index_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&conn).unwrap();
        for customer in [false, true] {
            for status in [false, true] {
                for after in [false, true] {
                    let sql = chats_sql(customer, AssigneeCondition::Any, false, status, after);
                    let plan = plan(&conn, &sql);
                    let index = match (customer, status) {
                        (true, _) => "chats_inbox_customer",
                        (false, true) => "chats_inbox_status",
                        (false, false) => "chats_inbox ",
                    };
                    assert!(plan.contains(index), "{customer} {status} {after}:\n{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "sorts in memory:\n{plan}");
                    assert!(!plan.contains("SCAN"), "scans a table:\n{plan}");
                }
            }
        }
    }

    #[test]
    fn every_assignee_and_team_query_walks_its_index_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&conn).unwrap();
        let filters = [
            (AssigneeCondition::Unassigned, false, "chats_inbox_assignee"),
            (AssigneeCondition::Agent, false, "chats_inbox_assignee"),
            (AssigneeCondition::Any, true, "chats_inbox_team"),
        ];
        for (assignee, team, index) in filters {
            for status in [false, true] {
                for after in [false, true] {
                    let plan = plan(&conn, &chats_sql(false, assignee, team, status, after));
                    let index = if status {
                        format!("{index}_status")
                    } else {
                        format!("{index} ")
                    };
                    assert!(plan.contains(&index), "{assignee:?} {status}:\n{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "sorts in memory:\n{plan}");
                    assert!(!plan.contains("SCAN"), "scans a table:\n{plan}");
                }
            }
        }
    }

    #[test]
    fn the_idempotency_check_uses_the_client_message_id_index() {
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&conn).unwrap();
        let sql = format!(
            "SELECT c.app_id FROM chats c LEFT JOIN messages m \
             ON m.app_id = c.app_id AND m.chat_number = c.number AND m.client_message_id = ?4 \
             WHERE {SCOPE}"
        );
        let plan = plan(&conn, &sql);
        assert!(plan.contains("messages_client_message_id"), "{plan}");
        assert!(!plan.contains("SCAN"), "{plan}");
    }
}
