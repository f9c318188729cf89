//! Upload records on SQLite: the [`UploadStore`] port (table `uploads`, migration 6).
//!
//! Attaching runs in the writer's transaction of the send: the message is sent, then each
//! upload is attached with a conditional update (pending, the sender's, this chat); if one
//! finds nothing to update the command fails and its savepoint takes the message back with
//! it, so a message and its attachments are written together or not at all.

use async_trait::async_trait;
use chat_domain::attachments::{
    AttachedFile, FileName, FileType, ImageSize, Upload, UploadId, UploadState, UploadStore,
    VerifiedUpload, attached_files,
};
use chat_domain::{AppToken, ChatNumber, DomainError, MessageNumber, NewMessage, Sent, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::SqliteStore;
use crate::error::{Result, StoreError};
use crate::rows;

/// The names of the files attached to an outbox row's message (aliased `o`), separated by
/// newlines; NULL when it has none. The search outbox indexes them with the body.
pub(crate) const FILE_NAMES_OF_OUTBOX_ROW: &str = "(SELECT group_concat(u.name, char(10)) \
     FROM uploads u WHERE u.app_id = o.app_id AND u.chat_number = o.chat_number \
     AND u.message_number = o.number AND u.released_at IS NULL)";

/// What the search index sees of a message with attachments
/// (`chat_domain::search::searchable_text`), from the newline-separated `names` of
/// [`FILE_NAMES_OF_OUTBOX_ROW`] (a file name holds no newline).
pub(crate) fn searchable_text(body: &str, names: &str) -> String {
    chat_domain::search::searchable_text(body, names.split('\n'))
}

/// The files attached to a live message, in upload order (webhook events carry them).
pub(crate) fn message_files(
    conn: &Connection,
    app: &AppToken,
    chat: ChatNumber,
    number: MessageNumber,
) -> Result<Vec<AttachedFile>> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN applications a ON a.id = u.app_id \
         WHERE u.app_id = (SELECT id FROM applications WHERE token = ?1) \
         AND u.chat_number = ?2 AND u.message_number = ?3 AND u.released_at IS NULL"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![app.as_str(), chat.get(), number.get()])?;
    let mut uploads = Vec::new();
    while let Some(row) = rows.next()? {
        uploads.push(upload_row(row)?);
    }
    Ok(attached_files(&uploads))
}

const UPLOAD_COLUMNS: &str = "u.id, a.token, u.chat_number, u.uploader_id, u.name, \
     u.content_type, u.size, u.created_at, u.message_number, u.width, u.height, u.released_at";

fn upload_row(row: &Row<'_>) -> Result<Upload> {
    let corrupt = |what| move |e: DomainError| StoreError::corrupt(what, e);
    let id: String = row.get(0)?;
    let token: String = row.get(1)?;
    let message: Option<i64> = row.get(8)?;
    let released: Option<i64> = row.get(11)?;
    let state = match (message, released) {
        (_, Some(_)) => UploadState::Released,
        (Some(n), None) => UploadState::Attached(rows::message_number(n)?),
        (None, None) => UploadState::Pending,
    };
    let image = match (
        row.get::<_, Option<i64>>(9)?,
        row.get::<_, Option<i64>>(10)?,
    ) {
        (Some(w), Some(h)) => Some(ImageSize {
            width: rows::count(w, "image width")?,
            height: rows::count(h, "image height")?,
        }),
        _ => None,
    };
    Ok(Upload {
        id: UploadId::parse(&id).map_err(corrupt("upload id"))?,
        app: AppToken::parse(&token).map_err(corrupt("application token"))?,
        chat: rows::chat_number(row.get(2)?)?,
        uploader: rows::user_id(&row.get::<_, String>(3)?)?,
        name: FileName::parse(&row.get::<_, String>(4)?).map_err(corrupt("file name"))?,
        file_type: FileType::parse(&row.get::<_, String>(5)?).map_err(corrupt("content type"))?,
        size: u64::try_from(row.get::<_, i64>(6)?)
            .map_err(|e| StoreError::corrupt("upload size", e))?,
        created_at: Timestamp(row.get(7)?),
        state,
        image,
    })
}

fn create_upload(conn: &Connection, upload: &Upload) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO uploads (id, app_id, chat_number, uploader_id, name, content_type, \
             size, created_at) \
             SELECT ?1, c.app_id, c.number, ?4, ?5, ?6, ?7, ?8 FROM chats c \
             WHERE c.app_id = (SELECT id FROM applications WHERE token = ?2) AND c.number = ?3",
        )?
        .execute(params![
            upload.id.as_str(),
            upload.app.as_str(),
            upload.chat.get(),
            upload.uploader.as_str(),
            upload.name.as_str(),
            upload.file_type.mime(),
            i64::try_from(upload.size).map_err(|e| StoreError::corrupt("upload size", e))?,
            upload.created_at.0,
        ])?;
    if inserted == 0 {
        return Err(DomainError::chat_not_found(upload.chat).into());
    }
    Ok(())
}

