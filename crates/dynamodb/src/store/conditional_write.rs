//! Where a DynamoDB conditional write is retried: the one loop that every conditional write
//! of the store runs through (numbering a chat or a message, moving read marks, changing an
//! application, a chat or a message).
//!
//! An operation supplies two steps:
//! - `attempt`: read what the write depends on (or start from the item a lost race
//!   returned) and build the write, a TransactWriteItems ([`Step::Transact`]) or one
//!   UpdateItem ([`Step::Update`]), or answer without writing ([`Step::Done`]);
//! - `settle`: read a cancellation by position (which write's condition failed) and say
//!   what it means ([`Verdict`]): the answer after all, a domain error, or another attempt.
//!
//! The loop owns the rest: the writer lane (writers of one key in this process take turns),
//! counting attempts against the [`RetryPolicy`] and giving up with
//! [`StoreError::Contended`], jittered waits for collisions without a winner
//! (`TransactionConflict`, a transaction in progress), and cancellations that are no lost
//! race at all (throttling, validation), which end the write with [`StoreError::Cancelled`].
//!
//! A new conditional write is those two steps and a name for the error: `open_chat`
//! (`chats.rs`) is a numbering transaction, `move_read_marks` (`unread.rs`) a transaction
//! that may have nothing to write, `change_message` (`messages.rs`) one UpdateItem whose
//! failed condition returns the item that says which rule it broke
//! ([`ConditionalWrite::update`]).
//!
//! [`RetryPolicy`]: crate::RetryPolicy

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{CancellationReason, ReturnValue, TransactWriteItem, Update};

use super::DynamoStore;
use crate::backoff::Backoff;
use crate::error::{Result as StoreResult, StoreError, is_throttling_code};
use crate::items::Item;

/// How many writer lanes a store has (see [`WriterLanes`]).
const WRITER_LANES: usize = 64;

/// Writers of one counter (a chat's message count, an application's chat count) within
/// this process take turns: concurrent sends to one chat queue here instead of racing
/// each other's compare-and-set, which would cost a cancelled transaction per lost race.
/// Writers in other processes still race; the conditional transaction keeps that correct.
/// Lanes are striped by key: two busy chats rarely share one.
#[derive(Debug)]
pub(super) struct WriterLanes(Box<[tokio::sync::Mutex<()>]>);

