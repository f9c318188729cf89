//! Webhook endpoints and deliveries on the one table: the
//! [`WebhookEndpoints`](chat_domain::webhooks::WebhookEndpoints) port, and what the AWS
//! functions add to it (recording an event's deliveries from the stream, loading a
//! delivery to send, recording an attempt of a loaded delivery, paging through an
//! endpoint's PENDING deliveries when it is enabled again).
//!
//! | item | PK | SK | GSI1 (`inbox`) |
//! |---|---|---|---|
//! | webhook endpoint | `WEBHOOKS#<token>` | `EP#<endpointId>` | |
//! | the application's endpoint count | `WEBHOOKS#<token>` | `COUNT` | |
//! | webhook delivery | `WHDLV#<deliveryId>` | `DLV` | `WHDLV#<token>#<endpointId>` / `<createdAt:015>#<deliveryId>` |
//! | an endpoint's send slot (`webhook_slots`) | `WHSLOT#<token>#<endpointId>#<slot>` | `SLOT` | |
//!
//! - An application's endpoints (at most ten) are one partition: listing them, and finding
//!   the ones an event goes to, is one Query. Creating one moves the count in the same
//!   transaction, conditioned on the count being below the limit and on the application.
//! - A delivery is a partition of its own, so the sender, redelivery and recording an
//!   attempt find it by id (one GetItem); the endpoint's deliveries, newest first, are one
//!   Query of GSI1 (eventually consistent, like the inbox), and so are its PENDING ones,
//!   filtered from them page by page (needed only when an endpoint is enabled again: no
//!   index of their own).
//! - The stream feed names each event and each of its deliveries deterministically
//!   (`EventId::derive`, `DeliveryId::derive(event, endpoint)`) and puts a delivery only if
//!   its key is free: a stream batch seen twice records nothing twice.
//! - The JSON body is kept on the delivery (every attempt sends the same bytes); finished
//!   deliveries get a `ttl` ([`DELIVERY_RETENTION_MS`] later) and DynamoDB removes them.
//!   Pending ones never expire.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, WriteRequest,
};
use chat_domain::webhooks::{
    AttemptOutcome, DELIVERY_RETENTION_MS, Delivery, DeliveryCursor, DeliveryId, DeliveryStatus,
    DisablePolicy, DueDelivery, Endpoint, EndpointId, EndpointUpdate, EventType, EventTypes,
    WEBHOOK_ENDPOINTS_MAX, WebhookEndpoints, WebhookEvent, WebhookUrl, event_mask,
};
use chat_domain::{AppToken, DomainError, Result, Timestamp};

pub use super::webhook_slots::{SLOT_TYPE, SlotLease};
use super::{DynamoStore, app_not_found, build_error, domain};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, attr};

/// Item types (`type`).
pub const ENDPOINT_TYPE: &str = "WHEP";
pub const COUNT_TYPE: &str = "WHCOUNT";
pub const DELIVERY_TYPE: &str = "WHDLV";

/// The sort key of every delivery item.
const DELIVERY_SK: &str = "DLV";
const COUNT_SK: &str = "COUNT";

mod a {
    pub const ENDPOINT_ID: &str = "endpointId";
    pub const URL: &str = "url";
    pub const EVENTS: &str = "events";
    pub const ENABLED: &str = "enabled";
    pub const DISABLED_REASON: &str = "disabledReason";
    pub const CONSECUTIVE_FAILURES: &str = "consecutiveFailures";
    pub const FAILING_SINCE: &str = "failingSince";
    pub const ENDPOINTS_COUNT: &str = "endpointsCount";
    pub const DELIVERY_ID: &str = "deliveryId";
    pub const EVENT_ID: &str = "eventId";
    pub const EVENT_TYPE: &str = "eventType";
    pub const ATTEMPTS: &str = "attempts";
    pub const LAST_RESPONSE_CODE: &str = "lastResponseCode";
    pub const LAST_ERROR: &str = "lastError";
    pub const LAST_ATTEMPT_AT: &str = "lastAttemptAt";
    pub const NEXT_ATTEMPT_AT: &str = "nextAttemptAt";
    /// Set on a delivery made by redeliver: the stream feed hands those to the queue.
    pub const REDELIVERY: &str = "redelivery";
}

pub fn endpoints_pk(app: &AppToken) -> String {
    format!("WEBHOOKS#{app}")
}

fn endpoint_key(app: &AppToken, id: &EndpointId) -> Item {
    items::key(endpoints_pk(app), format!("EP#{id}"))
}

fn count_key(app: &AppToken) -> Item {
    items::key(endpoints_pk(app), COUNT_SK)
}

fn delivery_key(id: &DeliveryId) -> Item {
    items::key(format!("WHDLV#{id}"), DELIVERY_SK)
}

fn deliveries_pk(app: &AppToken, endpoint: &EndpointId) -> String {
    format!("WHDLV#{app}#{endpoint}")
}

fn deliveries_sk(created_at: Timestamp, id: &DeliveryId) -> String {
    format!("{:015}#{id}", created_at.0.max(0))
}

/// The cursor a GSI1 sort key (`<createdAt:015>#<deliveryId>`) stands for.
fn delivery_cursor_of(sk: &str) -> StoreResult<DeliveryCursor> {
    let bad = || StoreError::corrupt(format!("delivery sort key {sk:?}"));
    let (created_at, id) = sk.split_once('#').ok_or_else(bad)?;
    Ok(DeliveryCursor {
        created_at: Timestamp(created_at.parse().map_err(|_| bad())?),
        id: DeliveryId::parse(id).map_err(|e| corrupt("delivery sort key", e))?,
    })
}

