//! Upload records and attachments: the [`UploadStore`] port on DynamoDB (the items and
//! keys are in [`crate::table`]).
//!
//! - `createUpload`: 1 TransactWriteItems (the chat exists; the record is new).
//! - `sendMessage` with attachments: 1 BatchGetItem (the records, whose name, type and size
//!   the attachments copy) + the send's GetItem and TransactWriteItems, which also moves
//!   each record from pending to the message, conditioned on it being pending, the
//!   sender's, of this chat and younger than `UNATTACHED_UPLOAD_TTL_MS`, and puts its
//!   attachment into the chat's partition: 3 requests, atomic.
//! - The attachments of a page of messages: 1 Query per chat (the attachments of messages
//!   `low ..= high` are one sort-key range).
//! - Deleting a message: after the message's UpdateItem, 1 Query of its attachments and,
//!   when it had any, 1 TransactWriteItems that deletes them and lists their records for
//!   release. A retried delete (which answers the deleted message again) runs it again.
//! - The sweep: `release_deleted` and `take_removable` read their work lists from the
//!   `unread` index and change each record with a conditional write, so an entry the index
//!   still shows after its record moved on is skipped.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, TransactWriteItem};
use chat_domain::attachments::{
    FileName, FileType, ImageSize, UNATTACHED_UPLOAD_TTL_MS, Upload, UploadId, UploadState,
    UploadStore, VerifiedUpload,
};
use chat_domain::{
    AppToken, ChatNumber, ChatScope, DomainError, MessageNumber, NewMessage, Result, Sent,
    Timestamp, UserId,
};

use super::conditional_write::{Step, Verdict};
use super::{BATCH_GET_MAX_KEYS, DynamoStore, build_error, domain};
use crate::error::{Result as StoreResult, StoreError};
use crate::expr::Expr;
use crate::items::{self, Item, number_attr, string_attr};
use crate::table::{self, attr, item_type};

/// A pending record's `ttl`: this long after its creation, well after the sweep has taken
/// it (`UNATTACHED_UPLOAD_TTL_MS`), so TTL only matters where no sweep runs.
const PENDING_RECORD_TTL_SECS: i64 = 7 * 24 * 60 * 60;

/// The most items one TransactWriteItems may hold.
const TRANSACT_MAX_ITEMS: usize = 100;

fn upload_key(id: &UploadId) -> Item {
    items::key(table::upload_pk(id), table::UPLOAD_SK)
}

/// The attributes an upload record and an attachment share.
fn upload_attributes(upload: &Upload, item: &mut Item) {
    item.insert(attr::UPLOAD_ID.into(), string_attr(upload.id.as_str()));
    item.insert(attr::APP.into(), string_attr(upload.app.as_str()));
    item.insert(attr::CHAT_NUMBER.into(), number_attr(upload.chat.get()));
    item.insert(
        attr::UPLOADER_ID.into(),
        string_attr(upload.uploader.as_str()),
    );
    item.insert(attr::FILE_NAME.into(), string_attr(upload.name.as_str()));
    item.insert(
        attr::CONTENT_TYPE.into(),
        string_attr(upload.file_type.mime()),
    );
    item.insert(attr::SIZE.into(), number_attr(upload.size));
    item.insert(attr::CREATED_AT.into(), number_attr(upload.created_at.0));
    if let Some(image) = upload.image {
        item.insert(attr::WIDTH.into(), number_attr(image.width));
        item.insert(attr::HEIGHT.into(), number_attr(image.height));
    }
}

/// A new pending record: listed for the sweep by creation time, with its `ttl`.
fn pending_item(upload: &Upload) -> Item {
    let mut item = upload_key(&upload.id);
    item.insert(attr::TYPE.into(), string_attr(item_type::UPLOAD));
    upload_attributes(upload, &mut item);
    item.insert(attr::GSI3PK.into(), string_attr(table::PENDING_UPLOADS_PK));
    item.insert(
        attr::GSI3SK.into(),
        string_attr(table::upload_list_sk(upload.created_at, &upload.id)),
    );
    item.insert(
        attr::TTL.into(),
        number_attr(upload.created_at.0.div_euclid(1000) + PENDING_RECORD_TTL_SECS),
    );
    item
}

