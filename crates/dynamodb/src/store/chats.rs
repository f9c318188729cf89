//! Chats: each chat is a partition holding the chat item, its messages and its
//! idempotency keys; chats are numbered by the application's count and listed from the
//! `inbox` and `customer` indexes.

use std::collections::HashMap;

use chat_domain::{
    AssigneeFilter, Chat, ChatFilter, ChatNumber, ChatQuery, ChatScope, ChatStatus, ChatUpdate,
    DomainError, Message, MessageNumber, NewChat,
};
use futures::future::try_join_all;

use super::conditional_write::{Step, Verdict};
use super::unread::{assignee_unchanged, team_unchanged};
use super::{
    BATCH_GET_MAX_KEYS, DynamoStore, app_not_found, chat_not_found, chat_partition_between, domain,
    require_scope, update_expression, visible_to,
};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, attr};

impl DynamoStore {
    /// GetItem (the application's count) + TransactWriteItems { count n -> n + 1 if still
    /// n; put the chat if absent }: 2 requests, more only after a lost race.
    pub(super) async fn open_chat(&self, new: &NewChat) -> StoreResult<Chat> {
        let app_key = || items::key(table::application_pk(&new.app), table::APPLICATION_SK);
        self.conditional_write("the application's chat count")
            .taking_turns_on(table::application_pk(&new.app))
            .run(
                move |known| async move {
                    // The application as a lost race returned it, or as it is now.
                    let app = match known {
                        Some(item) => items::application(&item)?,
                        None => match self.get(app_key()).await? {
                            Some(item) => items::application(&item)?,
                            None => return Err(app_not_found(&new.app)),
                        },
                    };
                    let count = app.chats_count;
                    let number = ChatNumber::new(i64::from(count) + 1)
                        .map_err(|_| domain(DomainError::chat_numbers_exhausted()))?;
                    let chat = new.opened_as(number);
                    let mut expr = Expr::new();
                    let update = format!(
                        "SET {}",
                        expr.equals(attr::CHATS_COUNT, "next", number_attr(number))
                    );
                    let condition = expr.equals(attr::CHATS_COUNT, "count", number_attr(count));
                    // Cancellation reasons are read by position: the count, the chat.
                    let allocate = self.update(app_key(), &update, Some(&condition), &expr)?;
                    let insert = self.put_new(items::chat_item(&chat)?)?;
                    Ok(Step::Transact(vec![allocate, insert], chat, number))
                },
                move |cancelled, number| async move {
                    cancelled.numbering_verdict(|| {
                        format!(
                            "chat {number} of {} exists beyond the application's count",
                            new.app
                        )
                    })
                },
            )
            .await
    }

