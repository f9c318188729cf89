//! Webhooks: the events an application's backend receives, their endpoints, signatures,
//! delivery schedule, and the `message.unseen` rule. The [`WebhookStore`] port holds the
//! endpoints and the durable deliveries; the admin use cases are on [`ChatService`].
//!
//! Events leave through the change feed only: a store queues an event's deliveries in the
//! transaction of the change (or from its stream), never beside it in the request. Each
//! event has a stable id (`evt_...`) that every attempt of every delivery repeats, so a
//! receiver de-duplicates on it; delivery is at least once.
//!
//! # Signature
//! `Chat-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. While a
//! rotated secret's grace runs, the header carries one `v1=` per verifying secret (newest
//! first). Receivers accept a timestamp within [`SIGNATURE_TOLERANCE_SECS`] of their clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::attachments::AttachedFile;
use crate::error::{DomainError, Result};
use crate::limits::{SECRET_GRACE_DEFAULT_SECS, SECRET_GRACE_MAX_SECS};
use crate::model::*;
use crate::presence::{Presence, PresenceCursor, PresenceStatus, PresenceStore};
use crate::secrets::ServerKey;
use crate::service::{Caller, ChatService, Page};
use crate::store::{ChatScope, ChatStore};

/// Endpoints per application.
pub const WEBHOOK_ENDPOINTS_MAX: usize = 10;
/// The longest endpoint URL.
pub const WEBHOOK_URL_MAX_CHARS: usize = 2_048;
/// How far a signature's timestamp may be from the receiver's clock (the replay window).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;
/// Waits after each failed attempt, before jitter: 30 s, 2 min, 10 min, 30 min, 1 h, 2 h,
/// 4 h, 8 h, 12 h, 12 h. The last attempt is the 11th, about 40 hours after the first.
pub const RETRY_DELAYS_SECS: [u64; 10] = [
    30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 43_200, 43_200,
];
/// Each wait is scaled by a random factor in `1 ± RETRY_JITTER` so that the retries of many
/// deliveries that failed together spread out.
pub const RETRY_JITTER: f64 = 0.2;
/// How long finished deliveries (and then their events) are kept.
pub const DELIVERY_RETENTION_MS: i64 = 30 * 24 * 3_600_000;
/// How long `message.unseen` waits for the receiver to read or come back, by default.
pub const UNSEEN_GRACE_DEFAULT_MS: i64 = 30_000;

type HmacSha256 = Hmac<Sha256>;

// ---- event types --------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    ChatCreated,
    ChatUpdated,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    MessageUnseen,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::ChatCreated,
        EventType::ChatUpdated,
        EventType::MessageCreated,
        EventType::MessageEdited,
        EventType::MessageDeleted,
        EventType::MessageUnseen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ChatCreated => "chat.created",
            EventType::ChatUpdated => "chat.updated",
            EventType::MessageCreated => "message.created",
            EventType::MessageEdited => "message.edited",
            EventType::MessageDeleted => "message.deleted",
            EventType::MessageUnseen => "message.unseen",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                DomainError::bad_input(format!(
                    "unknown event type {raw:?}; known: {}",
                    EventType::ALL.map(EventType::as_str).join(", ")
                ))
            })
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A non-empty set of event types, stored as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTypes(u32);

impl EventTypes {
    pub fn parse(raw: &[String]) -> Result<Self> {
        let mut mask = 0;
        for name in raw {
            mask |= EventType::parse(name)?.bit();
        }
        if mask == 0 {
            return Err(DomainError::bad_input("events must name at least one type"));
        }
        Ok(EventTypes(mask))
    }

    pub fn of(types: &[EventType]) -> Self {
        EventTypes(types.iter().fold(0, |mask, t| mask | t.bit()))
    }

    pub fn from_mask(mask: u32) -> Result<Self> {
        let all = EventTypes::of(&EventType::ALL).0;
        if mask == 0 || mask & !all != 0 {
            return Err(DomainError::internal(
                "webhooks: stored event mask is invalid",
                format!("mask {mask:#x}"),
            ));
        }
        Ok(EventTypes(mask))
    }

    /// The mask a store keeps (and filters on: `events & type.bit != 0`).
    pub fn mask(self) -> u32 {
        self.0
    }

    pub fn contains(self, t: EventType) -> bool {
        self.0 & t.bit() != 0
    }

    pub fn types(self) -> Vec<EventType> {
        EventType::ALL
            .into_iter()
            .filter(|t| self.contains(*t))
            .collect()
    }
}

/// The mask of one type, for a store's query.
pub fn event_mask(t: EventType) -> u32 {
    t.bit()
}

// ---- identifiers ----------------------------------------------------------------------------

fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn derived_id(prefix: &str, parts: &[&str]) -> String {
    use sha2::Digest;
    let mut hash = Sha256::new();
    hash.update(prefix.as_bytes());
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(&hash.finalize()[..16]))
}

fn parse_id(raw: &str, prefix: &str, what: &str) -> Result<String> {
    let ok = raw.len() == prefix.len() + 22
        && raw.starts_with(prefix)
        && raw[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(DomainError::bad_input(format!(
            "{raw:?} is not a {what} id"
        )))
    }
}

