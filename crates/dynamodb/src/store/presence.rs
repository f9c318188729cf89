//! Presence leases: one item per user and application, in one of
//! [`PRESENCE_SHARDS`](crate::table::PRESENCE_SHARDS) partitions and in no index (see
//! `table.rs`). Each write is one conditional request on the lease's version, never
//! retried here: the domain reads again and retries on Conflict. Reads are eventually
//! consistent (half the read units); a stale read costs a Conflict, never a wrong write.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, TransactWriteItem};
use chat_domain::{
    AppToken, DomainError, Presence, PresenceCursor, PresenceStore, Result, Role, Timestamp, UserId,
};
use futures::future::try_join_all;

use super::conditional_write::{Step, Verdict};
use super::{DynamoStore, build_error, domain};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, PRESENCE_SHARDS, attr};

fn lease_changed() -> StoreError {
    domain(DomainError::Conflict(
        "the presence lease changed meanwhile".into(),
    ))
}

/// Which leases a Query keeps (DynamoDB filters after reading: filtered items are paid for).
#[derive(Debug, Clone, Copy)]
enum Keep {
    LiveAt(Timestamp),
    ExpiredAt(Timestamp),
}

impl Keep {
    fn filter(self, expr: &mut Expr) -> String {
        let (op, now) = match self {
            Keep::LiveAt(now) => (">", now),
            Keep::ExpiredAt(now) => ("<=", now),
        };
        format!(
            "{} {op} {}",
            expr.name(attr::EXPIRES_AT),
            expr.value("now", number_attr(now.0))
        )
    }
}

/// One shard's leases, in sort-key order.
struct ShardQuery {
    shard: u32,
    /// `SK BETWEEN from AND to`; `None`: the whole partition.
    range: Option<(String, String)>,
    /// A sort key to leave out (a page's cursor: `BETWEEN` includes it).
    skip: Option<String>,
    keep: Keep,
    /// Stop once this many are kept.
    want: usize,
    /// The Query's `Limit` (items read per request before the filter); `None`: 1 MB pages.
    page: Option<i32>,
}

/// `Limit` for finding `want` leases after a cursor: one more for the cursor's own item.
fn page_for(want: usize) -> Option<i32> {
    Some(i32::try_from(want + 1).unwrap_or(i32::MAX))
}

impl DynamoStore {
    /// 1 BatchGetItem (eventually consistent) of the two keys the user's lease may be under
    /// (as an agent or as a customer).
    async fn find_presence(&self, app: &AppToken, user: &UserId) -> StoreResult<Option<Presence>> {
        let keys = [Role::Agent, Role::Customer]
            .map(|role| items::presence_key(app, role, user))
            .to_vec();
        let found = self.batch_get_reading(keys, false).await?;
        let mut leases = found
            .iter()
            .map(items::presence)
            .collect::<StoreResult<Vec<_>>>()?;
        // A user holds one lease; should two first heartbeats of both roles have raced,
        // the agent's is the one read (and the next write of the other role replaces it).
        leases.sort_by_key(|lease| lease.role == Role::Customer);
        Ok(leases.into_iter().next())
    }

