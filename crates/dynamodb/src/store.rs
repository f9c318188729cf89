//! The operations. Each says in its comment how many requests it sends when nothing
//! races; `tests/requests.rs` holds them to it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chat_domain::limits::NUMBER_MAX;
use chat_domain::{
    AppName, AppToken, Application, Chat, ChatNumber, ChatQuery, ChatScope, ChatStatus, ChatStore,
    ChatUpdate, ClientMessageId, CounterChange, DomainError, MarkRead, Message, MessageBody,
    MessageChange, MessageNumber, MessageRange, NewApplication, NewChat, NewMessage, ReadMarks,
    ReadReceipt, Result, Role, Sent, Timestamp, UnreadSummary, UserId, UserIdentity,
};
use futures::future::try_join_all;

use crate::backoff::{Backoff, RetryPolicy};
use crate::error::{Result as StoreResult, StoreError, is_throttling_code};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, attr, item_type};

/// The most keys one BatchGetItem may ask for.
const BATCH_GET_MAX_KEYS: usize = 100;

/// How many writer lanes a store has (see [`WriterLanes`]).
const WRITER_LANES: usize = 64;

/// Writers of one counter (a chat's message count, an application's chat count) within
/// this process take turns: concurrent sends to one chat queue here instead of racing
/// each other's compare-and-set, which would cost a cancelled transaction per lost race.
/// Writers in other processes still race; the conditional transaction keeps that correct.
/// Lanes are striped by key: two busy chats rarely share one.
#[derive(Debug)]
struct WriterLanes(Box<[tokio::sync::Mutex<()>]>);

impl WriterLanes {
    fn new() -> Self {
        WriterLanes(
            (0..WRITER_LANES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }

    async fn enter(&self, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let lane = (hasher.finish() % self.0.len() as u64) as usize;
        self.0[lane].lock().await
    }
}

/// The DynamoDB [`ChatStore`]. Cheap to clone (clones share the writer lanes); build the
/// [`Client`] once per process and share it.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    retry: RetryPolicy,
    lanes: Arc<WriterLanes>,
}

/// What a TransactWriteItems came to.
enum Transacted {
    Committed,
    /// Cancelled; one reason per item, in request order.
    Cancelled(Vec<CancellationReason>),
    /// Another transaction held one of the items: try again.
    Conflict,
}

fn reason_code(reason: &CancellationReason) -> &str {
    reason.code().unwrap_or("None")
}

fn condition_failed(reason: Option<&CancellationReason>) -> bool {
    reason.is_some_and(|r| reason_code(r) == "ConditionalCheckFailed")
}

/// Cancelled only because a condition no longer held or another transaction was in the
/// way: a fresh read and another attempt will do.
fn lost_a_race(reasons: &[CancellationReason]) -> bool {
    reasons.iter().all(|r| {
        matches!(
            reason_code(r),
            "None" | "ConditionalCheckFailed" | "TransactionConflict"
        )
    })
}

fn cancelled(reasons: &[CancellationReason]) -> StoreError {
    let codes: Vec<&str> = reasons.iter().map(reason_code).collect();
    StoreError::Cancelled {
        throttled: codes.iter().any(|c| is_throttling_code(Some(c))),
        reasons: codes.join(", "),
    }
}

fn is_transaction_conflict(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TransactionConflictException" | "TransactionInProgressException")
    )
}

/// Whether a chat of `customer` is visible in `scope` (a customer's scope sees its own only).
fn visible_to(scope: &ChatScope, customer: &UserId) -> bool {
    scope.customer.as_ref().is_none_or(|c| c == customer)
}

fn domain(e: DomainError) -> StoreError {
    StoreError::Domain(e)
}

fn app_not_found(token: &AppToken) -> StoreError {
    domain(DomainError::application_not_found(token))
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::corrupt_because("a request could not be built", e)
}

/// The chat item's attribute holding `role`'s watermark.
fn watermark_attr(role: Role) -> &'static str {
    match role {
        Role::Customer => attr::CUSTOMER_LAST_READ,
        Role::Agent => attr::AGENTS_LAST_READ,
    }
}