macro_rules! public_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(String);

        impl $name {
            pub fn generate() -> Self {
                $name(random_id($prefix))
            }

            pub fn parse(raw: &str) -> Result<Self> {
                parse_id(raw, $prefix, $what).map($name)
            }

            /// The same id for the same parts, every time (a feed that may see a change
            /// twice names its event, and the event's delivery to an endpoint, once).
            pub fn derive(parts: &[&str]) -> Self {
                $name(derived_id($prefix, parts))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

public_id!(EndpointId, "we_", "webhook endpoint");
public_id!(EventId, "evt_", "event");
public_id!(DeliveryId, "dl_", "delivery");

// ---- URLs and addresses ---------------------------------------------------------------------

/// Where endpoints may point. Production: https to public addresses only. Development may
/// allow loopback (http or https), for a receiver on the developer's machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TargetPolicy {
    pub allow_loopback: bool,
}

/// Why an address is refused, or `None` when it is public. Checked on every address a
/// host resolves to, at connect time, and on IP literals in URLs.
pub fn refused_address(ip: IpAddr, policy: TargetPolicy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4, policy),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return refused_v4(v4, policy);
            }
            refused_v6(v6, policy)
        }
    }
}

fn refused_v4(ip: Ipv4Addr, policy: TargetPolicy) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_multicast() || a >= 240 {
        Some("a multicast, reserved or broadcast address")
    } else if (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        Some("a special-purpose address")
    } else if ip.is_documentation() {
        Some("a documentation address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr, policy: TargetPolicy) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a unique-local address")
    } else if first & 0xffc0 == 0xfe80 || first & 0xffc0 == 0xfec0 {
        Some("a link-local address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("a documentation address")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 embeds an IPv4 address: judge that one.
        let [.., g, h] = ip.segments();
        let v4 = Ipv4Addr::new((g >> 8) as u8, g as u8, (h >> 8) as u8, h as u8);
        refused_v4(v4, policy)
    } else if let Some(v4) = ip.to_ipv4() {
        // IPv4-compatible (::a.b.c.d).
        refused_v4(v4, policy)
    } else {
        None
    }
}

/// An endpoint URL: absolute, https (http only to loopback where loopback is allowed), no
/// user info, no fragment, at most [`WEBHOOK_URL_MAX_CHARS`]. A host that is an IP literal
/// must be an address [`refused_address`] accepts; a host name is checked when it is
/// resolved, at every connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(raw: &str, policy: TargetPolicy) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > WEBHOOK_URL_MAX_CHARS {
            return Err(DomainError::bad_input(format!(
                "url must be 1 to {WEBHOOK_URL_MAX_CHARS} characters"
            )));
        }
        let url = url::Url::parse(raw)
            .map_err(|e| DomainError::bad_input(format!("url is not a valid URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DomainError::bad_input("url must not carry user info"));
        }
        if url.fragment().is_some() {
            return Err(DomainError::bad_input("url must not have a fragment"));
        }
        let host = url
            .host()
            .ok_or_else(|| DomainError::bad_input("url must have a host"))?;
        let literal = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        let loopback = match (&host, literal) {
            (_, Some(ip)) => ip.is_loopback(),
            (url::Host::Domain(name), None) => {
                name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost")
            }
            _ => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_loopback && loopback => {}
            "http" if policy.allow_loopback => {
                return Err(DomainError::bad_input(
                    "url must be https (http only to a loopback address)",
                ));
            }
            _ => return Err(DomainError::bad_input("url must be https")),
        }
        if let Some(ip) = literal
            && let Some(why) = refused_address(ip, policy)
        {
            return Err(DomainError::bad_input(format!(
                "url must not point to {why}"
            )));
        }
        Ok(WebhookUrl(url))
    }

    /// A URL as stored, accepted once; the sender checks addresses again at connect time.
    pub fn stored(raw: &str) -> Result<Self> {
        url::Url::parse(raw)
            .map(WebhookUrl)
            .map_err(|e| DomainError::internal("webhooks: stored url is invalid", e))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

// ---- secrets and signatures -----------------------------------------------------------------

/// An endpoint's signing secret: `whsec_` + 32 bytes in base64url. Derived from the server
/// key, the application, the endpoint and the generation (like application secrets: the
/// store keeps only the generation).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    pub fn derive(key: &ServerKey, app: &AppToken, endpoint: &EndpointId, generation: u32) -> Self {
        let digest = key.mac(
            "chat-webhook-secret",
            &[
                app.as_str().as_bytes(),
                endpoint.as_str().as_bytes(),
                generation.to_string().as_bytes(),
            ],
        );
        WebhookSecret(format!("whsec_{}", URL_SAFE_NO_PAD.encode(digest)))
    }

    /// A secret as a receiver holds it (for verifying in tests and examples).
    pub fn from_shown(shown: &str) -> Self {
        WebhookSecret(shown.to_owned())
    }

    /// Only for the caller of createWebhookEndpoint / rotateWebhookSecret.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            HmacSha256::new_from_slice(self.0.as_bytes()).expect("HMAC takes any key size");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        hex(&mac.finalize().into_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Chat-Signature` header: `t=<timestamp>,v1=<sig>[,v1=<sig>]`, one signature per
/// secret given.
pub fn signature_header(secrets: &[WebhookSecret], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&secret.sign(timestamp, body));
    }
    header
}