    /// 1 PutItem conditioned on the version read (or on no lease); a lease under the other
    /// role (a user whose token changed role) is replaced by 1 TransactWriteItems.
    async fn write_presence(
        &self,
        lease: &Presence,
        expected: Option<&Presence>,
    ) -> StoreResult<()> {
        if let Some(old) = expected.filter(|old| old.role != lease.role) {
            return self.replace_presence_of_other_role(lease, old).await;
        }
        let mut expr = Expr::new();
        let condition = match expected {
            None => format!("attribute_not_exists({})", expr.name(attr::PK)),
            Some(old) => expr.equals(attr::VERSION, "expected", number_attr(old.version)),
        };
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(items::presence_item(lease)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match super::conditional(result, "PutItem")? {
            Some(_) => Ok(()),
            None => Err(lease_changed()),
        }
    }

    /// Delete the old role's lease at the version read and put the new one if its key is
    /// free, together. A cancellation is a Conflict: the domain reads again.
    async fn replace_presence_of_other_role(
        &self,
        lease: &Presence,
        old: &Presence,
    ) -> StoreResult<()> {
        let mut expr = Expr::new();
        let condition = expr.equals(attr::VERSION, "expected", number_attr(old.version));
        let delete = Delete::builder()
            .table_name(&*self.table)
            .set_key(Some(items::presence_key(&old.app, old.role, &old.user_id)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder().delete(delete).build(),
            self.put_new(items::presence_item(lease))?,
        ];
        self.conditional_write("the presence lease")
            .run(
                |_| std::future::ready(Ok(Step::Transact(writes.clone(), (), ()))),
                |_, ()| std::future::ready(Err::<Verdict<()>, _>(lease_changed())),
            )
            .await
    }

    /// 1 DeleteItem conditioned on the version read.
    async fn delete_presence(&self, expected: &Presence) -> StoreResult<bool> {
        let mut expr = Expr::new();
        let condition = expr.equals(attr::VERSION, "expected", number_attr(expected.version));
        let result = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(items::presence_key(
                &expected.app,
                expected.role,
                &expected.user_id,
            )))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        Ok(super::conditional(result, "DeleteItem")?.is_some())
    }

    /// Agents: 1 Query of the application's agent shard (more only when over a page is
    /// expired or the page is over 1 MB). Customers: 1 Query per shard, in parallel,
    /// merged by user id.
    async fn live_presences(
        &self,
        app: &AppToken,
        role: Option<Role>,
        now: Timestamp,
        after: Option<&PresenceCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Presence>> {
        let limit = limit as usize;
        let listed = |r: Role| role.is_none_or(|only| only == r);
        let mut found = Vec::new();
        // Agents sort first: a cursor at a customer is past every agent.
        let after_customer = after.is_some_and(|c| c.role == Role::Customer);
        if limit > 0 && listed(Role::Agent) && !after_customer {
            let after = after.map(|c| &c.user_id);
            let range = table::presence_sk_range(app, Role::Agent, after);
            found = self
                .leases_in_shard(ShardQuery {
                    shard: table::agents_presence_shard(app),
                    skip: after.map(|_| range.0.clone()),
                    range: Some(range),
                    keep: Keep::LiveAt(now),
                    want: limit,
                    page: page_for(limit),
                })
                .await?;
        }
        let want = limit - found.len();
        if want > 0 && listed(Role::Customer) {
            let after = after
                .filter(|c| c.role == Role::Customer)
                .map(|c| &c.user_id);
            let range = table::presence_sk_range(app, Role::Customer, after);
            let skip = after.map(|_| range.0.clone());
            let shards = try_join_all((0..PRESENCE_SHARDS).map(|shard| {
                self.leases_in_shard(ShardQuery {
                    shard,
                    range: Some(range.clone()),
                    skip: skip.clone(),
                    keep: Keep::LiveAt(now),
                    want,
                    page: page_for(want),
                })
            }))
            .await?;
            let mut customers: Vec<Presence> = shards.into_iter().flatten().collect();
            customers.sort_by(|a, b| a.user_id.as_str().cmp(b.user_id.as_str()));
            customers.truncate(want);
            found.extend(customers);
        }
        Ok(found)
    }

    /// 1 Query per shard (more for a shard over 1 MB), in parallel: every lease is read.
    async fn expired_in_all_shards(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Presence>> {
        let limit = limit as usize;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let shards = try_join_all((0..PRESENCE_SHARDS).map(|shard| {
            self.leases_in_shard(ShardQuery {
                shard,
                range: None,
                skip: None,
                keep: Keep::ExpiredAt(now),
                want: limit,
                page: None,
            })
        }))
        .await?;
        let mut expired: Vec<Presence> = shards.into_iter().flatten().collect();
        expired.truncate(limit);
        Ok(expired)
    }

    /// Queries one shard (eventually consistent) until `want` leases are kept or it ends.
    async fn leases_in_shard(&self, query: ShardQuery) -> StoreResult<Vec<Presence>> {
        let mut expr = Expr::new();
        let mut condition =
            expr.equals(attr::PK, "pk", string_attr(table::presence_pk(query.shard)));
        if let Some((from, to)) = query.range {
            condition.push_str(&format!(
                " AND {} BETWEEN {} AND {}",
                expr.name(attr::SK),
                expr.value("from", string_attr(from)),
                expr.value("to", string_attr(to)),
            ));
        }
        let filter = query.keep.filter(&mut expr);
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression(&condition)
                .filter_expression(&filter)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .set_limit(query.page)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            for item in out.items.unwrap_or_default() {
                if query
                    .skip
                    .as_deref()
                    .is_some_and(|skip| items::string(&item, attr::SK).is_ok_and(|sk| sk == skip))
                {
                    continue;
                }
                found.push(items::presence(&item)?);
                if found.len() >= query.want {
                    return Ok(found);
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }
}

#[async_trait]
impl PresenceStore for DynamoStore {
    async fn stored_presence(&self, app: &AppToken, user: &UserId) -> Result<Option<Presence>> {
        self.find_presence(app, user)
            .await
            .map_err(|e| e.into_domain("stored_presence"))
    }

    async fn put_presence(&self, lease: &Presence, expected: Option<&Presence>) -> Result<()> {
        self.write_presence(lease, expected)
            .await
            .map_err(|e| e.into_domain("put_presence"))
    }

    async fn remove_presence(&self, expected: &Presence) -> Result<bool> {
        self.delete_presence(expected)
            .await
            .map_err(|e| e.into_domain("remove_presence"))
    }

    async fn presences(
        &self,
        app: &AppToken,
        role: Option<Role>,
        now: Timestamp,
        after: Option<&PresenceCursor>,
        limit: u32,
    ) -> Result<Vec<Presence>> {
        self.live_presences(app, role, now, after, limit)
            .await
            .map_err(|e| e.into_domain("presences"))
    }

    async fn expired_presences(&self, now: Timestamp, limit: u32) -> Result<Vec<Presence>> {
        self.expired_in_all_shards(now, limit)
            .await
            .map_err(|e| e.into_domain("expired_presences"))
    }
}
