//! Messages: items of their chat's partition, numbered by the chat's count, with a
//! clientMessageId key beside each message sent with one.

use aws_sdk_dynamodb::types::AttributeValue;
use chat_domain::attachments::{AttachedFile, Upload, attached_files};
use chat_domain::limits::NUMBER_MAX;
use chat_domain::{
    AppToken, ChatNumber, ChatScope, ClientMessageId, CounterChange, DomainError, Message,
    MessageBody, MessageChange, MessageNumber, MessageRange, NewMessage, Role, Sent, UserId,
};
use futures::future::try_join_all;

use super::conditional_write::{Step, Verdict};
use super::unread::{unread_index_clauses, watermark_attr, watermarks_unchanged};
use super::{
    BATCH_GET_MAX_KEYS, DynamoStore, chat_not_found, chat_partition_between, domain, require_scope,
    update_expression, visible_to,
};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, attr, item_type};

/// A message item sent with attachments says how many (deleting it then releases them)
/// and carries their files' metadata (its stream record then gives them to webhook events
/// and the search index).
fn with_attachments(mut item: Item, attach: &[Upload]) -> Item {
    if !attach.is_empty() {
        item.insert(attr::ATTACHMENTS.to_owned(), number_attr(attach.len()));
        item.insert(
            attr::FILES.to_owned(),
            items::files_attr(&attached_files(attach)),
        );
    }
    item
}

/// A changed message, and whether it has attachments.
fn changed_message(item: &Item) -> StoreResult<(Message, bool)> {
    let attachments: Option<u32> = items::optional_number(item, attr::ATTACHMENTS)?;
    Ok((items::message(item)?.0, attachments.is_some_and(|n| n > 0)))
}