impl WriterLanes {
    pub(super) fn new() -> Self {
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

/// What an attempt decided, having read.
pub(super) enum Step<T, C> {
    /// Nothing to write: this is the answer.
    Done(T),
    /// One TransactWriteItems of these writes, answering `T` when it commits. A cancellation
    /// reports its reasons in the order of the writes, and `settle` gets them with `C` (what
    /// it needs to know of this attempt).
    Transact(Vec<TransactWriteItem>, T, C),
    /// One UpdateItem, answering the item as updated, read by the function. A failed
    /// condition is a cancellation with one reason, carrying the item as it was when the
    /// update asked for it (`ALL_OLD`); `settle` gets it with `C`.
    Update(Box<Update>, fn(&Item) -> StoreResult<T>, C),
}

/// What a cancelled write means, as `settle` reads it.
pub(super) enum Verdict<T> {
    /// The answer after all (an idempotent retry found what its first attempt wrote).
    Done(T),
    /// Another writer changed what was read: read again and retry at once (it made
    /// progress, so there is nothing to wait for).
    Retry,
    /// Likewise, and the cancellation returned the item as it is now: the next attempt
    /// starts from it without a read.
    RetryFrom(Item),
    /// No winner yet (a transaction in flight, a change not yet visible): wait, then retry.
    RetryLater,
}

/// Why a write was cancelled: one reason per write, in the order of the writes.
pub(super) struct Cancellation(Vec<CancellationReason>);

impl Cancellation {
    /// The write at `position` was cancelled because its condition failed.
    pub(super) fn failed(&self, position: usize) -> bool {
        self.0.get(position).is_some_and(condition_failed)
    }

    /// The item at `position` as it was, when its condition failed and the write asked for
    /// it (`ALL_OLD`).
    pub(super) fn item(&self, position: usize) -> Option<&Item> {
        self.0
            .get(position)
            .filter(|r| condition_failed(r))
            .and_then(CancellationReason::item)
    }

    /// Some write's condition failed: another writer moved what the attempt read.
    pub(super) fn any_failed(&self) -> bool {
        self.0.iter().any(condition_failed)
    }

    /// Retry from the item at `position` when its condition failed and returned it (another
    /// writer won and left it so); otherwise wait and retry.
    pub(super) fn retry_from<T>(mut self, position: usize) -> Verdict<T> {
        if !self.failed(position) {
            return Verdict::RetryLater;
        }
        match self.0.get_mut(position).and_then(|r| r.item.take()) {
            Some(item) => Verdict::RetryFrom(item),
            None => Verdict::RetryLater,
        }
    }

    /// What a cancelled numbering transaction means: the parent's count moves by
    /// compare-and-set (position 0) and the child is put only if absent (position 1). A
    /// child that exists although the count held is corruption (`child_exists` says which);
    /// otherwise another writer took the number, and the next attempt starts from the
    /// parent as the cancellation returned it.
    pub(super) fn numbering_verdict<T>(
        self,
        child_exists: impl FnOnce() -> String,
    ) -> StoreResult<Verdict<T>> {
        if self.failed(1) && !self.failed(0) {
            return Err(StoreError::corrupt(child_exists()));
        }
        Ok(self.retry_from(0))
    }

    /// Cancelled only because a condition no longer held or another transaction was in the
    /// way: a fresh read and another attempt will do.
    fn lost_a_race(&self) -> bool {
        self.0.iter().all(|r| {
            matches!(
                reason_code(r),
                "None" | "ConditionalCheckFailed" | "TransactionConflict"
            )
        })
    }

    fn error(&self) -> StoreError {
        let codes: Vec<&str> = self.0.iter().map(reason_code).collect();
        StoreError::Cancelled {
            throttled: codes.iter().any(|c| is_throttling_code(Some(c))),
            reasons: codes.join(", "),
        }
    }
}

fn reason_code(reason: &CancellationReason) -> &str {
    reason.code().unwrap_or("None")
}

fn condition_failed(reason: &CancellationReason) -> bool {
    reason_code(reason) == "ConditionalCheckFailed"
}

fn is_transaction_conflict(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("TransactionConflictException" | "TransactionInProgressException")
    )
}

/// What one request came to.
enum Outcome<A> {
    Applied(A),
    Cancelled(Cancellation),
    /// Another transaction held one of the items: try again.
    Conflict,
}

impl<A> Outcome<A> {
    fn map<B>(self, f: impl FnOnce(A) -> B) -> Outcome<B> {
        match self {
            Outcome::Applied(a) => Outcome::Applied(f(a)),
            Outcome::Cancelled(c) => Outcome::Cancelled(c),
            Outcome::Conflict => Outcome::Conflict,
        }
    }
}

/// A conditional write about to run; see the module's comment.
pub(super) struct ConditionalWrite<'a> {
    store: &'a DynamoStore,
    /// Named in the error when concurrent writers keep winning.
    what: &'static str,
    lane: Option<String>,
}