/// What a receiver does: the header names a timestamp within `tolerance` seconds of `now`
/// and a `v1` signature that `secret` makes over `timestamp.body` (compared in constant
/// time).
pub fn verify_signature(
    header: &str,
    secret: &WebhookSecret,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<()> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let timestamp =
        timestamp.ok_or_else(|| DomainError::bad_input("signature header without t="))?;
    if (now - timestamp).abs() > tolerance {
        return Err(DomainError::bad_input(
            "signature timestamp outside the window",
        ));
    }
    let expected = secret.sign(timestamp, body);
    let matches = signatures
        .iter()
        .any(|sig| subtle::ConstantTimeEq::ct_eq(sig.as_bytes(), expected.as_bytes()).into());
    if matches {
        Ok(())
    } else {
        Err(DomainError::bad_input("no signature matches"))
    }
}

// ---- events ---------------------------------------------------------------------------------

/// An event as it is delivered: the JSON body is built once, when the event is queued, and
/// every attempt sends the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: EventId,
    pub event_type: EventType,
    pub app: AppToken,
    pub created_at: Timestamp,
    pub data: Value,
}

impl WebhookEvent {
    pub fn new(event_type: EventType, app: &AppToken, now: Timestamp, data: Value) -> Self {
        WebhookEvent {
            id: EventId::generate(),
            event_type,
            app: app.clone(),
            created_at: now,
            data,
        }
    }

    /// `{"id", "type", "createdAt", "appToken", "data"}`.
    pub fn body(&self) -> String {
        json!({
            "id": self.id.as_str(),
            "type": self.event_type.as_str(),
            "createdAt": self.created_at.to_rfc3339(),
            "appToken": self.app.as_str(),
            "data": self.data,
        })
        .to_string()
    }
}

/// `chat.created` / `chat.updated`: `{"chat": {...}}`.
pub fn chat_data(chat: &Chat) -> Value {
    json!({ "chat": {
        "number": chat.number.get(),
        "customerId": chat.customer_id.as_str(),
        "subject": chat.subject.as_ref().map(|s| s.as_str()),
        "status": chat.status.as_str(),
        "messagesCount": chat.messages_count,
        "assigneeId": chat.assignee.as_ref().map(UserId::as_str),
        "team": chat.team.as_ref().map(|t| t.as_str()),
        "createdAt": chat.created_at.to_rfc3339(),
        "updatedAt": chat.updated_at.to_rfc3339(),
    }})
}

/// A message with its attached files' metadata (`name`, `contentType`, `size`, `width`,
/// `height`; no URL, see [`AttachedFile`]). A deleted message has none.
fn message_json(message: &Message, files: &[AttachedFile]) -> Value {
    let attachments: Vec<Value> = if message.deleted {
        Vec::new()
    } else {
        files
            .iter()
            .map(|file| {
                json!({
                    "name": file.name.as_str(),
                    "contentType": file.file_type.mime(),
                    "size": file.size,
                    "width": file.image.map(|i| i.width),
                    "height": file.image.map(|i| i.height),
                })
            })
            .collect()
    };
    json!({
        "number": message.number.get(),
        "body": message.body,
        "senderId": message.sender_id.as_str(),
        "senderRole": message.sender_role.as_str(),
        "createdAt": message.created_at.to_rfc3339(),
        "editedAt": message.edited_at.map(Timestamp::to_rfc3339),
        "deleted": message.deleted,
        "attachments": attachments,
    })
}

/// `message.created` / `message.edited` / `message.deleted`:
/// `{"chatNumber", "message": {...}}`, with the message's files in upload order.
pub fn message_data(message: &Message, files: &[AttachedFile]) -> Value {
    json!({
        "chatNumber": message.chat_number.get(),
        "message": message_json(message, files),
    })
}

/// Who a `message.unseen` is for: the chat's customer, or the application's agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnseenReceiver {
    Customer(UserId),
    Agents,
}

impl UnseenReceiver {
    /// The receiver of a message: the other side of its sender.
    pub fn of(message_sender: Role, chat_customer: &UserId) -> Self {
        match message_sender {
            Role::Agent => UnseenReceiver::Customer(chat_customer.clone()),
            Role::Customer => UnseenReceiver::Agents,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            UnseenReceiver::Customer(_) => Role::Customer,
            UnseenReceiver::Agents => Role::Agent,
        }
    }
}

/// `message.unseen`: `{"chatNumber", "receiver": {"role", "userId"}, "message": {...}}`
/// (`userId` is the customer's; null for the agents).
pub fn unseen_data(message: &Message, files: &[AttachedFile], receiver: &UnseenReceiver) -> Value {
    let user_id = match receiver {
        UnseenReceiver::Customer(id) => Some(id.as_str()),
        UnseenReceiver::Agents => None,
    };
    json!({
        "chatNumber": message.chat_number.get(),
        "receiver": { "role": receiver.role().as_str(), "userId": user_id },
        "message": message_json(message, files),
    })
}

/// Whether a `message.unseen` is still due once the grace has passed: the receiver has not
/// read the message (its watermark is below it) and is not looking (a customer: no live
/// ONLINE presence on that chat, a tab in the background being AWAY; the agents: none
/// online).
pub fn unseen_is_due(
    chat: &Chat,
    number: MessageNumber,
    receiver: &UnseenReceiver,
    customer_presence: Option<&Presence>,
    agents_online: u32,
    now: Timestamp,
) -> bool {
    match receiver {
        UnseenReceiver::Customer(_) => {
            let read = chat.customer_last_read >= number.get();
            let looking = customer_presence.is_some_and(|p| {
                p.is_live(now)
                    && p.chat == Some(chat.number)
                    && p.status == crate::presence::PresenceStatus::Online
            });
            !read && !looking
        }
        UnseenReceiver::Agents => chat.agents_last_read < number.get() && agents_online == 0,
    }
}

