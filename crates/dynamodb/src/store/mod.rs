//! The [`ChatStore`] on DynamoDB, by aggregate: [`applications`], [`chats`], [`messages`],
//! [`unread`] (as the embedded store and the conformance suite divide it); the
//! [`PresenceStore`](chat_domain::PresenceStore), [`presence`]; and the
//! [`UploadStore`](chat_domain::attachments::UploadStore), [`uploads`]. Each operation
//! says in its comment how many requests it sends when nothing races; `tests/requests.rs`
//! holds them to it. Every conditional write is retried in one place,
//! [`conditional_write`]. This module holds the store, the request building blocks the
//! aggregates share, and the port's implementation, which maps the store's errors into the
//! domain's once.

mod applications;
mod assignment;
mod chats;
mod conditional_write;
mod messages;
mod presence;
mod unread;
mod uploads;
mod webhook_slots;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chat_domain::{
    AgentLoad, AppToken, Application, ApplicationUpdate, Assignment, Chat, ChatNumber, ChatQuery,
    ChatScope, ChatStore, ChatUpdate, DomainError, MarkRead, Message, MessageBody, MessageChange,
    MessageNumber, MessageRange, NewApplication, NewChat, NewMessage, ReadReceipt, Result, Route,
    Routed, RoutingStore, Sent, Timestamp, UnreadSummary, UserId, UserIdentity,
};

use self::conditional_write::WriterLanes;
use crate::backoff::{Backoff, RetryPolicy};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, string_attr};
use crate::table::attr;

/// The most keys one BatchGetItem may ask for.
const BATCH_GET_MAX_KEYS: usize = 100;

/// The DynamoDB [`ChatStore`]. Cheap to clone (clones share the writer lanes); build the
/// [`Client`] once per process and share it.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    retry: RetryPolicy,
    lanes: Arc<WriterLanes>,
}

/// Whether a chat of `customer` is visible in `scope` (a customer's scope sees its own only).
fn visible_to(scope: &ChatScope, customer: &UserId) -> bool {
    scope.customer.as_ref().is_none_or(|c| c == customer)
}

/// For a customer's scope, the condition that the chat (or message) is its own.
fn require_scope(condition: &mut String, expr: &mut Expr, scope: &ChatScope) {
    if let Some(customer) = &scope.customer {
        condition.push_str(" AND ");
        condition.push_str(&expr.equals(
            attr::CUSTOMER_ID,
            "scope",
            string_attr(customer.as_str()),
        ));
    }
}

/// The key condition of a Query over one chat's partition, sort keys from `low` to `high`
/// (messages are `MSG#<number>`, the chat item `MSG#META` right after them).
fn chat_partition_between(expr: &mut Expr, scope: &ChatScope, low: String, high: String) -> String {
    format!(
        "{} AND {} BETWEEN {} AND {}",
        expr.equals(
            attr::PK,
            "pk",
            string_attr(crate::table::chat_pk(&scope.app, scope.chat))
        ),
        expr.name(attr::SK),
        expr.value("low", string_attr(low)),
        expr.value("high", string_attr(high)),
    )
}

fn domain(e: DomainError) -> StoreError {
    StoreError::Domain(e)
}

fn app_not_found(token: &AppToken) -> StoreError {
    domain(DomainError::application_not_found(token))
}

fn chat_not_found(scope: &ChatScope) -> StoreError {
    domain(DomainError::chat_not_found(scope.chat))
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::corrupt_because("a request could not be built", e)
}

