//! Routing (see `chat_domain::routing`). An agent's load and its last routing time are in
//! `agent_routing`; the load is moved by a trigger in the write that changes a chat's status
//! or assignee (schema migration 9). A routing write checks both and assigns in one
//! savepoint on the writer.

use chat_domain::{
    AgentLoad, AppToken, Assignment, Chat, ChatStatus, DomainError, Route, Routed, Timestamp,
    UserId,
};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::rows;

/// The agent's open assigned chats and its last routing time.
fn load(conn: &Connection, app_id: i64, agent: &str) -> Result<(u32, Option<Timestamp>)> {
    let found: Option<(i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT open_chats, routed_at FROM agent_routing WHERE app_id = ?1 AND agent_id = ?2",
        )?
        .query_row(params![app_id, agent], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (open, routed_at) = found.unwrap_or((0, None));
    Ok((rows::count(open, "open chats")?, routed_at.map(Timestamp)))
}

fn app_id(conn: &Connection, app: &AppToken) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM applications WHERE token = ?1")?
        .query_row([app.as_str()], |row| row.get(0))
        .optional()?)
}

pub(crate) fn agent_loads(
    conn: &Connection,
    app: &AppToken,
    agents: &[UserId],
) -> Result<Vec<AgentLoad>> {
    let Some(app_id) = app_id(conn, app)? else {
        return Ok(Vec::new());
    };
    agents
        .iter()
        .map(|agent| {
            let (open_chats, routed_at) = load(conn, app_id, agent.as_str())?;
            Ok(AgentLoad {
                agent: agent.clone(),
                open_chats,
                routed_at,
            })
        })
        .collect()
}

/// On the writer: the chat must be open and unassigned, the agent below the cap and not
/// routed to since `seen_routed_at`.
pub(crate) fn route_chat(conn: &Connection, route: &Route) -> Result<Routed> {
    let Some(chat) = crate::ops::chat(conn, &route.scope)? else {
        return Ok(Routed::NotWaiting);
    };
    if chat.assignee.is_some() || chat.status != ChatStatus::Open {
        return Ok(Routed::NotWaiting);
    }
    let app_id = app_id(conn, &route.scope.app)?
        .ok_or_else(|| StoreError::from(DomainError::chat_not_found(route.scope.chat)))?;
    let (open, routed_at) = load(conn, app_id, route.agent.as_str())?;
    if open >= route.cap || routed_at != route.seen_routed_at {
        return Ok(Routed::AgentBusy);
    }
    let assigned = crate::assignment::assign_chat(
        conn,
        &Assignment {
            scope: route.scope.clone(),
            assignee: Some(route.agent.clone()),
            team: None,
            now: route.now,
        },
    )?;
    conn.prepare_cached(
        "INSERT INTO agent_routing (app_id, agent_id, routed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (app_id, agent_id) DO UPDATE SET routed_at = excluded.routed_at",
    )?
    .execute(params![app_id, route.agent.as_str(), route.routed_at().0])?;
    Ok(Routed::Assigned(Box::new(assigned)))
}

pub(crate) fn waiting_chats(conn: &Connection, app: &AppToken, limit: u32) -> Result<Vec<Chat>> {
    let sql = format!(
        "{} WHERE c.app_id = (SELECT id FROM applications WHERE token = ?1) \
         AND c.assignee_id IS NULL AND c.status = 'OPEN' \
         ORDER BY c.last_activity_at, c.number LIMIT ?2",
        rows::CHAT_SELECT.replacen(
            "FROM chats c ",
            "FROM chats c INDEXED BY chats_inbox_assignee_status ",
            1
        )
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = stmt.query(params![app.as_str(), i64::from(limit)])?;
    let mut chats = Vec::new();
    while let Some(row) = found.next()? {
        chats.push(rows::chat(app, row)?);
    }
    Ok(chats)
}
