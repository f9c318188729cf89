//! Assignment and routing (see `chat_domain::assignment`, `chat_domain::routing`): the
//! chat's assignee and team, its `assignee` and `team` index keys, the move of its agents'
//! unread between the assignees' counters and of its place in the assignees' loads, in one
//! transaction.

use aws_sdk_dynamodb::types::TransactWriteItem;
use chat_domain::{
    AgentLoad, AppToken, Assignment, Chat, ChatStatus, Role, Route, Routed, Team, Timestamp,
    UnreadDelta, UserId,
};

use super::conditional_write::{Step, Verdict};
use super::unread::{assignee_unchanged, team_unchanged, watermarks_unchanged};
use super::{DynamoStore, chat_not_found, require_scope, update_expression};
use crate::error::Result as StoreResult;
use crate::expr::Expr;
use crate::items::{self, number_attr, string_attr};
use crate::table::{self, attr, item_type};

impl DynamoStore {
    /// `ADD delta` to the agent's open chats; for a routing write, only while they are
    /// below its cap and the agent was last routed to at the time it read, and the routing
    /// time moves.
    pub(super) fn load_write(
        &self,
        app: &AppToken,
        agent: &UserId,
        delta: i64,
        guard: Option<&Route>,
    ) -> StoreResult<TransactWriteItem> {
        let mut expr = Expr::new();
        let mut set = vec![expr.equals(attr::TYPE, "loadType", string_attr(item_type::AGENT_LOAD))];
        let mut condition = None;
        if let Some(guard) = guard {
            set.push(expr.equals(
                attr::ROUTED_AT,
                "routedAt",
                number_attr(guard.routed_at().0),
            ));
            let open = expr.name(attr::OPEN_CHATS);
            let routed = expr.name(attr::ROUTED_AT);
            let below_cap = format!(
                "(attribute_not_exists({open}) OR {open} < {})",
                expr.value("cap", number_attr(guard.cap))
            );
            let unrouted = match guard.seen_routed_at {
                None => format!("attribute_not_exists({routed})"),
                Some(seen) => format!("{routed} = {}", expr.value("seen", number_attr(seen.0))),
            };
            condition = Some(format!("{below_cap} AND {unrouted}"));
        }
        let update = format!(
            "SET {} ADD {} {}",
            set.join(", "),
            expr.name(attr::OPEN_CHATS),
            expr.value("delta", number_attr(delta))
        );
        self.update(
            items::key(table::agent_load_pk(app, agent), table::AGENT_LOAD_SK),
            &update,
            condition.as_deref(),
            &expr,
        )
    }

