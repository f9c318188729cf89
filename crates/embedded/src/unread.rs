//! Watermarks and unread counters (see `chat_domain::unread`). Every function that moves a
//! chat's marks runs on the writer, inside the savepoint of the write that moves them, and
//! moves the counters by exactly `CounterChange::between` the marks before and after.

use chat_domain::{
    ChatNumber, ChatScope, CounterChange, DomainError, MarkRead, ReadMarks, ReadReceipt, Role,
    UnreadDelta, UnreadSummary, UserId, UserIdentity,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::ops::SCOPE;
use crate::rows;

const AGENTS: &str = "AGENTS";
const CUSTOMER: &str = "CUSTOMER";

/// A chat's place in the tables and its marks.
pub(crate) struct ChatMarks {
    pub app_id: i64,
    pub customer_id: String,
    pub marks: ReadMarks,
    /// The agent the chat is assigned to, if any.
    pub assignee: Option<String>,
}

/// The chat as the scope sees it, with its marks.
pub(crate) fn chat_marks(conn: &Connection, scope: &ChatScope) -> Result<Option<ChatMarks>> {
    conn.prepare_cached(&format!(
        "SELECT c.app_id, c.customer_id, c.messages_count, c.customer_last_read, \
         c.agents_last_read, c.assignee_id FROM chats c WHERE {SCOPE}"
    ))?
    .query_row(
        params![
            scope.app.as_str(),
            scope.chat.get(),
            scope.customer.as_ref().map(UserId::as_str)
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        },
    )
    .optional()?
    .map(|(app_id, customer_id, last, customer, agents, assignee)| {
        Ok(ChatMarks {
            app_id,
            customer_id,
            assignee,
            marks: ReadMarks {
                last: rows::count(last, "messages count")?,
                customer: rows::count(customer, "customer watermark")?,
                agents: rows::count(agents, "agents watermark")?,
            },
        })
    })
    .transpose()
}

/// Writes the chat's watermarks as `after` and moves both counters from `before`.
pub(crate) fn moved(
    conn: &Connection,
    chat: &ChatMarks,
    number: ChatNumber,
    after: ReadMarks,
) -> Result<()> {
    let before = chat.marks;
    if (before.customer, before.agents) != (after.customer, after.agents) {
        conn.prepare_cached(
            "UPDATE chats SET customer_last_read = ?3, agents_last_read = ?4 \
             WHERE app_id = ?1 AND number = ?2",
        )?
        .execute(params![
            chat.app_id,
            number.get(),
            after.customer,
            after.agents
        ])?;
    }
    let change = CounterChange::between(before, after);
    for (side, customer_id, delta) in [
        (AGENTS, "", change.agents),
        (CUSTOMER, chat.customer_id.as_str(), change.customer),
    ] {
        if delta.is_zero() {
            continue;
        }
        // Update, else insert: a counter is born positive (a CHECK refuses a negative
        // one, which would mean the counters had drifted).
        let updated = conn
            .prepare_cached(
                "UPDATE unread_counters SET total_unread = total_unread + ?4, \
                 unread_chats = unread_chats + ?5 \
                 WHERE app_id = ?1 AND side = ?2 AND customer_id = ?3",
            )?
            .execute(params![
                chat.app_id,
                side,
                customer_id,
                delta.messages,
                delta.chats
            ])?;
        if updated == 0 {
            conn.prepare_cached(
                "INSERT INTO unread_counters \
                 (app_id, side, customer_id, total_unread, unread_chats) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                chat.app_id,
                side,
                customer_id,
                delta.messages,
                delta.chats
            ])?;
        }
    }
    if let Some(assignee) = &chat.assignee {
        move_assignee_counter(conn, chat.app_id, assignee, change.agents)?;
    }
    Ok(())
}