/// The attachment of an upload to message `number`, in the chat's partition.
fn attachment_item(upload: &Upload, number: MessageNumber) -> Item {
    let mut item = items::key(
        table::chat_pk(&upload.app, upload.chat),
        table::attachment_sk(number, &upload.id),
    );
    item.insert(attr::TYPE.into(), string_attr(item_type::ATTACHMENT));
    upload_attributes(upload, &mut item);
    item.insert(attr::MESSAGE_NUMBER.into(), number_attr(number.get()));
    item
}

fn parsed<T>(what: &str, value: Result<T>) -> StoreResult<T> {
    value.map_err(|e| StoreError::corrupt_because(what.to_owned(), e))
}

/// An upload record or an attachment, as the domain sees it.
fn upload(item: &Item) -> StoreResult<Upload> {
    let message: Option<i64> = items::optional_number(item, attr::MESSAGE_NUMBER)?;
    let message = message
        .map(|n| parsed("message number", MessageNumber::new(n)))
        .transpose()?;
    let listed = items::optional_string(item, attr::GSI3PK)?;
    let state = match (message, listed) {
        (_, Some(table::RELEASING_UPLOADS_PK | table::RELEASED_UPLOADS_PK)) => {
            UploadState::Released
        }
        (Some(number), _) => UploadState::Attached(number),
        (None, _) => UploadState::Pending,
    };
    let image = match (
        items::optional_number::<u32>(item, attr::WIDTH)?,
        items::optional_number::<u32>(item, attr::HEIGHT)?,
    ) {
        (Some(width), Some(height)) => Some(ImageSize { width, height }),
        _ => None,
    };
    Ok(Upload {
        id: parsed(
            "upload id",
            UploadId::parse(items::string(item, attr::UPLOAD_ID)?),
        )?,
        app: parsed(
            "application token",
            AppToken::parse(items::string(item, attr::APP)?),
        )?,
        chat: parsed(
            "chat number",
            ChatNumber::new(items::number(item, attr::CHAT_NUMBER)?),
        )?,
        uploader: parsed(
            "uploader",
            UserId::parse(items::string(item, attr::UPLOADER_ID)?),
        )?,
        name: parsed(
            "file name",
            FileName::parse(items::string(item, attr::FILE_NAME)?),
        )?,
        file_type: parsed(
            "content type",
            FileType::parse(items::string(item, attr::CONTENT_TYPE)?),
        )?,
        size: items::number(item, attr::SIZE)?,
        created_at: Timestamp(items::number(item, attr::CREATED_AT)?),
        state,
        image,
    })
}

impl DynamoStore {
    /// The writes that attach `upload` to message `number` in the send's transaction: the
    /// record's move from pending (conditioned on every rule of attaching) and the
    /// attachment.
    pub(super) fn attach_writes(
        &self,
        new: &NewMessage,
        number: MessageNumber,
        upload: &Upload,
    ) -> StoreResult<[TransactWriteItem; 2]> {
        let mut expr = Expr::new();
        let mut set = vec![expr.equals(attr::MESSAGE_NUMBER, "message", number_attr(number.get()))];
        if let Some(image) = upload.image {
            set.push(expr.equals(attr::WIDTH, "width", number_attr(image.width)));
            set.push(expr.equals(attr::HEIGHT, "height", number_attr(image.height)));
        }
        let update = format!(
            "SET {} REMOVE {}, {}, {}",
            set.join(", "),
            expr.name(attr::GSI3PK),
            expr.name(attr::GSI3SK),
            expr.name(attr::TTL),
        );
        // Pending (listed as such), the sender's, of this chat, and not older than uploads
        // live: a record past its age is never attached, whether TTL deleted it yet or not.
        let cutoff = new.now.0 - UNATTACHED_UPLOAD_TTL_MS;
        let condition = format!(
            "{} AND {} AND {} AND {} AND {} > {}",
            expr.equals(
                attr::GSI3PK,
                "pending",
                string_attr(table::PENDING_UPLOADS_PK)
            ),
            expr.equals(attr::APP, "app", string_attr(new.scope.app.as_str())),
            expr.equals(attr::CHAT_NUMBER, "chat", number_attr(new.scope.chat.get())),
            expr.equals(
                attr::UPLOADER_ID,
                "uploader",
                string_attr(new.sender_id.as_str())
            ),
            expr.name(attr::CREATED_AT),
            expr.value("cutoff", number_attr(cutoff)),
        );
        Ok([
            self.update(upload_key(&upload.id), &update, Some(&condition), &expr)?,
            self.put_new(attachment_item(upload, number))?,
        ])
    }

