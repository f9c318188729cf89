//! Unread counts: read watermarks on the chat item (and an agent's own in its `READ#`
//! item), counters moved in the transaction that moves the watermarks, and the sparse
//! `unread` index of the chats the agents have not fully read.

use aws_sdk_dynamodb::types::TransactWriteItem;
use chat_domain::{
    AppToken, Chat, ChatNumber, ChatScope, ChatStatus, CounterChange, DomainError, MarkRead,
    ReadMarks, ReadReceipt, Role, Team, UnreadDelta, UnreadSummary, UserId, UserIdentity,
};
use futures::future::try_join_all;

use super::conditional_write::{Step, Verdict};
use super::{DynamoStore, chat_not_found, domain, require_scope, update_expression, visible_to};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, number_attr, string_attr};
use crate::table::{self, attr, item_type};

/// The chat item's attribute holding `role`'s watermark.
pub(super) fn watermark_attr(role: Role) -> &'static str {
    match role {
        Role::Customer => attr::CUSTOMER_LAST_READ,
        Role::Agent => attr::AGENTS_LAST_READ,
    }
}

/// The chat's watermarks are still those the counter deltas were computed from (an absent
/// attribute counts as 0, as [`items::chat`] reads it): a concurrent send or read that moved
/// one makes this write fail and start again, instead of counting twice. The caller also
/// conditions on `messagesCount`, which fails for a missing chat.
pub(super) fn watermarks_unchanged(expr: &mut Expr, marks: ReadMarks) -> String {
    let mut unchanged = |attribute: &str, label: &str, value: u32| {
        let equals = expr.equals(attribute, label, number_attr(value));
        if value == 0 {
            format!(
                "(attribute_not_exists({}) OR {equals})",
                expr.name(attribute)
            )
        } else {
            equals
        }
    };
    format!(
        "{} AND {}",
        unchanged(attr::CUSTOMER_LAST_READ, "customerRead", marks.customer),
        unchanged(attr::AGENTS_LAST_READ, "agentsRead", marks.agents),
    )
}

/// The chat's assignee is still `assignee` (the counter it moves is that agent's).
pub(super) fn assignee_unchanged(expr: &mut Expr, assignee: Option<&UserId>) -> String {
    match assignee {
        None => format!("attribute_not_exists({})", expr.name(attr::ASSIGNEE_ID)),
        Some(agent) => expr.equals(attr::ASSIGNEE_ID, "assignee", string_attr(agent.as_str())),
    }
}

/// The chat's team is still `team`.
pub(super) fn team_unchanged(expr: &mut Expr, team: Option<&Team>) -> String {
    match team {
        None => format!("attribute_not_exists({})", expr.name(attr::TEAM)),
        Some(team) => expr.equals(attr::TEAM, "team", string_attr(team.as_str())),
    }
}

/// The SET and REMOVE clauses that keep a chat in the `unread` index exactly while its
/// agents have something unread: only a change across 0 touches the index keys.
pub(super) fn unread_index_clauses(
    expr: &mut Expr,
    chat: &Chat,
    before: ReadMarks,
    after: ReadMarks,
) -> (Vec<String>, Vec<String>) {
    let unread = |marks: ReadMarks| marks.unread_for(Role::Agent) > 0;
    match (unread(before), unread(after)) {
        (false, true) => {
            let (pk, sk) = items::unread_index_keys(chat);
            let set = vec![
                expr.equals(attr::GSI3PK, "unreadPk", string_attr(pk)),
                expr.equals(attr::GSI3SK, "unreadSk", string_attr(sk)),
            ];
            (set, Vec::new())
        }
        (true, false) => (
            Vec::new(),
            vec![expr.name(attr::GSI3PK), expr.name(attr::GSI3SK)],
        ),
        _ => (Vec::new(), Vec::new()),
    }
}

