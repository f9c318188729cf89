//! Per-endpoint send slots: at most `cap` posts to one webhook endpoint at once across every
//! sender instance on AWS (the dev server counts its own in memory).
//!
//! | item | PK | SK |
//! |---|---|---|
//! | one send slot of an endpoint | `WHSLOT#<token>#<endpointId>#<slot>` | `SLOT` |
//!
//! - A slot is a lease: taking it is one conditional UpdateItem that succeeds only when the
//!   slot has no lease or its lease has ended, so a sender that crashed while holding one
//!   holds it only until its lease ends. Releasing is conditioned on the holder: a late
//!   release never frees a slot another sender took after the lease ended.
//! - Each slot is a partition of its own: the posts to one busy endpoint spread their
//!   writes over `cap` items instead of queueing on one.
//! - A slot carries a `ttl` a day after its lease, so DynamoDB removes the slots of
//!   endpoints that stopped sending or were deleted.

use chat_domain::webhooks::EndpointId;
use chat_domain::{AppToken, Result, Timestamp};

use super::DynamoStore;
use crate::error::Result as StoreResult;
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::attr;

/// Item type (`type`).
pub const SLOT_TYPE: &str = "WHSLOT";

const SLOT_SK: &str = "SLOT";
const LEASE_UNTIL: &str = "leaseUntil";
const HOLDER: &str = "holder";
/// How long after its lease an idle slot is removed (ms).
const IDLE_SLOT_KEPT_MS: i64 = 24 * 60 * 60 * 1000;

/// A slot taken by [`DynamoStore::acquire_endpoint_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLease {
    pub slot: u32,
    pub holder: String,
}

fn slot_key(app: &AppToken, endpoint: &EndpointId, slot: u32) -> Item {
    items::key(format!("WHSLOT#{app}#{endpoint}#{slot}"), SLOT_SK)
}

impl DynamoStore {
    /// Takes one of the endpoint's `cap` slots for `holder` until `until`: a conditional
    /// UpdateItem per slot tried, starting at `first` (senders start at different slots)
    /// and trying each slot once. `None` when every slot's lease runs past `now`.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire_endpoint_slot(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        cap: u32,
        first: u32,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<SlotLease>> {
        let cap = cap.max(1);
        for i in 0..cap {
            let slot = (first + i) % cap;
            if self
                .take_slot(app, endpoint, slot, holder, now, until)
                .await
                .map_err(|e| e.into_domain("acquire_webhook_slot"))?
            {
                return Ok(Some(SlotLease {
                    slot,
                    holder: holder.to_owned(),
                }));
            }
        }
        Ok(None)
    }

    async fn take_slot(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        slot: u32,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let mut expr = Expr::new();
        let update = format!(
            "SET {}, {}, {}, {}",
            expr.equals(attr::TYPE, "type", string_attr(SLOT_TYPE)),
            expr.equals(LEASE_UNTIL, "until", number_attr(until.0)),
            expr.equals(HOLDER, "holder", string_attr(holder)),
            expr.equals(
                attr::TTL,
                "ttl",
                number_attr((until.0 + IDLE_SLOT_KEPT_MS) / 1000)
            ),
        );
        let condition = format!(
            "attribute_not_exists({lease}) OR {lease} <= {now}",
            lease = expr.name(LEASE_UNTIL),
            now = expr.value("now", number_attr(now.0)),
        );
        self.update_slot(slot_key(app, endpoint, slot), update, condition, &expr)
            .await
    }

    /// Gives a slot back: 1 UpdateItem, only while `lease.holder` still holds it.
    pub async fn release_endpoint_slot(
        &self,
        app: &AppToken,
        endpoint: &EndpointId,
        lease: &SlotLease,
    ) -> Result<()> {
        let mut expr = Expr::new();
        let update = format!("REMOVE {}, {}", expr.name(LEASE_UNTIL), expr.name(HOLDER));
        let condition = expr.equals(HOLDER, "holder", string_attr(&lease.holder));
        self.update_slot(
            slot_key(app, endpoint, lease.slot),
            update,
            condition,
            &expr,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.into_domain("release_webhook_slot"))
    }

    /// 1 UpdateItem of a slot: whether `condition` held (and so the update applied).
    async fn update_slot(
        &self,
        key: Item,
        update: String,
        condition: String,
        expr: &Expr,
    ) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        Ok(super::conditional(result, "UpdateItem")?.is_some())
    }
}