    /// 1 TransactWriteItems: the chat exists, the record is new.
    async fn insert_upload(&self, upload: &Upload) -> StoreResult<()> {
        let mut expr = Expr::new();
        let exists = format!("attribute_exists({})", expr.name(attr::PK));
        let check = ConditionCheck::builder()
            .table_name(&*self.table)
            .set_key(Some(items::key(
                table::chat_pk(&upload.app, upload.chat),
                table::CHAT_SK,
            )))
            .condition_expression(exists)
            .set_expression_attribute_names(expr.names())
            .build()
            .map_err(build_error)?;
        let writes = vec![
            TransactWriteItem::builder().condition_check(check).build(),
            self.put_new(pending_item(upload))?,
        ];
        let chat = upload.chat;
        self.conditional_write("a new upload")
            .run(
                move |_| {
                    let writes = writes.clone();
                    async move { Ok(Step::Transact(writes, (), ())) }
                },
                move |cancelled, ()| async move {
                    if cancelled.failed(0) {
                        return Err(domain(DomainError::chat_not_found(chat)));
                    }
                    if cancelled.failed(1) {
                        return Err(StoreError::corrupt("an upload id was generated twice"));
                    }
                    Ok(Verdict::RetryLater)
                },
            )
            .await
    }

    /// 1 GetItem.
    async fn find_upload(&self, id: &UploadId) -> StoreResult<Option<Upload>> {
        self.get(upload_key(id))
            .await?
            .as_ref()
            .map(upload)
            .transpose()
    }