impl DynamoStore {
    /// 1 read of the chat and the reader's own watermark (GetItem for a customer,
    /// BatchGetItem for an agent) + 1 TransactWriteItems { the chat's watermark (and its
    /// `unread` index keys) if the count and watermarks are as read; an agent's own
    /// watermark if still lower; the counters' deltas }: 2 requests, 1 when nothing moves.
    pub(super) async fn move_read_marks(&self, mark: &MarkRead) -> StoreResult<ReadReceipt> {
        let scope = &mark.scope;
        let reader = &mark.reader;
        let role = reader.role;
        let chat_key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        self.conditional_write("the chat's read marks")
            // Sends and reads of one chat in this process take turns, as sends do.
            .taking_turns_on(table::chat_pk(&scope.app, scope.chat))
            .run(
                move |_| async move {
                    let Some((chat, own_before)) =
                        self.chat_and_own_watermark(scope, reader).await?
                    else {
                        return Err(chat_not_found(scope));
                    };
                    let last = chat.messages_count;
                    let up_to = match mark.up_to {
                        None => last,
                        Some(up_to) if up_to.get() <= last => up_to.get(),
                        Some(up_to) => {
                            return Err(domain(DomainError::bad_input(format!(
                                "upTo {up_to} is beyond the last message ({last}) of chat {}",
                                scope.chat
                            ))));
                        }
                    };
                    let before = chat.read_marks();
                    let after = before.after_read(role, up_to);
                    let own_after = own_before.max(up_to);
                    let receipt = ReadReceipt {
                        app: scope.app.clone(),
                        chat_number: scope.chat,
                        reader_id: reader.user_id.clone(),
                        reader_role: role,
                        last_read_number: own_after,
                        unread_count: after.unread_for(role),
                    };

                    let mut writes = Vec::new();
                    if after != before {
                        let mut expr = Expr::new();
                        let mut set = vec![expr.equals(
                            watermark_attr(role),
                            "read",
                            number_attr(after.watermark(role)),
                        )];
                        let (set_index, remove_index) =
                            unread_index_clauses(&mut expr, &chat, before, after);
                        set.extend(set_index);
                        let update = update_expression(&set, &remove_index);
                        let mut condition = format!(
                            "{} AND {} AND {}",
                            expr.equals(attr::MESSAGES_COUNT, "count", number_attr(last)),
                            watermarks_unchanged(&mut expr, before),
                            assignee_unchanged(&mut expr, chat.assignee.as_ref()),
                        );
                        require_scope(&mut condition, &mut expr, scope);
                        writes.push(self.update(chat_key(), &update, Some(&condition), &expr)?);
                        writes.extend(
                            self.counter_writes(&chat, CounterChange::between(before, after))?,
                        );
                    }
                    if role == Role::Agent && own_after > own_before {
                        // Only ever forward, whoever else moves it meanwhile.
                        let mut expr = Expr::new();
                        let condition = format!(
                            "attribute_not_exists({}) OR {} < {}",
                            expr.name(attr::PK),
                            expr.name(attr::LAST_READ),
                            expr.value("read", number_attr(own_after)),
                        );
                        let own = items::agent_read_item(
                            &scope.app,
                            scope.chat,
                            &reader.user_id,
                            own_after,
                        );
                        writes.push(self.put(own, Some(&condition), &expr)?);
                    }
                    if writes.is_empty() {
                        return Ok(Step::Done(receipt));
                    }
                    Ok(Step::Transact(writes, receipt, ()))
                },
                // A failed condition means another writer moved the chat or the watermark:
                // read again at once. Otherwise wait for the other transaction to clear.
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

    /// 1 request: an agent's team counter is 1 BatchGetItem of its shards (summed; a shard
    /// never written counts 0), a customer's 1 GetItem. Both consistent.
    pub(super) async fn sum_unread_counters(
        &self,
        reader: &UserIdentity,
    ) -> StoreResult<UnreadSummary> {
        let app = &reader.app;
        let counters = match reader.role {
            Role::Agent => {
                let mut keys: Vec<_> = (0..table::UNREAD_SHARDS)
                    .map(|shard| items::key(table::team_unread_pk(app, shard), table::UNREAD_SK))
                    .collect();
                // "My unread" in the same request.
                keys.push(items::key(
                    table::assignee_unread_pk(app, &reader.user_id),
                    table::UNREAD_SK,
                ));
                self.batch_get(keys).await?
            }
            Role::Customer => {
                let pk = table::customer_unread_pk(app, &reader.user_id);
                self.get(items::key(pk, table::UNREAD_SK))
                    .await?
                    .into_iter()
                    .collect()
            }
        };
        let mut summary = UnreadSummary {
            app: app.clone(),
            total_unread: 0,
            unread_chats: 0,
            assigned_unread: 0,
            assigned_unread_chats: 0,
        };
        let mine = table::assignee_unread_pk(app, &reader.user_id);
        for counter in &counters {
            let (messages, chats) = items::unread_counts(counter)?;
            if reader.role == Role::Agent && items::string(counter, attr::PK)? == mine {
                summary.assigned_unread += messages;
                summary.assigned_unread_chats += chats;
            } else {
                summary.total_unread += messages;
                summary.unread_chats += chats;
            }
        }
        Ok(summary)
    }

    /// An agent: 1 Query per `unread` index partition (4, in parallel, ascending from
    /// `after`, each at most `limit`), merged by number. A customer: 1 Query per status of
    /// the `customer` index (all its chats, which are few), keeping those with something
    /// unread for it.
    pub(super) async fn unread_chats_page(
        &self,
        reader: &UserIdentity,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> StoreResult<Vec<ChatNumber>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut numbers: Vec<ChatNumber> = match reader.role {
            Role::Agent => try_join_all(
                (0..table::UNREAD_SHARDS)
                    .map(|shard| self.unread_index_page(&reader.app, shard, after, limit)),
            )
            .await?
            .into_iter()
            .flatten()
            .collect(),
            Role::Customer => {
                let statuses = [ChatStatus::Open, ChatStatus::Resolved];
                let pages = try_join_all(statuses.map(|status| {
                    let pk = table::customer_pk(&reader.app, status, &reader.user_id);
                    self.query_index(
                        table::CUSTOMER_INDEX,
                        attr::GSI2PK,
                        attr::GSI2SK,
                        pk,
                        None,
                        None,
                    )
                }))
                .await?;
                let mut numbers = Vec::new();
                for (_, item) in pages.into_iter().flatten() {
                    let chat = items::chat(&item)?;
                    if chat.unread_for(Role::Customer) > 0 && after.is_none_or(|a| chat.number > a)
                    {
                        numbers.push(chat.number);
                    }
                }
                numbers
            }
        };
        numbers.sort_unstable();
        numbers.dedup();
        numbers.truncate(limit as usize);
        Ok(numbers)
    }

    /// The counter updates a change of one chat's marks makes, in the same transaction:
    /// `ADD` to the agents' counter shard of the chat, to its customer's counter and to its
    /// assignee's ("my unread") if it has one, each skipped when its delta is zero. Unconditional: atomic increments need no read, and
    /// the chat's own condition already guards the marks the deltas came from.
    pub(super) fn counter_writes(
        &self,
        chat: &Chat,
        change: CounterChange,
    ) -> StoreResult<Vec<TransactWriteItem>> {
        let counters = [
            (
                table::team_unread_pk(&chat.app, table::unread_shard(chat.number)),
                change.agents,
            ),
            (
                table::customer_unread_pk(&chat.app, &chat.customer_id),
                change.customer,
            ),
        ];
        let mut counters = counters.to_vec();
        if let Some(assignee) = &chat.assignee {
            counters.push((
                table::assignee_unread_pk(&chat.app, assignee),
                change.agents,
            ));
        }
        let mut writes = Vec::new();
        for (pk, delta) in counters {
            writes.extend(self.counter_write(pk, delta)?);
        }
        Ok(writes)
    }

    /// `ADD delta` to one counter item (nothing when the delta is zero).
    pub(super) fn counter_write(
        &self,
        pk: String,
        delta: UnreadDelta,
    ) -> StoreResult<Option<TransactWriteItem>> {
        if delta.is_zero() {
            return Ok(None);
        }
        let mut expr = Expr::new();
        // The first change creates the item: it gets its type then.
        let update = format!(
            "SET {} ADD {} {}, {} {}",
            expr.equals(attr::TYPE, "type", string_attr(item_type::UNREAD_COUNTER)),
            expr.name(attr::TOTAL_UNREAD),
            expr.value("messages", number_attr(delta.messages)),
            expr.name(attr::UNREAD_CHATS),
            expr.value("chats", number_attr(delta.chats)),
        );
        self.update(items::key(pk, table::UNREAD_SK), &update, None, &expr)
            .map(Some)
    }

    /// The chat as the reader sees it and the reader's own watermark on it, in 1 request:
    /// a customer's watermark is on the chat item (1 GetItem); an agent's is its `READ#`
    /// item in the chat's partition (1 BatchGetItem of both, consistent). A customer sees
    /// only its own chats.
    async fn chat_and_own_watermark(
        &self,
        scope: &ChatScope,
        reader: &UserIdentity,
    ) -> StoreResult<Option<(Chat, u32)>> {
        let visible = |chat: &Chat| {
            visible_to(scope, &chat.customer_id)
                && (reader.role == Role::Agent || chat.customer_id == reader.user_id)
        };
        match reader.role {
            Role::Customer => Ok(self.visible_chat(scope).await?.filter(visible).map(|chat| {
                let own = chat.customer_last_read;
                (chat, own)
            })),
            Role::Agent => {
                let pk = table::chat_pk(&scope.app, scope.chat);
                let keys = vec![
                    items::key(pk.clone(), table::CHAT_SK),
                    items::key(pk, table::agent_read_sk(&reader.user_id)),
                ];
                let mut chat = None;
                let mut own = 0;
                for item in self.batch_get(keys).await? {
                    if items::is_type(&item, item_type::CHAT) {
                        chat = Some(items::chat(&item)?);
                    } else {
                        own = items::agent_last_read(&item)?;
                    }
                }
                Ok(chat.filter(visible).map(|chat| (chat, own)))
            }
        }
    }

    /// Up to `limit` chat numbers above `after` of one `unread` index partition, ascending.
    async fn unread_index_page(
        &self,
        app: &AppToken,
        shard: u32,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> StoreResult<Vec<ChatNumber>> {
        let mut expr = Expr::new();
        let mut condition = expr.equals(
            attr::GSI3PK,
            "pk",
            string_attr(table::team_unread_pk(app, shard)),
        );
        if let Some(after) = after {
            condition.push_str(&format!(
                " AND {} > {}",
                expr.name(attr::GSI3SK),
                expr.value("after", string_attr(table::unread_sk(after)))
            ));
        }
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name(table::UNREAD_INDEX)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .scan_index_forward(true)
                .limit(i32::try_from(limit as usize - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            for item in out.items.unwrap_or_default() {
                found.push(items::unread_index_chat(&item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() || found.len() >= limit as usize {
                return Ok(found);
            }
        }
    }
}