    /// The writes that give `chat` (as read) this assignee and team: the chat item first
    /// (if its count, watermarks, status, assignee and team are as read), then the new
    /// assignee's load (guarded when routing), the old one's, and the unread counters.
    fn assignment_writes(
        &self,
        chat: Chat,
        assignee: Option<&UserId>,
        team: Option<Team>,
        now: Timestamp,
        guard: Option<&Route>,
    ) -> StoreResult<(Vec<TransactWriteItem>, Chat)> {
        let app = &chat.app;
        let updated_at = now.0.max(chat.updated_at.0 + 1);
        let activity = items::activity_sk(chat.last_activity_at, chat.number)?;
        let mut expr = Expr::new();
        let mut set = vec![
            expr.equals(attr::UPDATED_AT, "now", number_attr(updated_at)),
            expr.equals(
                attr::GSI4PK,
                "assigneePk",
                string_attr(table::assignee_pk(app, chat.status, assignee)),
            ),
        ];
        let mut remove = Vec::new();
        match assignee {
            Some(agent) => set.push(expr.equals(
                attr::ASSIGNEE_ID,
                "newAssignee",
                string_attr(agent.as_str()),
            )),
            None => remove.push(expr.name(attr::ASSIGNEE_ID)),
        }
        match &team {
            Some(team) => {
                set.push(expr.equals(attr::TEAM, "newTeam", string_attr(team.as_str())));
                set.push(expr.equals(
                    attr::GSI5PK,
                    "teamPk",
                    string_attr(table::team_pk(app, chat.status, team)),
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
        let scope = chat_domain::ChatScope {
            app: app.clone(),
            chat: chat.number,
            customer: None,
        };
        require_scope(&mut condition, &mut expr, &scope);
        let key = items::key(table::chat_pk(app, chat.number), table::CHAT_SK);
        let mut writes = vec![self.update(key, &update, Some(&condition), &expr)?];
        if chat.assignee.as_ref() != assignee {
            if chat.status == ChatStatus::Open {
                if let Some(new) = assignee {
                    writes.push(self.load_write(app, new, 1, guard)?);
                }
                if let Some(old) = &chat.assignee {
                    writes.push(self.load_write(app, old, -1, None)?);
                }
            }
            let unread = UnreadDelta::of(chat.read_marks(), Role::Agent);
            if let Some(old) = &chat.assignee {
                let pk = table::assignee_unread_pk(app, old);
                writes.extend(self.counter_write(pk, unread.negated())?);
            }
            if let Some(new) = assignee {
                let pk = table::assignee_unread_pk(app, new);
                writes.extend(self.counter_write(pk, unread)?);
            }
        }
        let mut assigned = chat;
        assigned.assignee = assignee.cloned();
        assigned.team = team;
        assigned.updated_at = Timestamp(updated_at);
        Ok((writes, assigned))
    }

    /// Query (the chat and its last message) + TransactWriteItems { the chat's assignee,
    /// team and index keys if its count, watermarks, status, assignee and team are as
    /// read; the assignees' loads (an open chat) and unread counters }: 2 requests, 1 when
    /// nothing changes. `updatedAt` moves strictly forward, so a send that read the chat
    /// before fails its condition and reads again.
    pub(super) async fn assign(&self, assignment: &Assignment) -> StoreResult<Chat> {
        let scope = &assignment.scope;
        self.conditional_write("the chat's assignment")
            .taking_turns_on(table::chat_pk(&scope.app, scope.chat))
            .run(
                move |_| async move {
                    let Some(chat) = self.chat_with_last_message(scope).await? else {
                        return Err(chat_not_found(scope));
                    };
                    if !super::visible_to(scope, &chat.customer_id) {
                        return Err(chat_not_found(scope));
                    }
                    let team = match &assignment.team {
                        None => chat.team.clone(),
                        Some(team) => team.clone(),
                    };
                    if chat.assignee == assignment.assignee && chat.team == team {
                        return Ok(Step::Done(chat));
                    }
                    let (writes, assigned) = self.assignment_writes(
                        chat,
                        assignment.assignee.as_ref(),
                        team,
                        assignment.now,
                        None,
                    )?;
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

    /// Query (the chat) + TransactWriteItems { the chat's assignment if it is still open
    /// and unassigned and as read; the agent's load +1 if below the cap and not routed to
    /// since read; its unread counter }: 2 requests.
    pub(super) async fn route(&self, route: &Route) -> StoreResult<Routed> {
        let scope = &route.scope;
        self.conditional_write("routing the chat")
            .taking_turns_on(table::chat_pk(&scope.app, scope.chat))
            .run(
                move |_| async move {
                    let Some(chat) = self.chat_with_last_message(scope).await? else {
                        return Ok(Step::Done(Routed::NotWaiting));
                    };
                    if chat.assignee.is_some() || chat.status != ChatStatus::Open {
                        return Ok(Step::Done(Routed::NotWaiting));
                    }
                    let team = chat.team.clone();
                    let (writes, assigned) = self.assignment_writes(
                        chat,
                        Some(&route.agent),
                        team,
                        route.now,
                        Some(route),
                    )?;
                    Ok(Step::Transact(
                        writes,
                        Routed::Assigned(Box::new(assigned)),
                        (),
                    ))
                },
                // The agent's load (position 1) failed: it is full or was just routed to.
                // The chat moved: read it again (assigned meanwhile: not waiting).
                move |cancelled, ()| async move {
                    Ok(if cancelled.failed(1) && !cancelled.failed(0) {
                        Verdict::Done(Routed::AgentBusy)
                    } else if cancelled.failed(0) {
                        Verdict::Retry
                    } else {
                        Verdict::RetryLater
                    })
                },
            )
            .await
    }

    /// BatchGetItem of the agents' load items (consistent), 100 keys per request.
    pub(super) async fn loads_of(
        &self,
        app: &AppToken,
        agents: &[UserId],
    ) -> StoreResult<Vec<AgentLoad>> {
        let mut loads = Vec::with_capacity(agents.len());
        for chunk in agents.chunks(super::BATCH_GET_MAX_KEYS) {
            // Answers come in any order: each is matched to its agent by its key.
            let by_pk: std::collections::HashMap<String, &UserId> = chunk
                .iter()
                .map(|agent| (table::agent_load_pk(app, agent), agent))
                .collect();
            let keys = by_pk
                .keys()
                .map(|pk| items::key(pk.clone(), table::AGENT_LOAD_SK))
                .collect();
            for item in self.batch_get(keys).await? {
                if let Some(agent) = by_pk.get(items::string(&item, attr::PK)?) {
                    loads.push(items::agent_load(agent, &item)?);
                }
            }
        }
        Ok(loads)
    }

    /// One Query of the `assignee` index's unassigned open partition, oldest activity
    /// first, then the chats' last messages.
    pub(super) async fn waiting(&self, app: &AppToken, limit: u32) -> StoreResult<Vec<Chat>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut expr = Expr::new();
        let condition = expr.equals(
            attr::GSI4PK,
            "pk",
            string_attr(table::assignee_pk(app, ChatStatus::Open, None)),
        );
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(table::ASSIGNEE_INDEX)
            .key_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| crate::error::StoreError::request("Query", e))?;
        let chats = out
            .items
            .unwrap_or_default()
            .iter()
            .map(items::chat)
            .collect::<StoreResult<Vec<_>>>()?;
        self.attach_last_messages(chats).await
    }
}