    /// 1 BatchGetItem (of at most 10 records), then the send.
    async fn send_attaching(
        &self,
        new: NewMessage,
        verified: Vec<VerifiedUpload>,
    ) -> StoreResult<Sent> {
        let keys: Vec<Item> = verified.iter().map(|v| upload_key(&v.id)).collect();
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX_KEYS) {
            for item in self.batch_get(chunk.to_vec()).await? {
                found.push(upload(&item)?);
            }
        }
        let mut attach = Vec::with_capacity(verified.len());
        for v in &verified {
            match found.iter().find(|u| u.id == v.id) {
                Some(u) => attach.push(Upload {
                    image: v.image,
                    ..u.clone()
                }),
                None => {
                    // Gone (taken by the sweep): a retry still gets its message.
                    if let Some(id) = &new.client_message_id
                        && let Some(message) =
                            self.message_by_client_id(&new.scope, id, None).await?
                    {
                        return Ok(Sent {
                            message,
                            created: false,
                        });
                    }
                    return Err(domain(DomainError::Conflict(format!(
                        "upload {} is not a pending upload of the sender in this chat",
                        v.id
                    ))));
                }
            }
        }
        self.append_message(&new, &attach).await
    }

    /// 1 Query per chat.
    async fn attachments_of(
        &self,
        app: &AppToken,
        messages: &[(ChatNumber, MessageNumber)],
    ) -> StoreResult<Vec<Upload>> {
        let mut chats: Vec<ChatNumber> = messages.iter().map(|(c, _)| *c).collect();
        chats.sort_unstable();
        chats.dedup();
        let mut found = Vec::new();
        for chat in chats {
            let numbers = messages.iter().filter(|(c, _)| *c == chat).map(|(_, n)| *n);
            let (Some(low), Some(high)) = (numbers.clone().min(), numbers.max()) else {
                continue;
            };
            let (from, to) = table::attachment_sk_range(low, high);
            for item in self
                .query_partition(table::chat_pk(app, chat), from, to)
                .await?
            {
                let attachment = upload(&item)?;
                if matches!(attachment.state, UploadState::Attached(n)
                    if messages.contains(&(chat, n)))
                {
                    found.push(attachment);
                }
            }
        }
        Ok(found)
    }

    /// Every item of partition `pk` with a sort key in `from ..= to` (strongly consistent).
    async fn query_partition(
        &self,
        pk: String,
        from: String,
        to: String,
    ) -> StoreResult<Vec<Item>> {
        let mut expr = Expr::new();
        let condition = format!(
            "{} AND {} BETWEEN {} AND {}",
            expr.equals(attr::PK, "pk", string_attr(pk)),
            expr.name(attr::SK),
            expr.value("from", string_attr(from)),
            expr.value("to", string_attr(to)),
        );
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            found.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(found);
            }
        }
    }

    /// After a message is deleted: 1 Query of its attachments; when it had any, 1
    /// TransactWriteItems that deletes them and lists their records as releasing (each
    /// conditioned on still being attached to this message).
    pub(super) async fn release_attachments(
        &self,
        scope: &ChatScope,
        number: MessageNumber,
    ) -> StoreResult<()> {
        let (from, to) = table::attachment_sk_range(number, number);
        let found = self
            .query_partition(table::chat_pk(&scope.app, scope.chat), from, to)
            .await?;
        let mut writes = Vec::with_capacity(found.len() * 2);
        for item in &found {
            let attachment = upload(item)?;
            let mut expr = Expr::new();
            let update = format!(
                "SET {}, {}",
                expr.equals(
                    attr::GSI3PK,
                    "releasing",
                    string_attr(table::RELEASING_UPLOADS_PK)
                ),
                expr.equals(attr::GSI3SK, "id", string_attr(attachment.id.as_str())),
            );
            let condition = expr.equals(attr::MESSAGE_NUMBER, "message", number_attr(number.get()));
            writes.push(self.update(
                upload_key(&attachment.id),
                &update,
                Some(&condition),
                &expr,
            )?);
            let delete = Delete::builder()
                .table_name(&*self.table)
                .set_key(Some(items::key(
                    table::chat_pk(&scope.app, scope.chat),
                    table::attachment_sk(number, &attachment.id),
                )))
                .build()
                .map_err(build_error)?;
            writes.push(TransactWriteItem::builder().delete(delete).build());
        }
        for chunk in writes.chunks(TRANSACT_MAX_ITEMS) {
            self.client
                .transact_write_items()
                .set_transact_items(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| StoreError::request("TransactWriteItems", e))?;
        }
        Ok(())
    }

    /// The ids on one work list of the sweep (eventually consistent: the index), sort keys
    /// below `below` when given, at most `limit`.
    async fn work_list(
        &self,
        pk: &str,
        below: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<UploadId>> {
        let mut expr = Expr::new();
        let mut condition = expr.equals(attr::GSI3PK, "pk", string_attr(pk));
        if let Some(below) = below {
            condition.push_str(&format!(
                " AND {} < {}",
                expr.name(attr::GSI3SK),
                expr.value("below", string_attr(below))
            ));
        }
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let remaining = limit as usize - ids.len();
            let out = self
                .client
                .query()
                .table_name(&*self.table)
                .index_name(table::UNREAD_INDEX)
                .key_condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::request("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let pk = items::string(&item, attr::PK)?;
                let id = pk
                    .strip_prefix("UPLOAD#")
                    .ok_or_else(|| StoreError::corrupt(format!("{pk} is not an upload")))?;
                ids.push(parsed("upload id", UploadId::parse(id))?);
            }
            start = out.last_evaluated_key;
            if start.is_none() || ids.len() >= limit as usize {
                return Ok(ids);
            }
        }
    }

    /// Whether a conditional write failed its condition (`false`) or applied (`true`).
    fn applied<T, E, R>(
        result: std::result::Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
        request: &'static str,
        failed_condition: impl Fn(&E) -> bool,
    ) -> StoreResult<bool>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(&failed_condition) => Ok(false),
            Err(e) => Err(StoreError::request(request, e)),
        }
    }

    /// 1 Query of the releasing list, 1 UpdateItem per entry.
    async fn stamp_released(&self, now: Timestamp) -> StoreResult<u64> {
        let mut stamped = 0;
        loop {
            let ids = self
                .work_list(table::RELEASING_UPLOADS_PK, None, 100)
                .await?;
            let full = ids.len() == 100;
            let mut moved = 0;
            for id in &ids {
                let mut expr = Expr::new();
                let update = format!(
                    "SET {}, {}, {}",
                    expr.equals(attr::RELEASED_AT, "now", number_attr(now.0)),
                    expr.equals(
                        attr::GSI3PK,
                        "released",
                        string_attr(table::RELEASED_UPLOADS_PK)
                    ),
                    expr.equals(
                        attr::GSI3SK,
                        "sk",
                        string_attr(table::upload_list_sk(now, id))
                    ),
                );
                let condition = expr.equals(
                    attr::GSI3PK,
                    "releasing",
                    string_attr(table::RELEASING_UPLOADS_PK),
                );
                let result = self
                    .client
                    .update_item()
                    .table_name(&*self.table)
                    .set_key(Some(upload_key(id)))
                    .update_expression(update)
                    .condition_expression(condition)
                    .set_expression_attribute_names(expr.names())
                    .set_expression_attribute_values(expr.values())
                    .send()
                    .await;
                if Self::applied(result, "UpdateItem", |e| {
                    e.is_conditional_check_failed_exception()
                })? {
                    moved += 1;
                }
            }
            stamped += moved;
            if !full || moved == 0 {
                return Ok(stamped);
            }
        }
    }

    /// Deletes the record of `id` if it is still listed on `pk` before `cutoff`.
    async fn take_if_listed(
        &self,
        id: &UploadId,
        pk: &str,
        cutoff: Timestamp,
    ) -> StoreResult<bool> {
        let mut expr = Expr::new();
        let condition = format!(
            "{} AND {} < {}",
            expr.equals(attr::GSI3PK, "pk", string_attr(pk)),
            expr.name(attr::GSI3SK),
            expr.value("cutoff", string_attr(table::upload_list_cutoff(cutoff))),
        );
        let result = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(upload_key(id)))
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        Self::applied(result, "DeleteItem", |e| {
            e.is_conditional_check_failed_exception()
        })
    }

    /// 1 Query per list, 1 conditional DeleteItem per entry.
    async fn take_listed(
        &self,
        pending_before: Timestamp,
        released_before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<UploadId>> {
        let mut taken = Vec::new();
        for (pk, cutoff) in [
            (table::PENDING_UPLOADS_PK, pending_before),
            (table::RELEASED_UPLOADS_PK, released_before),
        ] {
            let room = limit.saturating_sub(taken.len() as u32);
            if room == 0 {
                break;
            }
            let listed = self
                .work_list(pk, Some(table::upload_list_cutoff(cutoff)), room)
                .await?;
            for id in listed {
                if self.take_if_listed(&id, pk, cutoff).await? {
                    taken.push(id);
                }
            }
        }
        Ok(taken)
    }
}