fn endpoint_not_found(id: &EndpointId) -> StoreError {
    domain(DomainError::NotFound(format!(
        "webhook endpoint {id} not found"
    )))
}

fn delivery_not_found(id: &DeliveryId) -> StoreError {
    domain(DomainError::NotFound(format!(
        "webhook delivery {id} not found"
    )))
}

fn opt_string(value: Option<&str>) -> Option<AttributeValue> {
    value.map(string_attr)
}

fn set_optional(item: &mut Item, name: &str, value: Option<AttributeValue>) {
    if let Some(value) = value {
        item.insert(name.to_owned(), value);
    }
}

fn endpoint_item(e: &Endpoint) -> Item {
    let mut item: Item = items::key(endpoints_pk(&e.app), format!("EP#{}", e.id));
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put(attr::TYPE, string_attr(ENDPOINT_TYPE));
    put(attr::APP, string_attr(e.app.as_str()));
    put(a::ENDPOINT_ID, string_attr(e.id.as_str()));
    put(a::URL, string_attr(e.url.as_str()));
    put(a::EVENTS, number_attr(e.events.mask()));
    put(a::ENABLED, AttributeValue::Bool(e.enabled));
    put(attr::SECRET_GENERATION, number_attr(e.secret_generation));
    put(a::CONSECUTIVE_FAILURES, number_attr(e.consecutive_failures));
    put(attr::CREATED_AT, number_attr(e.created_at.0));
    put(attr::UPDATED_AT, number_attr(e.updated_at.0));
    set_optional(
        &mut item,
        a::DISABLED_REASON,
        opt_string(e.disabled_reason.as_deref()),
    );
    set_optional(
        &mut item,
        attr::PREVIOUS_SECRET_EXPIRES_AT,
        e.previous_secret_expires_at.map(|t| number_attr(t.0)),
    );
    set_optional(
        &mut item,
        a::FAILING_SINCE,
        e.failing_since.map(|t| number_attr(t.0)),
    );
    item
}

fn corrupt(what: &str, e: DomainError) -> StoreError {
    StoreError::corrupt_because(what.to_owned(), e)
}

fn bool_of(item: &Item, name: &str) -> StoreResult<bool> {
    match item.get(name) {
        Some(AttributeValue::Bool(b)) => Ok(*b),
        None => Ok(false),
        Some(_) => Err(StoreError::corrupt(format!("{name} is not a boolean"))),
    }
}

fn timestamp_of(item: &Item, name: &str) -> StoreResult<Timestamp> {
    items::number::<i64>(item, name).map(Timestamp)
}

fn optional_timestamp_of(item: &Item, name: &str) -> StoreResult<Option<Timestamp>> {
    Ok(items::optional_number::<i64>(item, name)?.map(Timestamp))
}

fn endpoint_of(item: &Item) -> StoreResult<Endpoint> {
    let app =
        AppToken::parse(items::string(item, attr::APP)?).map_err(|e| corrupt("endpoint app", e))?;
    Ok(Endpoint {
        app,
        id: EndpointId::parse(items::string(item, a::ENDPOINT_ID)?)
            .map_err(|e| corrupt("endpoint id", e))?,
        url: WebhookUrl::stored(items::string(item, a::URL)?)
            .map_err(|e| corrupt("endpoint url", e))?,
        events: EventTypes::from_mask(items::number(item, a::EVENTS)?)
            .map_err(|e| corrupt("endpoint events", e))?,
        enabled: bool_of(item, a::ENABLED)?,
        disabled_reason: items::optional_string(item, a::DISABLED_REASON)?.map(str::to_owned),
        secret_generation: items::number(item, attr::SECRET_GENERATION)?,
        previous_secret_expires_at: optional_timestamp_of(item, attr::PREVIOUS_SECRET_EXPIRES_AT)?,
        consecutive_failures: items::optional_number(item, a::CONSECUTIVE_FAILURES)?.unwrap_or(0),
        failing_since: optional_timestamp_of(item, a::FAILING_SINCE)?,
        created_at: timestamp_of(item, attr::CREATED_AT)?,
        updated_at: timestamp_of(item, attr::UPDATED_AT)?,
    })
}

/// A new PENDING delivery's item.
fn delivery_item(
    app: &AppToken,
    delivery: &Delivery,
    body: &str,
    redelivery: bool,
) -> StoreResult<Item> {
    let mut item = delivery_key(&delivery.id);
    let mut put = |name: &str, value: AttributeValue| {
        item.insert(name.to_owned(), value);
    };
    put(attr::TYPE, string_attr(DELIVERY_TYPE));
    put(attr::APP, string_attr(app.as_str()));
    put(a::ENDPOINT_ID, string_attr(delivery.endpoint.as_str()));
    put(a::DELIVERY_ID, string_attr(delivery.id.as_str()));
    put(a::EVENT_ID, string_attr(delivery.event_id.as_str()));
    put(a::EVENT_TYPE, string_attr(delivery.event_type.as_str()));
    put(attr::STATUS, string_attr(delivery.status.as_str()));
    put(a::ATTEMPTS, number_attr(delivery.attempts));
    put(attr::CREATED_AT, number_attr(delivery.created_at.0));
    put(attr::BODY, string_attr(body));
    put(
        attr::GSI1PK,
        string_attr(deliveries_pk(app, &delivery.endpoint)),
    );
    put(
        attr::GSI1SK,
        string_attr(deliveries_sk(delivery.created_at, &delivery.id)),
    );
    if let Some(next) = delivery.next_attempt_at {
        put(a::NEXT_ATTEMPT_AT, number_attr(next.0));
    }
    if redelivery {
        put(a::REDELIVERY, AttributeValue::Bool(true));
    }
    Ok(item)
}