impl DynamoStore {
    /// GetItem (the chat's count, times and watermarks) + TransactWriteItems { count n ->
    /// n + 1 and the sender's watermark to n + 1 if the chat is still as read; put the
    /// message if absent; put the clientMessageId key if absent; an agent's own watermark;
    /// the unread counters' deltas }: 2 requests. A retried clientMessageId: GetItem +
    /// cancelled transaction (which moved nothing) + GetItem of the message.
    ///
    /// With `attach` (uploads read just before), the same transaction attaches each: its
    /// record moves from pending to this message under the conditions of
    /// [`Self::attach_writes`], and its attachment is put into the chat's partition. One
    /// failed condition cancels it all (Conflict).
    pub(super) async fn append_message(
        &self,
        new: &NewMessage,
        attach: &[Upload],
    ) -> StoreResult<Sent> {
        let scope = &new.scope;
        let chat_key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        self.conditional_write("the chat's message count")
            .taking_turns_on(table::chat_pk(&scope.app, scope.chat))
            .run(
                move |known| async move {
                    // The chat as a lost race returned it, or as it is now.
                    let returned = match known {
                        Some(item) => {
                            Some(items::chat(&item)?).filter(|c| visible_to(scope, &c.customer_id))
                        }
                        None => None,
                    };
                    let chat = match returned {
                        Some(chat) => chat,
                        None => match self.visible_chat(scope).await? {
                            Some(chat) => chat,
                            None => return Err(chat_not_found(scope)),
                        },
                    };
                    let count = chat.messages_count;
                    let Some(number) = count
                        .checked_add(1)
                        .filter(|n| *n <= NUMBER_MAX)
                        .and_then(|n| MessageNumber::new(i64::from(n)).ok())
                    else {
                        // Full; an idempotent retry still gets its message.
                        if let Some(id) = &new.client_message_id
                            && let Some(message) =
                                self.message_by_client_id(scope, id, None).await?
                        {
                            return Ok(Step::Done(Sent {
                                message,
                                created: false,
                            }));
                        }
                        return Err(domain(DomainError::message_numbers_exhausted()));
                    };
                    // Times never go backwards along the numbers.
                    let created_at = new.now.max(chat.last_activity_at);
                    let updated_at = new.now.max(chat.updated_at);
                    let message = new.sent_as(number, created_at);

                    // The sender has read what it sent: its watermark moves with the count.
                    let before = chat.read_marks();
                    let after = before.after_send(new.sender_role);

                    let mut expr = Expr::new();
                    let activity = items::activity_sk(created_at, scope.chat)?;
                    let mut set = vec![
                        expr.equals(attr::MESSAGES_COUNT, "next", number_attr(number)),
                        expr.equals(watermark_attr(new.sender_role), "next", number_attr(number)),
                        expr.equals(attr::LAST_MESSAGE_AT, "at", number_attr(created_at.0)),
                        expr.equals(attr::LAST_ACTIVITY_AT, "at", number_attr(created_at.0)),
                        expr.equals(attr::UPDATED_AT, "updated", number_attr(updated_at.0)),
                        expr.equals(attr::GSI1SK, "activity", string_attr(activity.clone())),
                        expr.equals(attr::GSI2SK, "activity", string_attr(activity.clone())),
                        expr.equals(attr::GSI4SK, "activity", string_attr(activity.clone())),
                    ];
                    // The team index entry exists only with a team (an assignment between
                    // the read and this write moves updatedAt, which fails the condition).
                    if chat.team.is_some() {
                        set.push(expr.equals(attr::GSI5SK, "activity", string_attr(activity)));
                    }
                    let (set_index, remove_index) =
                        unread_index_clauses(&mut expr, &chat, before, after);
                    set.extend(set_index);
                    let update = update_expression(&set, &remove_index);
                    // The count, updatedAt and watermarks as read: every change of the chat
                    // moves one of them.
                    let mut condition = format!(
                        "{} AND {} AND {}",
                        expr.equals(attr::MESSAGES_COUNT, "count", number_attr(count)),
                        expr.equals(attr::UPDATED_AT, "seen", number_attr(chat.updated_at.0)),
                        watermarks_unchanged(&mut expr, before),
                    );
                    require_scope(&mut condition, &mut expr, scope);
                    // Cancellation reasons are read by position: the chat, the message, the
                    // key.
                    let mut writes = vec![
                        self.update(chat_key(), &update, Some(&condition), &expr)?,
                        self.put_new(with_attachments(
                            items::message_item(&message, &chat.customer_id, 1),
                            attach,
                        ))?,
                    ];
                    if let Some(id) = &new.client_message_id {
                        writes.push(self.put_new(items::client_message_id_item(
                            &scope.app, scope.chat, id, number,
                        ))?);
                    }
                    if new.sender_role == Role::Agent {
                        // Above any watermark this agent has (those are at most the old
                        // count); a concurrent read of its own writes only over a lower
                        // watermark, so the two never move it back.
                        let own = items::agent_read_item(
                            &scope.app,
                            scope.chat,
                            &new.sender_id,
                            number.get(),
                        );
                        writes.push(self.put(own, None, &Expr::new())?);
                    }
                    writes
                        .extend(self.counter_writes(&chat, CounterChange::between(before, after))?);
                    let first_upload = writes.len();
                    for upload in attach {
                        writes.extend(self.attach_writes(new, number, upload)?);
                    }
                    let sent = Sent {
                        message,
                        created: true,
                    };
                    Ok(Step::Transact(writes, sent, (number, first_upload)))
                },
                move |cancelled, (number, first_upload)| async move {
                    if let Some(id) = &new.client_message_id
                        && cancelled.failed(2)
                    {
                        // Sent before: return that message, change nothing.
                        let known = cancelled.item(2);
                        return match self.message_by_client_id(scope, id, known).await? {
                            Some(message) => Ok(Verdict::Done(Sent {
                                message,
                                created: false,
                            })),
                            None => Err(StoreError::corrupt(
                                "a clientMessageId key vanished".to_owned(),
                            )),
                        };
                    }
                    if (first_upload..first_upload + 2 * attach.len()).any(|i| cancelled.failed(i))
                    {
                        return Err(domain(DomainError::Conflict(
                            "an upload is not a pending upload of the sender in this chat"
                                .to_owned(),
                        )));
                    }
                    cancelled.numbering_verdict(|| {
                        format!(
                            "message {number} of chat {} exists beyond its count",
                            scope.chat
                        )
                    })
                },
            )
            .await
    }

    /// 1 GetItem (the message carries its chat's customer for the scope check).
    pub(super) async fn visible_message(
        &self,
        scope: &ChatScope,
        number: MessageNumber,
    ) -> StoreResult<Option<Message>> {
        Ok(self
            .message_item(&scope.app, scope.chat, number)
            .await?
            .filter(|(_, customer)| visible_to(scope, customer))
            .map(|(message, _)| message))
    }