/// `SET a, b [REMOVE c, d]`.
/// A conditional single-item write's answer: `Some` when it wrote, `None` when its
/// condition failed (not an error: the caller says what that means).
fn conditional<T, E, R>(
    result: std::result::Result<T, SdkError<E, R>>,
    request: &'static str,
) -> StoreResult<Option<T>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(None),
        Err(e) => Err(StoreError::request(request, e)),
    }
}

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

    /// Strongly consistent: the message a chat's count names was written in the same
    /// transaction as the count, so it is there.
    async fn batch_get(&self, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        self.batch_get_reading(keys, true).await
    }

    /// BatchGetItem until every key is answered; `consistent` or eventually consistent
    /// (half the read units).
    async fn batch_get_reading(&self, keys: Vec<Item>, consistent: bool) -> StoreResult<Vec<Item>> {
        let mut found = Vec::new();
        let mut pending = keys;
        let mut backoff = Backoff::new(self.retry, "a batch read");
        while !pending.is_empty() {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(consistent)
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

    /// A Put for a transaction.
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

    /// A Put for a transaction, only if the key is free.
    fn put_new(&self, item: Item) -> StoreResult<TransactWriteItem> {
        let mut expr = Expr::new();
        let condition = format!("attribute_not_exists({})", expr.name(attr::PK));
        self.put(item, Some(&condition), &expr)
    }

    /// An Update, for a transaction ([`Self::update`]) or alone (an UpdateItem of
    /// [`conditional_write`]).
    fn update_request(
        &self,
        key: Item,
        update: &str,
        condition: Option<&str>,
        expr: &Expr,
    ) -> StoreResult<Update> {
        Update::builder()
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
            .map_err(build_error)
    }

    /// An Update for a transaction.
    fn update(
        &self,
        key: Item,
        update: &str,
        condition: Option<&str>,
        expr: &Expr,
    ) -> StoreResult<TransactWriteItem> {
        let update = self.update_request(key, update, condition, expr)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl RoutingStore for DynamoStore {
    async fn agent_loads(&self, app: &AppToken, agents: &[UserId]) -> Result<Vec<AgentLoad>> {
        self.loads_of(app, agents)
            .await
            .map_err(|e| e.into_domain("agent_loads"))
    }

    async fn route_chat(&self, route: &Route) -> Result<Routed> {
        self.route(route)
            .await
            .map_err(|e| e.into_domain("route_chat"))
    }

    async fn waiting_chats(&self, app: &AppToken, limit: u32) -> Result<Vec<Chat>> {
        self.waiting(app, limit)
            .await
            .map_err(|e| e.into_domain("waiting_chats"))
    }
}

#[async_trait]
impl ChatStore for DynamoStore {
    async fn create_application(&self, new: NewApplication) -> Result<Application> {
        self.insert_application(&new)
            .await
            .map_err(|e| e.into_domain("create_application"))
    }

    async fn update_application(
        &self,
        token: &AppToken,
        update: ApplicationUpdate,
    ) -> Result<Application> {
        self.change_application(token, &update)
            .await
            .map_err(|e| e.into_domain("update_application"))
    }

    async fn rotate_application_secret(
        &self,
        token: &AppToken,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Application> {
        self.rotate_secret(token, previous_expires_at, now)
            .await
            .map_err(|e| e.into_domain("rotate_application_secret"))
    }

    async fn application(&self, token: &AppToken) -> Result<Option<Application>> {
        self.find_application(token)
            .await
            .map_err(|e| e.into_domain("application"))
    }

    async fn create_chat(&self, new: NewChat) -> Result<Chat> {
        self.open_chat(&new)
            .await
            .map_err(|e| e.into_domain("create_chat"))
    }

    async fn update_chat(&self, scope: &ChatScope, update: ChatUpdate) -> Result<Chat> {
        self.change_chat(scope, &update)
            .await
            .map_err(|e| e.into_domain("update_chat"))
    }

    async fn assign_chat(&self, assignment: Assignment) -> Result<Chat> {
        self.assign(&assignment)
            .await
            .map_err(|e| e.into_domain("assign_chat"))
    }

    async fn chat(&self, scope: &ChatScope) -> Result<Option<Chat>> {
        self.chat_with_last_message(scope)
            .await
            .map_err(|e| e.into_domain("chat"))
    }

    async fn chats(&self, query: &ChatQuery) -> Result<Vec<Chat>> {
        self.chats_page(query)
            .await
            .map_err(|e| e.into_domain("chats"))
    }

    async fn send_message(&self, new: NewMessage) -> Result<Sent> {
        self.append_message(&new, &[])
            .await
            .map_err(|e| e.into_domain("send_message"))
    }

    async fn message(&self, scope: &ChatScope, number: MessageNumber) -> Result<Option<Message>> {
        self.visible_message(scope, number)
            .await
            .map_err(|e| e.into_domain("message"))
    }

    async fn messages(&self, scope: &ChatScope, range: &MessageRange) -> Result<Vec<Message>> {
        self.messages_in_range(scope, range)
            .await
            .map_err(|e| e.into_domain("messages"))
    }

    async fn edit_message(&self, change: MessageChange, body: MessageBody) -> Result<Message> {
        self.change_message(&change, Some(&body))
            .await
            .map(|(message, _)| message)
            .map_err(|e| e.into_domain("edit_message"))
    }

    async fn delete_message(&self, change: MessageChange) -> Result<Message> {
        let (deleted, has_attachments) = self
            .change_message(&change, None)
            .await
            .map_err(|e| e.into_domain("delete_message"))?;
        // Its attachments leave with it (and a retried delete finishes what a failed one
        // left).
        if has_attachments {
            self.release_attachments(&change.scope, change.number)
                .await
                .map_err(|e| e.into_domain("delete_message"))?;
        }
        Ok(deleted)
    }

    async fn messages_by_number(
        &self,
        scope: &ChatScope,
        numbers: &[MessageNumber],
    ) -> Result<Vec<Message>> {
        self.messages_numbered(scope, numbers)
            .await
            .map_err(|e| e.into_domain("messages_by_number"))
    }

    async fn mark_chat_read(&self, mark: MarkRead) -> Result<ReadReceipt> {
        self.move_read_marks(&mark)
            .await
            .map_err(|e| e.into_domain("mark_chat_read"))
    }

    async fn unread_summary(&self, reader: &UserIdentity) -> Result<UnreadSummary> {
        self.sum_unread_counters(reader)
            .await
            .map_err(|e| e.into_domain("unread_summary"))
    }

    async fn unread_chats(
        &self,
        reader: &UserIdentity,
        after: Option<ChatNumber>,
        limit: u32,
    ) -> Result<Vec<ChatNumber>> {
        self.unread_chats_page(reader, after, limit)
            .await
            .map_err(|e| e.into_domain("unread_chats"))
    }
}