/// The chat's watermarks are still those the counter deltas were computed from (an absent
/// attribute counts as 0, as [`items::chat`] reads it): a concurrent send or read that moved
/// one makes this write fail and start again, instead of counting twice. The caller also
/// conditions on `messagesCount`, which fails for a missing chat.
fn watermarks_unchanged(expr: &mut Expr, marks: ReadMarks) -> String {
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

/// The SET and REMOVE clauses that keep a chat in the `unread` index exactly while its
/// agents have something unread: only a change across 0 touches the index keys.
fn unread_index_clauses(
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

/// `SET a, b [REMOVE c, d]`.
fn update_expression(set: &[String], remove: &[String]) -> String {
    let mut update = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        update.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    update
}

impl DynamoStore {
    /// The store on `table` (created with [`crate::create_table_if_missing`] or the
    /// deployment's template).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: Arc::from(table.into()),
            retry: RetryPolicy::default(),
            lanes: Arc::new(WriterLanes::new()),
        }
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    // ---- building blocks ---------------------------------------------------------------

    /// One GetItem, strongly consistent.
    async fn get(&self, key: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::request("GetItem", e))?;
        Ok(out.item)
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Transacted> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Transacted::Committed),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Ok(Transacted::Cancelled(c.cancellation_reasons().to_vec()))
                }
                _ if is_transaction_conflict(e.code()) => Ok(Transacted::Conflict),
                _ => Err(StoreError::request("TransactWriteItems", e)),
            },
        }
    }

    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        expr: &Expr,
    ) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .set_return_values_on_condition_check_failure(
                condition.map(|_| ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A Put only if the key is free.
    fn put_new(&self, item: Item) -> StoreResult<TransactWriteItem> {
        let mut expr = Expr::new();
        let condition = format!("attribute_not_exists({})", expr.name(attr::PK));
        self.put(item, Some(&condition), &expr)
    }

    fn update(
        &self,
        key: Item,
        update: &str,
        condition: Option<&str>,
        expr: &Expr,
    ) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&*self.table)
            .set_key(Some(key))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            // A lost race returns the parent as it is now: the next attempt needs no read.
            .set_return_values_on_condition_check_failure(
                condition.map(|_| ReturnValuesOnConditionCheckFailure::AllOld),
            )
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The chat item as `scope` sees it (no last message): 1 GetItem.
    async fn visible_chat(&self, scope: &ChatScope) -> StoreResult<Option<Chat>> {
        let key = items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        let chat = items::chat(&item)?;
        Ok(visible_to(scope, &chat.customer_id).then_some(chat))
    }

    /// Message `number` of the chat, whoever looks: 1 GetItem.
    async fn message_item(
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

    /// Why a change found no message: the chat is not visible, or the message is missing.
    async fn missing_message(&self, scope: &ChatScope, number: MessageNumber) -> StoreError {
        match self.visible_chat(scope).await {
            Ok(None) => domain(DomainError::chat_not_found(scope.chat)),
            Ok(Some(_)) => domain(DomainError::message_not_found(number)),
            Err(e) => e,
        }
    }

    /// The message a clientMessageId key points to: 2 GetItems (a retry path only).
    async fn message_by_client_id(
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

    /// The counter updates a change of one chat's marks makes, in the same transaction:
    /// `ADD` to the agents' counter shard of the chat and to its customer's counter, each
    /// skipped when its delta is zero. Unconditional: atomic increments need no read, and
    /// the chat's own condition already guards the marks the deltas came from.
    fn counter_writes(
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
        let mut writes = Vec::new();
        for (pk, delta) in counters {
            if delta.is_zero() {
                continue;
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
            writes.push(self.update(items::key(pk, table::UNREAD_SK), &update, None, &expr)?);
        }
        Ok(writes)
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

    // ---- applications -------------------------------------------------------------------

    /// 1 PutItem.
    async fn do_create_application(&self, new: &NewApplication) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let condition = format!("attribute_not_exists({})", expr.name(attr::PK));
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(items::application_item(new)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Application {
                token: new.token.clone(),
                name: new.name.clone(),
                secret_generation: 1,
                previous_secret_expires_at: None,
                chats_count: 0,
                created_at: new.now,
                updated_at: new.now,
            }),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(domain(DomainError::Conflict(format!(
                    "application {} already exists",
                    new.token
                ))))
            }
            Err(e) => Err(StoreError::request("PutItem", e)),
        }
    }

    /// 1 UpdateItem.
    async fn do_update_application(
        &self,
        token: &AppToken,
        name: &AppName,
        now: Timestamp,
    ) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let update = format!(
            "SET {}, {}",
            expr.equals(attr::NAME, "name", string_attr(name.as_str())),
            expr.equals(attr::UPDATED_AT, "now", number_attr(now.0)),
        );
        self.update_application_item(token, expr, update).await
    }

    /// 1 UpdateItem: ADD makes concurrent rotations each take their own generation.
    async fn do_rotate_application_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Application> {
        let mut expr = Expr::new();
        let update = format!(
            "SET {}, {} ADD {} {}",
            expr.equals(
                attr::PREVIOUS_SECRET_EXPIRES_AT,
                "previous",
                number_attr(previous_expires_at.0)
            ),
            expr.equals(attr::UPDATED_AT, "now", number_attr(now.0)),
            expr.name(attr::SECRET_GENERATION),
            expr.value("one", number_attr(1)),
        );
        self.update_application_item(token, expr, update).await
    }

    /// UpdateItem of an existing application item, returning it as updated.
    async fn update_application_item(
        &self,
        token: &AppToken,
        mut expr: Expr,
        update: String,
    ) -> StoreResult<Application> {
        let condition = format!("attribute_exists({})", expr.name(attr::PK));
        let mut backoff = Backoff::new(self.retry, "the application");
        loop {
            let result = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(items::key(
                    table::application_pk(token),
                    table::APPLICATION_SK,
                )))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let item = out
                        .attributes
                        .ok_or_else(|| StoreError::corrupt("UpdateItem returned no item"))?;
                    return items::application(&item);
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                        return Err(app_not_found(token));
                    }
                    _ if is_transaction_conflict(e.code()) => backoff.wait().await?,
                    _ => return Err(StoreError::request("UpdateItem", e)),
                },
            }
        }
    }

    // ---- chats ----------------------------------------------------------------------------

    /// GetItem (the application's count) + TransactWriteItems { count n -> n + 1 if still
    /// n; put the chat if absent }: 2 requests, more only after a lost race.
    async fn do_create_chat(&self, new: &NewChat) -> StoreResult<Chat> {
        let app_key = || items::key(table::application_pk(&new.app), table::APPLICATION_SK);
        let _turn = self.lanes.enter(&table::application_pk(&new.app)).await;
        let mut backoff = Backoff::new(self.retry, "the application's chat count");
        // The application as a lost race returned it: the next attempt starts from it.
        let mut known: Option<Application> = None;
        loop {
            let app = match known.take() {
                Some(app) => app,
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
            let allocate = self.update(app_key(), &update, Some(&condition), &expr)?;
            let insert = self.put_new(items::chat_item(&chat)?)?;
            match self.transact(vec![allocate, insert]).await? {
                Transacted::Committed => return Ok(chat),
                Transacted::Cancelled(reasons) => {
                    if condition_failed(reasons.get(1)) && !condition_failed(reasons.first()) {
                        return Err(StoreError::corrupt(format!(
                            "chat {number} of {} exists beyond the application's count",
                            new.app
                        )));
                    }
                    if !lost_a_race(&reasons) {
                        return Err(cancelled(&reasons));
                    }
                    known = match reasons[0].item() {
                        Some(item) if condition_failed(reasons.first()) => {
                            Some(items::application(item)?)
                        }
                        _ => None,
                    };
                    if known.is_some() {
                        backoff.again()?;
                    } else {
                        backoff.wait().await?;
                    }
                }
                Transacted::Conflict => backoff.wait().await?,
            }
        }
    }

    /// Query (chat item + last message) + UpdateItem: 2 requests.
    async fn do_update_chat(&self, scope: &ChatScope, update: &ChatUpdate) -> StoreResult<Chat> {
        let Some(current) = self.do_chat(scope).await? else {
            return Err(domain(DomainError::chat_not_found(scope.chat)));
        };
        let mut expr = Expr::new();
        let mut set = vec![expr.equals(attr::UPDATED_AT, "now", number_attr(update.now.0))];
        let mut remove = Vec::new();
        match &update.subject {
            None => {}
            Some(Some(subject)) => {
                set.push(expr.equals(attr::SUBJECT, "subject", string_attr(subject.as_str())))
            }
            Some(None) => remove.push(expr.name(attr::SUBJECT)),
        }
        if let Some(status) = update.status {
            // The index keys follow the status; the customer and number never change.
            set.push(expr.equals(attr::STATUS, "status", string_attr(status.as_str())));
            let inbox = table::inbox_pk(&scope.app, status, table::inbox_shard(scope.chat));
            set.push(expr.equals(attr::GSI1PK, "inbox", string_attr(inbox)));
            let customer = table::customer_pk(&scope.app, status, &current.customer_id);
            set.push(expr.equals(attr::GSI2PK, "customer", string_attr(customer)));
        }
        let mut update_expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update_expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let mut condition = format!("attribute_exists({})", expr.name(attr::PK));
        if let Some(customer) = &scope.customer {
            condition.push_str(" AND ");
            condition.push_str(&expr.equals(
                attr::CUSTOMER_ID,
                "scope",
                string_attr(customer.as_str()),
            ));
        }
        let key = items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        let mut backoff = Backoff::new(self.retry, "the chat");
        let updated = loop {
            let result = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(key.clone()))
                .update_expression(&update_expression)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let item = out
                        .attributes
                        .ok_or_else(|| StoreError::corrupt("UpdateItem returned no item"))?;
                    break items::chat(&item)?;
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                        return Err(domain(DomainError::chat_not_found(scope.chat)));
                    }
                    _ if is_transaction_conflict(e.code()) => backoff.wait().await?,
                    _ => return Err(StoreError::request("UpdateItem", e)),
                },
            }
        };
        // A message sent in between moved the count: read the new last message.
        let last = if updated.messages_count == current.messages_count {
            current.last_message
        } else {
            self.last_message(&updated).await?
        };
        items::with_last_message(updated, last)
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

    /// One Query: the chat item sorts right after its messages, so reading down from it
    /// with `Limit 2` yields the chat and its last message.
    async fn do_chat(&self, scope: &ChatScope) -> StoreResult<Option<Chat>> {
        let mut expr = Expr::new();
        let condition = format!(
            "{} AND {} BETWEEN {} AND {}",
            expr.equals(
                attr::PK,
                "pk",
                string_attr(table::chat_pk(&scope.app, scope.chat))
            ),
            expr.name(attr::SK),
            expr.value("from", string_attr(table::MESSAGES_FROM)),
            expr.value("chat", string_attr(table::CHAT_SK)),
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

    /// One Query per index partition the filters select (in parallel), then one
    /// BatchGetItem per 100 chats for their last messages.
    async fn do_chats(&self, query: &ChatQuery) -> StoreResult<Vec<Chat>> {
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
        let partitions: Vec<(&str, &str, &str, String)> = match &query.customer {
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

    /// Up to `limit` (`None`: all) items of one index partition below `after`,
    /// descending, with their sort keys.
    async fn query_index(
        &self,
        index: &str,
        pk_attr: &str,
        sk_attr: &str,
        pk: String,
        after: Option<String>,
        limit: Option<u32>,
    ) -> StoreResult<Vec<(String, Item)>> {
        let mut expr = Expr::new();
        let mut condition = expr.equals(pk_attr, "pk", string_attr(pk));
        if let Some(after) = after {
            condition.push_str(&format!(
                " AND {} < {}",
                expr.name(sk_attr),
                expr.value("after", string_attr(after))
            ));
        }
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let remaining =
                limit.map(|l| i32::try_from(l as usize - found.len()).unwrap_or(i32::MAX));
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name(index)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .scan_index_forward(false)
                .set_limit(remaining)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let sk = items::string(&item, sk_attr)?.to_owned();
                found.push((sk, item));
            }
            start = out.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|l| found.len() >= l as usize) {
                return Ok(found);
            }
        }
    }

    async fn attach_last_messages(&self, chats: Vec<Chat>) -> StoreResult<Vec<Chat>> {
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

    /// Strongly consistent: the message a chat's count names was written in the same
    /// transaction as the count, so it is there.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let mut found = Vec::new();
        let mut pending = keys;
        let mut backoff = Backoff::new(self.retry, "a batch read");
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(build_error)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&*self.table, request)
                .send()
                .await
                .map_err(|e| StoreError::request("BatchGetItem", e))?;
            if let Some(mut responses) = out.responses {
                found.extend(responses.remove(&*self.table).unwrap_or_default());
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&*self.table))
                .map(|k| k.keys)
                .unwrap_or_default();
            if !pending.is_empty() {
                backoff.wait().await?;
            }
        }
        Ok(found)
    }

    // ---- messages -------------------------------------------------------------------------

    /// GetItem (the chat's count, times and watermarks) + TransactWriteItems { count n ->
    /// n + 1 and the sender's watermark to n + 1 if the chat is still as read; put the
    /// message if absent; put the clientMessageId key if absent; an agent's own watermark;
    /// the unread counters' deltas }: 2 requests. A retried clientMessageId: GetItem +
    /// cancelled transaction (which moved nothing) + GetItem of the message.
    async fn do_send_message(&self, new: &NewMessage) -> StoreResult<Sent> {
        let scope = &new.scope;
        let chat_key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        let _turn = self
            .lanes
            .enter(&table::chat_pk(&scope.app, scope.chat))
            .await;
        let mut backoff = Backoff::new(self.retry, "the chat's message count");
        // The chat as a lost race returned it: the next attempt starts from it unread.
        let mut known: Option<Chat> = None;
        loop {
            let chat = match known.take() {
                Some(chat) => chat,
                None => match self.visible_chat(scope).await? {
                    Some(chat) => chat,
                    None => return Err(domain(DomainError::chat_not_found(scope.chat))),
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
                    && let Some(message) = self.message_by_client_id(scope, id, None).await?
                {
                    return Ok(Sent {
                        message,
                        created: false,
                    });
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
                expr.equals(attr::GSI2SK, "activity", string_attr(activity)),
            ];
            let (set_index, remove_index) = unread_index_clauses(&mut expr, &chat, before, after);
            set.extend(set_index);
            let update = update_expression(&set, &remove_index);
            // The count, updatedAt and watermarks as read: every change of the chat moves
            // one of them.
            let mut condition = format!(
                "{} AND {} AND {}",
                expr.equals(attr::MESSAGES_COUNT, "count", number_attr(count)),
                expr.equals(attr::UPDATED_AT, "seen", number_attr(chat.updated_at.0)),
                watermarks_unchanged(&mut expr, before),
            );
            if let Some(customer) = &scope.customer {
                condition.push_str(" AND ");
                condition.push_str(&expr.equals(
                    attr::CUSTOMER_ID,
                    "scope",
                    string_attr(customer.as_str()),
                ));
            }
            // Cancellation reasons are read by position: the chat, the message, the key.
            let mut writes = vec![
                self.update(chat_key(), &update, Some(&condition), &expr)?,
                self.put_new(items::message_item(&message, &chat.customer_id, 1))?,
            ];
            if let Some(id) = &new.client_message_id {
                writes.push(self.put_new(items::client_message_id_item(
                    &scope.app, scope.chat, id, number,
                ))?);
            }
            if new.sender_role == Role::Agent {
                // Above any watermark this agent has (those are at most the old count); a
                // concurrent read of its own writes only over a lower watermark, so the
                // two never move it back.
                let own =
                    items::agent_read_item(&scope.app, scope.chat, &new.sender_id, number.get());
                writes.push(self.put(own, None, &Expr::new())?);
            }
            writes.extend(self.counter_writes(&chat, CounterChange::between(before, after))?);
            match self.transact(writes).await? {
                Transacted::Committed => {
                    return Ok(Sent {
                        message,
                        created: true,
                    });
                }
                Transacted::Cancelled(reasons) => {
                    if let Some(id) = &new.client_message_id
                        && condition_failed(reasons.get(2))
                    {
                        // Sent before: return that message, change nothing.
                        let known = reasons[2].item();
                        return match self.message_by_client_id(scope, id, known).await? {
                            Some(message) => Ok(Sent {
                                message,
                                created: false,
                            }),
                            None => Err(StoreError::corrupt(
                                "a clientMessageId key vanished".to_owned(),
                            )),
                        };
                    }
                    if condition_failed(reasons.get(1)) && !condition_failed(reasons.first()) {
                        return Err(StoreError::corrupt(format!(
                            "message {number} of chat {} exists beyond its count",
                            scope.chat
                        )));
                    }
                    if !lost_a_race(&reasons) {
                        return Err(cancelled(&reasons));
                    }
                    known = match reasons[0].item() {
                        Some(item) if condition_failed(reasons.first()) => {
                            Some(items::chat(item)?).filter(|c| visible_to(scope, &c.customer_id))
                        }
                        _ => None,
                    };
                    if known.is_some() {
                        backoff.again()?;
                    } else {
                        backoff.wait().await?;
                    }
                }
                Transacted::Conflict => backoff.wait().await?,
            }
        }
    }

    /// 1 GetItem (the message carries its chat's customer for the scope check).
    async fn do_message(
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
    async fn do_messages(
        &self,
        scope: &ChatScope,
        range: &MessageRange,
    ) -> StoreResult<Vec<Message>> {
        let low = range.after.map_or(1, |a| u64::from(a) + 1);
        let high = range.before.map(|b| u64::from(b).saturating_sub(1));
        if range.limit == 0 || high.is_some_and(|high| high < low) {
            return match self.visible_chat(scope).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(domain(DomainError::chat_not_found(scope.chat))),
            };
        }
        let includes_chat = high.is_none();
        let mut expr = Expr::new();
        let condition = format!(
            "{} AND {} BETWEEN {} AND {}",
            expr.equals(
                attr::PK,
                "pk",
                string_attr(table::chat_pk(&scope.app, scope.chat))
            ),
            expr.name(attr::SK),
            expr.value("low", string_attr(table::message_sk(low))),
            expr.value(
                "high",
                string_attr(high.map_or_else(|| table::CHAT_SK.to_owned(), table::message_sk)),
            ),
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
            return Err(domain(DomainError::chat_not_found(scope.chat)));
        }
        Ok(messages.into_iter().map(|(message, _)| message).collect())
    }

    /// 1 BatchGetItem (per 100 keys, in parallel): the chat item, for the scope, and the
    /// messages.
    async fn do_messages_by_number(
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
            return Err(domain(DomainError::chat_not_found(scope.chat)));
        }
        messages.sort_by_key(|m| m.number);
        Ok(messages)
    }

    /// 1 UpdateItem whose condition holds every rule (message present, chat visible to
    /// the scope, sender, not deleted). When it fails, the old item (returned by the
    /// failure) says which rule; a missing message costs 1 GetItem more to tell a missing
    /// chat from a missing message.
    async fn change_message(
        &self,
        change: &MessageChange,
        new_body: Option<&MessageBody>,
    ) -> StoreResult<Message> {
        let scope = &change.scope;
        let verb = if new_body.is_some() { "edit" } else { "delete" };
        let mut expr = Expr::new();
        let set = match new_body {
            Some(body) => format!(
                "SET {}, {}",
                expr.equals(attr::BODY, "body", string_attr(body.as_str())),
                expr.equals(attr::EDITED_AT, "now", number_attr(change.now.0)),
            ),
            None => format!(
                "SET {}, {}",
                expr.equals(attr::BODY, "body", string_attr("")),
                expr.equals(attr::DELETED, "deleted", AttributeValue::Bool(true)),
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
        if let Some(customer) = &scope.customer {
            condition.push_str(" AND ");
            condition.push_str(&expr.equals(
                attr::CUSTOMER_ID,
                "scope",
                string_attr(customer.as_str()),
            ));
        }
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
        let mut backoff = Backoff::new(self.retry, "the message");
        loop {
            let result = self
                .client
                .update_item()
                .table_name(&*self.table)
                .set_key(Some(key.clone()))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let failed = match result {
                Ok(out) => {
                    let item = out
                        .attributes
                        .ok_or_else(|| StoreError::corrupt("UpdateItem returned no item"))?;
                    return Ok(items::message(&item)?.0);
                }
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        failed.item().cloned()
                    }
                    _ if is_transaction_conflict(e.code()) => {
                        backoff.wait().await?;
                        continue;
                    }
                    _ => return Err(StoreError::request("UpdateItem", e)),
                },
            };
            let Some(old) = failed else {
                return Err(self.missing_message(scope, change.number).await);
            };
            let (message, customer) = items::message(&old)?;
            if !visible_to(scope, &customer) {
                return Err(domain(DomainError::chat_not_found(scope.chat)));
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
                    None => Ok(message),
                };
            }
            // Every rule holds now: the item changed between the check and the read.
            backoff.wait().await?;
        }
    }

    // ---- unread ---------------------------------------------------------------------------

    /// 1 read of the chat and the reader's own watermark (GetItem for a customer,
    /// BatchGetItem for an agent) + 1 TransactWriteItems { the chat's watermark (and its
    /// `unread` index keys) if the count and watermarks are as read; an agent's own
    /// watermark if still lower; the counters' deltas }: 2 requests, 1 when nothing moves.
    async fn do_mark_chat_read(&self, mark: &MarkRead) -> StoreResult<ReadReceipt> {
        let scope = &mark.scope;
        let reader = &mark.reader;
        let role = reader.role;
        let chat_key = || items::key(table::chat_pk(&scope.app, scope.chat), table::CHAT_SK);
        // Sends and reads of one chat in this process take turns, as sends do.
        let _turn = self
            .lanes
            .enter(&table::chat_pk(&scope.app, scope.chat))
            .await;
        let mut backoff = Backoff::new(self.retry, "the chat's read marks");
        loop {
            let Some((chat, own_before)) = self.chat_and_own_watermark(scope, reader).await? else {
                return Err(domain(DomainError::chat_not_found(scope.chat)));
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
                    "{} AND {}",
                    expr.equals(attr::MESSAGES_COUNT, "count", number_attr(last)),
                    watermarks_unchanged(&mut expr, before),
                );
                if let Some(customer) = &scope.customer {
                    condition.push_str(" AND ");
                    condition.push_str(&expr.equals(
                        attr::CUSTOMER_ID,
                        "scope",
                        string_attr(customer.as_str()),
                    ));
                }
                writes.push(self.update(chat_key(), &update, Some(&condition), &expr)?);
                writes.extend(self.counter_writes(&chat, CounterChange::between(before, after))?);
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
                let own =
                    items::agent_read_item(&scope.app, scope.chat, &reader.user_id, own_after);
                writes.push(self.put(own, Some(&condition), &expr)?);
            }
            if writes.is_empty() {
                return Ok(receipt);
            }
            match self.transact(writes).await? {
                Transacted::Committed => return Ok(receipt),
                Transacted::Cancelled(reasons) => {
                    if !lost_a_race(&reasons) {
                        return Err(cancelled(&reasons));
                    }
                    // A failed condition means another writer moved the chat or the
                    // watermark: read again at once. Otherwise wait for the other
                    // transaction to clear.
                    if reasons.iter().any(|r| condition_failed(Some(r))) {
                        backoff.again()?;
                    } else {
                        backoff.wait().await?;
                    }
                }
                Transacted::Conflict => backoff.wait().await?,
            }
        }
    }

    /// 1 request: an agent's team counter is 1 BatchGetItem of its shards (summed; a shard
    /// never written counts 0), a customer's 1 GetItem. Both consistent.
    async fn do_unread_summary(&self, reader: &UserIdentity) -> StoreResult<UnreadSummary> {
        let app = &reader.app;
        let counters = match reader.role {
            Role::Agent => {
                let keys = (0..table::UNREAD_SHARDS)
                    .map(|shard| items::key(table::team_unread_pk(app, shard), table::UNREAD_SK))
                    .collect();
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
        };
        for counter in &counters {
            let (messages, chats) = items::unread_counts(counter)?;
            summary.total_unread += messages;
            summary.unread_chats += chats;
        }
        Ok(summary)
    }

    /// An agent: 1 Query per `unread` index partition (4, in parallel, ascending from
    /// `after`, each at most `limit`), merged by number. A customer: 1 Query per status of
    /// the `customer` index (all its chats, which are few), keeping those with something
    /// unread for it.
    async fn do_unread_chats(
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

#[async_trait]
impl ChatStore for DynamoStore {
    async fn create_application(&self, new: NewApplication) -> Result<Application> {
        self.do_create_application(&new)
            .await
            .map_err(|e| e.into_domain("create_application"))
    }

    async fn update_application(
        &self,
        token: &AppToken,
        name: AppName,
        now: Timestamp,
    ) -> Result<Application> {
        self.do_update_application(token, &name, now)
            .await
            .map_err(|e| e.into_domain("update_application"))
    }

    /// 1 UpdateItem.
    async fn rotate_application_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Application> {
        self.do_rotate_application_secret(token, previous_expires_at, now)
            .await
            .map_err(|e| e.into_domain("rotate_application_secret"))
    }

    /// 1 GetItem.
    async fn application(&self, token: &AppToken) -> Result<Option<Application>> {
        let key = items::key(table::application_pk(token), table::APPLICATION_SK);
        async {
            self.get(key)
                .await?
                .as_ref()
                .map(items::application)
                .transpose()
        }
        .await
        .map_err(|e: StoreError| e.into_domain("application"))
    }

    async fn create_chat(&self, new: NewChat) -> Result<Chat> {
        self.do_create_chat(&new)
            .await
            .map_err(|e| e.into_domain("create_chat"))
    }

    async fn update_chat(&self, scope: &ChatScope, update: ChatUpdate) -> Result<Chat> {
        self.do_update_chat(scope, &update)
            .await
            .map_err(|e| e.into_domain("update_chat"))
    }

    async fn chat(&self, scope: &ChatScope) -> Result<Option<Chat>> {
        self.do_chat(scope).await.map_err(|e| e.into_domain("chat"))
    }

    async fn chats(&self, query: &ChatQuery) -> Result<Vec<Chat>> {
        self.do_chats(query)
            .await
            .map_err(|e| e.into_domain("chats"))
    }

    async fn send_message(&self, new: NewMessage) -> Result<Sent> {
        self.do_send_message(&new)
            .await
            .map_err(|e| e.into_domain("send_message"))
    }

    async fn message(&self, scope: &ChatScope, number: MessageNumber) -> Result<Option<Message>> {
        self.do_message(scope, number)
            .await
            .map_err(|e| e.into_domain("message"))
    }

    async fn messages(&self, scope: &ChatScope, range: &MessageRange) -> Result<Vec<Message>> {
        self.do_messages(scope, range)
            .await
            .map_err(|e| e.into_domain("messages"))
    }

    async fn edit_message(&self, change: MessageChange, body: MessageBody) -> Result<Message> {
        self.change_message(&change, Some(&body))
            .await
            .map_err(|e| e.into_domain("edit_message"))
    }

    async fn delete_message(&self, change: MessageChange) -> Result<Message> {
        self.change_message(&change, None)
            .await
            .map_err(|e| e.into_domain("delete_message"))
    }

    async fn messages_by_number(
        &self,
        scope: &ChatScope,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        self.do_messages_by_number(scope, numbers)
            .await
            .map_err(|e| e.into_domain("messages_by_number"))
    }

    async fn mark_chat_read(&self, mark: MarkRead) -> Result<ReadReceipt> {
        self.do_mark_chat_read(&mark)
            .await
            .map_err(|e| e.into_domain("mark_chat_read"))
    }

    async fn unread_summary(&self, reader: &UserIdentity) -> Result<UnreadSummary> {
        self.do_unread_summary(reader)
            .await
            .map_err(|e| e.into_domain("unread_summary"))
    }

    async fn unread_chats(
        &self,
        reader: &UserIdentity,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> Result<Vec<ChatNumber>> {
        self.do_unread_chats(reader, after, limit)
            .await
            .map_err(|e| e.into_domain("unread_chats"))
    }
}
