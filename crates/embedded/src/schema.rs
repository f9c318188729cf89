//! The schema and its migrations, applied at open. `PRAGMA user_version` records how
//! many migrations the file has seen.

use rusqlite::Connection;

use crate::error::{Result, StoreError};

/// Migration `i` brings a database from version `i` to version `i + 1`. Append only: a
/// released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: applications, chats, messages.
    r#"
    CREATE TABLE applications (
        id                INTEGER PRIMARY KEY,
        token             TEXT    NOT NULL UNIQUE,
        name              TEXT    NOT NULL,
        secret_generation INTEGER NOT NULL DEFAULT 1,
        chats_count       INTEGER NOT NULL DEFAULT 0,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE chats (
        app_id           INTEGER NOT NULL REFERENCES applications (id),
        number           INTEGER NOT NULL,
        customer_id      TEXT    NOT NULL,
        subject          TEXT,
        status           TEXT    NOT NULL CHECK (status IN ('OPEN', 'RESOLVED')),
        messages_count   INTEGER NOT NULL DEFAULT 0,
        last_message_at  INTEGER,
        last_activity_at INTEGER NOT NULL,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        PRIMARY KEY (app_id, number)
    ) STRICT, WITHOUT ROWID;

    -- The inbox: most recent activity first, ties by higher number first.
    CREATE INDEX chats_inbox ON chats (app_id, last_activity_at DESC, number DESC);
    CREATE INDEX chats_inbox_status
        ON chats (app_id, status, last_activity_at DESC, number DESC);
    CREATE INDEX chats_inbox_customer
        ON chats (app_id, customer_id, last_activity_at DESC, number DESC);

    CREATE TABLE messages (
        app_id            INTEGER NOT NULL,
        chat_number       INTEGER NOT NULL,
        number            INTEGER NOT NULL,
        body              TEXT    NOT NULL,
        sender_id         TEXT    NOT NULL,
        sender_role       TEXT    NOT NULL CHECK (sender_role IN ('AGENT', 'CUSTOMER')),
        client_message_id TEXT,
        created_at        INTEGER NOT NULL,
        edited_at         INTEGER,
        deleted           INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
        PRIMARY KEY (app_id, chat_number, number),
        FOREIGN KEY (app_id, chat_number) REFERENCES chats (app_id, number)
    ) STRICT, WITHOUT ROWID;

    CREATE UNIQUE INDEX messages_client_message_id
        ON messages (app_id, chat_number, client_message_id)
        WHERE client_message_id IS NOT NULL;
    "#,
    // 2: search. Every message gets a version that grows with each change (the search
    // index keeps the highest it has seen, so a stale change never overwrites a newer
    // one). The outbox is the durable change feed for the search indexer: a row is written
    // in the same transaction as the change of the message and deleted once indexed.
    // Messages written before this migration are queued for indexing.
    r#"
    ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

    CREATE TABLE search_outbox (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        app_id      INTEGER NOT NULL,
        chat_number INTEGER NOT NULL,
        number      INTEGER NOT NULL,
        kind        TEXT    NOT NULL CHECK (kind IN ('INSERT', 'MODIFY', 'REMOVE')),
        version     INTEGER NOT NULL
    ) STRICT;

    INSERT INTO search_outbox (app_id, chat_number, number, kind, version)
        SELECT app_id, chat_number, number, 'MODIFY', version FROM messages
        ORDER BY app_id, chat_number, number;
    "#,
    // 3: unread. Each chat keeps the customer's and the agents' team watermark; each agent
    // its own (agent_reads). Counters hold every reader side's badge: the agents' team of
    // an application (side 'AGENTS', customer_id '') and each customer. Two partial
    // indexes list the chats with something unread for either side (markAllRead).
    // History from before this migration counts as read.
    r#"
    ALTER TABLE chats ADD COLUMN customer_last_read INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chats ADD COLUMN agents_last_read INTEGER NOT NULL DEFAULT 0;
    UPDATE chats SET customer_last_read = messages_count, agents_last_read = messages_count;

    CREATE INDEX chats_unread_agents ON chats (app_id, number)
        WHERE messages_count > agents_last_read;
    CREATE INDEX chats_unread_customer ON chats (app_id, customer_id, number)
        WHERE messages_count > customer_last_read;

    CREATE TABLE agent_reads (
        app_id      INTEGER NOT NULL,
        chat_number INTEGER NOT NULL,
        agent_id    TEXT    NOT NULL,
        last_read   INTEGER NOT NULL,
        PRIMARY KEY (app_id, chat_number, agent_id),
        FOREIGN KEY (app_id, chat_number) REFERENCES chats (app_id, number)
    ) STRICT, WITHOUT ROWID;

    CREATE TABLE unread_counters (
        app_id       INTEGER NOT NULL REFERENCES applications (id),
        side         TEXT    NOT NULL CHECK (side IN ('AGENTS', 'CUSTOMER')),
        customer_id  TEXT    NOT NULL,
        total_unread INTEGER NOT NULL CHECK (total_unread >= 0),
        unread_chats INTEGER NOT NULL CHECK (unread_chats >= 0),
        PRIMARY KEY (app_id, side, customer_id)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 4: secret rotation's grace period (ms since the epoch; NULL: no previous secret).
    r#"
    ALTER TABLE applications ADD COLUMN previous_secret_expires_at INTEGER;
    "#,
    // 5: webhooks. Endpoints per application (the signing secret is derived, only its
    // generation is kept); events with their JSON body, queued in the transaction of the
    // change; one delivery per (event, endpoint) with its attempts; messages waiting for
    // their message.unseen check.
    r#"
    CREATE TABLE webhook_endpoints (
        id                         TEXT    PRIMARY KEY,
        app_id                     INTEGER NOT NULL REFERENCES applications (id),
        url                        TEXT    NOT NULL,
        events                     INTEGER NOT NULL,
        enabled                    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        disabled_reason            TEXT,
        secret_generation          INTEGER NOT NULL,
        previous_secret_expires_at INTEGER,
        consecutive_failures       INTEGER NOT NULL DEFAULT 0,
        failing_since              INTEGER,
        created_at                 INTEGER NOT NULL,
        updated_at                 INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_endpoints_app ON webhook_endpoints (app_id, enabled);

    CREATE TABLE webhook_events (
        id         TEXT    PRIMARY KEY,
        app_id     INTEGER NOT NULL REFERENCES applications (id),
        type       TEXT    NOT NULL,
        body       TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE webhook_deliveries (
        id                 TEXT    PRIMARY KEY,
        endpoint_id        TEXT    NOT NULL REFERENCES webhook_endpoints (id),
        event_id           TEXT    NOT NULL REFERENCES webhook_events (id),
        status             TEXT    NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
        attempts           INTEGER NOT NULL,
        last_response_code INTEGER,
        last_error         TEXT,
        last_attempt_at    INTEGER,
        next_attempt_at    INTEGER,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
        WHERE status = 'PENDING';
    CREATE INDEX webhook_deliveries_endpoint
        ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

    CREATE TABLE webhook_unseen (
        app_id      INTEGER NOT NULL,
        chat_number INTEGER NOT NULL,
        number      INTEGER NOT NULL,
        queued_at   INTEGER NOT NULL,
        PRIMARY KEY (app_id, chat_number, number)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX webhook_unseen_due ON webhook_unseen (queued_at);
    "#,
    // 6: attachments. One row per upload; `message_number` is set when it is attached (once).
    // Deleting a message releases its attachments in the same transaction (the trigger sets
    // `released_at` to 0, "released, time not yet noted"); the sweep notes the time and later
    // forgets the row and removes the file.
    r#"
    CREATE TABLE uploads (
        id             TEXT    PRIMARY KEY,
        app_id         INTEGER NOT NULL REFERENCES applications (id),
        chat_number    INTEGER NOT NULL,
        uploader_id    TEXT    NOT NULL,
        name           TEXT    NOT NULL,
        content_type   TEXT    NOT NULL,
        size           INTEGER NOT NULL CHECK (size > 0),
        created_at     INTEGER NOT NULL,
        message_number INTEGER,
        width          INTEGER,
        height         INTEGER,
        released_at    INTEGER,
        FOREIGN KEY (app_id, chat_number) REFERENCES chats (app_id, number)
    ) STRICT;
    CREATE INDEX uploads_message ON uploads (app_id, chat_number, message_number)
        WHERE message_number IS NOT NULL;
    CREATE INDEX uploads_pending ON uploads (created_at) WHERE message_number IS NULL;
    CREATE INDEX uploads_released ON uploads (released_at) WHERE released_at IS NOT NULL;

    CREATE TRIGGER uploads_release_on_delete AFTER UPDATE OF deleted ON messages
    WHEN NEW.deleted = 1 AND OLD.deleted = 0
    BEGIN
        UPDATE uploads SET released_at = 0
        WHERE app_id = NEW.app_id AND chat_number = NEW.chat_number
          AND message_number = NEW.number AND released_at IS NULL;
    END;
    "#,
    // 7: webhook retention. Finished deliveries are pruned after a while, and then events
    // no delivery refers to: that needs deliveries by event.
    r#"
    CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
    "#,
    // 8: assignment. A chat's assignee (an agent's id) and team; the inbox per assignee and
    // per team, with and without a status, in inbox order; each agent's unread counter over
    // the chats assigned to it ("my unread"), moved with the agents' team counter.
    r#"
    ALTER TABLE chats ADD COLUMN assignee_id TEXT;
    ALTER TABLE chats ADD COLUMN team TEXT;

    CREATE INDEX chats_inbox_assignee
        ON chats (app_id, assignee_id, last_activity_at DESC, number DESC);
    CREATE INDEX chats_inbox_assignee_status
        ON chats (app_id, assignee_id, status, last_activity_at DESC, number DESC);
    CREATE INDEX chats_inbox_team
        ON chats (app_id, team, last_activity_at DESC, number DESC) WHERE team IS NOT NULL;
    CREATE INDEX chats_inbox_team_status
        ON chats (app_id, team, status, last_activity_at DESC, number DESC)
        WHERE team IS NOT NULL;

    CREATE TABLE assignee_unread (
        app_id       INTEGER NOT NULL REFERENCES applications (id),
        agent_id     TEXT    NOT NULL,
        total_unread INTEGER NOT NULL CHECK (total_unread >= 0),
        unread_chats INTEGER NOT NULL CHECK (unread_chats >= 0),
        PRIMARY KEY (app_id, agent_id)
    ) STRICT, WITHOUT ROWID;
    "#,
    // 9: routing. The application's settings; each agent's load (its open assigned chats,
    // moved by a trigger in the write that changes a chat's status or assignee, counted once
    // here for the chats assigned before) and when routing last gave it a chat (its
    // round-robin turn).
    r#"
    ALTER TABLE applications ADD COLUMN routing_enabled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE applications ADD COLUMN routing_cap INTEGER NOT NULL DEFAULT 5;

    CREATE TABLE agent_routing (
        app_id     INTEGER NOT NULL REFERENCES applications (id),
        agent_id   TEXT    NOT NULL,
        open_chats INTEGER NOT NULL DEFAULT 0 CHECK (open_chats >= 0),
        routed_at  INTEGER,
        PRIMARY KEY (app_id, agent_id)
    ) STRICT, WITHOUT ROWID;

    INSERT INTO agent_routing (app_id, agent_id, open_chats)
        SELECT app_id, assignee_id, COUNT(*) FROM chats
        WHERE assignee_id IS NOT NULL AND status = 'OPEN'
        GROUP BY app_id, assignee_id;

    CREATE TRIGGER chats_agent_load AFTER UPDATE OF status, assignee_id ON chats
    WHEN OLD.status IS NOT NEW.status OR OLD.assignee_id IS NOT NEW.assignee_id
    BEGIN
        UPDATE agent_routing SET open_chats = open_chats - 1
        WHERE OLD.status = 'OPEN' AND OLD.assignee_id IS NOT NULL
          AND app_id = OLD.app_id AND agent_id = OLD.assignee_id;
        INSERT INTO agent_routing (app_id, agent_id, open_chats)
            SELECT NEW.app_id, NEW.assignee_id, 1
            WHERE NEW.status = 'OPEN' AND NEW.assignee_id IS NOT NULL
        ON CONFLICT (app_id, agent_id) DO UPDATE SET open_chats = open_chats + 1;
    END;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Brings the database up to [`SCHEMA_VERSION`], each migration in its own transaction.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    loop {
        let found = user_version(conn)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        let Some(sql) = usize::try_from(found).ok().and_then(|i| MIGRATIONS.get(i)) else {
            return Ok(());
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Re-read under the write lock: another process may have migrated meanwhile.
        let applied = (|| -> Result<bool> {
            if user_version(conn)? != found {
                return Ok(false);
            }
            conn.execute_batch(sql)?;
            conn.pragma_update(None, "user_version", found + 1)?;
            Ok(true)
        })();
        match applied {
            Ok(applied) => {
                conn.execute_batch("COMMIT")?;
                if applied {
                    tracing::info!(version = found + 1, "applied schema migration");
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

/// SQLite's plan for `sql`, one detail per line: what the tests that pin an index read.
#[cfg(test)]
pub(crate) fn query_plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    let mut rows = stmt.raw_query();
    let mut lines = Vec::new();
    while let Some(row) = rows.next().expect("plan row") {
        lines.push(row.get::<_, String>(3).expect("plan detail"));
    }
    lines.join("\n")
}