/// A delivery item: the delivery, its application and its body.
fn delivery_of(item: &Item) -> StoreResult<(Delivery, AppToken, String)> {
    let app =
        AppToken::parse(items::string(item, attr::APP)?).map_err(|e| corrupt("delivery app", e))?;
    let delivery = Delivery {
        id: DeliveryId::parse(items::string(item, a::DELIVERY_ID)?)
            .map_err(|e| corrupt("delivery id", e))?,
        endpoint: EndpointId::parse(items::string(item, a::ENDPOINT_ID)?)
            .map_err(|e| corrupt("delivery endpoint", e))?,
        event_id: chat_domain::webhooks::EventId::parse(items::string(item, a::EVENT_ID)?)
            .map_err(|e| corrupt("delivery event", e))?,
        event_type: EventType::parse(items::string(item, a::EVENT_TYPE)?)
            .map_err(|e| corrupt("delivery event type", e))?,
        status: DeliveryStatus::parse(items::string(item, attr::STATUS)?)
            .map_err(|e| corrupt("delivery status", e))?,
        attempts: items::number(item, a::ATTEMPTS)?,
        last_response_code: items::optional_number(item, a::LAST_RESPONSE_CODE)?,
        last_error: items::optional_string(item, a::LAST_ERROR)?.map(str::to_owned),
        last_attempt_at: optional_timestamp_of(item, a::LAST_ATTEMPT_AT)?,
        next_attempt_at: optional_timestamp_of(item, a::NEXT_ATTEMPT_AT)?,
        created_at: timestamp_of(item, attr::CREATED_AT)?,
    };
    let body = items::string(item, attr::BODY)?.to_owned();
    Ok((delivery, app, body))
}

/// Whether a delivery item was written by redeliver (the stream feed queues those).
pub fn is_redelivery(item: &Item) -> bool {
    matches!(item.get(a::REDELIVERY), Some(AttributeValue::Bool(true)))
}

/// A delivery item's id, application and endpoint (for the stream feed), or `None` when
/// the item is not a delivery.
pub fn delivery_ref(item: &Item) -> StoreResult<Option<(AppToken, EndpointId, DeliveryId)>> {
    if !items::is_type(item, DELIVERY_TYPE) {
        return Ok(None);
    }
    let (delivery, app, _) = delivery_of(item)?;
    Ok(Some((app, delivery.endpoint, delivery.id)))
}

/// Why a transaction was cancelled: each item's cancellation code (`None`: no reason).
enum Transacted {
    Applied,
    Cancelled(Vec<Option<String>>),
}

/// A delivery loaded for sending, and where recording its attempt starts from.
#[derive(Debug, Clone)]
pub struct LoadedDelivery {
    pub due: DueDelivery,
    pub app: AppToken,
}