impl DynamoStore {
    /// A conditional write of `what` ("the chat's message count"), to [`run`] with its
    /// steps.
    ///
    /// [`run`]: ConditionalWrite::run
    pub(super) fn conditional_write(&self, what: &'static str) -> ConditionalWrite<'_> {
        ConditionalWrite {
            store: self,
            what,
            lane: None,
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Outcome<()>> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Outcome::Applied(())),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Ok(
                    Outcome::Cancelled(Cancellation(c.cancellation_reasons().to_vec())),
                ),
                _ if is_transaction_conflict(e.code()) => Ok(Outcome::Conflict),
                _ => Err(StoreError::request("TransactWriteItems", e)),
            },
        }
    }

    /// The update as an UpdateItem of its own, returning the item as updated.
    async fn update_alone(&self, update: Update) -> StoreResult<Outcome<Item>> {
        let result = self
            .client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .return_values(ReturnValue::AllNew)
            .set_return_values_on_condition_check_failure(
                update.return_values_on_condition_check_failure,
            )
            .send()
            .await;
        match result {
            Ok(out) => out
                .attributes
                .map(Outcome::Applied)
                .ok_or_else(|| StoreError::corrupt("UpdateItem returned no item")),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    let reason = CancellationReason::builder()
                        .code("ConditionalCheckFailed")
                        .set_item(failed.item().cloned())
                        .build();
                    Ok(Outcome::Cancelled(Cancellation(vec![reason])))
                }
                _ if is_transaction_conflict(e.code()) => Ok(Outcome::Conflict),
                _ => Err(StoreError::request("UpdateItem", e)),
            },
        }
    }
}

impl ConditionalWrite<'_> {
    /// Writers with the same `key` in this process take turns, from the first read to the
    /// last attempt (see [`WriterLanes`]).
    pub(super) fn taking_turns_on(mut self, key: String) -> Self {
        self.lane = Some(key);
        self
    }

    /// Runs `attempt` (given the item a lost race returned, if any) until its write applies
    /// or it answers without one; `settle` reads each cancellation. A cancellation that is
    /// no lost race ends the write unless `settle` answers or fails first.
    pub(super) async fn run<T, C, Attempted, Settled>(
        self,
        mut attempt: impl FnMut(Option<Item>) -> Attempted,
        mut settle: impl FnMut(Cancellation, C) -> Settled,
    ) -> StoreResult<T>
    where
        Attempted: Future<Output = StoreResult<Step<T, C>>>,
        Settled: Future<Output = StoreResult<Verdict<T>>>,
    {
        let _turn = match &self.lane {
            Some(key) => Some(self.store.lanes.enter(key).await),
            None => None,
        };
        let mut backoff = Backoff::new(self.store.retry, self.what);
        let mut known = None;
        loop {
            let (outcome, context) = match attempt(known.take()).await? {
                Step::Done(answer) => return Ok(answer),
                Step::Transact(writes, answer, context) => {
                    let outcome = self.store.transact(writes).await?;
                    (outcome.map(|()| Ok(answer)), context)
                }
                Step::Update(update, read, context) => {
                    let outcome = self.store.update_alone(*update).await?;
                    (outcome.map(|item| read(&item)), context)
                }
            };
            let cancellation = match outcome {
                Outcome::Applied(answer) => return answer,
                Outcome::Conflict => {
                    backoff.wait().await?;
                    continue;
                }
                Outcome::Cancelled(cancellation) => cancellation,
            };
            let not_a_race = (!cancellation.lost_a_race()).then(|| cancellation.error());
            match (settle(cancellation, context).await?, not_a_race) {
                (Verdict::Done(answer), _) => return Ok(answer),
                (_, Some(error)) => return Err(error),
                (Verdict::Retry, None) => backoff.again()?,
                (Verdict::RetryFrom(item), None) => {
                    known = Some(item);
                    backoff.again()?;
                }
                (Verdict::RetryLater, None) => backoff.wait().await?,
            }
        }
    }

    /// [`run`](Self::run) for a write that reads nothing first: the same UpdateItem on every
    /// attempt, answering the item as updated, read by `read`.
    pub(super) async fn update<T, Settled>(
        self,
        update: Update,
        read: fn(&Item) -> StoreResult<T>,
        mut settle: impl FnMut(Cancellation) -> Settled,
    ) -> StoreResult<T>
    where
        Settled: Future<Output = StoreResult<Verdict<T>>>,
    {
        let update = &update;
        self.run(
            move |_| std::future::ready(Ok(Step::Update(Box::new(update.clone()), read, ()))),
            move |cancelled, ()| settle(cancelled),
        )
        .await
    }
}