// ---- endpoints and deliveries ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub app: AppToken,
    pub id: EndpointId,
    pub url: WebhookUrl,
    pub events: EventTypes,
    pub enabled: bool,
    /// Why the server disabled the endpoint (cleared when it is enabled again).
    pub disabled_reason: Option<String>,
    pub secret_generation: u32,
    pub previous_secret_expires_at: Option<Timestamp>,
    /// Failed attempts in a row (a success resets it) and when the run began.
    pub consecutive_failures: u32,
    pub failing_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Endpoint {
    /// The secrets that sign at `now`, newest first: the current one, and the previous one
    /// while its grace runs.
    pub fn signing_secrets(&self, key: &ServerKey, now: Timestamp) -> Vec<WebhookSecret> {
        let mut secrets = vec![WebhookSecret::derive(
            key,
            &self.app,
            &self.id,
            self.secret_generation,
        )];
        if self.secret_generation > 1 && self.previous_secret_expires_at.is_some_and(|t| t > now) {
            secrets.push(WebhookSecret::derive(
                key,
                &self.app,
                &self.id,
                self.secret_generation - 1,
            ));
        }
        secrets
    }
}

/// What an update changes; `None` leaves a field as it is. Enabling clears the reason
/// and the failure run.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<WebhookUrl>,
    pub events: Option<EventTypes>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Succeeded,
    /// Every attempt failed; no more will be made (redeliver makes a new delivery).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "PENDING" => Ok(DeliveryStatus::Pending),
            "SUCCEEDED" => Ok(DeliveryStatus::Succeeded),
            "FAILED" => Ok(DeliveryStatus::Failed),
            _ => Err(DomainError::internal(
                "webhooks: unknown delivery status",
                raw.to_owned(),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint: EndpointId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_response_code: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due (PENDING only).
    pub next_attempt_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// Where a page of deliveries continues: after this (created_at, id), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryCursor {
    pub created_at: Timestamp,
    pub id: DeliveryId,
}

/// A delivery due now, with what sending it needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub endpoint: Endpoint,
    /// The event's JSON body, as queued.
    pub body: String,
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx.
    Delivered { status: u16 },
    /// Any other status, or no response (`status: None`: refused, timeout, connection).
    Failed { status: Option<u16>, error: String },
}

/// When an endpoint is disabled: after `after_failures` failed attempts in a row that span
/// at least `min_failing_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisablePolicy {
    pub after_failures: u32,
    pub min_failing_ms: i64,
}

impl Default for DisablePolicy {
    fn default() -> Self {
        DisablePolicy {
            after_failures: 50,
            min_failing_ms: 24 * 3_600_000,
        }
    }
}

impl DisablePolicy {
    /// The reason to disable after this failure, if it is time.
    pub fn reason(
        &self,
        consecutive_failures: u32,
        failing_since: Timestamp,
        now: Timestamp,
        last: &AttemptOutcome,
    ) -> Option<String> {
        if consecutive_failures < self.after_failures
            || now.0 - failing_since.0 < self.min_failing_ms
        {
            return None;
        }
        let last = match last {
            AttemptOutcome::Failed {
                status: Some(status),
                ..
            } => format!("HTTP {status}"),
            AttemptOutcome::Failed { error, .. } => error.clone(),
            AttemptOutcome::Delivered { .. } => return None,
        };
        Some(format!(
            "disabled after {consecutive_failures} failed attempts in a row since {}; last: {last}",
            failing_since.to_rfc3339()
        ))
    }
}

/// When the attempt after `attempts_made` failed ones is due, or `None` when the schedule
/// is over. `jitter` is uniform in `[0, 1)`.
pub fn next_attempt_at(attempts_made: u32, now: Timestamp, jitter: f64) -> Option<Timestamp> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    let base = *RETRY_DELAYS_SECS.get(index)? as f64 * 1000.0;
    let factor = 1.0 - RETRY_JITTER + 2.0 * RETRY_JITTER * jitter.clamp(0.0, 1.0);
    Some(Timestamp(now.0 + (base * factor) as i64))
}