/// Adds `delta` to the "my unread" counter of `agent` (update, else insert: a counter is
/// born positive; a CHECK refuses a negative one).
pub(crate) fn move_assignee_counter(
    conn: &Connection,
    app_id: i64,
    agent: &str,
    delta: UnreadDelta,
) -> Result<()> {
    if delta.is_zero() {
        return Ok(());
    }
    let updated = conn
        .prepare_cached(
            "UPDATE assignee_unread SET total_unread = total_unread + ?3, \
             unread_chats = unread_chats + ?4 WHERE app_id = ?1 AND agent_id = ?2",
        )?
        .execute(params![app_id, agent, delta.messages, delta.chats])?;
    if updated == 0 {
        conn.prepare_cached(
            "INSERT INTO assignee_unread (app_id, agent_id, total_unread, unread_chats) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![app_id, agent, delta.messages, delta.chats])?;
    }
    Ok(())
}

/// Moves an agent's own watermark forward to `up_to`; returns it afterwards.
fn agent_read(
    conn: &Connection,
    app_id: i64,
    chat: ChatNumber,
    agent: &UserId,
    up_to: u32,
) -> Result<u32> {
    let own: i64 = conn
        .prepare_cached(
            "INSERT INTO agent_reads (app_id, chat_number, agent_id, last_read) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (app_id, chat_number, agent_id) \
             DO UPDATE SET last_read = MAX(last_read, excluded.last_read) RETURNING last_read",
        )?
        .query_row(params![app_id, chat.get(), agent.as_str(), up_to], |row| {
            row.get(0)
        })?;
    rows::count(own, "agent watermark")
}

/// After a send numbered `marks.last + 1` by `sender`: the sender has read it.
pub(crate) fn sent(
    conn: &Connection,
    chat: &ChatMarks,
    number: ChatNumber,
    sender: &UserId,
    role: Role,
) -> Result<()> {
    let after = chat.marks.after_send(role);
    if role == Role::Agent {
        agent_read(conn, chat.app_id, number, sender, after.last)?;
    }
    moved(conn, chat, number, after)
}

pub(crate) fn mark_chat_read(conn: &Connection, mark: &MarkRead) -> Result<ReadReceipt> {
    let scope = &mark.scope;
    let Some(chat) = chat_marks(conn, scope)? else {
        return Err(DomainError::chat_not_found(scope.chat).into());
    };
    let up_to = match mark.up_to {
        Some(n) if n.get() > chat.marks.last => {
            return Err(DomainError::bad_input(format!(
                "upTo {n} is beyond the chat's last message ({})",
                chat.marks.last
            ))
            .into());
        }
        Some(n) => n.get(),
        None => chat.marks.last,
    };
    let role = mark.reader.role;
    let after = chat.marks.after_read(role, up_to);
    let own = match role {
        Role::Customer => after.customer,
        Role::Agent => agent_read(conn, chat.app_id, scope.chat, &mark.reader.user_id, up_to)?,
    };
    moved(conn, &chat, scope.chat, after)?;
    Ok(ReadReceipt {
        app: scope.app.clone(),
        chat_number: scope.chat,
        reader_id: mark.reader.user_id.clone(),
        reader_role: role,
        last_read_number: own,
        unread_count: after.unread_for(role),
    })
}

pub(crate) fn mark_chats_read(
    conn: &Connection,
    reader: &UserIdentity,
    chats: &[ChatNumber],
) -> Result<()> {
    for chat in chats {
        let mark = MarkRead {
            scope: reader.scope(*chat),
            reader: reader.clone(),
            up_to: None,
        };
        match mark_chat_read(conn, &mark) {
            // Gone from the reader's view meanwhile: nothing to mark.
            Err(crate::error::StoreError::Domain(DomainError::NotFound(_))) => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

fn side(reader: &UserIdentity) -> (&'static str, &str) {
    match reader.role {
        Role::Agent => (AGENTS, ""),
        Role::Customer => (CUSTOMER, reader.user_id.as_str()),
    }
}

/// One primary-key lookup (an agent: two, its team's counter and its own "my unread").
pub(crate) fn unread_summary(conn: &Connection, reader: &UserIdentity) -> Result<UnreadSummary> {
    let (side, customer_id) = side(reader);
    let found = conn
        .prepare_cached(
            "SELECT total_unread, unread_chats FROM unread_counters \
             WHERE app_id = (SELECT id FROM applications WHERE token = ?1) \
             AND side = ?2 AND customer_id = ?3",
        )?
        .query_row(params![reader.app.as_str(), side, customer_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?;
    let (total, chats) = found.unwrap_or_default();
    let counter =
        |raw: i64, what| u64::try_from(raw).map_err(|e| crate::error::StoreError::corrupt(what, e));
    let (mine_total, mine_chats) = match reader.role {
        Role::Customer => (0, 0),
        Role::Agent => conn
            .prepare_cached(
                "SELECT total_unread, unread_chats FROM assignee_unread \
                 WHERE app_id = (SELECT id FROM applications WHERE token = ?1) \
                 AND agent_id = ?2",
            )?
            .query_row(
                params![reader.app.as_str(), reader.user_id.as_str()],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()?
            .unwrap_or_default(),
    };
    Ok(UnreadSummary {
        app: reader.app.clone(),
        total_unread: counter(total, "unread counter")?,
        unread_chats: counter(chats, "unread chats counter")?,
        assigned_unread: counter(mine_total, "assignee unread counter")?,
        assigned_unread_chats: counter(mine_chats, "assignee unread chats counter")?,
    })
}

// `INDEXED BY`: without statistics the planner prefers the primary key, which walks every
// chat of the application; the partial index holds only the unread ones.
pub(crate) const UNREAD_CHATS_AGENTS: &str = "SELECT c.number FROM chats c \
     INDEXED BY chats_unread_agents \
     WHERE c.app_id = (SELECT id FROM applications WHERE token = ?1) \
     AND c.messages_count > c.agents_last_read AND c.number > ?2 \
     ORDER BY c.number LIMIT ?3";

pub(crate) const UNREAD_CHATS_CUSTOMER: &str = "SELECT c.number FROM chats c \
     INDEXED BY chats_unread_customer \
     WHERE c.app_id = (SELECT id FROM applications WHERE token = ?1) \
     AND c.customer_id = ?4 AND c.messages_count > c.customer_last_read AND c.number > ?2 \
     ORDER BY c.number LIMIT ?3";

/// Walks the partial index of the reader's side: only unread chats are read.
pub(crate) fn unread_chats(
    conn: &Connection,
    reader: &UserIdentity,
    after: Option<ChatNumber>,
    limit: u32,
) -> Result<Vec<ChatNumber>> {
    let after = after.map_or(0, ChatNumber::get);
    let token = reader.app.as_str();
    let mut stmt;
    let mut found = match reader.role {
        Role::Agent => {
            stmt = conn.prepare_cached(UNREAD_CHATS_AGENTS)?;
            stmt.query(params![token, after, limit])?
        }
        Role::Customer => {
            stmt = conn.prepare_cached(UNREAD_CHATS_CUSTOMER)?;
            stmt.query(params![token, after, limit, reader.user_id.as_str()])?
        }
    };
    let mut chats = Vec::new();
    while let Some(row) = found.next()? {
        chats.push(rows::chat_number(row.get(0)?)?);
    }
    Ok(chats)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::schema::query_plan as plan;

    #[test]
    fn unread_chats_walk_the_partial_indexes_of_unread_chats_only() {
        let conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&conn).unwrap();
        for (sql, index) in [
            (UNREAD_CHATS_AGENTS, "chats_unread_agents"),
            (UNREAD_CHATS_CUSTOMER, "chats_unread_customer"),
        ] {
            let plan = plan(&conn, sql);
            assert!(plan.contains(index), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "sorts in memory:\n{plan}");
            assert!(!plan.contains("SCAN"), "scans:\n{plan}");
        }
    }
}