    /// Query (chat item + last message) + UpdateItem: 2 requests. A status change moves the
    /// chat's index keys, which also name its assignee and team: the write holds only while
    /// those are as read (an assignment in between: read again and retry).
    pub(super) async fn change_chat(
        &self,
        scope: &ChatScope,
        update: &ChatUpdate,
    ) -> StoreResult<Chat> {
        let key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        // The last attempt's read, for its last message.
        let read = std::sync::Mutex::new(None::<Chat>);
        let read = &read;
        let updated = self
            .conditional_write("the chat")
            .run(
                move |_| async move {
                    let Some(current) = self.chat_with_last_message(scope).await? else {
                        return Err(chat_not_found(scope));
                    };
                    let mut expr = Expr::new();
                    let mut set =
                        vec![expr.equals(attr::UPDATED_AT, "now", number_attr(update.now.0))];
                    let mut remove = Vec::new();
                    match &update.subject {
                        None => {}
                        Some(Some(subject)) => set.push(expr.equals(
                            attr::SUBJECT,
                            "subject",
                            string_attr(subject.as_str()),
                        )),
                        Some(None) => remove.push(expr.name(attr::SUBJECT)),
                    }
                    let mut condition = format!("attribute_exists({})", expr.name(attr::PK));
                    if let Some(status) = update.status {
                        // The index keys follow the status; the customer and number never
                        // change, the assignee and team are as read.
                        set.push(expr.equals(attr::STATUS, "status", string_attr(status.as_str())));
                        let inbox =
                            table::inbox_pk(&scope.app, status, table::inbox_shard(scope.chat));
                        set.push(expr.equals(attr::GSI1PK, "inbox", string_attr(inbox)));
                        let customer = table::customer_pk(&scope.app, status, &current.customer_id);
                        set.push(expr.equals(attr::GSI2PK, "customer", string_attr(customer)));
                        let assignee =
                            table::assignee_pk(&scope.app, status, current.assignee.as_ref());
                        set.push(expr.equals(attr::GSI4PK, "assigneePk", string_attr(assignee)));
                        if let Some(team) = &current.team {
                            let team = table::team_pk(&scope.app, status, team);
                            set.push(expr.equals(attr::GSI5PK, "teamPk", string_attr(team)));
                        }
                        condition.push_str(&format!(
                            " AND {} AND {}",
                            assignee_unchanged(&mut expr, current.assignee.as_ref()),
                            team_unchanged(&mut expr, current.team.as_ref()),
                        ));
                    }
                    // An assigned chat that opens or closes moves its assignee's load,
                    // in one transaction with the chat while its status and count are as
                    // read (the answer is then the chat as read, changed).
                    let load_move = match (update.status, &current.assignee) {
                        (Some(status), Some(agent)) if status != current.status => {
                            condition.push_str(&format!(
                                " AND {} AND {}",
                                expr.equals(
                                    attr::STATUS,
                                    "seenStatus",
                                    string_attr(current.status.as_str())
                                ),
                                expr.equals(
                                    attr::MESSAGES_COUNT,
                                    "seenCount",
                                    number_attr(current.messages_count)
                                ),
                            ));
                            let delta = if status == ChatStatus::Open { 1 } else { -1 };
                            Some(self.load_write(&scope.app, agent, delta, None)?)
                        }
                        _ => None,
                    };
                    require_scope(&mut condition, &mut expr, scope);
                    let update_expression = update_expression(&set, &remove);
                    let request =
                        self.update_request(key(), &update_expression, Some(&condition), &expr)?;
                    let step = match load_move {
                        None => Step::Update(Box::new(request), items::chat, ()),
                        Some(load) => {
                            let chat = aws_sdk_dynamodb::types::TransactWriteItem::builder()
                                .update(request)
                                .build();
                            let mut changed = current.clone();
                            if let Some(subject) = &update.subject {
                                changed.subject = subject.clone();
                            }
                            if let Some(status) = update.status {
                                changed.status = status;
                            }
                            changed.updated_at = update.now;
                            Step::Transact(vec![chat, load], changed, ())
                        }
                    };
                    if let Ok(mut last_read) = read.lock() {
                        *last_read = Some(current);
                    }
                    Ok(step)
                },
                move |cancelled, _| async move {
                    if !cancelled.failed(0) {
                        return Ok(Verdict::RetryLater);
                    }
                    // Gone (or another customer's): NotFound; otherwise the assignee,
                    // team, status or count moved: read again.
                    match cancelled.item(0) {
                        Some(item)
                            if items::chat(item)
                                .is_ok_and(|c| visible_to(scope, &c.customer_id)) =>
                        {
                            Ok(Verdict::Retry)
                        }
                        _ => Err(chat_not_found(scope)),
                    }
                },
            )
            .await?;
        let current = read.lock().ok().and_then(|mut r| r.take());
        // A message sent in between moved the count: read the new last message.
        let last = match current {
            Some(current) if updated.messages_count == current.messages_count => {
                current.last_message
            }
            _ => self.last_message(&updated).await?,
        };
        items::with_last_message(updated, last)
    }