impl DynamoStore {
    async fn transact_items(&self, items: Vec<TransactWriteItem>) -> StoreResult<Transacted> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Transacted::Applied),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                    Ok(Transacted::Cancelled(
                        c.cancellation_reasons()
                            .iter()
                            .map(|r| r.code().filter(|c| *c != "None").map(str::to_owned))
                            .collect(),
                    ))
                }
                _ => Err(StoreError::request("TransactWriteItems", e)),
            },
        }
    }

    /// 1 TransactWriteItems: the application exists, the count moves below the limit, the
    /// endpoint's key is free.
    async fn put_endpoint(&self, endpoint: &Endpoint) -> StoreResult<Endpoint> {
        let mut app_expr = Expr::new();
        let app_exists = format!("attribute_exists({})", app_expr.name(attr::PK));
        let check = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(items::key(
                table::application_pk(&endpoint.app),
                table::APPLICATION_SK,
            )))
            .condition_expression(app_exists)
            .set_expression_attribute_names(app_expr.names())
            .build()
            .map_err(build_error)?;
        let mut expr = Expr::new();
        let count = expr.name(a::ENDPOINTS_COUNT);
        let update = format!(
            "SET {count} = if_not_exists({count}, {zero}) + {one}, {}",
            expr.equals(attr::TYPE, "type", string_attr(COUNT_TYPE)),
            zero = expr.value("zero", number_attr(0)),
            one = expr.value("one", number_attr(1)),
        );
        let condition = format!(
            "attribute_not_exists({count}) OR {count} < {}",
            expr.value("max", number_attr(WEBHOOK_ENDPOINTS_MAX))
        );
        let writes = vec![
            TransactWriteItem::builder().condition_check(check).build(),
            self.update(count_key(&endpoint.app), &update, Some(&condition), &expr)?,
            self.put_new(endpoint_item(endpoint))?,
        ];
        match self.transact_items(writes).await? {
            Transacted::Applied => Ok(endpoint.clone()),
            Transacted::Cancelled(reasons) => {
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .and_then(Option::as_deref)
                        .is_some_and(|c| c == "ConditionalCheckFailed")
                };
                if failed(0) {
                    Err(app_not_found(&endpoint.app))
                } else if failed(1) {
                    Err(domain(DomainError::Conflict(format!(
                        "an application has at most {WEBHOOK_ENDPOINTS_MAX} webhook endpoints"
                    ))))
                } else {
                    Err(StoreError::Cancelled {
                        reasons: format!("{reasons:?}"),
                        throttled: reasons.iter().flatten().any(|c| {
                            crate::error::is_throttling_code(Some(c.as_str()))
                                || c == "TransactionConflict"
                        }),
                    })
                }
            }
        }
    }

    /// 1 UpdateItem on the endpoint (if it exists), returning it as updated.
    async fn update_endpoint_item(
        &self,
        app: &AppToken,
        id: &EndpointId,
        expr: &Expr,
        update: &str,
        extra_condition: Option<&str>,
    ) -> StoreResult<Option<Item>> {
        let mut names = expr.names().unwrap_or_default();
        names.insert("#PK".into(), attr::PK.into());
        let mut condition = "attribute_exists(#PK)".to_owned();
        if let Some(extra) = extra_condition {
            condition.push_str(" AND ");
            condition.push_str(extra);
        }
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(endpoint_key(app, id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(expr.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(super::conditional(result, "UpdateItem")?.and_then(|out| out.attributes))
    }

    async fn change_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
        change: &EndpointUpdate,
        now: Timestamp,
    ) -> StoreResult<Endpoint> {
        let mut expr = Expr::new();
        let mut set = vec![expr.equals(attr::UPDATED_AT, "now", number_attr(now.0))];
        let mut remove = Vec::new();
        if let Some(url) = &change.url {
            set.push(expr.equals(a::URL, "url", string_attr(url.as_str())));
        }
        if let Some(events) = change.events {
            set.push(expr.equals(a::EVENTS, "events", number_attr(events.mask())));
        }
        if let Some(enabled) = change.enabled {
            set.push(expr.equals(a::ENABLED, "enabled", AttributeValue::Bool(enabled)));
            if enabled {
                set.push(expr.equals(a::CONSECUTIVE_FAILURES, "zero", number_attr(0)));
                remove.push(expr.name(a::DISABLED_REASON));
                remove.push(expr.name(a::FAILING_SINCE));
            }
        }
        let update = super::update_expression(&set, &remove);
        let item = self
            .update_endpoint_item(app, id, &expr, &update, None)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        endpoint_of(&item)
    }

    async fn rotate_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Endpoint> {
        let mut expr = Expr::new();
        let generation = expr.name(attr::SECRET_GENERATION);
        let update = format!(
            "SET {generation} = {generation} + {}, {}, {}",
            expr.value("one", number_attr(1)),
            expr.equals(
                attr::PREVIOUS_SECRET_EXPIRES_AT,
                "expires",
                number_attr(previous_expires_at.0)
            ),
            expr.equals(attr::UPDATED_AT, "now", number_attr(now.0)),
        );
        let item = self
            .update_endpoint_item(app, id, &expr, &update, None)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        endpoint_of(&item)
    }

    /// 1 TransactWriteItems (the endpoint and its count), then its deliveries: 1 Query of
    /// GSI1 and 1 BatchWriteItem per 25.
    async fn remove_endpoint(&self, app: &AppToken, id: &EndpointId) -> StoreResult<bool> {
        let mut expr = Expr::new();
        let exists = format!("attribute_exists({})", expr.name(attr::PK));
        let delete = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(endpoint_key(app, id)))
            .condition_expression(exists)
            .set_expression_attribute_names(expr.names())
            .build()
            .map_err(build_error)?;
        let mut count_expr = Expr::new();
        let count_update = format!(
            "ADD {} {}",
            count_expr.name(a::ENDPOINTS_COUNT),
            count_expr.value("minus", number_attr(-1))
        );
        let writes = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.update(count_key(app), &count_update, None, &count_expr)?,
        ];
        match self.transact_items(writes).await? {
            Transacted::Applied => {}
            Transacted::Cancelled(reasons)
                if reasons.first().and_then(Option::as_deref) == Some("ConditionalCheckFailed") =>
            {
                return Ok(false);
            }
            Transacted::Cancelled(reasons) => {
                return Err(StoreError::Cancelled {
                    reasons: format!("{reasons:?}"),
                    throttled: true,
                });
            }
        }
        loop {
            let page = self
                .query_index(
                    table::INBOX_INDEX,
                    attr::GSI1PK,
                    attr::GSI1SK,
                    deliveries_pk(app, id),
                    None,
                    Some(25),
                )
                .await?;
            if page.is_empty() {
                return Ok(true);
            }
            let mut requests: Vec<WriteRequest> = Vec::new();
            for (_, item) in &page {
                let key: HashMap<String, AttributeValue> = [attr::PK, attr::SK]
                    .into_iter()
                    .filter_map(|k| item.get(k).map(|v| (k.to_owned(), v.clone())))
                    .collect();
                let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map_err(build_error)?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
            let mut pending = requests;
            let mut backoff = crate::backoff::Backoff::new(self.retry, "deleting deliveries");
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&*self.table, pending)
                    .send()
                    .await
                    .map_err(|e| StoreError::request("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&*self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    backoff.wait().await?;
                }
            }
        }
    }

    async fn find_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
    ) -> StoreResult<Option<Endpoint>> {
        self.get(endpoint_key(app, id))
            .await?
            .as_ref()
            .map(endpoint_of)
            .transpose()
    }

    /// 1 Query of the application's endpoint partition.
    async fn list_endpoints(&self, app: &AppToken) -> StoreResult<Vec<Endpoint>> {
        let mut expr = Expr::new();
        let condition = format!(
            "{} AND begins_with({}, {})",
            expr.equals(attr::PK, "pk", string_attr(endpoints_pk(app))),
            expr.name(attr::SK),
            expr.value("prefix", string_attr("EP#")),
        );
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::request("Query", e))?;
        let mut endpoints = out
            .items
            .unwrap_or_default()
            .iter()
            .map(endpoint_of)
            .collect::<StoreResult<Vec<_>>>()?;
        endpoints.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));
        Ok(endpoints)
    }

    /// 1 GetItem of the endpoint (NotFound) and 1 Query of GSI1.
    async fn list_deliveries(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        if self.find_endpoint(app, endpoint).await?.is_none() {
            return Err(endpoint_not_found(endpoint));
        }
        let page = self
            .query_index(
                table::INBOX_INDEX,
                attr::GSI1PK,
                attr::GSI1SK,
                deliveries_pk(app, endpoint),
                after.map(|c| deliveries_sk(c.created_at, &c.id)),
                Some(limit),
            )
            .await?;
        page.iter()
            .map(|(_, item)| delivery_of(item).map(|(d, _, _)| d))
            .collect()
    }

    async fn find_delivery(
        &self,
        id: &DeliveryId,
    ) -> StoreResult<Option<(Delivery, AppToken, String)>> {
        self.get(delivery_key(id))
            .await?
            .as_ref()
            .map(delivery_of)
            .transpose()
    }

    /// 1 GetItem of the delivery, 1 PutItem of the new one (the stream feed queues it).
    async fn repeat_delivery(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        id: &DeliveryId,
        now: Timestamp,
    ) -> StoreResult<Delivery> {
        let Some((old, old_app, body)) = self.find_delivery(id).await? else {
            return Err(delivery_not_found(id));
        };
        if &old_app != app || &old.endpoint != endpoint {
            return Err(delivery_not_found(id));
        }
        let again = Delivery {
            id: DeliveryId::generate(),
            endpoint: endpoint.clone(),
            event_id: old.event_id,
            event_type: old.event_type,
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_response_code: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: Some(now),
            created_at: now,
        };
        let item = delivery_item(app, &again, &body, true)?;
        self.client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::request("PutItem", e))?;
        Ok(again)
    }

    /// Records `event`'s deliveries: 1 Query of the application's endpoints, then per
    /// enabled endpoint subscribed to its type 1 PutItem of a delivery named by (event,
    /// endpoint), only if that key is free. Answers the deliveries to hand to the queue:
    /// those put now, and those already there that were never attempted (the batch that put
    /// them may have failed before queueing them; the sender drops a duplicate).
    pub async fn record_event(&self, event: &WebhookEvent) -> Result<Vec<Delivery>> {
        self.record_event_deliveries(event)
            .await
            .map_err(|e| e.into_domain("record_webhook_event"))
    }

    async fn record_event_deliveries(&self, event: &WebhookEvent) -> StoreResult<Vec<Delivery>> {
        let endpoints = self.list_endpoints(&event.app).await?;
        let body = event.body();
        let mut queued = Vec::new();
        for endpoint in endpoints
            .iter()
            .filter(|e| e.enabled && e.events.contains(event.event_type))
        {
            let delivery = Delivery {
                id: DeliveryId::derive(&[event.id.as_str(), endpoint.id.as_str()]),
                endpoint: endpoint.id.clone(),
                event_id: event.id.clone(),
                event_type: event.event_type,
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_response_code: None,
                last_error: None,
                last_attempt_at: None,
                next_attempt_at: Some(event.created_at),
                created_at: event.created_at,
            };
            let mut expr = Expr::new();
            let free = format!("attribute_not_exists({})", expr.name(attr::PK));
            let result = self
                .client
                .put_item()
                .table_name(&*self.table)
                .set_item(Some(delivery_item(&event.app, &delivery, &body, false)?))
                .condition_expression(free)
                .set_expression_attribute_names(expr.names())
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            match result {
                Ok(_) => queued.push(delivery),
                Err(e) => match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        let existing = failed.item().map(delivery_of).transpose()?;
                        if let Some((existing, _, _)) = existing
                            && existing.status == DeliveryStatus::Pending
                            && existing.attempts == 0
                        {
                            queued.push(existing);
                        }
                    }
                    _ => return Err(StoreError::request("PutItem", e)),
                },
            }
        }
        Ok(queued)
    }

    /// Whether an enabled endpoint of the application subscribes to `event_type`: 1 Query.
    pub async fn subscribes(&self, app: &AppToken, event_type: EventType) -> Result<bool> {
        let mask = event_mask(event_type);
        self.list_endpoints(app)
            .await
            .map(|all| all.iter().any(|e| e.enabled && e.events.mask() & mask != 0))
            .map_err(|e| e.into_domain("webhook_subscribes"))
    }

    /// A delivery with its endpoint, for sending: 1 BatchGetItem of both. `None` when
    /// either is gone.
    pub async fn load_delivery(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        id: &DeliveryId,
    ) -> Result<Option<DueDelivery>> {
        self.load(app, endpoint, id)
            .await
            .map_err(|e| e.into_domain("load_webhook_delivery"))
    }

    /// One page of an endpoint's PENDING deliveries, for resuming them when the endpoint is
    /// enabled again: 1 Query of GSI1, newest first from `after`, examining at most `limit`
    /// deliveries of any status (the filter keeps the PENDING ones; DynamoDB reads, and
    /// charges for, what it examines). The cursor of the next page: `None` after the last.
    pub async fn pending_deliveries(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, Option<DeliveryCursor>)> {
        self.pending_page(app, endpoint, after, limit)
            .await
            .map_err(|e| e.into_domain("pending_webhook_deliveries"))
    }

    async fn pending_page(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> StoreResult<(Vec<Delivery>, Option<DeliveryCursor>)> {
        let mut expr = Expr::new();
        let mut condition = expr.equals(
            attr::GSI1PK,
            "pk",
            string_attr(deliveries_pk(app, endpoint)),
        );
        if let Some(after) = after {
            condition.push_str(&format!(
                " AND {} < {}",
                expr.name(attr::GSI1SK),
                expr.value(
                    "after",
                    string_attr(deliveries_sk(after.created_at, &after.id))
                )
            ));
        }
        let filter = expr.equals(
            attr::STATUS,
            "pending",
            string_attr(DeliveryStatus::Pending.as_str()),
        );
        let out = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(table::INBOX_INDEX)
            .key_condition_expression(condition)
            .filter_expression(filter)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .scan_index_forward(false)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| StoreError::request("Query", e))?;
        let pending = out
            .items()
            .iter()
            .map(|item| delivery_of(item).map(|(d, _, _)| d))
            .collect::<StoreResult<Vec<_>>>()?;
        let next = out
            .last_evaluated_key()
            .map(|key| delivery_cursor_of(items::string(key, attr::GSI1SK)?))
            .transpose()?;
        Ok((pending, next))
    }

    async fn load(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        id: &DeliveryId,
    ) -> StoreResult<Option<DueDelivery>> {
        let found = self
            .batch_get(vec![delivery_key(id), endpoint_key(app, endpoint)])
            .await?;
        let mut delivery = None;
        let mut owner = None;
        for item in &found {
            if items::is_type(item, DELIVERY_TYPE) {
                delivery = Some(delivery_of(item)?);
            } else {
                owner = Some(endpoint_of(item)?);
            }
        }
        Ok(match (delivery, owner) {
            (Some((delivery, delivery_app, body)), Some(endpoint))
                if &delivery_app == app && delivery.endpoint == endpoint.id =>
            {
                Some(DueDelivery {
                    delivery,
                    endpoint,
                    body,
                })
            }
            _ => None,
        })
    }

    /// Records an attempt of a delivery loaded with [`Self::load_delivery`]: 1
    /// TransactWriteItems of the delivery (only if it is still PENDING with the attempts
    /// read: a duplicate of the same attempt records nothing) and, when its failure run
    /// changes, the endpoint (conditioned on the run read; a race reads the endpoint again).
    /// Whether this call recorded the attempt.
    pub async fn record_loaded_attempt(
        &self,
        due: &DueDelivery,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> Result<bool> {
        self.record(due, outcome, retry_at, policy, now)
            .await
            .map_err(|e| e.into_domain("record_webhook_attempt"))
    }

    async fn record(
        &self,
        due: &DueDelivery,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut endpoint = due.endpoint.clone();
        for _ in 0..8 {
            let mut writes = vec![self.attempt_update(due, outcome, retry_at, now)?];
            if let Some(update) = self.run_update(&endpoint, outcome, policy, now)? {
                writes.push(update);
            }
            match self.transact_items(writes).await? {
                Transacted::Applied => return Ok(true),
                Transacted::Cancelled(reasons) => {
                    let failed = |i: usize| {
                        reasons
                            .get(i)
                            .and_then(Option::as_deref)
                            .is_some_and(|c| c == "ConditionalCheckFailed")
                    };
                    if failed(0) {
                        return Ok(false);
                    }
                    if failed(1) {
                        match self.find_endpoint(&endpoint.app, &endpoint.id).await? {
                            Some(now_endpoint) => endpoint = now_endpoint,
                            None => return Ok(false),
                        }
                        continue;
                    }
                    crate::backoff::Backoff::new(self.retry, "recording an attempt")
                        .wait()
                        .await?;
                }
            }
        }
        Err(StoreError::Contended {
            what: "a webhook endpoint's failure run",
            attempts: 8,
        })
    }

    fn attempt_update(
        &self,
        due: &DueDelivery,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> StoreResult<TransactWriteItem> {
        let mut expr = Expr::new();
        let (status, code, error) = match outcome {
            AttemptOutcome::Delivered { status } => {
                (DeliveryStatus::Succeeded, Some(*status), None)
            }
            AttemptOutcome::Failed { status, error } => (
                if retry_at.is_some() {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Failed
                },
                *status,
                Some(error.as_str()),
            ),
        };
        let mut set = vec![
            expr.equals(attr::STATUS, "status", string_attr(status.as_str())),
            expr.equals(
                a::ATTEMPTS,
                "attempts",
                number_attr(due.delivery.attempts + 1),
            ),
            expr.equals(a::LAST_ATTEMPT_AT, "now", number_attr(now.0)),
        ];
        let mut remove = Vec::new();
        match code {
            Some(code) => set.push(expr.equals(a::LAST_RESPONSE_CODE, "code", number_attr(code))),
            None => remove.push(expr.name(a::LAST_RESPONSE_CODE)),
        }
        match error {
            Some(error) => set.push(expr.equals(a::LAST_ERROR, "error", string_attr(error))),
            None => remove.push(expr.name(a::LAST_ERROR)),
        }
        match (status, retry_at) {
            (DeliveryStatus::Pending, Some(at)) => {
                set.push(expr.equals(a::NEXT_ATTEMPT_AT, "next", number_attr(at.0)));
            }
            _ => {
                remove.push(expr.name(a::NEXT_ATTEMPT_AT));
                let expires = (now.0 + DELIVERY_RETENTION_MS) / 1000;
                set.push(expr.equals(attr::TTL, "ttl", number_attr(expires)));
            }
        }
        let condition = format!(
            "{} AND {}",
            expr.equals(
                attr::STATUS,
                "pending",
                string_attr(DeliveryStatus::Pending.as_str())
            ),
            expr.equals(a::ATTEMPTS, "seen", number_attr(due.delivery.attempts)),
        );
        self.update(
            delivery_key(&due.delivery.id),
            &super::update_expression(&set, &remove),
            Some(&condition),
            &expr,
        )
    }

    /// The endpoint's failure run after the outcome; `None` when it does not change (a
    /// success of an endpoint that was not failing: no write).
    fn run_update(
        &self,
        endpoint: &Endpoint,
        outcome: &AttemptOutcome,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> StoreResult<Option<TransactWriteItem>> {
        let mut expr = Expr::new();
        let mut set = Vec::new();
        let mut remove = Vec::new();
        match outcome {
            AttemptOutcome::Delivered { .. } => {
                if endpoint.consecutive_failures == 0 && endpoint.failing_since.is_none() {
                    return Ok(None);
                }
                set.push(expr.equals(a::CONSECUTIVE_FAILURES, "failures", number_attr(0)));
                remove.push(expr.name(a::FAILING_SINCE));
            }
            AttemptOutcome::Failed { .. } => {
                let failures = endpoint.consecutive_failures + 1;
                let since = endpoint.failing_since.unwrap_or(now);
                set.push(expr.equals(a::CONSECUTIVE_FAILURES, "failures", number_attr(failures)));
                set.push(expr.equals(a::FAILING_SINCE, "since", number_attr(since.0)));
                if endpoint.enabled
                    && let Some(reason) = policy.reason(failures, since, now, outcome)
                {
                    set.push(expr.equals(a::ENABLED, "off", AttributeValue::Bool(false)));
                    set.push(expr.equals(a::DISABLED_REASON, "reason", string_attr(reason)));
                }
            }
        }
        let condition = format!(
            "attribute_exists({}) AND {}",
            expr.name(attr::PK),
            expr.equals(
                a::CONSECUTIVE_FAILURES,
                "seen",
                number_attr(endpoint.consecutive_failures)
            ),
        );
        self.update(
            endpoint_key(&endpoint.app, &endpoint.id),
            &super::update_expression(&set, &remove),
            Some(&condition),
            &expr,
        )
        .map(Some)
    }
}

#[async_trait]
impl WebhookEndpoints for DynamoStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint> {
        self.put_endpoint(endpoint)
            .await
            .map_err(|e| e.into_domain("create_webhook_endpoint"))
    }

    async fn update_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
        update: &EndpointUpdate,
        now: Timestamp,
    ) -> Result<Endpoint> {
        self.change_endpoint(app, id, update, now)
            .await
            .map_err(|e| e.into_domain("update_webhook_endpoint"))
    }

    async fn delete_endpoint(&self, app: &AppToken, id: &EndpointId) -> Result<bool> {
        self.remove_endpoint(app, id)
            .await
            .map_err(|e| e.into_domain("delete_webhook_endpoint"))
    }

    async fn endpoint(&self, app: &AppToken, id: &EndpointId) -> Result<Option<Endpoint>> {
        self.find_endpoint(app, id)
            .await
            .map_err(|e| e.into_domain("webhook_endpoint"))
    }

    async fn endpoints(&self, app: &AppToken) -> Result<Vec<Endpoint>> {
        self.list_endpoints(app)
            .await
            .map_err(|e| e.into_domain("webhook_endpoints"))
    }

    async fn rotate_endpoint_secret(
        &self,
        app: &AppToken,
        id: &EndpointId,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Endpoint> {
        self.rotate_endpoint(app, id, previous_expires_at, now)
            .await
            .map_err(|e| e.into_domain("rotate_webhook_secret"))
    }

    async fn deliveries(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.list_deliveries(app, endpoint, after, limit)
            .await
            .map_err(|e| e.into_domain("webhook_deliveries"))
    }

    async fn redeliver(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery> {
        self.repeat_delivery(app, endpoint, delivery, now)
            .await
            .map_err(|e| e.into_domain("redeliver_webhook"))
    }

    /// 1 GetItem of the delivery, 1 GetItem of its endpoint, then as
    /// [`DynamoStore::record_loaded_attempt`].
    async fn record_attempt(
        &self,
        delivery: &DeliveryId,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> Result<()> {
        let found = self
            .find_delivery(delivery)
            .await
            .map_err(|e| e.into_domain("record_webhook_attempt"))?;
        let Some((found, app, body)) = found else {
            return Ok(());
        };
        if found.status != DeliveryStatus::Pending {
            return Ok(());
        }
        let Some(endpoint) = self
            .find_endpoint(&app, &found.endpoint)
            .await
            .map_err(|e| e.into_domain("record_webhook_attempt"))?
        else {
            return Ok(());
        };
        let due = DueDelivery {
            delivery: found,
            endpoint,
            body,
        };
        self.record_loaded_attempt(&due, outcome, retry_at, policy, now)
            .await
            .map(|_| ())
    }
}

// ---- the stream feed ------------------------------------------------------------------------

/// What one stream record asks of the webhook functions.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// An event: record its deliveries ([`DynamoStore::record_event`]) and queue them.
    Event(WebhookEvent),
    /// A message was sent: its `message.unseen` check, due after the grace (when an
    /// endpoint subscribes to it).
    Unseen(chat_domain::webhooks::UnseenCheck),
    /// A delivery made by redeliver: queue it.
    Redelivery {
        app: AppToken,
        endpoint: EndpointId,
        delivery: DeliveryId,
    },
    /// A disabled endpoint was enabled again: queue its PENDING deliveries.
    Reenabled { app: AppToken, endpoint: EndpointId },
}

/// Each record's sequence number and what it asks (nothing for most items). A malformed
/// record is an `Err` of its own, reported in `batchItemFailures`.
pub fn feed_items(
    records: &[aws_lambda_events::event::dynamodb::EventRecord],
) -> Vec<(String, Result<Vec<FeedItem>>)> {
    records
        .iter()
        .map(|record| {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            let converted = feed_of(record).map_err(|e| {
                DomainError::internal(
                    format!("stream record {sequence:?} (event {})", record.event_id),
                    e,
                )
            });
            (sequence, converted)
        })
        .collect()
}

fn feed_of(record: &aws_lambda_events::event::dynamodb::EventRecord) -> StoreResult<Vec<FeedItem>> {
    use chat_domain::webhooks::{UnseenCheck, chat_data, message_data};
    let kind = chat_domain::ChangeKind::parse(&record.event_name)?;
    if kind == chat_domain::ChangeKind::Remove {
        return Ok(Vec::new());
    }
    let Some(new) = crate::stream::image(&record.change.new_image) else {
        return Ok(Vec::new());
    };
    let old = crate::stream::image(&record.change.old_image);
    let insert = kind == chat_domain::ChangeKind::Insert;
    let event = |event_type: EventType, app: &AppToken, at: Timestamp, id: &[&str], data| {
        let mut parts = vec![event_type.as_str(), app.as_str()];
        parts.extend_from_slice(id);
        FeedItem::Event(WebhookEvent {
            id: chat_domain::webhooks::EventId::derive(&parts),
            event_type,
            app: app.clone(),
            created_at: at,
            data,
        })
    };
    if items::is_type(&new, table::item_type::CHAT) {
        let chat = items::chat(&new)?;
        let number = chat.number.get().to_string();
        if insert {
            return Ok(vec![event(
                EventType::ChatCreated,
                &chat.app,
                chat.created_at,
                &[&number],
                chat_data(&chat),
            )]);
        }
        let Some(old) = old
            .as_ref()
            .filter(|o| items::is_type(o, table::item_type::CHAT))
        else {
            return Ok(Vec::new());
        };
        let before = items::chat(old)?;
        if before.status == chat.status && before.subject == chat.subject {
            return Ok(Vec::new());
        }
        let updated = chat.updated_at.0.to_string();
        let subject = chat.subject.as_ref().map_or("", |s| s.as_str());
        return Ok(vec![event(
            EventType::ChatUpdated,
            &chat.app,
            chat.updated_at,
            &[&number, &updated, chat.status.as_str(), subject],
            chat_data(&chat),
        )]);
    }
    if items::is_type(&new, table::item_type::MESSAGE) {
        let (message, _) = items::message(&new)?;
        let files = items::message_files(&new)?;
        let version = items::message_version(&new)?.to_string();
        let chat = message.chat_number.get().to_string();
        let number = message.number.get().to_string();
        if insert {
            return Ok(vec![
                event(
                    EventType::MessageCreated,
                    &message.app,
                    message.created_at,
                    &[&chat, &number],
                    message_data(&message, &files),
                ),
                FeedItem::Unseen(UnseenCheck {
                    app: message.app.clone(),
                    chat: message.chat_number,
                    number: message.number,
                    queued_at: message.created_at,
                }),
            ]);
        }
        let Some(old) = old
            .as_ref()
            .filter(|o| items::is_type(o, table::item_type::MESSAGE))
        else {
            return Ok(Vec::new());
        };
        let (before, _) = items::message(old)?;
        let (event_type, at) = if message.deleted && !before.deleted {
            // A delete records no time on the message: the change's time is the stream's.
            let at = Timestamp(
                record
                    .change
                    .approximate_creation_date_time
                    .timestamp_millis(),
            );
            (EventType::MessageDeleted, at)
        } else if !message.deleted
            && (message.body != before.body || message.edited_at != before.edited_at)
        {
            (
                EventType::MessageEdited,
                message.edited_at.unwrap_or(message.created_at),
            )
        } else {
            return Ok(Vec::new());
        };
        return Ok(vec![event(
            event_type,
            &message.app,
            at,
            &[&chat, &number, &version],
            message_data(&message, &files),
        )]);
    }
    if items::is_type(&new, ENDPOINT_TYPE) {
        let was_disabled = old
            .as_ref()
            .filter(|o| items::is_type(o, ENDPOINT_TYPE))
            .map(|o| bool_of(o, a::ENABLED))
            .transpose()?
            == Some(false);
        if was_disabled && bool_of(&new, a::ENABLED)? {
            let endpoint = endpoint_of(&new)?;
            return Ok(vec![FeedItem::Reenabled {
                app: endpoint.app,
                endpoint: endpoint.id,
            }]);
        }
        return Ok(Vec::new());
    }
    if insert
        && is_redelivery(&new)
        && let Some((app, endpoint, delivery)) = delivery_ref(&new)?
    {
        return Ok(vec![FeedItem::Redelivery {
            app,
            endpoint,
            delivery,
        }]);
    }
    Ok(Vec::new())
}