#[async_trait]
impl UploadStore for DynamoStore {
    async fn create_upload(&self, upload: &Upload) -> Result<()> {
        self.insert_upload(upload)
            .await
            .map_err(|e| e.into_domain("create_upload"))
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>> {
        self.find_upload(id)
            .await
            .map_err(|e| e.into_domain("upload"))
    }

    async fn send_with_attachments(
        &self,
        new: NewMessage,
        uploads: Vec<VerifiedUpload>,
    ) -> Result<Sent> {
        self.send_attaching(new, uploads)
            .await
            .map_err(|e| e.into_domain("send_with_attachments"))
    }

    async fn attachments(
        &self,
        app: &AppToken,
        messages: &[(ChatNumber, MessageNumber)],
    ) -> Result<Vec<Upload>> {
        self.attachments_of(app, messages)
            .await
            .map_err(|e| e.into_domain("attachments"))
    }

    async fn release_deleted(&self, now: Timestamp) -> Result<u64> {
        self.stamp_released(now)
            .await
            .map_err(|e| e.into_domain("release_deleted"))
    }

    async fn take_removable(
        &self,
        pending_before: Timestamp,
        released_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<UploadId>> {
        self.take_listed(pending_before, released_before, limit)
            .await
            .map_err(|e| e.into_domain("take_removable"))
    }
}