/// The endpoints and the delivery records: what the admin operations and every sender
/// need, whatever feeds the deliveries. `embedded` and `dynamodb` implement it; the
/// conformance suite's `webhooks` module holds both to one behaviour.
///
/// Events are queued from the change that causes them (see the module documentation): an
/// event goes to every enabled endpoint of the application that subscribes to its type at
/// that moment.
#[async_trait]
pub trait WebhookEndpoints: Send + Sync + 'static {
    /// NotFound without the application; Conflict when it has
    /// [`WEBHOOK_ENDPOINTS_MAX`] endpoints already.
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<Endpoint>;
    /// NotFound when the application has no such endpoint.
    async fn update_endpoint(
        &self,
        app: &AppToken,
        id: &EndpointId,
        update: &EndpointUpdate,
        now: Timestamp,
    ) -> Result<Endpoint>;
    /// Removes the endpoint and its deliveries; whether it existed.
    async fn delete_endpoint(&self, app: &AppToken, id: &EndpointId) -> Result<bool>;
    async fn endpoint(&self, app: &AppToken, id: &EndpointId) -> Result<Option<Endpoint>>;
    /// The application's endpoints by creation, oldest first.
    async fn endpoints(&self, app: &AppToken) -> Result<Vec<Endpoint>>;
    /// The next secret generation; the previous one keeps signing until
    /// `previous_expires_at`. NotFound when the application has no such endpoint.
    async fn rotate_endpoint_secret(
        &self,
        app: &AppToken,
        id: &EndpointId,
        previous_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Endpoint>;

    /// The endpoint's deliveries, newest first, after `after`, at most `limit`. NotFound
    /// when the application has no such endpoint.
    async fn deliveries(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        after: Option<&DeliveryCursor>,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// A new PENDING delivery of the same event to the same endpoint, due now. NotFound
    /// when the endpoint has no such delivery.
    async fn redeliver(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: Timestamp,
    ) -> Result<Delivery>;

    /// Records an attempt: a success ends the delivery and the endpoint's failure run; a
    /// failure schedules `retry_at` (or ends the delivery FAILED when `None`), extends the
    /// run, and disables the endpoint when `policy` says so. An attempt of a finished (or
    /// unknown) delivery changes nothing.
    async fn record_attempt(
        &self,
        delivery: &DeliveryId,
        outcome: &AttemptOutcome,
        retry_at: Option<Timestamp>,
        policy: DisablePolicy,
        now: Timestamp,
    ) -> Result<()>;
}

/// The dev server's queue: a store that queues deliveries in the change's own transaction
/// and is polled for due work (`embedded`). On AWS the table's stream feeds a queue
/// instead, so the DynamoDB store implements [`WebhookEndpoints`] only.
#[async_trait]
pub trait WebhookStore: WebhookEndpoints {
    /// PENDING deliveries of enabled endpoints due at `now`, earliest first, at most
    /// `limit`, except those in `skip` (in flight).
    async fn due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        skip: &[DeliveryId],
    ) -> Result<Vec<DueDelivery>>;
    /// The earliest time something queued becomes due (a delivery of an enabled endpoint,
    /// or a `message.unseen` check queued before `now - grace`): how long a worker sleeps.
    async fn next_due(&self, grace_ms: i64) -> Result<Option<Timestamp>>;

    /// Removes at most `limit` SUCCEEDED or FAILED deliveries created before `before`,
    /// then at most `limit` events created before it that no delivery refers to; how many
    /// rows it removed. PENDING deliveries are never removed.
    async fn prune(&self, before: Timestamp, limit: u32) -> Result<u64>;

    /// Messages waiting for their `message.unseen` check whose grace ended by `now`.
    async fn due_unseen(&self, before: Timestamp, limit: u32) -> Result<Vec<UnseenCheck>>;
    /// Ends a check: when `send`, queues `message.unseen` to the endpoints that subscribe
    /// to it, in the same write that removes the check.
    async fn settle_unseen(&self, check: &UnseenCheck, send: bool, now: Timestamp) -> Result<()>;
}

/// Whether the receiver of a checked message still has not seen it, read through the
/// ports: the chat and the message (absent or deleted: no), the customer's lease or
/// whether any agent is online, then [`unseen_is_due`].
pub async fn unseen_still_due(
    chats: &dyn ChatStore,
    presence: &dyn PresenceStore,
    check: &UnseenCheck,
    now: Timestamp,
) -> Result<bool> {
    let scope = ChatScope {
        app: check.app.clone(),
        chat: check.chat,
        customer: None,
    };
    let Some(chat) = chats.chat(&scope).await? else {
        return Ok(false);
    };
    let Some(message) = chats.message(&scope, check.number).await? else {
        return Ok(false);
    };
    if message.deleted {
        return Ok(false);
    }
    let receiver = UnseenReceiver::of(message.sender_role, &chat.customer_id);
    let (customer, agents_online) = match &receiver {
        UnseenReceiver::Customer(id) => (presence.stored_presence(&check.app, id).await?, 0),
        UnseenReceiver::Agents => {
            const PAGE: u32 = 100;
            let mut after: Option<PresenceCursor> = None;
            let mut online = 0;
            loop {
                let page = presence
                    .presences(&check.app, Some(Role::Agent), now, after.as_ref(), PAGE)
                    .await?;
                if page.iter().any(|p| p.status == PresenceStatus::Online) {
                    online = 1;
                    break;
                }
                if page.len() < PAGE as usize {
                    break;
                }
                after = page.last().map(PresenceCursor::of);
            }
            (None, online)
        }
    };
    Ok(unseen_is_due(
        &chat,
        check.number,
        &receiver,
        customer.as_ref(),
        agents_online,
        now,
    ))
}

/// A message waiting for its `message.unseen` decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnseenCheck {
    pub app: AppToken,
    pub chat: ChatNumber,
    pub number: MessageNumber,
    pub queued_at: Timestamp,
}

// ---- the admin use cases --------------------------------------------------------------------

/// What createWebhookEndpoint and rotateWebhookSecret return: the only time the secret is
/// shown.
#[derive(Debug, Clone)]
pub struct EndpointCredentials {
    pub endpoint: Endpoint,
    pub secret: WebhookSecret,
}

fn require_admin(caller: &Caller) -> Result<()> {
    match caller {
        Caller::Admin => Ok(()),
        Caller::Anonymous => Err(DomainError::Unauthorized(
            "missing or invalid Authorization token".into(),
        )),
        Caller::User(_) => Err(DomainError::Forbidden(
            "webhook endpoints are managed with the admin key".into(),
        )),
    }
}