    /// 1 Query. Without `before`, the range reaches up to the chat item, which then
    /// proves the chat visible even when no message is in range; with `before` and an
    /// empty page, 1 GetItem more for the chat.
    pub(super) async fn messages_in_range(
        &self,
        scope: &ChatScope,
        range: &MessageRange,
    ) -> StoreResult<Vec<Message>> {
        let low = range.after.map_or(1, |a| u64::from(a) + 1);
        let high = range.before.map(|b| u64::from(b).saturating_sub(1));
        if range.limit == 0 || high.is_some_and(|high| high < low) {
            return match self.visible_chat(scope).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(chat_not_found(scope)),
            };
        }
        let includes_chat = high.is_none();
        let mut expr = Expr::new();
        let condition = chat_partition_between(
            &mut expr,
            scope,
            table::message_sk(low),
            high.map_or_else(|| table::CHAT_SK.to_owned(), table::message_sk),
        );
        let wanted = range.limit as usize + usize::from(includes_chat);
        let mut chat = None;
        let mut messages = Vec::new();
        let mut start = None;
        loop {
            let seen = messages.len() + usize::from(chat.is_some());
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .scan_index_forward(!range.newest_first)
                .limit(i32::try_from(wanted - seen).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            for item in out.items.unwrap_or_default() {
                if items::is_type(&item, item_type::CHAT) {
                    chat = Some(items::chat(&item)?);
                } else {
                    messages.push(items::message(&item)?);
                }
            }
            start = out.last_evaluated_key;
            let seen = messages.len() + usize::from(chat.is_some());
            if start.is_none() || seen >= wanted {
                break;
            }
        }
        messages.truncate(range.limit as usize);
        let visible = match (&chat, messages.first()) {
            (Some(chat), _) => visible_to(scope, &chat.customer_id),
            (None, Some((_, customer))) => visible_to(scope, customer),
            (None, None) => self.visible_chat(scope).await?.is_some(),
        };
        if !visible {
            return Err(chat_not_found(scope));
        }
        Ok(messages.into_iter().map(|(message, _)| message).collect())
    }

    /// 1 BatchGetItem (per 100 keys, in parallel): the chat item, for the scope, and the
    /// messages.
    pub(super) async fn messages_numbered(
        &self,
        scope: &ChatScope,
        numbers: &[MessageNumber],
    ) -> StoreResult<Vec<Message>> {
        let pk = table::chat_pk(&scope.app, scope.chat);
        let mut wanted: Vec<MessageNumber> = numbers.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let keys: Vec<Item> = std::iter::once(items::key(pk.clone(), table::CHAT_SK))
            .chain(
                wanted
                    .iter()
                    .map(|n| items::key(pk.clone(), table::message_number_sk(*n))),
            )
            .collect();
        let found = try_join_all(
            keys.chunks(BATCH_GET_MAX_KEYS)
                .map(|chunk| self.batch_get(chunk.to_vec())),
        )
        .await?;
        let mut visible = false;
        let mut messages = Vec::new();
        for item in found.into_iter().flatten() {
            if items::is_type(&item, item_type::CHAT) {
                visible = visible_to(scope, &items::chat(&item)?.customer_id);
            } else {
                messages.push(items::message(&item)?.0);
            }
        }
        if !visible {
            return Err(chat_not_found(scope));
        }
        messages.sort_by_key(|m| m.number);
        Ok(messages)
    }