fn upload(conn: &Connection, id: &UploadId) -> Result<Option<Upload>> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN applications a ON a.id = u.app_id \
         WHERE u.id = ?1"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![id.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(upload_row(row)?)),
        None => Ok(None),
    }
}

fn send_with_attachments(
    conn: &Connection,
    new: &NewMessage,
    uploads: &[VerifiedUpload],
) -> Result<Sent> {
    let sent = crate::ops::insert_message(conn, new)?;
    if !sent.created {
        return Ok(sent);
    }
    let mut attach = conn.prepare_cached(
        "UPDATE uploads SET message_number = ?1, width = ?2, height = ?3 \
         WHERE id = ?4 AND app_id = (SELECT id FROM applications WHERE token = ?5) \
         AND chat_number = ?6 AND uploader_id = ?7 \
         AND message_number IS NULL AND released_at IS NULL",
    )?;
    for verified in uploads {
        let updated = attach.execute(params![
            sent.message.number.get(),
            verified.image.map(|i| i.width),
            verified.image.map(|i| i.height),
            verified.id.as_str(),
            new.scope.app.as_str(),
            new.scope.chat.get(),
            new.sender_id.as_str(),
        ])?;
        if updated == 0 {
            return Err(DomainError::Conflict(format!(
                "upload {} is not a pending upload of the sender in this chat",
                verified.id
            ))
            .into());
        }
    }
    crate::webhooks::message_created(conn, &sent.message)?;
    Ok(sent)
}

fn attachments(
    conn: &Connection,
    app: &AppToken,
    messages: &[(ChatNumber, MessageNumber)],
) -> Result<Vec<Upload>> {
    let Some(app_id) = conn
        .prepare_cached("SELECT id FROM applications WHERE token = ?1")?
        .query_row(params![app.as_str()], |row| row.get::<_, i64>(0))
        .optional()?
    else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads u JOIN applications a ON a.id = u.app_id \
         WHERE u.app_id = ?1 AND u.chat_number = ?2 AND u.message_number = ?3"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut found = Vec::new();
    for (chat, number) in messages {
        let mut rows = stmt.query(params![app_id, chat.get(), number.get()])?;
        while let Some(row) = rows.next()? {
            found.push(upload_row(row)?);
        }
    }
    Ok(found)
}

fn release_deleted(conn: &Connection, now: Timestamp) -> Result<u64> {
    let released = conn
        .prepare_cached("UPDATE uploads SET released_at = ?1 WHERE released_at = 0")?
        .execute(params![now.0.max(1)])?;
    Ok(released as u64)
}

fn take_removable(
    conn: &Connection,
    pending_before: Timestamp,
    released_before: Timestamp,
    limit: u32,
) -> Result<Vec<UploadId>> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM uploads WHERE id IN ( \
           SELECT id FROM uploads WHERE message_number IS NULL AND created_at < ?1 \
           UNION ALL \
           SELECT id FROM uploads WHERE released_at > 0 AND released_at < ?2 \
           LIMIT ?3) \
         RETURNING id",
    )?;
    let ids = stmt
        .query_map(params![pending_before.0, released_before.0, limit], |row| {
            row.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    ids.iter()
        .map(|id| UploadId::parse(id).map_err(|e| StoreError::corrupt("upload id", e)))
        .collect()
}

#[async_trait]
impl UploadStore for SqliteStore {
    async fn create_upload(&self, upload: &Upload) -> Result<(), DomainError> {
        let upload = upload.clone();
        self.write("create_upload", move |c| create_upload(c, &upload))
            .await
    }

    async fn upload(&self, id: &UploadId) -> Result<Option<Upload>, DomainError> {
        let id = id.clone();
        self.read("upload", move |c| upload(c, &id)).await
    }

    async fn send_with_attachments(
        &self,
        new: NewMessage,
        uploads: Vec<VerifiedUpload>,
    ) -> Result<Sent, DomainError> {
        let sent = self
            .write("send_with_attachments", move |c| {
                send_with_attachments(c, &new, &uploads)
            })
            .await?;
        if sent.created {
            self.changes.notify_one();
        }
        Ok(sent)
    }

    async fn attachments(
        &self,
        app: &AppToken,
        messages: &[(ChatNumber, MessageNumber)],
    ) -> Result<Vec<Upload>, DomainError> {
        let (app, messages) = (app.clone(), messages.to_vec());
        self.read("attachments", move |c| attachments(c, &app, &messages))
            .await
    }

    async fn release_deleted(&self, now: Timestamp) -> Result<u64, DomainError> {
        self.write("release_deleted", move |c| release_deleted(c, now))
            .await
    }

    async fn take_removable(
        &self,
        pending_before: Timestamp,
        released_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<UploadId>, DomainError> {
        self.write("take_removable", move |c| {
            take_removable(c, pending_before, released_before, limit)
        })
        .await
    }
}