fn endpoint_not_found(id: &EndpointId) -> DomainError {
    DomainError::NotFound(format!("webhook endpoint {id} not found"))
}

/// The admin's operations on webhook endpoints: admin key only.
impl ChatService {
    fn webhook_store(&self) -> Result<&Arc<dyn WebhookEndpoints>> {
        self.webhooks().ok_or_else(|| {
            DomainError::internal(
                "webhooks are not configured on this server",
                "ChatService built without with_webhooks",
            )
        })
    }

    fn credentials_of(&self, endpoint: Endpoint) -> EndpointCredentials {
        let secret = WebhookSecret::derive(
            self.server_key(),
            &endpoint.app,
            &endpoint.id,
            endpoint.secret_generation,
        );
        EndpointCredentials { endpoint, secret }
    }

    pub async fn create_webhook_endpoint(
        &self,
        caller: &Caller,
        app: &AppToken,
        url: &str,
        events: &[String],
    ) -> Result<EndpointCredentials> {
        require_admin(caller)?;
        let url = WebhookUrl::parse(url, self.webhook_policy())?;
        let events = EventTypes::parse(events)?;
        let now = self.now();
        let endpoint = Endpoint {
            app: app.clone(),
            id: EndpointId::generate(),
            url,
            events,
            enabled: true,
            disabled_reason: None,
            secret_generation: 1,
            previous_secret_expires_at: None,
            consecutive_failures: 0,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        let created = self.webhook_store()?.create_endpoint(&endpoint).await?;
        Ok(self.credentials_of(created))
    }

    pub async fn update_webhook_endpoint(
        &self,
        caller: &Caller,
        app: &AppToken,
        id: &EndpointId,
        url: Option<&str>,
        events: Option<&[String]>,
        enabled: Option<bool>,
    ) -> Result<Endpoint> {
        require_admin(caller)?;
        let update = EndpointUpdate {
            url: url
                .map(|u| WebhookUrl::parse(u, self.webhook_policy()))
                .transpose()?,
            events: events.map(EventTypes::parse).transpose()?,
            enabled,
        };
        self.webhook_store()?
            .update_endpoint(app, id, &update, self.now())
            .await
    }

    pub async fn delete_webhook_endpoint(
        &self,
        caller: &Caller,
        app: &AppToken,
        id: &EndpointId,
    ) -> Result<bool> {
        require_admin(caller)?;
        self.webhook_store()?.delete_endpoint(app, id).await
    }

    pub async fn webhook_endpoints(
        &self,
        caller: &Caller,
        app: &AppToken,
    ) -> Result<Vec<Endpoint>> {
        require_admin(caller)?;
        self.webhook_store()?.endpoints(app).await
    }

    pub async fn rotate_webhook_secret(
        &self,
        caller: &Caller,
        app: &AppToken,
        id: &EndpointId,
        grace_secs: Option<i64>,
    ) -> Result<EndpointCredentials> {
        require_admin(caller)?;
        let grace = grace_secs.unwrap_or(SECRET_GRACE_DEFAULT_SECS);
        if !(0..=SECRET_GRACE_MAX_SECS).contains(&grace) {
            return Err(DomainError::bad_input(format!(
                "graceSeconds must be 0 to {SECRET_GRACE_MAX_SECS}"
            )));
        }
        let now = self.now();
        let endpoint = self
            .webhook_store()?
            .rotate_endpoint_secret(app, id, Timestamp(now.0 + grace * 1000), now)
            .await?;
        Ok(self.credentials_of(endpoint))
    }

    pub async fn webhook_deliveries(
        &self,
        caller: &Caller,
        app: &AppToken,
        id: &EndpointId,
        limit: PageSize,
        next_token: Option<&str>,
    ) -> Result<Page<Delivery>> {
        require_admin(caller)?;
        let store = self.webhook_store()?;
        if store.endpoint(app, id).await?.is_none() {
            return Err(endpoint_not_found(id));
        }
        let context = format!("deliveries/{app}/{id}");
        let after: Option<DeliveryCursor> = next_token
            .map(|t| self.pages().decode(&context, t))
            .transpose()?;
        let mut items = store
            .deliveries(app, id, after.as_ref(), limit.get() + 1)
            .await?;
        let next_token = if items.len() > limit.get() as usize {
            items.truncate(limit.get() as usize);
            items.last().map(|last| {
                self.pages().encode(
                    &context,
                    &DeliveryCursor {
                        created_at: last.created_at,
                        id: last.id.clone(),
                    },
                )
            })
        } else {
            None
        };
        Ok(Page { items, next_token })
    }

    pub async fn redeliver_webhook(
        &self,
        caller: &Caller,
        app: &AppToken,
        id: &EndpointId,
        delivery: &DeliveryId,
    ) -> Result<Delivery> {
        require_admin(caller)?;
        self.webhook_store()?
            .redeliver(app, id, delivery, self.now())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROD: TargetPolicy = TargetPolicy {
        allow_loopback: false,
    };
    const DEV: TargetPolicy = TargetPolicy {
        allow_loopback: true,
    };

    #[test]
    fn urls_must_be_https_to_public_hosts_outside_development() {
        assert!(WebhookUrl::parse("https://hooks.example.com/chat", PROD).is_ok());
        assert!(WebhookUrl::parse("http://hooks.example.com/chat", PROD).is_err());
        assert!(WebhookUrl::parse("http://hooks.example.com/chat", DEV).is_err());
        assert!(WebhookUrl::parse("ftp://hooks.example.com/", PROD).is_err());
        assert!(WebhookUrl::parse("https://user:pw@hooks.example.com/", PROD).is_err());
        assert!(WebhookUrl::parse("https://hooks.example.com/#x", PROD).is_err());
        assert!(WebhookUrl::parse("not a url", PROD).is_err());
        for refused in [
            "https://10.1.2.3/",
            "https://192.168.0.1/",
            "https://172.16.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
            "https://224.0.0.1/",
            "https://100.64.0.1/",
            "https://2130706433/",
        ] {
            assert!(WebhookUrl::parse(refused, PROD).is_err(), "{refused}");
        }
        // A name is judged on what it resolves to, at connect time (the sender's resolver).
        assert!(WebhookUrl::parse("https://localhost/", PROD).is_ok());
        assert!(WebhookUrl::parse("http://localhost/", PROD).is_err());
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook", DEV).is_ok());
        assert!(WebhookUrl::parse("http://[::1]:8080/hook", DEV).is_ok());
        assert!(WebhookUrl::parse("http://localhost:8080/hook", DEV).is_ok());
        assert!(WebhookUrl::parse("https://10.0.0.1/", DEV).is_err());
    }

    #[test]
    fn addresses_are_judged_after_unwrapping_mapped_forms() {
        let refused = |s: &str| refused_address(s.parse().unwrap(), PROD);
        assert!(refused("8.8.8.8").is_none());
        assert!(refused("2606:4700::1111").is_none());
        assert!(refused("::ffff:169.254.169.254").is_some());
        assert!(refused("64:ff9b::a00:1").is_some());
        assert!(refused("64:ff9b::808:808").is_none());
        assert!(refused("fec0::1").is_some());
        assert!(refused("ff02::1").is_some());
        assert!(refused_address("127.0.0.1".parse().unwrap(), DEV).is_none());
        assert!(refused_address("10.0.0.1".parse().unwrap(), DEV).is_some());
    }

    #[test]
    fn signatures_verify_within_the_window_with_either_secret() {
        let key = ServerKey::generate();
        let app = AppToken::parse("app_x").unwrap();
        let id = EndpointId::generate();
        let (old, new) = (
            WebhookSecret::derive(&key, &app, &id, 1),
            WebhookSecret::derive(&key, &app, &id, 2),
        );
        assert!(new.expose().starts_with("whsec_"));
        let body = br#"{"id":"evt_1"}"#;
        let header = signature_header(&[new.clone(), old.clone()], 1_000, body);
        assert!(verify_signature(&header, &new, body, 1_000, 300).is_ok());
        assert!(verify_signature(&header, &old, body, 1_200, 300).is_ok());
        assert!(verify_signature(&header, &new, body, 1_301, 300).is_err());
        assert!(verify_signature(&header, &new, b"{}", 1_000, 300).is_err());
        let other = WebhookSecret::derive(&key, &app, &EndpointId::generate(), 1);
        assert!(verify_signature(&header, &other, body, 1_000, 300).is_err());
        assert_eq!(format!("{new:?}"), "WebhookSecret(<redacted>)");
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // The same computation a receiver writes by hand (docs/webhooks.md).
        let secret = WebhookSecret::from_shown("whsec_test");
        let mut mac = HmacSha256::new_from_slice(b"whsec_test").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex(&mac.finalize().into_bytes());
        assert_eq!(
            signature_header(&[secret], 1_700_000_000, b"{}"),
            format!("t=1700000000,v1={expected}")
        );
    }

    #[test]
    fn retries_back_off_over_more_than_a_day_then_stop() {
        let now = Timestamp(0);
        assert_eq!(next_attempt_at(1, now, 0.5), Some(Timestamp(30_000)));
        let early = next_attempt_at(1, now, 0.0).unwrap();
        let late = next_attempt_at(1, now, 0.999).unwrap();
        assert!(early.0 >= 24_000 && late.0 <= 36_000 && early < late);
        let total: u64 = RETRY_DELAYS_SECS.iter().sum();
        assert!(total as f64 * (1.0 - RETRY_JITTER) > 86_400.0);
        assert!(next_attempt_at(10, now, 0.5).is_some());
        assert_eq!(next_attempt_at(11, now, 0.5), None);
        assert_eq!(next_attempt_at(0, now, 0.5), None);
    }

    #[test]
    fn endpoints_are_disabled_only_after_a_long_run() {
        let policy = DisablePolicy {
            after_failures: 3,
            min_failing_ms: 1_000,
        };
        let failed = AttemptOutcome::Failed {
            status: Some(500),
            error: "HTTP 500".into(),
        };
        assert!(
            policy
                .reason(2, Timestamp(0), Timestamp(5_000), &failed)
                .is_none()
        );
        assert!(
            policy
                .reason(3, Timestamp(0), Timestamp(999), &failed)
                .is_none()
        );
        let reason = policy
            .reason(3, Timestamp(0), Timestamp(1_000), &failed)
            .unwrap();
        assert!(reason.contains("3 failed attempts") && reason.contains("HTTP 500"));
    }

    #[test]
    fn event_types_parse_by_their_names() {
        let types = EventTypes::parse(&["message.unseen".into(), "chat.created".into()]).unwrap();
        assert_eq!(
            types.types(),
            vec![EventType::ChatCreated, EventType::MessageUnseen]
        );
        assert!(EventTypes::parse(&[]).is_err());
        assert!(EventTypes::parse(&["message.read".into()]).is_err());
        assert_eq!(EventTypes::from_mask(types.mask()).unwrap(), types);
        assert!(EventTypes::from_mask(1 << 20).is_err());
    }

    fn chat(customer_last_read: u32, agents_last_read: u32) -> Chat {
        let mut chat = crate::store::NewChat {
            app: AppToken::parse("app_x").unwrap(),
            customer_id: UserId::parse("cust").unwrap(),
            subject: None,
            now: Timestamp(0),
        }
        .opened_as(ChatNumber::new(4).unwrap());
        chat.messages_count = 3;
        chat.customer_last_read = customer_last_read;
        chat.agents_last_read = agents_last_read;
        chat
    }

    fn presence(chat: Option<u32>, expires_at: i64) -> Presence {
        Presence {
            app: AppToken::parse("app_x").unwrap(),
            user_id: UserId::parse("cust").unwrap(),
            role: Role::Customer,
            status: crate::presence::PresenceStatus::Online,
            chat: chat.map(|n| ChatNumber::new(n.into()).unwrap()),
            last_seen_at: Timestamp(0),
            expires_at: Timestamp(expires_at),
            version: 1,
        }
    }

    #[test]
    fn unseen_is_due_unless_read_or_looking() {
        let customer = UnseenReceiver::Customer(UserId::parse("cust").unwrap());
        let third = MessageNumber::new(3).unwrap();
        let now = Timestamp(100);
        assert!(unseen_is_due(&chat(2, 3), third, &customer, None, 0, now));
        assert!(!unseen_is_due(&chat(3, 3), third, &customer, None, 0, now));
        let here = presence(Some(4), 200);
        assert!(!unseen_is_due(
            &chat(2, 3),
            third,
            &customer,
            Some(&here),
            0,
            now
        ));
        let elsewhere = presence(Some(5), 200);
        assert!(unseen_is_due(
            &chat(2, 3),
            third,
            &customer,
            Some(&elsewhere),
            0,
            now
        ));
        let mut background = presence(Some(4), 200);
        background.status = crate::presence::PresenceStatus::Away;
        assert!(unseen_is_due(
            &chat(2, 3),
            third,
            &customer,
            Some(&background),
            0,
            now
        ));
        let expired = presence(Some(4), 100);
        assert!(unseen_is_due(
            &chat(2, 3),
            third,
            &customer,
            Some(&expired),
            0,
            now
        ));
        let agents = UnseenReceiver::Agents;
        assert!(unseen_is_due(&chat(3, 2), third, &agents, None, 0, now));
        assert!(!unseen_is_due(&chat(3, 2), third, &agents, None, 1, now));
        assert!(!unseen_is_due(&chat(3, 3), third, &agents, None, 0, now));
    }

    #[test]
    fn message_events_carry_file_metadata_without_urls_and_none_once_deleted() {
        use crate::attachments::{AttachedFile, FileName, FileType, ImageSize};
        let mut message = Message {
            app: AppToken::parse("app_x").unwrap(),
            chat_number: ChatNumber::new(4).unwrap(),
            number: MessageNumber::new(2).unwrap(),
            body: String::new(),
            sender_id: UserId::parse("cust").unwrap(),
            sender_role: Role::Customer,
            client_message_id: None,
            created_at: Timestamp(0),
            edited_at: None,
            deleted: false,
        };
        let files = [
            AttachedFile {
                name: FileName::parse("parcel.jpg").unwrap(),
                file_type: FileType::Jpeg,
                size: 482_113,
                image: Some(ImageSize {
                    width: 1_200,
                    height: 900,
                }),
            },
            AttachedFile {
                name: FileName::parse("invoice-4471.pdf").unwrap(),
                file_type: FileType::Pdf,
                size: 5_120,
                image: None,
            },
        ];
        let data = message_data(&message, &files);
        assert_eq!(
            data["message"]["attachments"],
            json!([
                { "name": "parcel.jpg", "contentType": "image/jpeg", "size": 482_113,
                  "width": 1_200, "height": 900 },
                { "name": "invoice-4471.pdf", "contentType": "application/pdf", "size": 5_120,
                  "width": null, "height": null },
            ])
        );
        let unseen = unseen_data(&message, &files, &UnseenReceiver::Agents);
        assert_eq!(unseen["message"], data["message"]);
        assert_eq!(
            message_data(&message, &[])["message"]["attachments"],
            json!([])
        );
        message.deleted = true;
        assert_eq!(
            message_data(&message, &files)["message"]["attachments"],
            json!([])
        );
    }

    #[test]
    fn ids_are_prefixed_and_checked() {
        let id = EndpointId::generate();
        assert_eq!(EndpointId::parse(id.as_str()).unwrap(), id);
        assert!(EndpointId::parse("we_short").is_err());
        assert!(DeliveryId::parse(id.as_str()).is_err());
        assert!(EventId::generate().as_str().starts_with("evt_"));
        let derived = EventId::derive(&["app_x", "4", "created"]);
        assert_eq!(EventId::parse(derived.as_str()).unwrap(), derived);
        assert_eq!(derived, EventId::derive(&["app_x", "4", "created"]));
        assert_ne!(derived, EventId::derive(&["app_x", "4c", "reated"]));
        assert_ne!(derived, EventId::derive(&["app_x", "4", "updated"]));
    }
}