    /// One Query: the chat item sorts right after its messages, so reading down from it
    /// with `Limit 2` yields the chat and its last message.
    pub(super) async fn chat_with_last_message(
        &self,
        scope: &ChatScope,
    ) -> StoreResult<Option<Chat>> {
        let mut expr = Expr::new();
        let condition = chat_partition_between(
            &mut expr,
            scope,
            table::MESSAGES_FROM.to_owned(),
            table::CHAT_SK.to_owned(),
        );
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(false)
            .limit(2)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::request("Query", e))?;
        let mut found = out.items.unwrap_or_default().into_iter();
        let Some(chat_item) = found.next() else {
            return Ok(None);
        };
        let chat = items::chat(&chat_item)?;
        if !visible_to(scope, &chat.customer_id) {
            return Ok(None);
        }
        let last = match found.next() {
            Some(item) if chat.messages_count > 0 => Some(items::message(&item)?.0),
            _ => None,
        };
        items::with_last_message(chat, last).map(Some)
    }

    /// The chat item as `scope` sees it (no last message): 1 GetItem.
    pub(super) async fn visible_chat(&self, scope: &ChatScope) -> StoreResult<Option<Chat>> {
        let key = items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        let chat = items::chat(&item)?;
        Ok(visible_to(scope, &chat.customer_id).then_some(chat))
    }

    /// One Query per index partition the filters select (in parallel), then one
    /// BatchGetItem per 100 chats for their last messages: with a status, a filter by
    /// assignee or team is one Query of the `assignee` or `team` index (two without: one
    /// per status); the unfiltered inbox is one per inbox shard and status.
    pub(super) async fn chats_page(&self, query: &ChatQuery) -> StoreResult<Vec<Chat>> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let after = match query.after {
            None => None,
            // Nothing sorts below a time before 1970.
            Some(cursor) => match table::activity_sk(cursor.last_activity_at, cursor.number) {
                Some(sk) => Some(sk),
                None => return Ok(Vec::new()),
            },
        };
        let statuses = match query.status {
            Some(status) => vec![status],
            None => vec![ChatStatus::Open, ChatStatus::Resolved],
        };
        let filtered = query.filter != ChatFilter::default();
        if filtered && query.customer.is_some() {
            return Err(domain(DomainError::Forbidden(
                "only agents filter chats by assignee or team".into(),
            )));
        }
        let partitions: Vec<(&str, &str, &str, String)> = match &query.customer {
            // By assignee or team: one partition per status.
            None if filtered => statuses
                .iter()
                .map(
                    |status| match (&query.filter.team, &query.filter.assignee) {
                        (Some(team), _) => (
                            table::TEAM_INDEX,
                            attr::GSI5PK,
                            attr::GSI5SK,
                            table::team_pk(&query.app, *status, team),
                        ),
                        (None, assignee) => (
                            table::ASSIGNEE_INDEX,
                            attr::GSI4PK,
                            attr::GSI4SK,
                            table::assignee_pk(
                                &query.app,
                                *status,
                                match assignee {
                                    AssigneeFilter::Agent(agent) => Some(agent),
                                    _ => None,
                                },
                            ),
                        ),
                    },
                )
                .collect(),
            Some(customer) => statuses
                .iter()
                .map(|status| {
                    (
                        table::CUSTOMER_INDEX,
                        attr::GSI2PK,
                        attr::GSI2SK,
                        table::customer_pk(&query.app, *status, customer),
                    )
                })
                .collect(),
            None => statuses
                .iter()
                .flat_map(|status| {
                    (0..table::INBOX_SHARDS).map(|shard| {
                        (
                            table::INBOX_INDEX,
                            attr::GSI1PK,
                            attr::GSI1SK,
                            table::inbox_pk(&query.app, *status, shard),
                        )
                    })
                })
                .collect(),
        };
        let pages = try_join_all(partitions.into_iter().map(|(index, pk, sk, value)| {
            self.query_index(index, pk, sk, value, after.clone(), Some(query.limit))
        }))
        .await?;
        // Each partition is in index order; the first `limit` of their union is the page.
        let mut found: Vec<(String, Item)> = pages.into_iter().flatten().collect();
        found.sort_by(|a, b| b.0.cmp(&a.0));
        found.truncate(query.limit as usize);
        let chats = found
            .iter()
            .map(|(_, item)| items::chat(item))
            .collect::<StoreResult<Vec<_>>>()?;
        for chat in &chats {
            if chat.app != query.app {
                return Err(StoreError::corrupt(format!(
                    "the inbox of {} lists a chat of {}",
                    query.app, chat.app
                )));
            }
        }
        self.attach_last_messages(chats).await
    }

    async fn last_message(&self, chat: &Chat) -> StoreResult<Option<Message>> {
        let Ok(number) = MessageNumber::new(i64::from(chat.messages_count)) else {
            return Ok(None);
        };
        Ok(self
            .message_item(&chat.app, chat.number, number)
            .await?
            .map(|(message, _)| message))
    }

    pub(super) async fn attach_last_messages(&self, chats: Vec<Chat>) -> StoreResult<Vec<Chat>> {
        let keys: Vec<Item> = chats
            .iter()
            .filter(|c| c.messages_count > 0)
            .map(|c| {
                items::key(
                    table::chat_pk(&c.app, c.number),
                    table::message_sk(u64::from(c.messages_count)),
                )
            })
            .collect();
        let batches = try_join_all(
            keys.chunks(BATCH_GET_MAX_KEYS)
                .map(|chunk| self.batch_get(chunk.to_vec())),
        )
        .await?;
        let mut last_messages = HashMap::new();
        for item in batches.into_iter().flatten() {
            let (message, _) = items::message(&item)?;
            last_messages.insert(message.chat_number, message);
        }
        chats
            .into_iter()
            .map(|chat| {
                let last = last_messages.remove(&chat.number);
                items::with_last_message(chat, last)
            })
            .collect()
    }
}
