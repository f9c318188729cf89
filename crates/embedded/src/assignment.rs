//! Assignment (see `chat_domain::assignment`): the chat's assignee and team, and the move
//! of its agents' unread between the assignees' counters, in one savepoint on the writer.

use chat_domain::{Assignment, Chat, DomainError, Role, Team, UnreadDelta, UserId};
use rusqlite::{Connection, params};

use crate::error::{Result, StoreError};

pub(crate) fn assign_chat(conn: &Connection, assignment: &Assignment) -> Result<Chat> {
    let scope = &assignment.scope;
    let Some(chat) = crate::unread::chat_marks(conn, scope)? else {
        return Err(DomainError::chat_not_found(scope.chat).into());
    };
    let assignee = assignment.assignee.as_ref().map(UserId::as_str);
    let current = crate::ops::chat(conn, scope)?
        .ok_or_else(|| StoreError::from(DomainError::chat_not_found(scope.chat)))?;
    let team_unchanged = match &assignment.team {
        None => true,
        Some(team) => *team == current.team,
    };
    if chat.assignee.as_deref() == assignee && team_unchanged {
        return Ok(current);
    }
    conn.prepare_cached(
        "UPDATE chats SET assignee_id = ?3, team = CASE WHEN ?4 THEN ?5 ELSE team END, \
         updated_at = MAX(updated_at + 1, ?6) WHERE app_id = ?1 AND number = ?2",
    )?
    .execute(params![
        chat.app_id,
        scope.chat.get(),
        assignee,
        assignment.team.is_some(),
        assignment
            .team
            .as_ref()
            .and_then(|t| t.as_ref().map(Team::as_str)),
        assignment.now.0,
    ])?;
    if chat.assignee.as_deref() != assignee {
        // The chat's agents' unread leaves the old assignee's counter for the new one's.
        let unread = UnreadDelta::of(chat.marks, Role::Agent);
        if let Some(old) = &chat.assignee {
            crate::unread::move_assignee_counter(conn, chat.app_id, old, unread.negated())?;
        }
        if let Some(new) = assignee {
            crate::unread::move_assignee_counter(conn, chat.app_id, new, unread)?;
        }
    }
    let updated = crate::ops::chat(conn, scope)?
        .ok_or_else(|| StoreError::from(DomainError::chat_not_found(scope.chat)))?;
    crate::webhooks::chat_updated(conn, &updated)?;
    Ok(updated)
}