    /// Edits (`new_body`) or deletes a message: 1 UpdateItem whose condition holds every
    /// rule (message present, chat visible to the scope, sender, not deleted). When it
    /// fails, the old item (returned by the failure) says which rule; a missing message
    /// costs 1 GetItem more to tell a missing chat from a missing message.
    pub(super) async fn change_message(
        &self,
        change: &MessageChange,
        new_body: Option<&MessageBody>,
    ) -> StoreResult<(Message, bool)> {
        let scope = &change.scope;
        let verb = if new_body.is_some() { "edit" } else { "delete" };
        let mut expr = Expr::new();
        let set = match new_body {
            Some(body) => format!(
                "SET {}, {}",
                expr.equals(attr::BODY, "body", string_attr(body.as_str())),
                expr.equals(attr::EDITED_AT, "now", number_attr(change.now.0)),
            ),
            // The files' metadata goes with the body.
            None => format!(
                "SET {}, {} REMOVE {}",
                expr.equals(attr::BODY, "body", string_attr("")),
                expr.equals(attr::DELETED, "deleted", AttributeValue::Bool(true)),
                expr.name(attr::FILES),
            ),
        };
        // Every change moves the version (the search index orders changes by it).
        let update = format!(
            "{set} ADD {} {}",
            expr.name(attr::VERSION),
            expr.value("one", number_attr(1))
        );
        let mut condition = format!(
            "attribute_exists({}) AND {}",
            expr.name(attr::PK),
            expr.equals(attr::DELETED, "live", AttributeValue::Bool(false)),
        );
        require_scope(&mut condition, &mut expr, scope);
        if let Some(sender) = &change.only_sender {
            condition.push_str(" AND ");
            condition.push_str(&expr.equals(
                attr::SENDER_ID,
                "sender",
                string_attr(sender.as_str()),
            ));
        }
        let key = items::key(
            table::chat_pk(&scope.app, scope.chat),
            table::message_number_sk(change.number),
        );
        let update = self.update_request(key, &update, Some(&condition), &expr)?;
        self.conditional_write("the message")
            .update(update, changed_message, move |cancelled| async move {
                let Some(old) = cancelled.item(0) else {
                    return Err(self.missing_message(scope, change.number).await);
                };
                let (message, customer) = items::message(old)?;
                let (_, has_attachments) = changed_message(old)?;
                if !visible_to(scope, &customer) {
                    return Err(chat_not_found(scope));
                }
                if change
                    .only_sender
                    .as_ref()
                    .is_some_and(|only| *only != message.sender_id)
                {
                    return Err(domain(DomainError::Forbidden(format!(
                        "only the sender may {verb} message {}",
                        change.number
                    ))));
                }
                if message.deleted {
                    return match new_body {
                        Some(_) => Err(domain(DomainError::Conflict(format!(
                            "message {} was deleted and cannot be edited",
                            change.number
                        )))),
                        // Deleting twice returns the deleted message again.
                        None => Ok(Verdict::Done((message, has_attachments))),
                    };
                }
                // Every rule holds now: the item changed between the check and the read.
                Ok(Verdict::RetryLater)
            })
            .await
    }

    /// Message `number` of the chat, whoever looks: 1 GetItem.
    pub(super) async fn message_item(
        &self,
        app: &AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> StoreResult<Option<(Message, UserId)>> {
        let key = items::key(table::chat_pk(app, chat), table::message_number_sk(number));
        self.get(key)
            .await?
            .as_ref()
            .map(items::message)
            .transpose()
    }

    /// Message `number` of the chat, whoever looks, with its files (none once deleted):
    /// 1 GetItem. Webhook events carry the files.
    pub async fn message_with_files(
        &self,
        app: &AppToken,
        chat: ChatNumber,
        number: MessageNumber,
    ) -> chat_domain::Result<Option<(Message, Vec<AttachedFile>)>> {
        let key = items::key(table::chat_pk(app, chat), table::message_number_sk(number));
        let found = self
            .get(key)
            .await
            .and_then(|item| {
                item.map(|item| Ok((items::message(&item)?.0, items::message_files(&item)?)))
                    .transpose()
            })
            .map_err(|e| e.into_domain("message_with_files"))?;
        Ok(found)
    }

    /// Why a change found no message: the chat is not visible, or the message is missing.
    async fn missing_message(&self, scope: &ChatScope, number: MessageNumber) -> StoreError {
        match self.visible_chat(scope).await {
            Ok(None) => chat_not_found(scope),
            Ok(Some(_)) => domain(DomainError::message_not_found(number)),
            Err(e) => e,
        }
    }

    /// The message a clientMessageId key points to: 2 GetItems (a retry path only).
    pub(super) async fn message_by_client_id(
        &self,
        scope: &ChatScope,
        id: &ClientMessageId,
        known_number: Option<&Item>,
    ) -> StoreResult<Option<Message>> {
        let number = match known_number {
            Some(item) => items::client_message_id_number(item)?,
            None => {
                let key = items::key(
                    table::chat_pk(&scope.app, scope.chat),
                    table::client_message_id_sk(id),
                );
                match self.get(key).await? {
                    Some(item) => items::client_message_id_number(&item)?,
                    None => return Ok(None),
                }
            }
        };
        match self.message_item(&scope.app, scope.chat, number).await? {
            Some((message, _)) => Ok(Some(message)),
            None => Err(StoreError::corrupt(format!(
                "clientMessageId {} of chat {} points to missing message {number}",
                id.as_str(),
                scope.chat
            ))),
        }
    }
}
