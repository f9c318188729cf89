//! The webhook admin resolvers (admin key only; the access rule is in
//! `ChatService`): endpoints, their secrets, their deliveries, and redelivery.

use std::sync::Arc;

use chat_domain::webhooks::{Delivery, DeliveryId, Endpoint, EndpointCredentials, EndpointId};
use chat_domain::{Caller, ChatService, DomainError, PageSize, Result};
use serde_json::{Map, Value, json};

use crate::args::Args;
use crate::registry::{Registry, app_token};
use crate::wire;

pub(crate) fn register(registry: &mut Registry) {
    registry.add("Query.webhookEndpoints", webhook_endpoints);
    registry.add("Query.webhookDeliveries", webhook_deliveries);
    registry.add("Mutation.createWebhookEndpoint", create_webhook_endpoint);
    registry.add("Mutation.updateWebhookEndpoint", update_webhook_endpoint);
    registry.add("Mutation.deleteWebhookEndpoint", delete_webhook_endpoint);
    registry.add("Mutation.rotateWebhookSecret", rotate_webhook_secret);
    registry.add("Mutation.redeliverWebhook", redeliver_webhook);
}

/// `WebhookEndpoint`.
pub fn endpoint(endpoint: &Endpoint) -> Value {
    json!({
        "id": endpoint.id.as_str(),
        "appToken": endpoint.app.as_str(),
        "url": endpoint.url.as_str(),
        "events": endpoint.events.types().iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "enabled": endpoint.enabled,
        "disabledReason": endpoint.disabled_reason,
        "previousSecretExpiresAt": endpoint.previous_secret_expires_at.map(|t| t.to_rfc3339()),
        "createdAt": endpoint.created_at.to_rfc3339(),
        "updatedAt": endpoint.updated_at.to_rfc3339(),
    })
}

/// `WebhookEndpointCredentials`: the one place an endpoint's secret leaves the service.
pub fn credentials(credentials: &EndpointCredentials) -> Value {
    json!({
        "endpoint": endpoint(&credentials.endpoint),
        "secret": credentials.secret.expose(),
    })
}

/// `WebhookDelivery`.
pub fn delivery(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id.as_str(),
        "eventId": delivery.event_id.as_str(),
        "eventType": delivery.event_type.as_str(),
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "lastResponseCode": delivery.last_response_code,
        "lastError": delivery.last_error,
        "lastAttemptAt": delivery.last_attempt_at.map(|t| t.to_rfc3339()),
        "nextAttemptAt": delivery.next_attempt_at.map(|t| t.to_rfc3339()),
        "createdAt": delivery.created_at.to_rfc3339(),
    })
}

fn string_list(args: &Args<'_>, name: &str) -> Result<Option<Vec<String>>> {
    match args.0.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| DomainError::bad_input(format!("{name} must be strings")))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(DomainError::bad_input(format!("{name} must be a list"))),
    }
}

fn opt_bool(args: &Args<'_>, name: &str) -> Result<Option<bool>> {
    match args.0.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(DomainError::bad_input(format!("{name} must be a boolean"))),
    }
}

fn endpoint_id(args: &Args<'_>, name: &str) -> Result<EndpointId> {
    EndpointId::parse(args.str(name)?)
}

async fn webhook_endpoints(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let endpoints = svc.webhook_endpoints(&caller, &app).await?;
    Ok(Value::Array(endpoints.iter().map(endpoint).collect()))
}

async fn webhook_deliveries(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let id = endpoint_id(&args, "endpointId")?;
    let limit = PageSize::parse(args.opt_int("limit")?)?;
    let page = svc
        .webhook_deliveries(&caller, &app, &id, limit, args.opt_str("nextToken")?)
        .await?;
    Ok(wire::page(&page, delivery))
}

async fn create_webhook_endpoint(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let events = string_list(&args, "events")?.unwrap_or_default();
    let created = svc
        .create_webhook_endpoint(&caller, &app, args.str("url")?, &events)
        .await?;
    // An audit line; the secret itself is never logged.
    tracing::info!(app = %app, endpoint = %created.endpoint.id, "webhook endpoint created");
    Ok(credentials(&created))
}

async fn update_webhook_endpoint(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let id = endpoint_id(&args, "id")?;
    let events = string_list(&args, "events")?;
    let updated = svc
        .update_webhook_endpoint(
            &caller,
            &app,
            &id,
            args.opt_str("url")?,
            events.as_deref(),
            opt_bool(&args, "enabled")?,
        )
        .await?;
    Ok(endpoint(&updated))
}

async fn delete_webhook_endpoint(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let id = endpoint_id(&args, "id")?;
    let deleted = svc.delete_webhook_endpoint(&caller, &app, &id).await?;
    Ok(Value::Bool(deleted))
}

async fn rotate_webhook_secret(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let id = endpoint_id(&args, "id")?;
    let rotated = svc
        .rotate_webhook_secret(&caller, &app, &id, args.opt_int("graceSeconds")?)
        .await?;
    tracing::info!(
        app = %app,
        endpoint = %id,
        generation = rotated.endpoint.secret_generation,
        "webhook secret rotated"
    );
    Ok(credentials(&rotated))
}

async fn redeliver_webhook(
    svc: Arc<ChatService>,
    caller: Caller,
    args: Map<String, Value>,
) -> Result<Value> {
    let args = Args(&args);
    let app = app_token(&args, "appToken")?;
    let id = endpoint_id(&args, "endpointId")?;
    let delivery_id = DeliveryId::parse(args.str("deliveryId")?)?;
    let again = svc
        .redeliver_webhook(&caller, &app, &id, &delivery_id)
        .await?;
    Ok(delivery(&again))
}
