//! Assignment (see `chat_domain::assignment`): the chat's assignee and team, its `assignee`
//! and `team` index keys, and the move of its agents' unread between the assignees'
//! counters, in one transaction.

use chat_domain::{Assignment, Chat, Role, Timestamp, UnreadDelta};

use super::conditional_write::{Step, Verdict};
use super::unread::{assignee_unchanged, team_unchanged, watermarks_unchanged};
use super::{DynamoStore, chat_not_found, require_scope, update_expression};
use crate::error::Result as StoreResult;
use crate::expr::Expr;
use crate::items::{self, number_attr, string_attr};
use crate::table::{self, attr};

impl DynamoStore {
    /// Query (the chat and its last message) + TransactWriteItems { the chat's assignee,
    /// team and index keys if its count, watermarks, status, assignee and team are as
    /// read; the old assignee's counter -unread; the new one's +unread }: 2 requests, 1
    /// when nothing changes. `updatedAt` moves strictly forward, so a send that read the
    /// chat before fails its condition and reads again.
    pub(super) async fn assign(&self, assignment: &Assignment) -> StoreResult<Chat> {
        let scope = &assignment.scope;
        let key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        self.conditional_write("the chat's assignment")
            .taking_turns_on(table::chat_pk(&scope.app, scope.chat))
            .run(
                move |_| async move {
                    let Some(chat) = self.chat_with_last_message(scope).await? else {
                        return Err(chat_not_found(scope));
                    };
                    let team = match &assignment.team {
                        None => chat.team.clone(),
                        Some(team) => team.clone(),
                    };
                    if chat.assignee == assignment.assignee && chat.team == team {
                        return Ok(Step::Done(chat));
                    }
                    let updated_at = assignment.now.0.max(chat.updated_at.0 + 1);
                    let activity = items::activity_sk(chat.last_activity_at, chat.number)?;
                    let mut expr = Expr::new();
                    let mut set = vec![
                        expr.equals(attr::UPDATED_AT, "now", number_attr(updated_at)),
                        expr.equals(
                            attr::GSI4PK,
                            "assigneePk",
                            string_attr(table::assignee_pk(
                                &scope.app,
                                chat.status,
                                assignment.assignee.as_ref(),
                            )),
                        ),
                    ];
                    let mut remove = Vec::new();
                    match &assignment.assignee {
                        Some(agent) => set.push(expr.equals(
                            attr::ASSIGNEE_ID,
                            "newAssignee",
                            string_attr(agent.as_str()),
                        )),
                        None => remove.push(expr.name(attr::ASSIGNEE_ID)),
                    }
                    match &team {
                        Some(team) => {
                            set.push(expr.equals(
                                attr::TEAM,
                                "newTeam",
                                string_attr(team.as_str()),
                            ));
                            set.push(expr.equals(
                                attr::GSI5PK,
                                "teamPk",
                                string_attr(table::team_pk(&scope.app, chat.status, team)),
                            ));
                            set.push(expr.equals(attr::GSI5SK, "activity", string_attr(activity)));
                        }
                        None => {
                            remove.push(expr.name(attr::TEAM));
                            remove.push(expr.name(attr::GSI5PK));
                            remove.push(expr.name(attr::GSI5SK));
                        }
                    }
                    let update = update_expression(&set, &remove);
                    let mut condition = format!(
                        "{} AND {} AND {} AND {} AND {} AND {}",
                        expr.equals(
                            attr::MESSAGES_COUNT,
                            "count",
                            number_attr(chat.messages_count)
                        ),
                        expr.equals(attr::STATUS, "status", string_attr(chat.status.as_str())),
                        expr.equals(attr::UPDATED_AT, "seen", number_attr(chat.updated_at.0)),
                        watermarks_unchanged(&mut expr, chat.read_marks()),
                        assignee_unchanged(&mut expr, chat.assignee.as_ref()),
                        team_unchanged(&mut expr, chat.team.as_ref()),
                    );
                    require_scope(&mut condition, &mut expr, scope);
                    let mut writes = vec![self.update(key(), &update, Some(&condition), &expr)?];
                    if chat.assignee != assignment.assignee {
                        let unread = UnreadDelta::of(chat.read_marks(), Role::Agent);
                        if let Some(old) = &chat.assignee {
                            let pk = table::assignee_unread_pk(&scope.app, old);
                            writes.extend(self.counter_write(pk, unread.negated())?);
                        }
                        if let Some(new) = &assignment.assignee {
                            let pk = table::assignee_unread_pk(&scope.app, new);
                            writes.extend(self.counter_write(pk, unread)?);
                        }
                    }
                    let mut assigned = chat;
                    assigned.assignee = assignment.assignee.clone();
                    assigned.team = team;
                    assigned.updated_at = Timestamp(updated_at);
                    Ok(Step::Transact(writes, assigned, ()))
                },
                // The chat moved (a send, a read, another assignment, a status change) or
                // is gone: read again (a gone chat is NotFound then).
                move |cancelled, ()| async move {
                    Ok(if cancelled.any_failed() {
                        Verdict::Retry
                    } else {
                        Verdict::RetryLater
                    })
                },
            )
            .await
    }
}
